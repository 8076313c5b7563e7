use flock::prelude::*;

#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Topic {
    pub topic: String,
}

#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Findings {
    pub findings: String,
}

#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Summary {
    pub summary: String,
}

/// The output, `Findings`, does not convert into `Summary`, the input of `summarize`.
#[agent(hand_off = summarize)]
async fn research(input: Topic) -> Findings;

#[agent]
async fn summarize(input: Summary) -> Summary;

fn main() {}
