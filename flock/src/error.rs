//! Errors: how an agent attempt fails ([`AgentError`]), how a flow fails ([`FlowError`]), and
//! what the caller of [`Flock`](crate::Flock) sees ([`Error`]).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The class of a failed agent attempt. Both executors decide retries from it alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorClass {
    /// The model or an API said "slow down": retried, no sooner than its `retry_after`.
    RateLimited,
    /// A temporary failure (network, 5xx, timeout): retried with the agent's backoff.
    Transient,
    /// An unrecoverable failure: never retried.
    Permanent,
    /// The input cannot be processed: never retried.
    InvalidInput,
    /// The model answered something that does not fit the output schema: retried.
    InvalidOutput,
}

impl ErrorClass {
    /// Every class, in declaration order.
    pub const ALL: [ErrorClass; 5] = [
        ErrorClass::RateLimited,
        ErrorClass::Transient,
        ErrorClass::Permanent,
        ErrorClass::InvalidInput,
        ErrorClass::InvalidOutput,
    ];

    /// The class's name as used in `retry(non_retryable = [..])` and as the Temporal failure type.
    pub const fn name(self) -> &'static str {
        match self {
            ErrorClass::RateLimited => "RateLimited",
            ErrorClass::Transient => "Transient",
            ErrorClass::Permanent => "Permanent",
            ErrorClass::InvalidInput => "InvalidInput",
            ErrorClass::InvalidOutput => "InvalidOutput",
        }
    }

    /// Looks a class up by [`name`](Self::name).
    pub fn from_name(name: &str) -> Option<ErrorClass> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }

    /// Whether the class is retried at all (before the agent's `non_retryable` list is applied).
    pub const fn is_retryable(self) -> bool {
        !matches!(self, ErrorClass::Permanent | ErrorClass::InvalidInput)
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why one attempt of an agent failed. The variant decides what happens next.
///
/// `?` on any ordinary error inside a code agent yields [`AgentError::Transient`]:
///
/// ```
/// use flock::AgentError;
///
/// fn parse(text: &str) -> Result<u32, AgentError> {
///     Ok(text.trim().parse::<u32>()?) // ParseIntError -> AgentError::Transient
/// }
/// assert!(matches!(parse("x"), Err(AgentError::Transient { .. })));
/// assert_eq!(parse(" 7 ").unwrap(), 7);
/// ```
///
/// `AgentError` deliberately does not implement [`std::error::Error`]: that is what lets `?`
/// convert every error type into it (as `anyhow::Error` does).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AgentError {
    /// Rate limited: the next attempt starts no sooner than `retry_after` (when known).
    RateLimited {
        /// The delay the service asked for.
        retry_after: Option<Duration>,
        /// What the service said.
        message: String,
    },
    /// A temporary failure: retried with backoff.
    Transient {
        /// What went wrong.
        message: String,
    },
    /// An unrecoverable failure: not retried.
    Permanent {
        /// What went wrong.
        message: String,
    },
    /// The input cannot be processed: not retried.
    InvalidInput {
        /// What is wrong with the input.
        message: String,
    },
    /// The model's answer does not fit the output schema (after repair re-asks): retried.
    InvalidOutput {
        /// Why the answer was rejected.
        message: String,
    },
}

impl AgentError {
    /// A rate-limit failure; the next attempt waits at least `retry_after`.
    pub fn rate_limited(
        retry_after: impl Into<Option<Duration>>,
        message: impl Into<String>,
    ) -> Self {
        AgentError::RateLimited {
            retry_after: retry_after.into(),
            message: message.into(),
        }
    }

    /// A temporary failure, retried with backoff.
    pub fn transient(message: impl Into<String>) -> Self {
        AgentError::Transient {
            message: message.into(),
        }
    }

    /// An unrecoverable failure, never retried.
    pub fn permanent(message: impl Into<String>) -> Self {
        AgentError::Permanent {
            message: message.into(),
        }
    }

