//! The local executor: the seed pipeline, retry classes, timeouts, fan-out, child flows, schemas
//! and the run record.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use flock::model::{FunctionModel, ModelResponse, Role};
use flock::prelude::*;
use flock::{ErrorClass, RunRecord};
use serde_json::json;

// ---------------------------------------------------------------------------------------------
// The seed pipeline: research -> summarize, declarative agents.

// Defined in the examples crate (so the conformance tests run the very same code).
use flock_examples::research::{Summary, Topic, research_agent, research_flow, summarize_agent};

/// Summarize the findings (an agent with a short retry policy, for the InvalidOutput test).
#[agent(output_retries = 1, retry(attempts = 2, initial_interval = "1ms"))]
async fn strict_summary(input: flock_examples::research::Findings) -> Summary;

#[flow]
async fn strict_flow(ctx: &FlowContext, topic: Topic) -> Result<Summary, FlowError> {
    let findings = ctx.call(research_agent, topic).await?;
    ctx.call(strict_summary, findings).await
}

async fn test_flock() -> Flock {
    Flock::builder()
        .model("test")
        .build()
        .await
        .expect("flock builds")
}

#[tokio::test]
async fn seed_chain_runs_with_test_model() {
    let flock = test_flock().await;
    let recorded = flock
        .run(
            research_agent,
            Topic {
                topic: "Temporal workflows".into(),
            },
        )
        .recorded()
        .await;
    let summary: Summary = recorded.result.expect("chain succeeds");
    assert_eq!(summary.summary, "summary example");
    let record = recorded.record;
    assert_eq!(record.name, "research_agent.chain");
    let agents: Vec<_> = record.steps.iter().map(|s| s.agent.as_str()).collect();
    assert_eq!(agents, ["research_agent", "summarize_agent"]);
    assert_eq!(
        record.steps[0].input,
        json!({ "topic": "Temporal workflows" })
    );
    assert_eq!(
        record.steps[0].output,
        Some(json!({ "findings": "findings example" }))
    );
    assert_eq!(
        record.steps[1].input,
        json!({ "findings": "findings example" })
    );
    assert!(
        record.usage().requests == 2,
        "one model call per agent: {:?}",
        record.usage()
    );
}

