//! The local executor: flows and agents run in-process, with the retry, timeout and error-class
//! semantics of the Temporal executor, and a run record the caller can inspect.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures::FutureExt;
use serde_json::Value;

use super::{Runtime, panic_message};
use crate::agent::{Agent, AgentContext, AgentKind, ProgressSink};
use crate::error::{AgentError, FlowError};
use crate::flow::{Backend, Flow, FlowContext};
use crate::model::Usage;
use crate::record::{AttemptRecord, ProgressEvent, RunRecord, RunStatus, StepRecord};

/// The local side of a [`FlowContext`]: the runtime and the record being written.
pub(crate) struct LocalRun {
    runtime: Arc<Runtime>,
    shared: Arc<RunShared>,
}

/// The record of a run while it is written.
struct RunShared {
    started: Instant,
    started_at: SystemTime,
    steps: Mutex<Vec<StepRecord>>,
    children: Mutex<Vec<RunRecord>>,
    progress: Mutex<Vec<ProgressEvent>>,
}

impl ProgressSink for RunShared {
    fn report(&self, agent: &'static str, attempt: u32, details: Value) {
        lock(&self.progress).push(ProgressEvent {
            agent: agent.to_owned(),
            attempt,
            at: self.started.elapsed(),
            details,
        });
    }
}

/// Progress of one attempt of an agent with a heartbeat timeout: also notes the time.
struct HeartbeatSink {
    run: Arc<RunShared>,
    last: Mutex<Instant>,
}