    /// Input the agent cannot process, never retried.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        AgentError::InvalidInput {
            message: message.into(),
        }
    }

    /// A model answer that does not fit the output schema, retried.
    pub fn invalid_output(message: impl Into<String>) -> Self {
        AgentError::InvalidOutput {
            message: message.into(),
        }
    }

    /// The class of this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            AgentError::RateLimited { .. } => ErrorClass::RateLimited,
            AgentError::Transient { .. } => ErrorClass::Transient,
            AgentError::Permanent { .. } => ErrorClass::Permanent,
            AgentError::InvalidInput { .. } => ErrorClass::InvalidInput,
            AgentError::InvalidOutput { .. } => ErrorClass::InvalidOutput,
        }
    }

    /// The message, without the class.
    pub fn message(&self) -> &str {
        match self {
            AgentError::RateLimited { message, .. }
            | AgentError::Transient { message }
            | AgentError::Permanent { message }
            | AgentError::InvalidInput { message }
            | AgentError::InvalidOutput { message } => message,
        }
    }

    /// The delay a rate-limited error asks for.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            AgentError::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Rebuilds an error from its class and message (used when an error crosses a process
    /// boundary, e.g. a Temporal failure).
    pub fn from_class(
        class: ErrorClass,
        message: impl Into<String>,
        retry_after: Option<Duration>,
    ) -> Self {
        let message = message.into();
        match class {
            ErrorClass::RateLimited => AgentError::RateLimited {
                retry_after,
                message,
            },
            ErrorClass::Transient => AgentError::Transient { message },
            ErrorClass::Permanent => AgentError::Permanent { message },
            ErrorClass::InvalidInput => AgentError::InvalidInput { message },
            ErrorClass::InvalidOutput => AgentError::InvalidOutput { message },
        }
    }
}

impl fmt::Display for AgentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AgentError::RateLimited {
                retry_after: Some(after),
                message,
            } => write!(f, "rate limited (retry after {after:?}): {message}"),
            AgentError::RateLimited { message, .. } => write!(f, "rate limited: {message}"),
            AgentError::Transient { message } => write!(f, "transient error: {message}"),
            AgentError::Permanent { message } => write!(f, "permanent error: {message}"),
            AgentError::InvalidInput { message } => write!(f, "invalid input: {message}"),
            AgentError::InvalidOutput { message } => write!(f, "invalid output: {message}"),
        }
    }
}

impl<E> From<E> for AgentError
where
    E: std::error::Error + Send + Sync + 'static,
{
    fn from(error: E) -> Self {
        let mut message = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        AgentError::Transient { message }
    }
}

