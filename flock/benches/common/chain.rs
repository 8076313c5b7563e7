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

#[agent(local = false)]
pub async fn upper_remote(input: Msg) -> Msg {
    upper(input)
}

#[agent(local = false)]
pub async fn reverse_remote(input: Msg) -> Msg {
    reverse(input)
}

#[agent(local = false)]
pub async fn suffix_remote(input: Msg) -> Msg {
    suffix(input)
}

/// `chain3` on normal activities.
#[flow]
pub async fn chain3_remote(ctx: &FlowContext, input: Msg) -> Result<Msg, FlowError> {
    let m = ctx.call(upper_remote, input).await?;
    let m = ctx.call(reverse_remote, m).await?;
    ctx.call(suffix_remote, m).await
}
