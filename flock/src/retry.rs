//! Retry policies: what `retry(..)` on an agent says ([`RetrySpec`]), merged with the executor's
//! defaults into a [`RetryPolicy`] that both executors obey.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{AgentError, ErrorClass};

/// How often an agent is attempted, the first attempt included: `retry(attempts = 5)` or
/// `retry(attempts = unlimited)`.
///
/// There is no zero: Temporal reads a maximum of 0 attempts as "no limit", so a count of 0 would
/// silently mean the opposite of what it says. `#[agent(retry(attempts = 0))]` does not compile.
///
/// ```
/// use flock::retry::Attempts;
///
/// assert_eq!(Attempts::at_most(3).map(Attempts::maximum_attempts), Some(3));
/// assert_eq!(Attempts::at_most(0), None);
/// assert_eq!(Attempts::Unlimited.maximum_attempts(), 0);
/// assert_eq!(Attempts::from_maximum_attempts(0), Attempts::Unlimited);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Attempts {
    /// At most this many attempts.
    AtMost(NonZeroU32),
    /// Retried until it succeeds, fails with an error that is not retried, or a timeout
    /// (`schedule_to_close`, the flow's) ends it.
    Unlimited,
}

impl Attempts {
    /// At most `n` attempts; `None` for 0 (write [`Attempts::Unlimited`] for no limit).
    pub const fn at_most(n: u32) -> Option<Attempts> {
        match NonZeroU32::new(n) {
            Some(n) => Some(Attempts::AtMost(n)),
            None => None,
        }
    }

    /// As Temporal's `maximum_attempts` and [`RetryPolicy::max_attempts`] count: `0` for
    /// unlimited.
    pub const fn maximum_attempts(self) -> u32 {
        match self {
            Attempts::AtMost(n) => n.get(),
            Attempts::Unlimited => 0,
        }
    }

    /// From Temporal's `maximum_attempts` count, where `0` means unlimited.
    pub const fn from_maximum_attempts(n: u32) -> Attempts {
        match NonZeroU32::new(n) {
            Some(n) => Attempts::AtMost(n),
            None => Attempts::Unlimited,
        }
    }

    /// Whether attempt number `attempt` (1-based) is the last one allowed.
    pub const fn is_last(self, attempt: u32) -> bool {
        match self {
            Attempts::AtMost(n) => attempt >= n.get(),
            Attempts::Unlimited => false,
        }
    }
}

/// The `retry(..)` settings of one agent; `None` falls back to the executor's default.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetrySpec {
    /// Maximum number of attempts, the first included.
    pub attempts: Option<Attempts>,
    /// Delay before the first retry.
    pub initial_interval: Option<Duration>,
    /// Upper bound of the delay.
    pub max_interval: Option<Duration>,
    /// Factor the delay grows by after each retry.
    pub backoff: Option<f64>,
    /// Random spread of each delay, as a fraction (`0.2`: ±20%). Local executor only: Temporal
    /// applies its retry policy without jitter.
    pub jitter: Option<f64>,
    /// Error classes that are not retried for this agent (by [`ErrorClass::name`]).
    pub non_retryable: &'static [&'static str],
}

impl RetrySpec {
    /// Every field unset.
    pub const EMPTY: RetrySpec = RetrySpec {
        attempts: None,
        initial_interval: None,
        max_interval: None,
        backoff: None,
        jitter: None,
        non_retryable: &[],
    };
}

impl Default for RetrySpec {
    fn default() -> Self {
        Self::EMPTY
    }
}

/// A complete retry policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetryPolicy {
    /// Maximum number of attempts, the first included, counted as Temporal's `maximum_attempts`:
    /// `0` is unlimited (read it through [`RetryPolicy::attempts`]).
    pub max_attempts: u32,
    /// Delay before the first retry.
    pub initial_interval: Duration,
    /// Factor the delay grows by after each retry.
    pub backoff_coefficient: f64,
    /// Upper bound of the delay.
    pub max_interval: Duration,
    /// Random spread of each delay, as a fraction.
    pub jitter: f64,
    /// Error classes never retried, beyond `Permanent` and `InvalidInput`.
    pub non_retryable: Vec<ErrorClass>,
}

impl Default for RetryPolicy {
    /// Flock's defaults: 3 attempts, 5 s initial interval, coefficient 2, at most 60 s apart.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            initial_interval: Duration::from_secs(5),
            backoff_coefficient: 2.0,
            max_interval: Duration::from_secs(60),
            jitter: 0.0,
            non_retryable: Vec::new(),
        }
    }
}

