//! Flows for the command-line tests: steps that take a while (to watch the live progress) and a
//! flow that fails (for the exit code).

use flock::prelude::*;

/// How many steps, how long each.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Steps {
    /// How many steps.
    pub count: u32,
    /// How long each step takes, in milliseconds.
    pub ms: u64,
}

/// One step's outcome.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Done {
    /// Steps done so far.
    pub done: u32,
}

/// Takes its time, then counts (a normal activity, so that each step shows in the history as it
/// starts and ends).
#[agent(timeout = "60s", local = false)]
pub async fn slow_step(input: Steps) -> Result<Done, AgentError> {
    tokio::time::sleep(Duration::from_millis(input.ms)).await;
    Ok(Done { done: 1 })
}

/// Runs `count` slow steps one after the other.
#[flow]
pub async fn slow_flow(ctx: &FlowContext, input: Steps) -> Result<Done, FlowError> {
    let mut done = 0;
    for _ in 0..input.count {
        done += ctx
            .call(
                slow_step,
                Steps {
                    count: 1,
                    ms: input.ms,
                },
            )
            .await?
            .done;
    }
    Ok(Done { done })
}

/// Always refuses.
#[agent(retry(attempts = 1))]
pub async fn refuse(input: Steps) -> Result<Done, AgentError> {
    let _ = input;
    Err(AgentError::permanent("refused on purpose"))
}

/// A flow that fails: its agent refuses.
#[flow]
pub async fn failing_flow(ctx: &FlowContext, input: Steps) -> Result<Done, FlowError> {
    ctx.call(refuse, input).await
}

/// A renamed agent: the graph names it by its registered name.
#[agent(name = "renamed_step")]
pub async fn named_step(input: Steps) -> Done {
    Done { done: input.count }
}

/// The head of a hand-off chain.
#[agent(hand_off = named_step)]
pub async fn chain_head(input: Steps) -> Steps {
    input
}

/// Every kind of call site, for `graph`: a renamed agent called twice, a chain, a child flow in
/// a loop, and an agent through a local binding (unresolved).
#[flow]
pub async fn graph_flow(ctx: &FlowContext, input: Steps) -> Result<Done, FlowError> {
    let steps = || Steps {
        count: input.count,
        ms: input.ms,
    };
    let mut done = ctx.call(named_step, steps()).await?.done;
    done += ctx.call(named_step, steps()).await?.done;
    done += ctx.call_chain(chain_head, steps()).await?.done;
    for _ in 0..input.count {
        done += ctx.call_flow(slow_flow, steps()).await?.done;
    }
    let step = named_step;
    done += ctx.call(step, steps()).await?.done;
    Ok(Done { done })
}

/// An update's validator that panics on `"boom"` (a bug in a validator must be an error to the
/// sender, not a crash of the sending process).
pub fn explodes_on_boom(text: &String) -> Result<(), String> {
    if text == "boom" {
        panic!("the validator exploded on `{text}`");
    }
    Ok(())
}

/// Answers `echo` updates until signal `stop`.
#[flow(
    signals(
        /// Ends the run.
        stop: bool
    ),
    updates(
        /// Answered with the text sent.
        echo: String -> String
    ),
    validate(echo = explodes_on_boom)
)]
pub async fn echoes(ctx: &FlowContext, _input: Steps) -> Result<Done, FlowError> {
    let mut done = 0;
    loop {
        let stop = ctx.wait(echoes::stop).into_future();
        let echo = Box::pin(ctx.next_update(echoes::echo));
        match flock::select(stop, echo).await {
            flock::Either::Left((stop, _)) => {
                stop?;
                return Ok(Done { done });
            }
            flock::Either::Right((request, _)) => {
                let request = request?;
                let text = request.input().clone();
                request.reply(&text)?;
                done += 1;
            }
        }
    }
}

/// Continues as new `count` times, `ms` milliseconds apart; its output counts the generations.
#[flow]
pub async fn continues(ctx: &FlowContext, input: Steps) -> Result<Done, FlowError> {
    if input.count == 0 {
        return Ok(Done { done: 0 });
    }
    ctx.sleep(Duration::from_millis(input.ms)).await?;
    ctx.continue_as_new(
        continues,
        Steps {
            count: input.count - 1,
            ms: input.ms,
        },
    )
}
