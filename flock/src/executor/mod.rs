//! Executors implement the [runtime interface](crate::runtime): [`local`] in-process, the Temporal
//! executor (feature `temporal`) on a Temporal server. Both read the same [`Settings`].

pub(crate) mod local;
#[cfg(feature = "temporal")]
pub(crate) mod temporal;

use std::sync::Arc;
use std::time::Duration;

use crate::model::Models;
use crate::record::StepEvent;
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
    /// The live step events of local runs, once someone subscribed.
    pub(crate) step_events: StepFeed,
}

/// The local executor's step events: a broadcast channel made on the first subscription, so
/// that a run nobody watches pays one atomic load per event and builds no event.
#[derive(Debug, Default)]
pub(crate) struct StepFeed(std::sync::OnceLock<tokio::sync::broadcast::Sender<StepEvent>>);

impl StepFeed {
    /// How many events a subscriber may fall behind before it misses some (it is told).
    const CAPACITY: usize = 1024;

    pub(crate) fn subscribe(&self) -> tokio::sync::broadcast::Receiver<StepEvent> {
        self.0
            .get_or_init(|| tokio::sync::broadcast::channel(Self::CAPACITY).0)
            .subscribe()
    }

    /// Sends the event `event` makes, when someone listens.
    #[inline]
    pub(crate) fn emit(&self, event: impl FnOnce() -> StepEvent) {
        if let Some(sender) = self.0.get()
            && sender.receiver_count() > 0
        {
            let _ = sender.send(event());
        }
    }
}

impl Settings {
    /// The retry policy of one agent: the defaults with its `retry(..)` applied.
    pub(crate) fn retry_policy(&self, spec: &AgentSpec) -> RetryPolicy {
        self.retry.with_spec(&spec.retry)
    }
}
