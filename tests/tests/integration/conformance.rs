//! The same bad inputs on both executors: every run that cannot finish fails, with an error that
//! names the flow or agent and the reason, and the two executors agree. Each Temporal case is
//! bounded by [`BOUND`]: a run still going by then is the hang these tests exist to prevent.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use flock::prelude::*;
use serde::Serializer;

use super::support::free_port;
use super::temporal::{client_only_flock, config, server, temporal_flock};

/// A task queue that no full worker of this test binary serves (see
/// `queue_is_unserved_unless_declared_served_elsewhere`): only the agent pool of
/// `temporal::an_agent_pool_worker_serves_the_agents_of_its_queue`, while that test runs.
pub(super) const POOL_QUEUE: &str = "conformance-agent-pool";

/// How long a Temporal run may take before it counts as hung.
const BOUND: Duration = Duration::from_secs(45);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Text {
    /// Some text
    pub text: String,
}

/// What the worker logs in this test binary (a global subscriber, installed on first use).
pub(super) fn worker_log() -> &'static std::sync::Mutex<Vec<u8>> {
    static LOG: std::sync::OnceLock<&'static std::sync::Mutex<Vec<u8>>> =
        std::sync::OnceLock::new();
    LOG.get_or_init(|| {
        let log: &'static std::sync::Mutex<Vec<u8>> =
            Box::leak(Box::new(std::sync::Mutex::new(Vec::new())));
        use tracing_subscriber::Layer;
        use tracing_subscriber::layer::SubscriberExt;
        // The log at WARN, and every span and event of flock's for the observe tests.
        let subscriber = tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(move || LogWriter(log))
                    .with_filter(tracing_subscriber::filter::LevelFilter::WARN),
            )
            .with(
                super::observe::Capture.with_filter(tracing_subscriber::filter::filter_fn(
                    |metadata| metadata.target().starts_with("flock"),
                )),
            );
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other subscriber in this test binary");
        log
    })
}

