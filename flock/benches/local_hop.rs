//! Overhead of the local executor per agent hop: a 3-agent code chain run through `Flock`
//! against the same three functions called directly.
//!
//! ```text
//! cargo bench -p flock --bench local_hop
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use flock::prelude::*;

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

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let flock = rt.block_on(Flock::builder().build()).unwrap();
    let direct_ns = measure(&rt, || async {
        black_box(direct(input()).await);
    });
    let chain_ns = measure(&rt, || async {
        black_box(flock.run(first, input()).await.unwrap());
    });
    let flow_ns = measure(&rt, || async {
        black_box(flock.run_flow(three, input()).await.unwrap());
    });
    println!("direct calls of the 3 functions: {direct_ns:>9.0} ns per run");
    println!(
        "flock.run(first, ..) chain:      {chain_ns:>9.0} ns per run, {:>6.0} ns overhead per hop",
        (chain_ns - direct_ns) / 3.0
    );
    println!(
        "flock.run_flow(three, ..):       {flow_ns:>9.0} ns per run, {:>6.0} ns overhead per hop",
        (flow_ns - direct_ns) / 3.0
    );
}
