use flock::prelude::*;

#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Topic {
    pub topic: String,
}

#[agent]
async fn research(input: Topic) -> Topic;

#[flow]
async fn research_flow(topic: Topic) -> Result<Topic, FlowError> {
    Ok(topic)
}

fn main() {}
