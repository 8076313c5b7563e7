//! The [`Flock`] facade: configuration, the registry, and runs on the chosen executor.

use std::collections::{BTreeMap, BTreeSet};
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;

use serde_json::Value;

use crate::agent::Agent;
use crate::agent::AgentIo;
use crate::chain::{Chain, ChainOutput, HandOff};
use crate::config::{TemporalExecutorConfig, WorkerLimits};
use crate::error::{Error, FlowError};
use crate::executor::{Settings, local};
use crate::flow::{DynFlow, Flow, decode, encode};
use crate::message::{Query, Signal, Update};
use crate::model::{Model, Models, Provider};
use crate::record::RunRecord;
use crate::registry::Registry;
use crate::spec::{Direction, MessageKind, PayloadLimit};

#[cfg(feature = "temporal")]
use crate::executor::temporal::TemporalExecutor;

/// Runs agents and flows: in-process (`local_debug(true)`) or on Temporal.
///
/// ```rust,standalone_crate
/// use flock::prelude::*;
///
/// #[derive(Debug, Serialize, Deserialize, JsonSchema)]
/// pub struct Topic {
///     /// The topic to research
///     pub topic: String,
/// }
/// #[derive(Debug, Serialize, Deserialize, JsonSchema)]
/// pub struct Findings {
///     /// Research findings
///     pub findings: String,
/// }
///
/// /// Research the topic.
/// #[agent]
/// async fn research(input: Topic) -> Findings;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let flock = Flock::builder().model("test").build().await?;
/// let findings: Findings = flock.run(research, Topic { topic: "Temporal".into() }).await?;
/// assert_eq!(findings.findings, "findings example");
/// # Ok::<(), flock::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct Flock {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    settings: Arc<Settings>,
    temporal: TemporalExecutorConfig,
    #[cfg_attr(not(feature = "temporal"), allow(dead_code))]
    served_elsewhere: BTreeSet<String>,
    executor: Executor,
    local_ids: LocalIds,
    local_runs: Arc<local::LocalRuns>,
    /// The metrics endpoint, when [`FlockBuilder::metrics`] asked for one.
    metrics: Option<crate::observe::MetricsServer>,
}

/// The ids of this `Flock`'s local runs, for the id rules Temporal applies to workflow ids, and
/// their flows and search attributes, for [`Flock::find_runs`]: every running run, and the
/// [`LOCAL_RETENTION`] most recently closed ones (Temporal forgets closed runs after the
/// namespace's retention period; a process running runs for months must not keep every id).
#[derive(Debug, Default)]
struct LocalIds(std::sync::Mutex<LocalIdTable>);

/// How many closed local runs a `Flock` remembers (their ids stay taken, `find_runs` finds them).
const LOCAL_RETENTION: usize = 10_000;

#[derive(Debug, Default)]
struct LocalIdTable {
    runs: std::collections::HashMap<String, LocalRun>,
    /// Closed runs, oldest first, with the generation they closed in (a run id started again
    /// under `IdReuse::Allow` closes again in a later generation).
    closed: std::collections::VecDeque<(String, u64)>,
    generation: u64,
}

#[derive(Debug, Clone)]
struct LocalRun {
    state: LocalRunState,
    flow: String,
    attributes: BTreeMap<String, String>,
    generation: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LocalRunState {
    Running,
    Completed,
    Failed,
}

impl LocalIds {
    fn claim(
        &self,
        run_id: &str,
        flow: &str,
        policy: IdReuse,
        attributes: &BTreeMap<String, String>,
    ) -> Result<(), Error> {
        let mut ids = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let refused = match ids.runs.get(run_id).map(|run| run.state) {
            None => None,
            Some(LocalRunState::Running) => Some("is still running"),
            Some(LocalRunState::Completed) if policy != IdReuse::Allow => Some("completed"),
            Some(LocalRunState::Failed) if policy == IdReuse::Reject => Some("failed"),
            Some(_) => None,
        };
        if let Some(state) = refused {
            return Err(id_taken(run_id, flow, state, policy));
        }
        ids.runs.insert(
            run_id.to_owned(),
            LocalRun {
                state: LocalRunState::Running,
                flow: flow.to_owned(),
                attributes: attributes.clone(),
                generation: 0,
            },
        );
        Ok(())
    }

    fn find(&self, flow: &str, attributes: &BTreeMap<String, String>) -> Vec<FoundRun> {
        let ids = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut found: Vec<FoundRun> = ids
            .runs
            .iter()
            .filter(|(_, run)| {
                run.flow == flow
                    && attributes
                        .iter()
                        .all(|(k, v)| run.attributes.get(k) == Some(v))
            })
            .map(|(run_id, run)| FoundRun {
                run_id: run_id.clone(),
                running: run.state == LocalRunState::Running,
            })
            .collect();
        found.sort_by(|a, b| a.run_id.cmp(&b.run_id));
        found
    }

    fn close(&self, run_id: &str, completed: bool) {
        let state = if completed {
            LocalRunState::Completed
        } else {
            LocalRunState::Failed
        };
        let mut guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let ids = &mut *guard;
        let Some(run) = ids.runs.get_mut(run_id) else {
            return;
        };
        ids.generation += 1;
        run.state = state;
        run.generation = ids.generation;
        ids.closed.push_back((run_id.to_owned(), ids.generation));
        while ids.closed.len() > LOCAL_RETENTION {
            let Some((old, generation)) = ids.closed.pop_front() else {
                break;
            };
            // only if it has not been started again (and maybe closed again) since
            if ids.runs.get(&old).is_some_and(|run| {
                run.generation == generation && run.state != LocalRunState::Running
            }) {
                ids.runs.remove(&old);
            }
        }
    }
}

/// A refused run id, the same on both executors.
pub(crate) fn id_taken(run_id: &str, flow: &str, state: &str, policy: IdReuse) -> Error {
    let hint = match state {
        "is still running" => {
            "wait for it (`flock.flow_handle(..)`) or choose another id".to_owned()
        }
        _ => format!(
            "the run's id reuse policy is {policy:?}; to run again under this id use `.id_reuse(IdReuse::Allow)`"
        ),
    };
    Error::Config(format!(
        "cannot start `{flow}` as run `{run_id}`: a run with that id {state}; {hint}"
    ))
}

#[derive(Debug)]
enum Executor {
    Local,
    #[cfg(feature = "temporal")]
    Temporal(Box<TemporalExecutor>),
}

/// Configures a [`Flock`].
#[must_use]
pub struct FlockBuilder {
    pub(crate) models: Models,
    local_debug: bool,
    pub(crate) temporal: TemporalExecutorConfig,
    pub(crate) registry: Result<Registry, Error>,
    in_process_worker: bool,
    worker_limits: WorkerLimits,
    served_elsewhere: BTreeSet<String>,
    metrics: Option<String>,
}

impl Flock {
    /// Starts configuring a `Flock`: the local executor, no default model, every agent and flow
    /// linked into the binary.
    pub fn builder() -> FlockBuilder {
        FlockBuilder {
            models: Models::default(),
            local_debug: true,
            temporal: TemporalExecutorConfig::default(),
            registry: Registry::linked(),
            in_process_worker: true,
            worker_limits: WorkerLimits::default(),
            served_elsewhere: BTreeSet::new(),
            metrics: None,
        }
    }

    /// Runs the static hand-off chain that starts at `agent`; the result is the last agent's
    /// output. Await it, or set an id / ask for the record first.
    pub fn run<A: Agent<Next: HandOff<<A as Agent>::Output>>>(
        &self,
        agent: A,
        input: A::Input,
    ) -> RunRequest<'_, Chain<A>> {
        self.run_flow(Chain(agent), input)
    }

