//! Flows: every key, sequential calls, a parallel fan-out with `join!`/`try_join!`/`join_all`,
//! a child flow, and a `Result` alias for the return type.

use std::time::Duration;

use flock::prelude::*;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct N {
    pub n: u64,
}

#[derive(Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Ns {
    pub ns: Vec<u64>,
}

type FlowResult<T> = Result<T, FlowError>;

/// Adds one.
#[agent]
async fn inc(input: N) -> N {
    N { n: input.n + 1 }
}

/// Doubles.
#[agent]
async fn double(input: N) -> N {
    N { n: input.n * 2 }
}

/// Runs both agents in parallel and adds the results.
#[flow(
    name = "both",
    description = "Both at once.",
    task_queue = "flows",
    execution_timeout = "1h",
    run_timeout = "10m"
)]
pub async fn both_flow(ctx: &FlowContext, input: N) -> Result<N, FlowError> {
    let (a, b) = flock::try_join!(ctx.call(inc, input.clone()), ctx.call(double, input.clone()))?;
    let (c, d) = flock::join!(ctx.call(inc, a.clone()), ctx.call(double, b.clone()));
    Ok(N { n: c?.n + d?.n })
}

/// A batch: one child flow per number.
#[flow]
async fn batch(ctx: &FlowContext, input: Ns) -> FlowResult<Ns> {
    let children = input.ns.into_iter().map(|n| ctx.call_flow(both_flow, N { n }));
    let outputs = flock::try_join_all(children).await?;
    Ok(Ns { ns: outputs.into_iter().map(|n| n.n).collect() })
}

fn main() {
    assert_eq!(<both_flow as Flow>::NAME, "both");
    let spec = both_flow.spec();
    assert_eq!(spec.description, "Both at once.");
    assert_eq!(spec.task_queue, Some("flows"));
    assert_eq!(spec.execution_timeout, Some(Duration::from_secs(3600)));
    assert_eq!(spec.run_timeout, Some(Duration::from_secs(600)));
    assert!(spec.location.contains("flows.rs:"));
    assert_eq!(batch.spec().name, "batch");
    assert_eq!(batch.spec().execution_timeout, None);
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let flock = Flock::builder().model("test").local_debug(true).build().await.unwrap();
        // n = 3: inc 4, double 6; inc(4) = 5, double(6) = 12; 17
        assert_eq!(flock.run_flow(both_flow, N { n: 3 }).await.unwrap(), N { n: 17 });
        let out = flock.run_flow(batch, Ns { ns: vec![0, 3] }).await.unwrap();
        // n = 0: inc 1, double 0; inc(1) = 2, double(0) = 0; 2
        assert_eq!(out, Ns { ns: vec![2, 17] });
        let flows: Vec<_> = flock.registry().flows().map(|f| f.spec().name).collect();
        assert_eq!(flows, ["batch", "both"]);
    });
}
