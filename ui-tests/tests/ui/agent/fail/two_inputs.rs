use flock::prelude::*;

#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Topic {
    pub topic: String,
}

#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Findings {
    pub findings: String,
}

/// Two values, no context: the first is taken for the context, and it is not one.
#[agent]
async fn research(topic: Topic, depth: u32) -> Findings;

/// Three parameters.
#[agent]
async fn deeper(ctx: &AgentContext, topic: Topic, depth: u32) -> Findings;

fn main() {}
