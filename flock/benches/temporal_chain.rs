//! The Temporal executor against a hand-written temporalio-sdk program: a 3-step chain of cheap
//! code activities, on a dev server started by this benchmark, in both server profiles.
//!
//! ```text
//! TEMPORAL_CLI=/path/to/temporal cargo bench -p flock --bench temporal_chain
//! ```
//!
//! For each profile (`DevServerOptions::default_profile()`, then the fast `DevServerOptions::default()`)
//! one dev server is started, and on it, one configuration after the other, each with a fresh task
//! queue and its own worker in this process:
//!
//! * `A`  hand-written SDK program: a workflow running 3 activities in sequence, SDK defaults
//!   (normal activities, no eager start), worker and client on this process's runtime;
//! * `A'` the same with eager workflow start;
//! * `A''` the same with the 3 activities as local activities, and eager start;
//! * `B`  the same chain as a flock `#[flow]` calling three code agents with default settings
//!   (durable steps: normal activities), on `local_debug(false)` with the in-process worker,
//!   `eager_workflow_start: false` (the work of A);
//! * `C`  the same chain with flock's defaults: durable steps, `eager_workflow_start: true` (the
//!   work of A');
//! * `D`  the opt-in fast path: the agents `#[agent(local)]` (local activities, which may run
//!   again after a crash), eager start (the work of A'').
//! * `B-enc`, `C-enc`: B and C with the payload codec on (AES-256-GCM, `TemporalExecutorConfig::codec`),
//!   for the codec-on/codec-off ratio (`FLOCK_BENCH_CONFIGS=b,b-codec,c,c-codec`).
//!
//! Each: a few warm-up runs, then sequential latency over `FLOCK_BENCH_RUNS` runs (30), then
//! throughput: `FLOCK_BENCH_CONCURRENT` runs (300) started at once. Every result is checked.
//! `FLOCK_BENCH_PROFILES=fast` (or `default`) limits the profiles.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flock::dev_server::{DevServer, DevServerOptions};
use flock::prelude::*;
use futures::future::{BoxFuture, LocalBoxFuture};
use futures::{FutureExt, StreamExt};
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
    ActivityOptions, LocalActivityOptions, Worker, WorkerOptions, WorkflowContext,
    WorkflowContextView, WorkflowTermination,
};

// ------------------------------------------------------------------------------------------------
// The work (shared with temporal_observe): three string transforms on a small struct, as
// flock agents and flows `chain3` (flock's defaults: durable steps) and `chain3_local`
// (`#[agent(local)]`).

#[path = "common/chain.rs"]
mod chain;
use chain::*;

async fn flock_config<F: Flow<Input = Msg, Output = Msg>>(
    server: &DevServer,
    label: &str,
    flow: F,
    eager: bool,
    via_handle: bool,
    codec: bool,
    plan: &Plan,
) -> Result<Figures, String> {
    let codec = codec.then(|| {
        flock::codec::Codec::new(
            flock::codec::CodecKeys::new([("bench", [7u8; 32])]).expect("a codec key"),
        )
    });
    let config = TemporalExecutorConfig {
        server_url: server.address(),
        task_queue: fresh_queue(label),
        eager_workflow_start: eager,
        codec,
        ..Default::default()
    };
    let flock = Flock::builder()
        .local_debug(false)
        .temporal(config)
        .build()
        .await
        .map_err(|e| format!("cannot build the Flock: {e}"))?;
    let figures = measure(plan, |i| {
        let flock = flock.clone();
        async move {
            let out = if via_handle {
                // start() + result(): the run without its record (no history read-back).
                let handle = flock
                    .run_flow(flow, input(i))
                    .start()
                    .await
                    .map_err(|e| e.to_string())?;
                handle.result().await.map_err(|e| e.to_string())?
            } else {
                flock
                    .run_flow(flow, input(i))
                    .await
                    .map_err(|e| e.to_string())?
            };
            check(i, out)
        }
    })
    .await;
    flock
        .shutdown()
        .await
        .map_err(|e| format!("worker shutdown: {e}"))?;
    Ok(figures)
}

