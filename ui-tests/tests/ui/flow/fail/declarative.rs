use flock::prelude::*;

#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Topic {
    pub topic: String,
}

#[agent]
async fn research(input: Topic) -> Topic;

/// Flows have bodies.
#[flow]
async fn research_flow(ctx: &FlowContext, topic: Topic) -> Result<Topic, FlowError>;

fn main() {}
