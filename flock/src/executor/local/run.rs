//! The local executor's runtime: what a running flow asks of it ([`FlowRuntime`]): agent calls
//! with their attempts under the retry policy and timeouts, child flows, timers and messages,
//! and the record of the run. What both executors share is above it, in `flow` and `agent`.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::Value;
use tracing::Instrument;

use super::{Cell, Closing, LocalRuns};
use crate::agent::{AgentContext, Attempt, CallKey, ProgressSink, panic_message};
use crate::error::{AgentError, FlowError};
use crate::executor::Settings;
use crate::flow::{DynFlow, run_body};
use crate::observe::{self, AttemptOutcome};
use crate::record::{
    AttemptRecord, ProgressEvent, RunRecord, RunStatus, StepEvent, StepEventKind, StepRecord,
};
use crate::registry::Registry;
use crate::runtime::{AgentCall, ChildCall, FlowRuntime, SignalCall};
use crate::spec::AgentKind;
use crate::usage::Usage;

/// One local run (one continuation of it, when it continues as new): the executor's settings,
/// the run's cell, and the record being written.
struct LocalRun {
    settings: Arc<Settings>,
    run_id: Arc<str>,
    seed: u64,
    runs: Arc<LocalRuns>,
    /// The run's cell: its mailbox.
    cell: Arc<Cell>,
    /// This run, for the agents' progress reports (no allocation per call).
    me: std::sync::Weak<LocalRun>,
    /// Agent calls made so far (each call's idempotency key has its number).
    calls: std::sync::atomic::AtomicU64,
    /// Whether the run's record is wanted: its steps, with their inputs and outputs.
    recording: bool,
    started: Instant,
    started_at: SystemTime,
    steps: Mutex<Vec<StepRecord>>,
    children: Mutex<Vec<RunRecord>>,
    progress: Mutex<Vec<ProgressEvent>>,
    spending: Option<Arc<Spending>>,
}

impl ProgressSink for LocalRun {
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
    run: Arc<LocalRun>,
    last: Mutex<Instant>,
}

impl ProgressSink for HeartbeatSink {
    fn report(&self, agent: &'static str, attempt: u32, details: Value) {
        *lock(&self.last) = Instant::now();
        self.run.report(agent, attempt, details);
    }

    fn checkpoint(&self, _agent: &'static str, _attempt: u32, _state: &Value) {
        *lock(&self.last) = Instant::now();
    }

