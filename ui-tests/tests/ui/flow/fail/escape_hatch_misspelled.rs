use std::time::Instant;

use flock::prelude::*;

#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Job {
    pub id: u64,
}

#[agent]
async fn work(job: Job) -> Job {
    job
}

#[flow]
async fn timed(ctx: &FlowContext, job: Job) -> Result<Job, FlowError> {
    #[flock::nondeterminstic]
    let started = Instant::now();
    #[flock::nondeterministic(reason = "timing")]
    let again = Instant::now();
    let _ = (started, again);
    ctx.call(work, job).await
}

fn main() {}
