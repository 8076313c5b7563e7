//! Limits: how many calls run at once, and how many start per second.
//!
//! * **Per agent or tool**: `#[agent(max_concurrent = 4, per_second = 2.5)]`, and `#[tool(..)]`
//!   alike. An agent that runs step by step (declarative, with tools) passes its limits to its
//!   model requests (the `<agent>.model` steps); each tool's calls have the tool's own.
//! * **Per model or provider**: [`FlockBuilder::model_limit`](crate::FlockBuilder::model_limit)
//!   limits every request to a provider's models (`"openai"`) or to one model
//!   (`"openai/gpt-4o-mini"`), whichever agent sends it, so that 500 calls issued at once become a
//!   steady stream inside the provider's limits instead of 500 requests answered `429`.
//!
//! **Scope: one process.** A limit is enforced where the call runs — the local executor's
//! `Flock`, or each Temporal worker process on its own (two workers of an agent with
//! `max_concurrent = 4` run up to 8 calls). For a rate across all workers, which the Temporal
//! server enforces, give the agents a task queue of their own and set that queue's rate with
//! [`WorkerLimits::queue_activities_per_second`](crate::WorkerLimits::queue_activities_per_second).
//!
//! A call waiting for a slot is an attempt that has started: on Temporal its activity holds one of
//! the worker's slots (`WorkerLimits::max_concurrent_agents`), the attempt's start-to-close timeout
//! runs, and it heartbeats while it waits (a heartbeat timeout does not end it; a cancellation
//! does). Give a limited agent a timeout that covers the wait.
//!
//! The rate spaces starts evenly (a burst of one): `per_second = 10` starts a call every 100 ms,
//! so no second sees more than 10 starts, also right after an idle spell.
//!
//! ```
//! use flock::limit::Limit;
//!
//! let provider = Limit::new().max_concurrent(8).per_second(5.0);
//! assert!(provider.check().is_ok());
//! assert_eq!(
//!     Limit::new().max_concurrent(0).check().unwrap_err(),
//!     "`max_concurrent` must be at least 1 (a limit that allows no call at once could never run one)"
//! );
//! ```

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::{Quota, RateLimiter};

use crate::spec::AgentSpec;

/// How many calls run at once and how many start per second; unset parts do not limit.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[non_exhaustive]
pub struct Limit {
    /// At most this many at once.
    pub max_concurrent: Option<u32>,
    /// At most this many starts per second, evenly spaced.
    pub per_second: Option<f64>,
}

impl Limit {
    /// No limit yet.
    pub fn new() -> Self {
        Limit::default()
    }

    /// At most `n` calls at once (at least 1).
    pub fn max_concurrent(mut self, n: u32) -> Self {
        self.max_concurrent = Some(n);
        self
    }

    /// At most `rate` calls started per second (above 0; `0.5` is one every two seconds).
    pub fn per_second(mut self, rate: f64) -> Self {
        self.per_second = Some(rate);
        self
    }

    /// Whether the limit can be enforced: what is wrong with it otherwise.
    pub fn check(&self) -> Result<(), String> {
        if self.max_concurrent == Some(0) {
            return Err(
                "`max_concurrent` must be at least 1 (a limit that allows no call at once \
                        could never run one)"
                    .to_owned(),
            );
        }
        if let Some(rate) = self.per_second {
            spacing(rate).ok_or_else(|| {
                format!(
                    "`per_second` must be a number above 0 and at most 1000000000, not {rate} \
                     (`0.5` is one call every two seconds)"
                )
            })?;
        }
        Ok(())
    }

    fn is_set(&self) -> bool {
        self.max_concurrent.is_some() || self.per_second.is_some()
    }
}

/// The time between two starts at `rate` per second, when that is a usable duration.
fn spacing(rate: f64) -> Option<Duration> {
    if !(rate.is_finite() && rate > 0.0 && rate <= 1e9) {
        return None;
    }
    Duration::try_from_secs_f64(1.0 / rate)
        .ok()
        .filter(|d| !d.is_zero())
}

type Rate = RateLimiter<
    governor::state::NotKeyed,
    governor::state::InMemoryState,
    governor::clock::DefaultClock,
>;

/// One enforced [`Limit`]: a semaphore for the calls at once, a GCRA limiter with a burst of one
/// for the rate.
pub(crate) struct Limiter {
    slots: Option<tokio::sync::Semaphore>,
    rate: Option<Rate>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("slots", &self.slots.as_ref().map(|s| s.available_permits()))
            .field("rate", &self.rate.is_some())
            .finish()
    }
}

impl Limiter {
    /// The limiter of a checked limit.
    fn new(limit: Limit) -> Self {
        Limiter {
            slots: limit
                .max_concurrent
                .map(|n| tokio::sync::Semaphore::new(n as usize)),
            rate: limit.per_second.and_then(spacing).and_then(|every| {
                let quota = Quota::with_period(every)?.allow_burst(NonZeroU32::MIN);
                Some(RateLimiter::direct(quota))
            }),
        }
    }

    /// Waits for a slot (held until the permit is dropped), then for the rate.
    pub(crate) async fn admit(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        let permit = match &self.slots {
            // never closed
            Some(slots) => slots.acquire().await.ok(),
            None => None,
        };
        if let Some(rate) = &self.rate {
            rate.until_ready().await;
        }
        permit
    }
}

