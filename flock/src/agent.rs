//! Agents: the [`Agent`] trait that `#[agent]` implements, its static [`AgentSpec`], the
//! [`AgentContext`] an attempt runs with, and compile-time hand-off chains ([`HandOff`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{AgentError, FlowError};
use crate::flow::FlowContext;
use crate::model::{Models, Usage};
use crate::retry::RetrySpec;

/// What an agent's input and output types must be: serializable both ways (they cross process
/// boundaries on Temporal), described by a JSON Schema (for prompts), sendable and owned.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an agent or flow input/output",
    label = "needs `#[derive(Serialize, Deserialize, JsonSchema)]`",
    note = "agent and flow inputs and outputs must implement `Serialize`, `DeserializeOwned`, `JsonSchema`, `Send` and be `'static`"
)]
pub trait AgentIo: Serialize + DeserializeOwned + JsonSchema + Send + 'static {}
impl<T> AgentIo for T where T: Serialize + DeserializeOwned + JsonSchema + Send + 'static {}

/// Whether an agent is answered by its own code or by a language model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum AgentKind {
    /// The agent has a body.
    Code,
    /// The agent has no body: a language model evaluates it.
    Declarative,
}

/// Everything `#[agent(..)]` says about an agent, fixed at compile time.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct AgentSpec {
    /// The agent's name (the fn name, or `name = ".."`); on Temporal, its activity type.
    pub name: &'static str,
    /// The doc comment, or `description = ".."`.
    pub description: &'static str,
    /// Code or declarative.
    pub kind: AgentKind,
    /// `model = "provider/model"`: overrides the `Flock`'s default model.
    pub model: Option<&'static str>,
    /// The name of the agent this one hands off to.
    pub hand_off: Option<&'static str>,
    /// Start-to-close timeout of one attempt.
    pub timeout: Option<Duration>,
    /// Timeout of all attempts together, delays included.
    pub schedule_to_close: Option<Duration>,
    /// An attempt fails when it reports no progress for this long.
    pub heartbeat: Option<Duration>,
    /// The Temporal task queue of this agent's activities.
    pub task_queue: Option<&'static str>,
    /// Retry settings; unset fields fall back to the executor's defaults.
    pub retry: RetrySpec,
    /// How often a declarative agent re-asks the model after an answer that does not fit.
    pub output_retries: Option<u32>,
    /// `#[agent(local)]`: on Temporal, run as a local activity (inside the workflow task's worker,
    /// no task-queue round trip); `None` follows the executor's default.
    pub local: Option<bool>,
    /// The tools a declarative agent offers the model.
    pub tools: &'static [&'static dyn crate::tool::DynTool],
    /// The source location of the definition.
    pub location: &'static str,
}

impl AgentSpec {
    /// A spec with every optional setting unset (for agents written by hand, and for the macro).
    pub const fn new(name: &'static str, kind: AgentKind) -> Self {
        AgentSpec {
            name,
            description: "",
            kind,
            model: None,
            hand_off: None,
            timeout: None,
            schedule_to_close: None,
            heartbeat: None,
            task_queue: None,
            retry: RetrySpec::EMPTY,
            output_retries: None,
            local: None,
            tools: &[],
            location: "",
        }
    }
}

