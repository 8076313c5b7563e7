//! Flows as Temporal workflows: one generic adapter, registered once per flow (and per hand-off
//! chain), named after the flow. The flow body runs as workflow code against a [`FlowContext`]
//! whose calls become activities, timers and child workflows.

use std::any::Any;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::FutureExt;
use futures::future::LocalBoxFuture;
use send_wrapper::SendWrapper;
use serde_json::Value;
use temporalio_common::data_converters::PayloadConverter;
use temporalio_common::protos::temporal::api::common::v1::Payloads;
use temporalio_common::{ActivityDefinition, HasWorkflowDefinition, WorkflowDefinition};
use temporalio_sdk::workflow_interceptors::WorkflowOutputValue;
use temporalio_sdk::workflows::{
    WorkflowDefinitionDescriptor, WorkflowError, WorkflowImplementation,
};
use temporalio_sdk::{
    ActivityExecutionError, ActivityOptions, ApplicationFailure, ChildWorkflowOptions,
    LocalActivityOptions, WorkflowContext, WorkflowContextView, WorkflowTermination,
};

use super::WorkerShared;
use crate::agent::{Agent, AgentKind};
use crate::error::{AgentError, ErrorClass, FlowError};
use crate::flow::{Backend, Flow, FlowContext};
use crate::registry::DynFlow;

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
    fn now(&self) -> Option<SystemTime>;
}

impl<W: 'static> WorkflowOps for WorkflowContext<W> {
    fn activity(
        &self,
        name: &'static str,
        input: Value,
        options: ActivityOptions,
    ) -> LocalBoxFuture<'static, Result<Value, ActivityExecutionError>> {
        let ctx = self.clone();
        async move { ctx.execute_activity(ByName(name), input, options).await }.boxed_local()
    }

    fn local_activity(
        &self,
        name: &'static str,
        input: Value,
        options: LocalActivityOptions,
    ) -> LocalBoxFuture<'static, Result<Value, ActivityExecutionError>> {
        let ctx = self.clone();
        async move {
            ctx.execute_local_activity(ByName(name), input, options)
                .await
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
            child.result().await.map_err(|e| child_failure(&e))
        }
        .boxed_local()
    }

    fn now(&self) -> Option<SystemTime> {
        self.workflow_time()
    }
}

/// The Temporal side of a [`FlowContext`]: the workflow (usable only on its own thread, which is
/// where flow bodies run) and the worker's settings.
pub(crate) struct TemporalRun {
    ops: SendWrapper<Rc<dyn WorkflowOps>>,
    shared: Arc<WorkerShared>,
}

impl TemporalRun {
    pub(crate) async fn call_agent<A: Agent>(
        &self,
        agent: A,
        input: A::Input,
    ) -> Result<A::Output, FlowError> {
        let spec = agent.spec();
        let input = serde_json::to_value(&input).map_err(|e| FlowError::Serialization {
            at: A::NAME.to_owned(),
            message: format!("input: {e}"),
        })?;
        let policy = self.shared.runtime.retry_policy(spec);
        let future = if self.shared.runs_locally(spec) {
            self.ops.local_activity(
                A::NAME,
                input,
                self.shared.local_activity_options(spec, &policy),
            )
        } else {
            self.ops
                .activity(A::NAME, input, self.shared.activity_options(spec, &policy))
        };
        let mut output = SendWrapper::new(future)
            .await
            .map_err(|error| agent_failure(A::NAME, &error, policy.max_attempts))?;
        if spec.kind == AgentKind::Declarative {
            output = super::activity::open_envelope(output).0;
        }
        serde_json::from_value(output).map_err(|e| FlowError::Serialization {
            at: A::NAME.to_owned(),
            message: format!("output: {e}"),
        })
    }

    pub(crate) async fn call_flow<F: Flow>(
        &self,
        parent: &FlowContext,
        input: F::Input,
    ) -> Result<F::Output, FlowError> {
        let input = serde_json::to_value(&input).map_err(|e| FlowError::Serialization {
            at: F::NAME.to_owned(),
            message: format!("input: {e}"),
        })?;
        let child_id = format!("{}-{}", F::NAME, parent.uuid());
        let options = ChildWorkflowOptions::builder()
            .workflow_id(child_id.clone())
            .maybe_task_queue(F::default().spec().task_queue.map(str::to_owned))
            .build();
        let output = SendWrapper::new(self.ops.child(F::NAME, input, options))
            .await
            .map_err(|cause| FlowError::ChildFlow {
                flow: F::NAME.to_owned(),
                run_id: child_id,
                cause: Box::new(cause),
            })?;
        serde_json::from_value(output).map_err(|e| FlowError::Serialization {
            at: F::NAME.to_owned(),
            message: format!("output: {e}"),
        })
    }

    pub(crate) async fn sleep(&self, duration: Duration) -> Result<(), FlowError> {
        if SendWrapper::new(self.ops.timer(duration)).await {
            Ok(())
        } else {
            Err(FlowError::Cancelled {
                message: format!("the run was cancelled during a {duration:?} sleep"),
            })
        }
    }

    pub(crate) fn now(&self) -> SystemTime {
        self.ops.now().unwrap_or(SystemTime::UNIX_EPOCH)
    }
}

