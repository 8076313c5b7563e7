//! Signal round trip: a client sends a signal, the running flow takes it and publishes what it
//! saw, a query shows it. flock (`#[flow(signals(bump: u32), queries(seen: u32))]`) against a
//! hand-written temporalio-sdk workflow doing the same (signal handler → queue in the workflow
//! state → the main routine takes it with `wait_condition` and sets the queried state), on the
//! same fast-profile dev server, in the same run.
//!
//! ```text
//! TEMPORAL_CLI=/path/to/temporal cargo bench -p flock --bench temporal_signal
//! ```
//!
//! Per round and side: one run, `FLOCK_BENCH_SIGNALS` (200) round trips after 20 warm-up ones;
//! the query is polled until it shows the value just sent. `FLOCK_BENCH_ROUNDS` (3) rounds,
//! alternating which side goes first. Both workers run in this process.

use std::any::Any;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use flock::dev_server::{DevServer, DevServerOptions};
use flock::prelude::*;
use futures::FutureExt;
use futures::future::LocalBoxFuture;
use temporalio_client::{
    Client, ClientOptions, Connection, ConnectionOptions, Url, WorkflowGetResultOptions,
    WorkflowStartOptions,
};
use temporalio_common::data_converters::PayloadConverter;
use temporalio_common::protos::temporal::api::common::v1::Payloads;
use temporalio_common::{
    HasWorkflowDefinition, QueryDefinition, SignalDefinition, WorkflowDefinition,
};
use temporalio_sdk::workflow_interceptors::WorkflowOutputValue;
use temporalio_sdk::workflows::{
    WorkflowDefinitionDescriptor, WorkflowError, WorkflowImplementation,
};
use temporalio_sdk::{
    Worker, WorkerOptions, WorkflowContext, WorkflowContextView, WorkflowTermination,
};

// ------------------------------------------------------------------------------------------------
// B: the flow.

/// Takes `rounds` signals, publishing each.
#[flow(signals(bump: u32), queries(seen: u32))]
async fn signal_counter(ctx: &FlowContext, rounds: u32) -> Result<u32, FlowError> {
    ctx.publish(signal_counter::seen, &0)?;
    let mut last = 0;
    for _ in 0..rounds {
        last = ctx.wait(signal_counter::bump).await?;
        ctx.publish(signal_counter::seen, &last)?;
    }
    Ok(last)
}

// ------------------------------------------------------------------------------------------------
// A: the hand-written workflow.

struct Counter {
    queue: VecDeque<u32>,
    seen: u32,
}

struct CounterDef;

impl WorkflowDefinition for CounterDef {
    type Input = u32;
    type Output = u32;
    fn name(&self) -> &str {
        "bench.signal_counter"
    }
}

impl HasWorkflowDefinition for CounterDef {
    type Run = CounterDef;
}

struct Bump;
impl SignalDefinition for Bump {
    type Workflow = CounterDef;
    type Input = u32;
    fn name(&self) -> &str {
        "bump"
    }
}

struct Seen;
impl QueryDefinition for Seen {
    type Workflow = CounterDef;
    type Input = ();
    type Output = u32;
    fn name(&self) -> &str {
        "seen"
    }
}

fn first_json<T: serde::de::DeserializeOwned>(payloads: &Payloads) -> Option<T> {
    payloads
        .payloads
        .first()
        .and_then(|p| serde_json::from_slice(&p.data).ok())
}

impl WorkflowImplementation for Counter {
    type Run = CounterDef;
    const HAS_INIT: bool = false;
    const INIT_TAKES_INPUT: bool = false;

