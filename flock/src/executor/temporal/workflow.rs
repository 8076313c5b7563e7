//! Flows as Temporal workflows: one generic adapter, registered once per flow (and per hand-off
//! chain), named after the flow. The flow body runs as workflow code against a [`FlowContext`]
//! over [`TemporalRun`], the runtime whose calls become activities, timers and child workflows.

use std::any::Any;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::FutureExt;
use futures::future::LocalBoxFuture;
use send_wrapper::SendWrapper;
use serde_json::Value;
use temporalio_common::data_converters::{PayloadConverter, RawValue};
use temporalio_common::protos::temporal::api::common::v1::Payloads;
use temporalio_common::{ActivityDefinition, HasWorkflowDefinition, WorkflowDefinition};
use temporalio_sdk::workflow_interceptors::WorkflowOutputValue;
use temporalio_sdk::workflows::{
    UpdateDefinitionDescriptor, WorkflowDefinitionDescriptor, WorkflowError, WorkflowImplementation,
};
use temporalio_sdk::{
    ActivityExecutionError, ActivityOptions, ApplicationFailure, ChildWorkflowOptions,
    LocalActivityOptions, WorkflowContext, WorkflowContextView, WorkflowTermination,
};

use super::WorkerShared;
use super::activity::open_envelope;
use crate::agent::json_size;
use crate::approval::{self, Decision};
use crate::error::{AgentError, ErrorClass, FlowError};
use crate::flow::{Flow, run_body};
use crate::message::{CarriedSignals, Mailbox};
use crate::observe;
use crate::registry::Registry;
use crate::runtime::{AgentCall, ChildCall, FlowRuntime, SignalCall};
use crate::spec::{
    AgentKind, AgentSpec, Direction, FlowSpec, MessageKind, PayloadLimit, check_payload_size,
};
use crate::usage::{Budget, Usage};

