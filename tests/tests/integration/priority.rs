//! Priority and fairness ([`flock::Priority`]) on the dev server: with one slot and a backlog,
//! high-priority runs' agents are served before low-priority ones, and two tenants of weights
//! 3 and 1 are served about 3:1; values Temporal does not take are refused at the start.

use std::sync::Mutex;
use std::time::Duration;

use flock::prelude::*;
use flock::{Priority, WorkerLimits};

use super::temporal::{config, on_test_server};

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Label {
    pub test: String,
    pub label: String,
}

/// The labels of `note_arrival` calls, in the order they ran, per test.
static ARRIVALS: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

/// Notes its label, then holds the worker's one slot for a moment.
#[agent]
async fn note_arrival(input: Label) -> Label {
    arrive(input).await
}

async fn arrive(input: Label) -> Label {
    ARRIVALS
        .lock()
        .unwrap()
        .push((input.test.clone(), input.label.clone()));
    tokio::time::sleep(Duration::from_millis(20)).await;
    input
}

/// `note_arrival` with a priority of its own, whatever its run's.
#[agent(priority = 1)]
async fn note_urgent_arrival(input: Label) -> Label {
    arrive(input).await
}

/// One call of `note_arrival` (of `note_urgent_arrival` for labels starting with `urgent`).
#[flow]
async fn prioritized(ctx: &FlowContext, input: Label) -> Result<Label, FlowError> {
    if input.label.starts_with("urgent") {
        return ctx.call(note_urgent_arrival, input).await;
    }
    ctx.call(note_arrival, input).await
}

fn arrivals(test: &str) -> Vec<String> {
    ARRIVALS
        .lock()
        .unwrap()
        .iter()
        .filter(|(t, _)| t == test)
        .map(|(_, label)| label.clone())
        .collect()
}

/// Tests whose `hold_slot` call holds its worker's slot (`true`), or was told to let go.
static HOLDING: Mutex<Vec<(String, bool)>> = Mutex::new(Vec::new());

fn holding(test: &str) -> Option<bool> {
    HOLDING
        .lock()
        .unwrap()
        .iter()
        .find(|(t, _)| t == test)
        .map(|(_, held)| *held)
}

/// Holds the worker's one agent slot until the test lets go.
#[agent]
async fn hold_slot(input: Label) -> Label {
    HOLDING.lock().unwrap().push((input.test.clone(), true));
    while holding(&input.test) == Some(true) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    input
}

/// One call of `hold_slot`.
#[flow]
async fn slot_holder(ctx: &FlowContext, input: Label) -> Result<Label, FlowError> {
    ctx.call(hold_slot, input).await
}

/// Serves `queue` with a worker of one agent slot, takes that slot with `hold_slot`, starts
/// `runs` (label, priority) so that their agents wait in the queue's backlog, lets go of the
/// slot, and gives the order the agents ran in.
async fn backlog_then_serve(test: &str, queue: &str, runs: Vec<(String, Priority)>) -> Vec<String> {
    let flock = on_test_server(Flock::builder(), queue)
        .worker_limits(WorkerLimits {
            max_concurrent_agents: 1,
            ..Default::default()
        })
        .build()
        .await
        .unwrap();
    let label = |label: &str| Label {
        test: test.to_owned(),
        label: label.to_owned(),
    };
    let holder = flock
        .run_flow(slot_holder, label("holder"))
        .start()
        .await
        .unwrap();
    wait_until(|| holding(test) == Some(true)).await;
    let mut handles = Vec::new();
    for (name, priority) in &runs {
        let mut request = flock.run_flow(prioritized, label(name));
        if let Some(key) = priority.key {
            request = request.priority(key);
        }
        if let (Some(key), Some(weight)) = (&priority.fairness_key, priority.fairness_weight) {
            request = request.fairness(key.clone(), weight);
        }
        handles.push(request.start().await.unwrap());
    }
    // every agent call waits in the backlog before the slot frees
    for handle in &handles {
        let flock = &flock;
        let id = handle.id().to_owned();
        wait_for_async("an agent call in the backlog", || {
            let id = id.clone();
            async move {
                let history = flock.history_json(&id).await.unwrap_or_default();
                let history = String::from_utf8_lossy(&history);
                history.contains("ActivityTaskScheduledEventAttributes")
            }
        })
        .await;
    }
    // the backlog an autoscaler reads: every call waiting, the worker polling
    let stats = flock.queue_stats(Some(queue)).await.unwrap();
    assert_eq!(stats.queue, queue);
    assert!(
        stats.agents.backlog >= runs.len() as u64 - 1,
        "{} calls wait, the backlog says {stats:?}",
        runs.len()
    );
    // the worker polls (its activity pollers may not have polled at all: the one agent slot can
    // be taken by an eagerly dispatched activity before they start, so count both kinds)
    assert!(stats.flows.pollers + stats.agents.pollers >= 1, "{stats:?}");
    for entry in HOLDING.lock().unwrap().iter_mut() {
        if entry.0 == test {
            entry.1 = false;
        }
    }
    holder.result().await.unwrap();
    for handle in handles {
        tokio::time::timeout(Duration::from_secs(120), handle.result())
            .await
            .expect("a prioritized run hung")
            .unwrap();
    }
    arrivals(test)
}

