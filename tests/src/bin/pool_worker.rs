//! A worker process for the pools test (`tests/integration/pools.rs`). `FLOCK_POOL=flows`
//! serves the flows on `FLOCK_TASK_QUEUE`; `FLOCK_POOL=pool-a` (`pool-b`) serves only the agent
//! of task queue `pools-a` (`pools-b`), as an agent pool (`worker --agents ..`); `both-pools`
//! serves the two pools in one process, two workers side by side. The agents and
//! flows are this binary's own, so that no other test process sees their queues.

use flock::prelude::*;

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Text {
    pub text: String,
}

/// The step of pool A.
#[agent(task_queue = "pools-a")]
async fn pool_a_step(input: Text) -> Text {
    Text {
        text: format!("{} a@{}", input.text, std::process::id()),
    }
}

/// The step of pool B. An attempt lost with a killed worker is retried after its 2 s timeout.
#[agent(task_queue = "pools-b", timeout = "2s")]
async fn pool_b_step(input: Text) -> Text {
    Text {
        text: format!("{} b@{}", input.text, std::process::id()),
    }
}

/// Pool A's step, then pool B's.
#[flow]
async fn across_pools(ctx: &FlowContext, input: Text) -> Result<Text, FlowError> {
    let a = ctx.call(pool_a_step, input).await?;
    ctx.call(pool_b_step, a).await
}

/// Pool A's step only.
#[flow]
async fn pool_a_only(ctx: &FlowContext, input: Text) -> Result<Text, FlowError> {
    ctx.call(pool_a_step, input).await
}

#[tokio::main]
async fn main() -> Result<(), flock::Error> {
    let var = |name: &str| {
        std::env::var(name).map_err(|_| flock::Error::Config(format!("{name} is not set")))
    };
    let (server_url, task_queue, pool) = (
        var("TEMPORAL_ADDRESS")?,
        var("FLOCK_TASK_QUEUE")?,
        var("FLOCK_POOL")?,
    );
    let flock = Flock::builder()
        .local_debug(false)
        .in_process_worker(false)
        .queue_served_elsewhere("pools-a")
        .queue_served_elsewhere("pools-b")
        .serve_only(["across_pools", "pool_a_only"])
        .temporal(TemporalExecutorConfig {
            server_url,
            task_queue,
            ..Default::default()
        })
        .build()
        .await?;
    if pool == "both-pools" {
        println!("worker ready");
        let (a, b) = tokio::join!(
            flock.worker().agents(["pool_a_step"]).run(),
            flock.worker().agents(["pool_b_step"]).run()
        );
        return a.and(b);
    }
    let worker = flock.worker();
    let worker = match pool.as_str() {
        "flows" => worker,
        "pool-a" => worker.agents(["pool_a_step"]),
        "pool-b" => worker.agents(["pool_b_step"]),
        other => {
            return Err(flock::Error::Config(format!(
                "FLOCK_POOL: `{other}` is none of flows, pool-a, pool-b, both-pools"
            )));
        }
    };
    println!("worker ready");
    worker.run().await
}