/// Calls an activity or workflow by name with JSON in and out (the worker side is typed; the
/// payloads are JSON either way).
pub(crate) struct ByName(pub(crate) &'static str);

impl ActivityDefinition for ByName {
    type Input = Value;
    type Output = Value;

    fn name(&self) -> &str {
        self.0
    }
}

impl WorkflowDefinition for ByName {
    type Input = Value;
    type Output = Value;

    fn name(&self) -> &str {
        self.0
    }
}

impl HasWorkflowDefinition for ByName {
    type Run = ByName;
}

/// A signal, query or update by name, with JSON in and out (sent by clients and by flows; the
/// workflow side decodes by the flow's declarations).
pub(crate) struct MessageByName(pub(crate) String);

impl temporalio_common::SignalDefinition for MessageByName {
    type Workflow = ByName;
    type Input = Value;

    fn name(&self) -> &str {
        &self.0
    }
}

impl temporalio_common::QueryDefinition for MessageByName {
    type Workflow = ByName;
    type Input = Value;
    type Output = Value;

    fn name(&self) -> &str {
        &self.0
    }
}

impl temporalio_common::UpdateDefinition for MessageByName {
    type Workflow = ByName;
    type Input = Value;
    type Output = Value;

    fn name(&self) -> &str {
        &self.0
    }
}

/// A flow's workflow type as the worker sees it: the input is taken raw, so that a run started
/// with no input or a non-JSON one reaches the flow and fails there with a clear error (a typed
/// input that fails to decode is "Failed to create workflow", retried forever).
pub(crate) struct RawInput(&'static str);

impl WorkflowDefinition for RawInput {
    type Input = RawValue;
    type Output = Value;

    fn name(&self) -> &str {
        self.0
    }
}

/// A child workflow by name, raw payloads in and out: a flow with a budget starts its children
/// with the budget beside their input, and reads what they spent off their result.
pub(crate) struct RawByName(pub(crate) &'static str);

impl WorkflowDefinition for RawByName {
    type Input = RawValue;
    type Output = RawValue;

    fn name(&self) -> &str {
        self.0
    }
}

impl HasWorkflowDefinition for RawByName {
    type Run = RawByName;
}

/// The metadata key of the payload that carries a run's untaken signals into the run it
/// continues as (the second argument of that run's input).
const CARRIED_SIGNALS: &str = "flock-carried-signals";

/// The memo key of a run's budget (set by the client that starts it), and the metadata key of
/// the input payload that carries the budget and the tree's spending so far into a child flow or
/// the run a run continues as.
const BUDGET: &str = "flock-budget";

/// The metadata key of a run's result that says what the run and its children spent (read by
/// the parent of a child flow with a budget).
const SPENT: &str = "flock-spent";

/// A run tree's budget, and what the tree had spent when this run started.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
struct BudgetState {
    budget: Budget,
    #[serde(default)]
    spent: Usage,
}

/// The budget in a run's memo, if it has one; one that is not a budget is an error naming it.
fn memo_budget(
    flow: &str,
    memo: &temporalio_common::Memo,
) -> Result<Option<BudgetState>, FlowError> {
    let unreadable = |e: String| FlowError::Serialization {
        at: flow.to_owned(),
        message: format!("the run's budget (memo `{BUDGET}`) cannot be read: {e}"),
    };
    let Some(value) = memo
        .get::<Value>(BUDGET)
        .map_err(|e| unreadable(e.to_string()))?
    else {
        return Ok(None);
    };
    let state: BudgetState =
        serde_json::from_value(value).map_err(|e| unreadable(e.to_string()))?;
    match state.budget.problem() {
        Some(problem) => Err(unreadable(format!("the budget {problem}"))),
        None => Ok(Some(state)),
    }
}

/// The memo a run with `budget` starts with.
pub(crate) fn budget_memo(budget: Budget) -> temporalio_common::MemoValues {
    let mut memo = temporalio_common::MemoValues::new();
    memo.insert(BUDGET, serde_json::json!({ "budget": budget }));
    memo
}

/// A JSON payload of `value`.
fn json_payload(value: &Value) -> temporalio_common::protos::temporal::api::common::v1::Payload {
    temporalio_common::protos::temporal::api::common::v1::Payload {
        metadata: std::collections::HashMap::from([(
            "encoding".to_owned(),
            b"json/plain".to_vec(),
        )]),
        data: serde_json::to_vec(value).unwrap_or_default(),
        ..Default::default()
    }
}

/// A JSON payload of `value` marked with metadata key `key`.
fn marked_payload(
    key: &str,
    value: &Value,
) -> temporalio_common::protos::temporal::api::common::v1::Payload {
    let mut payload = json_payload(value);
    payload.metadata.insert(key.to_owned(), b"1".to_vec());
    payload
}

/// A workflow's raw input: the flow's input, and the signals carried over from the run it
/// continues (untaken there, delivered first here).
fn split_input(
    flow: &str,
    raw: Option<RawValue>,
) -> Result<(Value, CarriedSignals, Option<BudgetState>), FlowError> {
    let mut payloads = raw.map(|raw| raw.payloads).unwrap_or_default().into_iter();
    let input = payloads.next();
    let rest: Vec<_> = payloads.collect();
    let budget = match rest.iter().find(|p| p.metadata.contains_key(BUDGET)) {
        None => None,
        Some(payload) => {
            let json = raw_json(flow, Some(RawValue::new(vec![payload.clone()])))?;
            Some(
                serde_json::from_value(json).map_err(|e| FlowError::Serialization {
                    at: flow.to_owned(),
                    message: format!("the budget carried into the run: {e}"),
                })?,
            )
        }
    };
    let carried = match rest
        .into_iter()
        .find(|p| p.metadata.contains_key(CARRIED_SIGNALS))
    {
        None => Vec::new(),
        Some(payload) => {
            let json = raw_json(flow, Some(RawValue::new(vec![payload])))?;
            serde_json::from_value(json).map_err(|e| FlowError::Serialization {
                at: flow.to_owned(),
                message: format!("the signals carried over from the run before: {e}"),
            })?
        }
    };
    Ok((
        raw_json(flow, input.map(|p| RawValue::new(vec![p])))?,
        carried,
        budget,
    ))
}

/// The JSON of a workflow's raw input: nothing (or a `null` payload) is `null`, so the flow's
/// input check names the type it expected.
fn raw_json(flow: &str, raw: Option<RawValue>) -> Result<Value, FlowError> {
    let Some(payload) = raw.and_then(|raw| raw.payloads.into_iter().next()) else {
        return Ok(Value::Null);
    };
    let encoding = payload
        .metadata
        .get("encoding")
        .map(|e| String::from_utf8_lossy(e).into_owned())
        .unwrap_or_default();
    match encoding.as_str() {
        "json/plain" => {
            let value: Value =
                serde_json::from_slice(&payload.data).map_err(|e| FlowError::Serialization {
                    at: flow.to_owned(),
                    message: format!("input: the payload is not valid JSON: {e}"),
                })?;
            match crate::codec::undecodable_reason(&value) {
                Some(reason) => Err(FlowError::Serialization {
                    at: flow.to_owned(),
                    message: format!("input: the payload cannot be decoded: {reason}"),
                }),
                None => Ok(value),
            }
        }
        "binary/null" | "" => Ok(Value::Null),
        other => Err(FlowError::Serialization {
            at: flow.to_owned(),
            message: format!("input: the payload's encoding is `{other}`, not `json/plain`"),
        }),
    }
}

/// The JSON of a message's payloads (`null` when there are none).
fn payloads_json(flow: &str, what: &str, payloads: &Payloads) -> Result<Value, String> {
    let raw = RawValue::new(payloads.payloads.clone());
    raw_json(flow, Some(raw)).map_err(|e| format!("{what}: {e}"))
}

/// What a flow body needs from the workflow, with the workflow's type erased.
trait WorkflowOps {
    fn activity(
        &self,
        name: &'static str,
        input: Value,
        options: ActivityOptions,
    ) -> LocalBoxFuture<'static, Result<Value, ActivityExecutionError>>;
    fn local_activity(
        &self,
        name: &'static str,
        input: Value,
        options: LocalActivityOptions,
    ) -> LocalBoxFuture<'static, Result<Value, ActivityExecutionError>>;
    fn timer(&self, duration: Duration) -> LocalBoxFuture<'static, bool>;
    fn child(
        &self,
        name: &'static str,
        input: Value,
        options: ChildWorkflowOptions,
    ) -> LocalBoxFuture<'static, Result<Value, FlowError>>;
    /// A child started on raw payloads; gives its result's payloads.
    fn child_raw(
        &self,
        name: &'static str,
        input: RawValue,
        options: ChildWorkflowOptions,
    ) -> LocalBoxFuture<'static, Result<RawValue, FlowError>>;
    fn now(&self) -> Option<SystemTime>;
    fn random_u64(&self) -> u64;
    fn patched(&self, patch_id: &str) -> bool;
    fn deprecate_patch(&self, patch_id: &str) -> bool;
    fn cancel_requested(&self) -> bool;
    fn continue_as_new_suggested(&self) -> bool;
    /// Continues as new on `input`, carrying the signals the run did not take; an error when
    /// the two together are over `limit`.
    fn continue_as_new(
        &self,
        input: Value,
        limit: PayloadLimit,
        budget: Option<BudgetState>,
    ) -> Result<WorkflowTermination, FlowError>;
    fn next_signal(&self, name: &'static str) -> LocalBoxFuture<'static, Option<Value>>;
    fn publish(&self, name: &'static str, value: Value);
    fn next_update(&self, name: &'static str) -> LocalBoxFuture<'static, Option<(u64, Value)>>;
    fn answer_update(&self, id: u64, answer: Result<Value, String>);
    /// Shows a tool call as waiting for approval and waits for the decision (`None`: the run
    /// was cancelled meanwhile).
    fn approval(
        &self,
        agent: &'static str,
        tool: &'static str,
        arguments: Value,
    ) -> LocalBoxFuture<'static, Option<Decision>>;
    /// Whether the workflow is replaying history (what it reports then was reported before).
    fn replaying(&self) -> bool;
    fn signal_external(
        &self,
        run_id: String,
        name: &'static str,
        value: Value,
    ) -> LocalBoxFuture<'static, Result<(), String>>;
}

impl<F: Flow> WorkflowOps for WorkflowContext<FlowWorkflow<F>> {
    fn replaying(&self) -> bool {
        self.is_replaying_history_events()
    }

    fn activity(
        &self,
        name: &'static str,
        input: Value,
        options: ActivityOptions,
    ) -> LocalBoxFuture<'static, Result<Value, ActivityExecutionError>> {
        let ctx = self.clone();
        async move { decoded(ctx.execute_activity(ByName(name), input, options).await) }
            .boxed_local()
    }

    fn local_activity(
        &self,
        name: &'static str,
        input: Value,
        options: LocalActivityOptions,
    ) -> LocalBoxFuture<'static, Result<Value, ActivityExecutionError>> {
        let ctx = self.clone();
        async move {
            decoded(
                ctx.execute_local_activity(ByName(name), input, options)
                    .await,
            )
        }
        .boxed_local()
    }

    /// `true` when the timer fired, `false` when it was cancelled.
    fn timer(&self, duration: Duration) -> LocalBoxFuture<'static, bool> {
        let ctx = self.clone();
        async move {
            matches!(
                WorkflowContext::timer(&ctx, duration).await,
                temporalio_sdk::TimerResult::Fired
            )
        }
        .boxed_local()
    }

    fn child(
        &self,
        name: &'static str,
        input: Value,
        options: ChildWorkflowOptions,
    ) -> LocalBoxFuture<'static, Result<Value, FlowError>> {
        let ctx = self.clone();
        async move {
            let child = ctx
                .start_child_workflow(ByName(name), input, options)
                .await
                .map_err(|e| FlowError::msg(format!("child flow `{name}` did not start: {e}")))?;
            let value = child.result().await.map_err(|e| child_failure(name, &e))?;
            match crate::codec::undecodable_reason(&value) {
                Some(reason) => Err(FlowError::Serialization {
                    at: name.to_owned(),
                    message: format!("output: the payload cannot be decoded: {reason}"),
                }),
                None => Ok(value),
            }
        }
        .boxed_local()
    }

    fn child_raw(
        &self,
        name: &'static str,
        input: RawValue,
        options: ChildWorkflowOptions,
    ) -> LocalBoxFuture<'static, Result<RawValue, FlowError>> {
        let ctx = self.clone();
        async move {
            let child = ctx
                .start_child_workflow(RawByName(name), input, options)
                .await
                .map_err(|e| FlowError::msg(format!("child flow `{name}` did not start: {e}")))?;
            child.result().await.map_err(|e| child_failure(name, &e))
        }
        .boxed_local()
    }

    fn now(&self) -> Option<SystemTime> {
        self.workflow_time()
    }

    fn random_u64(&self) -> u64 {
        self.random::<u64>()
    }

    fn patched(&self, patch_id: &str) -> bool {
        WorkflowContext::patched(self, patch_id)
    }

    fn deprecate_patch(&self, patch_id: &str) -> bool {
        WorkflowContext::deprecate_patch(self, patch_id)
    }

    fn cancel_requested(&self) -> bool {
        self.cancellation_token().is_cancelled()
    }

    fn continue_as_new_suggested(&self) -> bool {
        WorkflowContext::continue_as_new_suggested(self)
    }

    fn continue_as_new(
        &self,
        input: Value,
        limit: PayloadLimit,
        budget: Option<BudgetState>,
    ) -> Result<WorkflowTermination, FlowError> {
        let mut payloads = vec![json_payload(&input)];
        // the budget, and what the tree had spent, go on to the next run
        if let Some(budget) = budget {
            let state = serde_json::to_value(budget).unwrap_or_default();
            payloads.push(marked_payload(BUDGET, &state));
        }
        // Signals the run did not take go to the next run, as a second argument of its input.
        let carried = self.state_mut(|w| w.mailbox.take_untaken_signals());
        if !carried.is_empty() {
            let carried = serde_json::to_value(&carried).unwrap_or_default();
            let name = F::NAME;
            let bytes = json_size(&input) + json_size(&carried);
            check_payload_size("flow", name, Direction::Input, bytes, limit).map_err(|message| {
                FlowError::PayloadTooLarge {
                    at: name.to_owned(),
                    message: format!(
                        "{message}: the next run's input together with the signals this run did not take, which it carries over (take them before continuing as new)"
                    ),
                }
            })?;
            payloads.push(marked_payload(CARRIED_SIGNALS, &carried));
        }
        match WorkflowContext::continue_as_new(
            self,
            RawValue::new(payloads),
            temporalio_sdk::ContinueAsNewOptions::default(),
        ) {
            Err(termination) => Ok(termination),
            Ok(never) => match never {},
        }
    }

    /// `None` when the run is cancelled while it waits.
    fn next_signal(&self, name: &'static str) -> LocalBoxFuture<'static, Option<Value>> {
        let ctx = self.clone();
        async move {
            ctx.wait_condition(|w| w.mailbox.has_signal(name))
                .await
                .ok()?;
            ctx.state_mut(|w| w.mailbox.take_signal(name))
        }
        .boxed_local()
    }

    fn publish(&self, name: &'static str, value: Value) {
        self.state_mut(|w| w.mailbox.publish(name, value));
    }

    fn next_update(&self, name: &'static str) -> LocalBoxFuture<'static, Option<(u64, Value)>> {
        let ctx = self.clone();
        async move {
            ctx.wait_condition(|w| w.mailbox.has_update(name))
                .await
                .ok()?;
            ctx.state_mut(|w| w.mailbox.take_update(name))
        }
        .boxed_local()
    }

    fn answer_update(&self, id: u64, answer: Result<Value, String>) {
        self.state_mut(|w| w.mailbox.answer(id, answer));
    }

    fn approval(
        &self,
        agent: &'static str,
        tool: &'static str,
        arguments: Value,
    ) -> LocalBoxFuture<'static, Option<Decision>> {
        let ctx = self.clone();
        async move {
            let call = ctx.state_mut(|w| w.mailbox.approvals.ask(agent, tool, arguments));
            if !ctx.is_replaying_history_events() {
                let run_id = ctx.workflow_id();
                tracing::info!(flow = F::NAME, %run_id, %call, "tool call `{call}` waits for approval");
            }
            let waiting = call.clone();
            ctx.wait_condition(move |w| w.mailbox.approvals.is_decided(&waiting))
                .await
                .ok()?;
            ctx.state_mut(|w| w.mailbox.approvals.take(&call))
        }
        .boxed_local()
    }

    fn signal_external(
        &self,
        run_id: String,
        name: &'static str,
        value: Value,
    ) -> LocalBoxFuture<'static, Result<(), String>> {
        let signal = self.external_workflow(run_id, None).signal(
            MessageByName(name.to_owned()),
            value,
            temporalio_sdk::SignalWorkflowOptions::default(),
        );
        async move { signal.await.map_err(|e| e.to_string()) }.boxed_local()
    }
}

/// The runtime of one workflow run: the workflow (usable only on its own thread, which is where
/// flow bodies run) and the worker's settings.
pub(crate) struct TemporalRun {
    ops: SendWrapper<Rc<dyn WorkflowOps>>,
    shared: Arc<WorkerShared>,
    seed: u64,
    /// Whether this run's code agents are durable steps (normal activities), asked once.
    durable_steps: std::sync::OnceLock<bool>,
    /// The run tree's budget and what the tree had spent when this run started, if it has one.
    budget: Option<BudgetState>,
    /// What this run and its finished children spent (kept only with a budget).
    spent: std::sync::Mutex<Usage>,
}

impl TemporalRun {
    /// Adds what a call spent, when the run keeps count.
    fn spend(&self, usage: Usage) {
        if self.budget.is_some() {
            *self.spent.lock().unwrap_or_else(|p| p.into_inner()) += usage;
        }
    }

    /// What this run and its finished children spent.
    fn own_spending(&self) -> Usage {
        *self.spent.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The patch that made code agents durable steps: runs that started before it replay their
/// code agents as local activities, as they were scheduled then.
const DURABLE_STEPS_PATCH: &str = "flock/durable-code-agents";

impl TemporalRun {
    /// Whether `spec` runs as a local activity in this run: what the code says
    /// ([`AgentSpec::runs_locally`](crate::AgentSpec::runs_locally)), except in runs that started
    /// before code agents became durable steps, which keep the rule they started with.
    fn runs_locally(&self, spec: &AgentSpec) -> bool {
        if spec.local.is_some() || spec.kind != AgentKind::Code {
            return spec.runs_locally();
        }
        let durable = *self
            .durable_steps
            .get_or_init(|| self.ops.patched(DURABLE_STEPS_PATCH));
        if durable {
            spec.runs_locally()
        } else {
            ran_locally_before_durable_steps(spec)
        }
    }
}

/// Whether `spec` ran as a local activity under flock's earlier rule (a code agent without
/// `task_queue`, `heartbeat`, or a timeout over a minute): what runs that started before code
/// agents became durable steps replay with, so that they keep their history's shape.
fn ran_locally_before_durable_steps(spec: &AgentSpec) -> bool {
    if let Some(local) = spec.local {
        return local;
    }
    let short =
        |limit: Option<Duration>| limit.is_none_or(|limit| limit <= Duration::from_secs(60));
    spec.kind == AgentKind::Code
        && spec.task_queue.is_none()
        && spec.heartbeat.is_none()
        && short(spec.timeout)
        && short(spec.schedule_to_close)
}

impl TemporalRun {
    /// A child flow of a run with a budget: it starts only while something is left, takes the
    /// budget and what the tree has spent so far beside its input, and what it spent (read off
    /// its result) counts toward this run's spending.
    fn call_flow_with_budget(
        &self,
        call: ChildCall,
        options: ChildWorkflowOptions,
        state: BudgetState,
    ) -> futures::future::BoxFuture<'_, Result<Value, FlowError>> {
        let name = call.spec.name;
        if let Err(error) = crate::runtime::budget_left(self) {
            return Box::pin(std::future::ready(Err(error)));
        }
        let carried = BudgetState {
            budget: state.budget,
            spent: self.spent(),
        };
        let input = RawValue::new(vec![
            json_payload(&call.input),
            marked_payload(BUDGET, &serde_json::to_value(carried).unwrap_or_default()),
        ]);
        let started = SendWrapper::new(self.ops.child_raw(name, input, options));
        let run_id = call.run_id;
        Box::pin(async move {
            let child_failed = |cause: FlowError| FlowError::ChildFlow {
                flow: name.to_owned(),
                run_id: run_id.clone(),
                cause: Box::new(cause),
            };
            let result = started.await.map_err(child_failed)?;
            let payload = result.payloads.into_iter().next();
            if let Some(spent) = payload
                .as_ref()
                .and_then(|p| p.metadata.get(SPENT))
                .and_then(|bytes| serde_json::from_slice::<Usage>(bytes).ok())
            {
                self.spend(spent);
            }
            let value =
                raw_json(name, payload.map(|p| RawValue::new(vec![p]))).map_err(child_failed)?;
            crate::runtime::budget_kept(self)?;
            Ok(value)
        })
    }
}

impl FlowRuntime for TemporalRun {
    fn agent_spec(&self, name: &str) -> Option<&'static crate::AgentSpec> {
        self.shared
            .settings
            .registry
            .agent(name)
            .map(|agent| agent.spec())
    }

    fn call_agent(
        &self,
        call: AgentCall,
    ) -> futures::future::BoxFuture<'_, Result<Value, FlowError>> {
        let spec = call.spec;
        let name = spec.name;
        if self.shared.settings.registry.agent(name).is_none() {
            return Box::pin(std::future::ready(Err(Registry::not_registered(
                "agent", name,
            ))));
        }
        let policy = self.shared.settings.retry_policy(spec);
        let future = if self.runs_locally(spec) {
            self.ops.local_activity(
                name,
                call.input,
                self.shared.local_activity_options(spec, &policy),
            )
        } else {
            self.ops.activity(
                name,
                call.input,
                self.shared.activity_options(spec, &policy),
            )
        };
        let future = SendWrapper::new(future);
        Box::pin(async move {
            let result = future
                .await
                .map_err(|error| agent_failure(name, &error, policy.max_attempts))?;
            let (output, usage) = open_envelope(result);
            self.spend(usage);
            Ok(output)
        })
    }

    fn budget(&self) -> Option<Budget> {
        self.budget.map(|state| state.budget)
    }

    fn spent(&self) -> Usage {
        let mut spent = self.budget.map(|state| state.spent).unwrap_or_default();
        spent += self.own_spending();
        spent
    }

    fn call_flow(
        &self,
        call: ChildCall,
    ) -> futures::future::BoxFuture<'_, Result<Value, FlowError>> {
        let name = call.spec.name;
        if self.shared.settings.registry.flow(name).is_none() {
            return Box::pin(std::future::ready(Err(Registry::not_registered(
                "flow", name,
            ))));
        }
        let options = ChildWorkflowOptions::builder()
            .workflow_id(call.run_id.clone())
            .maybe_task_queue(call.spec.task_queue.map(str::to_owned))
            .build();
        if let Some(state) = self.budget {
            return self.call_flow_with_budget(call, options, state);
        }
        let future = SendWrapper::new(self.ops.child(name, call.input, options));
        let run_id = call.run_id;
        Box::pin(async move {
            future.await.map_err(|cause| FlowError::ChildFlow {
                flow: name.to_owned(),
                run_id,
                cause: Box::new(cause),
            })
        })
    }

    fn sleep(&self, duration: Duration) -> futures::future::BoxFuture<'_, Result<(), FlowError>> {
        let timer = SendWrapper::new(self.ops.timer(duration));
        Box::pin(async move {
            if timer.await {
                Ok(())
            } else {
                Err(FlowError::Cancelled {
                    message: format!("the run was cancelled during a {duration:?} sleep"),
                })
            }
        })
    }

    fn now(&self) -> SystemTime {
        self.ops.now().unwrap_or(SystemTime::UNIX_EPOCH)
    }

    fn random_seed(&self) -> u64 {
        self.seed
    }

    fn patched(&self, patch_id: &str) -> bool {
        self.ops.patched(patch_id)
    }

    fn deprecate_patch(&self, patch_id: &str) -> bool {
        self.ops.deprecate_patch(patch_id)
    }

    fn continue_as_new_suggested(&self) -> bool {
        self.ops.continue_as_new_suggested()
    }

    fn next_signal(
        &self,
        name: &'static str,
    ) -> futures::future::BoxFuture<'_, Result<Value, FlowError>> {
        let next = SendWrapper::new(self.ops.next_signal(name));
        Box::pin(async move {
            next.await.ok_or_else(|| FlowError::Cancelled {
                message: format!("the run was cancelled while waiting for signal `{name}`"),
            })
        })
    }

    fn publish(&self, name: &'static str, value: Value) {
        self.ops.publish(name, value);
    }

    fn next_update(
        &self,
        name: &'static str,
    ) -> futures::future::BoxFuture<'_, Result<(u64, Value), FlowError>> {
        let next = SendWrapper::new(self.ops.next_update(name));
        Box::pin(async move {
            next.await.ok_or_else(|| FlowError::Cancelled {
                message: format!("the run was cancelled while waiting for update `{name}`"),
            })
        })
    }

    fn answer_update(&self, id: u64, answer: Result<Value, String>) {
        self.ops.answer_update(id, answer);
    }

    fn approval(
        &self,
        agent: &'static str,
        tool: &'static str,
        arguments: Value,
    ) -> futures::future::BoxFuture<'_, Result<Decision, FlowError>> {
        let decided = SendWrapper::new(self.ops.approval(agent, tool, arguments));
        Box::pin(async move {
            decided.await.ok_or_else(|| FlowError::Cancelled {
                message: format!(
                    "the run was cancelled while tool `{tool}` of agent `{agent}` waited for approval"
                ),
            })
        })
    }

    fn signal_flow(
        &self,
        call: SignalCall,
    ) -> futures::future::BoxFuture<'_, Result<(), FlowError>> {
        let flow = call.flow.name;
        let (run_id, name) = (call.run_id.clone(), call.name);
        let sent = SendWrapper::new(self.ops.signal_external(call.run_id, name, call.value));
        Box::pin(async move {
            sent.await.map_err(|e| FlowError::Message {
                flow: flow.to_owned(),
                message: format!("cannot signal `{name}` to run `{run_id}` of `{flow}`: {e}"),
            })
        })
    }
}

