//! The runtime interface: what a running flow asks of the executor that runs it, at the JSON
//! level. Both executors implement [`FlowRuntime`]; [`FlowContext`](crate::FlowContext) is a thin
//! typed layer over it, and everything that must behave the same on both (serialization and its
//! errors, payload size checks, panic handling, RNG seeding, the determinism guard) is written
//! once above it, in [`flow`](crate::flow) and [`agent`](crate::agent).
//!
//! The interface names definitions by their static specs; an executor finds what to run by name
//! in its registry, so that an unregistered definition fails the same way on both executors.
//!
//! Messages (signals, queries, updates) are kept by the executor in a per-run mailbox whose rules
//! are written once ([`message`](crate::message)); the executor delivers into it and wakes the
//! flow. Continue-as-new is not a method: the flow returns
//! [`FlowError::ContinueAsNew`](crate::FlowError::ContinueAsNew) and the executor starts the next
//! run.
//!
//! It is object-safe, and behaviour is added by wrapping it (object_store's `LimitStore<T>`,
//! tower's layers): a [`StepLayer`] sees every agent call of a flow and decides how it reaches
//! the executor — concurrency limits, budgets, the step-by-step agent loop — written once, above
//! both executors. [`run_body`](crate::flow::run_body) puts the layers of a `Flock` around its
//! executor's runtime for every run.

use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use serde_json::Value;

use crate::approval::Decision;
use crate::error::FlowError;
use crate::spec::{AgentSpec, FlowSpec};
use crate::usage::{Budget, Usage};

/// One durable agent call, at the JSON level.
#[derive(Debug)]
#[non_exhaustive]
pub struct AgentCall {
    /// The agent (its name finds it in the executor's registry).
    pub spec: &'static AgentSpec,
    /// Its input, already checked against the payload limit.
    pub input: Value,
}

/// One child-flow call, at the JSON level.
#[derive(Debug)]
#[non_exhaustive]
pub struct ChildCall {
    /// The child flow.
    pub spec: &'static FlowSpec,
    /// The child's run id (on Temporal: its workflow id).
    pub run_id: String,
    /// Its input, already checked against the payload limit.
    pub input: Value,
}

/// What a running flow asks of its executor. Implemented by the local executor (in-process) and
/// the Temporal executor (each call a command of the workflow); see the module docs.
///
/// Futures are `Send` so that flow bodies are (the local executor runs them as tokio tasks); the
/// Temporal implementation wraps its single-threaded workflow futures accordingly.
pub trait FlowRuntime: Send + Sync {
    /// Calls an agent with its retry policy and timeouts; gives its output JSON, or the error
    /// after the last attempt.
    fn call_agent(&self, call: AgentCall) -> BoxFuture<'_, Result<Value, FlowError>>;

    /// Runs a child flow to completion; gives its output JSON.
    fn call_flow(&self, call: ChildCall) -> BoxFuture<'_, Result<Value, FlowError>>;

    /// A durable timer. Fails with [`FlowError::Cancelled`] when the run is cancelled meanwhile.
    fn sleep(&self, duration: Duration) -> BoxFuture<'_, Result<(), FlowError>>;

    /// The run's current time (on Temporal: the workflow task's time, identical on replay).
    fn now(&self) -> SystemTime;

    /// A seed for the run's random streams: different for every run (also when a run id is
    /// reused), identical on replay.
    fn random_seed(&self) -> u64;

    /// Whether the code path behind patch `patch_id` is taken (Temporal's `patched`): new runs
    /// take it, runs started before it replay without it. Without versioning, always `true`.
    fn patched(&self, patch_id: &str) -> bool {
        let _ = patch_id;
        true
    }

    /// Like [`patched`](Self::patched) once no run from before the patch is left: the new path
    /// is always taken, and the marker stays so that the `patched` call can be removed later.
    fn deprecate_patch(&self, patch_id: &str) -> bool {
        let _ = patch_id;
        true
    }

    /// Whether the executor suggests continuing as new (on Temporal: the history grew large).
    fn continue_as_new_suggested(&self) -> bool {
        false
    }