impl ProgressSink for HeartbeatSink {
    fn report(&self, agent: &'static str, attempt: u32, details: Value) {
        *lock(&self.last) = Instant::now();
        self.run.report(agent, attempt, details);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs `flow` on `input` locally as run `run_id`; gives its result and its record.
pub(crate) async fn run_flow<F: Flow>(
    runtime: Arc<Runtime>,
    flow: F,
    run_id: Arc<str>,
    input: F::Input,
) -> (Result<F::Output, FlowError>, RunRecord) {
    let input_json = serde_json::to_value(&input).unwrap_or(Value::Null);
    let shared = Arc::new(RunShared {
        started: Instant::now(),
        started_at: SystemTime::now(),
        steps: Mutex::new(Vec::new()),
        children: Mutex::new(Vec::new()),
        progress: Mutex::new(Vec::new()),
    });
    let ctx = FlowContext::new(
        run_id.clone(),
        F::NAME,
        Backend::Local(LocalRun {
            runtime,
            shared: shared.clone(),
        }),
    );
    let result = match AssertUnwindSafe(flow.run(&ctx, input)).catch_unwind().await {
        Ok(result) => result,
        Err(panic) => Err(FlowError::msg(format!(
            "flow `{}` panicked: {}",
            F::NAME,
            panic_message(&*panic)
        ))),
    };
    drop(ctx);
    let output = match &result {
        Ok(output) => serde_json::to_value(output).ok(),
        Err(_) => None,
    };
    let mut steps = std::mem::take(&mut *lock(&shared.steps));
    steps.sort_by_key(|s| s.started);
    let record = RunRecord {
        run_id: run_id.to_string(),
        name: F::NAME.to_owned(),
        status: if result.is_ok() {
            RunStatus::Completed
        } else {
            RunStatus::Failed
        },
        started_at: shared.started_at,
        duration: shared.started.elapsed(),
        input: input_json,
        output,
        error: result.as_ref().err().cloned(),
        steps,
        children: std::mem::take(&mut *lock(&shared.children)),
        progress: std::mem::take(&mut *lock(&shared.progress)),
    };
    (result, record)
}

impl LocalRun {
    /// One durable agent call: attempts under the agent's retry policy and timeouts.
    pub(crate) async fn call_agent<A: Agent>(
        &self,
        flow: &FlowContext,
        agent: A,
        input: A::Input,
    ) -> Result<A::Output, FlowError> {
        let spec = agent.spec();
        let policy = self.runtime.retry_policy(spec);
        let start_to_close = spec.timeout.unwrap_or(self.runtime.start_to_close);
        let step_start = Instant::now();
        let deadline = spec.schedule_to_close.map(|limit| step_start + limit);
        let input_json = serde_json::to_value(&input).map_err(|e| FlowError::Serialization {
            at: A::NAME.to_owned(),
            message: format!("input: {e}"),
        })?;
        let usage =
            (spec.kind == AgentKind::Declarative).then(|| Arc::new(Mutex::new(Usage::default())));
        let mut first_input = Some(input);
        let mut attempts = Vec::new();
        let mut attempt = 0;
        let outcome = loop {
            attempt += 1;
            let input = match first_input.take() {
                Some(input) => input,
                None => serde_json::from_value(input_json.clone()).map_err(|e| {
                    FlowError::Serialization {
                        at: A::NAME.to_owned(),
                        message: format!("input: {e}"),
                    }
                })?,
            };
            let heartbeat = spec.heartbeat.map(|_| {
                Arc::new(HeartbeatSink {
                    run: self.shared.clone(),
                    last: Mutex::new(Instant::now()),
                })
            });
            let progress: Arc<dyn ProgressSink> = match &heartbeat {
                Some(sink) => sink.clone(),
                None => self.shared.clone(),
            };
            let ctx = AgentContext {
                run_id: flow.run_id.clone(),
                attempt,
                spec,
                progress: Some(progress),
                models: self.runtime.models.clone(),
                usage: usage.clone(),
            };
            let attempt_start = Instant::now();
            let limit = match deadline {
                Some(deadline) => {
                    start_to_close.min(deadline.saturating_duration_since(attempt_start))
                }
                None => start_to_close,
            };
            let result = run_attempt(
                agent.call(ctx, input),
                limit,
                heartbeat,
                spec.heartbeat,
                A::NAME,
            )
            .await;
            let error = result.as_ref().err().cloned();
            attempts.push(AttemptRecord {
                attempt,
                started: attempt_start.duration_since(self.shared.started),
                duration: attempt_start.elapsed(),
                error: error.clone(),
            });
            let Err(error) = result else {
                break result;
            };
            if policy.gives_up(&error, attempt) {
                break Err(error);
            }
            let delay = policy.delay(attempt, &error, unit_random());
            if let Some(deadline) = deadline
                && Instant::now() + delay >= deadline
            {
                break Err(error);
            }
            tokio::time::sleep(delay).await;
        };
        let (output, error) = match &outcome {
            Ok(output) => (serde_json::to_value(output).ok(), None),
            Err(error) => (None, Some(error.clone())),
        };
        lock(&self.shared.steps).push(StepRecord {
            agent: A::NAME.to_owned(),
            started: step_start.duration_since(self.shared.started),
            duration: step_start.elapsed(),
            input: input_json,
            output,
            error,
            attempts,
            usage: usage.map(|u| *lock(&u)).unwrap_or_default(),
        });
        outcome.map_err(|cause| FlowError::Agent {
            agent: A::NAME.to_owned(),
            attempts: attempt,
            cause,
        })
    }

    /// A child flow: its own run id and record, nested in this run's record.
    pub(crate) async fn call_flow<F: Flow>(
        &self,
        parent: &FlowContext,
        flow: F,
        input: F::Input,
    ) -> Result<F::Output, FlowError> {
        let run_id: Arc<str> = Arc::from(format!("{}-{}", F::NAME, parent.uuid()));
        let (result, record) =
            Box::pin(run_flow(self.runtime.clone(), flow, run_id.clone(), input)).await;
        lock(&self.shared.children).push(record);
        result.map_err(|cause| FlowError::ChildFlow {
            flow: F::NAME.to_owned(),
            run_id: run_id.to_string(),
            cause: Box::new(cause),
        })
    }
}

/// One attempt, bounded by its start-to-close limit and (when set) its heartbeat timeout; a
/// panic in the agent is a permanent error.
async fn run_attempt<T>(
    call: impl std::future::Future<Output = Result<T, AgentError>>,
    limit: Duration,
    heartbeat: Option<Arc<HeartbeatSink>>,
    heartbeat_timeout: Option<Duration>,
    agent: &'static str,
) -> Result<T, AgentError> {
    let call = AssertUnwindSafe(call).catch_unwind();
    let watched = async {
        match (heartbeat, heartbeat_timeout) {
            (Some(sink), Some(timeout)) => {
                tokio::pin!(call);
                loop {
                    let last = *lock(&sink.last);
                    tokio::select! {
                        result = &mut call => break result,
                        _ = tokio::time::sleep_until((last + timeout).into()) => {
                            if lock(&sink.last).elapsed() >= timeout {
                                break Ok(Err(AgentError::transient(format!(
                                    "agent `{agent}` sent no heartbeat for {timeout:?} (heartbeat timeout)"
                                ))));
                            }
                        }
                    }
                }
            }
            _ => call.await,
        }
    };
    match tokio::time::timeout(limit, watched).await {
        Ok(Ok(result)) => result,
        Ok(Err(panic)) => Err(AgentError::permanent(format!(
            "agent `{agent}` panicked: {}",
            panic_message(&*panic)
        ))),
        Err(_) => Err(AgentError::transient(format!(
            "agent `{agent}` timed out after {limit:?} (start-to-close timeout)"
        ))),
    }
}

/// A random number in `[0, 1)` for retry jitter (not part of any flow's deterministic stream).
fn unit_random() -> f64 {
    (uuid::Uuid::new_v4().as_u128() >> 75) as f64 / (1u64 << 53) as f64
}
