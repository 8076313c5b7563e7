//! A standalone worker process for the shutdown tests: serves `s_flow` on `FLOCK_TASK_QUEUE` of the
//! server at `TEMPORAL_ADDRESS` until SIGTERM or Ctrl-C (`FlockWorker::run`), draining with the
//! grace period `FLOCK_GRACE_MS` if set; also serves `s_flow_local` (the agent as a local
//! activity). Exits 0 once drained, 1 with the error otherwise.

use std::process::ExitCode;
use std::time::Duration;

use flock::prelude::*;

use flock_tests::shutdown::{s_flow, s_flow_local, s_slow, s_slow_local, s_step, s_two_steps};

fn var(name: &str) -> Result<String, flock::Error> {
    std::env::var(name).map_err(|_| flock::Error::Config(format!("{name} is not set")))
}

/// A Flock serving `s_flow`, or why there is none.
async fn build() -> Result<Flock, flock::Error> {
    Flock::builder()
        .local_debug(false)
        .in_process_worker(false)
        // explicit, so the linker cannot drop the library's registrations
        .flow(s_flow)
        .agent(s_slow)
        .flow(s_flow_local)
        .agent(s_slow_local)
        .flow(s_two_steps)
        .agent(s_step)
        .temporal(TemporalExecutorConfig {
            server_url: var("TEMPORAL_ADDRESS")?,
            task_queue: var("FLOCK_TASK_QUEUE")?,
            ..Default::default()
        })
        .build()
        .await
}

fn grace_period() -> Result<Option<Duration>, flock::Error> {
    match std::env::var("FLOCK_GRACE_MS") {
        Err(_) => Ok(None),
        Ok(text) => text
            .parse::<u64>()
            .map(Duration::from_millis)
            .map(Some)
            .map_err(|_| {
                flock::Error::Config(format!("FLOCK_GRACE_MS is {text:?}, not milliseconds"))
            }),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let (flock, grace) = match (build().await, grace_period()) {
        (Ok(flock), Ok(grace)) => (flock, grace),
        (Err(error), _) | (_, Err(error)) => {
            eprintln!("shutdown_worker: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mut worker = flock.worker();
    if let Some(grace) = grace {
        worker = worker.grace_period(grace);
    }
    println!("worker ready");
    // `run` reports on stderr what it does, its error included
    match worker.run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}