struct LogWriter(&'static std::sync::Mutex<Vec<u8>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The two executors, each with the settings the cases need.
pub(super) async fn both(queue: &str) -> [(&'static str, Flock); 2] {
    let local = Flock::builder()
        .model("test")
        .temporal(TemporalExecutorConfig {
            retry_interval: Duration::from_millis(10),
            ..Default::default()
        })
        .build()
        .await
        .expect("a local Flock");
    let temporal = temporal_flock(queue).await;
    [("local", local), ("temporal", temporal)]
}

/// Runs `flow` on `flock`, failing the test when it does not end within [`BOUND`].
async fn bounded<F: Flow>(
    executor: &str,
    flock: &Flock,
    flow: F,
    input: F::Input,
) -> Result<F::Output, flock::Error> {
    tokio::time::timeout(BOUND, flock.run_flow(flow, input).into_future())
        .await
        .unwrap_or_else(|_| panic!("{executor}: `{}` did not end within {BOUND:?}", F::NAME))
}

// ---------------------------------------------------------------------------------------------
// A panic in a flow body.

#[flow]
async fn c_panics(ctx: &FlowContext, input: Text) -> Result<Text, FlowError> {
    let _ = ctx;
    if input.text == "boom" {
        panic!("the flow body hit a bug: {}", input.text);
    }
    Ok(input)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_flow_fails_naming_the_flow_and_the_panic() {
    let log = worker_log();
    for (executor, flock) in both("conformance-panic").await {
        let error = bounded(
            executor,
            &flock,
            c_panics,
            Text {
                text: "boom".into(),
            },
        )
        .await
        .unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("flow `c_panics` panicked")
                && text.contains("the flow body hit a bug: boom"),
            "{executor}: {text}"
        );
        match &error {
            flock::Error::Run { cause, .. } => assert!(
                matches!(cause, FlowError::Panicked { flow, .. } if flow == "c_panics"),
                "{executor}: {cause:?}"
            ),
            other => panic!("{executor}: {other:?}"),
        }
        flock.shutdown().await.unwrap();
    }
    let log = String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
    assert!(
        log.lines().any(|line| line.contains("ERROR")
            && line.contains("flow `c_panics` failed: flow `c_panics` panicked")),
        "the worker logs the failed run at error level:\n{log}"
    );
}

// ---------------------------------------------------------------------------------------------
// Payloads over the limit.

#[agent(local = false, retry(attempts = 3, initial_interval = "10ms"))]
async fn c_echo(input: Text) -> Text {
    input
}

static C_BLOWUP_CALLS: AtomicU32 = AtomicU32::new(0);

/// Answers with an output over the payload limit.
#[agent(local = false, retry(attempts = 3, initial_interval = "10ms"))]
async fn c_blowup(input: Text) -> Text {
    C_BLOWUP_CALLS.fetch_add(1, Ordering::SeqCst);
    Text {
        text: input.text.repeat(3_000_000),
    }
}

#[flow]
async fn c_big_input(ctx: &FlowContext, input: Text) -> Result<Text, FlowError> {
    ctx.call(
        c_echo,
        Text {
            text: input.text.repeat(3_000_000),
        },
    )
    .await
}

#[flow]
async fn c_big_output(ctx: &FlowContext, input: Text) -> Result<Text, FlowError> {
    ctx.call(c_blowup, input).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_over_the_limit_fail_fast_naming_the_agent_and_the_size() {
    for (executor, flock) in both("conformance-payload").await {
        let error = bounded(executor, &flock, c_big_input, Text { text: "x".into() })
            .await
            .unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("the input of agent `c_echo` is 3000011 bytes")
                && text.contains("payload limit"),
            "{executor}: {text}"
        );

        C_BLOWUP_CALLS.store(0, Ordering::SeqCst);
        let error = bounded(executor, &flock, c_big_output, Text { text: "y".into() })
            .await
            .unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("the output of agent `c_blowup`") && text.contains("payload limit"),
            "{executor}: {text}"
        );
        let (agent, attempts, cause) = error.agent_error().expect("an agent error");
        assert_eq!(
            (agent, attempts, cause.class()),
            ("c_blowup", 1, flock::ErrorClass::Permanent),
            "{executor}: a too-large output is permanent, not retried"
        );
        assert_eq!(C_BLOWUP_CALLS.load(Ordering::SeqCst), 1, "{executor}");
        flock.shutdown().await.unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// Waiting on something that is not the context.

/// A helper the `#[flow]` macro cannot see into: its timer is not the context's.
async fn nap() {
    tokio::time::sleep(Duration::from_millis(50)).await;
}

#[flow]
async fn c_naps(ctx: &FlowContext, input: Text) -> Result<Text, FlowError> {
    let _ = ctx;
    nap().await;
    Ok(input)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_waiting_on_a_foreign_timer_fails_as_non_deterministic() {
    for (executor, flock) in both("conformance-nondeterminism").await {
        let error = bounded(executor, &flock, c_naps, Text { text: "z".into() })
            .await
            .unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("flow `c_naps` is not deterministic") && text.contains("ctx.sleep"),
            "{executor}: {text}"
        );
        flock.shutdown().await.unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// Inputs that do not serialize.

/// A value whose serialization fails.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
pub struct Unserializable {
    /// Never serialized
    pub text: String,
}

impl Serialize for Unserializable {
    fn serialize<S: Serializer>(&self, _serializer: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(
            "this value refuses to be serialized",
        ))
    }
}

#[flow]
async fn c_takes_unserializable(
    ctx: &FlowContext,
    input: Unserializable,
) -> Result<Text, FlowError> {
    let _ = ctx;
    Ok(Text { text: input.text })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_input_that_does_not_serialize_starts_nothing() {
    for (executor, flock) in both("conformance-unserializable").await {
        let id = format!("unserializable-{executor}");
        let recorded = flock
            .run_flow(
                c_takes_unserializable,
                Unserializable {
                    text: "never".into(),
                },
            )
            .id(id.clone())
            .recorded()
            .await;
        let text = recorded.result.unwrap_err().to_string();
        assert!(
            text.contains("c_takes_unserializable")
                && text.contains("this value refuses to be serialized"),
            "{executor}: {text}"
        );
        if executor == "temporal" {
            let started = flock.flow_handle(c_takes_unserializable, &id).unwrap();
            let error = started.result().await.unwrap_err().to_string();
            assert!(
                error.contains("there is no run"),
                "{executor}: nothing may have been started with a null input: {error}"
            );
        }
        flock.shutdown().await.unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// Task queues nobody serves.

#[agent(task_queue = "conformance-agent-pool")]
pub(super) async fn c_pooled(input: Text) -> Text {
    Text {
        text: format!("{} pooled", input.text),
    }
}

/// The other agent of the pool's queue: a pool worker must serve both.
#[agent(task_queue = "conformance-agent-pool")]
pub(super) async fn c_pooled_too(input: Text) -> Text {
    Text {
        text: format!("{} too", input.text),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_is_unserved_unless_declared_served_elsewhere() {
    // The local executor runs everything in-process: queues do not apply.
    let local = Flock::builder().model("test").build().await.unwrap();
    let out = local
        .run(c_pooled, Text { text: "q".into() })
        .await
        .unwrap();
    assert_eq!(out.text, "q pooled");

    // A process that runs work on Temporal refuses, naming the queue and the definition.
    let error = Flock::builder()
        .model("test")
        .local_debug(false)
        .temporal(config("conformance-queues"))
        .build()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("task queue `conformance-agent-pool`: agent `c_pooled`")
            && error.contains("queue_served_elsewhere"),
        "{error}"
    );
    // ... and so does a standalone worker.
    let worker_error = Flock::builder()
        .model("test")
        .local_debug(false)
        .in_process_worker(false)
        .temporal(config("conformance-queues"))
        .build()
        .await
        .unwrap()
        .worker()
        .run_until(async {})
        .await
        .unwrap_err()
        .to_string();
    assert!(
        worker_error.contains("task queue `conformance-agent-pool`"),
        "{worker_error}"
    );
    // Declared, it builds (the helpers of this binary all declare it).
    let declared = temporal_flock("conformance-queues").await;
    declared.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Runs started from outside with input that does not fit.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_started_without_input_fails_naming_the_expected_type() {
    let flock = temporal_flock("conformance-no-input").await;
    let cli = flock::dev_server::DevServer::find_cli().expect("the temporal CLI");
    for (id, extra) in [
        ("no-input", vec![]),
        ("wrong-input", vec!["--input", r#"{"txt": 1}"#]),
    ] {
        let status = std::process::Command::new(&cli)
            .args([
                "workflow",
                "start",
                "--address",
                &server(),
                "--task-queue",
                "conformance-no-input",
                "--type",
                "c_panics",
                "--workflow-id",
                id,
            ])
            .args(&extra)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("temporal workflow start");
        assert!(status.success());
        let handle = flock.flow_handle(c_panics, id).unwrap();
        let error = tokio::time::timeout(BOUND, handle.result())
            .await
            .unwrap_or_else(|_| panic!("run `{id}` did not end within {BOUND:?}"))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("c_panics") && error.contains("Text"),
            "{id}: the error names the flow and the type it expected: {error}"
        );
    }
    flock.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Re-attaching with the wrong flow.

/// A run found by id, on both executors: its result through a handle of its flow (the local
/// executor keeps it while a handle lives), by name and id, its description; a handle of
/// another flow is `Error::WrongFlow` naming both; an unknown id `Error::NotFound`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_are_found_by_id_and_a_handle_of_another_flow_is_refused() {
    for (executor, flock) in both("conformance-reattach").await {
        let id = format!("reattach-typed-{executor}");
        let started = flock
            .run_flow(
                c_panics,
                Text {
                    text: "fine".into(),
                },
            )
            .id(&id)
            .start()
            .await
            .unwrap();
        let again = flock.flow_handle(c_panics, &id).unwrap();
        assert_eq!(
            bounded_result(executor, again.result()).await.unwrap().text,
            "fine",
            "{executor}"
        );
        assert_eq!(
            flock.result_json(&id).await.unwrap()["text"],
            "fine",
            "{executor}"
        );
        let info = flock.describe_run(&id).await.unwrap();
        assert_eq!(
            (info.flow.as_str(), info.status.as_str()),
            ("c_panics", "completed"),
            "{executor}"
        );
        // `c_naps` has the same input and output types: decoding alone would not notice.
        let wrong = flock.flow_handle(c_naps, &id).unwrap();
        let error = wrong.result().await.unwrap_err();
        assert!(
            matches!(&error, flock::Error::WrongFlow { expected, actual, .. } if expected == "c_naps" && actual == "c_panics"),
            "{executor}: {error:?}"
        );
        assert!(
            error
                .to_string()
                .contains("is a run of `c_panics`, not of `c_naps`"),
            "{executor}: {error}"
        );
        let error = flock
            .flow_handle(c_panics, "no-such-run")
            .unwrap()
            .result()
            .await
            .unwrap_err();
        assert!(
            matches!(error, flock::Error::NotFound(_)),
            "{executor}: {error:?}"
        );
        drop(started);
        flock.shutdown().await.unwrap();
    }
}

async fn bounded_result<T>(
    executor: &str,
    future: impl std::future::Future<Output = Result<T, flock::Error>>,
) -> Result<T, flock::Error> {
    tokio::time::timeout(BOUND, future)
        .await
        .unwrap_or_else(|_| panic!("{executor}: no result within {BOUND:?}"))
}

// ---------------------------------------------------------------------------------------------
// Step layers: one wrapper point around every agent call, on both executors.

/// Refuses calls to `c_blowup`, counts the calls it lets through.
struct Gate(std::sync::Arc<AtomicU32>);

impl flock::runtime::StepLayer for Gate {
    fn call_agent<'a>(
        &'a self,
        call: flock::runtime::AgentCall,
        next: &'a dyn flock::runtime::FlowRuntime,
    ) -> futures::future::BoxFuture<'a, Result<serde_json::Value, FlowError>> {
        if call.spec.name == "c_blowup" {
            return Box::pin(std::future::ready(Err(FlowError::msg(
                "the gate refuses `c_blowup`",
            ))));
        }
        self.0.fetch_add(1, Ordering::SeqCst);
        next.call_agent(call)
    }
}

#[flow]
async fn c_gated(ctx: &FlowContext, input: Text) -> Result<Text, FlowError> {
    let echoed = ctx.call(c_echo, input).await?;
    if echoed.text.contains("blow") {
        return ctx.call(c_blowup, echoed).await;
    }
    ctx.call(c_echo, echoed).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_layer_sees_every_agent_call_on_both_executors() {
    let counted = std::sync::Arc::new(AtomicU32::new(0));
    let local = Flock::builder()
        .model("test")
        .step_layer(Gate(counted.clone()))
        .build()
        .await
        .unwrap();
    let temporal = Flock::builder()
        .model("test")
        .local_debug(false)
        .serve_only([c_gated::NAME])
        .step_layer(Gate(counted.clone()))
        .temporal(config("conformance-layer"))
        .build()
        .await
        .unwrap();
    for (executor, flock) in [("local", local), ("temporal", temporal)] {
        counted.store(0, Ordering::SeqCst);
        let passed = bounded(executor, &flock, c_gated, Text { text: "a".into() })
            .await
            .unwrap();
        assert_eq!(passed.text, "a", "{executor}");
        assert_eq!(
            counted.load(Ordering::SeqCst),
            2,
            "{executor}: both calls went through it"
        );
        let refused = bounded(
            executor,
            &flock,
            c_gated,
            Text {
                text: "blow".into(),
            },
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(
            refused.contains("the gate refuses `c_blowup`"),
            "{executor}: {refused}"
        );
        flock.shutdown().await.unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// Cancelling a flow whose child is running.

#[flow]
async fn c_slow_child(ctx: &FlowContext, input: Text) -> Result<Text, FlowError> {
    ctx.sleep(Duration::from_secs(30)).await?;
    Ok(input)
}

#[flow]
async fn c_parent(ctx: &FlowContext, input: Text) -> Result<Text, FlowError> {
    ctx.call_flow(c_slow_child, input).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_parent_with_a_running_child_ends_it_cancelled() {
    for (executor, flock) in both("conformance-cancel").await {
        let handle = flock
            .start_flow(c_parent, Text { text: "c".into() })
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        handle.cancel().await.unwrap();
        let error = tokio::time::timeout(BOUND, handle.result())
            .await
            .unwrap_or_else(|_| panic!("{executor}: the cancelled run did not end"))
            .unwrap_err();
        match &error {
            flock::Error::Run { cause, .. } => assert!(
                matches!(cause, FlowError::Cancelled { .. }),
                "{executor}: ended {cause:?}, not cancelled"
            ),
            other => panic!("{executor}: {other:?}"),
        }
        flock.shutdown().await.unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// Child runs in the record.

#[agent]
async fn c_wait(input: Text) -> Text {
    let millis: u64 = input.text.parse().unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(millis)).await;
    input
}

#[flow]
async fn c_child(ctx: &FlowContext, input: Text) -> Result<Text, FlowError> {
    ctx.call(c_wait, input).await
}

#[flow]
async fn c_two_children(ctx: &FlowContext, input: Text) -> Result<Text, FlowError> {
    let _ = input;
    let (slow, fast) = flock::try_join!(
        ctx.call_flow(c_child, Text { text: "300".into() }),
        ctx.call_flow(c_child, Text { text: "10".into() }),
    )?;
    Ok(Text {
        text: format!("{}+{}", slow.text, fast.text),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_runs_are_recorded_in_call_order_with_their_durations() {
    for (executor, flock) in both("conformance-children").await {
        let recorded = flock
            .run_flow(
                c_two_children,
                Text {
                    text: String::new(),
                },
            )
            .recorded()
            .await;
        assert_eq!(recorded.result.unwrap().text, "300+10", "{executor}");
        let children = &recorded.record.children;
        assert_eq!(children.len(), 2, "{executor}");
        assert_eq!(
            children[0].output,
            Some(serde_json::json!({ "text": "300" })),
            "{executor}: the first child called comes first"
        );
        assert!(
            children[0].duration >= Duration::from_millis(300),
            "{executor}: child duration {:?}",
            children[0].duration
        );
        flock.shutdown().await.unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// A Flock that serves part of the binary (`serve_only`).

/// A scoped Flock on each executor: on Temporal it builds without declaring this module's pool
/// queue served elsewhere (the pool's agents are outside its scope), runs the flow it serves with
/// the child flows and agents that flow calls, and refuses one outside its scope by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scoped_flock_serves_its_flows_and_what_they_call_and_nothing_else() {
    let scoped = || {
        Flock::builder()
            .model("test")
            .serve_only([c_two_children::NAME])
    };
    let local = scoped().build().await.expect("a scoped local Flock");
    let temporal = scoped()
        .local_debug(false)
        .temporal(config("conformance-scoped"))
        .build()
        .await
        .expect("a scoped Temporal Flock builds with no queue_served_elsewhere");
    for (executor, flock) in [("local", local), ("temporal", temporal)] {
        let registry = flock.registry();
        for served in [c_two_children::NAME, c_child::NAME] {
            assert!(registry.flow(served).is_some(), "{executor}: {served}");
        }
        assert!(
            registry.agent("c_wait").is_some(),
            "{executor}: the agent c_child calls"
        );
        assert!(
            registry.agent("c_pooled").is_none(),
            "{executor}: outside the scope"
        );
        let done = bounded(
            executor,
            &flock,
            c_two_children,
            Text {
                text: String::new(),
            },
        )
        .await
        .unwrap();
        assert_eq!(done.text, "300+10", "{executor}");
        let refused = bounded(executor, &flock, c_gated, Text { text: "a".into() })
            .await
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("`c_gated`") && refused.contains("serve_only"),
            "{executor}: {refused}"
        );
        flock.shutdown().await.unwrap();
    }
}

/// An unknown name in `serve_only` fails `build` on each executor, naming it and the closest
/// known name; nothing is started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_only_with_an_unknown_name_is_a_clear_error_on_both_executors() {
    let local = Flock::builder()
        .serve_only(["c_two_childen"])
        .build()
        .await
        .unwrap_err();
    let temporal = Flock::builder()
        .local_debug(false)
        .serve_only(["c_two_childen"])
        .temporal(config("conformance-scoped-bad"))
        .build()
        .await
        .unwrap_err();
    for (executor, error) in [("local", local), ("temporal", temporal)] {
        assert!(
            matches!(error, flock::Error::NotFound(_)),
            "{executor}: {error:?}"
        );
        let message = error.to_string();
        assert!(
            message.contains("`c_two_childen`") && message.contains("`c_two_children`"),
            "{executor}: {message}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// A flow named like an agent's hand-off chain.

#[test]
fn a_flow_named_like_a_chain_is_refused() {
    use flock::__private::{Chain, agent_registration, flow_registration};
    let mut registry = flock::Registry::default();
    registry
        .add_agent(&agent_registration(&c_echo, &Chain(c_echo)))
        .unwrap();
    #[derive(Debug, Clone, Copy, Default)]
    struct Impostor;
    static SPEC: flock::FlowSpec = flock::FlowSpec::new("c_echo.chain");
    impl Flow for Impostor {
        type Input = Text;
        type Output = Text;
        const NAME: &'static str = "c_echo.chain";
        fn spec(&self) -> &'static flock::FlowSpec {
            &SPEC
        }
        async fn run(self, _ctx: &FlowContext, input: Text) -> Result<Text, FlowError> {
            Ok(input)
        }
    }
    let error = registry
        .add_flow(&flow_registration(&Impostor))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("flow `c_echo.chain`") && error.contains("hand-off chain"),
        "{error}"
    );
}

// ---------------------------------------------------------------------------------------------
// Reusing a run id.

#[flow]
async fn c_fails_on_odd(ctx: &FlowContext, input: Text) -> Result<Text, FlowError> {
    let _ = ctx;
    if input.text.len() % 2 == 1 {
        return Err(FlowError::msg("odd"));
    }
    Ok(input)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_runs_id_is_not_reused_silently() {
    for (executor, flock) in both("conformance-ids").await {
        let id = format!("ids-{executor}");
        let ok = Text { text: "ok".into() };
        flock
            .run_flow(c_fails_on_odd, ok.clone())
            .id(&id)
            .await
            .unwrap();
        let error = match flock.run_flow(c_fails_on_odd, ok.clone()).id(&id).await {
            Ok(_) => panic!("{executor}: a completed run's id was reused"),
            Err(error) => error.to_string(),
        };
        assert!(
            error.contains(&format!("run `{id}`: a run with that id completed"))
                && error.contains("IdReuse::Allow"),
            "{executor}: {error}"
        );
        let typed = flock.run_flow(c_fails_on_odd, ok.clone()).id(&id).await;
        assert!(
            matches!(typed, Err(flock::Error::IdTaken { .. })),
            "{executor}: {typed:?}"
        );
        flock
            .run_flow(c_fails_on_odd, ok.clone())
            .id(&id)
            .id_reuse(flock::IdReuse::Allow)
            .await
            .unwrap_or_else(|e| panic!("{executor}: an allowed reuse runs again: {e}"));

        // a failed run's id may be taken by a retry, by default
        let failed_id = format!("ids-failed-{executor}");
        flock
            .run_flow(c_fails_on_odd, Text { text: "odd".into() })
            .id(&failed_id)
            .await
            .unwrap_err();
        flock
            .run_flow(c_fails_on_odd, ok.clone())
            .id(&failed_id)
            .await
            .unwrap_or_else(|e| panic!("{executor}: a failed run's id is reusable: {e}"));
        let error = flock
            .run_flow(c_fails_on_odd, ok)
            .id(&failed_id)
            .id_reuse(flock::IdReuse::Reject)
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("IdReuse::Allow"), "{executor}: {error}");
        flock.shutdown().await.unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// A timed-out attempt stops.

static C_LATE_EFFECTS: AtomicU32 = AtomicU32::new(0);
static C_SAW_CANCEL: AtomicU32 = AtomicU32::new(0);

/// Takes longer than its timeout; a side effect after the deadline would be a bug.
#[agent(timeout = "300ms", retry(attempts = 1))]
async fn c_overruns(ctx: &AgentContext, input: Text) -> Text {
    let watcher = ctx.clone();
    tokio::spawn(async move {
        watcher.cancelled().await;
        C_SAW_CANCEL.fetch_add(1, Ordering::SeqCst);
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    C_LATE_EFFECTS.fetch_add(1, Ordering::SeqCst);
    input
}

#[flow]
async fn c_times_out(ctx: &FlowContext, input: Text) -> Result<Text, FlowError> {
    ctx.call(c_overruns, input).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_attempt_is_cancelled_and_stops() {
    for (executor, flock) in both("conformance-timeout").await {
        C_LATE_EFFECTS.store(0, Ordering::SeqCst);
        C_SAW_CANCEL.store(0, Ordering::SeqCst);
        let error = bounded(executor, &flock, c_times_out, Text { text: "t".into() })
            .await
            .unwrap_err();
        let (agent, attempts, _) = error.agent_error().expect("the agent failed");
        assert_eq!((agent, attempts), ("c_overruns", 1), "{executor}: {error}");
        tokio::time::sleep(Duration::from_millis(2000)).await;
        assert_eq!(
            C_LATE_EFFECTS.load(Ordering::SeqCst),
            0,
            "{executor}: the attempt ran on after its timeout"
        );
        assert_eq!(
            C_SAW_CANCEL.load(Ordering::SeqCst),
            1,
            "{executor}: the agent saw its cancellation"
        );
        flock.shutdown().await.unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// Attempts reported after a timeout.

static C_STUCK_CALLS: AtomicU32 = AtomicU32::new(0);

/// Never answers in time; its schedule-to-close timeout ends the retries before `attempts` does.
#[agent(
    local = false,
    timeout = "300ms",
    schedule_to_close = "1s",
    retry(attempts = 10, initial_interval = "10ms", backoff = 1.0)
)]
async fn c_stuck(input: Text) -> Text {
    C_STUCK_CALLS.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(5)).await;
    input
}

#[flow]
async fn c_calls_stuck(ctx: &FlowContext, input: Text) -> Result<Text, FlowError> {
    ctx.call(c_stuck, input).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_reports_the_attempts_made_not_the_maximum() {
    for (executor, flock) in both("conformance-attempts").await {
        C_STUCK_CALLS.store(0, Ordering::SeqCst);
        let error = bounded(executor, &flock, c_calls_stuck, Text { text: "s".into() })
            .await
            .unwrap_err();
        let (_, attempts, _) = error.agent_error().expect("the agent failed");
        let made = C_STUCK_CALLS.load(Ordering::SeqCst);
        assert!(
            (2..10).contains(&attempts) && attempts.abs_diff(made) <= 1,
            "{executor}: reported {attempts} attempts, {made} made: {error}"
        );
        flock.shutdown().await.unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// A server that is briefly unavailable while a client waits.

#[flow]
async fn c_sleeps(ctx: &FlowContext, input: Text) -> Result<Text, FlowError> {
    ctx.sleep(Duration::from_secs(4)).await?;
    Ok(input)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_rides_out_a_server_restart_and_gives_up_distinctly() {
    use flock::dev_server::{DevServer, DevServerOptions};
    let dir = std::env::temp_dir().join(format!("flock-restart-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let options = DevServerOptions {
        port: Some(free_port()),
        db_filename: Some(dir.join("temporal.db")),
        ..Default::default()
    };
    let server = DevServer::start(options.clone()).await.unwrap();
    let flock = Flock::builder()
        .model("test")
        .local_debug(false)
        .queue_served_elsewhere(POOL_QUEUE)
        .temporal(TemporalExecutorConfig {
            server_url: server.address(),
            task_queue: "conformance-restart".into(),
            ..Default::default()
        })
        .build()
        .await
        .unwrap();
    let handle = flock
        .start_flow(c_sleeps, Text { text: "r".into() })
        .await
        .unwrap();
    let waiting = tokio::spawn(async move {
        let result = handle.result().await;
        (result, flock)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.stop();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !waiting.is_finished(),
        "the wait must not fail while the server is away"
    );
    let server = DevServer::start(options.clone()).await.unwrap();
    let (result, flock) = tokio::time::timeout(BOUND, waiting)
        .await
        .expect("the run completes after the restart")
        .unwrap();
    assert_eq!(
        result.unwrap().text,
        "r",
        "the run's own result, not a transport error"
    );

    // A client that stops waiting says so, distinctly from a failed run.
    let impatient = Flock::builder()
        .model("test")
        .local_debug(false)
        .in_process_worker(false)
        .temporal(TemporalExecutorConfig {
            server_url: server.address(),
            task_queue: "conformance-restart".into(),
            wait_retry_window: Duration::from_secs(2),
            ..Default::default()
        })
        .build()
        .await
        .unwrap();
    let handle = impatient
        .start_flow(c_sleeps, Text { text: "g".into() })
        .await
        .unwrap();
    server.stop();
    let error = tokio::time::timeout(BOUND, handle.result())
        .await
        .expect("the wait gives up within its window")
        .unwrap_err();
    assert!(
        matches!(error, flock::Error::WaitGaveUp { .. }),
        "a distinct error: {error:?}"
    );
    let _ = flock.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// An update validator that panics.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_whose_validator_panics_is_an_error_naming_flow_update_and_panic() {
    use flock_tests::cli::{Steps, echoes};
    for (executor, flock) in both("conformance-validator-panics").await {
        let handle = flock
            .run_flow(echoes, Steps { count: 0, ms: 0 })
            .id(format!("validator-panics-{executor}"))
            .id_reuse(flock::IdReuse::Allow)
            .start()
            .await
            .unwrap_or_else(|e| panic!("{executor}: {e}"));
        let answer = tokio::time::timeout(BOUND, handle.update(echoes::echo, "fine".into()))
            .await
            .expect("answered");
        assert_eq!(answer.unwrap(), "fine", "{executor}");
        let error = handle
            .update(echoes::echo, "boom".into())
            .await
            .expect_err("a panicking validator rejects the update");
        assert!(
            matches!(&error, flock::Error::Message { flow, .. } if flow == "echoes"),
            "{executor}: {error:?}"
        );
        assert!(
            error.to_string().ends_with(
                "the update `echo` of flow `echoes` was rejected: its validator panicked: the validator exploded on `boom`"
            ),
            "{executor}: {error}"
        );
        // the run goes on
        let answer = tokio::time::timeout(BOUND, handle.update(echoes::echo, "again".into()))
            .await
            .expect("answered");
        assert_eq!(answer.unwrap(), "again", "{executor}");
        handle.signal(echoes::stop, true).await.unwrap();
        assert_eq!(handle.result().await.unwrap().done, 2, "{executor}");
        flock.shutdown().await.unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// Patch ids Temporal cannot keep.

#[flow]
async fn c_patch_id(ctx: &FlowContext, input: Text) -> Result<Text, FlowError> {
    if ctx.patched(&input.text) {
        return ctx.call(c_echo, input).await;
    }
    Ok(Text {
        text: "old path".into(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_or_overlong_patch_id_fails_the_run_naming_the_flow_and_the_id() {
    for (executor, flock) in both("conformance-patch-id").await {
        let ok = bounded(executor, &flock, c_patch_id, Text { text: "v2".into() })
            .await
            .unwrap_or_else(|e| panic!("{executor}: {e}"));
        assert_eq!(ok.text, "v2", "{executor}");
        let long = "p".repeat(10_000);
        for (id, says) in [
            ("", "a patch id must not be empty".to_owned()),
            (
                long.as_str(),
                format!("patch id `{}…` is 10000 bytes long", "p".repeat(32)),
            ),
        ] {
            let error = bounded(executor, &flock, c_patch_id, Text { text: id.into() })
                .await
                .expect_err("an invalid patch id fails the run");
            let text = error.to_string();
            assert!(
                matches!(&error, flock::Error::Run { name, .. } if name == "c_patch_id"),
                "{executor}: {error:?}"
            );
            assert!(
                text.contains("flow `c_patch_id`") && text.contains(&says),
                "{executor}: {text}"
            );
            assert!(!text.contains("old path"), "{executor}: {text}");
        }
        flock.shutdown().await.unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// Zero worker limits (concurrency: `max_cached_workflows: 0`, no cache, is a working set-up that
// the otel tests use).

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_worker_limits_are_refused_naming_the_field() {
    use flock::WorkerLimits;
    let zero_agents = WorkerLimits {
        max_concurrent_agents: 0,
        ..Default::default()
    };
    for local in [true, false] {
        let built = Flock::builder()
            .local_debug(local)
            .worker_limits(zero_agents)
            .temporal(config("conformance-zero-limits"))
            .build()
            .await;
        let error = built.expect_err("a zero limit is refused").to_string();
        assert!(
            error.contains("`max_concurrent_agents` is 0"),
            "local={local}: {error}"
        );
    }
    let flock = client_only_flock("conformance-zero-limits").await;
    for (limits, field) in [
        (
            WorkerLimits {
                max_concurrent_flow_tasks: 0,
                ..Default::default()
            },
            "max_concurrent_flow_tasks",
        ),
        (
            WorkerLimits {
                max_concurrent_agents: 0,
                ..Default::default()
            },
            "max_concurrent_agents",
        ),
    ] {
        let run = flock.worker().limits(limits).run();
        let error = tokio::time::timeout(Duration::from_secs(10), run)
            .await
            .expect("refused at once, not served")
            .expect_err("a zero limit is refused");
        assert!(
            error.to_string().contains(&format!("`{field}` is 0")),
            "{error}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Attempts started before a schedule-to-close timeout.

static C_TWICE_CALLS: AtomicU32 = AtomicU32::new(0);
static C_TWICE_LOCAL_CALLS: AtomicU32 = AtomicU32::new(0);

/// Attempt 1 times out after 1 s; attempt 2 starts ~100 ms later and is cut by the
/// schedule-to-close timeout (2.5 s: room for the server to start attempt 2 on a busy machine).
#[agent(
    local = false,
    timeout = "1s",
    schedule_to_close = "2500ms",
    retry(attempts = 2, initial_interval = "100ms")
)]
async fn c_times_out_twice(input: Text) -> Text {
    C_TWICE_CALLS.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(3)).await;
    input
}

/// The same as a local activity.
#[agent(
    local,
    timeout = "1s",
    schedule_to_close = "2500ms",
    retry(attempts = 2, initial_interval = "100ms")
)]
async fn c_times_out_twice_local(input: Text) -> Text {
    C_TWICE_LOCAL_CALLS.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(3)).await;
    input
}

#[flow]
async fn c_calls_twice(ctx: &FlowContext, input: Text) -> Result<Text, FlowError> {
    if input.text == "local" {
        ctx.call(c_times_out_twice_local, input).await
    } else {
        ctx.call(c_times_out_twice, input).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_reports_every_attempt_that_started() {
    for (executor, flock) in both("conformance-attempts-started").await {
        for (kind, calls) in [("remote", &C_TWICE_CALLS), ("local", &C_TWICE_LOCAL_CALLS)] {
            calls.store(0, Ordering::SeqCst);
            let error = bounded(executor, &flock, c_calls_twice, Text { text: kind.into() })
                .await
                .unwrap_err();
            let (_, attempts, _) = error.agent_error().expect("the agent failed");
            let made = calls.load(Ordering::SeqCst);
            assert_eq!(
                (attempts, made),
                (2, 2),
                "{executor}, {kind}: reported {attempts} attempts, {made} made: {error}"
            );
        }
        flock.shutdown().await.unwrap();
    }
}
