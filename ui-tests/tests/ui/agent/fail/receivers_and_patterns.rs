use flock::prelude::*;

#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Topic {
    pub topic: String,
}

#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Findings {
    pub findings: String,
}

#[agent]
async fn method(&self, input: Topic) -> Findings;

#[agent]
async fn destructured(Topic { topic }: Topic) -> Findings {
    Findings { findings: topic }
}

#[agent]
async fn no_output(input: Topic);

fn main() {}
