//! The work both Temporal benchmarks run: three string transforms on a small struct, as plain
//! functions (for the hand-written program) and as flock agents and flows.

use flock::prelude::*;

/// The message the chain transforms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Msg {
    /// The text
    pub text: String,
    /// How many steps ran
    pub steps: u32,
}

pub fn upper(m: Msg) -> Msg {
    Msg {
        text: m.text.to_uppercase(),
        steps: m.steps + 1,
    }
}

pub fn reverse(m: Msg) -> Msg {
    Msg {
        text: m.text.chars().rev().collect(),
        steps: m.steps + 1,
    }
}

pub fn suffix(m: Msg) -> Msg {
    Msg {
        text: format!("{}!", m.text),
        steps: m.steps + 1,
    }
}

pub fn input(i: usize) -> Msg {
    Msg {
        text: format!("hello {i}"),
        steps: 0,
    }
}

pub fn check(i: usize, out: Msg) -> Result<(), String> {
    let expected = suffix(reverse(upper(input(i))));
    if out == expected {
        Ok(())
    } else {
        Err(format!("run {i}: got {out:?}, expected {expected:?}"))
    }
}

/// The three transforms as code agents with flock's default settings: durable steps (normal
/// activities on Temporal).
#[agent]
pub async fn upper_agent(input: Msg) -> Msg {
    upper(input)
}

#[agent]
pub async fn reverse_agent(input: Msg) -> Msg {
    reverse(input)
}

#[agent]
pub async fn suffix_agent(input: Msg) -> Msg {
    suffix(input)
}

#[flow]
pub async fn chain3(ctx: &FlowContext, input: Msg) -> Result<Msg, FlowError> {
    let m = ctx.call(upper_agent, input).await?;
    let m = ctx.call(reverse_agent, m).await?;
    ctx.call(suffix_agent, m).await
}

/// The opt-in fast path: `#[agent(local)]` (Temporal local activities, may run again after a
/// crash).
#[agent(local)]
pub async fn upper_local(input: Msg) -> Msg {
    upper(input)
}

#[agent(local)]
pub async fn reverse_local(input: Msg) -> Msg {
    reverse(input)
}

#[agent(local)]
pub async fn suffix_local(input: Msg) -> Msg {
    suffix(input)
}

/// `chain3` over local code agents.
#[flow]
pub async fn chain3_local(ctx: &FlowContext, input: Msg) -> Result<Msg, FlowError> {
    let m = ctx.call(upper_local, input).await?;
    let m = ctx.call(reverse_local, m).await?;
    ctx.call(suffix_local, m).await
}
