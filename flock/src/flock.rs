//! The [`Flock`] facade: configuration, the registry, and runs on the chosen executor.
//!
//! The facade holds one [`Backend`] (the local executor or Temporal) and never asks which one it
//! is: typed calls encode their inputs, hand the backend JSON, and decode what comes back; the
//! by-name calls (for tools that know flows by name) check their JSON and hand it on the same way.

mod watch;

use std::collections::{BTreeMap, BTreeSet};
use std::future::{Future, IntoFuture};
use std::pin::Pin;

use futures::future::BoxFuture;
use std::sync::Arc;

use serde_json::Value;

use crate::agent::{Agent, AgentIo};
use crate::approval::{APPROVALS_QUERY, APPROVE_UPDATE, Decision, Pending};
use crate::chain::{Chain, ChainOutput, HandOff};
use crate::config::{TemporalExecutorConfig, WorkerLimits};
use crate::error::Error;
use crate::executor::{Backend, Settings, Started};
use crate::flow::{DynFlow, Flow, decode, encode};
use crate::message::{Query, Signal, Update};
use crate::model::{Model, Models, Provider};
use crate::record::RunRecord;
use crate::registry::Registry;
use crate::run::{FoundRun, IdReuse, Recorded, RunInfo, RunStart, fresh_run_id};
use crate::spec::{Direction, MessageKind, PayloadLimit};

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
    backend: Box<dyn Backend>,
    /// The metrics endpoint, when [`FlockBuilder::metrics`] asked for one.
    metrics: Option<crate::observe::MetricsServer>,
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
    serve_only: Option<Vec<String>>,
    metrics: Option<String>,
    layers: crate::runtime::StepLayers,
    transcript_store: Option<Arc<dyn crate::codec::BlobStore>>,
    model_limits: Vec<(String, crate::limit::Limit)>,
    /// A configuration mistake found by a builder method, reported by `build()`.
    mistake: Option<String>,
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
            serve_only: None,
            metrics: None,
            layers: Default::default(),
            transcript_store: None,
            model_limits: Vec::new(),
            mistake: None,
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
            priority: Default::default(),
            budget: None,
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

    /// A handle to a run started elsewhere (on Temporal: by another process, or an earlier
    /// start; on the local executor: by this `Flock`), by its id. Before it is used, the handle
    /// checks that the run is one of `flow`: a run of another flow is [`Error::WrongFlow`] naming
    /// both, never another flow's output; an unknown id is [`Error::NotFound`].
    pub fn flow_handle<F: Flow>(
        &self,
        flow: F,
        run_id: impl Into<String>,
    ) -> Result<FlowHandle<F>, Error> {
        let _ = flow;
        Ok(FlowHandle {
            flock: self.clone(),
            run_id: Arc::from(run_id.into()),
            started: Started::default(),
            found_by_id: true,
            early: Default::default(),
            flow: std::marker::PhantomData,
        })
    }

    /// The backlog of task queue `queue` (Temporal only; the `Flock`'s own queue when `None`):
    /// waiting flow and agent tasks, the oldest one's age, add and dispatch rates, pollers. What
    /// an autoscaler reads; `flock queue` prints it.
    pub async fn queue_stats(&self, queue: Option<&str>) -> Result<crate::QueueStats, Error> {
        let queue = queue.unwrap_or(&self.inner.temporal.task_queue);
        self.backend().queue_stats(queue).await
    }

    /// The history of run `run_id` (Temporal only), as JSON: what [`replay`](Self::replay) takes.
    /// Record the histories of your flows' runs into your repository and replay them in CI, so
    /// that a change to a flow body that would break runs in flight fails a test, not production.
    pub async fn history_json(&self, run_id: &str) -> Result<Vec<u8>, Error> {
        self.backend().history_json(run_id).await
    }

    /// Replays a recorded history (JSON, from [`history_json`](Self::history_json), or
    /// `temporal workflow show --output json`) against the flows linked into this binary, with
    /// the Temporal SDK's replayer. `Ok` when the current code makes the same decisions; a flow
    /// changed without [`FlowContext::patched`](crate::FlowContext::patched) fails with
    /// [`FlowError::NonDeterminism`](crate::FlowError::NonDeterminism). The replay itself talks
    /// to no server. Temporal only.
    pub async fn replay(&self, history_json: &[u8]) -> Result<(), Error> {
        self.backend().replay(history_json.to_vec()).await
    }

    /// Makes `build_id` the current version of this Flock's worker deployment
    /// ([`TemporalExecutorConfig::deployment`]): new runs go to that build's workers, and
    /// auto-upgrading runs move to it; pinned runs stay where they are. The build's workers must
    /// be polling (this waits up to `wait_retry_window` for them). Temporal only.
    pub async fn set_current_version(&self, build_id: &str) -> Result<(), Error> {
        self.backend().set_current_version(build_id).await
    }

    /// The build id of the deployment version run `run_id` is on (pinned to, or last ran on),
    /// or `None` for a run on unversioned workers. Temporal only.
    pub async fn run_build_id(&self, run_id: &str) -> Result<Option<String>, Error> {
        self.backend().run_build_id(run_id).await
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
        self.find_runs_by_name(F::NAME, attributes).await
    }

    /// [`find_runs`](Self::find_runs) of flow `flow`, by name (the flow need not be linked in).
    pub async fn find_runs_by_name(
        &self,
        flow: &str,
        attributes: &[(&str, &str)],
    ) -> Result<Vec<FoundRun>, Error> {
        let mut wanted = BTreeMap::new();
        for (name, value) in attributes {
            let identifier =
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !identifier || value.contains(['\'', '"', '\\']) {
                return Err(Error::Config(format!(
                    "cannot search runs of `{flow}` by `{name}` = `{value}`: a search attribute's name is an identifier and its value has no quotes or backslashes"
                )));
            }
            wanted.insert((*name).to_owned(), (*value).to_owned());
        }
        self.backend().find_runs(flow, &wanted).await
    }

    /// Stops the in-process worker (if any) after its running tasks finish.
    pub async fn shutdown(&self) -> Result<(), Error> {
        self.backend().shutdown().await
    }

    /// The executor's backend.
    pub(crate) fn backend(&self) -> &dyn Backend {
        &*self.inner.backend
    }

    #[cfg(feature = "temporal")]
    pub(crate) fn settings(&self) -> &Arc<Settings> {
        &self.inner.settings
    }

    /// Checks that every task queue the definitions name is served: by this process's worker
    /// (the configured `task_queue`) or, as declared, elsewhere.
    #[cfg(feature = "temporal")]
    pub(crate) fn check_queues(&self) -> Result<(), Error> {
        crate::executor::check_queues(
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
                "flow `{}` is not registered: register it with `Flock::builder().flow(..)` (or, \
                 with `serve_only`, name it or a flow that calls it there)",
                F::NAME
            ))
        })
    }
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

    /// Serves only the flows, agents and hand-off chains named here (by their names, e.g.
    /// `MyFlow::NAME`) and what they call (see [`Registry::only`]), instead of every one linked
    /// into the binary: a worker for part of an application, or a test that should not see the
    /// definitions of other tests (their task queues included). Calling it again adds names. A
    /// name that is not registered makes [`build`](Self::build) fail with [`Error::NotFound`].
    ///
    /// ```rust,standalone_crate
    /// use flock::prelude::*;
    ///
    /// #[derive(Serialize, Deserialize, JsonSchema)]
    /// pub struct N { pub n: u32 }
    ///
    /// #[agent]
    /// async fn double(input: N) -> N { N { n: input.n * 2 } }
    ///
    /// #[agent]
    /// async fn square(input: N) -> N { N { n: input.n * input.n } }
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let flock = Flock::builder().serve_only(["double"]).build().await.unwrap();
    /// assert!(flock.registry().agent("double").is_some());
    /// assert!(flock.registry().agent("square").is_none());
    /// assert!(Flock::builder().serve_only(["dubble"]).build().await.is_err());
    /// # });
    /// ```
    pub fn serve_only<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.serve_only
            .get_or_insert_with(Vec::new)
            .extend(names.into_iter().map(Into::into));
        self
    }

    /// Concurrency limits of the in-process worker.
    pub fn worker_limits(mut self, limits: WorkerLimits) -> Self {
        self.worker_limits = limits;
        self
    }

    /// Limits the requests to model `name` (`"openai/gpt-4o-mini"`) or to every model of
    /// provider `name` (`"openai"`): at most `max_concurrent` at once, at most `per_second`
    /// started per second, in each process that runs agents (see [`limit`](crate::limit)), so
    /// that many calls at once become a steady stream inside the provider's limits. A limit that
    /// cannot be enforced (0, a rate not above 0) fails [`build`](Self::build).
    ///
    /// ```
    /// use flock::{Flock, Limit};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let flock = Flock::builder()
    ///     .model_limit("openai", Limit::new().max_concurrent(16).per_second(8.0))
    ///     .build()
    ///     .await
    ///     .unwrap();
    /// let error = Flock::builder()
    ///     .model_limit("openai", Limit::new().per_second(0.0))
    ///     .build()
    ///     .await
    ///     .unwrap_err();
    /// assert!(error.to_string().contains("the limit of model `openai`: `per_second` must be"));
    /// # });
    /// ```
    pub fn model_limit(mut self, name: impl Into<String>, limit: crate::limit::Limit) -> Self {
        self.model_limits.push((name.into(), limit));
        self
    }

    /// Says how this `Flock`'s workers reach MCP server `server.name()`, whose tools the agents
    /// that name it (`#[agent(mcp = ["name"])]`) offer their models (feature `mcp`; see
    /// [`mcp`](crate::mcp)). A name given twice, an empty command or a URL that does not parse
    /// is an error at `build()`.
    #[cfg(feature = "mcp")]
    pub fn mcp_server(mut self, server: crate::mcp::McpServer) -> Self {
        if let Err(problem) = self.models.mcp_mut().add(server) {
            self.mistake.get_or_insert(problem);
        }
        self
    }

    /// Adds a layer around every agent call of every run (see
    /// [`StepLayer`](crate::runtime::StepLayer)): limits, budgets, checks written once for both
    /// executors. The first added is the outermost. On Temporal it runs in workflow code: the
    /// workers' `Flock` must have the same layers, deterministic ones.
    pub fn step_layer(mut self, layer: impl crate::runtime::StepLayer) -> Self {
        self.layers.layers.push(Arc::new(layer));
        self
    }

    /// Keeps the transcripts of agents that run step by step in `store` too, so that the next
    /// model request of a conversation finds it on any worker: a directory every worker reaches
    /// ([`FsBlobStore`](crate::codec::FsBlobStore)) or an S3-compatible bucket
    /// (`ObjectStoreBlobStore`, feature `s3`). Without it a transcript lives in the memory of the
    /// worker that made it, and a request that reaches another worker sends its conversation
    /// whole (a larger history, the same result). Transcripts are encrypted with the codec's
    /// keys when it has some. See [`model::transcript`](crate::model::transcript).
    pub fn transcript_store(mut self, store: impl crate::codec::BlobStore) -> Self {
        self.transcript_store = Some(Arc::new(store));
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
    /// forever ([`Error::UnservedQueues`]).
    pub async fn build(mut self) -> Result<Flock, Error> {
        let mut registry = self.registry?;
        if let Some(names) = &self.serve_only {
            registry = registry.only(names.iter().map(String::as_str))?;
        }
        // the batches of `ctx.map`, on every worker that runs flows calling agents
        if registry.agents().next().is_some() {
            registry.insert_builtin(&crate::map::REGISTRATION)?;
        }
        // the rest of long sessions of agents that run step by step
        if registry.has_steps() {
            registry.insert_builtin(&crate::durable_loop::REGISTRATION)?;
        }
        // reqwest clients in this binary (rmcp's, the OTLP exporter's) need a rustls provider
        #[cfg(feature = "mcp")]
        crate::observe::install_crypto_provider();
        // Encryption configured in the environment is applied on every path that builds a Flock
        self.temporal = self.temporal.with_env_codec()?;
        self.models.prices().check().map_err(Error::Config)?;
        self.worker_limits.check()?;
        if let Some(mistake) = self.mistake.take() {
            return Err(Error::Config(mistake));
        }
        // Before the executor: its worker reports to the metrics when they are on.
        let metrics = self
            .metrics
            .as_deref()
            .map(crate::observe::serve_metrics)
            .transpose()?;
        // A Flock that runs agents (the local executor, or a Temporal worker in this process)
        // refuses a model that cannot answer (no key, a malformed URL) now, not at the first
        // call; a client of a Temporal server does not call models.
        let runs_agents = self.local_debug || self.in_process_worker;
        for agent in registry.agents() {
            let spec = agent.spec();
            // (a warning, not an error: a binary links every agent, and a worker serves the
            // agents of the servers it configures; a call of one it lacks fails naming it)
            if runs_agents && let Some(server) = self.models.missing_mcp_server(spec) {
                tracing::warn!(
                    agent = spec.name,
                    "agent `{}` ({}) offers the tools of MCP server `{server}`, which this Flock does not configure: its calls here will fail; add `.mcp_server(McpServer::stdio(\"{server}\", ..))` or `McpServer::http` (feature `mcp`)",
                    spec.name,
                    spec.location
                );
            }
            if spec.kind != crate::spec::AgentKind::Declarative {
                continue;
            }
            let Some(name) = self.models.name_for(spec.model) else {
                continue;
            };
            match self.models.resolve(name) {
                Err(e) => {
                    return Err(Error::Config(format!(
                        "agent `{}` ({}): {e}",
                        spec.name, spec.location
                    )));
                }
                Ok((model, _)) if runs_agents => {
                    if let Some(problem) = model.unusable() {
                        return Err(Error::Config(format!(
                            "agent `{}` ({}) cannot be answered by model `{name}`: {problem}",
                            spec.name, spec.location
                        )));
                    }
                }
                Ok(_) => {}
            }
        }
        let limits = crate::limit::StepLimits::of(
            registry
                .agents()
                .map(|agent| agent.spec())
                .chain(registry.steps().map(|step| step.spec())),
        )?;
        for (name, limit) in self.model_limits {
            self.models.set_limit(name, limit).map_err(Error::Config)?;
        }
        let payload_limit = crate::spec::PayloadLimit::of(self.temporal.codec.as_ref());
        let mut layers = self.layers;
        if registry.has_steps() {
            layers.agent_loop = Some(Arc::new(crate::durable_loop::DurableLoop::new(
                registry.clone(),
                payload_limit,
            )));
        }
        let settings = Arc::new(Settings {
            retry: self.temporal.retry_policy(),
            start_to_close: self.temporal.activity_start_to_close,
            models: Arc::new({
                let mut models = self.models;
                if let Some(store) = self.transcript_store {
                    models.set_transcript_store(store, self.temporal.codec.clone());
                }
                models
            }),
            registry,
            step_events: Default::default(),
            payload_limit,
            layers,
            limits,
        });
        let backend = crate::executor::backend(
            self.local_debug,
            &self.temporal,
            &settings,
            self.in_process_worker.then_some(self.worker_limits),
            &self.served_elsewhere,
        )
        .await?;
        Ok(Flock {
            inner: Arc::new(Inner {
                settings,
                temporal: self.temporal,
                served_elsewhere: self.served_elsewhere,
                backend,
                metrics,
            }),
        })
    }
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
    priority: crate::run::Priority,
    budget: Option<crate::usage::Budget>,
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

    /// Tags the run with keyword search attribute `name` = `value` (a ticket id, a customer), so
    /// that [`Flock::find_runs`] finds it. On Temporal the attribute must be registered on the
    /// namespace (`temporal operator search-attribute create --name TicketId --type Keyword`;
    /// the dev server: [`DevServerOptions::search_attributes`](crate::dev_server::DevServerOptions)).
    pub fn search_attribute(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.attributes.insert(name.into(), value.into());
        self
    }

    /// The run's priority key: 1 (first) to 5 (last); see [`Priority`](crate::Priority). Its
    /// agents and child flows inherit it. A key out of range fails the start.
    pub fn priority(mut self, key: u32) -> Self {
        self.priority.key = Some(key);
        self
    }

    /// The tenant whose share of backlogged work this run's tasks count toward, and its weight
    /// (1.0 is the default; 3.0 gets three times the share of a tenant of weight 1); see
    /// [`Priority`](crate::Priority). A key over 64 bytes or a weight outside 0.001–1000 fails
    /// the start.
    pub fn fairness(mut self, key: impl Into<String>, weight: f32) -> Self {
        self.priority.fairness_key = Some(key.into());
        self.priority.fairness_weight = Some(weight);
        self
    }

    /// What the run tree may spend on models (see [`Budget`](crate::Budget)): its agents', its
    /// child flows' and their agents' model requests together. Over it, the run fails with
    /// [`FlowError::BudgetExceeded`](crate::FlowError::BudgetExceeded) naming the budget and the
    /// totals. A budget that allows nothing (0 tokens, $0 or less, no limit set) fails the start.
    ///
    /// ```
    /// use flock::prelude::*;
    /// use flock::Budget;
    ///
    /// #[derive(Serialize, Deserialize, JsonSchema)]
    /// pub struct Topic { pub name: String }
    /// #[derive(Serialize, Deserialize, JsonSchema)]
    /// pub struct Summary { pub text: String }
    ///
    /// #[agent]
    /// async fn title(input: Topic) -> Summary {
    ///     Summary { text: input.name.to_uppercase() }
    /// }
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let flock = flock::Flock::builder().build().await.unwrap();
    /// let topic = Topic { name: "durable agents".into() };
    /// // a code agent spends no tokens; a declarative one's model requests count
    /// let summary = flock.run(title, topic).budget(Budget::tokens(10_000)).await.unwrap();
    /// assert_eq!(summary.text, "DURABLE AGENTS");
    /// # });
    /// ```
    pub fn budget(mut self, budget: crate::usage::Budget) -> Self {
        self.budget = Some(budget);
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

    /// What the run starts with, at the JSON level, checked: the input within the payload limit,
    /// the flow registered, the signal declared and fitting.
    fn into_start(self) -> Result<RunStart, Error> {
        let run_id = match self.id {
            Some(id) => Arc::from(id),
            None => fresh_run_id(F::NAME),
        };
        let limit = self.flock.inner.settings.payload_limit;
        let input = encode("flow", F::NAME, Direction::Input, &self.input, limit)
            .map_err(|cause| run_failed::<F>(&run_id, cause))?;
        let flow = self.flock.definition::<F>()?.spec();
        self.priority.check().map_err(|problem| {
            Error::Config(format!("run `{run_id}` of `{}`: {problem}", F::NAME))
        })?;
        if let Some(problem) = self.budget.as_ref().and_then(crate::usage::Budget::problem) {
            return Err(Error::Config(format!(
                "run `{run_id}` of `{}`: the budget {problem}",
                F::NAME
            )));
        }
        let signal = match self.signal {
            None => None,
            Some((name, json)) => {
                let value = json.map_err(|message| message_error::<F>(&run_id, message))?;
                flow.check_message(MessageKind::Signal, name, &value)
                    .map_err(|message| message_error::<F>(&run_id, message))?;
                Some((name, value))
            }
        };
        Ok(RunStart {
            flow,
            run_id,
            input,
            id_reuse: self.id_reuse,
            attributes: self.attributes,
            signal,
            priority: self.priority,
            budget: self.budget,
        })
    }

    /// Runs and gives the result together with the run record.
    ///
    /// On Temporal the record is read back from the workflow's history: each agent (activity) with
    /// its input, output, error and attempts (Temporal keeps the last attempt's timing and the
    /// failure before it), model token usage, and child flows with their timing and outcome.
    /// Agents run as local activities are listed from their markers, which keep their input too.
    pub async fn recorded(self) -> Recorded<F::Output> {
        let flock = self.flock;
        let (started, started_at) = (std::time::Instant::now(), std::time::SystemTime::now());
        let id = self.id.clone();
        match self.into_start() {
            Ok(start) => {
                let run_id = start.run_id.clone();
                flock
                    .backend()
                    .run(start, true)
                    .await
                    .map(|value| decode_output::<F>(&run_id, value))
            }
            Err(error) => {
                let run_id = id.unwrap_or_default();
                Recorded::failed(&run_id, F::NAME, started_at, started, error)
            }
        }
    }

    /// Starts the run and returns a handle to it, without waiting for its result. With a
    /// [`signal`](Self::signal), a run with this id that is running already is signalled
    /// instead.
    pub async fn start(self) -> Result<FlowHandle<F>, Error> {
        let flock = self.flock;
        let start = self.into_start()?;
        let run_id = start.run_id.clone();
        let early = flock.backend().step_events().ok();
        let started = flock.backend().start(start).await?;
        Ok(FlowHandle {
            flock: flock.clone(),
            run_id,
            started,
            found_by_id: false,
            early: std::sync::Mutex::new(early),
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
        let flock = self.flock;
        let start = self.into_start()?;
        let run_id = start.run_id.clone();
        let value = encode(
            "update",
            update.name(),
            Direction::Input,
            &value,
            PayloadLimit::TEMPORAL,
        )
        .map_err(|cause| message_error::<F>(&run_id, cause.to_string()))?;
        start
            .flow
            .check_message(MessageKind::Update, update.name(), &value)
            .map_err(|message| message_error::<F>(&run_id, message))?;
        let early = flock.backend().step_events().ok();
        let (started, answer) = flock
            .backend()
            .update_with_start(start, update.name(), value)
            .await?;
        let handle = FlowHandle {
            flock: flock.clone(),
            run_id: run_id.clone(),
            started,
            found_by_id: false,
            early: std::sync::Mutex::new(early),
            flow: std::marker::PhantomData,
        };
        Ok((handle, decode_answer::<F, O>(&run_id, answer)?))
    }
}

impl<'a, F: Flow> IntoFuture for RunRequest<'a, F> {
    type Output = Result<F::Output, Error>;
    type IntoFuture = RunFuture<'a, F>;

    fn into_future(self) -> RunFuture<'a, F> {
        let flock = self.flock;
        let running = match self.into_start() {
            Ok(start) => {
                let run_id = start.run_id.clone();
                // no record wanted: on Temporal the history is not read back
                Ok((flock.backend().run_result(start), run_id))
            }
            Err(error) => Err(Some(error)),
        };
        RunFuture {
            running,
            flow: std::marker::PhantomData,
        }
    }
}

/// A backend's run, for its JSON result alone.
type RunResult<'a> = BoxFuture<'a, Result<Value, Error>>;

/// An awaited [`RunRequest`]: the run's typed result.
#[must_use = "a run does nothing until it is awaited"]
pub struct RunFuture<'a, F: Flow> {
    /// The backend's run and the run id, or the error that kept the run from starting (taken
    /// when it is given).
    running: Result<(RunResult<'a>, Arc<str>), Option<Error>>,
    flow: std::marker::PhantomData<fn() -> F>,
}

impl<F: Flow> std::fmt::Debug for RunFuture<'_, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunFuture")
            .field("flow", &F::NAME)
            .finish_non_exhaustive()
    }
}

