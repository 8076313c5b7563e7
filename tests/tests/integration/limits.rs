//! Limits ([`flock::limit`]) on both executors: an agent's `max_concurrent` counted inside the
//! agent, a provider's rate and concurrency counted by the model stand-in, and limits that could
//! never let a call run refused at build.

use std::future::IntoFuture;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use flock::model::{OpenAi, OpenAiConfig};
use flock::prelude::*;
use flock::{FlockBuilder, Limit, Pollers, WorkerLimits};

use super::model::server::{FakeOpenAi, Reply, answer};
use super::temporal::{config, on_test_server};

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Slot {
    pub n: u32,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Count {
    pub n: u32,
}

/// Calls of `three_at_once` inside it now, and the most at once.
static NOW: AtomicU32 = AtomicU32::new(0);
static PEAK: AtomicU32 = AtomicU32::new(0);

/// Holds its slot for 40 ms, counting the calls inside at once.
#[agent(max_concurrent = 3)]
async fn three_at_once(input: Slot) -> Slot {
    let now = NOW.fetch_add(1, Ordering::SeqCst) + 1;
    PEAK.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(40)).await;
    NOW.fetch_sub(1, Ordering::SeqCst);
    input
}

/// `n` calls of `three_at_once`, all issued at once.
#[flow]
async fn fan_out_three(ctx: &FlowContext, input: Count) -> Result<Count, FlowError> {
    let calls = (0..input.n).map(|n| ctx.call(three_at_once, Slot { n }));
    let done = flock::try_join_all(calls).await?;
    Ok(Count {
        n: done.len() as u32,
    })
}

/// Summarize slot `n`.
#[agent]
async fn rated_summary(input: Slot) -> Slot;

/// `n` calls of `rated_summary`, all issued at once.
#[flow]
async fn fan_out_rated(ctx: &FlowContext, input: Count) -> Result<Count, FlowError> {
    let calls = (0..input.n).map(|n| ctx.call(rated_summary, Slot { n }));
    let done = flock::try_join_all(calls).await?;
    Ok(Count {
        n: done.len() as u32,
    })
}

/// A local `Flock` and one on the test server with its worker on `queue`.
async fn both(queue: &str, builder: impl Fn() -> FlockBuilder) -> [(&'static str, Flock); 2] {
    let local = builder().build().await.expect("a local Flock");
    let temporal = on_test_server(builder(), queue)
        .build()
        .await
        .expect("a Flock on the test dev server");
    [("local", local), ("temporal", temporal)]
}

/// 20 calls issued at once to an agent with `max_concurrent = 3`: never more than 3 inside it
/// at once, and 3 reached (the calls did run side by side), on both executors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agents_max_concurrent_holds_on_both_executors() {
    for (executor, flock) in both("limits-concurrency", Flock::builder).await {
        NOW.store(0, Ordering::SeqCst);
        PEAK.store(0, Ordering::SeqCst);
        let done = tokio::time::timeout(
            Duration::from_secs(60),
            flock.run_flow(fan_out_three, Count { n: 20 }).into_future(),
        )
        .await
        .unwrap_or_else(|_| panic!("{executor}: the fan-out hung"))
        .unwrap_or_else(|e| panic!("{executor}: {e}"));
        assert_eq!(done.n, 20, "{executor}");
        assert_eq!(
            PEAK.load(Ordering::SeqCst),
            3,
            "{executor}: the most calls inside the agent at once"
        );
    }
}

