use flock::prelude::*;

#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Topic {
    pub topic: String,
}

#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Findings {
    pub findings: String,
}

async fn summarize(input: Findings) -> Findings {
    input
}

#[agent(hand_off = summarize)]
async fn research(input: Topic) -> Findings;

fn main() {}