/// Why a flow failed. A flow returns `Err(FlowError)`; the run then fails (on Temporal: the
/// workflow fails, it never completes with an error payload).
///
/// `?` on an ordinary error inside a flow yields [`FlowError::Failed`] with its message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum FlowError {
    /// An agent failed for good: a non-retryable error, or its retries were exhausted.
    Agent {
        /// The agent's name.
        agent: String,
        /// How many attempts ran.
        attempts: u32,
        /// The last attempt's error.
        cause: AgentError,
    },
    /// A child flow failed.
    ChildFlow {
        /// The child flow's name.
        flow: String,
        /// The child's run id.
        run_id: String,
        /// Why it failed.
        cause: Box<FlowError>,
    },
    /// A value could not be (de)serialized on its way between steps.
    Serialization {
        /// Where: the agent or flow whose input or output it was.
        at: String,
        /// The serde error.
        message: String,
    },
    /// The run was cancelled.
    Cancelled {
        /// Who or what cancelled it, when known.
        message: String,
    },
    /// The flow itself decided to fail.
    Failed {
        /// Why.
        message: String,
    },
    /// The flow body panicked (a bug in the flow's code): the run fails, it is not retried.
    Panicked {
        /// The flow.
        flow: String,
        /// The panic message.
        message: String,
    },
    /// The flow body waited on something other than its `FlowContext` (see [`crate::FlowContext`]):
    /// non-deterministic on Temporal, so the run fails on both executors.
    NonDeterminism {
        /// The flow.
        flow: String,
        /// What happened and what to use instead.
        message: String,
    },
    /// The flow body gave [`FlowContext::patched`](crate::FlowContext::patched) (or
    /// `deprecate_patch`) a patch id Temporal cannot keep: empty, or over
    /// [`MAX_PATCH_ID_BYTES`](crate::flow::MAX_PATCH_ID_BYTES). A bug in the flow's code: the run
    /// fails on both executors.
    InvalidPatchId {
        /// The flow.
        flow: String,
        /// What is wrong with the id, and what to do.
        message: String,
    },
    /// A payload (an agent's or flow's input or output) is over the payload limit
    /// ([`MAX_PAYLOAD_BYTES`](crate::spec::MAX_PAYLOAD_BYTES)).
    PayloadTooLarge {
        /// The agent or flow whose payload it is.
        at: String,
        /// Which payload, its size and the limit.
        message: String,
    },
    /// The run called an agent or flow that the executor does not serve (not registered).
    NotRegistered {
        /// What was called.
        name: String,
        /// Where it was looked for.
        message: String,
    },
    /// A message (signal, query or update) was not accepted: undeclared, or its JSON does not
    /// fit its type.
    Message {
        /// The flow.
        flow: String,
        /// The message and what was wrong.
        message: String,
    },
    /// The run tree spent more on models than its [`Budget`](crate::Budget) allows
    /// ([`RunRequest::budget`](crate::RunRequest::budget)): the run fails, naming both.
    BudgetExceeded {
        /// The run's budget.
        budget: crate::usage::Budget,
        /// What the run tree had spent when it was stopped.
        spent: crate::usage::Usage,
    },
    /// Not a failure: the run continues as a new run of the same flow with this input (made by
    /// [`FlowContext::continue_as_new`](crate::FlowContext::continue_as_new); return it from the
    /// flow body).
    ContinueAsNew {
        /// The flow.
        flow: String,
        /// The next run's input.
        input: serde_json::Value,
    },
}

impl FlowError {
    /// A failure decided by the flow's own logic.
    pub fn msg(message: impl Into<String>) -> Self {
        FlowError::Failed {
            message: message.into(),
        }
    }

    /// Whether the run ended because it was cancelled (directly, or through a cancelled child flow
    /// or agent call).
    pub fn is_cancellation(&self) -> bool {
        match self {
            FlowError::Cancelled { .. } => true,
            FlowError::ChildFlow { cause, .. } => cause.is_cancellation(),
            _ => false,
        }
    }

    /// The failing agent's error, following child flows down to it.
    pub fn agent_error(&self) -> Option<(&str, u32, &AgentError)> {
        match self {
            FlowError::Agent {
                agent,
                attempts,
                cause,
            } => Some((agent, *attempts, cause)),
            FlowError::ChildFlow { cause, .. } => cause.agent_error(),
            _ => None,
        }
    }
}

impl fmt::Display for FlowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlowError::Agent {
                agent,
                attempts,
                cause,
            } => {
                let s = if *attempts == 1 { "" } else { "s" };
                write!(
                    f,
                    "agent `{agent}` failed after {attempts} attempt{s}: {cause}"
                )
            }
            FlowError::ChildFlow {
                flow,
                run_id,
                cause,
            } => write!(f, "child flow `{flow}` (run {run_id}) failed: {cause}"),
            FlowError::Serialization { at, message } => {
                write!(f, "could not (de)serialize the data of `{at}`: {message}")
            }
            FlowError::Cancelled { message } => write!(f, "cancelled: {message}"),
            FlowError::Failed { message } => f.write_str(message),
            FlowError::Panicked { flow, message } => {
                write!(f, "flow `{flow}` panicked: {message}")
            }
            FlowError::NonDeterminism { flow, message } => {
                write!(f, "flow `{flow}` is not deterministic: {message}")
            }
            FlowError::InvalidPatchId { flow, message } => write!(f, "flow `{flow}`: {message}"),
            FlowError::PayloadTooLarge { message, .. } => f.write_str(message),
            FlowError::NotRegistered { name, message } => {
                write!(f, "`{name}` is not registered: {message}")
            }
            FlowError::Message { message, .. } => f.write_str(message),
            FlowError::BudgetExceeded { budget, spent } => write!(
                f,
                "the run's budget is used up: its run tree spent {spent}, with a budget of {budget}"
            ),
            FlowError::ContinueAsNew { flow, .. } => {
                write!(f, "flow `{flow}` continues as a new run")
            }
        }
    }
}