    /// Runs a flow. Await it, or set an id / ask for the record first.
    pub fn run_flow<F: Flow>(&self, flow: F, input: F::Input) -> RunRequest<'_, F> {
        let _ = flow;
        RunRequest {
            flock: self,
            flow: std::marker::PhantomData,
            input,
            id: None,
            id_reuse: IdReuse::default(),
            signal: None,
            attributes: BTreeMap::new(),
        }
    }

    /// Starts a flow without waiting for it; the handle gives its id, its typed result and
    /// cancellation. Same as `flock.run_flow(flow, input).start()` (which also takes `.id(..)`).
    pub async fn start_flow<F: Flow>(
        &self,
        flow: F,
        input: F::Input,
    ) -> Result<FlowHandle<F>, Error> {
        self.run_flow(flow, input).start().await
    }

    /// A handle to a run started elsewhere (another process, an earlier start), by its id.
    /// Temporal only: local runs live in the process that started them. The handle checks, before
    /// it gives a result, that the run is one of `flow` (a run of another flow is an error naming
    /// both, never another flow's output).
    pub fn flow_handle<F: Flow>(
        &self,
        flow: F,
        run_id: impl Into<String>,
    ) -> Result<FlowHandle<F>, Error> {
        let _ = flow;
        let run_id = run_id.into();
        match &self.inner.executor {
            #[cfg(feature = "temporal")]
            Executor::Temporal(_) => Ok(FlowHandle {
                flock: self.clone(),
                run_id,
                state: HandleState::Reattached,
                flow: std::marker::PhantomData,
            }),
            Executor::Local if self.inner.local_runs.get(&run_id).is_some() => Ok(FlowHandle {
                flock: self.clone(),
                run_id,
                state: HandleState::LocalAttached,
                flow: std::marker::PhantomData,
            }),
            Executor::Local => Err(Error::Config(format!(
                "re-attaching to run `{run_id}` needs the Temporal executor (`local_debug(false)`): local runs live in the process that started them, and no such run is running here"
            ))),
        }
    }

    /// The history of run `run_id` (Temporal only), as JSON: what [`replay`](Self::replay) takes.
    /// Record the histories of your flows' runs into your repository and replay them in CI, so
    /// that a change to a flow body that would break runs in flight fails a test, not production.
    #[cfg(feature = "temporal")]
    pub async fn history_json(&self, run_id: &str) -> Result<Vec<u8>, Error> {
        match &self.inner.executor {
            Executor::Temporal(temporal) => temporal.history_json(run_id).await,
            Executor::Local => Err(Error::Config(
                "run histories are Temporal's: use `local_debug(false)`".into(),
            )),
        }
    }

    /// Replays a recorded history (JSON, from [`history_json`](Self::history_json)) against the flows linked into this binary, with the
    /// Temporal SDK's replayer. `Ok` when the current code makes the same decisions; a flow
    /// changed without [`FlowContext::patched`](crate::FlowContext::patched) fails with
    /// [`FlowError::NonDeterminism`]. The replay itself talks to no server.
    #[cfg(feature = "temporal")]
    pub async fn replay(&self, history_json: &[u8]) -> Result<(), Error> {
        match &self.inner.executor {
            Executor::Temporal(temporal) => {
                temporal
                    .replay(self.inner.settings.clone(), history_json.to_vec())
                    .await
            }
            Executor::Local => Err(Error::Config(
                "replaying a history needs the Temporal executor: use `local_debug(false)`".into(),
            )),
        }
    }

    /// Makes `build_id` the current version of this Flock's worker deployment
    /// ([`TemporalExecutorConfig::deployment`]): new runs go to that build's workers, and
    /// auto-upgrading runs move to it; pinned runs stay where they are. The build's workers must
    /// be polling (this waits up to `wait_retry_window` for them). Temporal only.
    #[cfg(feature = "temporal")]
    pub async fn set_current_version(&self, build_id: &str) -> Result<(), Error> {
        match &self.inner.executor {
            Executor::Temporal(temporal) => temporal.set_current_version(build_id).await,
            Executor::Local => Err(Error::Config(
                "worker deployment versions are Temporal's: use `local_debug(false)`".into(),
            )),
        }
    }

    /// The build id of the deployment version run `run_id` is on (pinned to, or last ran on),
    /// or `None` for a run on unversioned workers. Temporal only.
    #[cfg(feature = "temporal")]
    pub async fn run_build_id(&self, run_id: &str) -> Result<Option<String>, Error> {
        match &self.inner.executor {
            Executor::Temporal(temporal) => temporal.run_version(run_id).await,
            Executor::Local => Err(Error::Config(
                "worker deployment versions are Temporal's: use `local_debug(false)`".into(),
            )),
        }
    }

    /// The runs of `flow` whose search attributes (see
    /// [`RunRequest::search_attribute`]) have the given values: running and closed, newest
    /// first on Temporal (its visibility store may lag a start by a moment). An attribute name
    /// must be an identifier and a value must not contain quotes.
    pub async fn find_runs<F: Flow>(
        &self,
        flow: F,
        attributes: &[(&str, &str)],
    ) -> Result<Vec<FoundRun>, Error> {
        let _ = flow;
        let mut wanted = BTreeMap::new();
        for (name, value) in attributes {
            let identifier =
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !identifier || value.contains(['\'', '"', '\\']) {
                return Err(Error::Config(format!(
                    "cannot search runs of `{}` by `{name}` = `{value}`: a search attribute's name is an identifier and its value has no quotes or backslashes",
                    F::NAME
                )));
            }
            wanted.insert((*name).to_owned(), (*value).to_owned());
        }
        match &self.inner.executor {
            Executor::Local => Ok(self.inner.local_ids.find(F::NAME, &wanted)),
            #[cfg(feature = "temporal")]
            Executor::Temporal(temporal) => temporal.find_runs(F::NAME, &wanted).await,
        }
    }

    /// Stops the in-process worker (if any) after its running tasks finish.
    pub async fn shutdown(&self) -> Result<(), Error> {
        match &self.inner.executor {
            Executor::Local => Ok(()),
            #[cfg(feature = "temporal")]
            Executor::Temporal(temporal) => temporal.shutdown().await,
        }
    }

    #[cfg(feature = "temporal")]
    pub(crate) fn settings(&self) -> &Arc<Settings> {
        &self.inner.settings
    }

    #[cfg(feature = "temporal")]
    pub(crate) fn temporal_client(&self) -> Option<&temporalio_client::Client> {
        match &self.inner.executor {
            Executor::Temporal(temporal) => Some(&temporal.client),
            Executor::Local => None,
        }
    }

    /// Checks that every task queue the definitions name is served: by this process's worker
    /// (the configured `task_queue`) or, as declared, elsewhere.
    #[cfg(feature = "temporal")]
    pub(crate) fn check_queues(&self) -> Result<(), Error> {
        check_queues(
            &self.inner.settings.registry,
            &self.inner.temporal.task_queue,
            &self.inner.served_elsewhere,
        )
    }

    /// The agents and flows this `Flock` serves.
    pub fn registry(&self) -> &Registry {
        &self.inner.settings.registry
    }

    /// The executor settings.
    pub fn temporal_config(&self) -> &TemporalExecutorConfig {
        &self.inner.temporal
    }

    /// The address of the metrics endpoint [`FlockBuilder::metrics`] started.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.inner.metrics.as_ref().map(|server| server.addr())
    }

    /// The models agents are answered with.
    pub fn models(&self) -> &Models {
        &self.inner.settings.models
    }

    /// The registered flow or chain `F` as the executors run it.
    fn definition<F: Flow>(&self) -> Result<&'static dyn DynFlow, Error> {
        self.registry().flow(F::NAME).ok_or_else(|| {
            Error::Registry(format!(
                "flow `{}` is not registered: register it with `Flock::builder().flow(..)`",
                F::NAME
            ))
        })
    }
}