/// An agent: a typed unit of work, called from flows or run as a hand-off chain.
///
/// `#[agent]` implements it on a zero-sized type named after the function, so the agent is passed
/// around as a value:
///
/// ```rust,standalone_crate
/// use flock::prelude::*;
///
/// #[derive(Debug, Serialize, Deserialize, JsonSchema)]
/// pub struct Text {
///     /// Some text
///     pub text: String,
/// }
///
/// /// Shouts the text.
/// #[agent]
/// async fn shout(input: Text) -> Text {
///     Text { text: input.text.to_uppercase() }
/// }
///
/// assert_eq!(<shout as Agent>::NAME, "shout");
/// assert_eq!(shout.spec().description, "Shouts the text.");
/// let schema = serde_json::to_value(shout.input_schema()).unwrap();
/// assert_eq!(schema["properties"]["text"]["description"], "Some text");
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an agent",
    label = "not an `#[agent]`",
    note = "agents are `async fn`s marked `#[agent]`; the macro turns the fn's name into a value that implements `Agent`"
)]
pub trait Agent: Copy + Default + Send + Sync + 'static {
    /// The input type.
    type Input: AgentIo;
    /// The output type.
    type Output: AgentIo;
    /// The agent this one hands off to ([`End`] when none).
    type Next: HandOff<Self::Output>;
    /// The agent's name (its Temporal activity type).
    const NAME: &'static str;
    /// The hand-off chain that starts here, as a flow (its name is the Temporal workflow type
    /// `flock.run(agent, ..)` runs as: `"<agent>.chain"`).
    const CHAIN: &'static crate::flow::FlowSpec;

    /// The agent's settings.
    fn spec(&self) -> &'static AgentSpec;

    /// Runs one attempt.
    fn call(
        self,
        ctx: AgentContext,
        input: Self::Input,
    ) -> impl Future<Output = Result<Self::Output, AgentError>> + Send + 'static;

    /// The JSON Schema of the input (doc comments become descriptions).
    fn input_schema(&self) -> schemars::Schema {
        schemars::schema_for!(Self::Input)
    }

    /// The JSON Schema of the output (doc comments become descriptions).
    fn output_schema(&self) -> schemars::Schema {
        schemars::schema_for!(Self::Output)
    }
}

/// The end of a hand-off chain.
#[derive(Debug, Clone, Copy, Default)]
pub struct End;

/// A link of a static hand-off chain: what runs after an agent whose output is `In`.
///
/// Implemented by [`End`] (the chain stops, its result is `In`) and by every agent whose input
/// `In` converts into. `Final` is the type the whole chain returns, computed at compile time.
pub trait HandOff<In>: Send + Sync + 'static {
    /// The chain's result type.
    type Final: AgentIo;

    /// Runs the rest of the chain on `input`.
    fn continue_chain(
        ctx: &FlowContext,
        input: In,
    ) -> BoxFuture<'_, Result<Self::Final, FlowError>>;
}

impl<In: AgentIo> HandOff<In> for End {
    type Final = In;

    fn continue_chain(_ctx: &FlowContext, input: In) -> BoxFuture<'_, Result<In, FlowError>> {
        Box::pin(std::future::ready(Ok(input)))
    }
}

impl<In, B> HandOff<In> for B
where
    B: Agent,
    In: Into<B::Input> + Send + 'static,
{
    type Final = <B::Next as HandOff<B::Output>>::Final;

    fn continue_chain(
        ctx: &FlowContext,
        input: In,
    ) -> BoxFuture<'_, Result<Self::Final, FlowError>> {
        Box::pin(async move {
            let output = ctx.call(B::default(), input.into()).await?;
            <B::Next as HandOff<B::Output>>::continue_chain(ctx, output).await
        })
    }
}

/// The result type of the hand-off chain that starts at `A`.
pub type ChainOutput<A> = <<A as Agent>::Next as HandOff<<A as Agent>::Output>>::Final;

/// Receives what an agent reports while it runs (progress on the local executor, heartbeats on
/// Temporal).
pub trait ProgressSink: Send + Sync {
    /// Called by [`AgentContext::report_progress`].
    fn report(&self, agent: &'static str, attempt: u32, details: serde_json::Value);
}

/// What one attempt of an agent runs with.
#[derive(Clone)]
pub struct AgentContext {
    pub(crate) run_id: Arc<str>,
    pub(crate) attempt: u32,
    pub(crate) spec: &'static AgentSpec,
    pub(crate) progress: Option<Arc<dyn ProgressSink>>,
    pub(crate) models: Arc<Models>,
    pub(crate) usage: Option<Arc<std::sync::Mutex<Usage>>>,
}

impl AgentContext {
    /// A context outside any executor, e.g. to call an agent directly in a unit test.
    ///
    /// ```rust,standalone_crate
    /// use flock::prelude::*;
    ///
    /// #[derive(Serialize, Deserialize, JsonSchema)]
    /// pub struct N { pub n: u32 }
    ///
    /// #[agent]
    /// async fn double(ctx: &AgentContext, input: N) -> N {
    ///     assert_eq!(ctx.attempt(), 1);
    ///     N { n: input.n * 2 }
    /// }
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let out = double.call(AgentContext::detached(double.spec()), N { n: 21 }).await.unwrap();
    /// assert_eq!(out.n, 42);
    /// # });
    /// ```
    pub fn detached(spec: &'static AgentSpec) -> Self {
        AgentContext {
            run_id: Arc::from("detached"),
            attempt: 1,
            spec,
            progress: None,
            models: Arc::new(Models::default()),
            usage: None,
        }
    }

