//! `#[flock::nondeterministic]` exempts a statement, an expression or a nested item of a flow
//! from the determinism lint, and `#[flow]` removes it before rustc sees it (attributes on
//! statements and expressions are unstable); outside a flow it is a no-op attribute.

use std::time::{Duration, Instant, SystemTime};

use flock::prelude::*;

#[derive(Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Job {
    pub id: u64,
}

#[agent]
async fn work(job: Job) -> Job {
    Job { id: job.id + 1 }
}

/// Outside a flow the attribute does nothing.
#[flock::nondeterministic]
fn wall_clock() -> SystemTime {
    SystemTime::now()
}

#[flow]
async fn timed(ctx: &FlowContext, job: Job) -> Result<Job, FlowError> {
    #[flock::nondeterministic]
    let started = Instant::now();
    let job = ctx.call(work, job).await?;
    #[flock::nondeterministic]
    assert!(started.elapsed() < Duration::from_secs(60));
    let replayed_before_now = ctx.now() <= #[flock::nondeterministic] SystemTime::now();
    assert!(replayed_before_now);
    #[flock::nondeterministic]
    fn nested() -> SystemTime {
        SystemTime::now()
    }
    assert!(nested() >= SystemTime::UNIX_EPOCH && wall_clock() >= SystemTime::UNIX_EPOCH);
    Ok(job)
}

fn main() {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let flock = Flock::builder().model("test").build().await.unwrap();
        assert_eq!(flock.run_flow(timed, Job { id: 1 }).await.unwrap(), Job { id: 2 });
    });
}