    /// Waits for the next signal `name` (declared by the flow) and takes it, oldest first.
    /// Fails with [`FlowError::Cancelled`] when the run is cancelled meanwhile.
    fn next_signal(&self, name: &'static str) -> BoxFuture<'_, Result<Value, FlowError>>;

    /// Sets the state that query `name` answers with from now on.
    fn publish(&self, name: &'static str, value: Value);

    /// Waits for the next update `name` (already accepted by its validator) and takes it; gives
    /// its id (to answer it by) and its input.
    fn next_update(&self, name: &'static str) -> BoxFuture<'_, Result<(u64, Value), FlowError>>;

    /// Answers update `id`: its sender gets the value, or an error with the message.
    fn answer_update(&self, id: u64, answer: Result<Value, String>);

    /// Sends signal `name` to the running flow `flow` with run id `run_id`.
    fn signal_flow(&self, signal: SignalCall) -> BoxFuture<'_, Result<(), FlowError>>;

    /// The agent (or step) registered as `name` where the run executes, for calls made by name
    /// (the batches of [`map`](crate::map)).
    fn agent_spec(&self, name: &str) -> Option<&'static AgentSpec> {
        let _ = name;
        None
    }

    /// The run tree's budget ([`RunRequest::budget`](crate::RunRequest::budget)), if it has one.
    fn budget(&self) -> Option<Budget> {
        None
    }

    /// Shows tool call `tool` of agent `agent` (with the model's `arguments`) as waiting for
    /// approval and waits until someone decides it (see [`approval`](crate::approval)). Fails
    /// with [`FlowError::Cancelled`] when the run is cancelled meanwhile.
    fn approval(
        &self,
        agent: &'static str,
        tool: &'static str,
        arguments: Value,
    ) -> BoxFuture<'_, Result<Decision, FlowError>> {
        let _ = arguments;
        Box::pin(std::future::ready(Err(FlowError::Failed {
            message: format!(
                "tool `{tool}` of agent `{agent}` needs an approval, and this runtime cannot wait for one"
            ),
        })))
    }

    /// What the run tree has spent on models so far, as far as this run knows: its own calls,
    /// its finished child flows', and (on Temporal) what the tree had spent when this run
    /// started. Kept only when the run has a budget.
    fn spent(&self) -> Usage {
        Usage::default()
    }
}

/// `Ok` while the run tree's budget has something left (or there is none); else the failure that
/// names the budget and the totals. Asked before each agent call and child flow starts.
pub(crate) fn budget_left(runtime: &dyn FlowRuntime) -> Result<(), FlowError> {
    check_budget(runtime, Budget::used_up_by)
}

/// `Ok` unless the run tree has spent more than its budget; asked after each agent call and
/// child flow ends.
pub(crate) fn budget_kept(runtime: &dyn FlowRuntime) -> Result<(), FlowError> {
    check_budget(runtime, Budget::exceeded_by)
}

/// The run's budget against what the tree has spent: the failure when `over` says so.
fn check_budget(
    runtime: &dyn FlowRuntime,
    over: fn(&Budget, &Usage) -> bool,
) -> Result<(), FlowError> {
    let Some(budget) = runtime.budget() else {
        return Ok(());
    };
    let spent = runtime.spent();
    match over(&budget, &spent) {
        true => Err(FlowError::BudgetExceeded { budget, spent }),
        false => Ok(()),
    }
}

/// The budget check around every agent call (and every model request and tool call of an agent
/// that runs step by step): the innermost layer of a run with a budget, written once for both
/// executors, which count what each call spent.
pub(crate) struct BudgetCheck;

impl StepLayer for BudgetCheck {
    fn call_agent<'a>(
        &'a self,
        call: AgentCall,
        next: &'a dyn FlowRuntime,
    ) -> BoxFuture<'a, Result<Value, FlowError>> {
        Box::pin(async move {
            budget_left(next)?;
            let output = next.call_agent(call).await?;
            budget_kept(next)?;
            Ok(output)
        })
    }
}

/// A signal one flow sends another, at the JSON level.
#[derive(Debug)]
#[non_exhaustive]
pub struct SignalCall {
    /// The receiving flow.
    pub flow: &'static FlowSpec,
    /// Its run id.
    pub run_id: String,
    /// The signal.
    pub name: &'static str,
    /// Its JSON, already checked against the signal's type.
    pub value: Value,
}

/// Behaviour around a flow's agent calls, above both executors: a layer gets each call and the
/// runtime below it (the next layer, and at the bottom the executor), and decides how the call
/// reaches it: as it is, after waiting, refused, or as several calls. Install layers with
/// [`FlockBuilder::step_layer`](crate::FlockBuilder::step_layer); the first installed is the
/// outermost.
///
/// A layer runs inside the flow: on Temporal it is workflow code, so it must be deterministic
/// like a flow body (no clocks, randomness or I/O of its own; what it needs goes through the
/// runtime it is given).
///
/// ```
/// use flock::runtime::{AgentCall, FlowRuntime, StepLayer};
/// use flock::FlowError;
/// use futures::future::BoxFuture;
/// use serde_json::Value;
///
/// /// Refuses calls to agents whose name starts with `admin_`.
/// struct NoAdmin;
///
/// impl StepLayer for NoAdmin {
///     fn call_agent<'a>(
///         &'a self,
///         call: AgentCall,
///         next: &'a dyn FlowRuntime,
///     ) -> BoxFuture<'a, Result<Value, FlowError>> {
///         if call.spec.name.starts_with("admin_") {
///             return Box::pin(async move {
///                 Err(FlowError::msg(format!("agent `{}` is not allowed here", call.spec.name)))
///             });
///         }
///         next.call_agent(call)
///     }
/// }
/// let _ = flock::Flock::builder().step_layer(NoAdmin);
/// ```
pub trait StepLayer: Send + Sync + 'static {
    /// One agent call of a flow; `next` runs it (or the next layer does).
    fn call_agent<'a>(
        &'a self,
        call: AgentCall,
        next: &'a dyn FlowRuntime,
    ) -> BoxFuture<'a, Result<Value, FlowError>>;
}