#[tokio::test]
async fn seed_flow_runs_with_function_model() {
    let flock = Flock::builder()
        .register_model(
            "fn/answer",
            FunctionModel::new(|request| {
                let system = &request.messages[0];
                assert_eq!(system.role, Role::System);
                let input: serde_json::Value = serde_json::from_str(
                    request.messages[1]
                        .content
                        .rsplit("Input:\n")
                        .next()
                        .unwrap(),
                )
                .unwrap();
                match request.agent.as_str() {
                    "research_agent" => {
                        assert!(
                            system
                                .content
                                .starts_with("Research the topic and report what you found.")
                        );
                        assert!(
                            system.content.contains("Research findings"),
                            "output schema in prompt"
                        );
                        let topic = input["topic"].as_str().unwrap();
                        Ok(ModelResponse::text(
                            json!({ "findings": format!("{topic} are durable") }).to_string(),
                        ))
                    }
                    "summarize_agent" => {
                        let findings = input["findings"].as_str().unwrap();
                        Ok(ModelResponse::text(
                            json!({ "summary": format!("In short: {findings}.") }).to_string(),
                        ))
                    }
                    other => panic!("unexpected agent {other}"),
                }
            }),
        )
        .model("fn/answer")
        .build()
        .await
        .unwrap();
    let summary = flock
        .run_flow(
            research_flow,
            Topic {
                topic: "Workflows".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(summary.summary, "In short: Workflows are durable.");
    let chained = flock
        .run(
            research_agent,
            Topic {
                topic: "Chains".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(chained.summary, "In short: Chains are durable.");
}

#[tokio::test]
async fn invalid_model_answer_is_repaired_then_invalid_output() {
    let calls = std::sync::Arc::new(AtomicU32::new(0));
    let seen = calls.clone();
    let flock = Flock::builder()
        .register_model(
            "fn/flaky",
            FunctionModel::new(move |request| {
                let n = seen.fetch_add(1, Ordering::SeqCst);
                if request.messages.len() > 2 {
                    let last = request.messages.last().unwrap();
                    assert!(
                        last.content.contains("rejected"),
                        "the re-ask carries the error: {}",
                        last.content
                    );
                }
                if n == 0 {
                    Ok(ModelResponse::text("{\"wrong\": 1}"))
                } else {
                    Ok(ModelResponse::text("{\"findings\": \"fixed\"}"))
                }
            }),
        )
        .force_model("fn/flaky")
        .temporal(TemporalExecutorConfig {
            retry_interval: Duration::from_millis(1),
            ..Default::default()
        })
        .build()
        .await
        .unwrap();
    let recorded = flock
        .run_flow(strict_flow, Topic { topic: "x".into() })
        .recorded()
        .await;
    recorded
        .result
        .expect_err("strict_summary gets findings-shaped answers, never a summary");
    // research: 1 bad + 1 good answer; summarize: every answer misses `summary`.
    assert_eq!(
        recorded.record.steps[0].output,
        Some(json!({ "findings": "fixed" }))
    );
    let summarize = &recorded.record.steps[1];
    let error = summarize.error.as_ref().unwrap();
    assert_eq!(error.class(), ErrorClass::InvalidOutput);
    assert!(error.message().contains("strict_summary"), "{error}");
    assert_eq!(
        summarize.attempts.len(),
        2,
        "InvalidOutput is retried by the agent's policy"
    );
}

// ---------------------------------------------------------------------------------------------
// Retry classes.

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Job {
    /// Which behaviour to show
    pub id: u32,
}

static TRANSIENT_CALLS: AtomicU32 = AtomicU32::new(0);

#[agent(retry(
    attempts = 3,
    initial_interval = "40ms",
    backoff = 2.0,
    max_interval = "1s"
))]
async fn flaky(ctx: &AgentContext, input: Job) -> Result<Job, AgentError> {
    TRANSIENT_CALLS.fetch_add(1, Ordering::SeqCst);
    if ctx.attempt() < 3 {
        return Err(AgentError::transient(format!(
            "attempt {} failed",
            ctx.attempt()
        )));
    }
    Ok(input)
}

#[flow]
async fn call_flaky(ctx: &FlowContext, job: Job) -> Result<Job, FlowError> {
    ctx.call(flaky, job).await
}

fn gaps(record: &RunRecord) -> Vec<Duration> {
    let attempts = &record.steps[0].attempts;
    attempts
        .windows(2)
        .map(|w| w[1].started - (w[0].started + w[0].duration))
        .collect()
}

#[tokio::test]
async fn transient_fails_twice_then_succeeds_with_growing_delays() {
    let flock = test_flock().await;
    let recorded = flock.run_flow(call_flaky, Job { id: 1 }).recorded().await;
    assert_eq!(recorded.result.unwrap(), Job { id: 1 });
    let step = &recorded.record.steps[0];
    assert_eq!(step.attempts.len(), 3);
    assert_eq!(
        step.attempts[0].error.as_ref().unwrap().class(),
        ErrorClass::Transient
    );
    assert!(step.attempts[2].error.is_none());
    let gaps = gaps(&recorded.record);
    assert!(
        gaps[0] >= Duration::from_millis(40),
        "first delay {:?}",
        gaps[0]
    );
    assert!(
        gaps[1] >= Duration::from_millis(80),
        "second delay {:?}",
        gaps[1]
    );
    assert!(gaps[1] > gaps[0]);
}

static PERMANENT_CALLS: AtomicU32 = AtomicU32::new(0);

#[agent(retry(attempts = 5, initial_interval = "1ms"))]
async fn broken(input: Job) -> Result<Job, AgentError> {
    PERMANENT_CALLS.fetch_add(1, Ordering::SeqCst);
    let _ = input;
    Err(AgentError::permanent("the account is closed"))
}

#[flow]
async fn call_broken(ctx: &FlowContext, job: Job) -> Result<Job, FlowError> {
    ctx.call(broken, job).await
}

#[tokio::test]
async fn permanent_error_runs_once() {
    let flock = test_flock().await;
    let before = PERMANENT_CALLS.load(Ordering::SeqCst);
    let error = flock
        .run_flow(call_broken, Job { id: 2 })
        .await
        .unwrap_err();
    assert_eq!(PERMANENT_CALLS.load(Ordering::SeqCst) - before, 1);
    let (agent, attempts, cause) = error.agent_error().unwrap();
    assert_eq!((agent, attempts), ("broken", 1));
    assert_eq!(cause.class(), ErrorClass::Permanent);
    let text = error.to_string();
    assert!(
        text.contains("call_broken") && text.contains("agent `broken` failed after 1 attempt"),
        "{text}"
    );
}

#[agent(retry(attempts = 2, initial_interval = "1ms"))]
async fn throttled(ctx: &AgentContext, input: Job) -> Result<Job, AgentError> {
    if ctx.attempt() == 1 {
        return Err(AgentError::rate_limited(
            Duration::from_millis(250),
            "429 slow down",
        ));
    }
    Ok(input)
}

#[flow]
async fn call_throttled(ctx: &FlowContext, job: Job) -> Result<Job, FlowError> {
    ctx.call(throttled, job).await
}

#[tokio::test]
async fn rate_limited_waits_retry_after() {
    let flock = test_flock().await;
    let recorded = flock
        .run_flow(call_throttled, Job { id: 3 })
        .recorded()
        .await;
    recorded.result.unwrap();
    let gap = gaps(&recorded.record)[0];
    assert!(gap >= Duration::from_millis(250), "waited only {gap:?}");
    assert!(gap < Duration::from_millis(1000), "waited {gap:?}");
}

#[agent(retry(attempts = 3, initial_interval = "1ms"))]
async fn always_down(ctx: &AgentContext, input: Job) -> Result<Job, AgentError> {
    let _ = input;
    Err(AgentError::transient(format!(
        "service down (attempt {})",
        ctx.attempt()
    )))
}

#[flow]
async fn call_always_down(ctx: &FlowContext, job: Job) -> Result<Job, FlowError> {
    ctx.call(always_down, job).await
}

#[tokio::test]
async fn exhausted_attempts_name_the_agent_and_last_cause() {
    let flock = test_flock().await;
    let error = flock
        .run_flow(call_always_down, Job { id: 4 })
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains(
            "agent `always_down` failed after 3 attempts: transient error: service down (attempt 3)"
        ),
        "{text}"
    );
}

