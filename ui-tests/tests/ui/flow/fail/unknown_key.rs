use flock::prelude::*;

#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Topic {
    pub topic: String,
}

#[agent]
async fn research(input: Topic) -> Topic;

#[flow(timeout = "1h", name = "x", name = "y", run_timeout = "1 h")]
async fn research_flow(ctx: &FlowContext, topic: Topic) -> Result<Topic, FlowError> {
    ctx.call(research, topic).await
}

fn main() {}
