//! Agent pools across processes: a worker process for the flows and one per pool
//! (`tests/src/bin/pool_worker.rs`), on the test dev server. A flow whose agents span both pools
//! completes; with pool B's worker killed, pool A still serves and only B's agents wait, in the
//! queue's backlog, until a new worker for pool B joins; 40 runs in flight lose nothing when B's
//! worker is replaced; one process can serve both pools.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use flock::prelude::*;
use serde_json::{Value, json};
use temporalio_client::WorkflowStartOptions;
use temporalio_common::UntypedWorkflow;

use super::temporal::{client_only_flock, sdk_client, server};

/// A worker process serving `pool` (`flows`, `pool-a`, `pool-b`), flows on `queue`.
struct PoolWorker(Child);

impl PoolWorker {
    fn start(pool: &str, queue: &str) -> PoolWorker {
        let child = Command::new(env!("CARGO_BIN_EXE_pool_worker"))
            .env("TEMPORAL_ADDRESS", server())
            .env("FLOCK_TASK_QUEUE", queue)
            .env("FLOCK_POOL", pool)
            .stdout(Stdio::null())
            .spawn()
            .expect("the pool worker starts");
        PoolWorker(child)
    }

    /// SIGKILL: no draining, no goodbye.
    fn kill(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for PoolWorker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A workflow type by name, JSON in and out.
struct ByName(&'static str);

impl temporalio_common::WorkflowDefinition for ByName {
    type Input = Value;
    type Output = Value;

    fn name(&self) -> &str {
        self.0
    }
}

impl temporalio_common::HasWorkflowDefinition for ByName {
    type Run = ByName;
}

/// Starts flow `flow` (linked into the pool worker only) by name on `queue`.
async fn start(flow: &'static str, queue: &str, id: &str) {
    sdk_client()
        .await
        .start_workflow(
            ByName(flow),
            json!({ "text": id }),
            WorkflowStartOptions::new(queue.to_owned(), id.to_owned()).build(),
        )
        .await
        .unwrap_or_else(|e| panic!("cannot start {flow} as {id}: {e}"));
}

async fn result(flock: &Flock, id: &str, within: Duration) -> Option<Value> {
    tokio::time::timeout(within, flock.result_json(id))
        .await
        .ok()
        .map(|r| r.unwrap_or_else(|e| panic!("{id}: {e}")))
}

/// Whether run `id` has completed.
async fn running(id: &str) -> bool {
    let description = sdk_client()
        .await
        .get_workflow_handle::<UntypedWorkflow>(id.to_owned())
        .describe(Default::default())
        .await
        .expect("describe");
    description
        .raw_description
        .workflow_execution_info
        .is_some_and(|info| {
            info.status
            == temporalio_common::protos::temporal::api::enums::v1::WorkflowExecutionStatus::Running
                as i32
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_in_processes_of_their_own_stall_and_resume_alone_and_lose_nothing() {
    let queue = "pools-flows";
    let client = client_only_flock(queue).await;
    let _flows = PoolWorker::start("flows", queue);
    let pool_a = PoolWorker::start("pool-a", queue);
    let pool_b = PoolWorker::start("pool-b", queue);
    let a_pid = pool_a.0.id();

    // a flow whose agents span both pools completes, each agent in its pool's process
    let id = format!("pools-across-{}", super::support::unique());
    start("across_pools", queue, &id).await;
    let done = result(&client, &id, Duration::from_secs(60))
        .await
        .expect("the flow across both pools completes");
    let b_pid = pool_b.0.id();
    assert_eq!(
        done["text"],
        format!("{id} a@{a_pid} b@{b_pid}"),
        "each agent ran in its pool's process"
    );

    // pool B's worker dies: a new flow gets through pool A and waits for pool B ...
    pool_b.kill();
    let stalled = format!("pools-stalled-{}", super::support::unique());
    start("across_pools", queue, &stalled).await;
    // ... while pool A still serves everything that needs only A
    let only_a = format!("pools-only-a-{}", super::support::unique());
    start("pool_a_only", queue, &only_a).await;
    let a_done = result(&client, &only_a, Duration::from_secs(60))
        .await
        .expect("pool A serves with pool B down");
    assert_eq!(a_done["text"], format!("{only_a} a@{a_pid}"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        running(&stalled).await,
        "the flow needing pool B is still running"
    );
    let stats = client.queue_stats(Some("pools-b")).await.unwrap();
    assert!(stats.agents.backlog >= 1, "pool B's agent waits: {stats:?}");

    // a new worker for pool B joins: the stalled flow completes, nothing lost
    let new_b = PoolWorker::start("pool-b", queue);
    let new_b_pid = new_b.0.id();
    let done = result(&client, &stalled, Duration::from_secs(60))
        .await
        .expect("the stalled flow completes once pool B is back");
    assert_eq!(done["text"], format!("{stalled} a@{a_pid} b@{new_b_pid}"));

    // under load: 40 runs in flight when pool B's worker leaves and another joins; none is lost
    let ids: Vec<String> = (0..40)
        .map(|i| format!("pools-load-{i}-{}", super::support::unique()))
        .collect();
    for id in &ids {
        start("across_pools", queue, id).await;
    }
    new_b.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let newest_b = PoolWorker::start("pool-b", queue);
    let mut by_new_b = 0;
    for id in &ids {
        let done = result(&client, id, Duration::from_secs(90))
            .await
            .unwrap_or_else(|| panic!("{id} was lost when pool B's worker changed"));
        let text = done["text"].as_str().unwrap_or_default().to_owned();
        assert!(text.starts_with(&format!("{id} a@{a_pid} b@")), "{text}");
        by_new_b += usize::from(text.ends_with(&format!("b@{}", newest_b.0.id())));
    }
    assert!(
        by_new_b > 0,
        "the worker that joined served none of the runs"
    );

    // two pools in one process: both served by it
    pool_a.kill();
    newest_b.kill();
    let both = PoolWorker::start("both-pools", queue);
    let both_pid = both.0.id();
    let id = format!("pools-one-process-{}", super::support::unique());
    start("across_pools", queue, &id).await;
    let done = result(&client, &id, Duration::from_secs(60))
        .await
        .expect("one process serving both pools");
    assert_eq!(done["text"], format!("{id} a@{both_pid} b@{both_pid}"));
}

/// The SDK's `temporal_num_pollers` gauge for `poller_type` on `queue`, from a scrape.
fn pollers_in(scrape: &str, queue: &str, poller_type: &str) -> Option<u64> {
    let labels = format!(r#"poller_type="{poller_type}","#);
    let queue = format!(r#"task_queue="{queue}""#);
    scrape
        .lines()
        .find(|line| {
            line.starts_with("temporal_num_pollers{")
                && line.contains(&labels)
                && line.contains(&queue)
        })
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
}

/// A `flock_cli worker` on `queue` with `--pollers pollers` and metrics; 120 runs of `slow_flow`
/// started at once. Gives the most flow-task polls the worker held while working through them
/// (read from its Prometheus endpoint) and checks that every run completed.
async fn most_pollers_under_a_backlog(queue: &str, pollers: &str) -> u64 {
    let metrics = format!("127.0.0.1:{}", super::support::free_port());
    let worker =
        super::cli::Worker::start_with(queue, &["--pollers", pollers, "--metrics", &metrics]);
    let scrape = {
        let metrics = metrics.clone();
        move || super::cli::scrape(&metrics)
    };
    // the worker is polling once its gauge is there
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect(&metrics).is_err()
        || pollers_in(&scrape(), queue, "workflow_task").is_none()
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the worker never polled"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let client = client_only_flock(queue).await;
    let ids: Vec<String> = (0..120)
        .map(|i| format!("{queue}-{i}-{}", super::support::unique()))
        .collect();
    let starts = ids.iter().map(|id| async move {
        sdk_client()
            .await
            .start_workflow(
                ByName("slow_flow"),
                json!({ "count": 2, "ms": 200 }),
                WorkflowStartOptions::new(queue.to_owned(), id.clone()).build(),
            )
            .await
            .unwrap_or_else(|e| panic!("cannot start {id}: {e}"));
    });
    futures::future::join_all(starts).await;
    let mut most = 0;
    let mut pending = ids.iter();
    let mut next = pending.next();
    while let Some(id) = next {
        most = most.max(pollers_in(&scrape(), queue, "workflow_task").unwrap_or(0));
        // (a run that failed makes `result` panic, naming it)
        if let Some(done) = result(&client, id, Duration::from_millis(100)).await {
            assert_eq!(done, json!({ "done": 2 }), "{id}");
            next = pending.next();
        }
    }
    drop(worker);
    most
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_autoscaling_worker_adds_polls_under_a_backlog_and_a_fixed_one_keeps_its_number() {
    // autoscaling between 1 and 30, starting at 5: a backlog of 120 new runs draws more polls
    let most = most_pollers_under_a_backlog("pollers-auto", "1..30").await;
    assert!(
        (6..=30).contains(&most),
        "an autoscaling worker (1..30, from 5) held at most {most} flow-task polls under a backlog"
    );
    // a fixed number stays that number
    let most = most_pollers_under_a_backlog("pollers-fixed", "3").await;
    assert!(
        most <= 3,
        "a worker with 3 fixed polls held {most} flow-task polls"
    );
}
