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
async fn by_type<T: Serialize>(input: T) -> Findings;

#[agent]
async fn by_const<const N: usize>(input: Topic) -> Findings;

#[agent]
async fn by_lifetime<'a>(input: Topic) -> Findings;

fn main() {}