    fn heartbeat(&self, _agent: &'static str, _attempt: u32) {
        *lock(&self.last) = Instant::now();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs `flow` on JSON `input` locally as run `run_id`, taking messages from `mailbox`; gives
/// its result and its record (with `recording` false, only the run's outcome: no steps, no
/// copies of inputs and outputs, for a caller that asked for the result alone). A run that
/// continues as new runs again on its next input, under the same id; its record links the runs.
/// The caller claimed the run's id and closes it.
pub(crate) async fn run_flow(
    run: Claimed,
    mut input: Value,
    mut started: Option<(Instant, SystemTime)>,
) -> (Result<Value, FlowError>, Option<RunRecord>) {
    let mut previous: Option<Box<RunRecord>> = None;
    loop {
        let started = started
            .take()
            .unwrap_or_else(|| (Instant::now(), SystemTime::now()));
        let (result, record) = run_once(run.clone(), input, started).await;
        let record = record.map(|mut record| {
            record.previous = previous.take();
            record
        });
        match result {
            Err(FlowError::ContinueAsNew { input: next, .. }) => {
                previous = record.map(|mut record| {
                    record.status = RunStatus::ContinuedAsNew;
                    record.error = None;
                    Box::new(record)
                });
                run.cell.mailbox.continue_as_new();
                input = next;
            }
            result => return (result, record),
        }
    }
}

/// A claimed local run, as it is driven: what stays the same across its continue-as-new
/// iterations.
#[derive(Clone)]
pub(crate) struct Claimed {
    pub(crate) settings: Arc<Settings>,
    pub(crate) runs: Arc<LocalRuns>,
    pub(crate) cell: Arc<Cell>,
    pub(crate) flow: &'static dyn DynFlow,
    pub(crate) run_id: Arc<str>,
    /// Whether its record is wanted (see [`run_flow`]).
    pub(crate) recording: bool,
    /// The run tree's budget and spending, shared by every run of the tree (in one process, the
    /// tree's spending is one number).
    pub(crate) spending: Option<Arc<Spending>>,
}

/// A run tree's budget and what the tree has spent.
#[derive(Debug)]
pub(crate) struct Spending {
    budget: crate::usage::Budget,
    spent: Mutex<Usage>,
}

impl Spending {
    pub(crate) fn new(budget: crate::usage::Budget) -> Arc<Spending> {
        Arc::new(Spending {
            budget,
            spent: Mutex::new(Usage::default()),
        })
    }
}

async fn run_once(
    Claimed {
        settings,
        runs,
        cell,
        flow,
        run_id,
        recording,
        spending,
    }: Claimed,
    input: Value,
    (started, started_at): (Instant, SystemTime),
) -> (Result<Value, FlowError>, Option<RunRecord>) {
    let name = flow.spec().name;
    let payload_limit = settings.payload_limit;
    let run = Arc::new_cyclic(|me| LocalRun {
        settings,
        run_id: run_id.clone(),
        seed: rand_u64(),
        runs,
        cell,
        me: me.clone(),
        calls: std::sync::atomic::AtomicU64::new(0),
        recording,
        started,
        started_at,
        steps: Mutex::new(Vec::new()),
        children: Mutex::new(Vec::new()),
        progress: Mutex::new(Vec::new()),
        spending,
    });
    let settings = run.settings.clone();
    let (input, kept) = if recording {
        (input.clone(), input)
    } else {
        (input, Value::Null)
    };
    let result = run_body(
        flow,
        run_id.clone(),
        run.clone(),
        &settings.layers,
        payload_limit,
        Ok(input),
        || false,
    )
    .await;
    if !recording {
        return (result, None);
    }
    let mut steps = std::mem::take(&mut *lock(&run.steps));
    steps.sort_by_key(|s| s.started);
    let mut children = std::mem::take(&mut *lock(&run.children));
    children.sort_by_key(|c| c.started_at);
    let record = RunRecord {
        run_id: run_id.to_string(),
        name: name.to_owned(),
        status: if result.is_ok() {
            RunStatus::Completed
        } else {
            RunStatus::Failed
        },
        started_at: run.started_at,
        duration: run.started.elapsed(),
        input: kept,
        output: result.as_ref().ok().cloned(),
        error: result.as_ref().err().cloned(),
        steps,
        children,
        progress: std::mem::take(&mut *lock(&run.progress)),
        previous: None,
        undelivered: Vec::new(),
    };
    (result, Some(record))
}

impl FlowRuntime for LocalRun {
    fn call_agent(&self, call: AgentCall) -> BoxFuture<'_, Result<Value, FlowError>> {
        Box::pin(self.call_agent(call))
    }

    fn agent_spec(&self, name: &str) -> Option<&'static crate::AgentSpec> {
        self.settings.registry.agent(name).map(|agent| agent.spec())
    }

    fn budget(&self) -> Option<crate::usage::Budget> {
        self.spending.as_ref().map(|spending| spending.budget)
    }

    fn spent(&self) -> Usage {
        self.spending
            .as_ref()
            .map(|spending| *lock(&spending.spent))
            .unwrap_or_default()
    }

