//! The agent loop, durable step by step: a declarative agent with tools runs its loop in the flow,
//! each model request (`<agent>.model`) and each tool call (`<tool>.tool`) a step of its own, on
//! both executors, against the OpenAI-protocol stand-in (`model/server.rs`). A worker killed
//! during tool call 3 re-runs nothing that finished; bad tools and bad models end the run with
//! an error that names them.

use std::future::IntoFuture;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use flock::model::{OpenAi, OpenAiConfig};
use flock::prelude::*;
use flock_tests::durability::{self, Plan, Trip, trip_flow};
use serde_json::json;

use super::model::server::{FakeOpenAi, Reply, answer, cut_off, tool_calls};
use super::support::{spawn_worker, wait_for};
use super::temporal::{client_only_flock, config, history};

/// How long a Temporal run may take before it counts as hung.
const BOUND: Duration = Duration::from_secs(60);

fn provider(server: &FakeOpenAi) -> OpenAi {
    OpenAi::new(OpenAiConfig {
        api_key: Some("sk-loop".into()),
        base_url: Some(server.base_url()),
        timeout: Duration::from_secs(10),
        ..OpenAiConfig::default()
    })
}

/// A local `Flock` and one on the test server (with its own worker on `queue`), each answered by
/// its own stand-in scripted with `replies`.
async fn both(queue: &str, replies: Vec<Reply>) -> [(&'static str, Flock, FakeOpenAi); 2] {
    super::temporal::on_both(queue, replies, |model| {
        Flock::builder()
            .provider(provider(model))
            .model("openai/gpt-4o-mini")
            .temporal(TemporalExecutorConfig {
                retry_interval: Duration::from_millis(10),
                ..Default::default()
            })
    })
    .await
}

/// The script of [`durability::trip_planner`]: one tool per model request, then the plan.
fn trip_script(ledger: &str) -> Vec<Reply> {
    let mut replies: Vec<Reply> = ["t_flight", "t_hotel", "t_car", "t_dinner"]
        .iter()
        .enumerate()
        .map(|(i, tool)| {
            let arguments = json!({ "leg": i + 1, "ledger": ledger }).to_string();
            tool_calls(&[(&format!("call_{}", i + 1), tool, &arguments)], 10)
        })
        .collect();
    replies.push(answer(r#"{"summary": "all four booked"}"#, 10, 5));
    replies
}

/// The steps of the trip, in order: a model request before each tool call and one after.
const TRIP_STEPS: [&str; 9] = [
    "trip_planner.model",
    "t_flight.tool",
    "trip_planner.model",
    "t_hotel.tool",
    "trip_planner.model",
    "t_car.tool",
    "trip_planner.model",
    "t_dinner.tool",
    "trip_planner.model",
];

fn ledger(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "flock-loop-{name}-{}-{}",
        std::process::id(),
        super::support::unique()
    ));
    let _ = std::fs::remove_file(&path);
    path
}

/// The test's acceptance case: a 4-tool agent whose worker is SIGKILLed during tool call 3. The
/// run completes; the model requests and tool calls that had finished ran exactly once (the
/// stand-in counts the requests, the tools note their calls in a ledger); the history lists
/// each step as its own activity. The same flow on the local executor: same result, same steps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_during_tool_call_3_re_runs_only_tool_call_3() {
    let (plan, key) = kill_during_tool_call_3("agent-loop-durability", None).await;

    // The same flow on the local executor: the same result and the same steps.
    let local_file = ledger("kill-local");
    let local_model = FakeOpenAi::start(trip_script(&local_file.to_string_lossy())).await;
    let local = Flock::builder()
        .provider(provider(&local_model))
        .model("openai/gpt-4o-mini")
        .build()
        .await
        .unwrap();
    let recorded = local
        .run_flow(
            trip_flow,
            Trip {
                city: "Oslo".into(),
            },
        )
        .recorded()
        .await;
    assert_eq!(recorded.result.unwrap(), plan);
    let steps = super::support::step_names(&recorded.record);
    assert_eq!(steps, TRIP_STEPS);
    let usage = recorded.record.usage();
    assert_eq!((usage.requests, usage.prompt_tokens), (5, 50));
    // the same key shape on the local executor: the run, then two parts naming the call
    let local_key = std::fs::read_to_string(&local_file)
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("t_car key ").map(str::to_owned))
        .unwrap();
    assert_eq!(
        local_key.split('/').count(),
        key.split('/').count(),
        "{local_key} / {key}"
    );
    assert!(
        local_key.starts_with(recorded.record.run_id.as_str()),
        "{local_key}"
    );
    let _ = std::fs::remove_file(&local_file);
}

