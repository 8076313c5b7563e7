//! What observability costs on Temporal: the same flows with tracing and metrics off and on,
//! on one fast-profile dev server started by this benchmark, in one run.
//!
//! ```text
//! TEMPORAL_CLI=/path/to/temporal cargo bench -p flock --bench temporal_observe
//! ```
//!
//! `tracing`'s global subscriber and flock's metrics are process-wide and cannot be turned off
//! once on, so each measurement is a child process of this benchmark (the same executable),
//! `off` and `on` taking turns round by round, each with a fresh task queue and its in-process
//! worker:
//!
//! * `off`: no subscriber, no metrics;
//! * `metrics`: `FlockBuilder::metrics` only (flock's counters and histograms plus the SDK core's
//!   worker metrics, served on a loopback port), no subscriber;
//! * `on`: a subscriber recording every span (the registry with a `fmt` layer at INFO writing to
//!   a sink, which formats every span's fields) and `FlockBuilder::metrics` (flock's counters and
//!   histograms plus the SDK core's worker metrics, served on a loopback port).
//!
//! Two flows, each 3 cheap code agents in sequence: `B` on normal activities
//! (`#[agent(local = false)]`), `C` with flock's defaults (local activities, eager start).
//! Per child and flow: warm-up runs, latency over `FLOCK_BENCH_RUNS` (30) sequential runs,
//! throughput of `FLOCK_BENCH_CONCURRENT` (200) runs started at once; `FLOCK_BENCH_ROUNDS` (5)
//! rounds. Every result is checked.

use std::time::{Duration, Instant};

use flock::dev_server::{DevServer, DevServerOptions};
use flock::prelude::*;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;

#[path = "common/chain.rs"]
mod chain;
use chain::*;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One flow's figures in one child.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct Figures {
    median_ms: f64,
    flows_per_s: f64,
    failed: usize,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

async fn measure<F: Flow<Input = Msg, Output = Msg>>(flock: &Flock, flow: F) -> Figures {
    let run = |i: usize| {
        let flock = flock.clone();
        async move {
            let out = flock
                .run_flow(flow, input(i))
                .await
                .map_err(|e| e.to_string())?;
            check(i, out)
        }
    };
    let mut failed = 0;
    let mut next = 0;
    for _ in 0..env_usize("FLOCK_BENCH_WARMUP", 5) {
        failed += usize::from(run(next).await.is_err());
        next += 1;
    }
    let mut ms = Vec::new();
    for _ in 0..env_usize("FLOCK_BENCH_RUNS", 30).max(1) {
        let start = Instant::now();
        failed += usize::from(run(next).await.is_err());
        ms.push(start.elapsed().as_secs_f64() * 1000.0);
        next += 1;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let concurrent = env_usize("FLOCK_BENCH_CONCURRENT", 200).max(1);
    let start = Instant::now();
    let results = futures::future::join_all((next..next + concurrent).map(run)).await;
    let elapsed = start.elapsed().as_secs_f64();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
        eprintln!("a run failed: {e}");
    }
    Figures {
        median_ms: median(ms),
        flows_per_s: ok as f64 / elapsed,
        failed: failed + concurrent - ok,
    }
}

/// What a child measures with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Off,
    Metrics,
    On,
}

impl Mode {
    const ALL: [Mode; 3] = [Mode::Off, Mode::Metrics, Mode::On];

    fn name(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Metrics => "metrics",
            Mode::On => "on",
        }
    }

    fn metrics(self) -> bool {
        self != Mode::Off
    }
}

