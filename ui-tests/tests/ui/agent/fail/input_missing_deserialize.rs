use flock::prelude::*;

/// Lacks `Deserialize`.
#[derive(Serialize, JsonSchema)]
pub struct Topic {
    pub topic: String,
}

#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Findings {
    pub findings: String,
}

#[agent]
async fn research(input: Topic) -> Findings;

fn main() {}
