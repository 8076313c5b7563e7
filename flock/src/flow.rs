//! Flows: the [`Flow`] trait that `#[flow]` implements, [`DynFlow`] (a flow behind JSON, as
//! executors run it), and the [`FlowContext`] a flow body runs with: a thin typed layer over the
//! executor's [`FlowRuntime`]. A flow body is workflow code: everything non-deterministic goes
//! through the context, and the [determinism guard](crate::guard) fails a flow that waits on
//! anything else.

use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tracing::Instrument;

use crate::agent::{Agent, AgentIo, json_size_within, panic_message};
use crate::error::FlowError;
use crate::guard::{ContextOp, Guarded};
use crate::message::{Query, Signal, Update};
use crate::runtime::{AgentCall, ChildCall, FlowRuntime, SESSION_FLOW, SESSION_SPEC, SignalCall};
pub use crate::spec::FlowSpec;
use crate::spec::{AgentSpec, Direction, PayloadLimit, check_payload_size};

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
    ) -> impl Future<Output = Result<Self::Output, FlowError>> + Send + '_;

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
    payload_limit: PayloadLimit,
    /// The step-by-step loop of agents that run so
    /// ([`AgentSpec::runs_step_by_step`](crate::AgentSpec::runs_step_by_step)), above the step
    /// layers: they and the executor see its steps.
    agent_loop: Option<Arc<dyn crate::runtime::AgentLoopLayer>>,
    /// A misuse of the context that fails the run (an invalid patch id): the flow body is
    /// stopped as soon as it yields, and the run fails with this error.
    misuse: Mutex<Option<FlowError>>,
}

/// The longest patch id [`FlowContext::patched`] takes, in bytes. Temporal records the patches a
/// run took in its `TemporalChangeVersion` search attribute, which its SQL visibility stores
/// index one id at a time as `CHAR(255)` (temporalio/temporal,
/// `schema/mysql/v8/visibility/schema.sql`, index `by_temporal_change_version`); the SDK also
/// leaves the attribute out once the ids together pass 2 KiB (temporalio-sdk-core,
/// `MAX_SEARCH_ATTR_PAYLOAD_SIZE`), so a run's patches would not be searchable.
pub const MAX_PATCH_ID_BYTES: usize = 255;

impl FlowContext {
    /// The context of run `run_id` of `flow`, over an executor's runtime. The random streams are
    /// seeded from the runtime's per-run seed: the user's stream and the one child run ids come
    /// from are separate, so adding a `ctx.uuid()` call shifts no child id and vice versa.
    /// What the run sends is checked against `payload_limit` (the executor's settings).
    pub(crate) fn new(
        run_id: Arc<str>,
        flow: &'static str,
        runtime: Arc<dyn FlowRuntime>,
        payload_limit: PayloadLimit,
    ) -> Self {
        let seed = runtime.random_seed();
        FlowContext {
            run_id,
            flow,
            rng: Mutex::new(SplitMix64(seed)),
            child_ids: Mutex::new(SplitMix64(seed ^ 0x6368_696C_645F_6964)),
            runtime,
            payload_limit,
            agent_loop: None,
            misuse: Mutex::new(None),
        }
    }

    /// Whether `patch_id` is one Temporal can keep (not empty, at most [`MAX_PATCH_ID_BYTES`]);
    /// if not, the run is failed with [`FlowError::InvalidPatchId`] naming the flow and the id.
    fn check_patch_id(&self, call: &str, patch_id: &str) -> bool {
        let problem = if patch_id.is_empty() {
            format!(
                "`ctx.{call}(\"\")`: a patch id must not be empty; name the change, e.g. `ctx.{call}(\"review-step\")`"
            )
        } else if patch_id.len() > MAX_PATCH_ID_BYTES {
            let shown: String = patch_id.chars().take(32).collect();
            format!(
                "`ctx.{call}(..)`: patch id `{shown}…` is {} bytes long, over the {MAX_PATCH_ID_BYTES} bytes Temporal keeps of one (its visibility store indexes patch ids as `CHAR(255)`); give the change a short name",
                patch_id.len()
            )
        } else {
            return true;
        };
        let mut misuse = self.misuse.lock().unwrap_or_else(|p| p.into_inner());
        misuse.get_or_insert(FlowError::InvalidPatchId {
            flow: self.flow.to_owned(),
            message: problem,
        });
        false
    }