impl<F: Flow> Future for RunFuture<'_, F> {
    type Output = Result<F::Output, Error>;

    fn poll(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        match &mut self.get_mut().running {
            Ok((run, run_id)) => run
                .as_mut()
                .poll(cx)
                .map(|result| result.and_then(|value| decode_output::<F>(run_id, value))),
            Err(error) => std::task::Poll::Ready(Err(error.take().unwrap_or_else(|| {
                Error::Executor(format!(
                    "the run of `{}` was awaited again after it ended",
                    F::NAME
                ))
            }))),
        }
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

fn run_failed<F: Flow>(run_id: &str, cause: crate::error::FlowError) -> Error {
    Error::Run {
        name: F::NAME.to_owned(),
        run_id: run_id.to_owned(),
        cause,
    }
}

fn decode_output<F: Flow>(run_id: &str, value: Value) -> Result<F::Output, Error> {
    decode(F::NAME, Direction::Output, value).map_err(|cause| run_failed::<F>(run_id, cause))
}

/// A started run: its id, its typed result, cancellation and messages. Re-attach to a run
/// started elsewhere with [`Flock::flow_handle`].
#[derive(Debug)]
pub struct FlowHandle<F: Flow> {
    flock: Flock,
    run_id: Arc<str>,
    /// What the backend keeps for the handle that started the run (its result, locally).
    started: Started,
    /// Found by id: the run's flow is checked before the handle is used.
    found_by_id: bool,
    /// The local executor's step feed, subscribed before the run started: what the handle's
    /// first [`events`](Self::events) stream reads, so that it sees the run from its first step.
    early: std::sync::Mutex<Option<tokio::sync::broadcast::Receiver<crate::record::StepEvent>>>,
    flow: std::marker::PhantomData<F>,
}

impl<F: Flow> FlowHandle<F> {
    /// The run id (on Temporal: the workflow id).
    pub fn id(&self) -> &str {
        &self.run_id
    }

    /// A handle found by id: checks that the run is one of `F`.
    async fn checked(&self) -> Result<&dyn Backend, Error> {
        let backend = self.flock.backend();
        if self.found_by_id {
            backend.check_flow(F::NAME, &self.run_id).await?;
        }
        Ok(backend)
    }

    /// Waits for the run's result. It can be asked again: every call gives it.
    pub async fn result(&self) -> Result<F::Output, Error> {
        let _keep = &self.started;
        let value = self.checked().await?.result(F::NAME, &self.run_id).await?;
        decode_output::<F>(&self.run_id, value)
    }

    /// Requests cancellation: the run's pending agent calls, timers and child flows are
    /// cancelled and the run ends as cancelled. A run that has ended is [`Error::RunEnded`].
    pub async fn cancel(&self) -> Result<(), Error> {
        self.checked().await?.cancel(F::NAME, &self.run_id).await
    }

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
        F::default()
            .spec()
            .check_message(MessageKind::Signal, name, &value)
            .map_err(|message| message_error::<F>(&self.run_id, message))?;
        self.checked()
            .await?
            .signal(F::NAME, &self.run_id, name, value)
            .await
    }

    /// Asks query `name`, as JSON (see [`signal_json`](Self::signal_json)).
    pub async fn query_json(&self, name: &str) -> Result<Value, Error> {
        F::default()
            .spec()
            .message(MessageKind::Query, name)
            .map_err(|message| message_error::<F>(&self.run_id, message))?;
        self.checked()
            .await?
            .query(F::NAME, &self.run_id, name)
            .await
    }

    /// The run's live events: steps started and finished, retries, calls waiting for
    /// approval, model text as it streams, and the run's end (see [`crate::events`]). Works on a
    /// handle re-attached by id in another process too (on Temporal).
    ///
    /// ```
    /// use flock::prelude::*;
    /// use futures::StreamExt;
    ///
    /// #[derive(Debug, Serialize, Deserialize, JsonSchema)]
    /// pub struct Topic { pub name: String }
    ///
    /// /// Says hello.
    /// #[agent]
    /// pub async fn greet(topic: Topic) -> Result<Topic, AgentError> {
    ///     Ok(Topic { name: format!("hello, {}", topic.name) })
    /// }
    ///
    /// #[flow]
    /// pub async fn hello(ctx: &FlowContext, topic: Topic) -> Result<Topic, FlowError> {
    ///     ctx.call(greet, topic).await
    /// }
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let flock = Flock::builder().flow(hello).build().await?;
    /// let handle = flock.start_flow(hello, Topic { name: "world".into() }).await?;
    /// let mut events = handle.events().await?;
    /// let mut seen = Vec::new();
    /// while let Some(event) = events.next().await {
    ///     seen.push(serde_json::to_value(event?).unwrap()["type"].clone());
    /// }
    /// assert_eq!(seen, ["step_started", "step_finished", "run_finished"]);
    /// # Ok::<(), flock::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn events(&self) -> Result<crate::events::RunEvents, Error> {
        self.checked().await?;
        let early = self.early.lock().unwrap_or_else(|p| p.into_inner()).take();
        Ok(watch::watch(
            self.flock.clone(),
            F::NAME.to_owned(),
            self.run_id.to_string(),
            early,
        ))
    }

    /// The tool calls of the run that wait for approval, in the order they were asked for (see
    /// [`approval`](crate::approval)).
    pub async fn approvals(&self) -> Result<Vec<Pending>, Error> {
        let backend = self.checked().await?;
        let waiting = backend
            .query(F::NAME, &self.run_id, APPROVALS_QUERY)
            .await?;
        read_pending(F::NAME, &self.run_id, waiting)
    }

    /// Approves waiting tool call `call` ([`Pending::call`]): the tool runs, once.
    pub async fn approve(&self, call: &str) -> Result<(), Error> {
        self.decide(Decision::approve(call)).await
    }

    /// Denies waiting tool call `call`: it does not run, and the model is told `reason`.
    pub async fn deny(&self, call: &str, reason: &str) -> Result<(), Error> {
        self.decide(Decision::deny(call, reason)).await
    }

    /// Decides waiting tool call `decision.call`. A call that does not wait (decided already,
    /// never asked for, or its run ended) is an error naming it, and nothing changes.
    pub async fn decide(&self, decision: Decision) -> Result<(), Error> {
        let value = serde_json::to_value(&decision).unwrap_or_default();
        self.checked()
            .await?
            .update(F::NAME, &self.run_id, APPROVE_UPDATE, value)
            .await
            .map(drop)
    }

    /// Sends update `name` as JSON and waits for the answer (see [`signal_json`](Self::signal_json)).
    pub async fn update_json(&self, name: &str, value: Value) -> Result<Value, Error> {
        F::default()
            .spec()
            .check_message(MessageKind::Update, name, &value)
            .map_err(|message| message_error::<F>(&self.run_id, message))?;
        self.checked()
            .await?
            .update(F::NAME, &self.run_id, name, value)
            .await
    }
}

