use flock::prelude::*;

#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Topic {
    pub topic: String,
}

#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Findings {
    pub findings: String,
}

pub struct NotAnError;

#[agent]
async fn research(input: Topic) -> Result<Findings, NotAnError> {
    Ok(Findings { findings: input.topic })
}

fn main() {}
