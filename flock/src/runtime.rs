//! The runtime interface: what a running flow asks of the executor that runs it, at the JSON
//! level. Both executors implement [`FlowRuntime`]; [`FlowContext`](crate::FlowContext) is a thin
//! typed layer over it, and everything that must behave the same on both (serialization and its
//! errors, payload size checks, panic handling, RNG seeding, the determinism guard) is written
//! once above it, in [`flow`](crate::flow) and [`agent`](crate::agent).
//!
//! The interface names definitions by their static specs; an executor finds what to run by name
//! in its registry, so that an unregistered definition fails the same way on both executors.
//!
//! It is object-safe and grows by methods with defaults: messages (signals, queries, updates),
//! `patched` and continue-as-new come next, and an agent pool or a step-by-step agent loop is a
//! new implementation of the same trait.

use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use serde_json::Value;

use crate::error::FlowError;
use crate::spec::{AgentSpec, FlowSpec};

/// One durable agent call, at the JSON level.
#[derive(Debug)]
#[non_exhaustive]
pub struct AgentCall {
    /// The agent (its name finds it in the executor's registry).
    pub spec: &'static AgentSpec,
    /// Its input, already checked against the payload limit.
    pub input: Value,
}

/// One child-flow call, at the JSON level.
#[derive(Debug)]
#[non_exhaustive]
pub struct ChildCall {
    /// The child flow.
    pub spec: &'static FlowSpec,
    /// The child's run id (on Temporal: its workflow id).
    pub run_id: String,
    /// Its input, already checked against the payload limit.
    pub input: Value,
}

/// What a running flow asks of its executor. Implemented by the local executor (in-process) and
/// the Temporal executor (each call a command of the workflow); see the module docs.
///
/// Futures are `Send` so that flow bodies are (the local executor runs them as tokio tasks); the
/// Temporal implementation wraps its single-threaded workflow futures accordingly.
pub trait FlowRuntime: Send + Sync {
    /// Calls an agent with its retry policy and timeouts; gives its output JSON, or the error
    /// after the last attempt.
    fn call_agent(&self, call: AgentCall) -> BoxFuture<'_, Result<Value, FlowError>>;

    /// Runs a child flow to completion; gives its output JSON.
    fn call_flow(&self, call: ChildCall) -> BoxFuture<'_, Result<Value, FlowError>>;

    /// A durable timer. Fails with [`FlowError::Cancelled`] when the run is cancelled meanwhile.
    fn sleep(&self, duration: Duration) -> BoxFuture<'_, Result<(), FlowError>>;

    /// The run's current time (on Temporal: the workflow task's time, identical on replay).
    fn now(&self) -> SystemTime;

    /// A seed for the run's random streams: different for every run (also when a run id is
    /// reused), identical on replay.
    fn random_seed(&self) -> u64;

    /// Whether the code path behind patch `patch_id` is taken (Temporal's `patched`): new runs
    /// take it, runs started before it replay without it. Without versioning, always `true`.
    fn patched(&self, patch_id: &str) -> bool {
        let _ = patch_id;
        true
    }
}
