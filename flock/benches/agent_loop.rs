//! The agent loop step by step against a hand-written temporalio-sdk workflow running the same
//! model-request and tool activities: an agent that calls a tool [`ROUNDS`] times, one call per
//! model request, then answers (5 model requests and 4 tool calls, each an activity), answered
//! by a zero-latency stand-in model (the same function on both sides), on a fast-profile dev
//! server started by this benchmark, both workers in this process, eager start on both.
//!
//! ```text
//! TEMPORAL_CLI=/path/to/temporal cargo bench -p flock --bench agent_loop
//! ```
//!
//! Per round and side: `FLOCK_BENCH_RUNS` (30) sequential runs after 5 warm-up ones, each result
//! checked; `FLOCK_BENCH_ROUNDS` (3) rounds, alternating which side goes first. Reported: the
//! median latency per run and the bench process's CPU per run (client and worker), and their
//! ratios (flock / hand-written); both run 9 activities per run, so the ratios are per step.
//! The hand-written workflow keeps the conversation in its state and sends it whole with each
//! model request (what a program written by hand does); flock sends only the new messages.

use std::sync::Arc;
use std::time::{Duration, Instant};

use flock::dev_server::{DevServer, DevServerOptions};
use flock::model::{FunctionModel, Message, ModelResponse, Role, ToolCall};
use flock::prelude::*;
use futures::FutureExt;
use futures::future::{BoxFuture, LocalBoxFuture};
use temporalio_client::{
    Client, ClientOptions, Connection, ConnectionOptions, Url, WorkflowGetResultOptions,
    WorkflowStartOptions,
};
use temporalio_common::{ActivityDefinition, HasWorkflowDefinition, WorkflowDefinition};
use temporalio_sdk::activities::{
    ActivityContext, ActivityDefinitions, ActivityError, ActivityImplementer, ExecutableActivity,
};
use temporalio_sdk::workflow_interceptors::WorkflowOutputValue;
use temporalio_sdk::workflows::{
    WorkflowDefinitionDescriptor, WorkflowError, WorkflowImplementation,
};
use temporalio_sdk::{
    ActivityOptions, Worker, WorkerOptions, WorkflowContext, WorkflowContextView,
    WorkflowTermination,
};

/// Tool calls per run (one per model request), then one more request that answers.
const ROUNDS: usize = 4;