impl<E> From<E> for FlowError
where
    E: std::error::Error + Send + Sync + 'static,
{
    fn from(error: E) -> Self {
        FlowError::Failed {
            message: error.to_string(),
        }
    }
}

/// What the caller of [`Flock`](crate::Flock) sees: a configuration problem, or a failed run.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Error {
    /// The `Flock` configuration is wrong (builder, model names, executor settings).
    Config(String),
    /// Two agents or two flows share a name, or a name is not registered.
    Registry(String),
    /// A run failed.
    Run {
        /// The flow (or hand-off chain) that failed.
        name: String,
        /// The run id (on Temporal: the workflow id).
        run_id: String,
        /// Why.
        cause: FlowError,
    },
    /// The executor itself failed (e.g. the Temporal server cannot be reached).
    Executor(String),
    /// Waiting for a run's result gave up (the server stayed unreachable): the run itself has not
    /// failed and may still complete.
    WaitGaveUp {
        /// The run waited for.
        run_id: String,
        /// Why the wait gave up.
        message: String,
    },
    /// The run ended (`status`: completed or failed), but this process cannot decode what it
    /// left (its result or its failure): it is encrypted with a key this process does not hold.
    /// The message names the key.
    Undecodable {
        /// The flow (or hand-off chain).
        name: String,
        /// The run id.
        run_id: String,
        /// How the run ended: `completed` or `failed`.
        status: String,
        /// What could not be decoded, and why.
        message: String,
    },
    /// What was asked for by name or id does not exist: a flow, an agent, a run.
    NotFound(String),
    /// Input given as JSON (by name, e.g. on the command line) does not fit the flow's input
    /// schema; the message names the JSON path and the type expected there.
    Input(String),
    /// A message (signal, query or update) to a run was not delivered or not answered: the flow
    /// does not declare it, its JSON does not fit, its validator or the flow rejected it, or the
    /// run ended before it answered. The run itself is unaffected.
    Message {
        /// The flow.
        flow: String,
        /// The run.
        run_id: String,
        /// The message and what was wrong.
        message: String,
    },
    /// The run has ended (completed, failed, was cancelled, terminated or timed out), and what
    /// was asked needs a running run: cancelling or terminating it, a signal, an update. Nothing
    /// was done, and trying again will not change that.
    RunEnded {
        /// The flow.
        flow: String,
        /// The run.
        run_id: String,
        /// How it ended: `completed`, `failed`, `cancelled`, `terminated`, `timed_out`,
        /// `continued_as_new` (`ended` when the executor does not know).
        status: String,
        /// What was asked and why it was not done.
        message: String,
    },
    /// A run could not start under its id: a run with that id is running, or has closed and the
    /// run's [`IdReuse`](crate::IdReuse) rule forbids taking its id.
    IdTaken {
        /// The flow (or hand-off chain).
        flow: String,
        /// The run id asked for.
        run_id: String,
        /// How the run with that id stands, and what to do.
        message: String,
    },
    /// What was asked for needs the Temporal executor (`local_debug(false)`): histories,
    /// replay, worker deployments, visibility queries, runs of another process.
    NeedsTemporal {
        /// What was asked for.
        what: String,
    },
    /// A handle of one flow was used on a run of another.
    WrongFlow {
        /// The run.
        run_id: String,
        /// The flow the handle is of.
        expected: String,
        /// The flow the run is of.
        actual: String,
    },
    /// A process that runs work was refused: definitions name task queues no worker serves, so
    /// their runs would wait forever.
    UnservedQueues {
        /// Each unserved queue, with the definitions on it.
        queues: Vec<(String, Vec<String>)>,
        /// The queue this process's worker serves.
        served: String,
    },
    /// The Temporal server cannot be reached at `address`.
    Unreachable {
        /// The address tried.
        address: String,
        /// Why, and how to start one.
        message: String,
    },
    /// No worker is serving the run's task queue, so nothing answers a query or accepts an
    /// update. The request is fine: it works once a worker serves that queue. (An update given up
    /// on this way was never accepted, but the server keeps it for a while: a worker that starts
    /// soon may still take it.)
    NoWorker {
        /// The flow.
        flow: String,
        /// The run.
        run_id: String,
        /// The task queue no worker polls.
        task_queue: String,
        /// What was asked and what is missing.
        message: String,
    },
}