impl RetryPolicy {
    /// How often an agent is attempted under this policy.
    pub const fn attempts(&self) -> Attempts {
        Attempts::from_maximum_attempts(self.max_attempts)
    }

    /// This policy with an agent's `retry(..)` settings applied on top.
    pub fn with_spec(&self, spec: &RetrySpec) -> RetryPolicy {
        RetryPolicy {
            max_attempts: spec
                .attempts
                .map_or(self.max_attempts, Attempts::maximum_attempts),
            initial_interval: spec.initial_interval.unwrap_or(self.initial_interval),
            backoff_coefficient: spec.backoff.unwrap_or(self.backoff_coefficient),
            max_interval: spec.max_interval.unwrap_or(self.max_interval),
            jitter: spec.jitter.unwrap_or(self.jitter),
            non_retryable: self
                .non_retryable
                .iter()
                .copied()
                .chain(
                    spec.non_retryable
                        .iter()
                        .filter_map(|n| ErrorClass::from_name(n)),
                )
                .collect(),
        }
    }

    /// Whether an error ends the agent's attempts: its class is never retried, or this was the
    /// last attempt.
    pub fn gives_up(&self, error: &AgentError, attempt: u32) -> bool {
        let class = error.class();
        !class.is_retryable()
            || self.non_retryable.contains(&class)
            || self.attempts().is_last(attempt)
    }

    /// The backoff delay after failed attempt number `attempt` (1-based), before jitter:
    /// `initial_interval * backoff_coefficient^(attempt - 1)`, capped at `max_interval`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(1024) as i32;
        let secs = self.initial_interval.as_secs_f64() * self.backoff_coefficient.powi(exponent);
        let capped = secs.min(
            self.max_interval
                .as_secs_f64()
                .max(self.initial_interval.as_secs_f64()),
        );
        Duration::try_from_secs_f64(capped).unwrap_or(self.max_interval)
    }

    /// The delay before the attempt that follows failed attempt `attempt`: the backoff, spread by
    /// the jitter (`unit` is a random number in `[0, 1)`), and never less than a rate-limited
    /// error's `retry_after`.
    pub fn delay(&self, attempt: u32, error: &AgentError, unit: f64) -> Duration {
        let base = self.backoff(attempt);
        let spread = if self.jitter > 0.0 {
            let factor = 1.0 + self.jitter * (2.0 * unit - 1.0);
            Duration::try_from_secs_f64(base.as_secs_f64() * factor.max(0.0)).unwrap_or(base)
        } else {
            base
        };
        match error.retry_after() {
            Some(after) => spread.max(after),
            None => spread,
        }
    }

    /// The attempts of one call under this policy, when they run in-process (the local
    /// executor; on Temporal the server applies the policy): see [`Retrying`].
    pub fn retrying(&self, deadline: Option<Instant>) -> Retrying<'_> {
        Retrying {
            policy: self,
            deadline,
            attempt: 0,
        }
    }
}

/// The attempts of one call, driven in-process: which attempt runs now, and after a failure
/// whether (and after what delay) the next one does. The policy's rules are applied here once;
/// the driver around it runs each attempt and sleeps the delays.
///
/// ```
/// use std::time::Duration;
/// use flock::{AgentError, RetryPolicy};
///
/// let policy = RetryPolicy { max_attempts: 2, initial_interval: Duration::from_millis(10), ..RetryPolicy::default() };
/// let mut attempts = policy.retrying(None);
/// assert_eq!(attempts.start(), 1);
/// assert_eq!(attempts.failed(&AgentError::transient("flaky"), 0.5), Some(Duration::from_millis(10)));
/// assert_eq!(attempts.start(), 2);
/// assert_eq!(attempts.failed(&AgentError::transient("flaky"), 0.5), None); // the last one
/// ```
#[derive(Debug)]
pub struct Retrying<'a> {
    policy: &'a RetryPolicy,
    deadline: Option<Instant>,
    attempt: u32,
}

