use flock::prelude::*;

#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Topic {
    pub topic: String,
}

#[agent]
async fn research(input: Topic) -> Topic;

#[flow]
async fn research_flow(ctx: &AgentContext, topic: Topic) -> Result<Topic, FlowError> {
    let _ = ctx.attempt();
    Ok(topic)
}

fn main() {}
