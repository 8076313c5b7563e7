//! Standalone workers, for deployment: a process that serves every agent and flow linked into
//! it, on a Temporal task queue, and drains when it is asked to stop.
//!
//! Stopping follows what the Temporal SDK offers: its shutdown handle stops polling for new tasks
//! (and tells the server, so that the flows' next tasks go to other workers at once) and waits
//! for the attempts in flight; its `graceful_shutdown_period` cancels the attempts still running
//! when it elapses. The SDK itself waits without bound after that, so the worker adds the bound:
//! after the grace period it stops waiting and reports the attempts abandoned.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::config::WorkerLimits;
use crate::error::Error;
use crate::executor::temporal::worker::{self as temporal, AgentPool};
use crate::executor::temporal::{TemporalBackend, WorkerShared};
use crate::flock::Flock;

pub use crate::executor::temporal::CHECKPOINT_FLUSH;

/// How long a stopping worker waits for the agent attempts in flight unless told otherwise:
/// 30 s, Kubernetes' default `terminationGracePeriodSeconds`.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(30);

/// The end of the grace period during which attempts still running have been cancelled (through
/// Temporal, for agents that watch for it) and may report back: a sixth of it, at most 5 s.
fn cancel_window(grace: Duration) -> Duration {
    (grace / 6).min(Duration::from_secs(5))
}

/// A worker serving every registered agent (as an activity) and flow (as a workflow).
///
/// ```no_run
/// use std::time::Duration;
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
///     .grace_period(Duration::from_secs(60))
///     .run() // until SIGTERM or Ctrl-C, then drains; not `Send`: await it, don't spawn it
///     .await
/// # }
/// ```
#[derive(Debug)]
#[must_use = "a worker does nothing until it runs"]
pub struct FlockWorker {
    flock: Flock,
    limits: WorkerLimits,
    grace_period: Duration,
    agents: Option<Vec<String>>,
}

/// What a first request to stop resolves to: a future that resolves at a second request, to stop
/// without waiting for the attempts in flight.
struct Again<F>(F);

