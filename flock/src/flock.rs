//! The [`Flock`] orchestrator: configuration, the registry, and runs.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;

use crate::agent::{Agent, ChainOutput};
use crate::config::TemporalExecutorConfig;
use crate::error::Error;
use crate::executor::temporal::{TemporalExecutor, WorkerLimits};
use crate::executor::{Runtime, local};
use crate::flow::{Chain, Flow};
use crate::model::{Model, Models, Provider};
use crate::record::RunRecord;
use crate::registry::Registry;

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
    runtime: Arc<Runtime>,
    registry: Registry,
    temporal: TemporalExecutorConfig,
    executor: Executor,
}

#[derive(Debug)]
enum Executor {
    Local,
    Temporal(Box<TemporalExecutor>),
}

/// Configures a [`Flock`].
#[must_use]
pub struct FlockBuilder {
    models: Models,
    local_debug: bool,
    temporal: TemporalExecutorConfig,
    registry: Result<Registry, Error>,
    in_process_worker: bool,
    worker_limits: WorkerLimits,
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
        }
    }

    /// Runs the static hand-off chain that starts at `agent`; the result is the last agent's
    /// output. Await it, or set an id / ask for the record first.
    pub fn run<A: Agent>(&self, agent: A, input: A::Input) -> RunRequest<'_, Chain<A>> {
        RunRequest {
            flock: self,
            flow: Chain(agent),
            input,
            id: None,
        }
    }

    /// Runs a flow. Await it, or set an id / ask for the record first.
    pub fn run_flow<F: Flow>(&self, flow: F, input: F::Input) -> RunRequest<'_, F> {
        RunRequest {
            flock: self,
            flow,
            input,
            id: None,
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
    /// Temporal only: local runs live in the process that started them.
    pub fn flow_handle<F: Flow>(
        &self,
        flow: F,
        run_id: impl Into<String>,
    ) -> Result<FlowHandle<F>, Error> {
        let _ = flow;
        match &self.inner.executor {
            Executor::Temporal(_) => Ok(FlowHandle {
                flock: self.clone(),
                run_id: run_id.into(),
                state: HandleState::Temporal,
                flow: std::marker::PhantomData,
            }),
            Executor::Local => Err(Error::Config(
                "re-attaching to a run by id needs the Temporal executor (`local_debug(false)`)"
                    .into(),
            )),
        }
    }

    /// A standalone worker serving every registered agent and flow (for deployment): build the
    /// `Flock` with `local_debug(false)` and `in_process_worker(false)`, then
    /// `flock.worker().run().await`.
    pub fn worker(&self) -> crate::worker::FlockWorker {
        crate::worker::FlockWorker::new(self.clone())
    }

    /// Stops the in-process worker (if any) after its running tasks finish.
    pub async fn shutdown(&self) -> Result<(), Error> {
        match &self.inner.executor {
            Executor::Local => Ok(()),
            Executor::Temporal(temporal) => temporal.shutdown().await,
        }
    }

    pub(crate) fn runtime(&self) -> &Arc<Runtime> {
        &self.inner.runtime
    }

    pub(crate) fn temporal_client(&self) -> Option<&temporalio_client::Client> {
        match &self.inner.executor {
            Executor::Temporal(temporal) => Some(&temporal.client),
            Executor::Local => None,
        }
    }

    /// The agents and flows this `Flock` serves.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// The executor settings.
    pub fn temporal_config(&self) -> &TemporalExecutorConfig {
        &self.inner.temporal
    }

    /// The models agents are answered with.
    pub fn models(&self) -> &Models {
        &self.inner.runtime.models
    }
}

impl FlockBuilder {
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
    pub fn agent<A: Agent>(mut self, agent: A) -> Self {
        if let Ok(registry) = &mut self.registry
            && let Err(e) = registry.register_agent(agent)
        {
            self.registry = Err(e);
        }
        self
    }

