//! The run record: what ran, how often, how long, with which inputs, outputs and errors.

use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::Value;

use crate::error::{AgentError, FlowError};
use crate::usage::Usage;

/// Whether a run succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RunStatus {
    /// The run returned its output.
    Completed,
    /// The run failed.
    Failed,
    /// The run continued as a new run ([`FlowContext::continue_as_new`](crate::FlowContext::continue_as_new)).
    ContinuedAsNew,
}

/// The record of one run of a flow or hand-off chain (and, nested, its child flows).
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    /// The run id.
    pub run_id: String,
    /// The flow or chain.
    pub name: String,
    /// How it ended.
    pub status: RunStatus,
    /// When it started.
    pub started_at: SystemTime,
    /// How long it took.
    pub duration: Duration,
    /// The input, as JSON.
    pub input: Value,
    /// The output, as JSON, when it completed.
    pub output: Option<Value>,
    /// Why it failed, when it failed.
    pub error: Option<FlowError>,
    /// Every agent call, in the order they started.
    pub steps: Vec<StepRecord>,
    /// Child flows, in the order they started.
    pub children: Vec<RunRecord>,
    /// Progress the agents reported.
    pub progress: Vec<ProgressEvent>,
    /// The run this one continued from (with `continue_as_new`), which links to the one before
    /// it: the generations, newest first.
    pub previous: Option<Box<RunRecord>>,
    /// Messages sent to the run that it could not take (on Temporal: signals sent past flock's
    /// checks, undeclared or with JSON that does not fit; the worker logged each at error level
    /// and counted it in `flock_messages_dropped_total`). Empty on the local executor, whose
    /// clients are checked before anything is delivered.
    pub undelivered: Vec<UndeliveredMessage>,
}

/// A message a run could not take.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct UndeliveredMessage {
    /// `signal`.
    pub kind: String,
    /// Its name.
    pub name: String,
    /// When it arrived, from the run's start.
    pub at: Duration,
    /// Why it was not delivered.
    pub reason: String,
}

impl RunRecord {
    /// A record of a run executed elsewhere (on Temporal): input and outcome, no steps.
    pub(crate) fn summary(
        run_id: &str,
        name: &str,
        started_at: SystemTime,
        duration: Duration,
        input: Value,
        result: &Result<Value, crate::error::Error>,
    ) -> RunRecord {
        let (status, output, error) = match result {
            Ok(value) => (RunStatus::Completed, Some(value.clone()), None),
            Err(crate::error::Error::Run { cause, .. }) => {
                (RunStatus::Failed, None, Some(cause.clone()))
            }
            Err(other) => (
                RunStatus::Failed,
                None,
                Some(FlowError::msg(other.to_string())),
            ),
        };
        RunRecord {
            run_id: run_id.to_owned(),
            name: name.to_owned(),
            status,
            started_at,
            duration,
            input,
            output,
            error,
            steps: Vec::new(),
            children: Vec::new(),
            progress: Vec::new(),
            previous: None,
            undelivered: Vec::new(),
        }
    }

    /// The record of a run whose caller asked for its result alone: its status, timing and
    /// error; no names, no payloads, no steps (nothing allocated on the fast path).
    pub(crate) fn bare<E>(
        started_at: SystemTime,
        duration: Duration,
        result: &Result<Value, E>,
    ) -> RunRecord {
        RunRecord {
            run_id: String::new(),
            name: String::new(),
            status: if result.is_ok() {
                RunStatus::Completed
            } else {
                RunStatus::Failed
            },
            started_at,
            duration,
            input: Value::Null,
            output: None,
            error: None,
            steps: Vec::new(),
            children: Vec::new(),
            progress: Vec::new(),
            previous: None,
            undelivered: Vec::new(),
        }
    }

    /// Model token usage of this run's own steps (its agent calls), without its children's:
    /// what one flow spent. [`usage`](Self::usage) adds the children's; each step has its own
    /// ([`StepRecord::usage`]).
    pub fn own_usage(&self) -> Usage {
        let mut total = Usage::default();
        for step in &self.steps {
            total += step.usage;
        }
        total
    }

    /// Model token usage of every step of this run and its children: what the run tree spent.
    pub fn usage(&self) -> Usage {
        let mut total = Usage::default();
        for step in &self.steps {
            total += step.usage;
        }
        for child in &self.children {
            total += child.usage();
        }
        total
    }

    /// The steps of one agent.
    pub fn steps_of<'a>(&'a self, agent: &'a str) -> impl Iterator<Item = &'a StepRecord> + 'a {
        self.steps.iter().filter(move |s| s.agent == agent)
    }
}

