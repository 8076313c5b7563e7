use flock::prelude::*;

/// Lacks `JsonSchema`.
#[derive(Serialize, Deserialize)]
pub struct Topic {
    pub topic: String,
}

#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Findings {
    pub findings: String,
}

#[agent]
async fn research(input: Findings) -> Topic;

fn main() {}
