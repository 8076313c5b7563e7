//! Agents as Temporal activities: one generic adapter, registered once per agent type, named
//! after the agent.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use temporalio_common::ActivityDefinition;
use temporalio_sdk::ApplicationFailure;
use temporalio_sdk::activities::{
    ActivityContext, ActivityDefinitions, ActivityError, ActivityImplementer, ActivityInfo,
    ExecutableActivity,
};
use tracing::Instrument;

use super::WorkerShared;
use crate::agent::{Agent, AgentContext, Attempt, CallKey, DynAgent, ProgressSink, json_size};
use crate::error::AgentError;
use crate::observe::{self, AttemptOutcome};
use crate::retry::RetryPolicy;
use crate::spec::MAX_PAYLOAD_BYTES;
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
        // `A` is a unit type: leaking one allocates nothing
        let agent: &'static A = Box::leak(Box::new(A::default()));
        execute(receiver, agent, ctx, input)
    }
}

/// The activity of a step of an agent that runs step by step (see [`crate::step`]): one type for
/// every step, registered once per step name, the step carried by its instance.
pub(crate) struct StepActivity {
    name: &'static str,
}

thread_local! {
    /// The name of the step being registered: the SDK names an activity type by its definition
    /// (`ExecutableActivity::definition`, which takes nothing), read once, when it is registered.
    static REGISTERING: std::cell::Cell<&'static str> = const { std::cell::Cell::new("") };
}

/// What a step's activity runs: the worker's state and the step.
pub(crate) struct StepWorker {
    shared: Arc<WorkerShared>,
    step: &'static dyn DynAgent,
}

impl ActivityImplementer for StepWorker {
    fn register_all(self: Arc<Self>, _definitions: &mut ActivityDefinitions) {}
}

impl ActivityDefinition for StepActivity {
    type Input = Value;
    type Output = Value;

    fn name(&self) -> &str {
        self.name
    }
}

impl ExecutableActivity for StepActivity {
    type Implementer = StepWorker;
    const REQUIRES_INSTANCE: bool = true;

    fn definition() -> Self {
        StepActivity {
            name: REGISTERING.get(),
        }
    }

    fn execute(
        receiver: Option<Arc<StepWorker>>,
        ctx: ActivityContext,
        input: Value,
    ) -> BoxFuture<'static, Result<Value, ActivityError>> {
        match receiver {
            Some(worker) => execute(Some(worker.shared.clone()), worker.step, ctx, input),
            None => Box::pin(std::future::ready(Err(ActivityError::from(
                ApplicationFailure::non_retryable("a step registered without its worker state"),
            )))),
        }
    }
}

/// Registers the activity of `step` on `options`.
pub(crate) fn register_step(
    options: &mut temporalio_sdk::WorkerOptions,
    shared: &Arc<WorkerShared>,
    step: &'static dyn DynAgent,
) {
    REGISTERING.set(step.spec().name);
    options.register_activity::<StepActivity>(Arc::new(StepWorker {
        shared: shared.clone(),
        step,
    }));
    REGISTERING.set("");
}

