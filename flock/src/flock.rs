//! The [`Flock`] orchestrator: configuration, the registry, and runs.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;

use crate::agent::{Agent, ChainOutput};
use crate::config::TemporalExecutorConfig;
use crate::error::Error;
use crate::executor::{Runtime, local};
use crate::flow::{Chain, Flow};
use crate::model::{Model, Models, Provider};
use crate::record::RunRecord;
use crate::registry::Registry;

/// Runs agents and flows: in-process (`local_debug(true)`) or on Temporal.
///
/// ```
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
}

/// Configures a [`Flock`].
#[must_use]
pub struct FlockBuilder {
    models: Models,
    local_debug: bool,
    temporal: TemporalExecutorConfig,
    registry: Result<Registry, Error>,
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
        if !self.local_debug {
            return Err(Error::Config(
                "the Temporal executor (`local_debug(false)`) is not part of this build yet; use `local_debug(true)`".into(),
            ));
        }
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
        Ok(Flock {
            inner: Arc::new(Inner {
                runtime: Arc::new(runtime),
                registry,
                temporal: self.temporal,
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
    pub async fn recorded(self) -> Recorded<F::Output> {
        let run_id: Arc<str> = match self.id {
            Some(id) => Arc::from(id),
            None => Arc::from(format!("{}-{}", F::NAME, uuid::Uuid::new_v4())),
        };
        let (result, record) = local::run_flow(
            self.flock.inner.runtime.clone(),
            self.flow,
            run_id.clone(),
            self.input,
        )
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
}

impl<'a, F: Flow> IntoFuture for RunRequest<'a, F> {
    type Output = Result<F::Output, Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move { self.recorded().await.result })
    }
}

/// The result type of `flock.run(agent, ..)`.
pub type RunOutput<A> = ChainOutput<A>;