/// Refuses definitions on task queues nobody serves: a run scheduled there would wait forever.
#[cfg_attr(not(feature = "temporal"), allow(dead_code))]
fn check_queues(
    registry: &Registry,
    served: &str,
    served_elsewhere: &BTreeSet<String>,
) -> Result<(), Error> {
    let mut unserved: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let agents = registry.agents().map(|a| {
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
    let list = unserved
        .iter()
        .map(|(queue, defs)| format!("task queue `{queue}`: {}", defs.join(", ")))
        .collect::<Vec<_>>()
        .join("; ");
    Err(Error::Config(format!(
        "no worker serves these task queues, so their runs would wait forever: {list}. This process's worker serves `{served}`; run a worker for the others (`TemporalExecutorConfig {{ task_queue, .. }}`) and declare them with `Flock::builder().queue_served_elsewhere(\"..\")`"
    )))
}

impl FlockBuilder {
    /// Serves Prometheus metrics on `addr` (`host:port`, port 0 for a free one) at `/metrics`:
    /// flock's (see [`observe`](crate::observe)) and, on Temporal, the in-process worker's. The
    /// endpoint lives as long as the `Flock`; [`Flock::metrics_addr`] gives its address. A bad or
    /// busy address fails [`build`](Self::build) with an error naming it.
    pub fn metrics(mut self, addr: impl Into<String>) -> Self {
        self.metrics = Some(addr.into());
        self
    }

    /// Prices per model that turn token usage into cost: in the run record
    /// ([`Usage::cost_usd`](crate::usage::Usage::cost_usd)), the model request spans and the
    /// `flock_cost_usd_total` metric. A negative or non-finite price fails
    /// [`build`](Self::build).
    pub fn prices(mut self, prices: crate::usage::PriceTable) -> Self {
        self.models.set_prices(prices);
        self
    }

    /// Whether model request spans carry prompts and answers (`gen_ai.input.messages`,
    /// `gen_ai.output.messages`). Off by default: prompts hold user data. On Temporal it is the
    /// worker's setting that counts (the worker makes the requests).
    pub fn record_contents(mut self, on: bool) -> Self {
        self.models.set_record_contents(on);
        self
    }

    /// The default model of declarative agents, `"provider/model"` (`"test"`: [`TestModel`](crate::model::TestModel)).
    pub fn model(mut self, name: impl Into<String>) -> Self {
        self.models.set_default(name);
        self
    }

    /// Makes every agent use this model, whatever its own `model = ".."` says (e.g. `"test"` to
    /// run offline).
    pub fn force_model(mut self, name: impl Into<String>) -> Self {
        self.models.force(name);
        self
    }

    /// Registers a model instance under a name usable as a model name.
    pub fn register_model(mut self, name: impl Into<String>, model: impl Model) -> Self {
        self.models.insert(name, Arc::new(model));
        self
    }

    /// Registers a provider of `"<provider>/<model>"` names.
    pub fn provider(mut self, provider: impl Provider) -> Self {
        self.models.add_provider(Arc::new(provider));
        self
    }

    /// `true` (the default): the local executor runs everything in-process. `false`: Temporal.
    pub fn local_debug(mut self, local_debug: bool) -> Self {
        self.local_debug = local_debug;
        self
    }

    /// With Temporal: whether this process also runs a worker for every registered agent and flow
    /// (`true`, the default, for development), or only starts runs that other processes' workers
    /// (`flock.worker().run()`) execute.
    pub fn in_process_worker(mut self, in_process_worker: bool) -> Self {
        self.in_process_worker = in_process_worker;
        self
    }

    /// Declares that workers of another process serve task queue `queue`, so that definitions
    /// naming it (`#[agent(task_queue = "..")]`, `#[flow(task_queue = "..")]`) do not make
    /// [`build`](Self::build) refuse a process that runs work (see there).
    pub fn queue_served_elsewhere(mut self, queue: impl Into<String>) -> Self {
        self.served_elsewhere.insert(queue.into());
        self
    }

    /// Concurrency limits of the in-process worker.
    pub fn worker_limits(mut self, limits: WorkerLimits) -> Self {
        self.worker_limits = limits;
        self
    }

    /// Executor settings. Their retry and timeout defaults apply to the local executor too.
    pub fn temporal(mut self, config: TemporalExecutorConfig) -> Self {
        self.temporal = config;
        self
    }

    /// Registers an agent explicitly (agents linked into the binary are registered already).
    pub fn agent<A: Agent<Next: HandOff<<A as Agent>::Output>>>(mut self, agent: A) -> Self {
        let _ = agent;
        let registration = crate::__private::agent_registration::<A>(
            Box::leak(Box::new(A::default())),
            Box::leak(Box::new(Chain(A::default()))),
        );
        if let Ok(registry) = &mut self.registry
            && let Err(e) = registry.add_agent(&registration)
        {
            self.registry = Err(e);
        }
        self
    }

    /// Registers a flow explicitly (flows linked into the binary are registered already).
    pub fn flow<F: Flow>(mut self, flow: F) -> Self {
        let _ = flow;
        let registration =
            crate::__private::flow_registration::<F>(Box::leak(Box::new(F::default())));
        if let Ok(registry) = &mut self.registry
            && let Err(e) = registry.add_flow(&registration)
        {
            self.registry = Err(e);
        }
        self
    }

    /// Checks the configuration and the registry and builds the `Flock`.
    ///
    /// A process that runs work (the Temporal executor with its in-process worker) is refused
    /// when an agent or flow names a task queue that neither its worker serves nor
    /// [`queue_served_elsewhere`](Self::queue_served_elsewhere) declares: runs there would wait
    /// forever.
    pub async fn build(mut self) -> Result<Flock, Error> {
        let registry = self.registry?;
        // Encryption configured in the environment is applied on every path that builds a Flock
        self.temporal = self.temporal.with_env_codec()?;
        self.models.prices().check()?;
        self.worker_limits.check()?;
        // Before the executor: its worker reports to the metrics when they are on.
        let metrics = self
            .metrics
            .as_deref()
            .map(crate::observe::serve_metrics)
            .transpose()?;
        for agent in registry.agents() {
            let spec = agent.spec();
            if spec.kind == crate::spec::AgentKind::Declarative
                && let Some(name) = self.models.name_for(spec.model)
                && let Err(e) = self.models.resolve(name)
            {
                return Err(Error::Config(format!(
                    "agent `{}` ({}): {e}",
                    spec.name, spec.location
                )));
            }
        }
        let settings = Arc::new(Settings {
            retry: self.temporal.retry_policy(),
            start_to_close: self.temporal.activity_start_to_close,
            models: Arc::new(self.models),
            registry,
            step_events: Default::default(),
            payload_limit: crate::spec::PayloadLimit::of(self.temporal.codec.as_ref()),
        });
        let executor = if self.local_debug {
            Executor::Local
        } else {
            Self::temporal_executor(
                &self.temporal,
                &settings,
                self.in_process_worker.then_some(self.worker_limits),
                &self.served_elsewhere,
            )
            .await?
        };
        Ok(Flock {
            inner: Arc::new(Inner {
                settings,
                temporal: self.temporal,
                served_elsewhere: self.served_elsewhere,
                executor,
                local_ids: LocalIds::default(),
                local_runs: Arc::default(),
                metrics,
            }),
        })
    }

    #[cfg(feature = "temporal")]
    async fn temporal_executor(
        config: &TemporalExecutorConfig,
        settings: &Arc<Settings>,
        in_process_worker: Option<WorkerLimits>,
        served_elsewhere: &BTreeSet<String>,
    ) -> Result<Executor, Error> {
        if in_process_worker.is_some() {
            check_queues(&settings.registry, &config.task_queue, served_elsewhere)?;
        }
        let executor =
            TemporalExecutor::start(config.clone(), settings.clone(), in_process_worker).await?;
        Ok(Executor::Temporal(Box::new(executor)))
    }

    #[cfg(not(feature = "temporal"))]
    async fn temporal_executor(
        _config: &TemporalExecutorConfig,
        _settings: &Arc<Settings>,
        _in_process_worker: Option<WorkerLimits>,
        _served_elsewhere: &BTreeSet<String>,
    ) -> Result<Executor, Error> {
        Err(Error::Config(
            "`local_debug(false)` needs the Temporal executor: enable flock's `temporal` feature (on by default)".into(),
        ))
    }
}

/// Whether a run may take the id of an earlier, closed run (Temporal's workflow-id reuse policy;
/// the local executor applies the same rule to the runs of its `Flock`). A run whose id is still
/// running is refused either way. Temporal remembers closed runs for the namespace's retention
/// period; the local executor remembers the last 10,000 closed runs of a `Flock`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdReuse {
    /// Only when the earlier run did not complete (failed, cancelled, terminated, timed out): a
    /// retry under the same id. The default: re-running completed work under an id that says
    /// it was done would repeat its side effects silently.
    #[default]
    FailedOnly,
    /// Always: a new run under the same id.
    Allow,
    /// Never.
    Reject,
}

/// A run about to start: `.await` it for the result, or set its id or ask for its record first.
#[must_use = "a run does nothing until it is awaited"]
pub struct RunRequest<'a, F: Flow> {
    flock: &'a Flock,
    flow: std::marker::PhantomData<F>,
    input: F::Input,
    id: Option<String>,
    id_reuse: IdReuse,
    signal: Option<(&'static str, Result<Value, String>)>,
    attributes: BTreeMap<String, String>,
}

/// A run's result together with its record.
#[derive(Debug)]
pub struct Recorded<T> {
    /// What the run returned.
    pub result: Result<T, Error>,
    /// What happened.
    pub record: RunRecord,
}

impl<'a, F: Flow> RunRequest<'a, F> {
    /// The run id (on Temporal: the workflow id); by default `<name>-<uuid>`.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Whether the id of an earlier, closed run may be taken (see [`IdReuse`]; by default only
    /// that of a run that did not complete).
    pub fn id_reuse(mut self, policy: IdReuse) -> Self {
        self.id_reuse = policy;
        self
    }

    fn run_id(&self) -> String {
        self.id
            .clone()
            .unwrap_or_else(|| format!("{}-{}", F::NAME, uuid::Uuid::new_v4()))
    }

    /// The input as the executors take it: JSON within the payload limit.
    fn input_json(&self, run_id: &str) -> Result<Value, Error> {
        let limit = self.flock.inner.settings.payload_limit;
        encode("flow", F::NAME, Direction::Input, &self.input, limit).map_err(|cause| Error::Run {
            name: F::NAME.to_owned(),
            run_id: run_id.to_owned(),
            cause,
        })
    }

    /// Runs and gives the result together with the run record.
    ///
    /// On Temporal the record is read back from the workflow's history: each agent (activity) with
    /// its input, output, error and attempts (Temporal keeps the last attempt's timing and the
    /// failure before it), model token usage, and child flows with their timing and outcome.
    /// Agents run as local activities are listed from their markers, which keep their input too.
    pub async fn recorded(self) -> Recorded<F::Output> {
        let run_id = self.run_id();
        let started = std::time::Instant::now();
        let started_at = std::time::SystemTime::now();
        let inner = &self.flock.inner;
        let failed = |error: Error| Recorded {
            record: RunRecord::summary(
                &run_id,
                F::NAME,
                started_at,
                started.elapsed(),
                Value::Null,
                &Err(error.clone()),
            ),
            result: Err(error),
        };
        let input = match self.input_json(&run_id) {
            Ok(input) => input,
            Err(error) => return failed(error),
        };
        let flow = match self.flock.definition::<F>() {
            Ok(flow) => flow,
            Err(error) => return failed(error),
        };
        let signal = match self.start_signal(&run_id) {
            Ok(signal) => signal,
            Err(error) => return failed(error),
        };
        match &inner.executor {
            Executor::Local => {
                if let Err(error) =
                    inner
                        .local_ids
                        .claim(&run_id, F::NAME, self.id_reuse, &self.attributes)
                {
                    return failed(error);
                }
                let mailbox = inner.local_runs.open(&run_id, flow.spec());
                if let Some((name, value)) = signal.clone()
                    && let Err(message) = mailbox.signal(name, value)
                {
                    return failed(message_error::<F>(&run_id, message));
                }
                let (result, record) = local::run_flow(
                    inner.settings.clone(),
                    inner.local_runs.clone(),
                    mailbox,
                    flow,
                    Arc::from(run_id.as_str()),
                    input,
                )
                .await;
                inner.local_ids.close(&run_id, result.is_ok());
                Recorded {
                    result: result
                        .map_err(|cause| run_failed::<F>(&run_id, cause))
                        .and_then(|value| decode_output::<F>(&run_id, value)),
                    record,
                }
            }
            #[cfg(feature = "temporal")]
            Executor::Temporal(temporal) => {
                let result = async {
                    temporal
                        .start_run(
                            temporal_start(
                                flow,
                                &run_id,
                                input.clone(),
                                self.id_reuse,
                                &self.attributes,
                            ),
                            signal,
                        )
                        .await?;
                    temporal.result(F::NAME, &run_id).await
                }
                .await;
                let mut record = RunRecord::summary(
                    &run_id,
                    F::NAME,
                    started_at,
                    started.elapsed(),
                    input,
                    &result,
                );
                temporal.fill_record(&mut record).await;
                Recorded {
                    result: result.and_then(|value| decode_output::<F>(&run_id, value)),
                    record,
                }
            }
        }
    }

    /// Tags the run with keyword search attribute `name` = `value` (a ticket id, a customer), so
    /// that [`Flock::find_runs`] finds it. On Temporal the attribute must be registered on the
    /// namespace (`temporal operator search-attribute create --name TicketId --type Keyword`;
    /// the dev server: [`DevServerOptions::search_attributes`](crate::dev_server::DevServerOptions)).
    pub fn search_attribute(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.attributes.insert(name.into(), value.into());
        self
    }

    /// Sends signal `signal` with the start: the flow finds it waiting
    /// ([`FlowContext::wait`](crate::FlowContext::wait)). With [`start`](Self::start), this is
    /// signal-with-start: when a run with this id is running already, it is only signalled.
    pub fn signal<T: AgentIo>(mut self, signal: Signal<F, T>, value: T) -> Self {
        let json = encode(
            "signal",
            signal.name(),
            Direction::Input,
            &value,
            PayloadLimit::TEMPORAL,
        );
        self.signal = Some((signal.name(), json.map_err(|e| e.to_string())));
        self
    }

    /// The signal to send with the start, checked: declared, fitting, within the limit.
    fn start_signal(&self, run_id: &str) -> Result<Option<(&'static str, Value)>, Error> {
        let Some((name, json)) = &self.signal else {
            return Ok(None);
        };
        let value = json
            .clone()
            .map_err(|message| message_error::<F>(run_id, message))?;
        F::default()
            .spec()
            .check_message(MessageKind::Signal, name, &value)
            .map_err(|message| message_error::<F>(run_id, message))?;
        Ok(Some((name, value)))
    }

    /// Starts the run and returns a handle to it, without waiting for its result. With a
    /// [`signal`](Self::signal), a run with this id that is running already is signalled
    /// instead.
    pub async fn start(self) -> Result<FlowHandle<F>, Error> {
        let run_id = self.run_id();
        let input = self.input_json(&run_id)?;
        let flow = self.flock.definition::<F>()?;
        let inner = &self.flock.inner;
        let signal = self.start_signal(&run_id)?;
        let state = match &inner.executor {
            Executor::Local => {
                if let Some((name, value)) = signal.clone()
                    && let Some(mailbox) = inner.local_runs.get(&run_id)
                {
                    if mailbox.flow_name() != F::NAME {
                        return Err(message_error::<F>(
                            &run_id,
                            format!("run `{run_id}` is a run of `{}`", mailbox.flow_name()),
                        ));
                    }
                    mailbox
                        .signal(name, value)
                        .map_err(|message| message_error::<F>(&run_id, message))?;
                    return self.flock.flow_handle(F::default(), run_id);
                }
                inner
                    .local_ids
                    .claim(&run_id, F::NAME, self.id_reuse, &self.attributes)?;
                let mailbox = inner.local_runs.open(&run_id, flow.spec());
                if let Some((name, value)) = signal {
                    mailbox
                        .signal(name, value)
                        .map_err(|message| message_error::<F>(&run_id, message))?;
                }
                let (settings, runs, id): (_, _, Arc<str>) = (
                    inner.settings.clone(),
                    inner.local_runs.clone(),
                    Arc::from(run_id.as_str()),
                );
                let flock = self.flock.clone();
                let task = tokio::spawn(async move {
                    let result = local::run_flow(settings, runs, mailbox, flow, id.clone(), input)
                        .await
                        .0;
                    flock.inner.local_ids.close(&id, result.is_ok());
                    result
                });
                HandleState::Local(tokio::sync::Mutex::new(Some(task)))
            }
            #[cfg(feature = "temporal")]
            Executor::Temporal(temporal) => {
                temporal
                    .start_run(
                        temporal_start(flow, &run_id, input, self.id_reuse, &self.attributes),
                        signal,
                    )
                    .await?;
                HandleState::Started
            }
        };
        Ok(FlowHandle {
            flock: self.flock.clone(),
            run_id,
            state,
            flow: std::marker::PhantomData,
        })
    }

    /// Update-with-start: starts the run unless one with this id is running, sends it update
    /// `update`, and gives a handle and the flow's answer. A stateless front end submits a
    /// request this way without knowing whether the run exists.
    pub async fn start_with_update<I: AgentIo, O: AgentIo>(
        self,
        update: Update<F, I, O>,
        value: I,
    ) -> Result<(FlowHandle<F>, O), Error> {
        let run_id = self.run_id();
        let value = encode(
            "update",
            update.name(),
            Direction::Input,
            &value,
            PayloadLimit::TEMPORAL,
        )
        .map_err(|cause| message_error::<F>(&run_id, cause.to_string()))?;
        let flow = self.flock.definition::<F>()?;
        flow.spec()
            .check_message(MessageKind::Update, update.name(), &value)
            .map_err(|message| message_error::<F>(&run_id, message))?;
        match &self.flock.inner.executor {
            Executor::Local => {
                let running = self.flock.inner.local_runs.get(&run_id).is_some();
                let handle = if running {
                    self.flock.flow_handle(F::default(), run_id.clone())?
                } else {
                    self.start().await?
                };
                let answer = handle.update_json(update.name(), value).await?;
                Ok((handle, decode_answer::<F, O>(&run_id, answer)?))
            }
            #[cfg(feature = "temporal")]
            Executor::Temporal(temporal) => {
                let input = self.input_json(&run_id)?;
                let answer = temporal
                    .update_with_start(
                        temporal_start(flow, &run_id, input, self.id_reuse, &self.attributes),
                        update.name(),
                        value,
                    )
                    .await?;
                let handle = FlowHandle {
                    flock: self.flock.clone(),
                    run_id: run_id.clone(),
                    state: HandleState::Started,
                    flow: std::marker::PhantomData,
                };
                Ok((handle, decode_answer::<F, O>(&run_id, answer)?))
            }
        }
    }
}

/// What a Temporal run starts with.
#[cfg(feature = "temporal")]
fn temporal_start<'s>(
    flow: &'static dyn DynFlow,
    run_id: &'s str,
    input: Value,
    id_reuse: IdReuse,
    attributes: &'s BTreeMap<String, String>,
) -> crate::executor::temporal::Start<'s> {
    crate::executor::temporal::Start {
        spec: flow.spec(),
        run_id,
        input,
        id_reuse,
        attributes,
    }
}

