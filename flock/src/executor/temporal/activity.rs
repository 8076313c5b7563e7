//! Agents as Temporal activities: one generic adapter, registered once per agent type, named
//! after the agent.

use std::marker::PhantomData;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::{Value, json};
use temporalio_common::ActivityDefinition;
use temporalio_sdk::ApplicationFailure;
use temporalio_sdk::activities::{
    ActivityContext, ActivityDefinitions, ActivityError, ActivityImplementer, ExecutableActivity,
};

use super::WorkerShared;
use crate::agent::{Agent, AgentContext, Cancellation, DynAgent, ProgressSink};
use crate::error::AgentError;
use crate::retry::RetryPolicy;
use crate::usage::Usage;

/// The activity of agent `A`: its type name is `A::NAME`; its payloads are the JSON of `A`'s
/// input and output (the SDK wants `Sync` payload types, agents' types need only be `Send`).
pub(crate) struct AgentActivity<A>(PhantomData<A>);

impl<A: Agent> ActivityDefinition for AgentActivity<A> {
    type Input = Value;
    type Output = Value;

    fn name(&self) -> &str {
        A::NAME
    }
}

impl ActivityImplementer for WorkerShared {
    fn register_all(self: Arc<Self>, _definitions: &mut ActivityDefinitions) {}
}

impl<A: Agent> ExecutableActivity for AgentActivity<A> {
    type Implementer = WorkerShared;
    const REQUIRES_INSTANCE: bool = true;

    fn definition() -> Self {
        AgentActivity(PhantomData)
    }

    fn execute(
        receiver: Option<Arc<WorkerShared>>,
        ctx: ActivityContext,
        input: Value,
    ) -> BoxFuture<'static, Result<Value, ActivityError>> {
        Box::pin(async move {
            let Some(shared) = receiver else {
                return Err(ActivityError::from(ApplicationFailure::non_retryable(
                    format!("agent `{}` registered without its worker state", A::NAME),
                )));
            };
            let agent = A::default();
            let spec = Agent::spec(&agent);
            let info = ctx.info();
            let attempt = info.attempt.max(1);
            let run_id: Arc<str> = Arc::from(info.workflow_id.clone().unwrap_or_default());
            let start_to_close = spec.timeout.unwrap_or(shared.settings.start_to_close);
            let usage = Arc::new(std::sync::Mutex::new(Usage::default()));
            let cancellation = Cancellation::default();
            let agent_ctx = AgentContext::for_attempt(
                run_id,
                attempt,
                spec,
                shared.settings.models.clone(),
                Some(Arc::new(Heartbeats(ctx.clone()))),
                Some(usage.clone()),
                cancellation.clone(),
            );
            let call = DynAgent::call_json(&agent, agent_ctx, input);
            // A timed-out or cancelled attempt stops here, on this worker: the agent sees
            // `is_cancelled`, and its future (with any model request in flight) is dropped, so
            // nothing runs on after the flow has moved on.
            let result = tokio::select! {
                result = call => result,
                () = tokio::time::sleep(start_to_close) => {
                    cancellation.cancel();
                    Err(AgentError::transient(format!(
                        "agent `{}` timed out after {start_to_close:?} (start-to-close timeout)",
                        A::NAME
                    )))
                }
                () = ctx.cancelled() => {
                    cancellation.cancel();
                    return Err(ActivityError::cancelled());
                }
            };
            match result {
                Ok(output) => {
                    let usage = *usage.lock().unwrap_or_else(|p| p.into_inner());
                    Ok(usage_envelope(output, usage))
                }
                Err(error) => Err(to_activity_error(
                    &error,
                    attempt,
                    &shared.settings.retry_policy(spec),
                )),
            }
        })
    }
}

/// An agent's activity result: its output and the model tokens it used, so that the history (and
/// the run record read from it) carries the usage. Every agent's result has this shape, so it
/// depends on nothing but the code.
pub(crate) fn usage_envelope(output: Value, usage: Usage) -> Value {
    json!({ "output": output, "usage": usage })
}

/// The output and usage of an agent's activity result.
pub(crate) fn open_envelope(result: Value) -> (Value, Usage) {
    match result {
        Value::Object(mut fields) => {
            let usage = fields
                .remove("usage")
                .and_then(|u| serde_json::from_value(u).ok())
                .unwrap_or_default();
            (fields.remove("output").unwrap_or(Value::Null), usage)
        }
        other => (other, Usage::default()),
    }
}

/// Progress reports of an activity become Temporal heartbeats (which also satisfy a heartbeat
/// timeout).
struct Heartbeats(ActivityContext);

impl ProgressSink for Heartbeats {
    fn report(&self, _agent: &'static str, _attempt: u32, details: Value) {
        let ctx = self.0.clone();
        tokio::spawn(async move {
            let _ = ctx.record_heartbeat(details).await;
        });
    }
}

/// An agent error as a Temporal application failure: its class is the failure type, permanent
/// classes are non-retryable, and a rate limit sets the next retry delay to at least its
/// `retry_after`. The attempt number travels in the details, so the flow can report it.
pub(crate) fn to_activity_error(
    error: &AgentError,
    attempt: u32,
    policy: &RetryPolicy,
) -> ActivityError {
    let class = error.class();
    let non_retryable = !class.is_retryable() || policy.non_retryable.contains(&class);
    let next_retry_delay = error
        .retry_after()
        .map(|_| policy.delay(attempt, error, 0.5));
    let failure = ApplicationFailure::builder(error.message().to_owned())
        .type_name(class.name().to_owned())
        .non_retryable(non_retryable)
        .maybe_next_retry_delay(next_retry_delay)
        .details(json!({ "attempt": attempt, "retry_after_ms": error.retry_after().map(|d| d.as_millis() as u64) }))
        .build();
    ActivityError::from(failure)
}