// ------------------------------------------------------------------------------------------------
// The work: a tool, the stand-in model, and (flock) the agent.

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Ask {
    /// What to find out
    pub question: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Found {
    /// What was found
    pub answer: String,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Lookup {
    /// The entry
    pub n: u32,
}

fn lookup(n: u32) -> String {
    format!("entry {n}")
}

/// Looks an entry up.
#[tool]
async fn bench_lookup(args: Lookup) -> String {
    lookup(args.n)
}

/// Look the entries up, then answer.
#[agent(tools = [bench_lookup], retry(attempts = 1))]
async fn bench_loop_agent(input: Ask) -> Found;

/// The stand-in model: a tool call until `ROUNDS` tool answers are in the conversation, then the
/// answer (the last tool answer).
fn stand_in(messages: &[Message]) -> ModelResponse {
    let answered = messages.iter().filter(|m| m.role == Role::Tool).count();
    if answered < ROUNDS {
        ModelResponse {
            tool_calls: vec![ToolCall {
                id: format!("call_{answered}"),
                name: "bench_lookup".into(),
                arguments: format!(r#"{{"n": {answered}}}"#),
            }],
            ..ModelResponse::default()
        }
    } else {
        let last = messages.last().map_or("", |m| m.content.as_str());
        ModelResponse::text(serde_json::json!({ "answer": last }).to_string())
    }
}

fn expected() -> Found {
    Found {
        answer: lookup(ROUNDS as u32 - 1),
    }
}

// ------------------------------------------------------------------------------------------------
// The hand-written SDK program: a model-request activity and a tool activity, a workflow that
// loops over them.

struct NoImpl;

impl ActivityImplementer for NoImpl {
    fn register_all(self: Arc<Self>, _definitions: &mut ActivityDefinitions) {}
}

struct ModelActivity;

impl ActivityDefinition for ModelActivity {
    type Input = Vec<Message>;
    type Output = ModelResponse;

    fn name(&self) -> &str {
        "bench.model"
    }
}

impl ExecutableActivity for ModelActivity {
    type Implementer = NoImpl;
    const REQUIRES_INSTANCE: bool = false;

    fn definition() -> Self {
        ModelActivity
    }

    fn execute(
        _receiver: Option<Arc<NoImpl>>,
        _ctx: ActivityContext,
        messages: Vec<Message>,
    ) -> BoxFuture<'static, Result<ModelResponse, ActivityError>> {
        async move { Ok(stand_in(&messages)) }.boxed()
    }
}

struct ToolActivity;

impl ActivityDefinition for ToolActivity {
    type Input = Lookup;
    type Output = String;

    fn name(&self) -> &str {
        "bench.lookup"
    }
}

impl ExecutableActivity for ToolActivity {
    type Implementer = NoImpl;
    const REQUIRES_INSTANCE: bool = false;

    fn definition() -> Self {
        ToolActivity
    }

    fn execute(
        _receiver: Option<Arc<NoImpl>>,
        _ctx: ActivityContext,
        args: Lookup,
    ) -> BoxFuture<'static, Result<String, ActivityError>> {
        async move { Ok(lookup(args.n)) }.boxed()
    }
}

struct Loop;

const LOOP: &str = "bench.loop";

impl WorkflowDefinition for Loop {
    type Input = Ask;
    type Output = Found;

    fn name(&self) -> &str {
        LOOP
    }
}

impl HasWorkflowDefinition for Loop {
    type Run = Loop;
}

impl WorkflowImplementation for Loop {
    type Run = Loop;
    const HAS_INIT: bool = false;
    const INIT_TAKES_INPUT: bool = false;

    fn name() -> &'static str {
        LOOP
    }

    fn definition() -> WorkflowDefinitionDescriptor {
        WorkflowDefinitionDescriptor {
            workflow_type: LOOP.to_owned(),
            has_init: false,
            init_takes_input: false,
            signals: Vec::new(),
            queries: Vec::new(),
            updates: Vec::new(),
        }
    }

    fn init(_ctx: WorkflowContextView, _input: Option<Ask>) -> Self {
        Loop
    }

    fn run(
        ctx: WorkflowContext<Self>,
        input: Option<Ask>,
    ) -> LocalBoxFuture<'static, Result<Box<dyn WorkflowOutputValue>, WorkflowTermination>> {
        async move {
            let ask = input.expect("the workflow takes an input");
            let options = || ActivityOptions::start_to_close_timeout(Duration::from_secs(10));
            let mut messages = vec![
                Message::new(Role::System, "Look the entries up, then answer."),
                Message::new(Role::User, ask.question),
            ];
            loop {
                let response = ctx
                    .execute_activity(ModelActivity, messages.clone(), options())
                    .await?;
                if response.tool_calls.is_empty() {
                    let found: Found = serde_json::from_str(&response.content)
                        .expect("the stand-in answers a Found");
                    return Ok(Box::new(found) as Box<dyn WorkflowOutputValue>);
                }
                let calls = response.tool_calls.clone();
                messages.push(Message {
                    role: Role::Assistant,
                    content: response.content,
                    tool_calls: response.tool_calls,
                    tool_call_id: None,
                });
                for call in calls {
                    let args: Lookup =
                        serde_json::from_str(&call.arguments).expect("the stand-in's arguments");
                    let answer = ctx.execute_activity(ToolActivity, args, options()).await?;
                    messages.push(Message {
                        role: Role::Tool,
                        content: answer,
                        tool_calls: Vec::new(),
                        tool_call_id: Some(call.id),
                    });
                }
            }
        }
        .boxed_local()
    }

    fn dispatch_signal(
        _ctx: WorkflowContext<Self>,
        name: &str,
        _input: Box<dyn std::any::Any>,
    ) -> LocalBoxFuture<'static, Result<(), WorkflowError>> {
        unreachable!("no signal {name}")
    }

    fn dispatch_query(
        &self,
        _ctx: WorkflowContextView,
        name: &str,
        _input: Box<dyn std::any::Any>,
    ) -> Result<Box<dyn WorkflowOutputValue>, WorkflowError> {
        unreachable!("no query {name}")
    }

    fn dispatch_update(
        _ctx: WorkflowContext<Self>,
        name: &str,
        _input: Box<dyn std::any::Any>,
    ) -> LocalBoxFuture<'static, Result<Box<dyn WorkflowOutputValue>, WorkflowError>> {
        unreachable!("no update {name}")
    }

    fn validate_update(
        &self,
        _ctx: WorkflowContextView,
        name: &str,
        _input: Box<dyn std::any::Any>,
    ) -> Result<(), WorkflowError> {
        unreachable!("no update {name}")
    }
}

