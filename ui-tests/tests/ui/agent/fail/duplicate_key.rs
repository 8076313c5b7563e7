use flock::prelude::*;

#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Topic {
    pub topic: String,
}

#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Findings {
    pub findings: String,
}

#[agent(timeout = "30s", model = "openai/gpt-4o", timeout = "1m", retry(attempts = 2, attempts = 3))]
async fn research(input: Topic) -> Findings;

fn main() {}
