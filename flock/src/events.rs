//! Live events of a run: what a front-end shows while the run goes on.
//!
//! [`FlowHandle::events`](crate::FlowHandle::events) (or [`Flock::events_of_run`](crate::Flock::events_of_run)
//! by id: on Temporal from any process that can reach the run) gives a [`RunEvents`] stream of
//! [`RunEvent`]s:
//! steps started and finished (agents, model requests, tool and MCP calls), failed attempts that
//! are retried, tool calls waiting for approval, the text of model answers as the provider streams
//! it, and the run's end, after which the stream ends. The event type's JSON Schema is
//! [`schema()`] (`flock schema --events` prints it), for front-ends in other languages.
//!
//! **Retries.** Every step event names its attempt. When an attempt fails and the step is tried
//! again, the stream says so ([`EventKind::AttemptFailed`] with `retry: true`, then
//! [`EventKind::StepStarted`] with the next attempt): text streamed by the failed attempt is that
//! attempt's, and the next attempt's text starts afresh — a viewer drops what it showed for the
//! failed attempt rather than appending the new one to it.
//!
//! **Where the events come from.** On the local executor they are pushed as they happen, from
//! the moment the stream is made (a handle from [`Flock::start_flow`](crate::Flock::start_flow) gets them
//! from the run's first step). On Temporal the stream reads the run every
//! [`WATCH_INTERVAL`]: steps from its history (read again only when it grew) and the run's
//! description, approvals through the `flock.approvals` query; a stream opened on a run that is
//! under way first catches up with the steps so far. Streamed model text never goes into the
//! history: the model step's activity carries the text so far in its heartbeat details, which the
//! server keeps with the pending activity (not as history events) and the stream reads back with
//! the run's description; the worker sends them at most every
//! [`CHECKPOINT_FLUSH`](crate::worker::CHECKPOINT_FLUSH). When a step finishes, the rest of its
//! text comes from its result, so a watcher gets the whole text once even when the last pieces
//! came after the last heartbeat (the SDK does not send a completed activity's last throttled
//! heartbeat): a model step's output is its text; an agent evaluated in one activity (no tools),
//! whose output is typed, adds the text it streamed to its result (its history grows by that
//! text once). A watcher attached while a step streams gets that step's text so far as one piece
//! first (Temporal), or only the pieces from then on (local).
//!
//! The stream shows the run's own steps, not those of its child flows (watch a child by its id).

use std::collections::BTreeSet;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Error;
use crate::usage::Usage;

/// How often a stream of a Temporal run reads the run.
pub const WATCH_INTERVAL: Duration = Duration::from_millis(100);

/// One thing that happened in a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[non_exhaustive]
pub struct RunEvent {
    /// The run (on Temporal: the workflow id).
    pub run_id: String,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What a [`RunEvent`] reports. Serialized with its name in `"type"` (`"step_started"`, …).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// An attempt of a step started (on Temporal: was scheduled, a retry's at the start of its
    /// backoff). `attempt` above 1 is a retry.
    StepStarted {
        /// The step's number, from 1, in the order the calls were made: what tells the events
        /// of one step from another's. On Temporal the steps of a run that continued as new
        /// count on (from the first generation the stream saw); locally a run that continues as
        /// new numbers its steps from 1 again.
        step: u64,
        /// The agent, `<agent>.model`, `<tool>.tool`, `<server>.mcp` or `<server>.mcp_tools`.
        name: String,
        /// What kind of step it is.
        kind: StepKind,
        /// The attempt, from 1.
        attempt: u32,
    },
    /// Text of a model's answer, as the provider streams it: the next piece of `attempt`'s text.
    Text {
        /// The step.
        step: u64,
        /// The step's name.
        name: String,
        /// The attempt the text belongs to.
        attempt: u32,
        /// The piece.
        text: String,
    },
    /// An attempt failed; with `retry`, the step is tried again (its text so far is void),
    /// without, the step failed for good ([`StepFinished`](EventKind::StepFinished) follows).
    AttemptFailed {
        /// The step.
        step: u64,
        /// The step's name.
        name: String,
        /// The attempt that failed.
        attempt: u32,
        /// Why.
        error: String,
        /// Whether another attempt follows.
        retry: bool,
        /// When another attempt follows: how long until it starts, in milliseconds, as far as
        /// it is known when the failure is told.
        retry_in_ms: Option<u64>,
    },
    /// A step finished: its output was recorded, or it failed for good.
    StepFinished {
        /// The step.
        step: u64,
        /// The step's name.
        name: String,
        /// What kind of step it is.
        kind: StepKind,
        /// The attempts it took.
        attempts: u32,
        /// Why it failed, when it did.
        error: Option<String>,
        /// How long it took, retries included, in milliseconds.
        duration_ms: u64,
        /// Model token usage.
        usage: Usage,
    },
    /// A tool call waits for a person's decision ([`crate::approval`]).
    ApprovalWaiting {
        /// The call's key: what `approve` takes.
        call: String,
        /// The agent whose model asked for it.
        agent: String,
        /// The tool.
        tool: String,
        /// The arguments the model gave.
        arguments: Value,
    },
    /// The run ended; the stream ends after this event.
    RunFinished {
        /// `completed`, `failed`, `cancelled`, `terminated`, `timed_out`, or `unknown` (a status
        /// newer than this library). A run that continues as new under its id goes on, and so
        /// does its stream.
        status: String,
        /// Why it did not complete, when it did not.
        error: Option<String>,
    },
}

