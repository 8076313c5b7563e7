use flock::prelude::*;

#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Topic {
    pub topic: String,
}

#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Findings {
    pub findings: String,
}

#[agent(timout = "30s", retry(max_attempts = 3), attempts = 2)]
async fn research(input: Topic) -> Findings;

fn main() {}