fn message_error<F: Flow>(run_id: &str, message: String) -> Error {
    Error::Message {
        flow: F::NAME.to_owned(),
        run_id: run_id.to_owned(),
        message,
    }
}

fn decode_answer<F: Flow, T: AgentIo>(run_id: &str, value: Value) -> Result<T, Error> {
    serde_json::from_value(value).map_err(|e| {
        message_error::<F>(
            run_id,
            format!(
                "the answer does not fit `{}`: {e}",
                std::any::type_name::<T>()
            ),
        )
    })
}

fn run_failed<F: Flow>(run_id: &str, cause: FlowError) -> Error {
    Error::Run {
        name: F::NAME.to_owned(),
        run_id: run_id.to_owned(),
        cause,
    }
}

fn decode_output<F: Flow>(run_id: &str, value: Value) -> Result<F::Output, Error> {
    decode(F::NAME, Direction::Output, value).map_err(|cause| run_failed::<F>(run_id, cause))
}

/// A run found by [`Flock::find_runs`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FoundRun {
    /// Its run id: re-attach with [`Flock::flow_handle`].
    pub run_id: String,
    /// Whether it is still running.
    pub running: bool,
}

impl FoundRun {
    #[cfg_attr(not(feature = "temporal"), allow(dead_code))]
    pub(crate) fn new(run_id: String, running: bool) -> Self {
        FoundRun { run_id, running }
    }
}

