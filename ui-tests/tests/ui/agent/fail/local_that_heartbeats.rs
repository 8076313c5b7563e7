//! A `local` agent is a Temporal local activity: it cannot heartbeat or be routed to a queue of
//! its own. Each combination is refused at `local`, saying what to drop.
use flock::prelude::*;

#[derive(Serialize, Deserialize, JsonSchema)]
pub struct N {
    pub n: u32,
}

#[agent(local, heartbeat = "5s")]
async fn long_step(input: N) -> N {
    input
}

#[agent(local, task_queue = "gpu")]
async fn gpu_step(input: N) -> N {
    input
}

#[agent(local = false, heartbeat = "5s", task_queue = "gpu")]
async fn durable_step(input: N) -> N {
    input
}

fn main() {}
