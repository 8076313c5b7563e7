use flock::prelude::*;

#[derive(Clone, Serialize, Deserialize, JsonSchema)]
pub struct Decision {
    pub approve: bool,
}

#[flow(signals(decision: Decision))]
async fn review(ctx: &FlowContext, _input: ()) -> Result<bool, FlowError> {
    Ok(ctx.wait(review::decision).await?.approve)
}

#[flow(signals(go: u32))]
async fn other(ctx: &FlowContext, _input: ()) -> Result<u32, FlowError> {
    ctx.wait(other::go).await
}

async fn send(flock: &Flock) -> Result<(), flock::Error> {
    let handle = flock.start_flow(review, ()).await?;
    // `go` is `other`'s signal, not `review`'s
    handle.signal(other::go, 1).await?;
    // and `decision` carries a `Decision`
    handle.signal(review::decision, 1).await
}

fn main() {
    let _ = send;
}