    /// Registers a flow explicitly (flows linked into the binary are registered already).
    pub fn flow<F: Flow>(mut self, flow: F) -> Self {
        if let Ok(registry) = &mut self.registry
            && let Err(e) = registry.register_flow(flow)
        {
            self.registry = Err(e);
        }
        self
    }

    /// Checks the configuration and the registry and builds the `Flock`.
    pub async fn build(self) -> Result<Flock, Error> {
        let registry = self.registry?;
        for agent in registry.agents() {
            let spec = agent.spec();
            if spec.kind == crate::agent::AgentKind::Declarative
                && let Some(name) = self.models.name_for(spec.model)
                && let Err(e) = self.models.resolve(name)
            {
                return Err(Error::Config(format!(
                    "agent `{}` ({}): {e}",
                    spec.name, spec.location
                )));
            }
        }
        let runtime = Runtime {
            retry: self.temporal.retry_policy(),
            start_to_close: self.temporal.activity_start_to_close,
            models: Arc::new(self.models),
        };
        let runtime = Arc::new(runtime);
        let executor = if self.local_debug {
            Executor::Local
        } else {
            let limits = self.in_process_worker.then_some(self.worker_limits);
            Executor::Temporal(Box::new(
                TemporalExecutor::start(self.temporal.clone(), &registry, runtime.clone(), limits)
                    .await?,
            ))
        };
        Ok(Flock {
            inner: Arc::new(Inner {
                runtime,
                registry,
                temporal: self.temporal,
                executor,
            }),
        })
    }
}

/// A run about to start: `.await` it for the result, or set its id or ask for its record first.
#[must_use = "a run does nothing until it is awaited"]
pub struct RunRequest<'a, F: Flow> {
    flock: &'a Flock,
    flow: F,
    input: F::Input,
    id: Option<String>,
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

    /// Runs and gives the result together with the run record.
    ///
    /// On Temporal the record is read back from the workflow's history: each agent (activity) with
    /// its input, output, error and attempts (Temporal keeps the last attempt's timing and the
    /// failure before it), model token usage, and child flows. Agents run as local activities are
    /// not listed.
    pub async fn recorded(self) -> Recorded<F::Output> {
        let run_id: Arc<str> = match self.id {
            Some(id) => Arc::from(id),
            None => Arc::from(format!("{}-{}", F::NAME, uuid::Uuid::new_v4())),
        };
        let inner = &self.flock.inner;
        match &inner.executor {
            Executor::Local => {
                let (result, record) =
                    local::run_flow(inner.runtime.clone(), self.flow, run_id.clone(), self.input)
                        .await;
                Recorded {
                    result: result.map_err(|cause| Error::Run {
                        name: F::NAME.to_owned(),
                        run_id: run_id.to_string(),
                        cause,
                    }),
                    record,
                }
            }
            Executor::Temporal(temporal) => {
                let started = std::time::Instant::now();
                let started_at = std::time::SystemTime::now();
                let input = serde_json::to_value(&self.input).unwrap_or(serde_json::Value::Null);
                let result = async {
                    temporal
                        .start_run(self.flow.spec(), &run_id, input.clone())
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
                temporal.fill_record(&inner.registry, &mut record).await;
                Recorded {
                    result: result.and_then(|value| decode::<F>(&run_id, value)),
                    record,
                }
            }
        }
    }

    /// Starts the run and returns a handle to it, without waiting for its result.
    pub async fn start(self) -> Result<FlowHandle<F>, Error> {
        let run_id = self
            .id
            .unwrap_or_else(|| format!("{}-{}", F::NAME, uuid::Uuid::new_v4()));
        let inner = &self.flock.inner;
        let state = match &inner.executor {
            Executor::Local => {
                let (runtime, flow, id, input) = (
                    inner.runtime.clone(),
                    self.flow,
                    Arc::from(run_id.as_str()),
                    self.input,
                );
                let task =
                    tokio::spawn(async move { local::run_flow(runtime, flow, id, input).await.0 });
                HandleState::Local(tokio::sync::Mutex::new(Some(task)))
            }
            Executor::Temporal(temporal) => {
                let input = serde_json::to_value(&self.input)
                    .map_err(|e| Error::Config(format!("input of `{}`: {e}", F::NAME)))?;
                temporal.start_run(self.flow.spec(), &run_id, input).await?;
                HandleState::Temporal
            }
        };
        Ok(FlowHandle {
            flock: self.flock.clone(),
            run_id,
            state,
            flow: std::marker::PhantomData,
        })
    }
}