/// The kill of [`a_worker_killed_during_tool_call_3_re_runs_only_tool_call_3`] with workers that
/// share a transcript store (a directory both worker processes reach): the new worker finds the
/// conversation the killed one kept, so no request is sent again whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_sharing_a_transcript_store_continue_each_others_conversations() {
    let dir = ledger("transcripts");
    let shared = vec![("FLOCK_TRANSCRIPT_DIR", dir.to_string_lossy().into_owned())];
    kill_during_tool_call_3("agent-loop-shared-transcripts", Some(shared)).await;
    assert!(
        std::fs::read_dir(&dir).unwrap().count() >= 3,
        "the workers kept the transcripts in the store"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The same with the store workers on several machines would share: an S3-protocol bucket
/// (moto), configured the way a deployment would (`ObjectStoreBlobStore::s3_from_env`, AWS_*).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_sharing_an_s3_transcript_store_continue_each_others_conversations() {
    use futures::TryStreamExt;
    use object_store::ObjectStore;
    let moto = super::support::Moto::start();
    moto.create_bucket("flock-transcripts");
    let shared = vec![
        ("FLOCK_TRANSCRIPT_BUCKET", "flock-transcripts".to_owned()),
        ("AWS_ENDPOINT", format!("http://127.0.0.1:{}", moto.port)),
        ("AWS_ALLOW_HTTP", "true".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "flock-test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "flock-test".to_owned()),
    ];
    kill_during_tool_call_3("agent-loop-s3-transcripts", Some(shared)).await;
    let kept: Vec<_> = moto
        .store("flock-transcripts")
        .list(Some(&object_store::path::Path::from("transcripts")))
        .try_collect()
        .await
        .unwrap();
    assert!(
        kept.len() >= 3,
        "the workers kept the transcripts in the bucket: {kept:?}"
    );
}

/// The trip flow on a worker process SIGKILLed during tool call 3, then a new worker (both with
/// the transcript store the environment `transcripts` configures, if any). Checks what ran how often; gives the plan and
/// tool call 3's idempotency key.
async fn kill_during_tool_call_3(
    task_queue: &str,
    transcripts: Option<Vec<(&'static str, String)>>,
) -> (Plan, String) {
    let file = ledger(task_queue);
    let path = file.to_string_lossy().into_owned();
    let model = FakeOpenAi::start(trip_script(&path)).await;
    let client = client_only_flock(task_queue).await;
    let mut env = vec![("FLOCK_MODEL_URL", model.base_url())];
    let shared = transcripts.is_some();
    env.extend(transcripts.unwrap_or_default());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut first_worker = spawn_worker(task_queue, &file, &env);
    let handle = client
        .run_flow(
            trip_flow,
            Trip {
                city: "Oslo".into(),
            },
        )
        .start()
        .await
        .unwrap();
    wait_for("tool call 3 to start", BOUND, || {
        durability::count(&file, "t_car start") == 1
    })
    .await;
    first_worker.kill().unwrap(); // SIGKILL
    first_worker.wait().unwrap();
    let mut second_worker = spawn_worker(task_queue, &file, &env);
    let result = tokio::time::timeout(BOUND, handle.result()).await;
    second_worker.kill().unwrap();
    second_worker.wait().unwrap();
    let plan = result
        .expect("the run completes after the worker is replaced")
        .unwrap();
    assert_eq!(plan.summary, "all four booked");
    assert_eq!(model.received().len(), 5, "each model request ran once");
    assert_eq!(model.unused_replies(), 0);
    for (event, times) in [
        ("t_flight", 1),
        ("t_hotel", 1),
        ("t_car start", 2), // the killed call, then its retry
        ("t_car", 1),
        ("t_dinner", 1),
    ] {
        assert_eq!(
            durability::count(&file, event),
            times,
            "`{event}` in the ledger"
        );
    }
    // the killed call and its retry had one idempotency key, another call another
    let keys = |tool: &str| -> Vec<String> {
        std::fs::read_to_string(&file)
            .unwrap()
            .lines()
            .filter_map(|line| {
                line.strip_prefix(&format!("{tool} key "))
                    .map(str::to_owned)
            })
            .collect()
    };
    let (car, flight) = (keys("t_car"), keys("t_flight"));
    assert_eq!(car.len(), 2, "{car:?}");
    assert_eq!(car[0], car[1], "a retry keeps its call's key");
    assert_eq!(flight.len(), 1);
    assert_ne!(car[0], flight[0], "each call has its own key");
    assert!(car[0].starts_with(handle.id()), "{car:?}");
    // without a shared store the new worker does not hold the conversation the killed one
    // kept: its first request finds no transcript, asks nothing, and the loop sends the
    // conversation whole; with one, it finds it
    let mut expected = TRIP_STEPS.to_vec();
    if !shared {
        expected.insert(6, "trip_planner.model");
    }
    let history = history(handle.id()).await;
    assert_eq!(history.activities, expected);
    // the conversation grows by one exchange per request: request N carries 2N + 1 messages
    let sizes: Vec<usize> = model
        .received()
        .iter()
        .map(|r| r.messages().len())
        .collect();
    assert_eq!(sizes, [2, 4, 6, 8, 10]);

    let _ = std::fs::remove_file(&file);
    (plan, car[0].clone())
}

// ---------------------------------------------------------------------------------------------
// Bad input: tools and models that misbehave, on both executors.

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Question {
    /// What to answer
    pub question: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Reply2 {
    /// The answer
    pub answer: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct Count {
    /// How many
    pub n: u32,
}

static EXPLODED: AtomicU32 = AtomicU32::new(0);

/// Panics.
#[tool(retry(attempts = 3, initial_interval = "10ms"))]
async fn explode(args: Count) -> String {
    EXPLODED.fetch_add(1, Ordering::SeqCst);
    panic!("the tool broke on {}", args.n)
}

/// Answers with `n` bytes.
#[tool]
async fn flood(args: Count) -> String {
    "x".repeat(args.n as usize)
}

/// Doubles a number.
#[tool]
async fn double(args: Count) -> u32 {
    args.n * 2
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct Text {
    /// Some text
    pub text: String,
}

/// Echoes the text (a local step: its input and output share one history record).
#[tool(local)]
async fn echo_local(args: Text) -> String {
    args.text
}

/// Answer the question, using the tools where they help.
#[agent(tools = [explode, flood, double, echo_local], retry(attempts = 1))]
async fn tool_user(input: Question) -> Reply2;

fn question() -> Question {
    Question {
        question: "what is twice 21?".into(),
    }
}

/// How a run of `tool_user` ended, within [`BOUND`].
async fn run_tool_user(flock: &Flock) -> Result<Reply2, flock::Error> {
    tokio::time::timeout(BOUND, flock.run(tool_user, question()).into_future())
        .await
        .expect("the run ends")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_that_panics_fails_the_run_naming_the_tool_on_both_executors() {
    let script = vec![tool_calls(&[("c1", "explode", r#"{"n": 7}"#)], 5)];
    for (executor, flock, model) in both("agent-loop-panic", script).await {
        EXPLODED.store(0, Ordering::SeqCst);
        let error = run_tool_user(&flock).await.unwrap_err().to_string();
        assert!(
            error.contains("tool `explode` panicked: the tool broke on 7")
                && error.contains("explode.tool"),
            "{executor}: {error}"
        );
        // a panic is a bug: permanent, not retried, and the model is not asked again
        assert_eq!(EXPLODED.load(Ordering::SeqCst), 1, "{executor}");
        assert_eq!(model.received().len(), 1, "{executor}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tool_calls_are_answered_to_the_model_on_both_executors() {
    let script = vec![
        tool_calls(
            &[
                ("c1", "double", r#"{"n": "twenty-one"}"#), // does not fit the schema
                ("c2", "no_such_tool", "{}"),
                ("c3", "double", "{not json"),
                ("c4", "double", r#"{"n": 21}"#),
            ],
            5,
        ),
        answer(r#"{"answer": "42"}"#, 5, 5),
    ];
    for (executor, flock, model) in both("agent-loop-bad-calls", script).await {
        let recorded = tokio::time::timeout(
            BOUND,
            flock.run(tool_user, question()).recorded().into_future(),
        )
        .await
        .expect("the run ends");
        assert_eq!(recorded.result.unwrap().answer, "42", "{executor}");
        // the record names the model that answered each request (the stand-in's tool-call reply
        // names none, its answer does)
        let answered: Vec<Option<&str>> = recorded
            .record
            .steps_of("tool_user.model")
            .map(|step| step.model())
            .collect();
        assert_eq!(
            answered,
            [None, Some("gpt-4o-mini-2024-07-18")],
            "{executor}"
        );
        let received = model.received();
        assert_eq!(received.len(), 2, "{executor}");
        let answers: Vec<String> = received[1].messages()[3..]
            .iter()
            .map(|m| m["content"].as_str().unwrap_or_default().to_owned())
            .collect();
        assert!(
            answers[0].starts_with("error: the arguments of tool `double` do not match its schema"),
            "{executor}: {answers:?}"
        );
        assert_eq!(answers[1], "error: there is no tool named `no_such_tool`");
        assert!(
            answers[2].starts_with("error: the arguments are not valid JSON"),
            "{executor}: {answers:?}"
        );
        assert_eq!(answers[3], "42", "{executor}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_cut_off_at_the_token_limit_is_named_so_on_both_executors() {
    let script = vec![cut_off(answer(r#"{"answer": "the first half of"#, 5, 16))];
    for (executor, flock, model) in both("agent-loop-cut-off", script).await {
        let error = run_tool_user(&flock).await.unwrap_err().to_string();
        assert!(
            error.contains("agent `tool_user.model`")
                && error.contains("the answer was cut off at the model's output token limit (finish_reason `length`, after 16 completion tokens)"),
            "{executor}: {error}"
        );
        // `tool_user` allows one attempt: the request is not repeated, nor re-asked as invalid JSON
        assert_eq!(model.received().len(), 1, "{executor}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_answer_over_the_payload_limit_fails_the_run_on_both_executors() {
    let script = vec![tool_calls(&[("c1", "flood", r#"{"n": 3000000}"#)], 5)];
    for (executor, flock, model) in both("agent-loop-flood", script).await {
        let error = run_tool_user(&flock).await.unwrap_err().to_string();
        assert!(
            error.contains("the output of tool `flood` is 3000002 bytes as JSON, over the"),
            "{executor}: {error}"
        );
        assert_eq!(model.received().len(), 1, "{executor}");
    }
}

/// A local tool step whose input and output each fit but together do not (one history record on
/// Temporal, where the run would otherwise stay Running): the run fails naming the tool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_tool_call_over_the_limit_with_its_input_fails_the_run_on_both_executors() {
    let text = "y".repeat(1_200_000);
    let arguments = json!({ "text": text }).to_string();
    let script = vec![tool_calls(&[("c1", "echo_local", &arguments)], 5)];
    for (executor, flock, model) in both("agent-loop-local-record", script).await {
        let error = run_tool_user(&flock).await.unwrap_err().to_string();
        assert!(
            error.contains("tool `echo_local` runs as a local activity")
                && error.contains("drop `local` from `#[tool(local)]`"),
            "{executor}: {error}"
        );
        assert_eq!(model.received().len(), 1, "{executor}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_never_stops_calling_tools_fails_after_the_bound_on_both_executors() {
    let script: Vec<Reply> = (0..20)
        .map(|i| tool_calls(&[(&format!("c{i}"), "double", r#"{"n": 1}"#)], 1))
        .collect();
    for (executor, flock, model) in both("agent-loop-endless", script).await {
        let error = run_tool_user(&flock).await.unwrap_err().to_string();
        assert!(
            error.contains("agent `tool_user`")
                && error.contains("kept calling tools after 8 rounds"),
            "{executor}: {error}"
        );
        assert_eq!(model.received().len(), 9, "{executor}");
    }
}

// ---------------------------------------------------------------------------------------------
// History that stays small: a long session's model requests carry only their new messages.

/// Reads a page of the report: `~3 KB` of text, so the conversation grows by that per round.
#[tool]
async fn read_page(args: Count) -> String {
    format!(
        "page {}: {}",
        args.n,
        "lorem ipsum dolor sit amet ".repeat(110)
    )
}

/// Read the pages the report needs, then answer.
#[agent(tools = [read_page], max_tool_rounds = 1000, retry(attempts = 1))]
async fn long_reader(input: Question) -> Reply2;

/// The history of run `run_id`: its size (every event, as stored), its events, and the bytes of
/// each activity's input and result, by activity type.
async fn history_bytes(run_id: &str) -> (usize, usize, Vec<(String, usize, usize)>) {
    use prost::Message;
    use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;
    let client = super::temporal::sdk_client().await;
    let events = client
        .get_workflow_handle::<temporalio_common::UntypedWorkflow>(run_id.to_owned())
        .fetch_history(temporalio_client::WorkflowFetchHistoryOptions::default())
        .into_events()
        .await
        .expect("history");
    let payloads = |p: &Option<temporalio_common::protos::temporal::api::common::v1::Payloads>| {
        p.as_ref().map_or(0, |p| {
            p.payloads.iter().map(|p| p.data.len()).sum::<usize>()
        })
    };
    let (mut total, count) = (0, events.len());
    let mut steps: Vec<(String, usize, usize)> = Vec::new();
    let mut by_event = std::collections::HashMap::new();
    for event in events {
        total += event.encoded_len();
        match &event.attributes {
            Some(Attributes::ActivityTaskScheduledEventAttributes(a)) => {
                let name = a
                    .activity_type
                    .as_ref()
                    .map(|t| t.name.clone())
                    .unwrap_or_default();
                by_event.insert(event.event_id, steps.len());
                steps.push((name, payloads(&a.input), 0));
            }
            Some(Attributes::ActivityTaskCompletedEventAttributes(a)) => {
                if let Some(&i) = by_event.get(&a.scheduled_event_id) {
                    steps[i].2 = payloads(&a.result);
                }
            }
            _ => {}
        }
    }
    (total, count, steps)
}

/// The number of model requests of the long session (each after one tool call, the last one
/// answering): the conversation grows to ~3 KB × this. `FLOCK_LONG_SESSION=200` is the
/// measured session of BENCHMARKS.md (~600 KB of conversation); CI runs 60.
fn long_session_requests() -> usize {
    std::env::var("FLOCK_LONG_SESSION")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(60)
}

/// A long session on both executors: the same answer; on Temporal each model request's input
/// in the history holds only the messages added since the last (a tool call and its ~3 KB
/// answer), however long the conversation has grown, where sending the whole conversation
/// would grow the history with the square of its length.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_sessions_history_grows_with_its_new_messages_only() {
    let requests = long_session_requests();
    let mut script: Vec<Reply> = (1..requests)
        .map(|n| {
            let arguments = format!(r#"{{"n": {n}}}"#);
            tool_calls(&[(&format!("page_{n}"), "read_page", &arguments)], 1)
        })
        .collect();
    script.push(answer(r#"{"answer": "read them all"}"#, 1, 1));
    for (executor, flock, model) in both("agent-loop-long", script).await {
        let handle = flock
            .run(long_reader, question())
            .start()
            .await
            .expect("the session starts");
        let run_id = handle.id().to_owned();
        let reply = tokio::time::timeout(Duration::from_secs(300), handle.result())
            .await
            .expect("the session ends")
            .unwrap();
        assert_eq!(reply.answer, "read them all", "{executor}");
        let received = model.received();
        assert_eq!(received.len(), requests, "{executor}");
        let last = serde_json::to_vec(received[requests - 1].messages())
            .unwrap()
            .len();
        assert!(
            last > requests * 3000,
            "{executor}: the conversation grew to {last} bytes"
        );
        if executor == "local" {
            continue;
        }
        let (total, events, steps) = history_bytes(&run_id).await;
        let model_inputs: Vec<usize> = steps
            .iter()
            .filter(|(name, _, _)| name == "long_reader.model")
            .map(|(_, input, _)| *input)
            .collect();
        assert_eq!(model_inputs.len(), requests, "one step per model request");
        // after the first, each request sends one tool call's exchange: never the conversation
        let largest = model_inputs[1..].iter().max().copied().unwrap_or(0);
        assert!(
            largest < 8 * 1024,
            "a model request's input grew with the conversation: {model_inputs:?}"
        );
        let whole = requests * requests * 3000 / 2;
        println!(
            "long session: {requests} model requests, conversation {last} bytes; history {total} bytes in {events} events ({} bytes and {:.1} events per step); re-sending the conversation: ~{whole} bytes",
            total / steps.len(),
            events as f64 / steps.len() as f64
        );
        assert!(
            total < requests * 12 * 1024,
            "the history ({total} bytes) is not linear in the session"
        );
    }
}

/// Adds one.
#[tool]
async fn tally(args: Count) -> u32 {
    args.n + 1
}

/// Count with the tool until the count is reached, then say the count.
#[agent(
    tools = [tally],
    max_tool_rounds = 5000,
    continue_as_new_after = 100,
    retry(attempts = 1)
)]
async fn long_counter(input: Question) -> Reply2;

/// The steps (model requests and tool calls) of the session of
/// [`a_long_session_moves_on_in_fresh_histories_and_answers_right`]: `FLOCK_SESSION_STEPS=2000`
/// is the documented long one; CI runs 400.
fn session_steps() -> usize {
    std::env::var("FLOCK_SESSION_STEPS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(400)
}

/// A session longer than one history holds (`continue_as_new_after = 100`) moves on, invisibly
/// to the agent: after 100 steps into a child run of `flock.session`, which continues as new
/// every 100 steps, carrying the whole conversation (the model sees it grow by one exchange per
/// request, never lose one). The same answer and the same conversation on both executors; on
/// Temporal no history holds more than 100 steps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_session_moves_on_in_fresh_histories_and_answers_right() {
    let steps = session_steps();
    let rounds = steps / 2;
    let script = tally_script(rounds);
    for (executor, flock, model) in both("agent-loop-session", script).await {
        let recorded = tokio::time::timeout(
            Duration::from_secs(600),
            flock.run(long_counter, question()).recorded().into_future(),
        )
        .await
        .expect("the session ends");
        let reply = recorded
            .result
            .unwrap_or_else(|e| panic!("{executor}: {e}"));
        assert_eq!(reply.answer, rounds.to_string(), "{executor}");
        assert_whole_conversations(executor, &model, rounds);
        // the tool's answers reached the model in order, across the moves
        let answers = model.received().pop().unwrap().tool_answers();
        let counted: Vec<String> = (1..=rounds).map(|n| n.to_string()).collect();
        assert_eq!(answers, counted, "{executor}");
        // the flow's own history holds the first 100 steps and the session's child run
        let record = &recorded.record;
        let own = record.steps.len();
        assert_eq!(own, 100, "{executor}: steps in the flow's own run");
        assert_eq!(record.children.len(), 1, "{executor}");
        let session = &record.children[0];
        assert_eq!(session.name, "flock.session", "{executor}");
        // the session's runs, newest first: each at most 100 steps, all of them the rest
        let mut runs = vec![session];
        while let Some(previous) = &runs.last().unwrap().previous {
            runs.push(previous);
        }
        let per_run: Vec<usize> = runs.iter().rev().map(|r| r.steps.len()).collect();
        assert!(per_run.iter().all(|&n| n <= 100), "{executor}: {per_run:?}");
        assert_eq!(
            own + per_run.iter().sum::<usize>(),
            2 * rounds + 1,
            "{executor}: {per_run:?}"
        );
        if executor == "temporal" {
            let history = history(&session.run_id).await;
            assert!(
                history.activities.len() <= 100,
                "{}",
                history.activities.len()
            );
        }
        println!(
            "{executor}: a session of {} steps ran in 1 + {} histories of {own} / {per_run:?} steps",
            2 * rounds + 1,
            per_run.len()
        );
    }
}

/// `rounds` calls of `tally`, one per model request, then the count as the answer.
fn tally_script(rounds: usize) -> Vec<Reply> {
    let mut script: Vec<Reply> = (0..rounds)
        .map(|n| {
            let arguments = format!(r#"{{"n": {n}}}"#);
            tool_calls(&[(&format!("t{n}"), "tally", &arguments)], 1)
        })
        .collect();
    script.push(answer(&format!(r#"{{"answer": "{rounds}"}}"#), 1, 1));
    script
}

/// Every request carried the whole conversation so far: it grew by one exchange each.
fn assert_whole_conversations(executor: &str, model: &FakeOpenAi, rounds: usize) {
    let sizes: Vec<usize> = model
        .received()
        .iter()
        .map(|r| r.messages().len())
        .collect();
    let expected: Vec<usize> = (0..=rounds).map(|n| 2 + 2 * n).collect();
    assert_eq!(sizes, expected, "{executor}");
}

/// Count with the tool until the count is reached, then say the count (no bound of its own: its
/// session moves on when Temporal suggests it).
#[agent(tools = [tally], max_tool_rounds = 5000, retry(attempts = 1))]
async fn auto_counter(input: Question) -> Reply2;

/// Without `continue_as_new_after` a session moves on when Temporal suggests continuing as new
/// (the dev server's default: at 4 Ki events, ~680 steps): 800 steps on Temporal move once, and
/// answer right; on the local executor (no history) they stay in the flow's run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_moves_on_when_temporal_suggests_it() {
    let rounds = 400;
    let script = tally_script(rounds);
    for (executor, flock, model) in both("agent-loop-session-auto", script).await {
        let recorded = tokio::time::timeout(
            Duration::from_secs(600),
            flock.run(auto_counter, question()).recorded().into_future(),
        )
        .await
        .expect("the session ends");
        let reply = recorded
            .result
            .unwrap_or_else(|e| panic!("{executor}: {e}"));
        assert_eq!(reply.answer, rounds.to_string(), "{executor}");
        assert_whole_conversations(executor, &model, rounds);
        let record = &recorded.record;
        let own = record.steps.len();
        if executor == "local" {
            assert_eq!((own, record.children.len()), (2 * rounds + 1, 0));
            continue;
        }
        assert_eq!(record.children.len(), 1, "the session moved on once");
        let session = &record.children[0];
        assert_eq!(own + session.steps.len(), 2 * rounds + 1);
        assert!(own < 2 * rounds, "{own}");
        println!(
            "temporal: a session of {} steps moved on after {own}, when Temporal suggested it",
            2 * rounds + 1
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Scripted test models: tool calls and answers per agent, offline.

/// A `TestModel` scripts `tool_user`: a tool call, an answer that does not fit its schema (the
/// loop re-asks, as with a real model), then nothing (the generated value). The same steps and
/// the same result on both executors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scripted_test_model_drives_tool_calls_and_answers_on_both_executors() {
    use flock::model::{TestAnswer, TestModel};
    let script = || {
        TestModel::new().answers(
            "tool_user",
            [
                TestAnswer::tool_call("double", json!({ "n": 21 })),
                TestAnswer::output(json!({ "answer": 42 })), // a number, not a string
            ],
        )
    };
    let local = Flock::builder()
        .register_model("scripted", script())
        .model("scripted")
        .build()
        .await
        .unwrap();
    let temporal = Flock::builder()
        .register_model("scripted", script())
        .model("scripted")
        .local_debug(false)
        .queue_served_elsewhere(super::conformance::POOL_QUEUE)
        .temporal(config("agent-loop-scripted"))
        .build()
        .await
        .unwrap();
    for (executor, flock) in [("local", local), ("temporal", temporal)] {
        let recorded = tokio::time::timeout(
            BOUND,
            flock.run(tool_user, question()).recorded().into_future(),
        )
        .await
        .expect("the run ends");
        let reply = recorded.result.expect("answered");
        assert_eq!(reply.answer, "answer example", "{executor}");
        let steps = super::support::step_names(&recorded.record);
        assert_eq!(
            steps,
            [
                "tool_user.model",
                "double.tool",
                "tool_user.model",
                "tool_user.model"
            ],
            "{executor}: the tool call, the rejected answer, the re-ask"
        );
    }
}