/// Why a stopping worker gave up waiting for attempts in flight.
enum GaveUp {
    GracePeriodOver,
    AskedAgain,
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
            grace_period: DEFAULT_GRACE_PERIOD,
            agents: None,
        }
    }

    /// Serves only the agents `names`, as a pool of their own (no flows): for agents that need
    /// other machines, limits or credentials than the rest (a GPU, a rate-limited API key). The
    /// agents declare their task queue, `#[agent(task_queue = "gpu")]`, and the pool worker
    /// serves that queue; every agent declared on it must be named, since Temporal gives a
    /// queue's tasks to any worker polling it. Run the full worker (every flow, the other agents)
    /// beside it. A name that is not an agent, or a set that breaks those rules, is an error when
    /// the worker starts.
    ///
    /// ```no_run
    /// # async fn serve(flock: flock::Flock) -> Result<(), flock::Error> {
    /// flock.worker().agents(["transcribe"]).run().await
    /// # }
    /// ```
    pub fn agents<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.agents = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// The pool this worker serves, if it serves one.
    fn pool(&self) -> Result<Option<AgentPool>, Error> {
        self.agents
            .as_deref()
            .map(|names| AgentPool::of(self.flock.registry(), names))
            .transpose()
    }

    /// Concurrency limits.
    pub fn limits(mut self, limits: WorkerLimits) -> Self {
        self.limits = limits;
        self
    }

    /// How long a stopping worker waits for the agent attempts in flight ([`DEFAULT_GRACE_PERIOD`]
    /// unless set). It takes no new work meanwhile. Attempts still running in the last sixth of
    /// it (at most the last 5 s) are cancelled through Temporal; when it is over the worker stops
    /// waiting, and [`run`](Self::run) returns an error saying attempts were abandoned (Temporal
    /// runs them again after their timeout, on another worker).
    ///
    /// Under Kubernetes, keep it a few seconds below the pod's `terminationGracePeriodSeconds`,
    /// which is when the kubelet sends SIGKILL.
    pub fn grace_period(mut self, grace_period: Duration) -> Self {
        self.grace_period = grace_period;
        self
    }

    /// Serves until SIGTERM (on Unix) or Ctrl-C, then drains: takes no new work and waits up to
    /// the [grace period](Self::grace_period) for the agent attempts in flight. A second signal
    /// stops it without waiting. It says on stderr what it is doing.
    ///
    /// `Ok` once every attempt in flight has finished; an error if the worker fails, or if it
    /// stopped with attempts still running (grace period over, or a second signal).
    pub async fn run(self) -> Result<(), Error> {
        // Listen before serving, so that a SIGTERM from now on drains instead of killing.
        let mut signals = Signals::listen()?;
        self.client()?;
        self.limits.check()?;
        let grace = self.grace_period;
        let address = self.flock.temporal_config().server_url.clone();
        let pool = self.pool()?;
        let serving = match &pool {
            Some(pool) => format!(
                "agents {} on task queue `{}`",
                pool.agents
                    .iter()
                    .map(|name| format!("`{name}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                pool.queue
            ),
            None => format!("task queue `{}`", self.flock.temporal_config().task_queue),
        };
        eprintln!(
            "flock worker: serving {serving} of {address}; SIGTERM or Ctrl-C stops it \
             after the agent attempts in flight (grace period {grace:?})"
        );
        let stop = async move {
            let signal = signals.next().await;
            eprintln!(
                "flock worker: {signal} received; taking no new work and waiting up to {grace:?} \
                 for the agent attempts in flight (signal again to stop without waiting)"
            );
            Again(async move {
                let signal = signals.next().await;
                eprintln!("flock worker: {signal} received again; stopping without waiting");
            })
        };
        let served = self.serve(pool, stop).await;
        match &served {
            Ok(()) => eprintln!("flock worker: every attempt in flight finished; stopped"),
            Err(error) => eprintln!("flock worker: stopped. {error}"),
        }
        served
    }

    /// Serves until `stop` resolves, then drains as [`run`](Self::run) does (bounded by the
    /// [grace period](Self::grace_period)), silently.
    pub async fn run_until(self, stop: impl Future<Output = ()>) -> Result<(), Error> {
        self.limits.check()?;
        let pool = self.pool()?;
        self.serve(pool, async {
            stop.await;
            Again(std::future::pending())
        })
        .await
    }

    fn client(&self) -> Result<&temporalio_client::Client, Error> {
        self.temporal().map(|temporal| &temporal.client)
    }

    fn temporal(&self) -> Result<&TemporalBackend, Error> {
        self.flock.backend().temporal().ok_or_else(|| {
            Error::Config(
                "a worker needs the Temporal executor: build the Flock with `local_debug(false)`"
                    .into(),
            )
        })
    }

    /// Serves until `stop` resolves, then drains until the attempts in flight finish, the grace
    /// period is over, or the second request to stop that `stop` resolved to arrives.
    async fn serve<H: Future<Output = ()>>(
        self,
        pool: Option<AgentPool>,
        stop: impl Future<Output = Again<H>>,
    ) -> Result<(), Error> {
        let client = self.client()?;
        if pool.is_none() {
            self.flock.check_queues()?;
        }
        let shared = Arc::new(WorkerShared {
            settings: self.flock.settings().clone(),
            config: self.flock.temporal_config().clone(),
        });
        let grace = self.grace_period;
        let mut options = temporal::worker_options(&shared, &self.limits, pool.as_ref())?;
        options.graceful_shutdown_period = Some(grace.saturating_sub(cancel_window(grace)));
        let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<H>();
        let stop = async move {
            let Again(again) = stop.await;
            let _ = stopping_tx.send(again);
        };
        let bound = async move {
            let Ok(again) = stopping_rx.await else {
                // the worker ended without being asked to stop: its own result says why
                return std::future::pending().await;
            };
            tokio::select! {
                () = tokio::time::sleep(grace) => GaveUp::GracePeriodOver,
                () = again => GaveUp::AskedAgain,
            }
        };
        let queue = pool.as_ref().map_or_else(
            || self.flock.temporal_config().task_queue.clone(),
            |pool| pool.queue.to_owned(),
        );
        let sampling = sample_backlog(self.temporal()?, queue);
        let abandoned = "agent attempts still running were abandoned; Temporal runs them again \
                         on another worker after their timeout (the agent's `heartbeat`, else its \
                         `timeout`)";
        tokio::select! {
            biased;
            served = temporal::run_worker(
                client.clone(),
                self.flock.temporal_config().codec.as_ref(),
                shared.served_flows(pool.as_ref()),
                options,
                stop,
            ) => served,
            () = sampling => Ok(()),
            gave_up = bound => Err(Error::Executor(match gave_up {
                GaveUp::GracePeriodOver => format!(
                    "the worker did not drain within its grace period of {grace:?}: {abandoned}; \
                     raise `FlockWorker::grace_period` if attempts need longer"
                ),
                GaveUp::AskedAgain => format!(
                    "the worker was told again to stop before it drained: {abandoned}"
                ),
            })),
        }
    }
}

/// How often a worker with metrics on reads its task queue's backlog.
const BACKLOG_EVERY: Duration = Duration::from_secs(10);

/// With metrics on, reads the backlog of `queue` every [`BACKLOG_EVERY`] into the gauges
/// `flock_task_queue_backlog` and `flock_task_queue_backlog_age_seconds`; never ends.
async fn sample_backlog(temporal: &TemporalBackend, queue: String) {
    use crate::executor::Backend as _;
    if crate::observe::metrics().is_none() {
        return std::future::pending().await;
    }
    loop {
        match temporal.queue_stats(&queue).await {
            Ok(stats) => crate::observe::queue_backlog(&stats),
            Err(error) => tracing::warn!(queue, "cannot read the task queue's backlog: {error}"),
        }
        tokio::time::sleep(BACKLOG_EVERY).await;
    }
}

/// The signals that stop a worker: SIGTERM and SIGINT (Ctrl-C) on Unix, Ctrl-C elsewhere. The
/// handlers are installed when it is created, and stay until the process ends (tokio's rule).
pub(crate) struct Signals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    pub(crate) fn listen() -> Result<Signals, Error> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let listen = |kind: SignalKind, name: &str| {
                signal(kind).map_err(|e| {
                    Error::Executor(format!("the worker cannot listen for {name}: {e}"))
                })
            };
            Ok(Signals {
                terminate: listen(SignalKind::terminate(), "SIGTERM")?,
                interrupt: listen(SignalKind::interrupt(), "SIGINT (Ctrl-C)")?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Signals {})
        }
    }

    /// The next signal's name.
    pub(crate) async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                Some(()) = self.terminate.recv() => "SIGTERM",
                Some(()) = self.interrupt.recv() => "SIGINT (Ctrl-C)",
                // both streams closed: the runtime is going away, nothing more will come
                else => std::future::pending().await,
            }
        }
        #[cfg(not(unix))]
        {
            match tokio::signal::ctrl_c().await {
                Ok(()) => "Ctrl-C",
                Err(_) => std::future::pending().await,
            }
        }
    }
}