impl Retrying<'_> {
    /// Starts the next attempt; gives its number, from 1.
    pub fn start(&mut self) -> u32 {
        self.attempt += 1;
        self.attempt
    }

    /// The attempt that ran last.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The current attempt failed with `error`: the delay before the next one (`unit`, a random
    /// number in `[0, 1)`, spreads it by the jitter), or `None` when there is none: the class is
    /// not retried, the attempts are used up, or the next attempt could not start before the
    /// deadline (`schedule_to_close`).
    pub fn failed(&self, error: &AgentError, unit: f64) -> Option<Duration> {
        if self.policy.gives_up(error, self.attempt) {
            return None;
        }
        let delay = self.policy.delay(self.attempt, error, unit);
        match self.deadline {
            Some(deadline) if Instant::now() + delay >= deadline => None,
            _ => Some(delay),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            initial_interval: Duration::from_millis(100),
            backoff_coefficient: 2.0,
            max_interval: Duration::from_millis(300),
            jitter: 0.0,
            non_retryable: vec![],
        }
    }

    #[test]
    fn backoff_grows_and_caps() {
        let p = policy();
        assert_eq!(p.backoff(1), Duration::from_millis(100));
        assert_eq!(p.backoff(2), Duration::from_millis(200));
        assert_eq!(p.backoff(3), Duration::from_millis(300));
        assert_eq!(p.backoff(40), Duration::from_millis(300));
    }

    #[test]
    fn rate_limited_waits_at_least_retry_after() {
        let p = policy();
        let e = AgentError::rate_limited(Duration::from_secs(2), "slow down");
        assert_eq!(p.delay(1, &e, 0.5), Duration::from_secs(2));
        let short = AgentError::rate_limited(Duration::from_millis(10), "slow down");
        assert_eq!(p.delay(1, &short, 0.5), Duration::from_millis(100));
    }

    #[test]
    fn jitter_spreads_within_bounds() {
        let p = RetryPolicy {
            jitter: 0.5,
            ..policy()
        };
        let e = AgentError::transient("x");
        assert_eq!(p.delay(1, &e, 0.0), Duration::from_millis(50));
        assert_eq!(p.delay(1, &e, 0.5), Duration::from_millis(100));
        assert!(p.delay(1, &e, 0.999) < Duration::from_millis(150));
    }

    #[test]
    fn classes_decide_retries() {
        let p = policy();
        assert!(p.gives_up(&AgentError::permanent("x"), 1));
        assert!(p.gives_up(&AgentError::invalid_input("x"), 1));
        assert!(!p.gives_up(&AgentError::transient("x"), 1));
        assert!(!p.gives_up(&AgentError::invalid_output("x"), 4));
        assert!(p.gives_up(&AgentError::transient("x"), 5));
        let spec = RetrySpec {
            non_retryable: &["InvalidOutput"],
            ..RetrySpec::EMPTY
        };
        assert!(
            p.with_spec(&spec)
                .gives_up(&AgentError::invalid_output("x"), 1)
        );
    }

    #[test]
    fn the_attempts_of_a_call_stop_at_the_deadline() {
        let p = policy();
        let soon = Instant::now() + Duration::from_millis(150);
        let mut attempts = p.retrying(Some(soon));
        assert_eq!(attempts.start(), 1);
        let transient = AgentError::transient("x");
        assert_eq!(
            attempts.failed(&transient, 0.5),
            Some(Duration::from_millis(100))
        );
        assert_eq!(attempts.start(), 2);
        // 200 ms more would pass the deadline
        assert_eq!(attempts.failed(&transient, 0.5), None);
        assert_eq!(attempts.attempt(), 2);
        assert_eq!(
            p.retrying(None).failed(&AgentError::permanent("x"), 0.5),
            None
        );
    }

    #[test]
    fn unlimited_attempts_never_give_up_on_retryable_errors() {
        let spec = RetrySpec {
            attempts: Some(Attempts::Unlimited),
            ..RetrySpec::EMPTY
        };
        let p = policy().with_spec(&spec);
        assert_eq!(p.attempts(), Attempts::Unlimited);
        // Temporal's `maximum_attempts`, which the Temporal executor passes on as it is
        assert_eq!(p.max_attempts, 0);
        assert!(!p.gives_up(&AgentError::transient("x"), 10_000));
        assert!(p.gives_up(&AgentError::permanent("x"), 1));
    }

    #[test]
    fn attempts_from_the_spec_override_the_default() {
        let spec = RetrySpec {
            attempts: Attempts::at_most(2),
            ..RetrySpec::EMPTY
        };
        let p = policy().with_spec(&spec);
        assert_eq!(p.max_attempts, 2);
        assert!(!p.gives_up(&AgentError::transient("x"), 1));
        assert!(p.gives_up(&AgentError::transient("x"), 2));
        assert_eq!(policy().with_spec(&RetrySpec::EMPTY).max_attempts, 5);
    }
}
