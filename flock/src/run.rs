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

/// The most urgent priority key, and the least: Temporal's default levels (a server can be
/// configured with more; flock keeps to the default, which every server honours alike).
pub const PRIORITY_KEYS: std::ops::RangeInclusive<u32> = 1..=5;

/// The longest fairness key Temporal takes, in bytes.
pub const MAX_FAIRNESS_KEY_BYTES: usize = 64;

/// Where a run's tasks stand in the backlogs of their task queues: Temporal's Priority and
/// Fairness. Set per run ([`RunRequest::priority`](crate::RunRequest::priority),
/// [`fairness`](crate::RunRequest::fairness)); the run's agents and child flows inherit it, and
/// an agent's `#[agent(priority = N)]` overrides the key for its calls.
///
/// * `key`: 1 (first) to 5 (last); unset is the server's default, 3. When tasks wait in a
///   queue's backlog, those with a lower key are handed out first.
/// * `fairness_key` (a tenant, at most 64 bytes) and `fairness_weight` (0.001 to 1000, default
///   1): among tasks of one key, backlogged tenants are served in proportion to their weights,
///   so that one tenant's burst does not starve the others.
///
/// Both order *backlogs*: a queue whose workers keep up has nothing to order. The local
/// executor has no task queues: it checks the values and runs in call order.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Priority {
    /// 1 (first) to 5 (last).
    pub key: Option<u32>,
    /// The tenant (or class) whose share fairness balances.
    pub fairness_key: Option<String>,
    /// The tenant's weight.
    pub fairness_weight: Option<f32>,
}

impl Priority {
    /// What is wrong with these values, if anything.
    ///
    /// ```
    /// use flock::Priority;
    ///
    /// let mut priority = Priority::default();
    /// priority.key = Some(9);
    /// assert_eq!(
    ///     priority.check().unwrap_err(),
    ///     "priority 9 is out of range: 1 (first) to 5 (last), Temporal's default levels"
    /// );
    /// ```
    pub fn check(&self) -> Result<(), String> {
        if let Some(key) = self.key
            && !PRIORITY_KEYS.contains(&key)
        {
            return Err(format!(
                "priority {key} is out of range: 1 (first) to 5 (last), Temporal's default levels"
            ));
        }
        if let Some(key) = &self.fairness_key {
            if key.is_empty() {
                return Err("a fairness key must not be empty (name the tenant)".to_owned());
            }
            if key.len() > MAX_FAIRNESS_KEY_BYTES {
                let shown: String = key.chars().take(16).collect();
                return Err(format!(
                    "fairness key `{shown}…` is {} bytes long, over the {MAX_FAIRNESS_KEY_BYTES} bytes Temporal takes",
                    key.len()
                ));
            }
        }
        if let Some(weight) = self.fairness_weight
            && !(weight.is_finite() && (0.001..=1000.0).contains(&weight))
        {
            return Err(format!(
                "fairness weight {weight} is out of range: 0.001 to 1000 (Temporal's bounds)"
            ));
        }
        Ok(())
    }
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
    /// Priority and fairness of the run's tasks (checked; the local executor has no queues).
    #[cfg_attr(not(feature = "temporal"), allow(dead_code))]
    pub(crate) priority: Priority,
    /// What the run tree may spend on models.
    pub(crate) budget: Option<crate::usage::Budget>,
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
            priority: Priority::default(),
            budget: None,
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

/// A task queue's backlog, as Temporal reports it (`DescribeTaskQueue` with stats): what an
/// autoscaler reads (KEDA's Temporal scaler, `deploy/k8s/keda-scaledobject.yaml`). Read it with
/// [`Flock::queue_stats`](crate::Flock::queue_stats) or `flock queue NAME`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct QueueStats {
    /// The task queue.
    pub queue: String,
    /// Flow (workflow) tasks.
    pub flows: TaskStats,
    /// Agent (activity) tasks.
    pub agents: TaskStats,
}

/// The backlog of one kind of task of a queue.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct TaskStats {
    /// Tasks waiting for a worker (approximate).
    pub backlog: u64,
    /// How long the oldest waiting task has waited, in seconds (approximate).
    pub backlog_age_secs: f64,
    /// Tasks added per second, lately.
    pub add_rate: f32,
    /// Tasks handed to workers per second, lately.
    pub dispatch_rate: f32,
    /// Workers that polled lately.
    pub pollers: usize,
}