#[agent(retry(attempts = 2, initial_interval = "1ms", non_retryable = ["InvalidOutput"]))]
async fn picky(input: Job) -> Result<Job, AgentError> {
    let _ = input;
    Err(AgentError::invalid_output("not today"))
}

#[flow]
async fn call_picky(ctx: &FlowContext, job: Job) -> Result<Job, FlowError> {
    ctx.call(picky, job).await
}

#[tokio::test]
async fn non_retryable_list_stops_retries() {
    let flock = test_flock().await;
    let error = flock.run_flow(call_picky, Job { id: 5 }).await.unwrap_err();
    assert_eq!(error.agent_error().unwrap().1, 1);
}

// ---------------------------------------------------------------------------------------------
// Timeouts, heartbeats, panics.

#[agent(timeout = "50ms", retry(attempts = 2, initial_interval = "1ms"))]
async fn slow(input: Job) -> Job {
    tokio::time::sleep(Duration::from_secs(5)).await;
    input
}

#[flow]
async fn call_slow(ctx: &FlowContext, job: Job) -> Result<Job, FlowError> {
    ctx.call(slow, job).await
}

#[tokio::test]
async fn start_to_close_timeout_fails_each_attempt() {
    let flock = test_flock().await;
    let started = Instant::now();
    let recorded = flock.run_flow(call_slow, Job { id: 6 }).recorded().await;
    assert!(started.elapsed() < Duration::from_secs(2));
    let error = recorded.result.unwrap_err();
    assert!(
        error.to_string().contains("timed out after 50ms"),
        "{error}"
    );
    assert_eq!(recorded.record.steps[0].attempts.len(), 2);
}

#[agent(
    schedule_to_close = "120ms",
    retry(attempts = unlimited, initial_interval = "50ms", backoff = 1.0)
)]
async fn never_ready(input: Job) -> Result<Job, AgentError> {
    let _ = input;
    Err(AgentError::transient("not ready"))
}

#[flow]
async fn call_never_ready(ctx: &FlowContext, job: Job) -> Result<Job, FlowError> {
    ctx.call(never_ready, job).await
}

#[tokio::test]
async fn schedule_to_close_bounds_unlimited_retries() {
    let flock = test_flock().await;
    let started = Instant::now();
    let error = flock
        .run_flow(call_never_ready, Job { id: 7 })
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_millis(500));
    let attempts = error.agent_error().unwrap().1;
    assert!(
        (2..=3).contains(&attempts),
        "{attempts} attempts in 120ms with 50ms delays"
    );
}