/// What kind of step an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StepKind {
    /// An agent call.
    Agent,
    /// One model request of an agent that runs step by step (`<agent>.model`).
    Model,
    /// One `#[tool]` call (`<tool>.tool`).
    Tool,
    /// One MCP tool call or tool listing (`<server>.mcp`, `<server>.mcp_tools`).
    Mcp,
}

impl StepKind {
    /// The kind of the step named `name`.
    pub fn of(name: &str) -> StepKind {
        if name.ends_with(".model") {
            StepKind::Model
        } else if name.ends_with(".tool") {
            StepKind::Tool
        } else if name.ends_with(".mcp") || name.ends_with(".mcp_tools") {
            StepKind::Mcp
        } else {
            StepKind::Agent
        }
    }
}

/// The JSON Schema of [`RunEvent`] (what `flock schema --events` prints), for front-ends.
///
/// ```
/// let schema = flock::events::schema();
/// assert_eq!(schema["title"], "RunEvent");
/// assert!(schema.to_string().contains("step_started"));
/// ```
pub fn schema() -> Value {
    serde_json::to_value(schemars::schema_for!(RunEvent)).unwrap_or(Value::Null)
}

/// A stream of a run's [`RunEvent`]s; it ends after [`EventKind::RunFinished`]. An item that is
/// an error says what could not be read (a run that cannot be read any more ends the stream
/// after it; the local executor's events that a slow reader missed are an error too, after which
/// the stream goes on).
pub struct RunEvents {
    receiver: tokio::sync::mpsc::UnboundedReceiver<Result<RunEvent, Error>>,
    /// The task that makes the events: ended with the stream.
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for RunEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RunEvents")
    }
}

impl RunEvents {
    /// A stream whose events `make` sends (in a task of its own, ended when the stream is
    /// dropped).
    pub(crate) fn spawn<F>(make: impl FnOnce(Sender) -> F) -> RunEvents
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(make(Sender(sender)));
        RunEvents { receiver, task }
    }
}

impl Drop for RunEvents {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl futures::Stream for RunEvents {
    type Item = Result<RunEvent, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.receiver.poll_recv(cx)
    }
}

/// Where a watcher sends the events of a run.
pub(crate) struct Sender(tokio::sync::mpsc::UnboundedSender<Result<RunEvent, Error>>);

impl Sender {
    /// Sends an event of run `run_id`; false when nobody reads the stream any more.
    pub(crate) fn event(&self, run_id: &str, kind: EventKind) -> bool {
        self.0
            .send(Ok(RunEvent {
                run_id: run_id.to_owned(),
                kind,
            }))
            .is_ok()
    }

    /// Sends an error; false when nobody reads the stream any more.
    pub(crate) fn error(&self, error: Error) -> bool {
        self.0.send(Err(error)).is_ok()
    }
}

tokio::task_local! {
    /// Where the model text of the attempt running in this task goes.
    static TEXT: TextSink;
}

/// Where an attempt's streamed model text goes: the local executor's step feed, or the Temporal
/// activity's heartbeat details; with the step and attempt it is of. Made for every attempt
/// without allocating (clones of `Arc`s the executors hold).
#[derive(Clone)]
pub(crate) struct TextSink {
    pub(crate) target: std::sync::Arc<dyn TextTarget>,
    pub(crate) run_id: std::sync::Arc<str>,
    pub(crate) step: u64,
    pub(crate) name: &'static str,
    pub(crate) attempt: u32,
    /// When the run started (the local executor's event times count from it).
    pub(crate) run_started: std::time::Instant,
}