/// An agent's result, unless it stands for a payload the codec could not decode.
#[allow(clippy::result_large_err)] // the SDK's error type, passed through as the SDK returns it
fn decoded(result: Result<Value, ActivityExecutionError>) -> Result<Value, ActivityExecutionError> {
    let value = result?;
    match crate::codec::undecodable_reason(&value) {
        Some(reason) => Err(ActivityExecutionError::Serialization(
            temporalio_common::data_converters::PayloadConversionError::EncodingError(
                reason.to_owned().into(),
            ),
        )),
        None => Ok(value),
    }
}

/// An activity failure as the flow sees it: the agent, its attempts and its last error.
fn agent_failure(agent: &str, error: &ActivityExecutionError, max_attempts: u32) -> FlowError {
    use temporalio_common::error::IncomingError;
    if let ActivityExecutionError::Serialization(error) = error {
        return FlowError::Serialization {
            at: agent.to_owned(),
            message: format!("output: the payload cannot be decoded: {error}"),
        };
    }
    if error.as_cancelled().is_some() {
        return FlowError::Cancelled {
            message: format!("agent `{agent}` was cancelled"),
        };
    }
    // a local activity's failure comes wrapped once more ("Activity failed: ..")
    let cause = match error.cause() {
        Some(IncomingError::Activity(wrapper)) => wrapper.cause(),
        other => other,
    };
    let (cause, attempts) = match cause {
        Some(IncomingError::Application(failure)) => {
            let class = failure
                .type_name()
                .and_then(ErrorClass::from_name)
                .unwrap_or(ErrorClass::Transient);
            let details = failure
                .details::<Value>()
                .ok()
                .flatten()
                .unwrap_or(Value::Null);
            let attempts = details["attempt"].as_u64().map(|n| n as u32);
            let retry_after = details["retry_after_ms"]
                .as_u64()
                .map(Duration::from_millis);
            (
                AgentError::from_class(class, failure.to_string(), retry_after),
                attempts,
            )
        }
        Some(IncomingError::Timeout(timeout)) => (
            AgentError::transient(format!(
                "agent `{agent}` timed out ({:?} timeout)",
                timeout.timeout_type()
            )),
            None,
        ),
        Some(other) => (AgentError::transient(other.to_string()), None),
        // a local activity's failure is the application failure itself, not a wrapper of it
        None => match application_failure(error) {
            Some((class, message, details)) => {
                let retry_after = details["retry_after_ms"]
                    .as_u64()
                    .map(Duration::from_millis);
                (
                    AgentError::from_class(class, message, retry_after),
                    details["attempt"].as_u64().map(|n| n as u32),
                )
            }
            None => (AgentError::transient(error.to_string()), None),
        },
    };
    let attempts = attempts.unwrap_or_else(|| attempts_made(error, max_attempts));
    FlowError::Agent {
        agent: agent.to_owned(),
        attempts,
        cause,
    }
}

