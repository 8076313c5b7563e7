use flock::prelude::*;

#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Topic {
    pub topic: String,
}

#[agent]
async fn research(input: Topic) -> Topic;

#[flow]
async fn plain(ctx: &FlowContext, topic: Topic) -> Topic {
    ctx.call(research, topic).await.unwrap()
}

#[flow]
async fn wrong_error(ctx: &FlowContext, topic: Topic) -> Result<Topic, String> {
    ctx.call(research, topic).await.map_err(|e| e.to_string())
}

fn main() {}