/// What takes the streamed text of the attempts of [`TextSink`]s.
pub(crate) trait TextTarget: Send + Sync {
    /// A piece of the text of `sink`'s attempt.
    fn text(&self, sink: &TextSink, piece: &str);
}

/// Hands a piece of a model's answer text, as it streams, to the live events of the run whose
/// step is asking (see the [module](self)); outside a step, or when nobody can watch, it does
/// nothing. The built-in providers call it when they stream; a custom
/// [`Model`](crate::model::Model) that streams calls it with each piece, in order.
pub fn stream_text(piece: &str) {
    if piece.is_empty() {
        return;
    }
    let _ = TEXT.try_with(|sink| sink.target.text(sink, piece));
}

/// Runs `attempt` with its streamed model text going to `sink`.
pub(crate) async fn with_text_sink<T>(
    sink: TextSink,
    attempt: impl std::future::Future<Output = T>,
) -> T {
    TEXT.scope(sink, attempt).await
}

/// What a Temporal watcher keeps between looks: the history is read again only when it grew.
#[derive(Debug, Default)]
#[cfg_attr(not(feature = "temporal"), allow(dead_code))]
pub(crate) struct LookCache {
    pub(crate) history_length: i64,
    pub(crate) generation: String,
    /// The steps the history shows, without what the description adds.
    pub(crate) steps: Vec<StepSnapshot>,
}

/// One look at a Temporal run.
#[derive(Debug, Default)]
pub(crate) struct Look {
    /// When the run continued as new since the last look: the last look at the generation it
    /// left and at those in between, oldest first.
    pub(crate) previous: Vec<Snapshot>,
    pub(crate) snapshot: Snapshot,
    /// Whether its history grew since the last look.
    pub(crate) grew: bool,
    pub(crate) running: bool,
    /// The run's status as [`RunInfo::status`](crate::RunInfo::status) spells it.
    pub(crate) status: String,
}

/// What a look at a run shows (a Temporal run; the local executor pushes its events instead).
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    /// The current generation (Temporal run id): steps count on across generations.
    pub(crate) generation: String,
    /// The current generation's steps, in the order they were called.
    pub(crate) steps: Vec<StepSnapshot>,
    /// The calls waiting for approval, when they were read this time.
    pub(crate) approvals: Option<Vec<crate::approval::Pending>>,
}

/// A step as a look at its run shows it.
#[derive(Debug, Default, Clone)]
pub(crate) struct StepSnapshot {
    pub(crate) name: String,
    /// Its activity id on Temporal (steps of one name may run at once).
    #[cfg_attr(not(feature = "temporal"), allow(dead_code))]
    pub(crate) activity_id: Option<String>,
    /// The attempt running or last run, from 1 (0: scheduled, not started).
    pub(crate) attempt: u32,
    /// Why the last attempt failed, when one did and it is retried.
    pub(crate) last_failure: Option<String>,
    /// How long until the scheduled attempt starts, when it is a retry waiting for its turn.
    pub(crate) retry_in: Option<Duration>,
    /// Why each attempt failed, by attempt from 1, as far as the history tells.
    pub(crate) failures: Vec<Option<String>>,
    /// The step's end: `Ok` with its output, or why it failed.
    pub(crate) finished: Option<Result<Value, String>>,
    pub(crate) duration: Duration,
    pub(crate) usage: Usage,
    /// The whole text a finished step's model streamed, when its output is not that text.
    pub(crate) streamed: Option<String>,
    /// The text the running attempt streamed so far, with its attempt.
    pub(crate) text: Option<(u32, String)>,
}

impl StepSnapshot {
    /// Why attempt `attempt` failed, as far as it is known.
    fn failure_of(&self, attempt: u32) -> String {
        let known = attempt
            .checked_sub(1)
            .and_then(|i| self.failures.get(i as usize))
            .cloned()
            .flatten();
        known
            .or_else(|| self.last_failure.clone())
            .unwrap_or_else(|| "failed".to_owned())
    }
}

/// What a watcher has told of a run so far: a [`Snapshot`] becomes the events since the last.
#[derive(Debug, Default)]
pub(crate) struct Watched {
    generation: Option<String>,
    /// Steps of earlier generations.
    base: u64,
    steps: Vec<WatchedStep>,
    approvals: BTreeSet<String>,
}

#[derive(Debug, Default)]
struct WatchedStep {
    /// The last attempt told (0: none).
    attempt: u32,
    /// The text told of that attempt.
    text: String,
    finished: bool,
}

