//! Executors: [`local`] in-process, the Temporal executor (feature `temporal`) on a Temporal
//! server. Each implements two interfaces: the [runtime](crate::runtime) a running flow asks
//! (agent calls, timers, messages), and [`Backend`], what the facade ([`Flock`](crate::Flock))
//! asks of runs from outside (start, wait, message, cancel, describe). Both read the same
//! [`Settings`]. The facade holds a `Box<dyn Backend>` and never asks which executor it is:
//! what only Temporal can do is said once, in the trait's defaults.

pub(crate) mod local;
#[cfg(feature = "temporal")]
pub(crate) mod temporal;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::Value;

use crate::error::Error;
use crate::record::RunRecord;
use crate::run::{FoundRun, Recorded, RunInfo, RunStart};

use crate::model::Models;
use crate::record::StepEvent;
use crate::registry::Registry;
use crate::retry::RetryPolicy;
use crate::spec::{AgentSpec, PayloadLimit};

/// What every run of a `Flock` shares, whichever executor runs it.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) retry: RetryPolicy,
    pub(crate) start_to_close: Duration,
    pub(crate) models: Arc<Models>,
    /// What runs can call, by name.
    pub(crate) registry: Registry,
    /// The largest payload runs send: Temporal's limit, or with claim-check offload configured
    /// in the codec, the offload's `max_payload` (on both executors, so that development fails
    /// where production would).
    pub(crate) payload_limit: PayloadLimit,
    /// The live step events of local runs, once someone subscribed.
    pub(crate) step_events: StepFeed,
    /// The layers around every run's agent calls, the first outermost.
    pub(crate) layers: crate::runtime::StepLayers,
    /// The limits of the steps that have some (`max_concurrent`, `per_second`), in this process.
    pub(crate) limits: crate::limit::StepLimits,
}

/// The local executor's step events: a broadcast channel made on the first subscription, so
/// that a run nobody watches pays one atomic load per event and builds no event. A handle from
/// `start_flow` subscribes before its run starts (so that its `events()` see the run from its
/// first step): while such handles live, the runs of the process build their events, and a
/// handle that asks for its events after more than [`CAPACITY`](Self::CAPACITY) events has
/// missed the first ones (its stream says so).
#[derive(Debug, Default)]
pub(crate) struct StepFeed(std::sync::OnceLock<tokio::sync::broadcast::Sender<StepEvent>>);

impl StepFeed {
    /// How many events a subscriber may fall behind before it misses some (it is told).
    const CAPACITY: usize = 1024;

    pub(crate) fn subscribe(&self) -> tokio::sync::broadcast::Receiver<StepEvent> {
        self.0
            .get_or_init(|| tokio::sync::broadcast::channel(Self::CAPACITY).0)
            .subscribe()
    }

    /// Sends the event `event` makes, when someone listens.
    #[inline]
    pub(crate) fn emit(&self, event: impl FnOnce() -> StepEvent) {
        if let Some(sender) = self.0.get()
            && sender.receiver_count() > 0
        {
            let _ = sender.send(event());
        }
    }
}

/// The local executor's streamed model text: step events of the feed.
impl crate::events::TextTarget for Settings {
    fn text(&self, sink: &crate::events::TextSink, piece: &str) {
        self.step_events.emit(|| StepEvent {
            run_id: sink.run_id.clone(),
            step: sink.step,
            agent: sink.name,
            attempt: sink.attempt,
            at: sink.run_started.elapsed(),
            kind: crate::record::StepEventKind::Text {
                text: piece.to_owned(),
            },
        });
    }
}

impl Settings {
    /// The retry policy of one agent: the defaults with its `retry(..)` applied.
    pub(crate) fn retry_policy(&self, spec: &AgentSpec) -> RetryPolicy {
        self.retry.with_spec(&spec.retry)
    }
}

/// What a started run's handle keeps: on the local executor, the run's result cell (so that the
/// result outlives the run for the handles that may still ask for it); nothing on Temporal.
#[derive(Clone, Default)]
pub(crate) struct Started(
    // held (never read): what it points to lives as long as the handle
    #[allow(dead_code)] pub(crate) Option<Arc<dyn std::any::Any + Send + Sync>>,
);

impl std::fmt::Debug for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Started")
    }
}

/// What the facade asks of runs, at the JSON level, whichever executor runs them (sqlx's
/// `AnyConnectionBackend`, tokio's scheduler `Handle`: one interface, dispatched once). Typed
/// calls are thin layers over it in the facade. Runs are named by their flow's name and their
/// run id; a message's flow has checked it (declared, fitting) before it gets here.
///
/// What only Temporal can do is a default here that says so ([`Error::NeedsTemporal`]).
pub(crate) trait Backend: Send + Sync + std::fmt::Debug {
    /// Starts `start` without waiting for it; with a signal, signal-with-start (a running run
    /// with its id is signalled instead).
    fn start(&self, start: RunStart) -> BoxFuture<'_, Result<Started, Error>>;

