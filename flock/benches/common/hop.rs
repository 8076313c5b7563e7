//! The local hop's work, shared by `local_hop`, `hop_ab` (built also in an earlier commit's tree
//! by `scripts/hop-ab`: it uses only what every version of flock has) and the CI allocation
//! check `tests/tests/integration/hop.rs`: a 3-agent code chain (`first` → `second` → `third`), a
//! 3-call flow (`three`), and the same three steps called directly (`direct`).

use std::hint::black_box;

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
pub async fn first(input: Value) -> Value {
    step(input, 1)
}

#[agent(hand_off = third)]
pub async fn second(input: Value) -> Value {
    step(input, 2)
}

#[agent]
pub async fn third(input: Value) -> Value {
    step(input, 3)
}

#[flow]
pub async fn three(ctx: &FlowContext, input: Value) -> Result<Value, FlowError> {
    let a = ctx.call(first, input).await?;
    let b = ctx.call(second, a).await?;
    ctx.call(third, b).await
}

pub async fn direct(input: Value) -> Value {
    async fn f(input: Value, add: u64) -> Value {
        step(input, add)
    }
    let a = f(input, 1).await;
    let b = f(a, 2).await;
    f(b, 3).await
}

pub fn input() -> Value {
    Value {
        n: 1,
        label: "a short label".to_owned(),
    }
}
