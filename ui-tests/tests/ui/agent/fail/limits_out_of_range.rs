//! Limits that could never let a call run, priorities Temporal does not have, values that are not
//! numbers: refused at the value, saying why.
use flock::prelude::*;

#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Topic {
    pub topic: String,
}

#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Findings {
    pub findings: String,
}

#[agent(max_concurrent = 0)]
async fn research(input: Topic) -> Findings;

#[agent(per_second = 0)]
async fn summarize(input: Topic) -> Findings;

#[agent(per_second = -2.0, max_concurrent = "four")]
async fn review(input: Topic) -> Findings;

#[agent(concurrency = 4)]
async fn translate(input: Topic) -> Findings;

#[agent(priority = 0)]
async fn urgent(input: Topic) -> Findings;

#[agent(priority = 9)]
async fn later(input: Topic) -> Findings;

/// Looks a page up.
#[tool(max_concurrent = 0)]
async fn lookup(args: Topic) -> String {
    args.topic
}

fn main() {}