    /// The misuse that fails this run, if any (taken once).
    fn take_misuse(&self) -> Option<FlowError> {
        self.misuse.lock().unwrap_or_else(|p| p.into_inner()).take()
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
        let input = encode(
            "agent",
            A::NAME,
            Direction::Input,
            &input,
            self.payload_limit,
        )?;
        let output = self.call_json(spec, input).await?;
        decode(A::NAME, Direction::Output, output)
    }

    /// Calls agent `spec` on checked JSON input (the step-by-step loop when it runs so).
    pub(crate) fn call_json(
        &self,
        spec: &'static AgentSpec,
        input: Value,
    ) -> ContextOp<BoxFuture<'_, Result<Value, FlowError>>> {
        let call = AgentCall { spec, input };
        ContextOp(match &self.agent_loop {
            Some(agent_loop) if spec.runs_step_by_step() => Box::pin(async move {
                match agent_loop.call_agent(call, &*self.runtime).await {
                    // a long session moves on in a child run with a history of its own
                    Err(FlowError::ContinueAsNew { flow, input }) if flow == SESSION_FLOW => {
                        let child = ChildCall {
                            spec: &SESSION_SPEC,
                            run_id: self
                                .child_id(&format!("{}-{}-session", self.run_id, spec.name)),
                            input,
                        };
                        match self.runtime.call_flow(child).await {
                            // the agent's error, not the session's
                            Err(FlowError::ChildFlow { cause, .. }) => Err(*cause),
                            other => other,
                        }
                    }
                    other => other,
                }
            }),
            _ => self.runtime.call_agent(call),
        })
    }

    /// Drives a session carried into a run of the built-in flow `flock.session`.
    pub(crate) fn resume_session(
        &self,
        session: Value,
    ) -> ContextOp<BoxFuture<'_, Result<Value, FlowError>>> {
        ContextOp(match &self.agent_loop {
            Some(agent_loop) => agent_loop.resume_session(session, &*self.runtime),
            None => Box::pin(std::future::ready(Err(FlowError::msg(
                "a session of an agent that runs step by step reached a worker with no such agent",
            )))),
        })
    }

    /// The payload limit of what this run sends.
    pub(crate) fn payload_limit(&self) -> PayloadLimit {
        self.payload_limit
    }

    /// The runtime the run asks (its layers included).
    pub(crate) fn runtime(&self) -> &dyn FlowRuntime {
        &*self.runtime
    }

    /// A child run id `<prefix>-<uuid>` from this run's child-id stream (the same on replay).
    pub(crate) fn child_id(&self, prefix: &str) -> String {
        format!("{prefix}-{}", uuid_from(&self.child_ids))
    }

    /// Runs another flow as a child flow (on Temporal: a child workflow); `.await` it for its
    /// output. Its run id is `<flow>-<uuid>`, from a random stream of this run's own, or the one
    /// given with [`.id(..)`](ChildRequest::id) (so that others can message the child).
    pub fn call_flow<F: Flow>(&self, flow: F, input: F::Input) -> ChildRequest<'_, F> {
        ChildRequest {
            state: ChildState::Ready {
                ctx: self,
                flow,
                input,
                id: None,
            },
        }
    }

    /// Waits for the next signal `signal` sent to this run (oldest first; signals that arrived
    /// before are kept until taken). `.await` it, or bound the wait with
    /// [`.timeout(..)`](Wait::timeout), a durable timer on Temporal.
    pub fn wait<F: Flow, T: AgentIo>(&self, signal: Signal<F, T>) -> Wait<'_, T> {
        Wait {
            ctx: self,
            flow: F::NAME,
            name: signal.name(),
            types: PhantomData,
        }
    }

    /// Publishes the state that query `query` answers with from now on (on Temporal, also while
    /// the worker that runs the flow is waiting, and after the run ended).
    pub fn publish<F: Flow, T: AgentIo>(
        &self,
        query: Query<F, T>,
        state: &T,
    ) -> Result<(), FlowError> {
        self.check_own(F::NAME, "query", query.name())?;
        let json = encode(
            "query",
            query.name(),
            Direction::Output,
            state,
            self.payload_limit,
        )?;
        self.runtime.publish(query.name(), json);
        Ok(())
    }

    /// Waits for the next update `update` sent to this run (already accepted by its validator),
    /// to be answered with [`UpdateRequest::reply`]. The sender waits until then.
    pub async fn next_update<F: Flow, I: AgentIo, O: AgentIo>(
        &self,
        update: Update<F, I, O>,
    ) -> Result<UpdateRequest<I, O>, FlowError> {
        self.check_own(F::NAME, "update", update.name())?;
        let (id, input) = ContextOp(self.runtime.next_update(update.name())).await?;
        match decode::<I>(update.name(), Direction::Input, input) {
            Ok(input) => Ok(UpdateRequest {
                id,
                flow: self.flow,
                name: update.name(),
                input,
                runtime: Some(self.runtime.clone()),
                payload_limit: self.payload_limit,
                answer: PhantomData,
            }),
            Err(error) => {
                self.runtime.answer_update(id, Err(error.to_string()));
                Err(error)
            }
        }
    }

    /// Sends signal `signal` to the running flow with run id `run_id` (on Temporal: a signal to
    /// an external workflow).
    pub async fn signal_flow<F: Flow, T: AgentIo>(
        &self,
        signal: Signal<F, T>,
        run_id: impl Into<String>,
        value: &T,
    ) -> Result<(), FlowError> {
        // messages stay within Temporal's limit (`FlowSpec::check_message`)
        let value = encode(
            "signal",
            signal.name(),
            Direction::Input,
            value,
            PayloadLimit::TEMPORAL,
        )?;
        let call = SignalCall {
            flow: F::default().spec(),
            run_id: run_id.into(),
            name: signal.name(),
            value,
        };
        ContextOp(self.runtime.signal_flow(call)).await
    }

    /// Ends this run and starts a new run of the same flow, with the same run id, on `input`: a
    /// flow that lives long (one that handles many messages) keeps its history bounded this way.
    /// Return it from the flow body: `return ctx.continue_as_new(my_flow, next);`. Signals not
    /// taken yet are carried into the next run (in order, ahead of new ones), so none sent with
    /// `Ok` is lost; updates not taken yet fail back to their senders. The record links the runs.
    pub fn continue_as_new<F: Flow, T>(&self, flow: F, input: F::Input) -> Result<T, FlowError> {
        if F::NAME != self.flow {
            return Err(FlowError::msg(format!(
                "flow `{}` cannot continue as new as `{}`: a run continues as the same flow",
                self.flow,
                F::NAME
            )));
        }
        let _ = flow;
        let input = encode(
            "flow",
            F::NAME,
            Direction::Input,
            &input,
            self.payload_limit,
        )?;
        Err(FlowError::ContinueAsNew {
            flow: F::NAME.to_owned(),
            input,
        })
    }

    /// Whether the executor suggests continuing as new (on Temporal: the server says the history
    /// is large). Never on the local executor.
    pub fn continue_as_new_suggested(&self) -> bool {
        self.runtime.continue_as_new_suggested()
    }

    /// Versioning: whether this run takes the code path of patch `patch_id`. Runs started after
    /// the patch was deployed take it (`true`); runs that were in flight before replay their
    /// history without it (`false`). Always `true` on the local executor.
    ///
    /// ```rust,ignore
    /// if ctx.patched("review-step") {
    ///     ctx.call(review, draft.clone()).await?;
    /// }
    /// ```
    ///
    /// A patch id is a short name: an empty one, or one over [`MAX_PATCH_ID_BYTES`], fails the run
    /// with [`FlowError::InvalidPatchId`] naming the flow and the id, on both executors. The call
    /// still gives a `bool` (`false`), so that the `if` above stays as simple as it is: the flow
    /// body is stopped when it next yields (it awaits a context operation or returns), before
    /// anything it started then is awaited, and the run fails with that error whatever the body
    /// returns.
    pub fn patched(&self, patch_id: &str) -> bool {
        if !self.check_patch_id("patched", patch_id) {
            return false;
        }
        self.runtime.patched(patch_id)
    }

    /// Versioning, second step: once no run from before patch `patch_id` is left, replace
    /// `if ctx.patched(id) { new } else { old }` by `ctx.deprecate_patch(id); new`; remove the
    /// call once no run from before the deprecation is left either. An invalid id fails the run
    /// as in [`patched`](Self::patched).
    pub fn deprecate_patch(&self, patch_id: &str) {
        if self.check_patch_id("deprecate_patch", patch_id) {
            self.runtime.deprecate_patch(patch_id);
        }
    }

    fn check_own(&self, flow: &str, kind: &str, name: &str) -> Result<(), FlowError> {
        if flow == self.flow {
            Ok(())
        } else {
            Err(FlowError::Message {
                flow: self.flow.to_owned(),
                message: format!(
                    "flow `{}` used {kind} `{name}` of flow `{flow}`: a flow takes its own messages",
                    self.flow
                ),
            })
        }
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

/// A child-flow call: `.await` it (or join it) for the child's output, or give its run id first.
#[must_use = "a child flow does nothing until it is awaited"]
pub struct ChildRequest<'a, F: Flow> {
    state: ChildState<'a, F>,
}