/// The first application failure in an activity failure's chain (itself included): its class,
/// message and details (flock's `{attempt, retry_after_ms}`).
fn application_failure(error: &ActivityExecutionError) -> Option<(ErrorClass, String, Value)> {
    use temporalio_common::protos::temporal::api::failure::v1::failure::FailureInfo;
    let mut failure = error.failure();
    while let Some(current) = failure {
        if let Some(FailureInfo::ApplicationFailureInfo(info)) = &current.failure_info {
            let class = ErrorClass::from_name(&info.r#type).unwrap_or(ErrorClass::Transient);
            let details = info
                .details
                .as_ref()
                .and_then(|d| d.payloads.first())
                .and_then(|p| serde_json::from_slice::<Value>(&p.data).ok())
                .unwrap_or(Value::Null);
            return Some((class, super::history::message_of(current), details));
        }
        failure = current.cause.as_deref();
    }
    None
}

/// The attempts an activity started when its failure does not carry flock's attempt number (a
/// timeout): all of them when Temporal says it ran out of attempts; otherwise the latest attempt
/// the failure chain tells of: the number a retry put in its heartbeat details (which a timeout
/// failure carries), or an earlier attempt's own failure plus the one that timed out.
fn attempts_made(error: &ActivityExecutionError, max_attempts: u32) -> u32 {
    use temporalio_common::protos::temporal::api::enums::v1::RetryState;
    use temporalio_common::protos::temporal::api::failure::v1::failure::FailureInfo;
    let Some(failure) = error.failure() else {
        return 1;
    };
    if let Some(FailureInfo::ActivityFailureInfo(info)) = &failure.failure_info
        && info.retry_state() == RetryState::MaximumAttemptsReached
        && max_attempts > 0
    {
        return max_attempts;
    }
    let attempt_in =
        |payloads: Option<&temporalio_common::protos::temporal::api::common::v1::Payloads>| {
            payloads
                .and_then(|d| d.payloads.first())
                .and_then(|p| serde_json::from_slice::<Value>(&p.data).ok())
                .and_then(|d| d["attempt"].as_u64())
                .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
        };
    let mut made = 1;
    let mut cause = failure.cause.as_deref();
    while let Some(failure) = cause {
        match &failure.failure_info {
            Some(FailureInfo::TimeoutFailureInfo(info)) => {
                if let Some(attempt) = attempt_in(info.last_heartbeat_details.as_ref()) {
                    made = made.max(attempt);
                }
            }
            Some(FailureInfo::ApplicationFailureInfo(info)) => {
                if let Some(attempt) = attempt_in(info.details.as_ref()) {
                    made = made.max(attempt.saturating_add(1));
                }
            }
            _ => {}
        }
        cause = failure.cause.as_deref();
    }
    if max_attempts > 0 {
        made.min(max_attempts)
    } else {
        made
    }
}

fn child_failure(
    flow: &str,
    error: &temporalio_common::error::ChildWorkflowExecutionError,
) -> FlowError {
    use temporalio_common::error::IncomingError;
    if matches!(error.cause(), Some(IncomingError::Cancelled(_))) {
        return FlowError::Cancelled {
            message: "the child flow was cancelled".into(),
        };
    }
    match error.cause() {
        Some(IncomingError::Application(failure)) => flow_error_from_failure(flow, failure),
        Some(other) => FlowError::msg(other.to_string()),
        None => FlowError::msg(error.to_string()),
    }
}

/// The failure type a failed flow's workflow fails with; its details are the [`FlowError`].
pub(crate) const FLOW_FAILURE_TYPE: &str = "FlowError";

/// Rebuilds the [`FlowError`] a flow failed with from its workflow's failure. A failure this
/// process cannot decode (encrypted with a key it does not hold) says so, and names the key.
pub(crate) fn flow_error_from_failure(flow: &str, failure: &ApplicationFailure) -> FlowError {
    if failure.type_name() == Some(FLOW_FAILURE_TYPE)
        && let Ok(Some(error)) = failure.details::<FlowError>()
    {
        return error;
    }
    // the SDK fails a flow whose code no longer makes its history's commands (TMPRL1100)
    let message = failure.to_string();
    if message.contains("TMPRL1100") || message.contains("Nondeterminism") {
        return FlowError::NonDeterminism {
            flow: flow.to_owned(),
            message: format!(
                "its code no longer makes the commands its history recorded (a change without `ctx.patched(..)`, or a decision on something outside its `FlowContext`): {message}"
            ),
        };
    }
    if let Some(reason) = failure.failure().and_then(undecodable_failure) {
        return FlowError::Serialization {
            at: "the run's failure".to_owned(),
            message: format!("the run failed, but its failure cannot be decoded here: {reason}"),
        };
    }
    FlowError::msg(failure.to_string())
}

/// Why a failure's encoded message could not be decoded, when it could not: the SDK leaves it as
/// "Encoded failure" with the encrypted attributes beside it.
pub(crate) fn undecodable_failure(
    failure: &temporalio_common::protos::temporal::api::failure::v1::Failure,
) -> Option<String> {
    let attributes = failure.encoded_attributes.as_ref()?;
    if let Ok(value) = serde_json::from_slice::<Value>(&attributes.data)
        && let Some(reason) = crate::codec::undecodable_reason(&value)
    {
        return Some(reason.to_owned());
    }
    let meta = |key: &str| {
        attributes
            .metadata
            .get(key)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    if meta(crate::codec::ENCODING).as_deref() == Some(crate::codec::ENCRYPTED_ENCODING) {
        let key = meta(crate::codec::KEY_ID).unwrap_or_else(|| "?".to_owned());
        return Some(format!(
            "it is encrypted with key `{key}`, which this process does not hold (set {} to include it)",
            crate::codec::KEYS_ENV
        ));
    }
    None
}

/// The workflow of flow `F`: its type name is `F::NAME`.
pub(crate) struct FlowWorkflow<F> {
    shared: Arc<WorkerShared>,
    mailbox: Mailbox,
    flow: PhantomData<F>,
}

impl<F: Flow> FlowWorkflow<F> {
    pub(crate) fn factory(shared: Arc<WorkerShared>) -> impl Fn() -> Self + Send + Sync + 'static {
        move || FlowWorkflow {
            shared: shared.clone(),
            mailbox: Mailbox::default(),
            flow: PhantomData,
        }
    }
}

impl<F: Flow> WorkflowImplementation for FlowWorkflow<F> {
    type Run = RawInput;
    const HAS_INIT: bool = false;
    const INIT_TAKES_INPUT: bool = false;

    fn name() -> &'static str {
        F::NAME
    }

    fn definition() -> WorkflowDefinitionDescriptor {
        WorkflowDefinitionDescriptor {
            workflow_type: F::NAME.to_owned(),
            has_init: false,
            init_takes_input: false,
            signals: names(F::default().spec(), MessageKind::Signal),
            queries: names(F::default().spec(), MessageKind::Query)
                .into_iter()
                .chain([approval::APPROVALS_QUERY.to_owned()])
                .collect(),
            updates: names(F::default().spec(), MessageKind::Update)
                .into_iter()
                .chain([approval::APPROVE_UPDATE.to_owned()])
                .map(|name| UpdateDefinitionDescriptor {
                    name,
                    has_validator: true,
                })
                .collect(),
        }
    }

    fn init(_ctx: WorkflowContextView, _input: Option<RawValue>) -> Self {
        unreachable!(
            "flock registers its workflows with a factory; the SDK never calls init for them"
        )
    }

    fn run(
        ctx: WorkflowContext<Self>,
        input: Option<RawValue>,
    ) -> LocalBoxFuture<'static, Result<Box<dyn WorkflowOutputValue>, WorkflowTermination>> {
        let shared = ctx.state(|w| w.shared.clone());
        let mut budget = None;
        let input = split_input(F::NAME, input).map(|(input, carried, carried_budget)| {
            ctx.state_mut(|w| w.mailbox.carry_in(carried));
            budget = carried_budget;
            input
        });
        // a run started with a budget by a client has it in its memo; one that cannot be read
        // fails the run (never a run without the budget it was given)
        let (budget, input) = match budget {
            Some(budget) => (Some(budget), input),
            None => match memo_budget(F::NAME, &ctx.memo()) {
                Ok(budget) => (budget, input),
                Err(error) => (None, input.and(Err(error))),
            },
        };
        async move {
            let run_id: Arc<str> = Arc::from(ctx.workflow_id());
            let ops: Rc<dyn WorkflowOps> = Rc::new(ctx);
            let payload_limit = shared.settings.payload_limit;
            let settings = shared.settings.clone();
            let runtime = Arc::new(TemporalRun {
                seed: ops.random_u64(),
                ops: SendWrapper::new(ops.clone()),
                shared,
                durable_steps: std::sync::OnceLock::new(),
                budget,
                spent: std::sync::Mutex::new(Usage::default()),
            });
            let flow = F::default();
            // Replay-safe: a run's span and its `started` count come from the task that really
            // starts it; a worker that replays the run (after a restart, or a cache eviction)
            // reports only what happens after the replay.
            let replaying = || ops.replaying();
            let result = run_body(
                &flow,
                run_id.clone(),
                runtime.clone(),
                &settings.layers,
                payload_limit,
                input,
                replaying,
            )
            .await;
            // with a budget: what the run and its children spent, for a parent to count
            let spent = budget.map(|_| runtime.own_spending());
            let carried = budget.map(|state| BudgetState {
                budget: state.budget,
                spent: runtime.spent(),
            });
            match result {
                Ok(output) => match spent {
                    None => Ok(Box::new(output) as Box<dyn WorkflowOutputValue>),
                    Some(spent) => {
                        let mut payload = json_payload(&output);
                        payload.metadata.insert(
                            SPENT.to_owned(),
                            serde_json::to_vec(&spent).unwrap_or_default(),
                        );
                        Ok(Box::new(RawValue::new(vec![payload])) as Box<dyn WorkflowOutputValue>)
                    }
                },
                Err(error) if error.is_cancellation() && ops.cancel_requested() => {
                    Err(WorkflowTermination::cancelled())
                }
                Err(FlowError::Cancelled { .. }) => Err(WorkflowTermination::cancelled()),
                Err(FlowError::ContinueAsNew { input, .. }) => {
                    match ops.continue_as_new(input, payload_limit, carried) {
                        Ok(termination) => Err(termination),
                        Err(error) => Err(fail::<F>(&run_id, error)),
                    }
                }
                Err(error) => Err(fail::<F>(&run_id, error)),
            }
        }
        .boxed_local()
    }

    /// Every signal is taken (never `Ok(None)`, which would drop it silently, nor `Err`, which
    /// fails the workflow task forever): an undeclared or mistyped one is logged as an error on
    /// the worker, naming the flow, the run and the signal. Clients of flock check signals before
    /// sending, so these come from elsewhere (`temporal workflow signal`).
    fn decode_signal_input(
        name: &str,
        payloads: Payloads,
        _converter: &PayloadConverter,
    ) -> Result<Option<Box<dyn Any>>, WorkflowError> {
        let spec = F::default().spec();
        let checked =
            payloads_json(F::NAME, &format!("signal `{name}`"), &payloads).and_then(|value| {
                spec.check_message(MessageKind::Signal, name, &value)
                    .map(|()| value)
            });
        Ok(Some(Box::new(checked)))
    }

    fn dispatch_signal(
        ctx: WorkflowContext<Self>,
        name: &str,
        input: Box<dyn Any>,
    ) -> LocalBoxFuture<'static, Result<(), WorkflowError>> {
        match input
            .downcast::<Result<Value, String>>()
            .map(|checked| *checked)
        {
            Ok(Ok(value)) => ctx.state_mut(|w| w.mailbox.push_signal(name, value)),
            // counted and logged once, not again when the run is replayed
            Ok(Err(message)) if !ctx.is_replaying() => {
                observe::message_dropped(F::NAME, ctx.workflow_id(), "signal", name, &message)
            }
            Ok(Err(_)) => {}
            Err(_) => {}
        }
        futures::future::ready(Ok(())).boxed_local()
    }

    fn decode_query_input(
        name: &str,
        _payloads: &Payloads,
        _converter: &PayloadConverter,
    ) -> Result<Option<Box<dyn Any>>, WorkflowError> {
        if name == approval::APPROVALS_QUERY {
            return Ok(Some(Box::new(())));
        }
        F::default()
            .spec()
            .message(MessageKind::Query, name)
            .map_err(|e| WorkflowError::from(boxed_error(e)))?;
        Ok(Some(Box::new(())))
    }

    fn dispatch_query(
        &self,
        _ctx: WorkflowContextView,
        name: &str,
        _input: Box<dyn Any>,
    ) -> Result<Box<dyn WorkflowOutputValue>, WorkflowError> {
        if name == approval::APPROVALS_QUERY {
            let waiting = serde_json::to_value(self.mailbox.approvals.waiting());
            return Ok(Box::new(waiting.unwrap_or_default()));
        }
        self.mailbox
            .query(F::default().spec(), name)
            .map(|value| Box::new(value) as Box<dyn WorkflowOutputValue>)
            .map_err(|e| WorkflowError::from(boxed_error(e)))
    }

    fn decode_update_input(
        name: &str,
        payloads: Payloads,
        _converter: &PayloadConverter,
    ) -> Result<Option<Box<dyn Any>>, WorkflowError> {
        let spec = F::default().spec();
        if name != approval::APPROVE_UPDATE {
            spec.message(MessageKind::Update, name)
                .map_err(|e| WorkflowError::from(boxed_error(e)))?;
        }
        let value = payloads_json(F::NAME, &format!("update `{name}`"), &payloads)
            .map_err(|e| WorkflowError::from(boxed_error(e)))?;
        Ok(Some(Box::new(value)))
    }

    fn dispatch_update(
        ctx: WorkflowContext<Self>,
        name: &str,
        input: Box<dyn Any>,
    ) -> LocalBoxFuture<'static, Result<Box<dyn WorkflowOutputValue>, WorkflowError>> {
        let Ok(value) = input.downcast::<Value>() else {
            let message = format!("flow `{}`: update `{name}` has no input", F::NAME);
            return futures::future::ready(Err(WorkflowError::from(boxed_error(message))))
                .boxed_local();
        };
        if name == approval::APPROVE_UPDATE {
            // checked by the validator when it arrived (not again on replay): kept for the loop
            let decided = approval::read_decision(*value).map(|decision| {
                ctx.state_mut(|w| w.mailbox.approvals.decide(decision));
                Box::new(Value::Null) as Box<dyn WorkflowOutputValue>
            });
            let decided = decided.map_err(|e| WorkflowError::from(boxed_error(e)));
            return futures::future::ready(decided).boxed_local();
        }
        let id = ctx.state_mut(|w| w.mailbox.push_update(name, *value));
        async move {
            ctx.wait_condition(|w| w.mailbox.is_answered(id))
                .await
                .map_err(|_| {
                    WorkflowError::from(boxed_error(format!(
                        "flow `{}` was cancelled before it answered the update",
                        F::NAME
                    )))
                })?;
            match ctx.state_mut(|w| w.mailbox.take_answer(id)) {
                Some(Ok(answer)) => Ok(Box::new(answer) as Box<dyn WorkflowOutputValue>),
                Some(Err(message)) => Err(WorkflowError::from(boxed_error(message))),
                None => Err(WorkflowError::from(boxed_error(format!(
                    "flow `{}` lost the answer to an update",
                    F::NAME
                )))),
            }
        }
        .boxed_local()
    }

    /// The validator runs here, before the update is accepted into the history: a rejected
    /// update is an error to its sender and leaves no trace in the run.
    fn validate_update(
        &self,
        _ctx: WorkflowContextView,
        name: &str,
        input: Box<dyn Any>,
    ) -> Result<(), WorkflowError> {
        let value = input.downcast::<Value>().map(|v| *v).unwrap_or(Value::Null);
        if name == approval::APPROVE_UPDATE {
            let checked = approval::read_decision(value).and_then(|decision| {
                self.mailbox
                    .approvals
                    .check(&decision)
                    .map_err(|e| format!("flow `{}`: {e}", F::NAME))
            });
            return checked.map_err(|e| WorkflowError::from(boxed_error(e)));
        }
        F::default()
            .spec()
            .check_message(MessageKind::Update, name, &value)
            .map_err(|e| WorkflowError::from(boxed_error(e)))
    }
}

