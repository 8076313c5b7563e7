//! Token usage of model calls and what it costs: plain data, added up per attempt, step and run.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Token usage of model calls, and what they cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Usage {
    /// Prompt (input) tokens.
    pub prompt_tokens: u64,
    /// Completion (output) tokens.
    pub completion_tokens: u64,
    /// Model calls.
    pub requests: u64,
    /// What the tokens cost in US dollars, from the price table
    /// ([`FlockBuilder::prices`](crate::FlockBuilder::prices)); 0 for models it has no price for.
    #[serde(default)]
    pub cost_usd: f64,
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, other: Usage) {
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.requests += other.requests;
        self.cost_usd += other.cost_usd;
    }
}

impl Usage {
    /// Prompt and completion tokens together.
    pub fn tokens(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }
}

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = if self.requests == 1 { "" } else { "s" };
        write!(
            f,
            "{} tokens ({} prompt, {} completion) in {} model request{s}",
            self.tokens(),
            self.prompt_tokens,
            self.completion_tokens,
            self.requests
        )?;
        if self.cost_usd > 0.0 {
            write!(f, ", ${:.4}", self.cost_usd)?;
        }
        Ok(())
    }
}

/// What a run may spend on models, its whole run tree together (its agents, the model requests
/// of agents that run step by step, its child flows'): tokens, US dollars (from the price table,
/// [`FlockBuilder::prices`](crate::FlockBuilder::prices)), or both. Set it with
/// [`RunRequest::budget`](crate::RunRequest::budget).
///
/// A call starts only while something is left; a call that takes the spending over the budget
/// fails the run with [`FlowError::BudgetExceeded`](crate::FlowError::BudgetExceeded), naming
/// the budget and the totals. Calls already running when the budget runs out (concurrent
/// branches) finish and count: the overshoot is at most what the calls in flight spend.
///
/// ```
/// use flock::{Budget, Usage};
///
/// let budget = Budget::tokens(1_000).and_cost_usd(0.50);
/// let spent = Usage { prompt_tokens: 900, completion_tokens: 200, ..Usage::default() };
/// assert!(budget.exceeded_by(&spent));
/// assert_eq!(budget.to_string(), "1000 tokens and $0.5000");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    /// The most prompt and completion tokens together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
    /// The most US dollars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
}

impl Budget {
    /// At most `tokens` tokens (prompt and completion together).
    pub fn tokens(tokens: u64) -> Budget {
        Budget {
            tokens: Some(tokens),
            cost_usd: None,
        }
    }

    /// At most `cost_usd` US dollars.
    pub fn cost_usd(cost_usd: f64) -> Budget {
        Budget {
            tokens: None,
            cost_usd: Some(cost_usd),
        }
    }

    /// This budget with a token limit too.
    pub fn and_tokens(self, tokens: u64) -> Budget {
        Budget {
            tokens: Some(tokens),
            ..self
        }
    }

    /// This budget with a dollar limit too.
    pub fn and_cost_usd(self, cost_usd: f64) -> Budget {
        Budget {
            cost_usd: Some(cost_usd),
            ..self
        }
    }

    /// Whether `spent` is over this budget.
    pub fn exceeded_by(&self, spent: &Usage) -> bool {
        self.tokens.is_some_and(|tokens| spent.tokens() > tokens)
            || self.cost_usd.is_some_and(|cost| spent.cost_usd > cost)
    }

    /// Whether nothing is left after `spent`: no call may start.
    pub(crate) fn used_up_by(&self, spent: &Usage) -> bool {
        self.tokens.is_some_and(|tokens| spent.tokens() >= tokens)
            || self.cost_usd.is_some_and(|cost| spent.cost_usd >= cost)
    }

    /// Why a run could never spend anything under this budget, if so.
    pub(crate) fn problem(&self) -> Option<String> {
        match (self.tokens, self.cost_usd) {
            (None, None) => {
                Some("sets no limit: give `Budget::tokens(n)` or `Budget::cost_usd(x)`".into())
            }
            (Some(0), _) => {
                Some("allows 0 tokens: no model request could run; give at least 1".into())
            }
            (_, Some(cost)) if !cost.is_finite() || cost <= 0.0 => Some(format!(
                "allows ${cost}: give a number of US dollars above 0"
            )),
            _ => None,
        }
    }
}

impl std::fmt::Display for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.tokens, self.cost_usd) {
            (Some(tokens), Some(cost)) => write!(f, "{tokens} tokens and ${cost:.4}"),
            (Some(tokens), None) => write!(f, "{tokens} tokens"),
            (None, Some(cost)) => write!(f, "${cost:.4}"),
            (None, None) => f.write_str("no limit"),
        }
    }
}

/// The price of one model, in US dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    /// Per million input (prompt) tokens.
    pub input_per_million: f64,
    /// Per million output (completion) tokens.
    pub output_per_million: f64,
}

/// Prices by model name (`"provider/model"` as configured, or the model part alone).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PriceTable(BTreeMap<String, Price>);

impl PriceTable {
    /// An empty table: nothing has a cost.
    pub fn new() -> Self {
        PriceTable::default()
    }

    /// This table with `model`'s price, in US dollars per million input and output tokens.
    pub fn price(
        mut self,
        model: impl Into<String>,
        input_per_million: f64,
        output_per_million: f64,
    ) -> Self {
        self.0.insert(
            model.into(),
            Price {
                input_per_million,
                output_per_million,
            },
        );
        self
    }

    /// The price of `model`: by its full name, else by its part after `provider/`, else (a bare
    /// model name) the entry `provider/model` for it.
    pub fn get(&self, model: &str) -> Option<Price> {
        fn model_part(name: &str) -> &str {
            name.split_once('/').map_or(name, |(_, part)| part)
        }
        self.0
            .get(model)
            .or_else(|| self.0.get(model_part(model)))
            // a bare model name finds a `provider/model` entry
            .or_else(|| {
                self.0
                    .iter()
                    .find(|(name, _)| model_part(name) == model)
                    .map(|(_, price)| price)
            })
            .copied()
    }

    /// What `usage` of `model` costs, when the table has its price.
    pub fn cost(&self, model: &str, usage: &Usage) -> Option<f64> {
        let price = self.get(model)?;
        let cost = usage.prompt_tokens as f64 * price.input_per_million / 1e6
            + usage.completion_tokens as f64 * price.output_per_million / 1e6;
        // Dollars to a millionth of a cent: sums of many requests stay readable.
        Some((cost * 1e8).round() / 1e8)
    }

    /// Refuses prices that are negative or not finite, naming the model.
    pub(crate) fn check(&self) -> Result<(), String> {
        for (model, price) in &self.0 {
            for (what, value) in [
                ("input", price.input_per_million),
                ("output", price.output_per_million),
            ] {
                if !value.is_finite() || value < 0.0 {
                    return Err(format!(
                        "price table: the {what} price of `{model}` is {value}; prices are US dollars per million tokens, finite and not negative"
                    ));
                }
            }
        }
        Ok(())
    }
}