/// One attempt of `agent`'s activity (an agent's or a step's).
fn execute(
    receiver: Option<Arc<WorkerShared>>,
    agent: &'static dyn DynAgent,
    ctx: ActivityContext,
    input: Value,
) -> BoxFuture<'static, Result<Value, ActivityError>> {
    Box::pin(async move {
        let Some(shared) = receiver else {
            return Err(ActivityError::from(ApplicationFailure::non_retryable(
                format!(
                    "agent `{}` registered without its worker state",
                    agent.spec().name
                ),
            )));
        };
        let spec = agent.spec();
        let info = ctx.info();
        let attempt = info.attempt.max(1);
        let run_id: Arc<str> = Arc::from(info.workflow_id.clone().unwrap_or_default());
        let start_to_close = spec.timeout.unwrap_or(shared.settings.start_to_close);
        let policy = shared.settings.retry_policy(spec);
        // A local activity cannot heartbeat: its checkpoints stay on this worker.
        let local_call = info.is_local.then(|| LocalCall::of(info));
        let resumed = match &local_call {
            Some(call) => call.resume(),
            None => previous_checkpoint(spec.name, &ctx),
        };
        let usage = Arc::new(std::sync::Mutex::new(Usage::default()));
        let cancellation = Attempt::resuming(resumed.clone());
        let heartbeats = Arc::new(Heartbeats::new(ctx.clone(), resumed, attempt));
        if attempt > 1 {
            // A retry says which attempt it is: a timeout that ends it (schedule-to-close)
            // carries the last heartbeat's details, from which the flow reports the attempts
            // that really started.
            heartbeats.send(|_| {});
        }
        let key = format!(
            "{}/{}/{}",
            info.workflow_id.as_deref().unwrap_or_default(),
            info.workflow_run_id.as_deref().unwrap_or_default(),
            info.activity_id
        );
        let agent_ctx = AgentContext::for_attempt(
            run_id.clone(),
            attempt,
            spec,
            shared.settings.models.clone(),
            Some(heartbeats.clone()),
            Some(usage.clone()),
            cancellation.clone(),
            CallKey::Given(Arc::from(key)),
            shared.settings.payload_limit,
        );
        let span = observe::attempt_span(spec.name, &run_id, attempt);
        let started = Instant::now();
        // A local activity's schedule-to-close is its worker's timer, whose failure tells
        // nothing of the attempts: an attempt that would run into it ends here just before,
        // with a failure that says which attempt it was, not retried (no time is left), as
        // the local executor does.
        let schedule_to_close_left = spec
            .schedule_to_close
            .zip(info.scheduled_time)
            .filter(|_| info.is_local)
            .map(|(limit, scheduled)| {
                (scheduled + limit)
                    .duration_since(std::time::SystemTime::now())
                    .unwrap_or_default()
                    .saturating_sub(LOCAL_DEADLINE_MARGIN)
            });
        let last_before_deadline = schedule_to_close_left.is_some_and(|left| left < start_to_close);
        let limit = schedule_to_close_left.map_or(start_to_close, |left| left.min(start_to_close));
        let mut timed_out = false;
        let text = crate::events::TextSink {
            target: heartbeats.clone(),
            run_id: run_id.clone(),
            step: 0, // the watcher knows the step from the history
            name: spec.name,
            attempt,
            run_started: started,
        };
        let call = crate::events::with_text_sink(
            text,
            crate::agent::admitted(shared.settings.limits.get(spec), agent_ctx, |ctx| {
                agent.call_json(ctx, &input)
            }),
        )
        .instrument(span.clone());
        // A timed-out or cancelled attempt stops here, on this worker: the agent sees
        // `is_cancelled`, and its future (with any model request in flight) is dropped, so
        // nothing runs on after the flow has moved on.
        let result = tokio::select! {
            result = call => Ok(result),
            () = tokio::time::sleep(limit) => {
                cancellation.cancel();
                timed_out = true;
                Ok(Err(AgentError::transient(match (last_before_deadline, spec.schedule_to_close) {
                    (true, Some(total)) => format!(
                        "agent `{}` timed out: its schedule-to-close timeout ({total:?}) passed",
                        spec.name
                    ),
                    _ => format!(
                        "agent `{}` timed out after {start_to_close:?} (start-to-close timeout)",
                        spec.name
                    ),
                })))
            }
            () = ctx.cancelled() => {
                cancellation.cancel();
                Err(ActivityError::cancelled())
            }
        };
        if let Some(call) = local_call {
            // A cancellation may be the worker timing the local activity out, which is
            // retried: keep the checkpoint then (unclaimed ones expire).
            let finished = match &result {
                Ok(Ok(_)) => true,
                Ok(Err(error)) => policy.gives_up(error, attempt),
                Err(_) => false,
            };
            call.keep(cancellation.checkpoints().last(), finished);
        }
        let outcome = match &result {
            Ok(Ok(_)) => AttemptOutcome::Completed,
            // The server decides the delay; this is the policy's, as the server computes it
            // (without jitter), or a rate limit's `next_retry_delay`.
            Ok(Err(error)) => AttemptOutcome::Failed(
                error,
                (!policy.gives_up(error, attempt)).then(|| policy.delay(attempt, error, 0.5)),
            ),
            Err(_) => AttemptOutcome::Cancelled,
        };
        observe::attempt_finished(&span, spec.name, attempt, outcome, started.elapsed());
        match result? {
            Ok(output) => {
                let usage = *usage.lock().unwrap_or_else(|p| p.into_inner());
                let mut result = usage_envelope(output, usage);
                // what a run's live events complete the text from when the last heartbeats did
                // not carry all of it (the SDK does not send the last throttled details of a
                // completed activity): a model step's output is its text, so a flag says that
                // it streamed; an agent's output is typed, so its text comes along
                if let Some(text) = heartbeats.take_text() {
                    result["streamed"] = if crate::events::StepKind::of(spec.name)
                        == crate::events::StepKind::Model
                    {
                        Value::Bool(true)
                    } else {
                        Value::String(text)
                    };
                    // the text never makes a result too large to record (a watcher then has the
                    // text up to the last heartbeat)
                    if json_size(&result) > MAX_PAYLOAD_BYTES
                        && let Value::Object(fields) = &mut result
                    {
                        fields.remove("streamed");
                    }
                }
                Ok(result)
            }
            Err(error) if timed_out && last_before_deadline => Err(ActivityError::from(
                ApplicationFailure::builder(error.message().to_owned())
                    .type_name(error.class().name().to_owned())
                    .non_retryable(true)
                    .details(json!({ "attempt": attempt }))
                    .build(),
            )),
            Err(error) => Err(to_activity_error(&error, attempt, &policy)),
        }
    })
}