/// The child: measures B and C against the server at `address`, prints one JSON line.
fn child(address: String, mode: Mode) {
    if mode == Mode::On {
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::sink)
                .with_filter(tracing_subscriber::filter::LevelFilter::INFO),
        );
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let figures = runtime.block_on(async {
        let mut builder = Flock::builder()
            .local_debug(false)
            .temporal(TemporalExecutorConfig {
                server_url: address,
                task_queue: format!("bench-observe-{}", uuid::Uuid::new_v4().simple()),
                ..Default::default()
            });
        if mode.metrics() {
            builder = builder.metrics("127.0.0.1:0");
        }
        let flock = builder.build().await.expect("a Flock");
        let b = measure(&flock, chain3).await;
        let c = measure(&flock, chain3_local).await;
        if mode.metrics() {
            // The metrics did count: the endpoint serves flock's and the worker's.
            let metrics = flock::observe::enable_metrics().encode().await;
            assert!(
                metrics.contains("flock_agent_attempts_total")
                    && metrics.contains("temporal_workflow_completed"),
                "observability on, but the metrics are missing:\n{metrics}"
            );
        }
        flock.shutdown().await.expect("worker shutdown");
        [b, c]
    });
    println!(
        "{}",
        serde_json::to_string(&figures).expect("figures as JSON")
    );
}

fn run_child(address: &str, mode: Mode) -> [Figures; 2] {
    let output = std::process::Command::new(std::env::current_exe().expect("this executable"))
        .env("FLOCK_BENCH_CHILD", mode.name())
        .env("FLOCK_BENCH_SERVER", address)
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("the child process starts");
    assert!(
        output.status.success(),
        "the child failed: {}",
        output.status
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("the child printed {stdout:?}: {e}"))
}

fn main() {
    if let Ok(mode) = std::env::var("FLOCK_BENCH_CHILD") {
        let address = std::env::var("FLOCK_BENCH_SERVER").expect("FLOCK_BENCH_SERVER");
        let mode = Mode::ALL
            .into_iter()
            .find(|m| m.name() == mode)
            .expect("FLOCK_BENCH_CHILD is off, metrics or on");
        return child(address, mode);
    }
    let rounds = env_usize("FLOCK_BENCH_ROUNDS", 5).max(1);
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let server = runtime
        .block_on(DevServer::start(DevServerOptions::default()))
        .unwrap_or_else(|e| panic!("cannot start the dev server: {e}"));
    println!(
        "temporal_observe: fast dev server at {}, {rounds} rounds, off, metrics and on in turn",
        server.address()
    );
    // A fresh server is slower for its first workflows: warm it up, untimed.
    run_child(&server.address(), Mode::Off);
    let mut figures_of: [Vec<[Figures; 2]>; 3] = Default::default();
    for round in 0..rounds {
        // each mode first, second and last in turn
        let mut order = Mode::ALL;
        order.rotate_left(round % 3);
        for mode in order {
            let figures = run_child(&server.address(), mode);
            println!(
                "  round {} {:<3}  B: {:>6.1} ms {:>6.1} flows/s   C: {:>6.1} ms {:>6.1} flows/s   failed {}",
                round + 1,
                mode.name(),
                figures[0].median_ms,
                figures[0].flows_per_s,
                figures[1].median_ms,
                figures[1].flows_per_s,
                figures[0].failed + figures[1].failed
            );
            figures_of[mode as usize].push(figures);
        }
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "\nmedians over {rounds} rounds (load average after: {})",
        load.trim()
    );
    println!("| flow | mode | latency (ms) | vs off | flows/s | vs off (target >= 0.95) |");
    println!("|---|---|---:|---:|---:|---:|");
    for (i, name) in ["B activities", "C local activities, eager"]
        .iter()
        .enumerate()
    {
        let get = |mode: Mode, f: fn(&Figures) -> f64| {
            median(figures_of[mode as usize].iter().map(|r| f(&r[i])).collect())
        };
        let (lat_off, thr_off) = (
            get(Mode::Off, |f| f.median_ms),
            get(Mode::Off, |f| f.flows_per_s),
        );
        for mode in Mode::ALL {
            let (lat, thr) = (get(mode, |f| f.median_ms), get(mode, |f| f.flows_per_s));
            println!(
                "| {name} | {} | {lat:.1} | {:.3} | {thr:.1} | {:.3} |",
                mode.name(),
                lat / lat_off,
                thr / thr_off
            );
        }
    }
}