/// Fails the run of flow `F` with `error`, logged on the worker: at error level when it is a
/// bug in the code or the data, else as a warning.
fn fail<F: Flow>(run_id: &str, error: FlowError) -> WorkflowTermination {
    let message = format!("flow `{}` failed: {error}", F::NAME);
    if is_bug(&error) {
        tracing::error!(flow = F::NAME, run_id = %run_id, "{message}");
    } else {
        tracing::warn!(flow = F::NAME, run_id = %run_id, "{message}");
    }
    let failure = ApplicationFailure::builder(message)
        .type_name(FLOW_FAILURE_TYPE.to_owned())
        .non_retryable(true)
        .details(serde_json::to_value(&error).unwrap_or(Value::Null))
        .build();
    WorkflowTermination::failed_application(failure)
}

/// The names of the messages of `kind` that `spec` declares.
fn names(spec: &FlowSpec, kind: MessageKind) -> Vec<String> {
    spec.messages
        .iter()
        .filter(|m| m.kind == kind)
        .map(|m| m.name.to_owned())
        .collect()
}

/// Whether a flow failed through a bug in the code or the data (logged as an error on the worker),
/// rather than through its own logic or an agent's failure.
fn is_bug(error: &FlowError) -> bool {
    match error {
        FlowError::Panicked { .. }
        | FlowError::NonDeterminism { .. }
        | FlowError::InvalidPatchId { .. }
        | FlowError::Serialization { .. }
        | FlowError::PayloadTooLarge { .. }
        | FlowError::NotRegistered { .. } => true,
        FlowError::ChildFlow { cause, .. } => is_bug(cause),
        _ => false,
    }
}

fn boxed_error(message: String) -> Box<dyn std::error::Error + Send + Sync> {
    message.into()
}