#[agent(heartbeat = "60ms", retry(attempts = 1))]
async fn beating(ctx: &AgentContext, input: Job) -> Job {
    for step in 0..4 {
        tokio::time::sleep(Duration::from_millis(30)).await;
        ctx.report_progress(json!({ "step": step }));
    }
    if input.id == 0 {
        // stop beating: the heartbeat timeout must end the attempt
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    input
}

#[flow]
async fn call_beating(ctx: &FlowContext, job: Job) -> Result<Job, FlowError> {
    ctx.call(beating, job).await
}

#[tokio::test]
async fn progress_is_recorded_and_heartbeat_timeout_enforced() {
    let flock = test_flock().await;
    let recorded = flock.run_flow(call_beating, Job { id: 1 }).recorded().await;
    recorded.result.expect("beats every 30ms, timeout 60ms");
    assert_eq!(recorded.record.progress.len(), 4);
    assert_eq!(recorded.record.progress[3].details, json!({ "step": 3 }));
    let started = Instant::now();
    let error = flock
        .run_flow(call_beating, Job { id: 0 })
        .await
        .unwrap_err();
    assert!(error.to_string().contains("heartbeat"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[agent(retry(attempts = 3, initial_interval = "1ms"))]
async fn panicky(input: Job) -> Job {
    if input.id == 13 {
        panic!("unlucky number");
    }
    input
}

#[flow]
async fn call_panicky(ctx: &FlowContext, job: Job) -> Result<Job, FlowError> {
    ctx.call(panicky, job).await
}

#[tokio::test]
async fn a_panicking_agent_fails_permanently() {
    let flock = test_flock().await;
    let error = flock
        .run_flow(call_panicky, Job { id: 13 })
        .await
        .unwrap_err();
    let (_, attempts, cause) = error.agent_error().unwrap();
    assert_eq!(attempts, 1);
    assert_eq!(cause.class(), ErrorClass::Permanent);
    assert!(cause.message().contains("unlucky number"));
}

// ---------------------------------------------------------------------------------------------
// Fan-out, child flows, determinism.

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Batch {
    /// Items to process
    pub items: Vec<u32>,
}

#[agent]
async fn square(input: Job) -> Job {
    tokio::time::sleep(Duration::from_millis(150)).await;
    Job {
        id: input.id * input.id,
    }
}

#[flow]
async fn fan_out(ctx: &FlowContext, batch: Batch) -> Result<Batch, FlowError> {
    let calls = batch
        .items
        .into_iter()
        .map(|id| ctx.call(square, Job { id }));
    let jobs = flock::try_join_all(calls).await?;
    Ok(Batch {
        items: jobs.into_iter().map(|j| j.id).collect(),
    })
}

#[tokio::test]
async fn parallel_fan_out_runs_concurrently() {
    let flock = test_flock().await;
    let started = Instant::now();
    let recorded = flock
        .run_flow(
            fan_out,
            Batch {
                items: vec![1, 2, 3, 4],
            },
        )
        .recorded()
        .await;
    let elapsed = started.elapsed();
    assert_eq!(recorded.result.unwrap().items, [1, 4, 9, 16]);
    assert!(
        elapsed < Duration::from_millis(450),
        "4 x 150ms in parallel took {elapsed:?}"
    );
    assert_eq!(recorded.record.steps.len(), 4);
}

#[flow]
async fn parent(ctx: &FlowContext, batch: Batch) -> Result<Batch, FlowError> {
    let squared = ctx.call_flow(fan_out, batch).await?;
    let total: u32 = squared.items.iter().sum();
    Ok(Batch { items: vec![total] })
}

#[flow]
async fn failing_parent(ctx: &FlowContext, job: Job) -> Result<Job, FlowError> {
    ctx.call_flow(call_broken, job).await
}

#[tokio::test]
async fn child_flows_run_and_are_recorded() {
    let flock = test_flock().await;
    let recorded = flock
        .run_flow(parent, Batch { items: vec![1, 2] })
        .recorded()
        .await;
    assert_eq!(recorded.result.unwrap().items, [5]);
    assert_eq!(recorded.record.children.len(), 1);
    let child = &recorded.record.children[0];
    assert_eq!(child.name, "fan_out");
    assert!(child.run_id.starts_with("fan_out-"));
    assert_eq!(child.steps.len(), 2);

    let error = flock
        .run_flow(failing_parent, Job { id: 1 })
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("child flow `call_broken`") && text.contains("agent `broken`"),
        "{text}"
    );
    assert_eq!(error.agent_error().unwrap().0, "broken");
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Draws {
    /// Random numbers
    pub numbers: Vec<u64>,
    /// A random id
    pub id: String,
}

#[flow]
async fn draw(ctx: &FlowContext, job: Job) -> Result<Draws, FlowError> {
    ctx.sleep(Duration::from_millis(job.id.into())).await?;
    // the flow's time against the wall clock: deliberately nondeterministic
    #[flock::nondeterministic]
    assert!(ctx.now() <= std::time::SystemTime::now());
    Ok(Draws {
        numbers: vec![ctx.random_u64(), ctx.random_u64()],
        id: ctx.uuid().to_string(),
    })
}

/// Each run draws from its own stream, also when a run id is reused (a stream seeded from the id
/// would repeat `ctx.uuid()` across runs); replay determinism is Temporal's side of it.
#[tokio::test]
async fn randomness_is_seeded_per_run() {
    let flock = test_flock().await;
    let a = flock
        .run_flow(draw, Job { id: 1 })
        .id("same")
        .await
        .unwrap();
    let b = flock
        .run_flow(draw, Job { id: 1 })
        .id("same")
        .id_reuse(flock::IdReuse::Allow)
        .await
        .unwrap();
    let c = flock
        .run_flow(draw, Job { id: 1 })
        .id("other")
        .await
        .unwrap();
    assert_ne!(
        a.numbers, b.numbers,
        "a reused id must not repeat the stream"
    );
    assert_ne!(a.id, b.id);
    assert_ne!(a.numbers, c.numbers);
    assert_ne!(a.numbers[0], a.numbers[1]);
}

// ---------------------------------------------------------------------------------------------
// Schemas, registry, run ids.

#[test]
fn schemas_carry_doc_comments_as_descriptions() {
    let input = serde_json::to_value(research_agent.input_schema()).unwrap();
    assert_eq!(
        input,
        json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "Topic",
            "type": "object",
            "properties": {
                "topic": { "description": "The topic to research", "type": "string" }
            },
            "required": ["topic"]
        })
    );
    let output = serde_json::to_value(summarize_agent.output_schema()).unwrap();
    assert_eq!(
        output["properties"]["summary"]["description"],
        "Concise summary"
    );
    assert_eq!(
        research_agent.spec().description,
        "Research the topic and report what you found."
    );
    assert_eq!(research_agent.spec().hand_off, Some("summarize_agent"));
}

#[tokio::test]
async fn registry_lists_linked_agents_and_flows() {
    let flock = test_flock().await;
    let agents: Vec<_> = flock.registry().agents().map(|a| a.spec().name).collect();
    for name in ["research_agent", "summarize_agent", "flaky", "square"] {
        assert!(agents.contains(&name), "{name} missing from {agents:?}");
    }
    let flows: Vec<_> = flock.registry().flows().map(|f| f.spec().name).collect();
    assert!(
        flows.contains(&"research_flow") && flows.contains(&"parent"),
        "{flows:?}"
    );
    assert!(flock.registry().flow("research_agent.chain").is_some());
}

#[tokio::test]
async fn run_ids_are_given_or_generated() {
    let flock = test_flock().await;
    let given = flock
        .run_flow(call_flaky, Job { id: 1 })
        .id("order-42")
        .recorded()
        .await;
    assert_eq!(given.record.run_id, "order-42");
    let generated = flock.run(square, Job { id: 2 }).recorded().await;
    let id = generated
        .record
        .run_id
        .strip_prefix("square.chain-")
        .expect("<name>-<uuid>");
    assert!(uuid_like(id), "{id}");
    let failed = flock
        .run_flow(call_broken, Job { id: 1 })
        .id("doomed")
        .await
        .unwrap_err();
    assert!(failed.to_string().contains("run `doomed`"));
}

fn uuid_like(text: &str) -> bool {
    text.len() == 36 && text.chars().filter(|c| *c == '-').count() == 4
}

#[tokio::test]
async fn unknown_model_provider_is_a_clear_error() {
    let error = Flock::builder()
        .model("nosuch/model")
        .build()
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("unknown model provider `nosuch`") && text.contains("known providers"),
        "{text}"
    );
}

static ORDER: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());

#[agent]
async fn first_step(input: Job) -> Job {
    ORDER.lock().unwrap().push("first");
    input
}

#[tokio::test]
async fn chain_of_one_agent_returns_its_output() {
    let flock = test_flock().await;
    let job: Job = flock.run(first_step, Job { id: 9 }).await.unwrap();
    assert_eq!(job, Job { id: 9 });
    assert!(ORDER.lock().unwrap().contains(&"first"));
}