    /// Runs `start` to its end: its result (JSON) and its record (with `record` false, the
    /// record may be a summary: on Temporal the history is not read back).
    fn run(&self, start: RunStart, record: bool) -> BoxFuture<'_, Recorded<Value>>;

    /// Runs `start` to its end for its result alone (no record is made).
    fn run_result(&self, start: RunStart) -> BoxFuture<'_, Result<Value, Error>> {
        Box::pin(async move { self.run(start, false).await.result })
    }

    /// Update-with-start: starts `start` unless a run with its id is running, sends it update
    /// `name` and waits for the answer.
    fn update_with_start<'a>(
        &'a self,
        start: RunStart,
        name: &'a str,
        value: Value,
    ) -> BoxFuture<'a, Result<(Started, Value), Error>>;

    /// Waits for the result of run `run_id` of `flow`.
    fn result<'a>(&'a self, flow: &'a str, run_id: &'a str) -> BoxFuture<'a, Result<Value, Error>>;

    /// Checks that run `run_id` exists and is a run of `flow` ([`Error::WrongFlow`] when it is
    /// another's): what a handle found by id does before it is used.
    fn check_flow<'a>(&'a self, flow: &'a str, run_id: &'a str)
    -> BoxFuture<'a, Result<(), Error>>;

    /// Run `run_id` as the executor describes it; an unknown id is [`Error::NotFound`].
    fn describe<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<RunInfo, Error>>;

    /// Requests cancellation of run `run_id` of `flow`.
    fn cancel<'a>(&'a self, flow: &'a str, run_id: &'a str) -> BoxFuture<'a, Result<(), Error>>;

    /// Sends run `run_id` of `flow` signal `name`.
    fn signal<'a>(
        &'a self,
        flow: &'a str,
        run_id: &'a str,
        name: &'a str,
        value: Value,
    ) -> BoxFuture<'a, Result<(), Error>>;

    /// Asks run `run_id` of `flow` query `name`.
    fn query<'a>(
        &'a self,
        flow: &'a str,
        run_id: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Value, Error>>;

    /// Sends run `run_id` of `flow` update `name` and waits for the answer.
    fn update<'a>(
        &'a self,
        flow: &'a str,
        run_id: &'a str,
        name: &'a str,
        value: Value,
    ) -> BoxFuture<'a, Result<Value, Error>>;

    /// The runs of `flow` whose keyword search attributes have these values.
    fn find_runs<'a>(
        &'a self,
        flow: &'a str,
        attributes: &'a std::collections::BTreeMap<String, String>,
    ) -> BoxFuture<'a, Result<Vec<FoundRun>, Error>>;

    /// The record of run `run_id` of `flow`, so far if it is still running.
    fn record<'a>(
        &'a self,
        flow: &'a str,
        run_id: &'a str,
    ) -> BoxFuture<'a, Result<RunRecord, Error>> {
        let _ = (flow, run_id);
        needs_temporal("reading a run's record by id")
    }

    /// Terminates run `run_id` at once, recording `reason`.
    fn terminate<'a>(
        &'a self,
        run_id: &'a str,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<(), Error>> {
        let _ = (run_id, reason);
        needs_temporal("terminating a run")
    }

    /// The runs a visibility query selects, newest first, at most `limit`.
    fn list<'a>(
        &'a self,
        query: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<RunInfo>, Error>> {
        let _ = (query, limit);
        needs_temporal("listing runs by a visibility query")
    }

    /// The generations of run `run_id` (the runs `continue_as_new` links under its id): the
    /// current one's id, and how many started after `known`, counting at most `limit`.
    fn generations<'a>(
        &'a self,
        run_id: &'a str,
        known: Option<&'a str>,
        limit: u32,
    ) -> BoxFuture<'a, Result<(String, u32), Error>> {
        let _ = (run_id, known, limit);
        needs_temporal("following a run's generations by id")
    }

    /// The history of run `run_id`, as JSON.
    fn history_json<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<Vec<u8>, Error>> {
        let _ = run_id;
        needs_temporal("reading a run's history")
    }

    /// Replays a recorded history against the flows linked in.
    fn replay(&self, history_json: Vec<u8>) -> BoxFuture<'_, Result<(), Error>> {
        let _ = history_json;
        needs_temporal("replaying a history")
    }

    /// The backlog of task queue `queue`.
    fn queue_stats<'a>(
        &'a self,
        queue: &'a str,
    ) -> BoxFuture<'a, Result<crate::run::QueueStats, Error>> {
        let _ = queue;
        needs_temporal("reading a task queue's backlog")
    }

    /// Makes `build_id` the current version of this process's worker deployment.
    fn set_current_version<'a>(&'a self, build_id: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        let _ = build_id;
        needs_temporal("setting a worker deployment's current version")
    }

    /// The build of its deployment run `run_id` is on, if it is versioned.
    fn run_build_id<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<Option<String>, Error>> {
        let _ = run_id;
        needs_temporal("reading a run's worker deployment version")
    }

    /// One look at run `run_id` of `flow` for its live events ([`crate::events`]): its steps
    /// (the history read again only when it grew since `cache` was filled), the text its
    /// running model steps streamed so far, and whether it still runs.
    fn look<'a>(
        &'a self,
        flow: &'a str,
        run_id: &'a str,
        cache: &'a mut crate::events::LookCache,
    ) -> BoxFuture<'a, Result<crate::events::Look, Error>> {
        let _ = (flow, run_id, cache);
        needs_temporal("reading a run's live steps from its history")
    }

    /// The live feed of agent steps, for the runs of this process.
    fn step_events(&self) -> Result<tokio::sync::broadcast::Receiver<StepEvent>, Error> {
        Err(Error::Config(
            "step events are the local executor's live feed; on Temporal a run's steps are in its history: read them with `run_record`, or follow a run live with `events_of_run`".into(),
        ))
    }

    /// Stops what runs in this process (an in-process worker) after its tasks in flight.
    fn shutdown(&self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(std::future::ready(Ok(())))
    }

    /// The Temporal side of this backend, for a standalone worker.
    #[cfg(feature = "temporal")]
    fn temporal(&self) -> Option<&temporal::TemporalBackend> {
        None
    }
}