enum ChildState<'a, F: Flow> {
    Ready {
        ctx: &'a FlowContext,
        flow: F,
        input: F::Input,
        id: Option<String>,
    },
    Running(BoxFuture<'a, Result<F::Output, FlowError>>),
    Taken,
}

impl<F: Flow> ChildRequest<'_, F> {
    /// The child's run id (on Temporal: its workflow id), so that an approver or another flow
    /// can address it. It must be unique among running flows.
    pub fn id(mut self, run_id: impl Into<String>) -> Self {
        if let ChildState::Ready { id, .. } = &mut self.state {
            *id = Some(run_id.into());
        }
        self
    }
}

impl<F: Flow> Unpin for ChildRequest<'_, F> {}

impl<'a, F: Flow> std::future::Future for ChildRequest<'a, F> {
    type Output = Result<F::Output, FlowError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        if let ChildState::Ready { .. } = self.state {
            let ChildState::Ready {
                ctx,
                flow,
                input,
                id,
            } = std::mem::replace(&mut self.state, ChildState::Taken)
            else {
                unreachable!("matched above")
            };
            // the id stream advances either way, so that naming one child shifts no other's id
            let generated = format!("{}-{}", F::NAME, uuid_from(&ctx.child_ids));
            let run_id = id.unwrap_or(generated);
            self.state = ChildState::Running(Box::pin(async move {
                let spec = flow.spec();
                let input = encode("flow", F::NAME, Direction::Input, &input, ctx.payload_limit)?;
                let output = ContextOp(ctx.runtime.call_flow(ChildCall {
                    spec,
                    run_id,
                    input,
                }))
                .await?;
                decode(F::NAME, Direction::Output, output)
            }));
        }
        match &mut self.state {
            ChildState::Running(future) => future.as_mut().poll(cx),
            _ => panic!("a child-flow call polled after it completed"),
        }
    }
}