// ------------------------------------------------------------------------------------------------
// A, A', A'': the hand-written SDK program (adapters as in the colleague's baseline, no macros).

struct NoImpl;

impl ActivityImplementer for NoImpl {
    fn register_all(self: Arc<Self>, _definitions: &mut ActivityDefinitions) {}
}

trait Step: Send + Sync + 'static {
    const NAME: &'static str;
    fn apply(m: Msg) -> Msg;
}

struct Upper;
impl Step for Upper {
    const NAME: &'static str = "bench.upper";
    fn apply(m: Msg) -> Msg {
        upper(m)
    }
}

struct Reverse;
impl Step for Reverse {
    const NAME: &'static str = "bench.reverse";
    fn apply(m: Msg) -> Msg {
        reverse(m)
    }
}

struct Suffix;
impl Step for Suffix {
    const NAME: &'static str = "bench.suffix";
    fn apply(m: Msg) -> Msg {
        suffix(m)
    }
}

/// A typed activity named `S::NAME`.
struct StepActivity<S>(PhantomData<S>);

impl<S: Step> ActivityDefinition for StepActivity<S> {
    type Input = Msg;
    type Output = Msg;

    fn name(&self) -> &str {
        S::NAME
    }
}

impl<S: Step> ExecutableActivity for StepActivity<S> {
    type Implementer = NoImpl;
    const REQUIRES_INSTANCE: bool = false;

    fn definition() -> Self {
        StepActivity(PhantomData)
    }

    fn execute(
        _receiver: Option<Arc<NoImpl>>,
        _ctx: ActivityContext,
        input: Msg,
    ) -> BoxFuture<'static, Result<Msg, ActivityError>> {
        async move { Ok(S::apply(input)) }.boxed()
    }
}

/// The workflow: 3 activities in sequence; `LOCAL` runs them as local activities.
struct Pipeline<const LOCAL: bool>;

impl<const LOCAL: bool> Pipeline<LOCAL> {
    const NAME: &'static str = if LOCAL {
        "bench.pipeline.local"
    } else {
        "bench.pipeline"
    };
}

impl<const LOCAL: bool> WorkflowDefinition for Pipeline<LOCAL> {
    type Input = Msg;
    type Output = Msg;

    fn name(&self) -> &str {
        Self::NAME
    }
}

impl<const LOCAL: bool> HasWorkflowDefinition for Pipeline<LOCAL> {
    type Run = Pipeline<LOCAL>;
}

impl<const LOCAL: bool> Pipeline<LOCAL> {
    async fn step<S: Step>(
        ctx: &WorkflowContext<Self>,
        m: Msg,
    ) -> Result<Msg, WorkflowTermination> {
        let timeout = Duration::from_secs(10);
        Ok(if LOCAL {
            let options = LocalActivityOptions::builder()
                .start_to_close_timeout(timeout)
                .build();
            ctx.execute_local_activity(StepActivity::<S>(PhantomData), m, options)
                .await?
        } else {
            let options = ActivityOptions::start_to_close_timeout(timeout);
            ctx.execute_activity(StepActivity::<S>(PhantomData), m, options)
                .await?
        })
    }
}

impl<const LOCAL: bool> WorkflowImplementation for Pipeline<LOCAL> {
    type Run = Pipeline<LOCAL>;
    const HAS_INIT: bool = false;
    const INIT_TAKES_INPUT: bool = false;

