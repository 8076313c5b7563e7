use flock::prelude::*;

#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Topic {
    pub topic: String,
}

#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Findings {
    pub findings: String,
}

/// Every mistake in one item is reported, each at its own place.
#[agent(timout = "30s", retry(attempts = "3"), model = "a", model = "b", heartbeat = "10")]
pub fn research(topic: Topic, depth: u32, extra: bool) -> Findings {
    Findings { findings: topic.topic }
}

/// The stub of `research` keeps this use from adding errors of its own.
fn uses() -> research {
    research
}

fn main() {}