/// How long before its schedule-to-close deadline a local activity's attempt is ended by flock,
/// so that its failure (naming the attempt) comes before the worker's own timer's; and how much
/// later than flock's timer the worker's start-to-close timer of a local activity is set, for
/// the same reason (its failure names no attempt either).
pub(super) const LOCAL_DEADLINE_MARGIN: Duration = Duration::from_millis(100);

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

/// Progress reports and checkpoints of an activity become Temporal heartbeats (which also satisfy
/// a heartbeat timeout), whose details carry both: `{"progress": .., "checkpoint": ..}`, each
/// the last one reported, and from the second attempt on the attempt's number (`"attempt"`). The
/// server gives the last details to the next attempt, so the checkpoint an attempt resumed from
/// travels on in its heartbeats until it makes its own; and a timeout failure carries them, so
/// the flow learns which attempt the timeout cut.
///
/// A model that streams adds the text so far (`"text"`): what a run's live events read back from
/// the pending activity ([`crate::events`]); never in the history.
struct Heartbeats {
    ctx: ActivityContext,
    details: std::sync::Mutex<HeartbeatDetails>,
    /// When streamed text was last sent.
    text_sent: std::sync::Mutex<Option<Instant>>,
}

/// Streamed text up to this size is sent with every piece (the SDK keeps the latest and sends
/// it within [`CHECKPOINT_FLUSH`](super::CHECKPOINT_FLUSH)); longer text at most every
/// [`LONG_TEXT_EVERY`], so that a long answer is not serialized again for each of its pieces.
const SHORT_TEXT: usize = 16 * 1024;
const LONG_TEXT_EVERY: Duration = Duration::from_millis(50);

/// The details of an activity's heartbeats.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeartbeatDetails {
    /// The attempt that heartbeats, from the second on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    attempt: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    progress: Option<Value>,
    /// The attempt's model text so far, when its model streams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    /// Present (even as `null`, the checkpoint of `()` or `None`) when a checkpoint was made.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    checkpoint: Option<Value>,
}

fn present<'de, D: serde::Deserializer<'de>>(value: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(value).map(Some)
}

impl Heartbeats {
    fn new(ctx: ActivityContext, resumed: Option<Value>, attempt: u32) -> Self {
        Heartbeats {
            ctx,
            details: std::sync::Mutex::new(HeartbeatDetails {
                attempt: (attempt > 1).then_some(attempt),
                progress: None,
                text: None,
                checkpoint: resumed,
            }),
            text_sent: std::sync::Mutex::new(None),
        }
    }

    /// The attempt's streamed model text, when its model streamed.
    fn take_text(&self) -> Option<String> {
        let mut details = self.details.lock().unwrap_or_else(|p| p.into_inner());
        details.text.take()
    }

    /// A piece of the attempt's streamed model text.
    fn text(&self, piece: &str) {
        let mut sent = self.text_sent.lock().unwrap_or_else(|p| p.into_inner());
        let mut details = self.details.lock().unwrap_or_else(|p| p.into_inner());
        let text = details.text.get_or_insert_with(String::new);
        text.push_str(piece);
        let due = text.len() <= SHORT_TEXT || sent.is_none_or(|at| at.elapsed() >= LONG_TEXT_EVERY);
        drop(details);
        if due {
            *sent = Some(Instant::now());
            self.send(|_| {});
        }
    }

