//! Runs as plain data, whichever executor runs them: what a run starts with ([`RunStart`]), the
//! rule for reusing a run id ([`IdReuse`]), how a run is described and found ([`RunInfo`],
//! [`FoundRun`]), and a result with its record ([`Recorded`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::Value;

use crate::error::Error;
use crate::record::RunRecord;
use crate::spec::FlowSpec;

/// Whether a run may take the id of an earlier, closed run (Temporal's workflow-id reuse policy;
/// the local executor applies the same rule to the runs of its `Flock`). A run whose id is still
/// running is refused either way. Temporal remembers closed runs for the namespace's retention
/// period; the local executor remembers the last 10,000 closed runs of a `Flock`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdReuse {
    /// Only when the earlier run did not complete (failed, cancelled, terminated, timed out): a
    /// retry under the same id. The default: re-running completed work under an id that says
    /// it was done would repeat its side effects silently.
    #[default]
    FailedOnly,
    /// Always: a new run under the same id.
    Allow,
    /// Never.
    Reject,
}

/// What a run starts with, at the JSON level: what the typed and the by-name calls of the
/// facade both hand an executor.
#[derive(Debug, Clone)]
pub(crate) struct RunStart {
    /// The flow (or hand-off chain).
    pub(crate) flow: &'static FlowSpec,
    /// The run id (on Temporal: the workflow id), shared: the local executor keys its table of
    /// runs with it, and the caller keeps it for its errors.
    pub(crate) run_id: Arc<str>,
    /// The input, checked against the payload limit.
    pub(crate) input: Value,
    /// Whether the id of an earlier, closed run may be taken.
    pub(crate) id_reuse: IdReuse,
    /// Keyword search attributes.
    pub(crate) attributes: BTreeMap<String, String>,
    /// A signal to deliver with the start (signal-with-start: a running run with this id is
    /// signalled instead), checked against what the flow declares.
    pub(crate) signal: Option<(&'static str, Value)>,
}

impl RunStart {
    /// A start of `flow` as run `run_id` on `input`, with the default id reuse rule.
    pub(crate) fn new(flow: &'static FlowSpec, run_id: impl Into<Arc<str>>, input: Value) -> Self {
        RunStart {
            flow,
            run_id: run_id.into(),
            input,
            id_reuse: IdReuse::default(),
            attributes: BTreeMap::new(),
            signal: None,
        }
    }
}

/// A fresh run id for flow `name`: `<name>-<uuid v4>`, made in one allocation.
pub(crate) fn fresh_run_id(name: &str) -> Arc<str> {
    let mut uuid = uuid::Uuid::encode_buffer();
    let uuid = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut uuid);
    let mut buffer = [0u8; 160];
    let len = name.len() + 1 + uuid.len();
    if let Some(id) = buffer.get_mut(..len) {
        id[..name.len()].copy_from_slice(name.as_bytes());
        id[name.len()] = b'-';
        id[name.len() + 1..].copy_from_slice(uuid.as_bytes());
        if let Ok(id) = std::str::from_utf8(id) {
            return Arc::from(id);
        }
    }
    Arc::from(format!("{name}-{uuid}"))
}

/// A refused run id, the same on both executors: `state` is how the run with that id stands
/// (`is still running`, `completed`, …).
pub(crate) fn id_taken(run_id: &str, flow: &str, state: &str, policy: IdReuse) -> Error {
    let hint = match state {
        "is still running" => {
            "wait for it (`flock.flow_handle(..)`) or choose another id".to_owned()
        }
        _ => format!(
            "the run's id reuse policy is {policy:?}; to run again under this id use `.id_reuse(IdReuse::Allow)`"
        ),
    };
    Error::IdTaken {
        flow: flow.to_owned(),
        run_id: run_id.to_owned(),
        message: format!(
            "cannot start `{flow}` as run `{run_id}`: a run with that id {state}; {hint}"
        ),
    }
}

/// A run's result together with its record.
#[derive(Debug)]
pub struct Recorded<T> {
    /// What the run returned.
    pub result: Result<T, Error>,
    /// What happened.
    pub record: RunRecord,
}

impl<T> Recorded<T> {
    /// A run that failed before it started (bad input, a refused id): its record says so.
    pub(crate) fn failed(
        run_id: &str,
        name: &str,
        started_at: SystemTime,
        started: std::time::Instant,
        error: Error,
    ) -> Self {
        Recorded {
            record: RunRecord::summary(
                run_id,
                name,
                started_at,
                started.elapsed(),
                Value::Null,
                &Err(error.clone()),
            ),
            result: Err(error),
        }
    }

    /// The same record with the result mapped.
    pub(crate) fn map<U>(self, f: impl FnOnce(T) -> Result<U, Error>) -> Recorded<U> {
        Recorded {
            result: self.result.and_then(f),
            record: self.record,
        }
    }
}

/// A run found by [`Flock::find_runs`](crate::Flock::find_runs).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FoundRun {
    /// Its run id: re-attach with [`Flock::flow_handle`](crate::Flock::flow_handle).
    pub run_id: String,
    /// Whether it is still running.
    pub running: bool,
}

impl FoundRun {
    pub(crate) fn new(run_id: String, running: bool) -> Self {
        FoundRun { run_id, running }
    }
}

/// A run as its executor describes it: what `status` and `list` show.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct RunInfo {
    /// The run id (the workflow id).
    pub run_id: String,
    /// The flow or hand-off chain (the workflow type).
    pub flow: String,
    /// `running`, `completed`, `failed`, `cancelled`, `terminated`, `continued_as_new`,
    /// `timed_out`, `paused` or `unknown`.
    pub status: String,
    /// When it started (RFC 3339, UTC).
    pub started_at: Option<String>,
    /// When it closed (RFC 3339, UTC), if it has.
    pub closed_at: Option<String>,
}

impl RunInfo {
    pub(crate) fn new(
        run_id: String,
        flow: String,
        status: &str,
        started_at: Option<SystemTime>,
        closed_at: Option<SystemTime>,
    ) -> Self {
        RunInfo {
            run_id,
            flow,
            status: status.to_owned(),
            started_at: started_at.map(rfc3339),
            closed_at: closed_at.map(rfc3339),
        }
    }
}

/// `time` as RFC 3339 in UTC, to the second (`2026-12-02T03:04:29Z`): what Temporal's visibility
/// queries take.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// assert_eq!(flock::rfc3339(UNIX_EPOCH + Duration::from_secs(1_796_180_669)), "2026-12-02T03:04:29Z");
/// ```
pub fn rfc3339(time: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(time).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
