//! Flows: the [`Flow`] trait that `#[flow]` implements, and the [`FlowContext`] a flow body runs
//! with. A flow body is workflow code: everything non-deterministic goes through the context.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;

use crate::agent::{Agent, AgentIo, ChainOutput, HandOff};
use crate::error::FlowError;
use crate::executor::local::LocalRun;
use crate::executor::temporal::TemporalRun;

/// Everything `#[flow(..)]` says about a flow, fixed at compile time.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct FlowSpec {
    /// The flow's name (the fn name, or `name = ".."`); on Temporal, its workflow type.
    pub name: &'static str,
    /// The doc comment, or `description = ".."`.
    pub description: &'static str,
    /// The Temporal task queue of this flow's workflows.
    pub task_queue: Option<&'static str>,
    /// Timeout of the whole execution, retries and continue-as-new included.
    pub execution_timeout: Option<Duration>,
    /// Timeout of one run.
    pub run_timeout: Option<Duration>,
    /// The source location of the definition.
    pub location: &'static str,
}

impl FlowSpec {
    /// A spec with every optional setting unset.
    pub const fn new(name: &'static str) -> Self {
        FlowSpec {
            name,
            description: "",
            task_queue: None,
            execution_timeout: None,
            run_timeout: None,
            location: "",
        }
    }
}

/// A flow: a deterministic async function over agents, run by an executor.
///
/// `#[flow]` implements it on a zero-sized type named after the function.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a flow",
    label = "not a `#[flow]`",
    note = "flows are `async fn`s marked `#[flow]`; the macro turns the fn's name into a value that implements `Flow`"
)]
pub trait Flow: Copy + Default + Send + Sync + 'static {
    /// The input type.
    type Input: AgentIo;
    /// The output type.
    type Output: AgentIo;
    /// The flow's name (its Temporal workflow type).
    const NAME: &'static str;

    /// The flow's settings.
    fn spec(&self) -> &'static FlowSpec;

    /// Runs the flow body.
    fn run(
        self,
        ctx: &FlowContext,
        input: Self::Input,
    ) -> BoxFuture<'_, Result<Self::Output, FlowError>>;

    /// The JSON Schema of the input.
    fn input_schema(&self) -> schemars::Schema {
        schemars::schema_for!(Self::Input)
    }

    /// The JSON Schema of the output.
    fn output_schema(&self) -> schemars::Schema {
        schemars::schema_for!(Self::Output)
    }
}

/// The static hand-off chain that starts at agent `A`, as a flow: `flock.run(a, input)` runs it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Chain<A>(pub A);

impl<A: Agent> Flow for Chain<A> {
    type Input = A::Input;
    type Output = ChainOutput<A>;
    const NAME: &'static str = A::CHAIN.name;

    fn spec(&self) -> &'static FlowSpec {
        A::CHAIN
    }

    fn run(
        self,
        ctx: &FlowContext,
        input: A::Input,
    ) -> BoxFuture<'_, Result<Self::Output, FlowError>> {
        Box::pin(async move {
            let output = ctx.call(self.0, input).await?;
            <A::Next as HandOff<A::Output>>::continue_chain(ctx, output).await
        })
    }
}

/// The context a flow body runs with: agent calls, child flows, time, timers and randomness,
/// all replay-safe on Temporal.
pub struct FlowContext {
    pub(crate) run_id: Arc<str>,
    pub(crate) flow: &'static str,
    pub(crate) backend: Backend,
    rng: Mutex<SplitMix64>,
}

pub(crate) enum Backend {
    Local(LocalRun),
    Temporal(TemporalRun),
}

impl FlowContext {
    pub(crate) fn new(run_id: Arc<str>, flow: &'static str, backend: Backend) -> Self {
        let seed = fnv1a(run_id.as_bytes());
        FlowContext {
            run_id,
            flow,
            backend,
            rng: Mutex::new(SplitMix64(seed)),
        }
    }

    /// The id of this run (on Temporal: the workflow id).
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The name of the running flow.
    pub fn flow_name(&self) -> &'static str {
        self.flow
    }

    /// Calls an agent durably: with its retry policy and timeouts; on Temporal, as an activity.
    pub async fn call<A: Agent>(&self, agent: A, input: A::Input) -> Result<A::Output, FlowError> {
        match &self.backend {
            Backend::Local(run) => run.call_agent(self, agent, input).await,
            Backend::Temporal(run) => run.call_agent(agent, input).await,
        }
    }

    /// Runs the hand-off chain that starts at `agent` (as `Flock::run` does) inside this flow.
    pub async fn call_chain<A: Agent>(
        &self,
        agent: A,
        input: A::Input,
    ) -> Result<ChainOutput<A>, FlowError> {
        let output = self.call(agent, input).await?;
        <A::Next as HandOff<A::Output>>::continue_chain(self, output).await
    }

    /// Runs another flow as a child flow (on Temporal: a child workflow).
    pub async fn call_flow<F: Flow>(
        &self,
        flow: F,
        input: F::Input,
    ) -> Result<F::Output, FlowError> {
        match &self.backend {
            Backend::Local(run) => run.call_flow(self, flow, input).await,
            Backend::Temporal(run) => {
                let _ = flow;
                run.call_flow::<F>(self, input).await
            }
        }
    }

    /// The current time (on Temporal: the workflow task's time, identical on replay).
    pub fn now(&self) -> SystemTime {
        match &self.backend {
            Backend::Local(_) => SystemTime::now(),
            Backend::Temporal(run) => run.now(),
        }
    }

    /// Sleeps durably (on Temporal: a timer that survives worker restarts). Fails with
    /// [`FlowError::Cancelled`] when the run is cancelled meanwhile, so `?` ends the flow.
    pub async fn sleep(&self, duration: Duration) -> Result<(), FlowError> {
        match &self.backend {
            Backend::Local(_) => {
                tokio::time::sleep(duration).await;
                Ok(())
            }
            Backend::Temporal(run) => run.sleep(duration).await,
        }
    }

    /// A random number, deterministic for a given run id (identical on Temporal replay).
    pub fn random_u64(&self) -> u64 {
        self.rng.lock().unwrap_or_else(|p| p.into_inner()).next()
    }

    /// A random number in `[0, 1)`, deterministic for a given run id.
    pub fn random_f64(&self) -> f64 {
        (self.random_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A random (version 4) UUID, deterministic for a given run id.
    pub fn uuid(&self) -> uuid::Uuid {
        let high = self.random_u64() as u128;
        let low = self.random_u64() as u128;
        uuid::Builder::from_random_bytes(((high << 64) | low).to_be_bytes()).into_uuid()
    }
}

impl std::fmt::Debug for FlowContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowContext")
            .field("run_id", &self.run_id)
            .field("flow", &self.flow)
            .finish_non_exhaustive()
    }
}

/// SplitMix64: small, fast, and good enough for deterministic workflow randomness.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}