/// A started run: its id, its typed result, cancellation. Re-attach to a run started elsewhere
/// with [`Flock::flow_handle`].
#[derive(Debug)]
pub struct FlowHandle<F: Flow> {
    flock: Flock,
    run_id: String,
    state: HandleState,
    flow: std::marker::PhantomData<F>,
}

#[derive(Debug)]
enum HandleState {
    Local(tokio::sync::Mutex<Option<tokio::task::JoinHandle<Result<Value, FlowError>>>>),
    /// Found by id among this `Flock`'s local runs: messages only.
    LocalAttached,
    /// Started by this handle's `Flock` on Temporal.
    #[cfg(feature = "temporal")]
    Started,
    /// Found by id: its workflow type is checked before its result is used.
    #[cfg(feature = "temporal")]
    Reattached,
}

impl<F: Flow> FlowHandle<F> {
    /// The run id (on Temporal: the workflow id).
    pub fn id(&self) -> &str {
        &self.run_id
    }

    /// Waits for the run's result.
    pub async fn result(&self) -> Result<F::Output, Error> {
        let value = match (&self.state, &self.flock.inner.executor) {
            (HandleState::Local(task), _) => {
                let task = task.lock().await.take();
                let Some(task) = task else {
                    return Err(Error::Executor(format!(
                        "the result of local run `{}` was taken already",
                        self.run_id
                    )));
                };
                match task.await {
                    Ok(result) => result.map_err(|cause| run_failed::<F>(&self.run_id, cause))?,
                    Err(join) if join.is_cancelled() => {
                        return Err(run_failed::<F>(
                            &self.run_id,
                            FlowError::Cancelled {
                                message: "the run was cancelled".into(),
                            },
                        ));
                    }
                    Err(join) => {
                        return Err(run_failed::<F>(
                            &self.run_id,
                            FlowError::msg(format!("the run's task failed: {join}")),
                        ));
                    }
                }
            }
            (HandleState::LocalAttached, _) => {
                return Err(Error::Config(format!(
                    "the result of local run `{}` is given to the handle that started it; a handle found by id sends messages only",
                    self.run_id
                )));
            }
            #[cfg(feature = "temporal")]
            (state, Executor::Temporal(temporal)) => {
                if matches!(state, HandleState::Reattached) {
                    temporal.check_type(F::NAME, &self.run_id).await?;
                }
                temporal.result(F::NAME, &self.run_id).await?
            }
            #[cfg(feature = "temporal")]
            (_, Executor::Local) => {
                return Err(Error::Executor("a Temporal handle on a local Flock".into()));
            }
        };
        decode_output::<F>(&self.run_id, value)
    }

