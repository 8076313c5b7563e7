//! Executors implement the [runtime interface](crate::runtime): [`local`] in-process, the Temporal
//! executor (feature `temporal`) on a Temporal server. Both read the same [`Settings`].

pub(crate) mod local;
#[cfg(feature = "temporal")]
pub(crate) mod temporal;

use std::sync::Arc;
use std::time::Duration;

use crate::model::Models;
use crate::registry::Registry;
use crate::retry::RetryPolicy;
use crate::spec::{AgentSpec, PayloadLimit};

/// What every run of a `Flock` shares, whichever executor runs it.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) retry: RetryPolicy,
    pub(crate) start_to_close: Duration,
    pub(crate) models: Arc<Models>,
    /// What runs can call, by name.
    pub(crate) registry: Registry,
    /// The largest payload runs send: Temporal's limit, or with claim-check offload configured
    /// in the codec, the offload's `max_payload` (on both executors, so that development fails
    /// where production would).
    pub(crate) payload_limit: PayloadLimit,
}

impl Settings {
    /// The retry policy of one agent: the defaults with its `retry(..)` applied.
    pub(crate) fn retry_policy(&self, spec: &AgentSpec) -> RetryPolicy {
        self.retry.with_spec(&spec.retry)
    }
}
