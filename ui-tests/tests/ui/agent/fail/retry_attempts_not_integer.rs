use flock::prelude::*;

#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Topic {
    pub topic: String,
}

#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Findings {
    pub findings: String,
}

#[agent(retry(attempts = "3"))]
async fn research(input: Topic) -> Findings;

#[agent(retry(attempts = 2.5))]
async fn summarize(input: Topic) -> Findings;

fn main() {}
