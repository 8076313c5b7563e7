//! Executors run flows and agents: [`local`] in-process; the Temporal executor (separate issue)
//! on a Temporal server. Both share [`Runtime`]: the models and the default policies.

pub(crate) mod local;
pub(crate) mod temporal;

use std::sync::Arc;
use std::time::Duration;

use crate::agent::AgentSpec;
use crate::model::Models;
use crate::retry::RetryPolicy;

/// What every agent call of a `Flock` shares, whichever executor runs it.
#[derive(Debug)]
pub(crate) struct Runtime {
    pub(crate) retry: RetryPolicy,
    pub(crate) start_to_close: Duration,
    pub(crate) models: Arc<Models>,
}

impl Runtime {
    /// The retry policy of one agent: the defaults with its `retry(..)` applied.
    pub(crate) fn retry_policy(&self, spec: &AgentSpec) -> RetryPolicy {
        self.retry.with_spec(&spec.retry)
    }
}

/// The message of a caught panic.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "<non-string panic payload>".to_owned()
    }
}