impl Error {
    /// The failing agent's name, attempts and last error, when an agent made the run fail.
    pub fn agent_error(&self) -> Option<(&str, u32, &AgentError)> {
        match self {
            Error::Run { cause, .. } => cause.agent_error(),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(message) => write!(f, "flock configuration error: {message}"),
            Error::Registry(message) => write!(f, "flock registry error: {message}"),
            Error::Run {
                name,
                run_id,
                cause,
            } => write!(f, "run `{run_id}` of `{name}` failed: {cause}"),
            Error::Executor(message) => write!(f, "flock executor error: {message}"),
            Error::Undecodable {
                name,
                run_id,
                status,
                message,
            } => write!(
                f,
                "run `{run_id}` of `{name}` {status}, but this process cannot decode {message}"
            ),
            Error::NotFound(message) => f.write_str(message),
            Error::Input(message) => f.write_str(message),
            Error::WaitGaveUp { run_id, message } => {
                write!(f, "stopped waiting for run `{run_id}`: {message}")
            }
            Error::Message {
                flow,
                run_id,
                message,
            } => write!(f, "message to run `{run_id}` of `{flow}`: {message}"),
            Error::RunEnded { message, .. } | Error::NoWorker { message, .. } => {
                f.write_str(message)
            }
            Error::IdTaken { message, .. } => write!(f, "flock configuration error: {message}"),
            Error::NeedsTemporal { what } => write!(
                f,
                "flock configuration error: {what} needs the Temporal executor (`local_debug(false)`): local runs live in the process that started them"
            ),
            Error::WrongFlow {
                run_id,
                expected,
                actual,
            } => write!(
                f,
                "flock configuration error: run `{run_id}` is a run of `{actual}`, not of `{expected}`: re-attach with `flock.flow_handle({actual}, ..)`"
            ),
            Error::UnservedQueues { queues, served } => {
                let list = queues
                    .iter()
                    .map(|(queue, defs)| format!("task queue `{queue}`: {}", defs.join(", ")))
                    .collect::<Vec<_>>()
                    .join("; ");
                write!(
                    f,
                    "flock configuration error: no worker serves these task queues, so their runs would wait forever: {list}. This process's worker serves `{served}`; run a worker for the others (`TemporalExecutorConfig {{ task_queue, .. }}`) and declare them with `Flock::builder().queue_served_elsewhere(\"..\")`"
                )
            }
            Error::Unreachable { message, .. } => write!(f, "flock executor error: {message}"),
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_round_trip_by_name() {
        for class in ErrorClass::ALL {
            assert_eq!(ErrorClass::from_name(class.name()), Some(class));
        }
        assert_eq!(ErrorClass::from_name("transient"), None);
    }

    #[test]
    fn question_mark_on_io_error_is_transient_with_causes() {
        fn f() -> Result<(), AgentError> {
            Err(std::io::Error::other("disk on fire"))?;
            Ok(())
        }
        let err = f().unwrap_err();
        assert_eq!(err.class(), ErrorClass::Transient);
        assert!(err.message().contains("disk on fire"));
    }

    #[test]
    fn flow_error_names_agent_and_attempts() {
        let err = FlowError::Agent {
            agent: "summarize".into(),
            attempts: 3,
            cause: AgentError::transient("boom"),
        };
        assert_eq!(
            err.to_string(),
            "agent `summarize` failed after 3 attempts: transient error: boom"
        );
    }
}
