//! Code agents: with and without a context, returning the output, a `Result`, an `AgentResult`
//! alias, a fully qualified `Result`, a module's own `Result` alias, a plain output behind an
//! alias; `_` and `mut` parameters; run directly and through a Flock.

use flock::prelude::*;
use flock::{AgentKind, AgentResult};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct N {
    pub n: i64,
}

#[derive(Debug)]
pub struct Overflow;

impl std::fmt::Display for Overflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("overflow")
    }
}

impl std::error::Error for Overflow {}

/// Doubles.
#[agent]
async fn double(input: N) -> N {
    N { n: input.n * 2 }
}

/// Adds the attempt number.
#[agent(timeout = "1s")]
async fn add_attempt(ctx: &AgentContext, mut input: N) -> N {
    input.n += i64::from(ctx.attempt());
    input
}

/// Fails on negative numbers.
#[agent]
pub async fn checked(_: &AgentContext, input: N) -> Result<N, AgentError> {
    if input.n < 0 {
        return Err(AgentError::invalid_input("negative"));
    }
    Ok(input)
}

/// Uses the alias.
#[agent]
async fn aliased(input: N) -> AgentResult<N> {
    Ok(N { n: input.n + 1 })
}

/// Any error that converts into `AgentError` works, through any path to `Result`.
#[agent]
async fn squared(input: N) -> std::result::Result<N, Overflow> {
    input.n.checked_mul(input.n).map(|n| N { n }).ok_or(Overflow)
}

/// A module's own `Result<T>`, as `io::Result` or `anyhow::Result` are.
mod outcome {
    pub type Result<T> = std::result::Result<T, flock::AgentError>;
}

/// Behind an alias, a plain output is still a plain output.
type Same = N;

/// Negates, through the module's `Result`.
#[agent]
async fn negated(input: N) -> outcome::Result<N> {
    Ok(N { n: -input.n })
}

/// Returns its input, through the plain alias.
#[agent]
async fn same(input: Same) -> Same {
    input
}

#[flow]
async fn all(ctx: &FlowContext, input: N) -> Result<N, FlowError> {
    let n = ctx.call(double, input).await?;
    let n = ctx.call(add_attempt, n).await?;
    let n = ctx.call(checked, n).await?;
    let n = ctx.call(aliased, n).await?;
    ctx.call(squared, n).await
}

fn main() {
    assert_eq!(double.spec().kind, AgentKind::Code);
    assert_eq!(add_attempt.spec().timeout, Some(std::time::Duration::from_secs(1)));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let direct = double.call(AgentContext::detached(double.spec()), N { n: 4 }).await;
        assert_eq!(direct, Ok(N { n: 8 }));
        let refused = checked.call(AgentContext::detached(checked.spec()), N { n: -1 }).await;
        assert_eq!(refused, Err(AgentError::invalid_input("negative")));
        let overflow = squared.call(AgentContext::detached(squared.spec()), N { n: i64::MAX }).await;
        assert!(matches!(overflow, Err(AgentError::Transient { message }) if message == "overflow"));

        let flock = Flock::builder().model("test").local_debug(true).build().await.unwrap();
        // ((3 * 2) + 1 + 1)^2
        assert_eq!(flock.run_flow(all, N { n: 3 }).await.unwrap(), N { n: 64 });
        let chained: N = flock.run(aliased, N { n: 1 }).await.unwrap();
        assert_eq!(chained, N { n: 2 });
        let out: N = flock.run(negated, N { n: 1 }).await.unwrap();
        assert_eq!(out, N { n: -1 });
        let out: N = flock.run(same, N { n: 5 }).await.unwrap();
        assert_eq!(out, N { n: 5 });
    });
}
