//! Durable fan-out (`ctx.map`, [`flock::map`]) on both executors: outputs in the items' order,
//! never more calls in flight than the concurrency, failures collected by index or failing fast,
//! long lists in batches of child flows whose histories stay small, bad settings named.

use std::future::IntoFuture;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use flock::prelude::*;
use temporalio_common::UntypedWorkflow;
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;

use super::temporal::{on_test_server, sdk_client};

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Number {
    pub n: u64,
    /// Which counters the call reports to (tests run side by side).
    pub counter: usize,
    /// How long the call takes at least, in ms.
    pub base_ms: u64,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Squared {
    pub square: u64,
}

/// Calls inside `square_slowly` now and at most, per counter.
static NOW: [AtomicU32; 4] = [const { AtomicU32::new(0) }; 4];
static PEAK: [AtomicU32; 4] = [const { AtomicU32::new(0) }; 4];

/// Squares `n` after a few ms that vary with `n` (so that calls finish out of order); fails, for
/// good, for the numbers that end in 13 (`n % 100 == 13`).
#[agent(retry(attempts = 1))]
async fn square_slowly(input: Number) -> Result<Squared, AgentError> {
    let counter = input.counter;
    let now = NOW[counter].fetch_add(1, Ordering::SeqCst) + 1;
    PEAK[counter].fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(input.base_ms + input.n * 7 % 11)).await;
    NOW[counter].fetch_sub(1, Ordering::SeqCst);
    if input.n % 100 == 13 {
        return Err(AgentError::permanent(format!("{} ends in 13", input.n)));
    }
    Ok(Squared {
        square: input.n * input.n,
    })
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct MapJob {
    pub count: u64,
    pub concurrency: usize,
    pub batch_size: usize,
    pub counter: usize,
    pub base_ms: u64,
    /// `outcomes()` (every item) or `.await` (the first failure fails the run).
    pub collect: bool,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Mapped {
    /// Each item's square, or `None` when it failed.
    pub squares: Vec<Option<u64>>,
    /// `(index, message)` of each failed item.
    pub failures: Vec<(usize, String)>,
}

/// `square_slowly` over `0..count`.
#[flow]
async fn map_squares(ctx: &FlowContext, input: MapJob) -> Result<Mapped, FlowError> {
    let items = (0..input.count).map(|n| Number {
        n,
        counter: input.counter,
        base_ms: input.base_ms,
    });
    let map = ctx
        .map(square_slowly, items)
        .concurrency(input.concurrency)
        .batch_size(input.batch_size);
    if !input.collect {
        let squares = map.await?;
        return Ok(Mapped {
            squares: squares.into_iter().map(|s| Some(s.square)).collect(),
            failures: Vec::new(),
        });
    }
    let mut mapped = Mapped {
        squares: Vec::new(),
        failures: Vec::new(),
    };
    for (i, outcome) in map.outcomes().await?.into_iter().enumerate() {
        match outcome {
            Ok(squared) => mapped.squares.push(Some(squared.square)),
            Err(error) => {
                mapped.squares.push(None);
                mapped.failures.push((i, error.to_string()));
            }
        }
    }
    Ok(mapped)
}

async fn both(queue: &str) -> [(&'static str, Flock); 2] {
    let local = Flock::builder().build().await.expect("a local Flock");
    let temporal = on_test_server(Flock::builder(), queue)
        .build()
        .await
        .expect("a Flock on the test dev server");
    [("local", local), ("temporal", temporal)]
}

async fn run(flock: &Flock, job: MapJob) -> Result<Mapped, flock::Error> {
    tokio::time::timeout(
        Duration::from_secs(240),
        flock.run_flow(map_squares, job).into_future(),
    )
    .await
    .expect("the map hung")
}

fn expected(count: u64) -> Vec<Option<u64>> {
    (0..count)
        .map(|n| (n % 100 != 13).then_some(n * n))
        .collect()
}

/// 150 items, two failing (13 and 113), at most 5 in flight:
/// in one run, and in batches of 40 (four child flows). Every output in its place, every
/// failure named by index and agent, never more than 5 calls inside the agent and 5 reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_map_keeps_order_and_concurrency_and_collects_failures_on_both_executors() {
    for (executor, flock) in both("map-order").await {
        for batch_size in [1000, 40] {
            NOW[0].store(0, Ordering::SeqCst);
            PEAK[0].store(0, Ordering::SeqCst);
            let job = MapJob {
                count: 150,
                concurrency: 5,
                batch_size,
                counter: 0,
                // long enough that 5 calls are in flight at once on Temporal too
                base_ms: 40,
                collect: true,
            };
            let mapped = run(&flock, job)
                .await
                .unwrap_or_else(|e| panic!("{executor}, batches of {batch_size}: {e}"));
            assert_eq!(mapped.squares, expected(150), "{executor}, {batch_size}");
            let failed: Vec<usize> = mapped.failures.iter().map(|(i, _)| *i).collect();
            assert_eq!(failed, [13, 113], "{executor}, {batch_size}");
            for (i, message) in &mapped.failures {
                assert!(
                    message.contains("square_slowly")
                        && message.contains(&format!("{i} ends in 13")),
                    "{executor}, {batch_size}: {message}"
                );
            }
            assert_eq!(
                PEAK[0].load(Ordering::SeqCst),
                5,
                "{executor}, batches of {batch_size}: the most calls in flight"
            );
        }
    }
}

/// Failing fast (`.await`): the run fails with the failing item's agent error; items after the
/// failure's slot are not all called.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_map_awaited_fails_with_the_first_failure_on_both_executors() {
    for (executor, flock) in both("map-fail-fast").await {
        for batch_size in [1000, 10] {
            let job = MapJob {
                count: 60,
                concurrency: 2,
                batch_size,
                counter: 1,
                base_ms: 0,
                collect: false,
            };
            let error = run(&flock, job)
                .await
                .err()
                .unwrap_or_else(|| panic!("{executor}: a failing item did not fail the map"));
            let text = error.to_string();
            assert!(
                text.contains("square_slowly") && text.contains("13 ends in 13"),
                "{executor}, batches of {batch_size}: {text}"
            );
        }
        // without a failing item, `.await` gives every output in order
        let job = MapJob {
            count: 12,
            concurrency: 3,
            batch_size: 5,
            counter: 1,
            base_ms: 0,
            collect: false,
        };
        let mapped = run(&flock, job).await.unwrap();
        assert_eq!(mapped.squares, expected(12), "{executor}");
    }
}

/// A concurrency or batch size of 0 fails the run, naming the agent and the setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_map_with_a_setting_of_0_fails_naming_it_on_both_executors() {
    for (executor, flock) in both("map-bad").await {
        for (concurrency, batch_size, setting) in
            [(0, 10, "concurrency(0)"), (2, 0, "batch_size(0)")]
        {
            let job = MapJob {
                count: 3,
                concurrency,
                batch_size,
                counter: 2,
                base_ms: 0,
                collect: true,
            };
            let error = run(&flock, job)
                .await
                .expect_err("a setting of 0 was accepted");
            assert!(
                error
                    .to_string()
                    .contains(&format!("`ctx.map(square_slowly, ..).{setting}`")),
                "{executor}: {error}"
            );
        }
    }
}

