//! Agents that resume: `ctx.checkpoint(&state)` and `ctx.resume::<S>()` on the local executor,
//! on Temporal as a normal activity (heartbeat details) and as a local activity (the worker's
//! memory), the bad inputs on all three, and a worker SIGKILLed at step 7 of 10 whose agent
//! resumes at step 7 on the next worker.

use std::collections::HashMap;
use std::future::IntoFuture;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use flock::ErrorClass;
use flock::prelude::*;
use flock_tests::durability::{self, Steps, StepsDone, k_ten_steps};
use temporalio_client::WorkflowDescribeOptions;
use temporalio_common::UntypedWorkflow;

use super::support::spawn_worker;
use super::temporal::{client_only_flock, sdk_client, temporal_flock};

/// How long a Temporal run may take before it counts as hung.
const BOUND: Duration = Duration::from_secs(45);

/// What the agents here did, as `"<tag> <event>"` lines (each run has a tag of its own).
static LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn log(tag: &str, event: String) {
    LOG.lock().unwrap().push(format!("{tag} {event}"));
}

/// The events logged under `tag`, in order.
fn logged(tag: &str) -> Vec<String> {
    let prefix = format!("{tag} ");
    LOG.lock()
        .unwrap()
        .iter()
        .filter_map(|line| line.strip_prefix(&prefix).map(str::to_owned))
        .collect()
}

/// The local executor and a Temporal one; each case below runs on both, the Temporal one with an
/// agent that is a normal activity and with one that is a local activity.
async fn executors(queue: &str) -> [(&'static str, Flock); 2] {
    let local = Flock::builder()
        .model("test")
        .build()
        .await
        .expect("a local Flock");
    [("local", local), ("temporal", temporal_flock(queue).await)]
}

/// Waits for `run`, failing the test when it does not end within [`BOUND`].
async fn bounded<T>(
    what: &str,
    run: impl IntoFuture<Output = Result<T, flock::Error>>,
) -> Result<T, flock::Error> {
    tokio::time::timeout(BOUND, run.into_future())
        .await
        .unwrap_or_else(|_| panic!("{what}: the run did not end within {BOUND:?}"))
}

// ---------------------------------------------------------------------------------------------
// A failed attempt's checkpoint is where the next one starts.

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Plan {
    /// Tells this run's log lines apart
    pub tag: String,
    /// How many steps
    pub total: u32,
    /// `(attempt, step)`: that attempt fails (transiently) when it reaches that step
    pub fail: Vec<(u32, u32)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Outcome {
    /// The step the last attempt resumed at
    pub resumed_at: Option<u32>,
    /// The last attempt
    pub attempt: u32,
}

/// The checkpoint: the steps done so far.
#[derive(Debug, Serialize, Deserialize)]
struct Done {
    steps: Vec<u32>,
}

async fn run_steps(ctx: &AgentContext, plan: Plan) -> Result<Outcome, AgentError> {
    let mut done = ctx.resume::<Done>()?.unwrap_or(Done { steps: vec![] });
    let resumed_at = (!done.steps.is_empty()).then(|| done.steps.len() as u32 + 1);
    log(
        &plan.tag,
        format!("attempt {} resumes at {resumed_at:?}", ctx.attempt()),
    );
    for step in done.steps.len() as u32 + 1..=plan.total {
        if plan.fail.contains(&(ctx.attempt(), step)) {
            return Err(AgentError::transient(format!("failing at step {step}")));
        }
        log(&plan.tag, format!("step {step}"));
        done.steps.push(step);
        ctx.checkpoint(&done)?;
    }
    Ok(Outcome {
        resumed_at,
        attempt: ctx.attempt(),
    })
}

/// On Temporal a normal activity: its checkpoints go in the heartbeat details.
#[agent(
    local = false,
    heartbeat = "10s",
    retry(attempts = 3, initial_interval = "10ms")
)]
async fn k_steps(ctx: &AgentContext, plan: Plan) -> Result<Outcome, AgentError> {
    run_steps(ctx, plan).await
}

