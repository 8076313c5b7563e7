//! Token usage of model calls: plain data, added up per attempt, step and run.

use serde::{Deserialize, Serialize};

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
