//! Overhead of the local executor per agent hop: a 3-agent code chain run through `Flock`
//! against the same three functions called directly; then the same with observability on
//! (flock's Prometheus metrics enabled, and a `tracing` subscriber that records every span: the
//! registry with a `fmt` layer at INFO writing to a sink).
//!
//! ```text
//! cargo bench -p flock --bench local_hop
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use flock::prelude::*;
use tracing_subscriber::Layer;

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Value {
    /// A number
    pub n: u64,
    /// A label
    pub label: String,
}

fn step(input: Value, add: u64) -> Value {
    Value {
        n: black_box(input.n + add),
        label: input.label,
    }
}

#[agent(hand_off = second)]
async fn first(input: Value) -> Value {
    step(input, 1)
}

#[agent(hand_off = third)]
async fn second(input: Value) -> Value {
    step(input, 2)
}

#[agent]
async fn third(input: Value) -> Value {
    step(input, 3)
}

#[flow]
async fn three(ctx: &FlowContext, input: Value) -> Result<Value, FlowError> {
    let a = ctx.call(first, input).await?;
    let b = ctx.call(second, a).await?;
    ctx.call(third, b).await
}

async fn direct(input: Value) -> Value {
    async fn f(input: Value, add: u64) -> Value {
        step(input, add)
    }
    let a = f(input, 1).await;
    let b = f(a, 2).await;
    f(b, 3).await
}

fn input() -> Value {
    Value {
        n: 1,
        label: "a short label".to_owned(),
    }
}

/// Best of `rounds` rounds of `iterations` runs each, in ns per run.
fn measure<F: std::future::Future<Output = ()>>(
    rt: &tokio::runtime::Runtime,
    mut run: impl FnMut() -> F,
) -> f64 {
    let iterations = 20_000;
    let mut best = Duration::MAX;
    for _ in 0..7 {
        let start = Instant::now();
        rt.block_on(async {
            for _ in 0..iterations {
                run().await;
            }
        });
        best = best.min(start.elapsed());
    }
    best.as_nanos() as f64 / iterations as f64
}

/// ns per run of: the direct calls, the chain, the flow.
fn runs(rt: &tokio::runtime::Runtime, flock: &Flock) -> (f64, f64, f64) {
    let direct_ns = measure(rt, || async {
        black_box(direct(input()).await);
    });
    let chain_ns = measure(rt, || async {
        black_box(flock.run(first, input()).await.unwrap());
    });
    let flow_ns = measure(rt, || async {
        black_box(flock.run_flow(three, input()).await.unwrap());
    });
    (direct_ns, chain_ns, flow_ns)
}

fn report(what: &str, (direct_ns, chain_ns, flow_ns): (f64, f64, f64)) {
    println!("{what}");
    println!("  direct calls of the 3 functions: {direct_ns:>9.0} ns per run");
    println!(
        "  flock.run(first, ..) chain:      {chain_ns:>9.0} ns per run, {:>6.0} ns overhead per hop",
        (chain_ns - direct_ns) / 3.0
    );
    println!(
        "  flock.run_flow(three, ..):       {flow_ns:>9.0} ns per run, {:>6.0} ns overhead per hop",
        (flow_ns - direct_ns) / 3.0
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let flock = rt.block_on(Flock::builder().build()).unwrap();
    let off = runs(&rt, &flock);
    report("observability off (no subscriber, no metrics):", off);

    use tracing_subscriber::layer::SubscriberExt;
    let subscriber = tracing_subscriber::registry().with(
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::sink)
            .with_filter(tracing_subscriber::filter::LevelFilter::INFO),
    );
    tracing::subscriber::set_global_default(subscriber).unwrap();
    flock::observe::enable_metrics();
    let on = runs(&rt, &flock);
    report("observability on (metrics, every span recorded):", on);
    for (what, off, on) in [("chain", off.1, on.1), ("flow", off.2, on.2)] {
        println!(
            "{what}: {:+.0} ns per hop, {:+.1}% per run",
            (on - off) / 3.0,
            (on / off - 1.0) * 100.0
        );
    }
}