/// An activity failure as the flow sees it: the agent, its attempts and its last error.
fn agent_failure(agent: &str, error: &ActivityExecutionError, max_attempts: u32) -> FlowError {
    use temporalio_common::error::IncomingError;
    if error.as_cancelled().is_some() {
        return FlowError::Cancelled {
            message: format!("agent `{agent}` was cancelled"),
        };
    }
    let (cause, attempts) = match error.cause() {
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
        None => (AgentError::transient(error.to_string()), None),
    };
    let attempts = attempts.unwrap_or(if max_attempts == 0 { 1 } else { max_attempts });
    FlowError::Agent {
        agent: agent.to_owned(),
        attempts,
        cause,
    }
}

fn child_failure(error: &temporalio_common::error::ChildWorkflowExecutionError) -> FlowError {
    use temporalio_common::error::IncomingError;
    match error.cause() {
        Some(IncomingError::Application(failure)) => flow_error_from_failure(failure),
        Some(other) => FlowError::msg(other.to_string()),
        None => FlowError::msg(error.to_string()),
    }
}

/// The failure type a failed flow's workflow fails with; its details are the [`FlowError`].
pub(crate) const FLOW_FAILURE_TYPE: &str = "FlowError";

/// Rebuilds the [`FlowError`] a flow failed with from its workflow's failure.
pub(crate) fn flow_error_from_failure(failure: &ApplicationFailure) -> FlowError {
    if failure.type_name() == Some(FLOW_FAILURE_TYPE)
        && let Ok(Some(error)) = failure.details::<FlowError>()
    {
        return error;
    }
    FlowError::msg(failure.to_string())
}

/// The workflow of flow `F`: its type name is `F::NAME`.
pub(crate) struct FlowWorkflow<F> {
    shared: Arc<WorkerShared>,
    flow: PhantomData<F>,
}

impl<F: Flow> FlowWorkflow<F> {
    pub(crate) fn factory(shared: Arc<WorkerShared>) -> impl Fn() -> Self + Send + Sync + 'static {
        move || FlowWorkflow {
            shared: shared.clone(),
            flow: PhantomData,
        }
    }
}

impl<F: Flow> WorkflowImplementation for FlowWorkflow<F> {
    type Run = ByName;
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
            signals: Vec::new(),
            queries: Vec::new(),
            updates: Vec::new(),
        }
    }

    fn init(_ctx: WorkflowContextView, _input: Option<Value>) -> Self {
        unreachable!(
            "flock registers its workflows with a factory; the SDK never calls init for them"
        )
    }

    fn run(
        ctx: WorkflowContext<Self>,
        input: Option<Value>,
    ) -> LocalBoxFuture<'static, Result<Box<dyn WorkflowOutputValue>, WorkflowTermination>> {
        let shared = ctx.state(|w| w.shared.clone());
        async move {
            let run_id: Arc<str> = Arc::from(ctx.workflow_id());
            let ops: Rc<dyn WorkflowOps> = Rc::new(ctx);
            let flow_ctx = FlowContext::new(
                run_id,
                F::NAME,
                Backend::Temporal(TemporalRun {
                    ops: SendWrapper::new(ops),
                    shared,
                }),
            );
            let flow = F::default();
            match DynFlow::run_json(&flow, &flow_ctx, input.unwrap_or(Value::Null)).await {
                Ok(output) => Ok(Box::new(output) as Box<dyn WorkflowOutputValue>),
                Err(FlowError::Cancelled { .. }) => Err(WorkflowTermination::cancelled()),
                Err(error) => {
                    let message = format!("flow `{}` failed: {error}", F::NAME);
                    let failure = ApplicationFailure::builder(message)
                        .type_name(FLOW_FAILURE_TYPE.to_owned())
                        .non_retryable(true)
                        .details(serde_json::to_value(&error).unwrap_or(Value::Null))
                        .build();
                    Err(WorkflowTermination::failed_application(failure))
                }
            }
        }
        .boxed_local()
    }

    fn decode_signal_input(
        _name: &str,
        _payloads: Payloads,
        _converter: &PayloadConverter,
    ) -> Result<Option<Box<dyn Any>>, WorkflowError> {
        Ok(None)
    }

    fn dispatch_signal(
        _ctx: WorkflowContext<Self>,
        _name: &str,
        _input: Box<dyn Any>,
    ) -> LocalBoxFuture<'static, Result<(), WorkflowError>> {
        futures::future::ready(Ok(())).boxed_local()
    }

    fn decode_query_input(
        _name: &str,
        _payloads: &Payloads,
        _converter: &PayloadConverter,
    ) -> Result<Option<Box<dyn Any>>, WorkflowError> {
        Ok(None)
    }

    fn dispatch_query(
        &self,
        _ctx: WorkflowContextView,
        name: &str,
        _input: Box<dyn Any>,
    ) -> Result<Box<dyn WorkflowOutputValue>, WorkflowError> {
        Err(WorkflowError::from(boxed_error(format!(
            "flow `{}` has no query `{name}`",
            F::NAME
        ))))
    }

    fn dispatch_update(
        _ctx: WorkflowContext<Self>,
        name: &str,
        _input: Box<dyn Any>,
    ) -> LocalBoxFuture<'static, Result<Box<dyn WorkflowOutputValue>, WorkflowError>> {
        let message = format!("flow `{}` has no update `{name}`", F::NAME);
        futures::future::ready(Err(WorkflowError::from(boxed_error(message)))).boxed_local()
    }

    fn validate_update(
        &self,
        _ctx: WorkflowContextView,
        name: &str,
        _input: Box<dyn Any>,
    ) -> Result<(), WorkflowError> {
        Err(WorkflowError::from(boxed_error(format!(
            "flow `{}` has no update `{name}`",
            F::NAME
        ))))
    }
}

fn boxed_error(message: String) -> Box<dyn std::error::Error + Send + Sync> {
    message.into()
}
