//! Flows: the [`Flow`] trait that `#[flow]` implements, [`DynFlow`] (a flow behind JSON, as
//! executors run it), and the [`FlowContext`] a flow body runs with: a thin typed layer over the
//! executor's [`FlowRuntime`]. A flow body is workflow code: everything non-deterministic goes
//! through the context, and the [determinism guard](crate::guard) fails a flow that waits on
//! anything else.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::agent::{Agent, AgentIo, json_size, panic_message};
use crate::error::FlowError;
use crate::guard::{ContextOp, Guarded};
use crate::runtime::{AgentCall, ChildCall, FlowRuntime};
pub use crate::spec::FlowSpec;
use crate::spec::{Direction, check_payload_size};

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

/// The context a flow body runs with: agent calls, child flows, time, timers and randomness,
/// all replay-safe on Temporal and the same on both executors.
pub struct FlowContext {
    run_id: Arc<str>,
    flow: &'static str,
    runtime: Arc<dyn FlowRuntime>,
    rng: Mutex<SplitMix64>,
    child_ids: Mutex<SplitMix64>,
}

impl FlowContext {
    /// The context of run `run_id` of `flow`, over an executor's runtime. The random streams are
    /// seeded from the runtime's per-run seed: the user's stream and the one child run ids come
    /// from are separate, so adding a `ctx.uuid()` call shifts no child id and vice versa.
    pub(crate) fn new(run_id: Arc<str>, flow: &'static str, runtime: Arc<dyn FlowRuntime>) -> Self {
        let seed = runtime.random_seed();
        FlowContext {
            run_id,
            flow,
            rng: Mutex::new(SplitMix64(seed)),
            child_ids: Mutex::new(SplitMix64(seed ^ 0x6368_696C_645F_6964)),
            runtime,
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
    ///
    /// The input is checked before it is sent: one that does not serialize, or is over the
    /// payload limit, fails the call (and, with `?`, the run) with an error naming the agent.
    pub async fn call<A: Agent>(&self, agent: A, input: A::Input) -> Result<A::Output, FlowError> {
        let spec = agent.spec();
        let input = encode("agent", A::NAME, Direction::Input, &input)?;
        let output = ContextOp(self.runtime.call_agent(AgentCall { spec, input })).await?;
        decode(A::NAME, Direction::Output, output)
    }

    /// Runs another flow as a child flow (on Temporal: a child workflow). Its run id is
    /// `<flow>-<uuid>`, from a random stream of this run's own.
    pub async fn call_flow<F: Flow>(
        &self,
        flow: F,
        input: F::Input,
    ) -> Result<F::Output, FlowError> {
        let spec = flow.spec();
        let input = encode("flow", F::NAME, Direction::Input, &input)?;
        let run_id = format!("{}-{}", F::NAME, uuid_from(&self.child_ids));
        let output = ContextOp(self.runtime.call_flow(ChildCall {
            spec,
            run_id,
            input,
        }))
        .await?;
        decode(F::NAME, Direction::Output, output)
    }

    /// The current time (on Temporal: the workflow task's time, identical on replay).
    pub fn now(&self) -> SystemTime {
        self.runtime.now()
    }

    /// Sleeps durably (on Temporal: a timer that survives worker restarts). Fails with
    /// [`FlowError::Cancelled`] when the run is cancelled meanwhile, so `?` ends the flow.
    pub async fn sleep(&self, duration: Duration) -> Result<(), FlowError> {
        ContextOp(self.runtime.sleep(duration)).await
    }

    /// A random number: a different stream for every run, identical on Temporal replay.
    pub fn random_u64(&self) -> u64 {
        self.rng.lock().unwrap_or_else(|p| p.into_inner()).next()
    }

    /// A random number in `[0, 1)` (see [`random_u64`](Self::random_u64)).
    pub fn random_f64(&self) -> f64 {
        (self.random_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A random (version 4) UUID (see [`random_u64`](Self::random_u64)).
    pub fn uuid(&self) -> uuid::Uuid {
        uuid_from(&self.rng)
    }
}

fn uuid_from(stream: &Mutex<SplitMix64>) -> uuid::Uuid {
    let mut stream = stream.lock().unwrap_or_else(|p| p.into_inner());
    let high = stream.next() as u128;
    let low = stream.next() as u128;
    uuid::Builder::from_random_bytes(((high << 64) | low).to_be_bytes()).into_uuid()
}

/// A value on its way to an agent or flow, as JSON within the payload limit.
pub(crate) fn encode<T: Serialize>(
    kind: &str,
    name: &str,
    direction: Direction,
    value: &T,
) -> Result<Value, FlowError> {
    let json = serde_json::to_value(value).map_err(|e| FlowError::Serialization {
        at: name.to_owned(),
        message: format!("{}: {e}", direction.name()),
    })?;
    check_payload_size(kind, name, direction, json_size(&json)).map_err(|message| {
        FlowError::PayloadTooLarge {
            at: name.to_owned(),
            message,
        }
    })?;
    Ok(json)
}

/// A value back from an agent or flow, as its type.
pub(crate) fn decode<T: DeserializeOwned>(
    name: &str,
    direction: Direction,
    value: Value,
) -> Result<T, FlowError> {
    serde_json::from_value(value).map_err(|e| FlowError::Serialization {
        at: name.to_owned(),
        message: format!(
            "{} does not fit `{}`: {e}",
            direction.name(),
            std::any::type_name::<T>()
        ),
    })
}

impl std::fmt::Debug for FlowContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowContext")
            .field("run_id", &self.run_id)
            .field("flow", &self.flow)
            .finish_non_exhaustive()
    }
}

/// A flow behind JSON: what an executor needs to run it by name. Implemented for every [`Flow`];
/// the behaviour both executors share lives here, once: the input is decoded (a mismatch fails
/// the run naming the expected type), the body runs under the [determinism guard](crate::guard),
/// a panic fails the run naming the flow and the message, and the output is encoded and checked
/// against the payload limit.
pub trait DynFlow: Send + Sync {
    /// The flow's settings.
    fn spec(&self) -> &'static FlowSpec;
    /// The input JSON Schema.
    fn input_schema(&self) -> schemars::Schema;
    /// The output JSON Schema.
    fn output_schema(&self) -> schemars::Schema;
    /// Runs the flow on JSON input, giving JSON output.
    fn run_json<'a>(
        &self,
        ctx: &'a FlowContext,
        input: Value,
    ) -> BoxFuture<'a, Result<Value, FlowError>>;
}

impl<F: Flow> DynFlow for F {
    fn spec(&self) -> &'static FlowSpec {
        Flow::spec(self)
    }

    fn input_schema(&self) -> schemars::Schema {
        Flow::input_schema(self)
    }

    fn output_schema(&self) -> schemars::Schema {
        Flow::output_schema(self)
    }

    fn run_json<'a>(
        &self,
        ctx: &'a FlowContext,
        input: Value,
    ) -> BoxFuture<'a, Result<Value, FlowError>> {
        let flow = *self;
        Box::pin(async move {
            let input: F::Input = decode(F::NAME, Direction::Input, input)?;
            let body = AssertUnwindSafe(flow.run(ctx, input))
                .catch_unwind()
                .map(|outcome| match outcome {
                    Ok(result) => result,
                    Err(panic) => Err(FlowError::Panicked {
                        flow: F::NAME.to_owned(),
                        message: panic_message(&*panic),
                    }),
                });
            let output = Guarded::new(F::NAME, body).await?;
            encode("flow", F::NAME, Direction::Output, &output)
        })
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