impl Watched {
    /// The events `snapshot` shows since the last one.
    pub(crate) fn events(&mut self, snapshot: Snapshot) -> Vec<EventKind> {
        let mut events = Vec::new();
        if self.generation.as_deref() != Some(snapshot.generation.as_str()) {
            if self.generation.is_some() {
                self.base += self.steps.len() as u64;
                self.steps.clear();
                // a new generation counts its approvals from 1 again
                self.approvals.clear();
            }
            self.generation = Some(snapshot.generation);
        }
        for (i, step) in snapshot.steps.into_iter().enumerate() {
            if i == self.steps.len() {
                self.steps.push(WatchedStep::default());
            }
            let number = self.base + i as u64 + 1;
            let told = &mut self.steps[i];
            if told.finished {
                continue;
            }
            let kind = StepKind::of(&step.name);
            // a finished step that was never seen running had one attempt at least
            let attempt = step
                .attempt
                .max(u32::from(step.finished.is_some() || step.text.is_some()));
            while told.attempt < attempt {
                if told.attempt > 0 {
                    events.push(EventKind::AttemptFailed {
                        step: number,
                        name: step.name.clone(),
                        attempt: told.attempt,
                        error: step.failure_of(told.attempt),
                        retry: true,
                        // the delay is known for the attempt before the one scheduled now
                        retry_in_ms: step
                            .retry_in
                            .filter(|_| told.attempt + 1 == attempt)
                            .map(millis),
                    });
                }
                told.attempt += 1;
                told.text.clear();
                events.push(EventKind::StepStarted {
                    step: number,
                    name: step.name.clone(),
                    kind,
                    attempt: told.attempt,
                });
            }
            if let Some((attempt, text)) = &step.text
                && *attempt == told.attempt
            {
                push_text(&mut events, number, &step.name, told, text);
            }
            let Some(finished) = step.finished else {
                continue;
            };
            // the rest of the text the last looks did not show (all of it, when none did)
            if finished.is_ok()
                && let Some(whole) = &step.streamed
            {
                push_text(&mut events, number, &step.name, told, whole);
            }
            told.finished = true;
            if let Err(error) = &finished {
                events.push(EventKind::AttemptFailed {
                    step: number,
                    name: step.name.clone(),
                    attempt: told.attempt.max(1),
                    error: error.clone(),
                    retry: false,
                    retry_in_ms: None,
                });
            }
            events.push(EventKind::StepFinished {
                step: number,
                name: step.name,
                kind,
                attempts: told.attempt.max(1),
                error: finished.err(),
                duration_ms: millis(step.duration),
                usage: step.usage,
            });
        }
        for pending in snapshot.approvals.into_iter().flatten() {
            if self.approvals.insert(pending.call.clone()) {
                events.push(EventKind::ApprovalWaiting {
                    call: pending.call,
                    agent: pending.agent,
                    tool: pending.tool,
                    arguments: pending.arguments,
                });
            }
        }
        events
    }
}