    /// Requests cancellation. On Temporal the run's pending agent calls, timers and child flows
    /// are cancelled and the run ends as cancelled.
    pub async fn cancel(&self) -> Result<(), Error> {
        match (&self.state, &self.flock.inner.executor) {
            (HandleState::Local(task), _) => {
                if let Some(task) = task.lock().await.as_ref() {
                    if task.is_finished() {
                        return Err(Error::RunEnded {
                            flow: F::NAME.to_owned(),
                            run_id: self.run_id.clone(),
                            status: "ended".into(),
                            message: format!(
                                "run `{}` of `{}` has already ended: there is nothing to cancel",
                                self.run_id,
                                F::NAME
                            ),
                        });
                    }
                    task.abort();
                }
                Ok(())
            }
            (HandleState::LocalAttached, _) => Err(Error::Config(format!(
                "local run `{}` is cancelled by the handle that started it",
                self.run_id
            ))),
            #[cfg(feature = "temporal")]
            (state, Executor::Temporal(temporal)) => {
                if matches!(state, HandleState::Reattached) {
                    temporal.check_type(F::NAME, &self.run_id).await?;
                }
                temporal.cancel(&self.run_id).await
            }
            #[cfg(feature = "temporal")]
            (_, Executor::Local) => {
                Err(Error::Executor("a Temporal handle on a local Flock".into()))
            }
        }
    }
}

impl<F: Flow> FlowHandle<F> {
    /// Sends the run signal `signal` (checked first: a value that does not fit is an error here,
    /// never a dropped signal). The flow takes it with [`FlowContext::wait`](crate::FlowContext::wait).
    pub async fn signal<T: AgentIo>(&self, signal: Signal<F, T>, value: T) -> Result<(), Error> {
        let value = encode(
            "signal",
            signal.name(),
            Direction::Input,
            &value,
            PayloadLimit::TEMPORAL,
        )
        .map_err(|e| message_error::<F>(&self.run_id, e.to_string()))?;
        self.signal_json(signal.name(), value).await
    }

    /// Asks the run query `query`: the state the flow last published for it.
    pub async fn query<T: AgentIo>(&self, query: Query<F, T>) -> Result<T, Error> {
        let value = self.query_json(query.name()).await?;
        decode_answer::<F, T>(&self.run_id, value)
    }

    /// Sends the run update `update` and waits for the flow's answer. An update its validator
    /// rejects is an error here and leaves the run as it was.
    pub async fn update<I: AgentIo, O: AgentIo>(
        &self,
        update: Update<F, I, O>,
        value: I,
    ) -> Result<O, Error> {
        let value = encode(
            "update",
            update.name(),
            Direction::Input,
            &value,
            PayloadLimit::TEMPORAL,
        )
        .map_err(|e| message_error::<F>(&self.run_id, e.to_string()))?;
        let answer = self.update_json(update.name(), value).await?;
        decode_answer::<F, O>(&self.run_id, answer)
    }

    /// Sends signal `name` as JSON (for tools that know messages by name: a CLI, a web hook).
    /// Checked like [`signal`](Self::signal): an undeclared signal or one whose JSON does not fit
    /// is an error naming the flow and the signal.
    pub async fn signal_json(&self, name: &str, value: Value) -> Result<(), Error> {
        let spec = F::default().spec();
        spec.check_message(MessageKind::Signal, name, &value)
            .map_err(|message| message_error::<F>(&self.run_id, message))?;
        match &self.flock.inner.executor {
            Executor::Local => self
                .local_mailbox()?
                .signal(name, value)
                .map_err(|message| message_error::<F>(&self.run_id, message)),
            #[cfg(feature = "temporal")]
            Executor::Temporal(temporal) => {
                self.check_reattached(temporal).await?;
                temporal.signal(F::NAME, &self.run_id, name, value).await
            }
        }
    }

    /// Asks query `name`, as JSON (see [`signal_json`](Self::signal_json)).
    pub async fn query_json(&self, name: &str) -> Result<Value, Error> {
        F::default()
            .spec()
            .message(MessageKind::Query, name)
            .map_err(|message| message_error::<F>(&self.run_id, message))?;
        match &self.flock.inner.executor {
            Executor::Local => self
                .local_mailbox()?
                .query(name)
                .map_err(|message| message_error::<F>(&self.run_id, message)),
            #[cfg(feature = "temporal")]
            Executor::Temporal(temporal) => {
                self.check_reattached(temporal).await?;
                temporal.query(F::NAME, &self.run_id, name).await
            }
        }
    }

    /// Sends update `name` as JSON and waits for the answer (see [`signal_json`](Self::signal_json)).
    pub async fn update_json(&self, name: &str, value: Value) -> Result<Value, Error> {
        let spec = F::default().spec();
        spec.check_message(MessageKind::Update, name, &value)
            .map_err(|message| message_error::<F>(&self.run_id, message))?;
        match &self.flock.inner.executor {
            Executor::Local => self
                .local_mailbox()?
                .update(name, value)
                .await
                .map_err(|message| message_error::<F>(&self.run_id, message)),
            #[cfg(feature = "temporal")]
            Executor::Temporal(temporal) => {
                self.check_reattached(temporal).await?;
                temporal.update(F::NAME, &self.run_id, name, value).await
            }
        }
    }

    fn local_mailbox(&self) -> Result<Arc<local::LocalMailbox>, Error> {
        match self.flock.inner.local_runs.get(&self.run_id) {
            Some(mailbox) if mailbox.flow_name() == F::NAME => Ok(mailbox),
            Some(mailbox) => Err(message_error::<F>(
                &self.run_id,
                format!(
                    "run `{}` is a run of `{}`",
                    self.run_id,
                    mailbox.flow_name()
                ),
            )),
            None => Err(message_error::<F>(
                &self.run_id,
                format!("run `{}` is not running", self.run_id),
            )),
        }
    }

    #[cfg(feature = "temporal")]
    async fn check_reattached(&self, temporal: &TemporalExecutor) -> Result<(), Error> {
        if matches!(self.state, HandleState::Reattached) {
            temporal.check_type(F::NAME, &self.run_id).await?;
        }
        Ok(())
    }
}

impl<'a, F: Flow> IntoFuture for RunRequest<'a, F> {
    type Output = Result<F::Output, Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            match &self.flock.inner.executor {
                // no record wanted: skip reading the history back
                #[cfg(feature = "temporal")]
                Executor::Temporal(_) => self.start().await?.result().await,
                Executor::Local => self.recorded().await.result,
            }
        })
    }
}

/// The result type of `flock.run(agent, ..)`.
pub type RunOutput<A> = ChainOutput<A>;