/// The result type of `flock.run(agent, ..)`.
pub type RunOutput<A> = ChainOutput<A>;

/// Runs by name and id, with JSON: for tools that know flows and agents by name (the command
/// line, a web hook). The input is checked against the flow's input schema first, and an
/// unknown name gets a "did you mean". On the local executor, runs by id are this `Flock`'s.
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
        self.backend().step_events()
    }

    /// The start of flow (or agent chain) `name` on JSON `input`, checked.
    fn start_by_name(
        &self,
        name: &str,
        input: Value,
        id: Option<String>,
    ) -> Result<RunStart, Error> {
        let flow = self.check_input_json(name, &input)?;
        let run_id = match id {
            Some(id) => Arc::from(id),
            None => fresh_run_id(run_name(name)),
        };
        Ok(RunStart::new(flow.spec(), run_id, input))
    }

    /// Runs flow (or agent chain) `name` on JSON input and gives its JSON result with the run
    /// record, on either executor.
    pub async fn run_json(&self, name: &str, input: Value, id: Option<String>) -> Recorded<Value> {
        let (started, started_at) = (std::time::Instant::now(), std::time::SystemTime::now());
        let run_id = id
            .clone()
            .unwrap_or_else(|| format!("{}-{}", run_name(name), uuid::Uuid::new_v4()));
        match self.start_by_name(name, input, Some(run_id.clone())) {
            Ok(start) => self.backend().run(start, true).await,
            Err(error) => Recorded::failed(&run_id, name, started_at, started, error),
        }
    }

    /// Starts flow (or agent chain) `name` on JSON input without waiting; gives the run id. A
    /// local run lives as long as this `Flock` (and is found by id through it).
    pub async fn start_json(
        &self,
        name: &str,
        input: Value,
        id: Option<String>,
    ) -> Result<String, Error> {
        let start = self.start_by_name(name, input, id)?;
        let run_id = start.run_id.clone();
        self.backend().start(start).await?;
        Ok(run_id.to_string())
    }

    /// The live events of run `run_id` (see [`FlowHandle::events`]); the run's flow need not be
    /// linked into this binary. An unknown id is [`Error::NotFound`]. On the local executor the
    /// events start now (a run of this `Flock`); on Temporal the stream first catches up with
    /// the steps so far.
    pub async fn events_of_run(&self, run_id: &str) -> Result<crate::events::RunEvents, Error> {
        let feed = self.backend().step_events().ok();
        let flow = self.describe_run(run_id).await?.flow;
        Ok(watch::watch(self.clone(), flow, run_id.to_owned(), feed))
    }

    /// Run `run_id` as its executor describes it; an unknown id is [`Error::NotFound`].
    pub async fn describe_run(&self, run_id: &str) -> Result<RunInfo, Error> {
        self.backend().describe(run_id).await
    }

    /// The runs a Temporal visibility query selects (`WorkflowType = 'x' AND ExecutionStatus =
    /// 'Running'`; empty: all), newest first, at most `limit`.
    pub async fn list_runs(&self, query: &str, limit: usize) -> Result<Vec<RunInfo>, Error> {
        self.backend().list(query, limit).await
    }

    /// Waits for the result of run `run_id`, as JSON: an error when it failed, was cancelled or
    /// terminated.
    pub async fn result_json(&self, run_id: &str) -> Result<Value, Error> {
        let info = self.describe_run(run_id).await?;
        self.backend().result(&info.flow, run_id).await
    }

    /// The record of run `run_id` read back from its history, so far if it is still running.
    pub async fn run_record(&self, run_id: &str) -> Result<RunRecord, Error> {
        let info = self.describe_run(run_id).await?;
        self.backend().record(&info.flow, run_id).await
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
        self.backend().generations(run_id, known, limit).await
    }

    /// Requests cancellation of run `run_id` (its pending agent calls, timers and child flows are
    /// cancelled; the run ends as cancelled).
    pub async fn cancel_run(&self, run_id: &str) -> Result<(), Error> {
        let info = self.describe_run(run_id).await?;
        self.backend().cancel(&info.flow, run_id).await
    }

    /// Terminates run `run_id` at once (no more flow code runs), recording `reason`.
    pub async fn terminate_run(&self, run_id: &str, reason: &str) -> Result<(), Error> {
        self.describe_run(run_id).await?;
        self.backend().terminate(run_id, reason).await
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
        let spec = self.message_target(run_id).await?.spec();
        spec.check_message(MessageKind::Signal, name, &value)
            .map_err(|message| dyn_message_error(spec.name, run_id, message))?;
        self.backend().signal(spec.name, run_id, name, value).await
    }

    /// The tool calls of run `run_id` that wait for approval (see
    /// [`FlowHandle::approvals`]).
    pub async fn approvals_of_run(&self, run_id: &str) -> Result<Vec<Pending>, Error> {
        let flow = self.describe_run(run_id).await?.flow;
        let waiting = self.backend().query(&flow, run_id, APPROVALS_QUERY).await?;
        read_pending(&flow, run_id, waiting)
    }

    /// Decides a waiting tool call of run `run_id` (see [`FlowHandle::decide`]); the run's flow
    /// need not be linked into this binary. To decide from a business id, find the run first
    /// with [`find_runs`](Self::find_runs) and a search attribute.
    pub async fn decide_run(&self, run_id: &str, decision: Decision) -> Result<(), Error> {
        let flow = self.describe_run(run_id).await?.flow;
        let value = serde_json::to_value(&decision).unwrap_or_default();
        self.backend()
            .update(&flow, run_id, APPROVE_UPDATE, value)
            .await
            .map(drop)
    }

    /// Asks run `run_id` query `name`, as JSON.
    pub async fn query_run_json(&self, run_id: &str, name: &str) -> Result<Value, Error> {
        let spec = self.message_target(run_id).await?.spec();
        spec.message(MessageKind::Query, name)
            .map_err(|message| dyn_message_error(spec.name, run_id, message))?;
        self.backend().query(spec.name, run_id, name).await
    }

    /// Sends run `run_id` update `name` as JSON and waits for the answer.
    pub async fn update_run_json(
        &self,
        run_id: &str,
        name: &str,
        value: Value,
    ) -> Result<Value, Error> {
        let spec = self.message_target(run_id).await?.spec();
        spec.check_message(MessageKind::Update, name, &value)
            .map_err(|message| dyn_message_error(spec.name, run_id, message))?;
        self.backend().update(spec.name, run_id, name, value).await
    }
}

/// The name a run id starts with: the flow's, or the agent's for its chain.
fn run_name(name: &str) -> &str {
    name.strip_suffix(".chain").unwrap_or(name)
}

/// The answer of the built-in query `flock.approvals`.
fn read_pending(flow: &str, run_id: &str, waiting: Value) -> Result<Vec<Pending>, Error> {
    serde_json::from_value(waiting).map_err(|e| {
        dyn_message_error(
            flow,
            run_id,
            format!("the run's list of calls waiting for approval is unreadable: {e}"),
        )
    })
}

fn dyn_message_error(flow: &str, run_id: &str, message: String) -> Error {
    Error::Message {
        flow: flow.to_owned(),
        run_id: run_id.to_owned(),
        message,
    }
}