    fn name() -> &'static str {
        Self::NAME
    }

    fn definition() -> WorkflowDefinitionDescriptor {
        WorkflowDefinitionDescriptor {
            workflow_type: Self::NAME.to_owned(),
            has_init: false,
            init_takes_input: false,
            signals: Vec::new(),
            queries: Vec::new(),
            updates: Vec::new(),
        }
    }

    fn init(_ctx: WorkflowContextView, _input: Option<Msg>) -> Self {
        Pipeline
    }

    fn run(
        ctx: WorkflowContext<Self>,
        input: Option<Msg>,
    ) -> LocalBoxFuture<'static, Result<Box<dyn WorkflowOutputValue>, WorkflowTermination>> {
        async move {
            let m = input.expect("the workflow takes an input");
            let m = Self::step::<Upper>(&ctx, m).await?;
            let m = Self::step::<Reverse>(&ctx, m).await?;
            let m = Self::step::<Suffix>(&ctx, m).await?;
            Ok(Box::new(m) as Box<dyn WorkflowOutputValue>)
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

async fn hand_run<const LOCAL: bool>(
    client: &Client,
    task_queue: &str,
    i: usize,
    eager: bool,
) -> Result<(), String> {
    let options = WorkflowStartOptions::new(task_queue, format!("{task_queue}-{i}"))
        .enable_eager_workflow_start(eager)
        .build();
    let handle = client
        .start_workflow(Pipeline::<LOCAL>, input(i), options)
        .await
        .map_err(|e| format!("start: {e}"))?;
    let out = handle
        .get_result(WorkflowGetResultOptions::default())
        .await
        .map_err(|e| format!("result: {e}"))?;
    check(i, out)
}

async fn hand_written(
    server: &DevServer,
    label: &str,
    local: bool,
    eager: bool,
    plan: &Plan,
) -> Result<Figures, String> {
    let url = Url::parse(&format!("http://{}", server.address())).map_err(|e| e.to_string())?;
    let connection = Connection::connect(
        ConnectionOptions::new(url)
            .identity("temporal-chain-bench".to_owned())
            .build(),
    )
    .await
    .map_err(|e| format!("connect: {e}"))?;
    let client = Client::new(connection, ClientOptions::new("default").build())
        .map_err(|e| e.to_string())?;
    let runtime = temporalio_sdk::Runtime::from_current_tokio(Default::default())
        .map_err(|e| e.to_string())?;
    let task_queue = fresh_queue(label);
    let options = WorkerOptions::new(task_queue.clone())
        .register_activity::<StepActivity<Upper>>(Arc::new(NoImpl))
        .register_activity::<StepActivity<Reverse>>(Arc::new(NoImpl))
        .register_activity::<StepActivity<Suffix>>(Arc::new(NoImpl))
        .register_workflow::<Pipeline<false>>()
        .map_err(|e| e.to_string())?
        .register_workflow::<Pipeline<true>>()
        .map_err(|e| e.to_string())?
        .build();
    let mut worker = Worker::new(&runtime, client.clone(), options).map_err(|e| e.to_string())?;
    let shutdown = worker.shutdown_handle();
    let work = async {
        let figures = measure(plan, |i| {
            let (client, task_queue) = (&client, &task_queue);
            async move {
                if local {
                    hand_run::<true>(client, task_queue, i, eager).await
                } else {
                    hand_run::<false>(client, task_queue, i, eager).await
                }
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

// ------------------------------------------------------------------------------------------------
// Measuring.

struct Plan {
    warmup: usize,
    runs: usize,
    concurrent: usize,
    /// At most this many runs of the throughput phase started and not yet finished: a server
    /// limits the long polls that wait for results (the dev server refuses past ~1,200 with
    /// "namespace concurrent poller limit exceeded"), so 10,000 runs go through in a window.
    in_flight: usize,
}

#[derive(Debug, Clone, Default)]
struct Figures {
    median_ms: f64,
    p90_ms: f64,
    min_ms: f64,
    max_ms: f64,
    latency_failures: usize,
    flows_per_s: f64,
    ok: usize,
    failed: usize,
    first_error: Option<String>,
    /// CPU time of this process (client and worker) per flow during the throughput phase.
    own_cpu_ms_per_flow: f64,
    /// CPU time of the dev server per flow during the throughput phase.
    server_cpu_ms_per_flow: f64,
    /// This process's resident memory (client and worker), in MB: before the throughput phase,
    /// its peak during it (sampled every 20 ms), and 1 s after the last result.
    rss_before_mb: f64,
    rss_peak_mb: f64,
    rss_after_mb: f64,
}

/// This process's resident set size in MB (`VmRSS` of `/proc/self/status`; 0 where unavailable).
fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The dev server's pid, for its CPU time.
static SERVER_PID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// utime + stime of a process, in ms (from `/proc/<pid>/stat`; 0 where unavailable).
fn cpu_ms(pid: &str) -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    let ticks = *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    });
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The fields after the command name (in parentheses); utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (get(11) + get(12)) * 1000.0 / ticks
}

/// CPU ms of this process and of the dev server so far.
fn cpu_now() -> (f64, f64) {
    let server = SERVER_PID.load(std::sync::atomic::Ordering::Relaxed);
    (
        cpu_ms("self"),
        if server == 0 {
            0.0
        } else {
            cpu_ms(&server.to_string())
        },
    )
}

fn fresh_queue(label: &str) -> String {
    format!("bench-{label}-{}", uuid::Uuid::new_v4().simple())
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

async fn measure<F, Fut>(plan: &Plan, run: F) -> Figures
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let mut figures = Figures::default();
    let mut next = 0..;
    let mut id = || next.next().unwrap();
    for _ in 0..plan.warmup {
        if let Err(e) = run(id()).await {
            figures.first_error.get_or_insert(format!("warm-up: {e}"));
        }
    }
    let mut ms = Vec::with_capacity(plan.runs);
    for _ in 0..plan.runs {
        let start = Instant::now();
        let result = run(id()).await;
        ms.push(start.elapsed().as_secs_f64() * 1000.0);
        if let Err(e) = result {
            figures.latency_failures += 1;
            figures.first_error.get_or_insert(e);
        }
    }
    ms.sort_by(f64::total_cmp);
    figures.median_ms = median(&ms);
    figures.p90_ms = percentile(&ms, 0.9);
    figures.min_ms = ms[0];
    figures.max_ms = ms[ms.len() - 1];

    tokio::time::sleep(Duration::from_millis(500)).await;
    let ids: Vec<usize> = (0..plan.concurrent).map(|_| id()).collect();
    figures.rss_before_mb = rss_mb();
    let cpu_before = cpu_now();
    let start = Instant::now();
    let peak = std::cell::Cell::new(figures.rss_before_mb);
    let sampling = async {
        loop {
            peak.set(peak.get().max(rss_mb()));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let window = futures::stream::iter(ids.into_iter().map(&run))
        .buffer_unordered(plan.in_flight)
        .collect::<Vec<_>>();
    let results = tokio::select! {
        results = window => results,
        () = sampling => unreachable!("the sampler never ends"),
    };
    let elapsed = start.elapsed().as_secs_f64();
    let cpu_after = cpu_now();
    figures.rss_peak_mb = peak.get().max(rss_mb());
    tokio::time::sleep(Duration::from_secs(1)).await;
    figures.rss_after_mb = rss_mb();
    let flows = plan.concurrent.max(1) as f64;
    figures.own_cpu_ms_per_flow = (cpu_after.0 - cpu_before.0) / flows;
    figures.server_cpu_ms_per_flow = (cpu_after.1 - cpu_before.1) / flows;
    for result in results {
        match result {
            Ok(()) => figures.ok += 1,
            Err(e) => {
                figures.failed += 1;
                figures.first_error.get_or_insert(e);
            }
        }
    }
    figures.flows_per_s = figures.ok as f64 / elapsed;
    figures
}

// ------------------------------------------------------------------------------------------------
// Diagnostic A-thr: the hand-written program with its worker set up the way flock's in-process
// worker is (a thread of its own with a 2-thread tokio runtime and its own connection; the client
// calls come from the main runtime through that connection).

async fn hand_written_on_thread(
    server: &DevServer,
    label: &str,
    local: bool,
    eager: bool,
    plan: &Plan,
) -> Result<Figures, String> {
    let url = Url::parse(&format!("http://{}", server.address())).map_err(|e| e.to_string())?;
    let task_queue = fresh_queue(label);
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Result<Client, String>>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let queue = task_queue.clone();
    let thread = std::thread::spawn(move || -> Result<(), String> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async move {
            let setup = async {
                let connection = Connection::connect(
                    ConnectionOptions::new(url)
                        .identity("temporal-chain-bench".to_owned())
                        .build(),
                )
                .await
                .map_err(|e| format!("connect: {e}"))?;
                let client = Client::new(connection, ClientOptions::new("default").build())
                    .map_err(|e| e.to_string())?;
                let runtime = temporalio_sdk::Runtime::from_current_tokio(Default::default())
                    .map_err(|e| e.to_string())?;
                let options = WorkerOptions::new(queue)
                    .register_activity::<StepActivity<Upper>>(Arc::new(NoImpl))
                    .register_activity::<StepActivity<Reverse>>(Arc::new(NoImpl))
                    .register_activity::<StepActivity<Suffix>>(Arc::new(NoImpl))
                    .register_workflow::<Pipeline<false>>()
                    .map_err(|e| e.to_string())?
                    .register_workflow::<Pipeline<true>>()
                    .map_err(|e| e.to_string())?
                    .build();
                let worker =
                    Worker::new(&runtime, client.clone(), options).map_err(|e| e.to_string())?;
                Ok::<_, String>((client, worker, runtime))
            };
            let (client, mut worker, _runtime) = match setup.await {
                Ok(parts) => parts,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.clone()));
                    return Err(e);
                }
            };
            let _ = ready_tx.send(Ok(client));
            let shutdown = worker.shutdown_handle();
            let stopper = async {
                let _ = stop_rx.await;
                shutdown();
            };
            let (result, ()) = tokio::join!(worker.run(), stopper);
            result.map_err(|e| format!("worker: {e}"))
        })
    });
    let client = ready_rx
        .await
        .map_err(|_| "the worker thread ended early".to_owned())??;
    let figures = measure(plan, |i| {
        let (client, task_queue) = (&client, &task_queue);
        async move {
            if local {
                hand_run::<true>(client, task_queue, i, eager).await
            } else {
                hand_run::<false>(client, task_queue, i, eager).await
            }
        }
    })
    .await;
    let _ = stop_tx.send(());
    tokio::task::spawn_blocking(move || thread.join())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|_| "the worker thread panicked".to_owned())??;
    Ok(figures)
}