/// A run as the server describes it: what `status` and `list` show.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct RunInfo {
    /// The run id (the workflow id).
    pub run_id: String,
    /// The flow or hand-off chain (the workflow type).
    pub flow: String,
    /// `running`, `completed`, `failed`, `cancelled`, `terminated`, `continued_as_new`,
    /// `timed_out`, `paused` or `unknown`.
    pub status: String,
    /// When it started (RFC 3339, UTC).
    pub started_at: Option<String>,
    /// When it closed (RFC 3339, UTC), if it has.
    pub closed_at: Option<String>,
}

impl RunInfo {
    #[cfg_attr(not(feature = "temporal"), allow(dead_code))]
    pub(crate) fn new(
        run_id: String,
        flow: String,
        status: &str,
        started_at: Option<std::time::SystemTime>,
        closed_at: Option<std::time::SystemTime>,
    ) -> Self {
        RunInfo {
            run_id,
            flow,
            status: status.to_owned(),
            started_at: started_at.map(rfc3339),
            closed_at: closed_at.map(rfc3339),
        }
    }
}

/// `time` as RFC 3339 in UTC, to the second (`2026-12-02T03:04:29Z`): what Temporal's visibility
/// queries take.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// assert_eq!(flock::rfc3339(UNIX_EPOCH + Duration::from_secs(1_796_180_669)), "2026-12-02T03:04:29Z");
/// ```
pub fn rfc3339(time: std::time::SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(time).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Runs by name, with JSON input: for tools that know flows and agents by name (the command
/// line, a web hook). The input is checked against the flow's input schema first, and an
/// unknown name gets a "did you mean". Everything by id needs the Temporal executor.
#[cfg_attr(not(feature = "temporal"), allow(unused_variables))]
impl Flock {
    /// The flow, or the hand-off chain of the agent, called `name` (see
    /// [`Registry::flow_or_chain`]).
    pub fn flow_by_name(&self, name: &str) -> Result<&'static dyn DynFlow, Error> {
        self.registry().flow_or_chain(name)
    }

    /// Checks `input` against the input schema of flow (or agent) `name` (see
    /// [`Registry::check_input_json`]).
    pub fn check_input_json(
        &self,
        name: &str,
        input: &Value,
    ) -> Result<&'static dyn DynFlow, Error> {
        self.registry().check_input_json(name, input)
    }

    /// The live feed of the local executor's agent steps: every attempt's start, a failed
    /// attempt's retry, every step's end (duration, tokens), of every run this `Flock` runs from
    /// now on (child flows' included), as it happens. A subscriber that falls more than 1024
    /// events behind misses the oldest and is told so (`RecvError::Lagged`). Runs nobody
    /// subscribed to build no events.
    ///
    /// On Temporal the steps are in the workflow history: read them with
    /// [`run_record`](Self::run_record) (this is a configuration error there).
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let flock = flock::Flock::builder().local_debug(true).build().await?;
    /// let mut steps = flock.step_events()?;
    /// assert!(steps.try_recv().is_err()); // nothing ran yet
    /// # Ok::<(), flock::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn step_events(
        &self,
    ) -> Result<tokio::sync::broadcast::Receiver<crate::record::StepEvent>, Error> {
        match &self.inner.executor {
            Executor::Local => Ok(self.inner.settings.step_events.subscribe()),
            #[cfg(feature = "temporal")]
            Executor::Temporal(_) => Err(Error::Config(
                "step events are the local executor's live feed; on Temporal a run's steps are in its history: read them with `run_record`".into(),
            )),
        }
    }

    /// Runs flow (or agent chain) `name` on JSON input and gives its JSON result with the run
    /// record, on either executor.
    pub async fn run_json(&self, name: &str, input: Value, id: Option<String>) -> Recorded<Value> {
        let run_id = id.unwrap_or_else(|| format!("{}-{}", run_name(name), uuid::Uuid::new_v4()));
        let started = std::time::Instant::now();
        let started_at = std::time::SystemTime::now();
        let failed = |error: Error| Recorded {
            record: RunRecord::summary(
                &run_id,
                name,
                started_at,
                started.elapsed(),
                Value::Null,
                &Err(error.clone()),
            ),
            result: Err(error),
        };
        let flow = match self.check_input_json(name, &input) {
            Ok(flow) => flow,
            Err(error) => return failed(error),
        };
        let name = flow.spec().name;
        let inner = &self.inner;
        match &inner.executor {
            Executor::Local => {
                let attributes = BTreeMap::new();
                if let Err(error) =
                    inner
                        .local_ids
                        .claim(&run_id, name, IdReuse::default(), &attributes)
                {
                    return failed(error);
                }
                let mailbox = inner.local_runs.open(&run_id, flow.spec());
                let (result, record) = local::run_flow(
                    inner.settings.clone(),
                    inner.local_runs.clone(),
                    mailbox,
                    flow,
                    Arc::from(run_id.as_str()),
                    input,
                )
                .await;
                inner.local_ids.close(&run_id, result.is_ok());
                Recorded {
                    result: result.map_err(|cause| Error::Run {
                        name: name.to_owned(),
                        run_id: run_id.clone(),
                        cause,
                    }),
                    record,
                }
            }
            #[cfg(feature = "temporal")]
            Executor::Temporal(temporal) => {
                let result = async {
                    let attributes = BTreeMap::new();
                    temporal
                        .start_run(
                            temporal_start(
                                flow,
                                &run_id,
                                input.clone(),
                                IdReuse::default(),
                                &attributes,
                            ),
                            None,
                        )
                        .await?;
                    temporal.result(name, &run_id).await
                }
                .await;
                let mut record = RunRecord::summary(
                    &run_id,
                    name,
                    started_at,
                    started.elapsed(),
                    input,
                    &result,
                );
                temporal.fill_record(&mut record).await;
                Recorded { result, record }
            }
        }
    }

    /// Starts flow (or agent chain) `name` on JSON input without waiting; gives the run id.
    /// Temporal only: a local run lives in the process that started it (use
    /// [`run_json`](Self::run_json)).
    pub async fn start_json(
        &self,
        name: &str,
        input: Value,
        id: Option<String>,
    ) -> Result<String, Error> {
        let flow = self.check_input_json(name, &input)?;
        let run_id = id.unwrap_or_else(|| format!("{}-{}", run_name(name), uuid::Uuid::new_v4()));
        match &self.inner.executor {
            Executor::Local => Err(needs_temporal("starting a run without waiting for it")),
            #[cfg(feature = "temporal")]
            Executor::Temporal(temporal) => {
                let attributes = BTreeMap::new();
                temporal
                    .start_run(
                        temporal_start(flow, &run_id, input, IdReuse::default(), &attributes),
                        None,
                    )
                    .await?;
                Ok(run_id)
            }
        }
    }

    /// Run `run_id` as the server describes it; an unknown id is [`Error::NotFound`].
    pub async fn describe_run(&self, run_id: &str) -> Result<RunInfo, Error> {
        match &self.inner.executor {
            Executor::Local => Err(needs_temporal("describing a run by id")),
            #[cfg(feature = "temporal")]
            Executor::Temporal(temporal) => temporal.describe(run_id).await,
        }
    }

    /// The runs a Temporal visibility query selects (`WorkflowType = 'x' AND ExecutionStatus =
    /// 'Running'`; empty: all), newest first, at most `limit`.
    pub async fn list_runs(&self, query: &str, limit: usize) -> Result<Vec<RunInfo>, Error> {
        match &self.inner.executor {
            Executor::Local => Err(needs_temporal("listing runs")),
            #[cfg(feature = "temporal")]
            Executor::Temporal(temporal) => temporal.list(query, limit).await,
        }
    }

    /// Waits for the result of run `run_id`, as JSON: an error when it failed, was cancelled or
    /// terminated.
    pub async fn result_json(&self, run_id: &str) -> Result<Value, Error> {
        let info = self.describe_run(run_id).await?;
        match &self.inner.executor {
            Executor::Local => Err(needs_temporal("waiting for a run by id")),
            #[cfg(feature = "temporal")]
            Executor::Temporal(temporal) => temporal.result(&info.flow, run_id).await,
        }
    }

    /// The record of run `run_id` read back from its history, so far if it is still running.
    pub async fn run_record(&self, run_id: &str) -> Result<RunRecord, Error> {
        self.read_record(run_id, false).await
    }

    /// The steps of run `run_id`'s current generation so far (no earlier generations, no child
    /// flows): the command line's progress.
    #[cfg_attr(not(feature = "cli"), allow(dead_code))]
    pub(crate) async fn run_steps(&self, run_id: &str) -> Result<RunRecord, Error> {
        self.read_record(run_id, true).await
    }

    async fn read_record(&self, run_id: &str, current_steps: bool) -> Result<RunRecord, Error> {
        let info = self.describe_run(run_id).await?;
        match &self.inner.executor {
            Executor::Local => Err(needs_temporal("reading a run's record by id")),
            #[cfg(feature = "temporal")]
            Executor::Temporal(temporal) => {
                let mut record = RunRecord::summary(
                    run_id,
                    &info.flow,
                    std::time::SystemTime::now(),
                    std::time::Duration::ZERO,
                    Value::Null,
                    &Ok(Value::Null),
                );
                record.output = None;
                if current_steps {
                    temporal.current_steps(&mut record).await?;
                } else {
                    temporal.record_from_history(&mut record).await?;
                }
                Ok(record)
            }
        }
    }

    /// The generations of run `run_id` (Temporal: the runs `continue_as_new` links under its
    /// id): the current one's Temporal run id, and how many started after `known` (`None`: all
    /// of them), counting at most `limit`. For the command line's progress.
    #[cfg_attr(not(feature = "cli"), allow(dead_code))]
    pub(crate) async fn run_generations(
        &self,
        run_id: &str,
        known: Option<&str>,
        limit: u32,
    ) -> Result<(String, u32), Error> {
        match &self.inner.executor {
            Executor::Local => Err(needs_temporal("following a run's generations by id")),
            #[cfg(feature = "temporal")]
            Executor::Temporal(temporal) => temporal.generations_since(run_id, known, limit).await,
        }
    }

    /// Requests cancellation of run `run_id` (its pending agent calls, timers and child flows are
    /// cancelled; the run ends as cancelled).
    pub async fn cancel_run(&self, run_id: &str) -> Result<(), Error> {
        self.describe_run(run_id).await?;
        match &self.inner.executor {
            Executor::Local => Err(needs_temporal("cancelling a run by id")),
            #[cfg(feature = "temporal")]
            Executor::Temporal(temporal) => temporal.cancel(run_id).await,
        }
    }

    /// Terminates run `run_id` at once (no more flow code runs), recording `reason`.
    pub async fn terminate_run(&self, run_id: &str, reason: &str) -> Result<(), Error> {
        self.describe_run(run_id).await?;
        match &self.inner.executor {
            Executor::Local => Err(needs_temporal("terminating a run by id")),
            #[cfg(feature = "temporal")]
            Executor::Temporal(temporal) => temporal.terminate(run_id, reason).await,
        }
    }

    /// The flow of run `run_id`, for a message by name: described, then looked up here.
    async fn message_target(&self, run_id: &str) -> Result<&'static dyn DynFlow, Error> {
        let info = self.describe_run(run_id).await?;
        self.registry().flow(&info.flow).ok_or_else(|| {
            Error::NotFound(format!(
                "run `{run_id}` is a run of `{}`, which is not linked into this binary",
                info.flow
            ))
        })
    }

    /// Sends run `run_id` signal `name` as JSON, checked against what its flow declares.
    pub async fn signal_run_json(
        &self,
        run_id: &str,
        name: &str,
        value: Value,
    ) -> Result<(), Error> {
        let flow = self.message_target(run_id).await?;
        let spec = flow.spec();
        spec.check_message(MessageKind::Signal, name, &value)
            .map_err(|message| dyn_message_error(spec.name, run_id, message))?;
        match &self.inner.executor {
            Executor::Local => Err(needs_temporal("signalling a run by id")),
            #[cfg(feature = "temporal")]
            Executor::Temporal(temporal) => temporal.signal(spec.name, run_id, name, value).await,
        }
    }

    /// Asks run `run_id` query `name`, as JSON.
    pub async fn query_run_json(&self, run_id: &str, name: &str) -> Result<Value, Error> {
        let flow = self.message_target(run_id).await?;
        let spec = flow.spec();
        spec.message(MessageKind::Query, name)
            .map_err(|message| dyn_message_error(spec.name, run_id, message))?;
        match &self.inner.executor {
            Executor::Local => Err(needs_temporal("querying a run by id")),
            #[cfg(feature = "temporal")]
            Executor::Temporal(temporal) => temporal.query(spec.name, run_id, name).await,
        }
    }

    /// Sends run `run_id` update `name` as JSON and waits for the answer.
    pub async fn update_run_json(
        &self,
        run_id: &str,
        name: &str,
        value: Value,
    ) -> Result<Value, Error> {
        let flow = self.message_target(run_id).await?;
        let spec = flow.spec();
        spec.check_message(MessageKind::Update, name, &value)
            .map_err(|message| dyn_message_error(spec.name, run_id, message))?;
        match &self.inner.executor {
            Executor::Local => Err(needs_temporal("updating a run by id")),
            #[cfg(feature = "temporal")]
            Executor::Temporal(temporal) => temporal.update(spec.name, run_id, name, value).await,
        }
    }
}

