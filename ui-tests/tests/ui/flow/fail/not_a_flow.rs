use flock::prelude::*;

#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Topic {
    pub topic: String,
}

#[agent]
async fn research(input: Topic) -> Topic;

async fn plain(ctx: &FlowContext, topic: Topic) -> Result<Topic, FlowError> {
    ctx.call(research, topic).await
}

async fn run(flock: &Flock) {
    let _ = flock.run_flow(plain, Topic { topic: String::new() }).await;
}

fn main() {}