fn decode<F: Flow>(run_id: &str, value: serde_json::Value) -> Result<F::Output, Error> {
    serde_json::from_value(value).map_err(|e| Error::Run {
        name: F::NAME.to_owned(),
        run_id: run_id.to_owned(),
        cause: crate::error::FlowError::Serialization {
            at: F::NAME.to_owned(),
            message: format!("output: {e}"),
        },
    })
}

/// A started run: its id, its typed result, cancellation. Re-attach to a run started elsewhere
/// with [`Flock::flow_handle`].
#[derive(Debug)]
pub struct FlowHandle<F: Flow> {
    flock: Flock,
    run_id: String,
    state: HandleState<F::Output>,
    flow: std::marker::PhantomData<F>,
}

#[derive(Debug)]
enum HandleState<T> {
    Local(tokio::sync::Mutex<Option<tokio::task::JoinHandle<Result<T, crate::error::FlowError>>>>),
    Temporal,
}

impl<F: Flow> FlowHandle<F> {
    /// The run id (on Temporal: the workflow id).
    pub fn id(&self) -> &str {
        &self.run_id
    }

    /// Waits for the run's result.
    pub async fn result(&self) -> Result<F::Output, Error> {
        match (&self.state, &self.flock.inner.executor) {
            (HandleState::Temporal, Executor::Temporal(temporal)) => {
                let value = temporal.result(F::NAME, &self.run_id).await?;
                decode::<F>(&self.run_id, value)
            }
            (HandleState::Local(task), _) => {
                let task = task.lock().await.take();
                let Some(task) = task else {
                    return Err(Error::Executor(format!(
                        "the result of local run `{}` was taken already",
                        self.run_id
                    )));
                };
                let failed = |cause| Error::Run {
                    name: F::NAME.to_owned(),
                    run_id: self.run_id.clone(),
                    cause,
                };
                match task.await {
                    Ok(result) => result.map_err(failed),
                    Err(join) if join.is_cancelled() => {
                        Err(failed(crate::error::FlowError::Cancelled {
                            message: "the run was cancelled".into(),
                        }))
                    }
                    Err(join) => Err(failed(crate::error::FlowError::msg(format!(
                        "the run panicked: {join}"
                    )))),
                }
            }
            (HandleState::Temporal, Executor::Local) => {
                Err(Error::Executor("a Temporal handle on a local Flock".into()))
            }
        }
    }

    /// Requests cancellation. On Temporal the run's pending agent calls and timers are cancelled
    /// and the run ends as cancelled.
    pub async fn cancel(&self) -> Result<(), Error> {
        match (&self.state, &self.flock.inner.executor) {
            (HandleState::Temporal, Executor::Temporal(temporal)) => {
                temporal.cancel(&self.run_id).await
            }
            (HandleState::Local(task), _) => {
                if let Some(task) = task.lock().await.as_ref() {
                    task.abort();
                }
                Ok(())
            }
            (HandleState::Temporal, Executor::Local) => {
                Err(Error::Executor("a Temporal handle on a local Flock".into()))
            }
        }
    }
}

impl<'a, F: Flow> IntoFuture for RunRequest<'a, F> {
    type Output = Result<F::Output, Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            match &self.flock.inner.executor {
                // no record wanted: skip reading the history back
                Executor::Temporal(_) => self.start().await?.result().await,
                Executor::Local => self.recorded().await.result,
            }
        })
    }
}

/// The result type of `flock.run(agent, ..)`.
pub type RunOutput<A> = ChainOutput<A>;
