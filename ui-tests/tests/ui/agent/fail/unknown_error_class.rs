use flock::prelude::*;

#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Topic {
    pub topic: String,
}

#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Findings {
    pub findings: String,
}

#[agent(retry(non_retryable = ["Permanant", "InvalidOutput", "Fatal"]))]
async fn research(input: Topic) -> Findings;

fn main() {}
