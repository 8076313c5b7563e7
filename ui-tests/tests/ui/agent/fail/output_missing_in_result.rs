use flock::prelude::*;

#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Topic {
    pub topic: String,
}

/// Lacks `JsonSchema`, inside a `Result`.
#[derive(Serialize, Deserialize)]
pub struct Findings {
    pub findings: String,
}

#[agent]
async fn research(input: Topic) -> Result<Findings, AgentError> {
    Ok(Findings { findings: input.topic })
}

fn main() {}