/// A wait for a signal: `.await` it for the signal's value, or bound it with
/// [`timeout`](Self::timeout).
#[must_use = "a wait does nothing until it is awaited"]
pub struct Wait<'a, T> {
    ctx: &'a FlowContext,
    flow: &'static str,
    name: &'static str,
    types: PhantomData<fn() -> T>,
}

impl<'a, T: AgentIo> Wait<'a, T> {
    /// Waits at most `timeout` (on Temporal: a durable timer raced with the signal, the same on
    /// replay): `None` when it passed first.
    pub fn timeout(self, timeout: Duration) -> BoxFuture<'a, Result<Option<T>, FlowError>> {
        Box::pin(async move {
            self.ctx.check_own(self.flow, "signal", self.name)?;
            let signal = ContextOp(self.ctx.runtime.next_signal(self.name));
            let timer = ContextOp(self.ctx.runtime.sleep(timeout));
            match futures::future::select(signal, timer).await {
                futures::future::Either::Left((value, _)) => {
                    decode(self.name, Direction::Input, value?).map(Some)
                }
                futures::future::Either::Right((fired, _)) => fired.map(|()| None),
            }
        })
    }
}

impl<'a, T: AgentIo> std::future::IntoFuture for Wait<'a, T> {
    type Output = Result<T, FlowError>;
    type IntoFuture = BoxFuture<'a, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            self.ctx.check_own(self.flow, "signal", self.name)?;
            let value = ContextOp(self.ctx.runtime.next_signal(self.name)).await?;
            decode(self.name, Direction::Input, value)
        })
    }
}

fn uuid_from(stream: &Mutex<SplitMix64>) -> uuid::Uuid {
    let mut stream = stream.lock().unwrap_or_else(|p| p.into_inner());
    let high = stream.next() as u128;
    let low = stream.next() as u128;
    uuid::Builder::from_random_bytes(((high << 64) | low).to_be_bytes()).into_uuid()
}