/// On Temporal a local activity: its checkpoints stay in the worker's memory.
#[agent(local = true, retry(attempts = 3, initial_interval = "10ms"))]
async fn k_steps_local(ctx: &AgentContext, plan: Plan) -> Result<Outcome, AgentError> {
    run_steps(ctx, plan).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_attempt_resumes_from_the_last_checkpoint() {
    for (executor, flock) in executors("checkpoint-resume").await {
        for (kind, local_activity) in [("activity", false), ("local activity", true)] {
            if executor == "local" && local_activity {
                continue; // one agent is enough where there are no local activities
            }
            let tag = format!("{executor}/{kind}");
            // attempt 1 fails at step 7 after checkpointing 1..=6; attempt 2 fails at once,
            // making no checkpoint of its own; attempt 3 must still resume at 7
            let plan = Plan {
                tag: tag.clone(),
                total: 10,
                fail: vec![(1, 7), (2, 7)],
            };
            let outcome = if local_activity {
                bounded(&tag, flock.run(k_steps_local, plan)).await
            } else {
                bounded(&tag, flock.run(k_steps, plan)).await
            }
            .unwrap_or_else(|e| panic!("{tag}: {e}"));
            assert_eq!(
                outcome,
                Outcome {
                    resumed_at: Some(7),
                    attempt: 3
                },
                "{tag}"
            );
            let mut expected = vec!["attempt 1 resumes at None".to_owned()];
            expected.extend((1..=6).map(|step| format!("step {step}")));
            expected.push("attempt 2 resumes at Some(7)".into());
            expected.push("attempt 3 resumes at Some(7)".into());
            expected.extend((7..=10).map(|step| format!("step {step}")));
            assert_eq!(logged(&tag), expected, "{tag}: every step ran once");
        }
        flock.shutdown().await.unwrap();
    }
}

/// Calls each agent twice in one run: the second call of an agent is a new call, which must not
/// resume from the checkpoints of the first (same run, same agent).
#[flow]
async fn k_twice(ctx: &FlowContext, plan: Plan) -> Result<Vec<Outcome>, FlowError> {
    Ok(vec![
        ctx.call(k_steps, plan.clone()).await?,
        ctx.call(k_steps, plan.clone()).await?,
        ctx.call(k_steps_local, plan.clone()).await?,
        ctx.call(k_steps_local, plan).await?,
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_call_does_not_resume_from_an_earlier_call() {
    for (executor, flock) in executors("checkpoint-fresh").await {
        let plan = Plan {
            tag: format!("{executor}/twice"),
            total: 3,
            fail: vec![],
        };
        let outcomes = bounded(executor, flock.run_flow(k_twice, plan))
            .await
            .unwrap_or_else(|e| panic!("{executor}: {e}"));
        let fresh = Outcome {
            resumed_at: None,
            attempt: 1,
        };
        assert_eq!(outcomes, vec![fresh; 4], "{executor}");
        flock.shutdown().await.unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// Bad inputs: each a clear error naming the agent, never a panic or a silent `None`.

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Case {
    /// Tells this run's log lines apart
    pub tag: String,
    /// Which mistake the agent makes
    pub case: String,
}

/// A checkpoint of one shape...
#[derive(Debug, Serialize, Deserialize)]
struct Position {
    step: u32,
}

/// ...and a different shape asked for on resume.
#[derive(Debug, Serialize, Deserialize)]
struct Cursor {
    page: String,
}

async fn make_mistake(ctx: &AgentContext, input: Case) -> Result<Case, AgentError> {
    log(&input.tag, format!("attempt {}", ctx.attempt()));
    match input.case.as_str() {
        "unserializable" => {
            // JSON object keys must be strings
            let state: HashMap<(u8, u8), u8> = HashMap::from([((1, 2), 3)]);
            ctx.checkpoint(&state)?;
        }
        "too large" => {
            ctx.checkpoint(&"x".repeat(3_000_000))?;
        }
        "wrong type" => {
            if ctx.attempt() == 1 {
                ctx.checkpoint(&Position { step: 3 })?;
                return Err(AgentError::transient("fails after its checkpoint"));
            }
            let cursor = ctx.resume::<Cursor>()?;
            return Err(AgentError::permanent(format!(
                "resume gave {cursor:?} instead of an error"
            )));
        }
        other => return Err(AgentError::invalid_input(format!("no case {other:?}"))),
    }
    Ok(input)
}

#[agent(local = false, retry(attempts = 3, initial_interval = "10ms"))]
async fn k_mistake(ctx: &AgentContext, input: Case) -> Result<Case, AgentError> {
    make_mistake(ctx, input).await
}

#[agent(local = true, retry(attempts = 3, initial_interval = "10ms"))]
async fn k_mistake_local(ctx: &AgentContext, input: Case) -> Result<Case, AgentError> {
    make_mistake(ctx, input).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_checkpoints_are_clear_errors_naming_the_agent() {
    let cases: [(&str, u32, &[&str]); 3] = [
        (
            "unserializable",
            1,
            &[
                "the checkpoint state `std::collections::hash::map::HashMap<(u8, u8), u8>` is not serializable",
                "key must be a string",
            ],
        ),
        (
            "too large",
            1,
            &[
                "the checkpoint state `alloc::string::String` is 3000002 bytes as JSON",
                "payload limit",
            ],
        ),
        (
            "wrong type",
            2,
            &[
                "the checkpoint an earlier attempt saved does not fit `integration::checkpoint::Cursor`",
                "missing field `page`",
            ],
        ),
    ];
    for (executor, flock) in executors("checkpoint-mistakes").await {
        for local_activity in [false, true] {
            let agent = if local_activity {
                "k_mistake_local"
            } else {
                "k_mistake"
            };
            for (case, attempts, expected) in cases {
                let where_ = format!("{executor}/{agent}/{case}");
                let input = Case {
                    tag: where_.clone(),
                    case: case.into(),
                };
                let error = if local_activity {
                    bounded(&where_, flock.run(k_mistake_local, input)).await
                } else {
                    bounded(&where_, flock.run(k_mistake, input)).await
                }
                .expect_err("the run fails");
                let (name, tried, cause) = error.agent_error().expect("an agent error");
                let ran: Vec<String> = (1..=attempts).map(|a| format!("attempt {a}")).collect();
                assert_eq!(
                    logged(&where_),
                    ran,
                    "{where_}: not retried after it: {cause}"
                );
                assert_eq!(name, agent, "{where_}");
                assert_eq!(
                    (tried, cause.class()),
                    (attempts, ErrorClass::Permanent),
                    "{where_}: {cause}"
                );
                let message = cause.message();
                assert!(
                    message.contains(&format!("agent `{agent}`: ")),
                    "{where_}: {message}"
                );
                for part in expected {
                    assert!(message.contains(part), "{where_}: {part:?} in {message}");
                }
            }
        }
        flock.shutdown().await.unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// A worker killed at step 7 of 10: the next attempt, on another worker, resumes at 7.

/// The checkpoint the server holds for the run's pending activity (its last heartbeat details).
async fn server_checkpoint(run_id: &str) -> Option<serde_json::Value> {
    let description = sdk_client()
        .await
        .get_workflow_handle::<UntypedWorkflow>(run_id.to_owned())
        .describe(WorkflowDescribeOptions::default())
        .await
        .ok()?;
    let activity = description.raw_description.pending_activities.first()?;
    let payload = activity.heartbeat_details.as_ref()?.payloads.first()?;
    let details: serde_json::Value = serde_json::from_slice(&payload.data).ok()?;
    details.get("checkpoint").cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_killed_at_step_7_resumes_at_step_7() {
    let task_queue = "checkpoint-kill";
    let file: PathBuf =
        std::env::temp_dir().join(format!("flock-checkpoint-{}", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let client = client_only_flock(task_queue).await;
    let mut first_worker = spawn_worker(task_queue, &file, &[]);
    let handle = client
        .run(
            k_ten_steps,
            Steps {
                total: 10,
                hang_at: 7,
            },
        )
        .start()
        .await
        .unwrap();
    let started = Instant::now();
    while durability::count(&file, "hang 7") == 0 {
        assert!(started.elapsed() < BOUND, "the agent never reached step 7");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The SDK sends heartbeats at most every 0.8 × the heartbeat timeout: kill the worker once
    // the server has the step-7 checkpoint, as it would have a moment later in production.
    while server_checkpoint(handle.id()).await != Some(serde_json::json!({ "next": 7 })) {
        assert!(
            started.elapsed() < BOUND,
            "the server never got the step-7 checkpoint"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    first_worker.kill().unwrap(); // SIGKILL
    first_worker.wait().unwrap();
    let killed = Instant::now();
    let mut second_worker = spawn_worker(task_queue, &file, &[]);
    let result = tokio::time::timeout(Duration::from_secs(90), handle.result()).await;
    second_worker.kill().unwrap();
    second_worker.wait().unwrap();
    let done = result
        .expect("the run completes after the worker is replaced")
        .unwrap();
    assert_eq!(
        done,
        StepsDone {
            resumed_at: Some(7),
            attempt: 2
        }
    );
    for step in 1..=10 {
        assert_eq!(
            durability::count(&file, &format!("step {step}")),
            1,
            "step {step} ran once"
        );
    }
    assert_eq!(durability::count(&file, "hang 7"), 1);
    eprintln!(
        "the run finished {:?} after the worker was killed",
        killed.elapsed()
    );
    let _ = std::fs::remove_file(&file);
}

/// Six checkpoints at once, the worker killed 2.5 s later with no heartbeat since: the next
/// attempt resumes after the sixth (a checkpoint reaches the server within a second; throttled
/// to 0.8 × the 10 s heartbeat timeout, only the first had, and the retry resumed there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_reach_the_server_within_a_second_of_being_made() {
    let task_queue = "checkpoint-flush";
    let file: PathBuf =
        std::env::temp_dir().join(format!("flock-checkpoint-flush-{}", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let client = client_only_flock(task_queue).await;
    let mut first_worker = spawn_worker(task_queue, &file, &[]);
    let handle = client
        .run(
            durability::k_six_then_wait,
            Steps {
                total: 6,
                hang_at: 0,
            },
        )
        .start()
        .await
        .unwrap();
    let started = Instant::now();
    while durability::count(&file, "six saved") == 0 {
        if started.elapsed() > BOUND {
            let record = client.run_record(handle.id()).await;
            panic!("the agent never saved its checkpoints: {record:#?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    first_worker.kill().unwrap(); // SIGKILL
    first_worker.wait().unwrap();
    let mut second_worker = spawn_worker(task_queue, &file, &[]);
    let result = tokio::time::timeout(Duration::from_secs(90), handle.result()).await;
    second_worker.kill().unwrap();
    second_worker.wait().unwrap();
    let done = result
        .expect("the run completes after the worker is replaced")
        .unwrap();
    assert_eq!(
        done,
        StepsDone {
            resumed_at: Some(7),
            attempt: 2
        },
        "the retry resumes after the sixth checkpoint"
    );
    let _ = std::fs::remove_file(&file);
}