    fn name() -> &'static str {
        "bench.signal_counter"
    }

    fn definition() -> WorkflowDefinitionDescriptor {
        WorkflowDefinitionDescriptor {
            workflow_type: "bench.signal_counter".to_owned(),
            has_init: false,
            init_takes_input: false,
            signals: vec!["bump".to_owned()],
            queries: vec!["seen".to_owned()],
            updates: Vec::new(),
        }
    }

    fn init(_ctx: WorkflowContextView, _input: Option<u32>) -> Self {
        Counter {
            queue: VecDeque::new(),
            seen: 0,
        }
    }

    fn run(
        ctx: WorkflowContext<Self>,
        input: Option<u32>,
    ) -> LocalBoxFuture<'static, Result<Box<dyn WorkflowOutputValue>, WorkflowTermination>> {
        async move {
            let rounds = input.unwrap_or(0);
            let mut last = 0;
            for _ in 0..rounds {
                ctx.wait_condition(|w| !w.queue.is_empty())
                    .await
                    .map_err(|_| WorkflowTermination::cancelled())?;
                last = ctx.state_mut(|w| {
                    let v = w.queue.pop_front().unwrap_or(0);
                    w.seen = v;
                    v
                });
            }
            Ok(Box::new(last) as Box<dyn WorkflowOutputValue>)
        }
        .boxed_local()
    }

    fn decode_signal_input(
        _name: &str,
        payloads: Payloads,
        _converter: &PayloadConverter,
    ) -> Result<Option<Box<dyn Any>>, WorkflowError> {
        Ok(first_json::<u32>(&payloads).map(|v| Box::new(v) as Box<dyn Any>))
    }

    fn dispatch_signal(
        ctx: WorkflowContext<Self>,
        _name: &str,
        input: Box<dyn Any>,
    ) -> LocalBoxFuture<'static, Result<(), WorkflowError>> {
        if let Ok(v) = input.downcast::<u32>() {
            ctx.state_mut(|w| w.queue.push_back(*v));
        }
        futures::future::ready(Ok(())).boxed_local()
    }

    fn decode_query_input(
        _name: &str,
        _payloads: &Payloads,
        _converter: &PayloadConverter,
    ) -> Result<Option<Box<dyn Any>>, WorkflowError> {
        Ok(Some(Box::new(())))
    }

    fn dispatch_query(
        &self,
        _ctx: WorkflowContextView,
        _name: &str,
        _input: Box<dyn Any>,
    ) -> Result<Box<dyn WorkflowOutputValue>, WorkflowError> {
        Ok(Box::new(self.seen))
    }

    fn dispatch_update(
        _ctx: WorkflowContext<Self>,
        name: &str,
        _input: Box<dyn Any>,
    ) -> LocalBoxFuture<'static, Result<Box<dyn WorkflowOutputValue>, WorkflowError>> {
        let message = format!("no update {name}");
        futures::future::ready(Err(WorkflowError::from(Box::<
            dyn std::error::Error + Send + Sync,
        >::from(message))))
        .boxed_local()
    }

    fn validate_update(
        &self,
        _ctx: WorkflowContextView,
        name: &str,
        _input: Box<dyn Any>,
    ) -> Result<(), WorkflowError> {
        Err(WorkflowError::from(Box::<
            dyn std::error::Error + Send + Sync,
        >::from(format!(
            "no update {name}"
        ))))
    }
}

// ------------------------------------------------------------------------------------------------
// Measuring.

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn fresh_queue(label: &str) -> String {
    format!("bench-signal-{label}-{}", uuid_ish())
}

fn uuid_ish() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

const WARMUP: usize = 20;

