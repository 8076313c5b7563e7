use flock::prelude::*;

#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Topic {
    pub topic: String,
}

#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Findings {
    pub findings: String,
}

#[agent(timeout = "30", heartbeat = "5x", schedule_to_close = "", retry(initial_interval = "-1s", max_interval = "99999999999999999999h"))]
async fn research(input: Topic) -> Findings;

fn main() {}