    fn call_flow(&self, call: ChildCall) -> BoxFuture<'_, Result<Value, FlowError>> {
        Box::pin(async move {
            let name = call.spec.name;
            let Some(flow) = self.settings.registry.flow(name) else {
                return Err(Registry::not_registered("flow", name));
            };
            crate::runtime::budget_left(self)?;
            let run_id: Arc<str> = Arc::from(call.run_id);
            let cell = self.runs.claim_child(&run_id, call.spec)?;
            let mut closing = Closing::new(&self.runs, &run_id, &cell);
            let child = Claimed {
                settings: self.settings.clone(),
                runs: self.runs.clone(),
                cell: cell.clone(),
                flow,
                run_id: run_id.clone(),
                recording: self.recording,
                spending: self.spending.clone(),
            };
            let (result, record) = run_flow(child, call.input, None).await;
            closing.close(&result, record.as_ref());
            if let Some(record) = record {
                lock(&self.children).push(record);
            }
            result.map_err(|cause| FlowError::ChildFlow {
                flow: name.to_owned(),
                run_id: run_id.to_string(),
                cause: Box::new(cause),
            })
        })
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'_, Result<(), FlowError>> {
        Box::pin(async move {
            tokio::time::sleep(duration).await;
            Ok(())
        })
    }

    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn random_seed(&self) -> u64 {
        self.seed
    }

    fn approval(
        &self,
        agent: &'static str,
        tool: &'static str,
        arguments: Value,
    ) -> BoxFuture<'_, Result<crate::approval::Decision, FlowError>> {
        Box::pin(async move {
            let call = lock(&self.cell.mailbox.state)
                .approvals
                .ask(agent, tool, arguments);
            tracing::info!(run_id = %self.run_id, %call, "tool call `{call}` waits for approval");
            let mailbox = &self.cell.mailbox;
            Ok(mailbox.until(|m| m.approvals.take(&call)).await)
        })
    }

    fn next_signal(&self, name: &'static str) -> BoxFuture<'_, Result<Value, FlowError>> {
        Box::pin(async move { Ok(self.cell.mailbox.until(|m| m.take_signal(name)).await) })
    }

    fn publish(&self, name: &'static str, value: Value) {
        lock(&self.cell.mailbox.state).publish(name, value);
    }

    fn next_update(&self, name: &'static str) -> BoxFuture<'_, Result<(u64, Value), FlowError>> {
        Box::pin(async move { Ok(self.cell.mailbox.until(|m| m.take_update(name)).await) })
    }

    fn answer_update(&self, id: u64, answer: Result<Value, String>) {
        lock(&self.cell.mailbox.state).answer(id, answer);
        self.cell.mailbox.changed.notify_waiters();
    }

    fn signal_flow(&self, call: SignalCall) -> BoxFuture<'_, Result<(), FlowError>> {
        let result = match self.runs.running(&call.run_id) {
            Some(cell) if cell.mailbox.flow.name == call.flow.name => cell
                .mailbox
                .signal(call.name, call.value)
                .map_err(|message| FlowError::Message {
                    flow: call.flow.name.to_owned(),
                    message,
                }),
            Some(cell) => Err(FlowError::Message {
                flow: call.flow.name.to_owned(),
                message: format!(
                    "run `{}` is a run of `{}`, not of `{}`",
                    call.run_id, cell.mailbox.flow.name, call.flow.name
                ),
            }),
            None => Err(FlowError::Message {
                flow: call.flow.name.to_owned(),
                message: format!(
                    "cannot signal `{}` to run `{}` of `{}`: no such run is running",
                    call.name, call.run_id, call.flow.name
                ),
            }),
        };
        Box::pin(std::future::ready(result))
    }
}

impl LocalRun {
    /// Where attempt `attempt` of step `step` (`name`) streams its model text: the step feed.
    fn text_sink(&self, step: u64, name: &'static str, attempt: u32) -> crate::events::TextSink {
        crate::events::TextSink {
            target: self.settings.clone(),
            run_id: self.run_id.clone(),
            step,
            name,
            attempt,
            run_started: self.started,
        }
    }