/// The part of `text` (an attempt's text so far) not told yet.
fn push_text(
    events: &mut Vec<EventKind>,
    step: u64,
    name: &str,
    told: &mut WatchedStep,
    text: &str,
) {
    let Some(rest) = text.strip_prefix(told.text.as_str()) else {
        return; // not a continuation of what was told (cannot happen within one attempt)
    };
    if rest.is_empty() {
        return;
    }
    events.push(EventKind::Text {
        step,
        name: name.to_owned(),
        attempt: told.attempt,
        text: rest.to_owned(),
    });
    told.text.push_str(rest);
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The events a local step event is: one, or for a step that failed for good, its last
/// attempt's failure (not retried) and the step's end.
pub(crate) fn of_step_event(event: &crate::record::StepEvent) -> Vec<EventKind> {
    use crate::record::StepEventKind as Kind;
    let name = event.agent.to_owned();
    let step = event.step;
    let attempt = event.attempt;
    vec![match &event.kind {
        Kind::AttemptStarted => EventKind::StepStarted {
            step,
            kind: StepKind::of(&name),
            name,
            attempt,
        },
        Kind::Text { text } => EventKind::Text {
            step,
            name,
            attempt,
            text: text.clone(),
        },
        Kind::AttemptFailed {
            error, retry_in, ..
        } => EventKind::AttemptFailed {
            step,
            name,
            attempt,
            error: error.to_string(),
            retry: true,
            retry_in_ms: Some(millis(*retry_in)),
        },
        Kind::Completed { usage, duration } => EventKind::StepFinished {
            step,
            kind: StepKind::of(&name),
            name,
            attempts: attempt,
            error: None,
            duration_ms: millis(*duration),
            usage: *usage,
        },
        Kind::Failed {
            error,
            usage,
            duration,
        } => {
            return vec![
                EventKind::AttemptFailed {
                    step,
                    name: name.clone(),
                    attempt,
                    error: error.to_string(),
                    retry: false,
                    retry_in_ms: None,
                },
                EventKind::StepFinished {
                    step,
                    kind: StepKind::of(&name),
                    name,
                    attempts: attempt,
                    error: Some(error.to_string()),
                    duration_ms: millis(*duration),
                    usage: *usage,
                },
            ];
        }
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(name: &str, attempt: u32) -> StepSnapshot {
        StepSnapshot {
            name: name.to_owned(),
            attempt,
            ..StepSnapshot::default()
        }
    }

    fn look(watched: &mut Watched, steps: Vec<StepSnapshot>) -> Vec<EventKind> {
        watched.events(Snapshot {
            generation: "g1".into(),
            steps,
            approvals: None,
        })
    }

    #[test]
    fn text_is_told_once_and_a_retry_starts_it_afresh() {
        let mut watched = Watched::default();
        let mut running = step("writer.model", 1);
        running.text = Some((1, "Hel".into()));
        let events = look(&mut watched, vec![running.clone()]);
        assert!(matches!(
            &events[0],
            EventKind::StepStarted { attempt: 1, .. }
        ));
        assert!(matches!(&events[1], EventKind::Text { text, attempt: 1, .. } if text == "Hel"));
        // the same look again tells nothing
        assert!(look(&mut watched, vec![running.clone()]).is_empty());
        // attempt 2, its text afresh
        let mut retried = step("writer.model", 2);
        retried.last_failure = Some("cut off".into());
        retried.text = Some((2, "He".into()));
        let events = look(&mut watched, vec![retried]);
        assert!(matches!(
            &events[0],
            EventKind::AttemptFailed { attempt: 1, retry: true, error, .. } if error == "cut off"
        ));
        assert!(matches!(
            &events[1],
            EventKind::StepStarted { attempt: 2, .. }
        ));
        assert!(matches!(&events[2], EventKind::Text { text, attempt: 2, .. } if text == "He"));
        // finished: the rest of the text from the output, then the end
        let mut done = step("writer.model", 2);
        done.finished = Some(Ok(Value::Null));
        done.streamed = Some("Hello".into());
        let events = look(&mut watched, vec![done.clone()]);
        assert!(matches!(&events[0], EventKind::Text { text, attempt: 2, .. } if text == "llo"));
        assert!(matches!(
            &events[1],
            EventKind::StepFinished {
                attempts: 2,
                error: None,
                ..
            }
        ));
        assert!(look(&mut watched, vec![done]).is_empty());
    }

    #[test]
    fn steps_count_on_across_generations_and_skipped_attempts_are_told() {
        let mut watched = Watched::default();
        let mut first = step("a", 1);
        first.finished = Some(Ok(Value::Null));
        let events = look(&mut watched, vec![first]);
        assert_eq!(events.len(), 2);
        let mut failed = step("b", 3);
        failed.last_failure = Some("boom".into());
        failed.finished = Some(Err("boom".into()));
        let events = watched.events(Snapshot {
            generation: "g2".into(),
            steps: vec![failed],
            approvals: Some(vec![crate::approval::Pending {
                call: "a/pay/1".into(),
                agent: "a".into(),
                tool: "pay".into(),
                arguments: Value::Null,
            }]),
        });
        let started: Vec<u32> = events
            .iter()
            .filter_map(|e| match e {
                EventKind::StepStarted {
                    step: 2, attempt, ..
                } => Some(*attempt),
                _ => None,
            })
            .collect();
        assert_eq!(started, [1, 2, 3]);
        assert!(events.iter().any(|e| matches!(
            e,
            EventKind::StepFinished { step: 2, attempts: 3, error: Some(error), .. } if error == "boom"
        )));
        assert!(
            matches!(events.last(), Some(EventKind::ApprovalWaiting { call, .. }) if call == "a/pay/1")
        );
    }

    #[test]
    fn the_schema_names_every_event() {
        let schema = schema().to_string();
        for name in [
            "step_started",
            "text",
            "attempt_failed",
            "step_finished",
            "approval_waiting",
            "run_finished",
        ] {
            assert!(schema.contains(&format!("\"{name}\"")), "{name}: {schema}");
        }
        let event = RunEvent {
            run_id: "r".into(),
            kind: EventKind::Text {
                step: 1,
                name: "w.model".into(),
                attempt: 1,
                text: "hi".into(),
            },
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["type"], "text");
        assert_eq!(serde_json::from_value::<RunEvent>(json).unwrap(), event);
    }
}