/// The answer of a [`Backend`] default for what needs Temporal.
fn needs_temporal<T: Send + 'static>(what: &str) -> BoxFuture<'static, Result<T, Error>> {
    Box::pin(std::future::ready(Err(Error::NeedsTemporal {
        what: what.to_owned(),
    })))
}

/// The backend a `Flock` runs on: the local executor (`local`), or Temporal, with an in-process
/// worker when `in_process_worker` gives its limits (refused when a definition names a task
/// queue it does not serve and `served_elsewhere` does not declare).
pub(crate) async fn backend(
    local: bool,
    config: &crate::config::TemporalExecutorConfig,
    settings: &Arc<Settings>,
    in_process_worker: Option<crate::config::WorkerLimits>,
    served_elsewhere: &std::collections::BTreeSet<String>,
) -> Result<Box<dyn Backend>, Error> {
    if local {
        return Ok(Box::new(local::LocalBackend::new(settings.clone())));
    }
    #[cfg(feature = "temporal")]
    {
        if in_process_worker.is_some() {
            check_queues(&settings.registry, &config.task_queue, served_elsewhere)?;
        }
        let backend =
            temporal::TemporalBackend::start(config.clone(), settings.clone(), in_process_worker)
                .await?;
        Ok(Box::new(backend))
    }
    #[cfg(not(feature = "temporal"))]
    {
        let _ = (config, in_process_worker, served_elsewhere);
        Err(Error::Config(
            "`local_debug(false)` needs the Temporal executor: enable flock's `temporal` feature (on by default)".into(),
        ))
    }
}

/// Refuses definitions on task queues nobody serves: a run scheduled there would wait forever.
/// `served` is the queue this process's worker serves.
#[cfg_attr(not(feature = "temporal"), allow(dead_code))]
pub(crate) fn check_queues(
    registry: &Registry,
    served: &str,
    served_elsewhere: &std::collections::BTreeSet<String>,
) -> Result<(), Error> {
    let mut unserved: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    let agents = registry.agents().chain(registry.steps()).map(|a| {
        let spec = a.spec();
        (
            spec.task_queue,
            format!("agent `{}` ({})", spec.name, spec.location),
        )
    });
    let flows = registry.flows().map(|f| {
        let spec = f.spec();
        (
            spec.task_queue,
            format!("flow `{}` ({})", spec.name, spec.location),
        )
    });
    for (queue, what) in agents.chain(flows) {
        if let Some(queue) = queue
            && queue != served
            && !served_elsewhere.contains(queue)
        {
            unserved.entry(queue).or_default().push(what);
        }
    }
    if unserved.is_empty() {
        return Ok(());
    }
    Err(Error::UnservedQueues {
        queues: unserved
            .into_iter()
            .map(|(queue, defs)| (queue.to_owned(), defs))
            .collect(),
        served: served.to_owned(),
    })
}
