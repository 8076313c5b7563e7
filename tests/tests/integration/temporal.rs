//! The Temporal executor against a real dev server that this test binary starts (once) on a free
//! loopback port. Needs the `temporal` CLI (`TEMPORAL_CLI` or `PATH`; `scripts/test` installs it);
//! without it these tests fail with an install hint, they are never skipped.

use std::future::IntoFuture;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::support::spawn_worker;
use super::support::wait_for;
use flock::FlockBuilder;
use flock::dev_server::{DevServer, DevServerOptions};
use flock::prelude::*;
use flock::{ErrorClass, WorkerLimits};
use flock_examples::pipeline::{handle_batch, handle_ticket, sample_batch};
use flock_examples::research::{Topic, research_agent, research_flow};
use flock_tests::durability::{self, Work, d_flow};
use serde_json::json;
use temporalio_client::{
    Client, ClientOptions, Connection, ConnectionOptions, Url, WorkflowFetchHistoryOptions,
};
use temporalio_common::UntypedWorkflow;
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;

// ---------------------------------------------------------------------------------------------
// One dev server per test binary.

static SERVER: OnceLock<Result<String, String>> = OnceLock::new();

/// The dev server's address, starting it on first use. It stops when this process ends.
pub(crate) fn server() -> String {
    SERVER
        .get_or_init(|| {
            std::thread::spawn(|| {
                let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
                let server = rt
                    .block_on(DevServer::start(DevServerOptions {
                        search_attributes: vec!["TicketId".into()],
                        // backlogs ordered by priority and fairness (priority.rs)
                        dynamic_config: DevServerOptions::PRIORITY_AND_FAIRNESS
                            .iter()
                            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                            .collect(),
                        ..DevServerOptions::default()
                    }))
                    .map_err(|e| {
                        format!("cannot start the Temporal dev server for the tests: {e}")
                    })?;
                let address = server.address();
                // Kept for the life of the process; its watchdog stops it when the process ends.
                std::mem::forget(server);
                Ok(address)
            })
            .join()
            .unwrap_or_else(|_| Err("the dev server thread panicked".into()))
        })
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

pub(super) fn config(task_queue: &str) -> TemporalExecutorConfig {
    TemporalExecutorConfig {
        server_url: server(),
        task_queue: task_queue.to_owned(),
        retry_interval: Duration::from_millis(100),
        ..Default::default()
    }
}

/// `builder` on the test dev server, its worker (if any) on `task_queue`.
pub(super) fn on_test_server(builder: FlockBuilder, task_queue: &str) -> FlockBuilder {
    builder
        .local_debug(false)
        .queue_served_elsewhere(super::conformance::POOL_QUEUE)
        .temporal(config(task_queue))
}

/// A local `Flock` and one on the test dev server (its worker on `task_queue`), each built by
/// `make` around a model stand-in of its own scripted with `replies`: `(executor, flock, model)`.
pub(super) async fn on_both(
    task_queue: &str,
    replies: Vec<super::model::server::Reply>,
    make: impl Fn(&super::model::server::FakeOpenAi) -> FlockBuilder,
) -> [(&'static str, Flock, super::model::server::FakeOpenAi); 2] {
    use super::model::server::FakeOpenAi;
    let local_model = FakeOpenAi::start(replies.clone()).await;
    let local = make(&local_model).build().await.expect("a local Flock");
    let temporal_model = FakeOpenAi::start(replies).await;
    let temporal = on_test_server(make(&temporal_model), task_queue)
        .build()
        .await
        .expect("a Flock on the test dev server");
    [
        ("local", local, local_model),
        ("temporal", temporal, temporal_model),
    ]
}

pub(super) async fn temporal_flock(task_queue: &str) -> Flock {
    on_test_server(Flock::builder().model("test"), task_queue)
        .build()
        .await
        .expect("a Flock on the test dev server")
}

/// A `Flock` that starts runs on Temporal and runs no worker of its own.
pub(super) async fn client_only_flock(task_queue: &str) -> Flock {
    Flock::builder()
        .model("test")
        .local_debug(false)
        .queue_served_elsewhere(super::conformance::POOL_QUEUE)
        .in_process_worker(false)
        .temporal(config(task_queue))
        .build()
        .await
        .expect("a client-only Flock on the test dev server")
}

pub(crate) async fn sdk_client() -> Client {
    let options =
        ConnectionOptions::new(Url::parse(&format!("http://{}", server())).unwrap()).build();
    let connection = Connection::connect(options).await.unwrap();
    Client::new(connection, ClientOptions::new("default").build()).unwrap()
}

/// The server's history of a run: workflow type, scheduled activity types, (activity, attempt)
/// of every started attempt, child workflow types.
#[derive(Debug, Default)]
pub(super) struct History {
    workflow_type: String,
    pub(super) activities: Vec<String>,
    /// (activity type, attempt) of each activity's last started attempt, in order.
    pub(super) attempts: Vec<(String, u32)>,
    children: Vec<String>,
}

pub(super) async fn history(run_id: &str) -> History {
    let client = sdk_client().await;
    let events = client
        .get_workflow_handle::<UntypedWorkflow>(run_id.to_owned())
        .fetch_history(WorkflowFetchHistoryOptions::default())
        .into_events()
        .await
        .expect("history");
    let mut history = History::default();
    let mut scheduled = std::collections::HashMap::new();
    for event in events {
        match event.attributes {
            Some(Attributes::WorkflowExecutionStartedEventAttributes(a)) => {
                history.workflow_type = a.workflow_type.map(|t| t.name).unwrap_or_default();
            }
            Some(Attributes::ActivityTaskScheduledEventAttributes(a)) => {
                let name = a.activity_type.map(|t| t.name).unwrap_or_default();
                scheduled.insert(event.event_id, name.clone());
                history.activities.push(name);
            }
            Some(Attributes::ActivityTaskStartedEventAttributes(a)) => {
                let name = scheduled
                    .get(&a.scheduled_event_id)
                    .cloned()
                    .unwrap_or_default();
                history.attempts.push((name, a.attempt as u32));
            }
            Some(Attributes::StartChildWorkflowExecutionInitiatedEventAttributes(a)) => {
                history
                    .children
                    .push(a.workflow_type.map(|t| t.name).unwrap_or_default());
            }
            _ => {}
        }
    }
    history
}

fn as_json<T: Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Conformance and names.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn examples_give_identical_results_on_both_executors() {
    let local = Flock::builder().model("test").build().await.unwrap();
    let temporal = temporal_flock("conformance").await;

    let batch_local = local.run_flow(handle_batch, sample_batch()).await.unwrap();
    let batch_temporal = temporal
        .run_flow(handle_batch, sample_batch())
        .await
        .unwrap();
    assert_eq!(as_json(&batch_local), as_json(&batch_temporal));
    assert_eq!(batch_local.resolutions.len(), 3);

    for ticket in sample_batch().tickets {
        let on_local = local.run_flow(handle_ticket, ticket.clone()).await.unwrap();
        let on_temporal = temporal.run_flow(handle_ticket, ticket).await.unwrap();
        assert_eq!(as_json(&on_local), as_json(&on_temporal));
    }

    let topic = || Topic {
        topic: "Temporal workflows".into(),
    };
    let chain_local = local.run(research_agent, topic()).recorded().await;
    let chain_temporal = temporal.run(research_agent, topic()).recorded().await;
    assert_eq!(
        as_json(&chain_local.result.unwrap()),
        as_json(&chain_temporal.result.unwrap())
    );
    // the records agree too: same agents, inputs and outputs (on Temporal, read from history)
    let steps = |record: &flock::RunRecord| {
        record
            .steps
            .iter()
            .map(|s| {
                (
                    s.agent.clone(),
                    s.input.clone(),
                    s.output.clone(),
                    s.attempts.len(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(steps(&chain_local.record), steps(&chain_temporal.record));
    assert_eq!(chain_local.record.usage(), chain_temporal.record.usage());
    assert_eq!(
        chain_temporal.record.usage().requests,
        2,
        "one model call per agent"
    );
    assert_eq!(chain_temporal.record.steps.len(), 2);
    let flow_local = local.run_flow(research_flow, topic()).await.unwrap();
    let flow_temporal = temporal.run_flow(research_flow, topic()).await.unwrap();
    assert_eq!(as_json(&flow_local), as_json(&flow_temporal));
    temporal.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_history_carries_flow_and_agent_names() {
    let flock = temporal_flock("names").await;
    flock
        .run(
            research_agent,
            Topic {
                topic: "names".into(),
            },
        )
        .id("names-chain")
        .await
        .unwrap();
    let chain = history("names-chain").await;
    assert_eq!(chain.workflow_type, "research_agent.chain");
    assert_eq!(chain.activities, ["research_agent", "summarize_agent"]);

    flock
        .run_flow(handle_batch, sample_batch())
        .id("names-batch")
        .await
        .unwrap();
    let batch = history("names-batch").await;
    assert_eq!(batch.workflow_type, "handle_batch");
    assert_eq!(batch.children, ["handle_ticket"; 3]);
    flock.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Retries.

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Ping {
    /// A number
    pub n: u32,
}

static T_FLAKY: AtomicU32 = AtomicU32::new(0);

#[agent(local = false, retry(attempts = 3, initial_interval = "100ms"))]
async fn t_flaky(ctx: &AgentContext, input: Ping) -> Result<Ping, AgentError> {
    T_FLAKY.fetch_add(1, Ordering::SeqCst);
    if ctx.attempt() < 3 {
        return Err(AgentError::transient(format!(
            "flaky attempt {}",
            ctx.attempt()
        )));
    }
    Ok(Ping { n: input.n + 1 })
}

static T_BROKEN: AtomicU32 = AtomicU32::new(0);

#[agent(local = false, retry(attempts = 5, initial_interval = "100ms"))]
async fn t_broken(input: Ping) -> Result<Ping, AgentError> {
    T_BROKEN.fetch_add(1, Ordering::SeqCst);
    let _ = input;
    Err(AgentError::permanent("the account is closed"))
}

static T_THROTTLED: Mutex<Vec<Instant>> = Mutex::new(Vec::new());

#[agent(local = false, retry(attempts = 3, initial_interval = "10ms"))]
async fn t_throttled(ctx: &AgentContext, input: Ping) -> Result<Ping, AgentError> {
    T_THROTTLED.lock().unwrap().push(Instant::now());
    if ctx.attempt() == 1 {
        return Err(AgentError::rate_limited(
            Duration::from_millis(1500),
            "429: slow down",
        ));
    }
    Ok(input)
}

#[agent(local = false, retry(attempts = 3, initial_interval = "50ms"))]
async fn t_down(ctx: &AgentContext, input: Ping) -> Result<Ping, AgentError> {
    let _ = input;
    Err(AgentError::transient(format!(
        "service down at attempt {}",
        ctx.attempt()
    )))
}

#[flow]
async fn t_calls(ctx: &FlowContext, ping: Ping) -> Result<Ping, FlowError> {
    match ping.n {
        0 => ctx.call(t_flaky, ping).await,
        1 => ctx.call(t_broken, ping).await,
        2 => ctx.call(t_throttled, ping).await,
        _ => ctx.call(t_down, ping).await,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_classes_on_temporal() {
    let flock = temporal_flock("retries").await;

    // transient twice, then success: 3 attempts
    let recorded = flock
        .run_flow(t_calls, Ping { n: 0 })
        .id("retry-transient")
        .recorded()
        .await;
    assert_eq!(recorded.result.unwrap(), Ping { n: 1 });
    let step = &recorded.record.steps[0];
    assert_eq!((step.agent.as_str(), step.attempts.len()), ("t_flaky", 3));
    assert_eq!(
        step.attempts[1]
            .error
            .as_ref()
            .map(|e| e.message().to_owned()),
        Some("flaky attempt 2".to_owned()),
        "the failure before the last attempt, from history"
    );
    assert_eq!(T_FLAKY.load(Ordering::SeqCst), 3);
    let attempts: Vec<u32> = history("retry-transient")
        .await
        .attempts
        .iter()
        .map(|(_, n)| *n)
        .collect();
    assert_eq!(attempts.last(), Some(&3), "{attempts:?}");

    // permanent: runs once, the flow fails naming the agent
    let error = flock
        .run_flow(t_calls, Ping { n: 1 })
        .id("retry-permanent")
        .await
        .unwrap_err();
    assert_eq!(T_BROKEN.load(Ordering::SeqCst), 1);
    let (agent, attempts, cause) = error.agent_error().expect("an agent failure");
    assert_eq!(
        (agent, attempts, cause.class()),
        ("t_broken", 1, ErrorClass::Permanent)
    );
    let text = error.to_string();
    assert!(
        text.contains("t_calls") && text.contains("the account is closed"),
        "{text}"
    );

    // rate limited: the next attempt starts no sooner than retry_after
    flock.run_flow(t_calls, Ping { n: 2 }).await.unwrap();
    let starts = T_THROTTLED.lock().unwrap().clone();
    assert_eq!(starts.len(), 2);
    let gap = starts[1] - starts[0];
    assert!(
        gap >= Duration::from_millis(1500),
        "second attempt after {gap:?}"
    );

    // attempts exhausted: the flow fails with the agent, the count and the last cause
    let error = flock.run_flow(t_calls, Ping { n: 3 }).await.unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("agent `t_down` failed after 3 attempts")
            && text.contains("service down at attempt 3"),
        "{text}"
    );
    flock.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Handles: start, re-attach by id, cancel.

#[flow]
async fn t_sleepy(ctx: &FlowContext, ping: Ping) -> Result<Ping, FlowError> {
    ctx.sleep(Duration::from_millis(u64::from(ping.n))).await?;
    Ok(Ping { n: ping.n + 1 })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handles_start_reattach_and_cancel() {
    let flock = temporal_flock("handles").await;
    let handle = flock
        .run_flow(t_sleepy, Ping { n: 300 })
        .id("sleepy-1")
        .start()
        .await
        .unwrap();
    assert_eq!(handle.id(), "sleepy-1");
    let client_only = client_only_flock("handles").await;
    let again = client_only.flow_handle(t_sleepy, "sleepy-1").unwrap();
    assert_eq!(again.result().await.unwrap(), Ping { n: 301 });

    let long = flock
        .run_flow(t_sleepy, Ping { n: 600_000 })
        .start()
        .await
        .unwrap();
    assert!(long.id().starts_with("t_sleepy-"));
    long.cancel().await.unwrap();
    let error = long.result().await.unwrap_err();
    assert!(error.to_string().contains("cancelled"), "{error}");
    flock.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Durability: a worker killed in the middle of a flow.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_survives_a_killed_worker() {
    let task_queue = "durability";
    let file: PathBuf =
        std::env::temp_dir().join(format!("flock-durability-{}", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let client = client_only_flock(task_queue).await;
    let mut first_worker = spawn_worker(task_queue, &file, &[]);
    let handle = client
        .run_flow(d_flow, Work { trail: vec![] })
        .start()
        .await
        .unwrap();
    wait_for("the second agent to start", Duration::from_secs(60), || {
        durability::count(&file, "second-start") == 1
    })
    .await;
    first_worker.kill().unwrap(); // SIGKILL
    first_worker.wait().unwrap();
    let mut second_worker = spawn_worker(task_queue, &file, &[]);
    let result = tokio::time::timeout(Duration::from_secs(90), handle.result()).await;
    second_worker.kill().unwrap();
    second_worker.wait().unwrap();
    let work = result
        .expect("the flow completes after the worker is replaced")
        .unwrap();
    assert_eq!(work.trail, ["first", "second", "third"]);
    assert_eq!(
        durability::count(&file, "first"),
        1,
        "the first agent ran exactly once"
    );
    assert_eq!(
        durability::count(&file, "second-start"),
        2,
        "the second agent ran again"
    );
    assert_eq!(durability::count(&file, "second-done"), 1);
    assert_eq!(durability::count(&file, "third"), 1);
    let _ = std::fs::remove_file(&file);
}

/// Ten cheap code agents with default settings, the worker SIGKILLed during the second: the
/// first, which had finished, does not run again (code agents are durable steps by default; as
/// local activities all ten would be recorded only when their workflow task completes, and the
/// first would run again on the next worker).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_code_agent_never_runs_again_after_its_worker_is_killed() {
    let task_queue = "durability-chain";
    let file: PathBuf =
        std::env::temp_dir().join(format!("flock-durability-chain-{}", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let client = client_only_flock(task_queue).await;
    let mut first_worker = spawn_worker(task_queue, &file, &[]);
    let handle = client
        .run_flow(durability::chain_ten, durability::Chain { done: vec![] })
        .start()
        .await
        .unwrap();
    wait_for("step 2 to start", Duration::from_secs(60), || {
        durability::count(&file, "step 2 start") == 1
    })
    .await;
    first_worker.kill().unwrap(); // SIGKILL
    first_worker.wait().unwrap();
    let mut second_worker = spawn_worker(task_queue, &file, &[]);
    let result = tokio::time::timeout(Duration::from_secs(90), handle.result()).await;
    second_worker.kill().unwrap();
    second_worker.wait().unwrap();
    let chain = result
        .expect("the flow completes after the worker is replaced")
        .unwrap();
    assert_eq!(chain.done, (1..=10).collect::<Vec<_>>());
    let ledger = std::fs::read_to_string(&file).unwrap_or_default();
    assert_eq!(
        durability::count(&file, "step 1"),
        1,
        "step 1 finished before the kill and must not run again; the ledger:\n{ledger}"
    );
    for step in 2..=10 {
        assert_eq!(
            durability::count(&file, &format!("step {step}")),
            1,
            "step {step} ran once; the ledger:\n{ledger}"
        );
    }
    let _ = std::fs::remove_file(&file);
}

// ---------------------------------------------------------------------------------------------
// Runs that cannot finish end, saying why.

/// `temporal workflow start --type no_such_flow` on a flock worker's queue: the worker ends the
/// run (it could never finish), naming the flow and the flows it serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_of_a_flow_the_worker_does_not_know_is_ended_naming_the_flows_it_knows() {
    let log = super::conformance::worker_log();
    let queue = "unknown-flow";
    let flock = temporal_flock(queue).await;
    let run_id = format!("no-such-flow-{}", std::process::id());
    sdk_client()
        .await
        .start_workflow(
            UntypedWorkflow::new("no_such_flow"),
            temporalio_common::data_converters::RawValue::new(vec![]),
            temporalio_client::WorkflowStartOptions::new(queue.to_owned(), run_id.clone()).build(),
        )
        .await
        .unwrap();
    let error = tokio::time::timeout(Duration::from_secs(30), flock.result_json(&run_id))
        .await
        .expect("the run ends; it does not stay Running")
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("terminated")
            && error.contains("no flow `no_such_flow`")
            && error.contains("t_sleepy"),
        "{error}"
    );
    let text = String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
    assert!(
        text.contains("ERROR") && text.contains("no flow `no_such_flow`"),
        "the worker logs it: {text}"
    );
    flock.shutdown().await.unwrap();
}

static ND_CALLS: AtomicU32 = AtomicU32::new(0);

/// Adds one.
#[agent]
async fn nd_a(n: u32) -> u32 {
    n + 1
}

/// Adds two.
#[agent]
async fn nd_b(n: u32) -> u32 {
    n + 2
}

/// Decides on a process-wide counter, outside its context (what a helper that reads the clock
/// amounts to): on replay it makes another call than its history recorded.
#[flow]
async fn nd_flow(ctx: &FlowContext, n: u32) -> Result<u32, FlowError> {
    let first = if ND_CALLS.fetch_add(1, Ordering::SeqCst).is_multiple_of(2) {
        ctx.call(nd_a, n).await?
    } else {
        ctx.call(nd_b, n).await?
    };
    ctx.call(nd_a, first).await
}

/// A flow whose code no longer makes its history's commands fails, naming the flow, instead of
/// retrying its workflow task forever (or completing by chance on another replay).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nondeterministic_flow_fails_instead_of_staying_running() {
    // no cached runs: every workflow task replays the run from its start
    let flock = Flock::builder()
        .model("test")
        .local_debug(false)
        .queue_served_elsewhere(super::conformance::POOL_QUEUE)
        .worker_limits(WorkerLimits {
            max_cached_workflows: 0,
            ..WorkerLimits::default()
        })
        .temporal(config("nondeterministic"))
        .build()
        .await
        .unwrap();
    let error = tokio::time::timeout(
        Duration::from_secs(30),
        flock.run_flow(nd_flow, 1).into_future(),
    )
    .await
    .expect("the run fails; it does not stay Running")
    .unwrap_err();
    assert!(
        matches!(
            &error,
            flock::Error::Run { cause: FlowError::NonDeterminism { flow, .. }, .. } if flow == "nd_flow"
        ),
        "{error:?}"
    );
    flock.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Connection and configuration errors.

#[tokio::test]
async fn unreachable_server_is_a_clear_error_within_seconds() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = Instant::now();
    let error = Flock::builder()
        .local_debug(false)
        .queue_served_elsewhere(super::conformance::POOL_QUEUE)
        .temporal(TemporalExecutorConfig {
            server_url: format!("127.0.0.1:{port}"),
            ..Default::default()
        })
        .build()
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    let text = error.to_string();
    assert!(
        text.contains(&format!("127.0.0.1:{port}")) && text.contains("temporal server start-dev"),
        "{text}"
    );

    // a listener that accepts connections and never answers: bounded too
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = silent.local_addr().unwrap();
    let started = Instant::now();
    let error = Flock::builder()
        .local_debug(false)
        .queue_served_elsewhere(super::conformance::POOL_QUEUE)
        .temporal(TemporalExecutorConfig {
            server_url: address.to_string(),
            ..Default::default()
        })
        .build()
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    assert!(error.to_string().contains(&address.to_string()), "{error}");
    drop(silent);
}

#[tokio::test]
async fn configuration_errors_are_clear() {
    let build = |config: TemporalExecutorConfig| {
        Flock::builder()
            .local_debug(false)
            .queue_served_elsewhere(super::conformance::POOL_QUEUE)
            .temporal(config)
            .build()
    };

    let error = build(TemporalExecutorConfig {
        server_url: server(),
        tls_cert_path: Some("/nonexistent/client.pem".into()),
        tls_key_path: Some("/nonexistent/client.key".into()),
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert!(
        error.to_string().contains("/nonexistent/client.pem"),
        "{error}"
    );

    for bad in ["", "localhost:notaport", "http://", "local host:7233"] {
        let error = build(TemporalExecutorConfig {
            server_url: bad.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
        assert!(error.to_string().contains("server_url"), "{bad:?}: {error}");
    }

    let error = build(TemporalExecutorConfig {
        server_url: server(),
        namespace: "no-such-namespace".into(),
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("no namespace `no-such-namespace`"),
        "{error}"
    );
}

#[tokio::test]
async fn config_loads_from_temporal_environment_and_toml() {
    let dir = std::env::temp_dir().join(format!("flock-envconfig-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let toml = dir.join("temporal.toml");
    std::fs::write(
        &toml,
        "[profile.default]\naddress = \"temporal.invalid:7233\"\nnamespace = \"from-file\"\n",
    )
    .unwrap();
    let env = |pairs: &[(&str, &str)]| -> std::collections::HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    let from_file = TemporalExecutorConfig::from_env_map(&env(&[(
        "TEMPORAL_CONFIG_FILE",
        toml.to_str().unwrap(),
    )]))
    .unwrap();
    assert_eq!(from_file.server_url, "temporal.invalid:7233");
    assert_eq!(from_file.namespace, "from-file");
    let overridden = TemporalExecutorConfig::from_env_map(&env(&[
        ("TEMPORAL_CONFIG_FILE", toml.to_str().unwrap()),
        ("TEMPORAL_ADDRESS", "127.0.0.1:7777"),
        ("TEMPORAL_API_KEY", "secret-key"),
    ]))
    .unwrap();
    assert_eq!(overridden.server_url, "127.0.0.1:7777");
    assert_eq!(overridden.namespace, "from-file");
    assert_eq!(overridden.api_key.as_deref(), Some("secret-key"));
    assert!(
        !format!("{overridden:?}").contains("secret-key"),
        "the key is redacted"
    );
    let defaults = TemporalExecutorConfig::from_env_map(&env(&[(
        "TEMPORAL_CONFIG_FILE",
        "/nonexistent/temporal.toml",
    )]));
    assert!(defaults.is_err() || defaults.unwrap().server_url == "localhost:7233");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_worker_serves_a_client_only_flock() {
    let task_queue = "standalone";
    let worker_flock = client_only_flock(task_queue).await;
    let client = client_only_flock(task_queue).await;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let worker = worker_flock
        .worker()
        .limits(WorkerLimits {
            max_concurrent_agents: 4,
            ..Default::default()
        })
        .run_until(async {
            let _ = stop_rx.await;
        });
    let work = async {
        let out = client.run_flow(handle_batch, sample_batch()).await;
        let _ = stop_tx.send(());
        out
    };
    let (served, out) = tokio::join!(worker, work);
    served.unwrap();
    assert_eq!(out.unwrap().resolutions.len(), 3);
    let _ = json!(null);
}

/// Calls both agents of the pool's queue.
#[flow]
async fn uses_the_pool(
    ctx: &FlowContext,
    input: super::conformance::Text,
) -> Result<super::conformance::Text, FlowError> {
    use super::conformance::{c_pooled, c_pooled_too};
    let pooled = ctx.call(c_pooled, input).await?;
    ctx.call(c_pooled_too, pooled).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_pool_worker_serves_the_agents_of_its_queue() {
    use super::conformance::{POOL_QUEUE, Text};
    // The full worker (in-process) serves the flows and every other agent; the pool worker only
    // the agents declared on the pool's queue, which nothing else polls.
    let main = temporal_flock("pool-main").await;
    let pool_flock = client_only_flock("pool-main").await;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let pool = pool_flock
        .worker()
        .agents(["c_pooled_too", "c_pooled"])
        .run_until(async {
            let _ = stop_rx.await;
        });
    let work = async {
        let out = tokio::time::timeout(
            Duration::from_secs(60),
            main.run_flow(uses_the_pool, Text { text: "job".into() })
                .recorded(),
        )
        .await;
        let _ = stop_tx.send(());
        out
    };
    let (served, out) = tokio::join!(pool, work);
    served.unwrap();
    let run = out.expect("the pooled agents were served");
    assert_eq!(run.result.unwrap().text, "job pooled too");
    assert_eq!(
        super::support::step_names(&run.record),
        ["c_pooled", "c_pooled_too"]
    );
    // the activities were scheduled on the pool's queue
    let history = String::from_utf8(main.history_json(&run.record.run_id).await.unwrap()).unwrap();
    assert_eq!(history.matches(POOL_QUEUE).count(), 2, "{history}");

    // What a pool worker refuses, before it polls anything.
    let refused = |names: Vec<&'static str>| {
        let flock = pool_flock.clone();
        async move {
            flock
                .worker()
                .agents(names)
                .run_until(async {})
                .await
                .unwrap_err()
                .to_string()
        }
    };
    assert_eq!(
        refused(vec!["c_poled"]).await,
        "there is no agent `c_poled` in this binary; did you mean `c_pooled`?"
    );
    let error = refused(vec!["c_pooled"]).await;
    assert!(
        error.contains("agent `c_pooled_too` also runs on task queue `conformance-agent-pool`")
            && error.contains("must serve it too"),
        "{error}"
    );
    let error = refused(vec!["research_agent"]).await;
    assert!(
        error.contains("agent `research_agent` (")
            && error.contains("runs on the task queue of the flows that call it")
            && error.contains("`#[agent(task_queue = \"..\")]`"),
        "{error}"
    );
    let error = refused(vec![]).await;
    assert!(error.contains("at least one agent name"), "{error}");
}