// ------------------------------------------------------------------------------------------------
// The run.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Config {
    A,
    AThread,
    AEager,
    ALocalEager,
    ALocalEagerThread,
    B,
    BHandle,
    BCodec,
    C,
    CHandle,
    CCodec,
    D,
}

impl Config {
    const ALL: [Config; 12] = [
        Config::A,
        Config::B,
        Config::BCodec,
        Config::CCodec,
        Config::AThread,
        Config::AEager,
        Config::C,
        Config::ALocalEager,
        Config::ALocalEagerThread,
        Config::BHandle,
        Config::CHandle,
        Config::D,
    ];

    fn label(self) -> &'static str {
        match self {
            Config::A => "A    hand-written SDK, activities",
            Config::AThread => "A-thr  A with its worker on its own thread+runtime",
            Config::AEager => "A'   hand-written SDK, activities + eager start",
            Config::ALocalEager => "A''  hand-written SDK, local activities + eager",
            Config::ALocalEagerThread => "A''-thr  A'' with its worker on its own thread+runtime",
            Config::B => "B    flock flow, durable steps (activities)",
            Config::C => "C    flock defaults: durable steps + eager start",
            Config::D => "D    flock #[agent(local)] code agents + eager start",
            Config::BHandle => "B-h  B via start() + result() (no run record)",
            Config::CHandle => "C-h  C via start() + result() (no run record)",
            Config::BCodec => "B-enc  B with the payload codec (AES-256-GCM)",
            Config::CCodec => "C-enc  C with the payload codec (AES-256-GCM)",
        }
    }

    fn queue(self) -> &'static str {
        match self {
            Config::A => "a",
            Config::AThread => "a-thread",
            Config::AEager => "a-eager",
            Config::ALocalEager => "a-local-eager",
            Config::ALocalEagerThread => "a-local-eager-thread",
            Config::B => "b",
            Config::C => "c",
            Config::D => "d",
            Config::BHandle => "b-handle",
            Config::CHandle => "c-handle",
            Config::BCodec => "b-codec",
            Config::CCodec => "c-codec",
        }
    }

    async fn measure(self, server: &DevServer, plan: &Plan) -> Result<Figures, String> {
        match self {
            Config::A => hand_written(server, self.queue(), false, false, plan).await,
            Config::AThread => {
                hand_written_on_thread(server, self.queue(), false, false, plan).await
            }
            Config::AEager => hand_written(server, self.queue(), false, true, plan).await,
            Config::ALocalEager => hand_written(server, self.queue(), true, true, plan).await,
            Config::ALocalEagerThread => {
                hand_written_on_thread(server, self.queue(), true, true, plan).await
            }
            Config::B => {
                flock_config(server, self.queue(), chain3, false, false, false, plan).await
            }
            Config::BHandle => {
                flock_config(server, self.queue(), chain3, false, true, false, plan).await
            }
            Config::BCodec => {
                flock_config(server, self.queue(), chain3, false, false, true, plan).await
            }
            Config::C => flock_config(server, self.queue(), chain3, true, false, false, plan).await,
            Config::CHandle => {
                flock_config(server, self.queue(), chain3, true, true, false, plan).await
            }
            Config::CCodec => {
                flock_config(server, self.queue(), chain3, true, false, true, plan).await
            }
            Config::D => {
                flock_config(server, self.queue(), chain3_local, true, false, false, plan).await
            }
        }
    }
}