    /// Updates the details and sends them, in order: the SDK records a heartbeat at once (the
    /// payload conversion of flock's JSON is ready on first poll), and only a codec that really
    /// waits would make it finish on a task of its own.
    fn send(&self, update: impl FnOnce(&mut HeartbeatDetails)) {
        let mut details = self.details.lock().unwrap_or_else(|p| p.into_inner());
        update(&mut details);
        if self.ctx.info().is_local {
            return; // local activities cannot heartbeat (the SDK ignores it)
        }
        let mut value = serde_json::to_value(&*details).unwrap_or_default();
        if json_size(&value) > MAX_PAYLOAD_BYTES
            && let Value::Object(fields) = &mut value
        {
            // the checkpoint is within the limit on its own: it goes, the progress and the
            // streamed text stay behind
            fields.remove("progress");
            fields.remove("text");
        }
        let ctx = self.ctx.clone();
        let mut record = Box::pin(async move {
            let _ = ctx.record_heartbeat(value).await;
        });
        if (&mut record).now_or_never().is_none() {
            tokio::spawn(record);
        }
    }
}

impl crate::events::TextTarget for Heartbeats {
    fn text(&self, _sink: &crate::events::TextSink, piece: &str) {
        Heartbeats::text(self, piece);
    }
}

impl ProgressSink for Heartbeats {
    fn report(&self, _agent: &'static str, _attempt: u32, details: Value) {
        self.send(|d| d.progress = Some(details));
    }

    fn checkpoint(&self, _agent: &'static str, _attempt: u32, state: &Value) {
        self.send(|d| d.checkpoint = Some(state.clone()));
    }

    fn heartbeat(&self, _agent: &'static str, _attempt: u32) {
        self.send(|_| {});
    }
}

/// The checkpoint the earlier attempts of this activity left in its heartbeat details. Details
/// that are not flock's (another program heartbeating for this activity type) are no checkpoint.
fn previous_checkpoint(agent: &str, ctx: &ActivityContext) -> Option<Value> {
    let details = match ctx.heartbeat_details().deserialize::<Value>() {
        Ok(details) => details?,
        Err(e) => {
            tracing::debug!(agent, "heartbeat details that are not JSON: {e}");
            return None;
        }
    };
    match serde_json::from_value::<HeartbeatDetails>(details) {
        Ok(details) => details.checkpoint,
        Err(e) => {
            tracing::debug!(agent, "heartbeat details that are not flock's: {e}");
            None
        }
    }
}

/// One call of an agent run as a local activity, across the attempts its worker makes of it: the
/// workflow run and the activity id (its sequence number in the run, the same on replay).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct LocalCall {
    namespace: String,
    workflow_id: String,
    run_id: String,
    activity_id: String,
}

/// The last checkpoints of local activities on this worker, by call, with when they were kept.
/// An entry goes when its call finishes; one whose call ended otherwise (the run was cancelled,
/// its schedule-to-close passed, the workflow moved to another worker) expires after
/// [`LOCAL_CHECKPOINT_TTL`], longer than any retry delay Temporal makes in the worker (a minute).
static LOCAL_CHECKPOINTS: std::sync::Mutex<BTreeMap<LocalCall, (Instant, Value)>> =
    std::sync::Mutex::new(BTreeMap::new());

const LOCAL_CHECKPOINT_TTL: Duration = Duration::from_secs(10 * 60);

impl LocalCall {
    fn of(info: &ActivityInfo) -> Self {
        LocalCall {
            namespace: info.namespace.clone(),
            workflow_id: info.workflow_id.clone().unwrap_or_default(),
            run_id: info.workflow_run_id.clone().unwrap_or_default(),
            activity_id: info.activity_id.clone(),
        }
    }

    /// The checkpoint an earlier attempt of this call kept.
    fn resume(&self) -> Option<Value> {
        let kept = LOCAL_CHECKPOINTS.lock().unwrap_or_else(|p| p.into_inner());
        kept.get(self).map(|(_, state)| state.clone())
    }

    /// Keeps `last` for the next attempt, or forgets the call when it is `finished`.
    fn keep(self, last: Option<Value>, finished: bool) {
        let mut kept = LOCAL_CHECKPOINTS.lock().unwrap_or_else(|p| p.into_inner());
        kept.retain(|_, (at, _)| at.elapsed() < LOCAL_CHECKPOINT_TTL);
        match last {
            Some(state) if !finished => {
                kept.insert(self, (Instant::now(), state));
            }
            _ => {
                kept.remove(&self);
            }
        }
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
