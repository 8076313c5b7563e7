use std::time::{Duration, Instant, SystemTime};

use flock::prelude::*;

// Stand-ins for crates this test does not depend on: the lint reads paths, not types.
mod rand {
    pub fn random<T: Default>() -> T {
        T::default()
    }
    pub fn thread_rng() {}
    pub fn rng() {}
}
mod uuid {
    pub struct Uuid;
    impl Uuid {
        pub fn new_v4() -> Self {
            Uuid
        }
    }
}
mod chrono {
    pub struct Utc;
    impl Utc {
        pub fn now() {}
    }
}

#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Job {
    pub id: u64,
}

#[agent]
async fn work(job: Job) -> Job {
    job
}

#[flow]
async fn clocks(ctx: &FlowContext, job: Job) -> Result<Job, FlowError> {
    let _wall = std::time::SystemTime::now();
    let _imported = SystemTime::now();
    let _monotonic = Instant::now();
    chrono::Utc::now();
    ctx.call(work, job).await
}

#[flow]
async fn timers(ctx: &FlowContext, job: Job) -> Result<Job, FlowError> {
    tokio::time::sleep(Duration::from_secs(1)).await;
    std::thread::sleep(Duration::from_millis(1));
    let _ = tokio::time::timeout(Duration::from_secs(1), async {}).await;
    ctx.call(work, job).await
}

#[flow]
async fn tasks(ctx: &FlowContext, job: Job) -> Result<Job, FlowError> {
    let _ = tokio::spawn(async {}).await;
    let _ = tokio::task::spawn_blocking(|| ()).await;
    let _ = std::thread::spawn(|| ()).join();
    ctx.call(work, job).await
}

/// The messages name the context as the flow does.
#[flow]
async fn randomness(flow: &FlowContext, job: Job) -> Result<Job, FlowError> {
    let id: u64 = rand::random();
    rand::thread_rng();
    rand::rng();
    let _ = uuid::Uuid::new_v4();
    flow.call(work, Job { id: job.id + id }).await
}

fn main() {}
