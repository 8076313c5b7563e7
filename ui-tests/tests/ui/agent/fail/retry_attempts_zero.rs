//! `attempts = 0` is Temporal's "unlimited": refused, at the `0`, with both ways out.
use flock::prelude::*;

#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Topic {
    pub topic: String,
}

#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Findings {
    pub findings: String,
}

#[agent(retry(attempts = 0, initial_interval = "1s"))]
async fn research(input: Topic) -> Findings;

#[agent(retry(attempts = infinite))]
async fn summarize(input: Topic) -> Findings;

fn main() {}