/// One agent call of a run, over all its attempts.
#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    /// The agent.
    pub agent: String,
    /// When it started, from the run's start.
    pub started: Duration,
    /// How long it took, retries included.
    pub duration: Duration,
    /// The input, as JSON.
    pub input: Value,
    /// The output, as JSON, when it succeeded.
    pub output: Option<Value>,
    /// The last error, when it failed.
    pub error: Option<AgentError>,
    /// Every attempt.
    pub attempts: Vec<AttemptRecord>,
    /// Model token usage.
    pub usage: Usage,
    /// On Temporal, the text its model streamed, when it streamed: a model step's is its output's
    /// text; an agent evaluated in one activity carries it in its result (so that a run's live
    /// events give the whole text once: see [`crate::events`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub streamed: Option<String>,
    /// On Temporal, the step's activity id in its run (what tells apart steps of one name that
    /// run at once, for the live events).
    #[serde(skip)]
    #[cfg_attr(not(feature = "temporal"), allow(dead_code))]
    pub(crate) activity_id: Option<String>,
}

impl StepRecord {
    /// A step of `agent` that started at `started` (from the run's start), nothing else known
    /// yet.
    #[cfg_attr(not(feature = "cli"), allow(dead_code))]
    pub(crate) fn new(agent: &str, started: Duration) -> StepRecord {
        StepRecord {
            agent: agent.to_owned(),
            started,
            duration: Duration::ZERO,
            input: Value::Null,
            output: None,
            error: None,
            attempts: Vec::new(),
            usage: Usage::default(),
            streamed: None,
            activity_id: None,
        }
    }

    /// The model that answered, for a model request of an agent that runs step by step (a step
    /// `<agent>.model`), as the provider named it (`gen_ai.response.model`), when it said. On
    /// Temporal the model is resolved by the worker that ran the step: its configuration
    /// (`Flock::builder().model(..)`, providers, keys) answers, not the client's.
    pub fn model(&self) -> Option<&str> {
        self.output
            .as_ref()?
            .get("response")?
            .get("model")?
            .as_str()
    }
}

/// One attempt of an agent call.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptRecord {
    /// The attempt number, from 1.
    pub attempt: u32,
    /// When it started, from the run's start.
    pub started: Duration,
    /// How long it ran.
    pub duration: Duration,
    /// Why it failed, if it did.
    pub error: Option<AgentError>,
}

/// Progress an agent reported.
#[derive(Debug, Clone, Serialize)]
pub struct ProgressEvent {
    /// The agent.
    pub agent: String,
    /// Its attempt.
    pub attempt: u32,
    /// When, from the run's start.
    pub at: Duration,
    /// What it reported.
    pub details: Value,
}

/// What just happened to an agent step, as it happens: the local executor's live feed
/// ([`Flock::step_events`](crate::Flock::step_events)). The events of one step, folded in order,
/// give the [`StepRecord`] the run record holds at the end (which the Temporal executor reads
/// from the workflow history instead).
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct StepEvent {
    /// The run the step belongs to (a child flow's steps carry the child's run id).
    #[serde(serialize_with = "serialize_str")]
    pub run_id: std::sync::Arc<str>,
    /// The step's number in its run, from 1, in the order the calls were made: every event of
    /// one step has it.
    pub step: u64,
    /// The agent.
    pub agent: &'static str,
    /// The attempt, from 1.
    pub attempt: u32,
    /// When, from the run's start.
    pub at: Duration,
    /// What happened.
    pub kind: StepEventKind,
}

/// What a [`StepEvent`] reports.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StepEventKind {
    /// Attempt [`attempt`](StepEvent::attempt) started.
    AttemptStarted,
    /// The attempt's model streamed this piece of its answer's text
    /// ([`stream_text`](crate::events::stream_text)).
    Text {
        /// The piece.
        text: String,
    },
    /// The attempt failed and the step is retried after `retry_in`.
    AttemptFailed {
        /// Why.
        error: AgentError,
        /// How long the attempt ran.
        duration: Duration,
        /// The delay before the next attempt.
        retry_in: Duration,
    },
    /// The step succeeded.
    Completed {
        /// How long the step took, retries included.
        duration: Duration,
        /// Model token usage.
        usage: Usage,
    },
    /// The step failed after its last attempt.
    Failed {
        /// The last attempt's error.
        error: AgentError,
        /// How long the step took, retries included.
        duration: Duration,
        /// Model token usage.
        usage: Usage,
    },
}

fn serialize_str<S: serde::Serializer>(text: &str, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(text)
}