async fn wait_until(done: impl Fn() -> bool) {
    wait_for_async("the holder to take the slot", || std::future::ready(done())).await;
}

async fn wait_for_async<F: Future<Output = bool>>(what: &str, done: impl Fn() -> F) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !done().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn key(key: u32) -> Priority {
    let mut priority = Priority::default();
    priority.key = Some(key);
    priority
}

/// 12 runs of priority 5 started before 12 of priority 1, then one slot: the priority-1 agents
/// run first (the server orders the backlog), though they were queued last. Among the
/// priority-5 runs, 4 call an agent with `#[agent(priority = 1)]`: it runs with the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_high_priority_work_runs_before_low_priority_work() {
    let mut runs: Vec<(String, Priority)> = (0..12)
        .map(|i| {
            let label = if i % 3 == 0 { "urgent" } else { "low" };
            (format!("{label}-{i}"), key(5))
        })
        .collect();
    runs.extend((0..12).map(|i| (format!("high-{i}"), key(1))));
    let order = backlog_then_serve("priority", "priority-order", runs).await;
    eprintln!("priority order: {order:?}");
    assert_eq!(order.len(), 24);
    // the last 8 to run: the low-priority agents only (a FIFO queue would run them first)
    assert!(
        order[16..].iter().all(|l| l.starts_with("low")),
        "high-priority agents ran late: {order:?}"
    );
}

/// Two tenants with weights 3 and 1, 32 backlogged runs each, one slot: of the first 32 agents
/// to run, tenant a's share is about 3/4.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlogged_tenants_are_served_by_weight() {
    let tenant = |name: &str, weight: f32| {
        let mut priority = Priority::default();
        priority.fairness_key = Some(name.to_owned());
        priority.fairness_weight = Some(weight);
        priority
    };
    // tenant b first: a FIFO queue would serve b's whole backlog before a's
    let mut runs: Vec<(String, Priority)> = (0..32)
        .map(|i| (format!("b-{i}"), tenant("tenant-b", 1.0)))
        .collect();
    runs.extend((0..32).map(|i| (format!("a-{i}"), tenant("tenant-a", 3.0))));
    let order = backlog_then_serve("fairness", "priority-fairness", runs).await;
    eprintln!("fairness order: {order:?}");
    let first_a = order[..32].iter().filter(|l| l.starts_with("a-")).count();
    assert!(
        (20..=28).contains(&first_a),
        "tenant a (weight 3) got {first_a} of the first 32: {order:?}"
    );
}

/// Values Temporal does not take fail the start, naming the value, on both executors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priorities_temporal_does_not_take_are_refused_at_the_start() {
    let local = Flock::builder().build().await.unwrap();
    let temporal = Flock::builder()
        .local_debug(false)
        .in_process_worker(false)
        .queue_served_elsewhere(super::conformance::POOL_QUEUE)
        .temporal(config("priority-bad"))
        .build()
        .await
        .unwrap();
    let label = || Label {
        test: "bad".into(),
        label: "x".into(),
    };
    for (executor, flock) in [("local", &local), ("temporal", &temporal)] {
        for (request, problem) in [
            (
                flock.run_flow(prioritized, label()).priority(0),
                "priority 0 is out of range: 1 (first) to 5 (last)",
            ),
            (
                flock.run_flow(prioritized, label()).priority(6),
                "priority 6 is out of range",
            ),
            (
                flock
                    .run_flow(prioritized, label())
                    .fairness("t".repeat(65), 1.0),
                "is 65 bytes long, over the 64 bytes Temporal takes",
            ),
            (
                flock.run_flow(prioritized, label()).fairness("", 1.0),
                "a fairness key must not be empty",
            ),
            (
                flock.run_flow(prioritized, label()).fairness("tenant", 0.0),
                "fairness weight 0 is out of range: 0.001 to 1000",
            ),
        ] {
            let error = request.start().await.expect_err("accepted");
            assert!(error.to_string().contains(problem), "{executor}: {error}");
        }
    }
    assert!(arrivals("bad").is_empty(), "a refused run ran");
    // the local executor has no task queues to read
    let error = local.queue_stats(None).await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("reading a task queue's backlog needs the Temporal executor"),
        "{error}"
    );
}