/// The limiters of the steps (agents, model requests, tool calls) of one process, by name: made
/// once when the `Flock` is built, for the steps that have limits.
#[derive(Debug, Default)]
pub(crate) struct StepLimits {
    steps: HashMap<&'static str, Limiter>,
}

impl StepLimits {
    /// The limiters of `specs`, or what is wrong with a limit of one of them.
    pub(crate) fn of<'a>(
        specs: impl IntoIterator<Item = &'a AgentSpec>,
    ) -> Result<Self, crate::Error> {
        let mut steps = HashMap::new();
        for spec in specs {
            if let Some(key) = spec.priority {
                let priority = crate::run::Priority {
                    key: Some(key),
                    ..Default::default()
                };
                priority.check().map_err(|problem| {
                    crate::Error::Config(format!("`{}` ({}): {problem}", spec.name, spec.location))
                })?;
            }
            let limit = spec_limit(spec);
            if !limit.is_set() {
                continue;
            }
            limit.check().map_err(|problem| {
                crate::Error::Config(format!("`{}` ({}): {problem}", spec.name, spec.location))
            })?;
            steps.insert(spec.name, Limiter::new(limit));
        }
        Ok(StepLimits { steps })
    }

    /// The limiter of step `spec`, when it has limits (a lookup only then).
    #[inline]
    pub(crate) fn get(&self, spec: &AgentSpec) -> Option<&Limiter> {
        if spec.max_concurrent.is_none() && spec.per_second.is_none() {
            return None;
        }
        self.steps.get(spec.name)
    }
}

fn spec_limit(spec: &AgentSpec) -> Limit {
    Limit {
        max_concurrent: spec.max_concurrent,
        per_second: spec.per_second,
    }
}

/// The limits of model requests, by model name (`"openai/gpt-4o-mini"`, or a registered
/// instance's name) or provider (`"openai"`).
#[derive(Debug, Default)]
pub(crate) struct ModelLimits {
    by_name: HashMap<String, Limiter>,
}

impl ModelLimits {
    /// Limits the requests to `name`, replacing its earlier limit.
    pub(crate) fn set(&mut self, name: String, limit: Limit) -> Result<(), String> {
        limit
            .check()
            .map_err(|problem| format!("the limit of model `{name}`: {problem}"))?;
        self.by_name.insert(name, Limiter::new(limit));
        Ok(())
    }

    /// Waits until a request to model `name` may start: its model's limit, then its provider's.
    /// The request holds the permits while it runs.
    pub(crate) async fn admit(&self, name: &str) -> [Option<tokio::sync::SemaphorePermit<'_>>; 2] {
        if self.by_name.is_empty() {
            return [None, None];
        }
        let model = match self.by_name.get(name) {
            Some(limiter) => limiter.admit().await,
            None => None,
        };
        let provider = match name
            .split_once('/')
            .and_then(|(provider, _)| self.by_name.get(provider))
        {
            Some(limiter) => limiter.admit().await,
            None => None,
        };
        [model, provider]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_that_cannot_be_enforced_are_named() {
        assert!(Limit::new().check().is_ok());
        assert!(Limit::new().per_second(0.001).check().is_ok());
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e10] {
            let error = Limit::new().per_second(bad).check().unwrap_err();
            assert!(
                error.starts_with("`per_second` must be a number above 0"),
                "{error}"
            );
        }
        let mut models = ModelLimits::default();
        assert_eq!(
            models
                .set("openai".into(), Limit::new().max_concurrent(0))
                .unwrap_err(),
            "the limit of model `openai`: `max_concurrent` must be at least 1 (a limit that allows \
             no call at once could never run one)"
        );
    }

    #[test]
    fn a_hand_written_spec_with_a_limit_of_0_is_refused_by_name() {
        let mut spec = AgentSpec::new("hand_made", crate::AgentKind::Code);
        spec.max_concurrent = Some(0);
        let error = StepLimits::of([&spec]).unwrap_err().to_string();
        assert!(
            error.contains("`hand_made` (): `max_concurrent` must be at least 1"),
            "{error}"
        );
        spec.max_concurrent = Some(2);
        let limits = StepLimits::of([&spec]).unwrap();
        assert!(limits.get(&spec).is_some());
        let unlimited = AgentSpec::new("free", crate::AgentKind::Code);
        assert!(limits.get(&unlimited).is_none());
    }

    #[tokio::test]
    async fn the_rate_spaces_starts_evenly() {
        let limiter = Limiter::new(Limit::new().per_second(50.0));
        let started = std::time::Instant::now();
        for _ in 0..6 {
            let _ = limiter.admit().await;
        }
        // the first at once, then one every 20 ms
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(95), "{took:?}");
    }

    #[tokio::test]
    async fn slots_are_held_until_the_permit_is_dropped() {
        let limiter = Limiter::new(Limit::new().max_concurrent(1));
        let first = limiter.admit().await;
        assert!(first.is_some());
        let second = tokio::time::timeout(Duration::from_millis(50), limiter.admit()).await;
        assert!(
            second.is_err(),
            "a second call got in while the first held the slot"
        );
        drop(first);
        let third = tokio::time::timeout(Duration::from_millis(50), limiter.admit()).await;
        assert!(third.is_ok());
    }
}
