//! Token usage of model calls and what it costs: plain data, added up per attempt, step and run.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Token usage of model calls, and what they cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
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
    pub(crate) fn check(&self) -> Result<(), Error> {
        for (model, price) in &self.0 {
            for (what, value) in [
                ("input", price.input_per_million),
                ("output", price.output_per_million),
            ] {
                if !value.is_finite() || value < 0.0 {
                    return Err(Error::Config(format!(
                        "price table: the {what} price of `{model}` is {value}; prices are US dollars per million tokens, finite and not negative"
                    )));
                }
            }
        }
        Ok(())
    }
}