    /// The id of the run (on Temporal: the workflow id).
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The attempt number, starting at 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The agent's name.
    pub fn agent_name(&self) -> &'static str {
        self.spec.name
    }

    /// The agent's settings.
    pub fn spec(&self) -> &'static AgentSpec {
        self.spec
    }

    /// Reports progress: recorded in the run record on the local executor, sent as a heartbeat
    /// on Temporal. Reporting also keeps a `heartbeat` timeout from expiring.
    pub fn report_progress(&self, details: impl Serialize) {
        if let Some(sink) = &self.progress {
            let details = serde_json::to_value(details).unwrap_or_else(|e| {
                serde_json::Value::String(format!("<progress not serializable: {e}>"))
            });
            sink.report(self.spec.name, self.attempt, details);
        }
    }

    /// The models this context resolves model names with.
    pub fn models(&self) -> &Models {
        &self.models
    }

    /// Adds a model call's token usage to this attempt.
    pub fn add_usage(&self, usage: Usage) {
        if let Some(total) = &self.usage {
            let mut total = total.lock().unwrap_or_else(|p| p.into_inner());
            *total += usage;
        }
    }
}

impl std::fmt::Debug for AgentContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentContext")
            .field("run_id", &self.run_id)
            .field("attempt", &self.attempt)
            .field("agent", &self.spec.name)
            .finish_non_exhaustive()
    }
}

/// Converts what an agent body returns (its output `T`, or `Result<T, E>` where `E` converts into
/// [`AgentError`]) into the result the executors work with.
///
/// The trait is generic over `T` (as pyo3's `OkWrap` is), so the two impls cannot overlap.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a valid agent return type for output `{T}`",
    label = "return the output type or `Result<Output, AgentError>`",
    note = "an `#[agent]` fn returns `Out` or `Result<Out, E>` where `E: Into<flock::AgentError>`, and `Out` derives `Serialize`, `Deserialize` and `JsonSchema`"
)]
pub trait IntoAgentResult<T> {
    /// Converts into the executors' result.
    fn into_agent_result(self) -> Result<T, AgentError>;
}

impl<T: AgentIo> IntoAgentResult<T> for T {
    #[inline]
    fn into_agent_result(self) -> Result<T, AgentError> {
        Ok(self)
    }
}

impl<T: AgentIo, E: Into<AgentError>> IntoAgentResult<T> for Result<T, E> {
    #[inline]
    fn into_agent_result(self) -> Result<T, AgentError> {
        self.map_err(Into::into)
    }
}

/// The output type of an agent that returns a `Result`: its `Ok` type.
///
/// Rust's coherence rules do not let one trait map both `T` and `Result<T, E>` to `T` (the crate
/// defining `Result`'s impls could add `impl JsonSchema for Result<T, E>` for any `E`), so
/// `#[agent]` picks between `Out` and `<Ret as FallibleReturn>::Ok` by the return type's form
/// (`Result<..>` or [`AgentResult<..>`](crate::AgentResult)); the traits then check it.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not `Result<Output, E>` with `E: Into<AgentError>`",
    label = "an agent that can fail returns `Result<Output, AgentError>`",
    note = "an `#[agent]` fn returns `Out` or `Result<Out, E>` where `E: Into<flock::AgentError>`"
)]
pub trait FallibleReturn {
    /// The output type.
    type Ok: AgentIo;
}

impl<T: AgentIo, E: Into<AgentError>> FallibleReturn for Result<T, E> {
    type Ok = T;
}

/// `Result<T, AgentError>`, the return type of an agent that can fail.
pub type AgentResult<T> = Result<T, AgentError>;