/// The number of events in a run's history, and the ids of the child runs it started.
async fn events_and_children(run_id: &str) -> (usize, Vec<String>) {
    let events = sdk_client()
        .await
        .get_workflow_handle::<UntypedWorkflow>(run_id.to_owned())
        .fetch_history(temporalio_client::WorkflowFetchHistoryOptions::default())
        .into_events()
        .await
        .expect("history");
    let children = events
        .iter()
        .filter_map(|event| match &event.attributes {
            Some(Attributes::StartChildWorkflowExecutionInitiatedEventAttributes(a)) => {
                Some(a.workflow_id.clone())
            }
            _ => None,
        })
        .collect();
    (events.len(), children)
}

/// The acceptance case on Temporal: `FLOCK_MAP_ITEMS` items (10,000 unless set), 8 at a time,
/// the items ending in 13 failing, collected. Every output in its place, never more than 8 in
/// flight, and every history (the run's, each batch's) far inside Temporal's 51,200 events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_items_complete_on_temporal_with_bounded_histories() {
    let count: u64 = std::env::var("FLOCK_MAP_ITEMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let flock = on_test_server(Flock::builder(), "map-large")
        .build()
        .await
        .unwrap();
    NOW[3].store(0, Ordering::SeqCst);
    PEAK[3].store(0, Ordering::SeqCst);
    let started = std::time::Instant::now();
    let handle = flock
        .run_flow(
            map_squares,
            MapJob {
                count,
                concurrency: 8,
                batch_size: flock::map::DEFAULT_BATCH_SIZE,
                counter: 3,
                base_ms: 0,
                collect: true,
            },
        )
        .start()
        .await
        .unwrap();
    let run_id = handle.id().to_owned();
    let mapped = tokio::time::timeout(Duration::from_secs(1200), handle.result())
        .await
        .expect("the map hung")
        .unwrap();
    let took = started.elapsed();
    assert_eq!(mapped.squares, expected(count));
    assert_eq!(
        mapped.failures.len() as u64,
        count / 100 + u64::from(count % 100 > 13)
    );
    assert!(PEAK[3].load(Ordering::SeqCst) <= 8);
    let (events, children) = events_and_children(&run_id).await;
    let batches = count.div_ceil(flock::map::DEFAULT_BATCH_SIZE as u64) as usize;
    assert_eq!(children.len(), batches);
    let mut largest = 0;
    for child in &children {
        largest = largest.max(events_and_children(child).await.0);
    }
    eprintln!(
        "ctx.map over {count} items, concurrency 8: {took:?}; the run's history {events} events, \
         the largest batch's {largest}"
    );
    assert!(events < 1_000, "the mapping run's history: {events} events");
    assert!(largest < 10_000, "a batch's history: {largest} events");
}