/// The most requests that arrived within any `window`.
fn most_within(mut arrivals: Vec<std::time::Instant>, window: Duration) -> usize {
    arrivals.sort();
    (0..arrivals.len())
        .map(|i| {
            arrivals[i..]
                .iter()
                .take_while(|at| at.duration_since(arrivals[i]) < window)
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// Many declarative calls issued at once, under a provider limit of 4 at once and 100 a second:
/// the stand-in never sees more than 4 requests at once nor more than 100 in a second (measured
/// over 950 ms windows: arrival times carry a few ms of scheduling jitter), on both executors.
/// Without the limit every request would arrive within the first second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_providers_rate_and_concurrency_hold_on_both_executors() {
    const RATE: f64 = 100.0;
    for (executor, calls) in [("local", 500u32), ("temporal", 200)] {
        let replies = (0..calls)
            .map(|_| {
                Reply::After(
                    Duration::from_millis(20),
                    Box::new(answer(r#"{"n": 7}"#, 10, 2)),
                )
            })
            .collect();
        let server = FakeOpenAi::start(replies).await;
        let builder = Flock::builder()
            .provider(OpenAi::new(OpenAiConfig {
                api_key: Some("sk-limits".into()),
                base_url: Some(server.base_url()),
                timeout: Duration::from_secs(10),
                ..OpenAiConfig::default()
            }))
            .model("openai/gpt-4o-mini")
            .model_limit("openai", Limit::new().max_concurrent(4).per_second(RATE));
        let flock = if executor == "local" {
            builder.build().await.unwrap()
        } else {
            on_test_server(builder, "limits-rate")
                .build()
                .await
                .unwrap()
        };
        let started = std::time::Instant::now();
        let done = tokio::time::timeout(
            Duration::from_secs(90),
            flock
                .run_flow(fan_out_rated, Count { n: calls })
                .into_future(),
        )
        .await
        .unwrap_or_else(|_| panic!("{executor}: the fan-out hung"))
        .unwrap_or_else(|e| panic!("{executor}: {e}"));
        let took = started.elapsed();
        assert_eq!(done.n, calls, "{executor}");
        let arrivals: Vec<_> = server.received().iter().map(|r| r.at).collect();
        assert_eq!(
            arrivals.len(),
            calls as usize,
            "{executor}: one request per call"
        );
        let most = most_within(arrivals, Duration::from_millis(950));
        assert!(
            most <= RATE as usize,
            "{executor}: {most} requests within 950 ms under a limit of {RATE}/s"
        );
        assert!(
            server.peak_in_flight() <= 4,
            "{executor}: {} requests at once under a limit of 4",
            server.peak_in_flight()
        );
        // evenly spaced: the last starts (calls - 1) / RATE after the first
        let least = Duration::from_secs_f64(f64::from(calls - 1) / RATE);
        assert!(took >= least, "{executor}: {calls} calls took {took:?}");
    }
}

/// Limits that could never let a call run are refused by `build`, naming the limit, on both
/// executors; so is a task-queue rate of 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_that_could_never_run_a_call_fail_the_build() {
    for (limit, problem) in [
        (
            Limit::new().max_concurrent(0),
            "the limit of model `openai`: `max_concurrent` must be at least 1",
        ),
        (
            Limit::new().per_second(-3.0),
            "the limit of model `openai`: `per_second` must be a number above 0",
        ),
        (
            Limit::new().per_second(f64::NAN),
            "the limit of model `openai`: `per_second` must be a number above 0",
        ),
    ] {
        for local in [true, false] {
            let error = Flock::builder()
                .model_limit("openai", limit)
                .local_debug(local)
                .queue_served_elsewhere(super::conformance::POOL_QUEUE)
                .temporal(config("limits-bad"))
                .build()
                .await
                .err()
                .unwrap_or_else(|| panic!("{limit:?} was accepted (local: {local})"));
            assert!(
                error.to_string().contains(problem),
                "local: {local}: {error}"
            );
        }
    }
    let error = on_test_server(Flock::builder(), "limits-bad")
        .worker_limits(WorkerLimits {
            queue_activities_per_second: Some(0.0),
            ..Default::default()
        })
        .build()
        .await
        .expect_err("a task-queue rate of 0 was accepted");
    assert!(
        error
            .to_string()
            .contains("worker limit `queue_activities_per_second`: must be a number above 0"),
        "{error}"
    );
    // pollers a worker could not take work with, refused at build() on both executors (the
    // local one has no pollers, but a Flock's settings are checked wherever it runs)
    for (pollers, cached, problem) in [
        (
            Pollers::Fixed(0),
            1000,
            "`pollers` is `Fixed(0)`: the worker would never take work",
        ),
        (
            Pollers::Fixed(1),
            1000,
            "`pollers` is `Fixed(1)` while the worker caches flows",
        ),
        (
            Pollers::Autoscaling {
                minimum: 0,
                maximum: 4,
                initial: 2,
            },
            1000,
            "`pollers` has `minimum: 0`",
        ),
        (
            Pollers::Autoscaling {
                minimum: 5,
                maximum: 4,
                initial: 4,
            },
            1000,
            "`pollers` has `maximum: 4` below `minimum: 5`",
        ),
        (
            Pollers::Autoscaling {
                minimum: 1,
                maximum: 4,
                initial: 9,
            },
            1000,
            "`pollers` has `initial: 9` outside `minimum..=maximum` (1..=4)",
        ),
    ] {
        for local in [true, false] {
            let error = on_test_server(Flock::builder(), "limits-bad")
                .local_debug(local)
                .worker_limits(WorkerLimits {
                    pollers,
                    max_cached_workflows: cached,
                    ..Default::default()
                })
                .build()
                .await
                .err()
                .unwrap_or_else(|| panic!("{pollers:?} was accepted (local: {local})"));
            assert!(
                error
                    .to_string()
                    .contains(&format!("worker limit {problem}")),
                "local: {local}: {error}"
            );
        }
    }
    // one poll is enough for a worker that caches no flows (no sticky queue)
    on_test_server(Flock::builder(), "limits-bad")
        .worker_limits(WorkerLimits {
            pollers: Pollers::Fixed(1),
            max_cached_workflows: 0,
            ..Default::default()
        })
        .build()
        .await
        .expect("one poll without a cache");
}
