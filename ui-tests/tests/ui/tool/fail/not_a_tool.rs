use flock::prelude::*;

#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Topic {
    pub topic: String,
}

async fn search(topic: Topic) -> String {
    topic.topic
}

pub struct Fetch;

#[agent(tools = [search, Fetch])]
async fn research(input: Topic) -> Topic;

fn main() {}