    /// One durable agent call: attempts under the agent's retry policy and timeouts.
    async fn call_agent(&self, call: AgentCall) -> Result<Value, FlowError> {
        let spec = call.spec;
        let name = spec.name;
        let Some(agent) = self.settings.registry.agent(name) else {
            return Err(Registry::not_registered("agent", name));
        };
        let policy = self.settings.retry_policy(spec);
        let start_to_close = spec.timeout.unwrap_or(self.settings.start_to_close);
        let call_number = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        let step_start = Instant::now();
        let deadline = spec.schedule_to_close.map(|limit| step_start + limit);
        let usage =
            (spec.kind == AgentKind::Declarative).then(|| Arc::new(Mutex::new(Usage::default())));
        let mut attempts = Vec::new();
        let mut retrying = policy.retrying(deadline);
        // The last checkpoint of the attempts so far: what the next one resumes from.
        let mut checkpoint = None;
        // Two clock reads per attempt: its start (the step's, for the first) and its end.
        let mut ended;
        let outcome = loop {
            let attempt = retrying.start();
            // alive: the flow's context holds the run
            let run = self.me.upgrade();
            let heartbeat = spec.heartbeat.zip(run.clone()).map(|(_, run)| {
                Arc::new(HeartbeatSink {
                    run,
                    last: Mutex::new(Instant::now()),
                })
            });
            let progress: Option<Arc<dyn ProgressSink>> = match &heartbeat {
                Some(sink) => Some(sink.clone()),
                None => run.map(|run| run as Arc<dyn ProgressSink>),
            };
            let cancellation = Attempt::resuming(checkpoint.take());
            let ctx = AgentContext::for_attempt(
                self.run_id.clone(),
                attempt,
                spec,
                self.settings.models.clone(),
                progress,
                usage.clone(),
                cancellation.clone(),
                CallKey::local(self.seed, call_number),
                self.settings.payload_limit,
            );
            let attempt_start = if attempt == 1 {
                step_start
            } else {
                Instant::now()
            };
            let event = |at: Instant, kind| StepEvent {
                run_id: self.run_id.clone(),
                step: call_number,
                agent: name,
                attempt,
                at: at.duration_since(self.started),
                kind,
            };
            self.settings
                .step_events
                .emit(|| event(attempt_start, StepEventKind::AttemptStarted));
            let limit = match deadline {
                Some(deadline) => {
                    start_to_close.min(deadline.saturating_duration_since(attempt_start))
                }
                None => start_to_close,
            };
            let (result, span) = {
                let mut running = std::pin::pin!(
                    run_attempt(
                        crate::events::with_text_sink(
                            self.text_sink(call_number, name, attempt),
                            crate::agent::admitted(self.settings.limits.get(spec), ctx, |ctx| {
                                agent.call_json(ctx, &call.input)
                            })
                        ),
                        limit,
                        heartbeat,
                        spec.heartbeat,
                        &cancellation,
                        name,
                    )
                    .instrument(observe::attempt_span(
                        name,
                        &self.run_id,
                        attempt
                    ))
                );
                let result = running.as_mut().await;
                (result, running.span().clone())
            };
            ended = Instant::now();
            checkpoint = cancellation.checkpoints().last();
            // the attempt is over: its context is gone, a later one can reuse its state
            cancellation.recycle();
            if self.recording {
                attempts.push(AttemptRecord {
                    attempt,
                    started: attempt_start.duration_since(self.started),
                    duration: ended.duration_since(attempt_start),
                    error: result.as_ref().err().cloned(),
                });
            }
            let duration = ended.duration_since(attempt_start);
            let Err(error) = result else {
                observe::attempt_finished(
                    &span,
                    name,
                    attempt,
                    AttemptOutcome::Completed,
                    duration,
                );
                break result;
            };
            let delay = retrying.failed(&error, unit_random());
            observe::attempt_finished(
                &span,
                name,
                attempt,
                AttemptOutcome::Failed(&error, delay),
                duration,
            );
            let Some(delay) = delay else {
                break Err(error);
            };
            self.settings.step_events.emit(|| {
                let kind = StepEventKind::AttemptFailed {
                    error: error.clone(),
                    duration,
                    retry_in: delay,
                };
                event(Instant::now(), kind)
            });
            tokio::time::sleep(delay).await;
        };
        let usage = usage.map(|u| *lock(&u)).unwrap_or_default();
        if let Some(spending) = &self.spending {
            *lock(&spending.spent) += usage;
        }
        let duration = ended.duration_since(step_start);
        let attempt = retrying.attempt();
        self.settings.step_events.emit(|| {
            let kind = match &outcome {
                Ok(_) => StepEventKind::Completed { duration, usage },
                Err(error) => StepEventKind::Failed {
                    error: error.clone(),
                    duration,
                    usage,
                },
            };
            StepEvent {
                run_id: self.run_id.clone(),
                step: call_number,
                agent: name,
                attempt,
                at: step_start.duration_since(self.started) + duration,
                kind,
            }
        });
        if self.recording {
            lock(&self.steps).push(StepRecord {
                agent: name.to_owned(),
                started: step_start.duration_since(self.started),
                duration,
                input: call.input,
                output: outcome.as_ref().ok().cloned(),
                error: outcome.as_ref().err().cloned(),
                attempts,
                usage,
                streamed: None,
                activity_id: None,
            });
        }
        outcome.map_err(|cause| FlowError::Agent {
            agent: name.to_owned(),
            attempts: attempt,
            cause,
        })
    }
}

/// One attempt, bounded by its start-to-close limit and (when set) its heartbeat timeout. A
/// timed-out attempt is cancelled (the agent sees [`AgentContext::is_cancelled`]) and dropped.
async fn run_attempt(
    call: impl std::future::Future<Output = Result<Value, AgentError>>,
    limit: Duration,
    heartbeat: Option<Arc<HeartbeatSink>>,
    heartbeat_timeout: Option<Duration>,
    cancellation: &Attempt,
    agent: &'static str,
) -> Result<Value, AgentError> {
    // `call_json` catches the agent's own panics; this catches what escapes it.
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
    let outcome = tokio::time::timeout(limit, watched).await;
    if !matches!(outcome, Ok(Ok(Ok(_)))) {
        cancellation.cancel();
    }
    match outcome {
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
    (rand_u64() >> 11) as f64 / (1u64 << 53) as f64
}

fn rand_u64() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0
}