/// The built-in flow a long session of an agent that runs step by step moves on in (see
/// [`AgentSpec::continue_as_new_after`]): its input is the session, its output the agent's.
pub(crate) const SESSION_FLOW: &str = "flock.session";

/// The spec of [`SESSION_FLOW`].
pub(crate) static SESSION_SPEC: FlowSpec = {
    let mut spec = FlowSpec::new(SESSION_FLOW);
    spec.description = "The rest of a long session of an agent that runs step by step, in a \
                        history of its own (continued as new at safe points between steps).";
    spec.location = "flock/src/durable_loop.rs";
    spec
};

/// The step-by-step agent loop, as the flow context drives it: a layer for the calls of agents
/// that run so, and the resumption of a session carried into a run of [`SESSION_FLOW`].
pub(crate) trait AgentLoopLayer: StepLayer {
    /// Drives the session `session` (what the loop handed over) to the agent's output.
    fn resume_session<'a>(
        &'a self,
        session: Value,
        next: &'a dyn FlowRuntime,
    ) -> BoxFuture<'a, Result<Value, FlowError>>;
}

/// The step layers of a `Flock`, the first outermost, and above them the step-by-step agent
/// loop when an agent of the `Flock` runs so (see [`step`](crate::step)): the run's
/// [`FlowContext`](crate::FlowContext) hands it the calls of such agents, so a run pays for it
/// only when it calls one.
#[derive(Clone, Default)]
pub(crate) struct StepLayers {
    pub(crate) layers: Vec<std::sync::Arc<dyn StepLayer>>,
    pub(crate) agent_loop: Option<std::sync::Arc<dyn AgentLoopLayer>>,
}

impl std::fmt::Debug for StepLayers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "StepLayers({}, agent loop: {})",
            self.layers.len(),
            self.agent_loop.is_some()
        )
    }
}

/// A runtime with a layer around its agent calls; everything else goes to the runtime below.
pub(crate) struct Layered {
    layer: std::sync::Arc<dyn StepLayer>,
    inner: std::sync::Arc<dyn FlowRuntime>,
}

impl Layered {
    /// `runtime` with `layers` around it, the first outermost.
    pub(crate) fn wrap(
        runtime: std::sync::Arc<dyn FlowRuntime>,
        layers: &[std::sync::Arc<dyn StepLayer>],
    ) -> std::sync::Arc<dyn FlowRuntime> {
        layers.iter().rev().fold(runtime, |inner, layer| {
            std::sync::Arc::new(Layered {
                layer: layer.clone(),
                inner,
            })
        })
    }
}

impl FlowRuntime for Layered {
    fn call_agent(&self, call: AgentCall) -> BoxFuture<'_, Result<Value, FlowError>> {
        self.layer.call_agent(call, &*self.inner)
    }

    fn call_flow(&self, call: ChildCall) -> BoxFuture<'_, Result<Value, FlowError>> {
        self.inner.call_flow(call)
    }

    fn agent_spec(&self, name: &str) -> Option<&'static AgentSpec> {
        self.inner.agent_spec(name)
    }

    fn budget(&self) -> Option<Budget> {
        self.inner.budget()
    }

    fn approval(
        &self,
        agent: &'static str,
        tool: &'static str,
        arguments: Value,
    ) -> BoxFuture<'_, Result<Decision, FlowError>> {
        self.inner.approval(agent, tool, arguments)
    }

    fn spent(&self) -> Usage {
        self.inner.spent()
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'_, Result<(), FlowError>> {
        self.inner.sleep(duration)
    }

    fn now(&self) -> SystemTime {
        self.inner.now()
    }

    fn random_seed(&self) -> u64 {
        self.inner.random_seed()
    }

    fn patched(&self, patch_id: &str) -> bool {
        self.inner.patched(patch_id)
    }

    fn deprecate_patch(&self, patch_id: &str) -> bool {
        self.inner.deprecate_patch(patch_id)
    }

    fn continue_as_new_suggested(&self) -> bool {
        self.inner.continue_as_new_suggested()
    }

    fn next_signal(&self, name: &'static str) -> BoxFuture<'_, Result<Value, FlowError>> {
        self.inner.next_signal(name)
    }

    fn publish(&self, name: &'static str, value: Value) {
        self.inner.publish(name, value)
    }

    fn next_update(&self, name: &'static str) -> BoxFuture<'_, Result<(u64, Value), FlowError>> {
        self.inner.next_update(name)
    }

    fn answer_update(&self, id: u64, answer: Result<Value, String>) {
        self.inner.answer_update(id, answer)
    }

    fn signal_flow(&self, call: SignalCall) -> BoxFuture<'_, Result<(), FlowError>> {
        self.inner.signal_flow(call)
    }
}