/// The name a run id starts with: the flow's, or the agent's for its chain.
fn run_name(name: &str) -> &str {
    name.strip_suffix(".chain").unwrap_or(name)
}

fn needs_temporal(what: &str) -> Error {
    Error::Config(format!(
        "{what} needs the Temporal executor (`local_debug(false)`): local runs live in the process that started them"
    ))
}

fn dyn_message_error(flow: &str, run_id: &str, message: String) -> Error {
    Error::Message {
        flow: flow.to_owned(),
        run_id: run_id.to_owned(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_ids_remember_running_runs_and_the_last_closed_ones() {
        let ids = LocalIds::default();
        let none = BTreeMap::new();
        let claim = |id: &str, policy| ids.claim(id, "f", policy, &none);
        claim("running", IdReuse::FailedOnly).unwrap();
        claim("again", IdReuse::FailedOnly).unwrap();
        ids.close("again", true);
        claim("again", IdReuse::Allow).unwrap(); // started again: running, not forgotten
        for n in 0..=LOCAL_RETENTION {
            let id = format!("run-{n}");
            claim(&id, IdReuse::FailedOnly).unwrap();
            ids.close(&id, true);
        }
        // the oldest closed runs are forgotten; the newest are remembered, running ones always
        claim("run-0", IdReuse::FailedOnly).unwrap();
        assert!(claim("run-1", IdReuse::FailedOnly).is_err());
        let last = format!("run-{LOCAL_RETENTION}");
        assert!(claim(&last, IdReuse::FailedOnly).is_err());
        assert!(claim("running", IdReuse::Allow).is_err());
        assert!(claim("again", IdReuse::Allow).is_err());
        let table = ids.0.lock().unwrap();
        assert!(
            table.runs.len() <= LOCAL_RETENTION + 3,
            "{}",
            table.runs.len()
        );
        assert!(table.closed.len() <= LOCAL_RETENTION);
    }
}