/// A value on its way to an agent or flow, as JSON within the payload limit `limit`.
pub(crate) fn encode<T: Serialize>(
    kind: &str,
    name: &str,
    direction: Direction,
    value: &T,
    limit: PayloadLimit,
) -> Result<Value, FlowError> {
    let json = serde_json::to_value(value).map_err(|e| FlowError::Serialization {
        at: name.to_owned(),
        message: format!("{}: {e}", direction.name()),
    })?;
    let bytes = json_size_within(&json, limit.bytes());
    check_payload_size(kind, name, direction, bytes, limit).map_err(|message| {
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

/// An update the flow took: its input, to be answered with [`reply`](Self::reply) or
/// [`reject`](Self::reject). One dropped unanswered is rejected, so its sender never waits
/// forever.
#[must_use = "an update's sender waits until it is answered"]
pub struct UpdateRequest<I, O> {
    pub(crate) id: u64,
    pub(crate) flow: &'static str,
    pub(crate) name: &'static str,
    pub(crate) input: I,
    pub(crate) runtime: Option<Arc<dyn FlowRuntime>>,
    pub(crate) payload_limit: PayloadLimit,
    pub(crate) answer: PhantomData<fn() -> O>,
}

impl<I, O: Serialize> UpdateRequest<I, O> {
    /// What the sender sent.
    pub fn input(&self) -> &I {
        &self.input
    }

    /// Answers the update: its sender gets `answer`.
    pub fn reply(mut self, answer: &O) -> Result<(), FlowError> {
        let json = encode(
            "update",
            self.name,
            Direction::Output,
            answer,
            self.payload_limit,
        );
        let answer = json.as_ref().map_err(ToString::to_string).cloned();
        if let Some(runtime) = self.runtime.take() {
            runtime.answer_update(self.id, answer);
        }
        json.map(drop)
    }

    /// Rejects the update: its sender gets an error saying `reason`.
    pub fn reject(mut self, reason: impl Into<String>) {
        if let Some(runtime) = self.runtime.take() {
            runtime.answer_update(self.id, Err(reason.into()));
        }
    }
}

impl<I, O> Drop for UpdateRequest<I, O> {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.answer_update(
                self.id,
                Err(format!(
                    "flow `{}` took update `{}` and did not answer it",
                    self.flow, self.name
                )),
            );
        }
    }
}

impl<I: std::fmt::Debug, O> std::fmt::Debug for UpdateRequest<I, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpdateRequest")
            .field("update", &self.name)
            .field("input", &self.input)
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
            // a misuse of the context (an invalid patch id) ends the body when it yields
            let mut guarded = std::pin::pin!(Guarded::new(F::NAME, body));
            let output = std::future::poll_fn(|cx| {
                let polled = guarded.as_mut().poll(cx);
                match ctx.take_misuse() {
                    Some(misuse) => std::task::Poll::Ready(Err(misuse)),
                    None => polled,
                }
            })
            .await?;
            encode(
                "flow",
                F::NAME,
                Direction::Output,
                &output,
                ctx.payload_limit,
            )
        })
    }
}

/// Runs the body of `flow` as run `run_id` over an executor's `runtime`, the same way on both
/// executors: the `Flock`'s step `layers` around the runtime, the run's [`FlowContext`] (sends
/// checked against `payload_limit`), its span and its metrics. `input` is the run's input, or
/// why it could not be read (the run fails with that, and is counted). `replaying` tells, at
/// the start and at the end, whether the executor is replaying what was reported before (a
/// Temporal worker catching up on a run's history): what a replay would report again is not.
pub(crate) async fn run_body(
    flow: &dyn DynFlow,
    run_id: Arc<str>,
    runtime: Arc<dyn FlowRuntime>,
    layers: &crate::runtime::StepLayers,
    payload_limit: PayloadLimit,
    input: Result<Value, FlowError>,
    replaying: impl Fn() -> bool,
) -> Result<Value, FlowError> {
    let name = flow.spec().name;
    // a run with a budget checks it around every call, below every other layer
    let runtime = match runtime.budget() {
        Some(_) => crate::runtime::Layered::wrap(
            runtime,
            &[std::sync::Arc::new(crate::runtime::BudgetCheck) as _],
        ),
        None => runtime,
    };
    let runtime = crate::runtime::Layered::wrap(runtime, &layers.layers);
    let mut ctx = FlowContext::new(run_id.clone(), name, runtime, payload_limit);
    ctx.agent_loop = layers.agent_loop.clone();
    let span = if replaying() {
        tracing::Span::none()
    } else {
        crate::observe::flow_started(name);
        crate::observe::flow_span(name, &run_id)
    };
    match input {
        // Pinned here so that the span is still ours after the run: a clone would cost two
        // more calls into the subscriber per run.
        Ok(input) => {
            let mut running = std::pin::pin!(flow.run_json(&ctx, input).instrument(span));
            let result = running.as_mut().await;
            if !replaying() {
                crate::observe::flow_finished(running.span(), name, &result);
            }
            result
        }
        Err(error) => {
            let result = Err(error);
            if !replaying() {
                crate::observe::flow_finished(&span, name, &result);
            }
            result
        }
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
