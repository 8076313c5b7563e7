//! Standalone workers, for deployment: a process that serves every agent and flow linked into
//! it, on a Temporal task queue.

use std::future::Future;
use std::sync::Arc;

use crate::config::WorkerLimits;
use crate::error::Error;
use crate::executor::temporal::{self, WorkerShared};
use crate::flock::Flock;

/// A worker serving every registered agent (as an activity) and flow (as a workflow).
///
/// ```no_run
/// use flock::prelude::*;
/// use flock::WorkerLimits;
///
/// # async fn serve() -> Result<(), flock::Error> {
/// let flock = Flock::builder()
///     .local_debug(false)
///     .in_process_worker(false)
///     .build()
///     .await?;
/// flock
///     .worker()
///     .limits(WorkerLimits { max_concurrent_agents: 20, ..Default::default() })
///     .run() // until Ctrl-C; the future is not `Send`: await it, don't spawn it
///     .await
/// # }
/// ```
#[derive(Debug)]
#[must_use = "a worker does nothing until it runs"]
pub struct FlockWorker {
    flock: Flock,
    limits: WorkerLimits,
}

impl Flock {
    /// A standalone worker serving every registered agent and flow (for deployment): build the
    /// `Flock` with `local_debug(false)` and `in_process_worker(false)`, then
    /// `flock.worker().run().await`.
    pub fn worker(&self) -> FlockWorker {
        FlockWorker::new(self.clone())
    }
}

impl FlockWorker {
    pub(crate) fn new(flock: Flock) -> Self {
        FlockWorker {
            flock,
            limits: WorkerLimits::default(),
        }
    }

    /// Concurrency limits.
    pub fn limits(mut self, limits: WorkerLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Serves until Ctrl-C, then shuts down gracefully.
    pub async fn run(self) -> Result<(), Error> {
        self.run_until(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
    }

    /// Serves until `stop` resolves, then shuts down gracefully (running agent attempts finish).
    pub async fn run_until(self, stop: impl Future<Output = ()>) -> Result<(), Error> {
        let Some(client) = self.flock.temporal_client() else {
            return Err(Error::Config(
                "a worker needs the Temporal executor: build the Flock with `local_debug(false)`"
                    .into(),
            ));
        };
        self.flock.check_queues()?;
        let shared = Arc::new(WorkerShared {
            settings: self.flock.settings().clone(),
            config: self.flock.temporal_config().clone(),
        });
        let options = temporal::worker_options(&shared, &self.limits)?;
        temporal::run_worker(client.clone(), options, stop).await
    }
}