/// Round trips `1..=warm-up+signals`, timing those after the warm-up; gives the sorted times (ms).
async fn round_trips<S, Q>(signals: usize, send: S, query: Q) -> Result<Vec<f64>, String>
where
    S: AsyncFn(u32) -> Result<(), String>,
    Q: AsyncFn() -> Result<u32, String>,
{
    let mut times = Vec::with_capacity(signals);
    for i in 1..=(WARMUP + signals) as u32 {
        let started = Instant::now();
        send(i).await?;
        loop {
            if query().await? == i {
                break;
            }
            if started.elapsed() > Duration::from_secs(30) {
                return Err(format!("signal {i} not seen within 30 s"));
            }
        }
        if i as usize > WARMUP {
            times.push(started.elapsed().as_secs_f64() * 1000.0);
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(times)
}

async fn hand_written(server: &DevServer, signals: usize) -> Result<Vec<f64>, String> {
    let url = Url::parse(&format!("http://{}", server.address())).map_err(|e| e.to_string())?;
    let connection = Connection::connect(ConnectionOptions::new(url).build())
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let client = Client::new(connection, ClientOptions::new("default").build())
        .map_err(|e| e.to_string())?;
    let runtime = temporalio_sdk::Runtime::from_current_tokio(Default::default())
        .map_err(|e| e.to_string())?;
    let queue = fresh_queue("sdk");
    let options = WorkerOptions::new(queue.clone())
        .register_workflow_with_factory::<Counter, _>(|| Counter {
            queue: VecDeque::new(),
            seen: 0,
        })
        .map_err(|e| e.to_string())?
        .build();
    let mut worker = Worker::new(&runtime, client.clone(), options).map_err(|e| e.to_string())?;
    let shutdown = worker.shutdown_handle();
    let work = async {
        let result = async {
            let rounds = (WARMUP + signals) as u32;
            let handle = client
                .start_workflow(
                    CounterDef,
                    rounds,
                    WorkflowStartOptions::new(queue.clone(), queue.clone()).build(),
                )
                .await
                .map_err(|e| format!("start: {e}"))?;
            let times = round_trips(
                signals,
                async |i| {
                    handle
                        .signal(Bump, i, Default::default())
                        .await
                        .map_err(|e| format!("signal: {e}"))
                },
                async || {
                    handle
                        .query(Seen, (), Default::default())
                        .await
                        .map_err(|e| format!("query: {e}"))
                },
            )
            .await?;
            let last = handle
                .get_result(WorkflowGetResultOptions::default())
                .await
                .map_err(|e| format!("result: {e}"))?;
            if last != rounds {
                return Err(format!("the workflow saw {last}, not {rounds}"));
            }
            Ok(times)
        }
        .await;
        shutdown();
        result
    };
    // The worker's run future is not Send: drive it on this task, next to the client.
    let (worker_result, times) = tokio::join!(worker.run(), work);
    worker_result.map_err(|e| format!("worker: {e}"))?;
    times
}

async fn with_flock(server: &DevServer, signals: usize) -> Result<Vec<f64>, String> {
    let flock = Flock::builder()
        .local_debug(false)
        .temporal(TemporalExecutorConfig {
            server_url: server.address(),
            task_queue: fresh_queue("flock"),
            ..Default::default()
        })
        .build()
        .await
        .map_err(|e| format!("cannot build the Flock: {e}"))?;
    let rounds = (WARMUP + signals) as u32;
    let handle = flock
        .run_flow(signal_counter, rounds)
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let times = round_trips(
        signals,
        async |i| {
            handle
                .signal(signal_counter::bump, i)
                .await
                .map_err(|e| e.to_string())
        },
        async || {
            // before the first publish the query is an error: not seen yet
            Ok(handle.query(signal_counter::seen).await.unwrap_or(0))
        },
    )
    .await?;
    let last = handle.result().await.map_err(|e| e.to_string())?;
    if last != rounds {
        return Err(format!("the flow saw {last}, not {rounds}"));
    }
    flock.shutdown().await.map_err(|e| e.to_string())?;
    Ok(times)
}

fn median(sorted: &[f64]) -> f64 {
    sorted[sorted.len() / 2]
}

fn p90(sorted: &[f64]) -> f64 {
    sorted[(sorted.len() * 9 / 10).min(sorted.len() - 1)]
}

fn main() {
    let signals = env_usize("FLOCK_BENCH_SIGNALS", 200).max(1);
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
            "temporal_signal: fast dev server at {}; {rounds} rounds of {signals} round trips per side (after {WARMUP} warm-up)",
            server.address()
        );
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            let order = if round % 2 == 0 { [false, true] } else { [true, false] };
            for is_flock in order {
                let times = if is_flock {
                    with_flock(&server, signals).await
                } else {
                    hand_written(&server, signals).await
                }
                .unwrap_or_else(|e| panic!("{}: {e}", if is_flock { "flock" } else { "sdk" }));
                println!(
                    "  round {}: {:<5} median {:.2} ms, p90 {:.2} ms, min {:.2} ms",
                    round + 1,
                    if is_flock { "flock" } else { "sdk" },
                    median(&times),
                    p90(&times),
                    times[0]
                );
                if is_flock { b.push(times) } else { a.push(times) }
            }
        }
        let all = |sets: &[Vec<f64>]| {
            let mut all: Vec<f64> = sets.iter().flatten().copied().collect();
            all.sort_by(f64::total_cmp);
            all
        };
        let (a, b) = (all(&a), all(&b));
        println!(
            "\nA  hand-written SDK: median {:.2} ms, p90 {:.2} ms\nB  flock:            median {:.2} ms, p90 {:.2} ms\nB/A: median {:.3}, p90 {:.3} (target ≤ 1.10)",
            median(&a),
            p90(&a),
            median(&b),
            p90(&b),
            median(&b) / median(&a),
            p90(&b) / p90(&a)
        );
    });
}