/// The 1, 5 and 15 minute load averages (the machine is shared).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// `FLOCK_BENCH_CONFIGS=a,b,..` (task-queue labels) limits the configurations.
fn selected(config: Config) -> bool {
    match std::env::var("FLOCK_BENCH_CONFIGS") {
        Ok(list) => list.split(',').any(|c| c.trim() == config.queue()),
        Err(_) => true,
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let plan = Plan {
        warmup: env_usize("FLOCK_BENCH_WARMUP", 5),
        runs: env_usize("FLOCK_BENCH_RUNS", 30).max(1),
        concurrent: env_usize("FLOCK_BENCH_CONCURRENT", 300),
        in_flight: env_usize("FLOCK_BENCH_IN_FLIGHT", 1000).max(1),
    };
    let rounds = env_usize("FLOCK_BENCH_ROUNDS", 3).max(1);
    let profiles =
        std::env::var("FLOCK_BENCH_PROFILES").unwrap_or_else(|_| "default,fast".to_owned());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    println!(
        "temporal_chain: {rounds} rounds per profile; per configuration and round {} warm-up runs, latency over {} \
         sequential runs, throughput of {} runs ({} in flight at most); {} cores",
        plan.warmup,
        plan.runs,
        plan.concurrent,
        plan.in_flight,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    let mut tables = Vec::new();
    for profile in profiles.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let options = match profile {
            "default" => DevServerOptions::default_profile(),
            "fast" => DevServerOptions::default(),
            other => panic!("unknown profile {other:?}: expected `default` or `fast`"),
        };
        let rows = runtime.block_on(async {
            let server = DevServer::start(options).await.unwrap_or_else(|e| panic!("cannot start the dev server: {e}"));
            println!("\n{profile} profile: dev server at {}", server.address());
            SERVER_PID.store(server.pid().unwrap_or(0), std::sync::atomic::Ordering::Relaxed);
            // The first workflows on a fresh server are slower: warm it up, untimed.
            let warm = Plan {
                warmup: 10,
                runs: 1,
                concurrent: plan.concurrent.min(100),
                in_flight: plan.in_flight,
            };
            let _ = Config::A.measure(&server, &warm).await;
            println!("  load average before: {}", load_average());
            let mut rows: Vec<(Config, Vec<Figures>)> =
                Config::ALL.iter().filter(|c| selected(**c)).map(|c| (*c, Vec::new())).collect();
            for round in 0..rounds {
                // Alternate the order so drift of the server (or of the machine) spreads evenly.
                let mut order: Vec<Config> = Config::ALL.into_iter().filter(|c| selected(*c)).collect();
                if round % 2 == 1 {
                    order.reverse();
                }
                for config in order {
                    let figures = config
                        .measure(&server, &plan)
                        .await
                        .unwrap_or_else(|e| panic!("{profile} / {}: {e}", config.label()));
                    println!(
                        "  round {} {:<56} median {:>6.1} ms  p90 {:>6.1} ms  {:>6.1} flows/s  cpu/flow {:.2} ms + server {:.2} ms  rss {:.0} -> peak {:.0} -> {:.0} MB  ({} ok, {} failed){}",
                        round + 1,
                        config.label(),
                        figures.median_ms,
                        figures.p90_ms,
                        figures.flows_per_s,
                        figures.own_cpu_ms_per_flow,
                        figures.server_cpu_ms_per_flow,
                        figures.rss_before_mb,
                        figures.rss_peak_mb,
                        figures.rss_after_mb,
                        figures.ok,
                        figures.failed + figures.latency_failures,
                        figures.first_error.as_ref().map(|e| format!("  first error: {e}")).unwrap_or_default()
                    );
                    rows.iter_mut().find(|(c, _)| *c == config).expect("a row").1.push(figures);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            println!("  load average after: {}", load_average());
            drop(server);
            rows
        });
        tables.push((profile.to_owned(), rows));
    }
    report(&plan, rounds, &tables);
}

/// The figures of one configuration over the rounds: the median of each figure.
#[derive(Clone, Default)]
struct Summary {
    median_ms: f64,
    p90_ms: f64,
    flows_per_s: f64,
    flows_min: f64,
    flows_max: f64,
    own_cpu: f64,
    server_cpu: f64,
    ok: usize,
    failures: usize,
}

fn summarize(rounds: &[Figures]) -> Summary {
    let mid = |f: fn(&Figures) -> f64| {
        let mut v: Vec<f64> = rounds.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        median(&v)
    };
    let flows = rounds.iter().map(|f| f.flows_per_s);
    Summary {
        median_ms: mid(|f| f.median_ms),
        p90_ms: mid(|f| f.p90_ms),
        flows_per_s: mid(|f| f.flows_per_s),
        flows_min: flows.clone().fold(f64::INFINITY, f64::min),
        flows_max: flows.fold(0.0, f64::max),
        own_cpu: mid(|f| f.own_cpu_ms_per_flow),
        server_cpu: mid(|f| f.server_cpu_ms_per_flow),
        ok: rounds.iter().map(|f| f.ok).sum(),
        failures: rounds.iter().map(|f| f.failed + f.latency_failures).sum(),
    }
}

/// Per profile: each configuration with its figures of every round.
type Tables = [(String, Vec<(Config, Vec<Figures>)>)];

fn report(plan: &Plan, rounds: usize, tables: &Tables) {
    println!(
        "\nMedians over {rounds} rounds (each: {} sequential runs for latency, {} concurrent runs for throughput).\n",
        plan.runs, plan.concurrent
    );
    println!(
        "| profile | configuration | latency median (ms) | latency p90 (ms) | throughput (flows/s) | throughput range | \
         CPU ms/flow, bench process | CPU ms/flow, server | ok / failed |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for (profile, rows) in tables {
        for (config, figures) in rows {
            let s = summarize(figures);
            println!(
                "| {profile} | {} | {:.1} | {:.1} | {:.1} | {:.1}–{:.1} | {:.2} | {:.2} | {} / {} |",
                config.label(),
                s.median_ms,
                s.p90_ms,
                s.flows_per_s,
                s.flows_min,
                s.flows_max,
                s.own_cpu,
                s.server_cpu,
                s.ok,
                s.failures
            );
        }
    }
    println!("\n| profile | ratio | value | target |");
    println!("|---|---|---:|---|");
    for (profile, rows) in tables {
        let get = |c: Config| {
            rows.iter()
                .find(|(r, _)| *r == c)
                .map(|(_, f)| summarize(f))
        };
        let line = |name: &str, value: Option<f64>, target: Option<(f64, bool)>| {
            let Some(value) = value else { return };
            let target = match target {
                Some((bound, at_most)) => {
                    let met = if at_most {
                        value <= bound
                    } else {
                        value >= bound
                    };
                    format!(
                        "{} {bound} ({})",
                        if at_most { "<=" } else { ">=" },
                        if met { "met" } else { "MISSED" }
                    )
                }
                None => String::new(),
            };
            println!("| {profile} | {name} | {value:.3} | {target} |");
        };
        let ratio = |x: Config, y: Config, f: fn(&Summary) -> f64| Some(f(&get(x)?) / f(&get(y)?));
        use Config::*;
        line(
            "B/A latency median",
            ratio(B, A, |s| s.median_ms),
            Some((1.05, true)),
        );
        line("B/A latency p90", ratio(B, A, |s| s.p90_ms), None);
        line(
            "B/A throughput",
            ratio(B, A, |s| s.flows_per_s),
            Some((0.95, false)),
        );
        // C (flock's defaults: durable steps + eager start) does the work of A'; D (the opt-in
        // fast path: local code agents + eager start) that of A''.
        line(
            "C/A' latency median (defaults, same work)",
            ratio(C, AEager, |s| s.median_ms),
            None,
        );
        line(
            "C/A' throughput (defaults, same work)",
            ratio(C, AEager, |s| s.flows_per_s),
            None,
        );
        line(
            "C/A' CPU per flow, bench process (defaults, same work)",
            ratio(C, AEager, |s| s.own_cpu),
            None,
        );
        line(
            "A/C latency median (what eager start saves by default)",
            ratio(A, C, |s| s.median_ms),
            None,
        );
        line(
            "D/A'' latency median (fast path, same work)",
            ratio(D, ALocalEager, |s| s.median_ms),
            None,
        );
        line(
            "D/A'' throughput (fast path, same work)",
            ratio(D, ALocalEager, |s| s.flows_per_s),
            None,
        );
        line(
            "D/A'' CPU per flow, bench process (fast path, same work)",
            ratio(D, ALocalEager, |s| s.own_cpu),
            Some((1.10, true)),
        );
        line(
            "B/A-thr latency median (same worker set-up)",
            ratio(B, AThread, |s| s.median_ms),
            None,
        );
        line(
            "B/A-thr throughput (same worker set-up)",
            ratio(B, AThread, |s| s.flows_per_s),
            None,
        );
        line(
            "A-thr/A throughput (cost of the worker set-up)",
            ratio(AThread, A, |s| s.flows_per_s),
            None,
        );
        line(
            "B/A CPU per flow, bench process",
            ratio(B, A, |s| s.own_cpu),
            None,
        );
        line(
            "B/A-thr CPU per flow, bench process",
            ratio(B, AThread, |s| s.own_cpu),
            None,
        );
        line(
            "B-h/A latency median",
            ratio(BHandle, A, |s| s.median_ms),
            None,
        );
        line(
            "B-h/A throughput",
            ratio(BHandle, A, |s| s.flows_per_s),
            None,
        );
        line(
            "C-h/A' latency median (same work)",
            ratio(CHandle, AEager, |s| s.median_ms),
            None,
        );
        line(
            "C-h/A' throughput (same work)",
            ratio(CHandle, AEager, |s| s.flows_per_s),
            None,
        );
        line(
            "C/C-h latency median (cost of the record)",
            ratio(C, CHandle, |s| s.median_ms),
            None,
        );
        line(
            "B/B-h server CPU per flow (cost of the record)",
            ratio(B, BHandle, |s| s.server_cpu),
            None,
        );
        line(
            "C/C-h server CPU per flow (cost of the record)",
            ratio(C, CHandle, |s| s.server_cpu),
            None,
        );
        line(
            "C/C-h CPU per flow, bench process (cost of the record)",
            ratio(C, CHandle, |s| s.own_cpu),
            None,
        );
        line(
            "B-enc/B throughput (codec on/off)",
            ratio(BCodec, B, |s| s.flows_per_s),
            Some((0.9, false)),
        );
        line(
            "C-enc/C throughput (codec on/off)",
            ratio(CCodec, C, |s| s.flows_per_s),
            Some((0.9, false)),
        );
        line(
            "B-enc/B latency median (codec on/off)",
            ratio(BCodec, B, |s| s.median_ms),
            None,
        );
        line(
            "C-enc/C latency median (codec on/off)",
            ratio(CCodec, C, |s| s.median_ms),
            None,
        );
        line(
            "B-enc/B CPU per flow, bench process (codec on/off)",
            ratio(BCodec, B, |s| s.own_cpu),
            None,
        );
        line(
            "C-enc/C CPU per flow, bench process (codec on/off)",
            ratio(CCodec, C, |s| s.own_cpu),
            None,
        );
    }
}