// ------------------------------------------------------------------------------------------------
// Measuring.

/// Latency per run (ms, sorted) and the bench process's CPU per run (ms).
struct Figures {
    latency: Vec<f64>,
    cpu_per_run: f64,
}

fn cpu_ms() -> f64 {
    let ticks: f64 = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0);
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<f64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0.0))
        .collect();
    (fields.get(11).unwrap_or(&0.0) + fields.get(12).unwrap_or(&0.0)) * 1000.0 / ticks
}

async fn measure<F, Fut>(runs: usize, run: F) -> Figures
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<Found, String>>,
{
    for i in 0..5 {
        let found = run(i).await.unwrap_or_else(|e| panic!("warm-up run: {e}"));
        assert_eq!(found, expected());
    }
    let cpu = cpu_ms();
    let mut latency = Vec::with_capacity(runs);
    for i in 0..runs {
        let start = Instant::now();
        let found = run(5 + i).await.unwrap_or_else(|e| panic!("run {i}: {e}"));
        latency.push(start.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(found, expected());
    }
    latency.sort_by(f64::total_cmp);
    Figures {
        latency,
        cpu_per_run: (cpu_ms() - cpu) / runs as f64,
    }
}

fn ask(i: usize) -> Ask {
    Ask {
        question: format!("what is entry {} (run {i})?", ROUNDS - 1),
    }
}

fn fresh_queue(label: &str) -> String {
    format!("bench-{label}-{}", uuid::Uuid::new_v4().simple())
}

async fn with_flock(server: &DevServer, runs: usize) -> Result<Figures, String> {
    let flock = Flock::builder()
        .register_model(
            "bench/stand-in",
            FunctionModel::new(|request| Ok(stand_in(&request.messages))),
        )
        .model("bench/stand-in")
        .local_debug(false)
        .serve_only([bench_loop_agent::NAME])
        .temporal(TemporalExecutorConfig {
            server_url: server.address(),
            task_queue: fresh_queue("flock-loop"),
            ..Default::default()
        })
        .build()
        .await
        .map_err(|e| format!("cannot build the Flock: {e}"))?;
    let figures = measure(runs, |i| {
        let flock = flock.clone();
        async move {
            flock
                .run(bench_loop_agent, ask(i))
                .await
                .map_err(|e| e.to_string())
        }
    })
    .await;
    flock.shutdown().await.map_err(|e| e.to_string())?;
    Ok(figures)
}

async fn hand_written(server: &DevServer, runs: usize) -> Result<Figures, String> {
    let url = Url::parse(&format!("http://{}", server.address())).map_err(|e| e.to_string())?;
    let connection = Connection::connect(ConnectionOptions::new(url).build())
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let client = Client::new(connection, ClientOptions::new("default").build())
        .map_err(|e| e.to_string())?;
    let runtime = temporalio_sdk::Runtime::from_current_tokio(Default::default())
        .map_err(|e| e.to_string())?;
    let task_queue = fresh_queue("sdk-loop");
    let options = WorkerOptions::new(task_queue.clone())
        .register_activity::<ModelActivity>(Arc::new(NoImpl))
        .register_activity::<ToolActivity>(Arc::new(NoImpl))
        .register_workflow::<Loop>()
        .map_err(|e| e.to_string())?
        .build();
    let mut worker = Worker::new(&runtime, client.clone(), options).map_err(|e| e.to_string())?;
    let shutdown = worker.shutdown_handle();
    let work = async {
        let figures = measure(runs, |i| {
            let (client, task_queue) = (&client, &task_queue);
            async move {
                let options = WorkflowStartOptions::new(task_queue, format!("{task_queue}-{i}"))
                    .enable_eager_workflow_start(true)
                    .build();
                let handle = client
                    .start_workflow(Loop, ask(i), options)
                    .await
                    .map_err(|e| format!("start: {e}"))?;
                handle
                    .get_result(WorkflowGetResultOptions::default())
                    .await
                    .map_err(|e| format!("result: {e}"))
            }
        })
        .await;
        shutdown();
        figures
    };
    // The worker's run future is not Send: drive it on this task, next to the client.
    let (worker_result, figures) = tokio::join!(worker.run(), work);
    worker_result.map_err(|e| format!("worker: {e}"))?;
    Ok(figures)
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(sorted: &[f64]) -> f64 {
    sorted[sorted.len() / 2]
}

fn main() {
    let runs = env_usize("FLOCK_BENCH_RUNS", 30).max(1);
    let rounds = env_usize("FLOCK_BENCH_ROUNDS", 3).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let server = DevServer::start(DevServerOptions::default())
            .await
            .unwrap_or_else(|e| panic!("cannot start the dev server: {e}"));
        println!(
            "agent_loop: fast dev server at {}; {rounds} rounds of {runs} runs per side, {ROUNDS} tool calls + {} model requests per run",
            server.address(),
            ROUNDS + 1
        );
        let (mut sdk, mut flock) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            let order = if round % 2 == 0 { [false, true] } else { [true, false] };
            for is_flock in order {
                let figures = if is_flock {
                    with_flock(&server, runs).await
                } else {
                    hand_written(&server, runs).await
                }
                .unwrap_or_else(|e| panic!("{}: {e}", if is_flock { "flock" } else { "sdk" }));
                println!(
                    "  round {}: {:<5} latency median {:.1} ms, CPU {:.2} ms per run",
                    round + 1,
                    if is_flock { "flock" } else { "sdk" },
                    median(&figures.latency),
                    figures.cpu_per_run
                );
                if is_flock {
                    flock.push(figures)
                } else {
                    sdk.push(figures)
                }
            }
        }
        let summary = |sets: &[Figures]| {
            let mut latency: Vec<f64> = sets.iter().map(|f| median(&f.latency)).collect();
            let mut cpu: Vec<f64> = sets.iter().map(|f| f.cpu_per_run).collect();
            latency.sort_by(f64::total_cmp);
            cpu.sort_by(f64::total_cmp);
            (median(&latency), median(&cpu))
        };
        let ((sdk_latency, sdk_cpu), (flock_latency, flock_cpu)) = (summary(&sdk), summary(&flock));
        let steps = (2 * ROUNDS + 1) as f64;
        println!(
            "medians of the rounds: sdk {sdk_latency:.1} ms / {sdk_cpu:.2} ms CPU per run ({:.2} ms CPU per step), flock {flock_latency:.1} ms / {flock_cpu:.2} ms CPU per run ({:.2} ms CPU per step)",
            sdk_cpu / steps,
            flock_cpu / steps
        );
        println!(
            "flock / sdk: latency {:.2}, CPU per step {:.2}",
            flock_latency / sdk_latency,
            flock_cpu / sdk_cpu
        );
    });
}
