//! Agents that leave side effects in a file (`FLOCK_DURABILITY_FILE`), so a test can kill their
//! worker while they run and count what ran how often: a 3-agent flow (killed in the second
//! agent), a chain of ten cheap code agents with default settings (killed in the second), and an
//! agent of ten checkpointed steps (killed at step 7).

use std::io::Write;
use std::time::Duration;

use flock::prelude::*;

/// The side-effect file's variable.
pub const FILE_VAR: &str = "FLOCK_DURABILITY_FILE";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Work {
    /// What has been done so far
    pub trail: Vec<String>,
}

fn note(event: &str) -> Result<usize, AgentError> {
    let path = std::env::var(FILE_VAR)
        .map_err(|_| AgentError::permanent(format!("{FILE_VAR} is not set")))?;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    // one write call per line: with O_APPEND it lands whole, where `writeln!` may split it into
    // several writes that interleave with another attempt's
    file.write_all(format!("{event}\n").as_bytes())?;
    file.sync_all()?;
    let text = std::fs::read_to_string(&path)?;
    Ok(text.lines().filter(|line| *line == event).count())
}

/// The lines of the side-effect file equal to `event`.
pub fn count(path: &std::path::Path, event: &str) -> usize {
    std::fs::read_to_string(path)
        .map(|text| text.lines().filter(|line| *line == event).count())
        .unwrap_or(0)
}

#[agent(retry(attempts = 5, initial_interval = "100ms"))]
pub async fn d_first(input: Work) -> Result<Work, AgentError> {
    note("first")?;
    let mut trail = input.trail;
    trail.push("first".into());
    Ok(Work { trail })
}

/// On its first run it hangs (heartbeating) until its worker is killed; later runs finish.
#[agent(
    heartbeat = "1s",
    timeout = "2m",
    retry(attempts = 5, initial_interval = "100ms")
)]
pub async fn d_second(ctx: &AgentContext, input: Work) -> Result<Work, AgentError> {
    let starts = note("second-start")?;
    if starts == 1 {
        for beat in 0..600 {
            ctx.report_progress(beat);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    note("second-done")?;
    let mut trail = input.trail;
    trail.push("second".into());
    Ok(Work { trail })
}

#[agent(retry(attempts = 5, initial_interval = "100ms"))]
pub async fn d_third(input: Work) -> Result<Work, AgentError> {
    note("third")?;
    let mut trail = input.trail;
    trail.push("third".into());
    Ok(Work { trail })
}

#[flow]
pub async fn d_flow(ctx: &FlowContext, work: Work) -> Result<Work, FlowError> {
    let work = ctx.call(d_first, work).await?;
    let work = ctx.call(d_second, work).await?;
    ctx.call(d_third, work).await
}

// ---------------------------------------------------------------------------------------------
// A chain of cheap code agents, written the obvious way: default settings, a side effect each.

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Chain {
    /// The steps done so far
    pub done: Vec<u32>,
}

/// Notes `step N` (N: the steps done so far + 1). Step 2's first run notes `step 2 start` and
/// waits (about 2 s, under its timeout) for its worker to be killed; the timeout is what a
/// killed worker's attempt is retried after.
#[agent(timeout = "3s", retry(attempts = 5, initial_interval = "100ms"))]
pub async fn chain_step(input: Chain) -> Result<Chain, AgentError> {
    let step = input.done.len() as u32 + 1;
    if step == 2 && note("step 2 start")? == 1 {
        tokio::time::sleep(Duration::from_millis(2_000)).await;
    }
    note(&format!("step {step}"))?;
    let mut done = input.done;
    done.push(step);
    Ok(Chain { done })
}

/// Ten calls of [`chain_step`], one after the other.
#[flow]
pub async fn chain_ten(ctx: &FlowContext, mut chain: Chain) -> Result<Chain, FlowError> {
    for _ in 0..10 {
        chain = ctx.call(chain_step, chain).await?;
    }
    Ok(chain)
}

// ---------------------------------------------------------------------------------------------
// Checkpoints.

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Steps {
    /// How many steps to run
    pub total: u32,
    /// The step at which the first attempt stops, heartbeating, until its worker is killed
    pub hang_at: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StepsDone {
    /// The step the finishing attempt resumed at (`None`: it started at step 1)
    pub resumed_at: Option<u32>,
    /// The finishing attempt
    pub attempt: u32,
}

/// The checkpoint of [`k_ten_steps`]: the next step to run.
#[derive(Debug, Serialize, Deserialize)]
pub struct NextStep {
    pub next: u32,
}

/// Runs its steps, writing `step N` to the file after each and checkpointing the next one. Its
/// first attempt writes `hang N` at step `hang_at` and heartbeats there until its worker is
/// killed; the heartbeat timeout makes the server retry it soon after.
#[agent(
    heartbeat = "2s",
    timeout = "2m",
    retry(attempts = 3, initial_interval = "100ms")
)]
pub async fn k_ten_steps(ctx: &AgentContext, input: Steps) -> Result<StepsDone, AgentError> {
    let resumed_at = ctx.resume::<NextStep>()?.map(|checkpoint| checkpoint.next);
    for step in resumed_at.unwrap_or(1)..=input.total {
        if step == input.hang_at && ctx.attempt() == 1 {
            note(&format!("hang {step}"))?;
            for _ in 0..1200 {
                ctx.report_progress(step);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            return Err(AgentError::permanent("the worker was not killed"));
        }
        note(&format!("step {step}"))?;
        ctx.checkpoint(&NextStep { next: step + 1 })?;
    }
    Ok(StepsDone {
        resumed_at,
        attempt: ctx.attempt(),
    })
}

/// On its first attempt saves six checkpoints at once, notes `six saved`, then waits without
/// heartbeating until its worker is killed; a later attempt reports where it resumed.
#[agent(
    heartbeat = "10s",
    timeout = "2m",
    retry(attempts = 3, initial_interval = "100ms")
)]
pub async fn k_six_then_wait(ctx: &AgentContext, _input: Steps) -> Result<StepsDone, AgentError> {
    let resumed_at = ctx.resume::<NextStep>()?.map(|checkpoint| checkpoint.next);
    if ctx.attempt() == 1 {
        for step in 1..=6 {
            ctx.checkpoint(&NextStep { next: step + 1 })?;
        }
        note("six saved")?;
        tokio::time::sleep(Duration::from_secs(120)).await;
        return Err(AgentError::permanent("the worker was not killed"));
    }
    Ok(StepsDone {
        resumed_at,
        attempt: ctx.attempt(),
    })
}

// ---------------------------------------------------------------------------------------------
// The kill soak: flows of three steps, each noting its start and its end (with its attempt) in
// the ledger and working for a few hundred milliseconds in between, so that a worker killed at
// a random moment cuts some of them mid-attempt.

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Leg {
    /// Which flow of the soak
    pub flow: u32,
    /// The steps done so far
    pub trail: Vec<u32>,
}

/// The ledger line of an attempt of step `step` of flow `flow`: `start 7-2 1`, `done 7-2 1`.
pub fn ledger_line(event: &str, flow: u32, step: u32, attempt: u32) -> String {
    format!("{event} {flow}-{step} {attempt}")
}

/// One step of a soak flow.
#[agent(
    heartbeat = "1s",
    timeout = "1m",
    retry(attempts = 30, initial_interval = "100ms", max_interval = "1s")
)]
pub async fn soak_step(ctx: &AgentContext, leg: Leg) -> Result<Leg, AgentError> {
    let step = leg.trail.len() as u32 + 1;
    note(&ledger_line("start", leg.flow, step, ctx.attempt()))?;
    let millis = 200 + (leg.flow * 37 + step * 101) % 500;
    for beat in 0..millis / 50 {
        ctx.report_progress(beat);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    note(&ledger_line("done", leg.flow, step, ctx.attempt()))?;
    let mut trail = leg.trail;
    trail.push(step);
    Ok(Leg { trail, ..leg })
}

/// Three steps.
#[flow]
pub async fn soak_flow(ctx: &FlowContext, leg: Leg) -> Result<Leg, FlowError> {
    let leg = ctx.call(soak_step, leg).await?;
    let leg = ctx.call(soak_step, leg).await?;
    ctx.call(soak_step, leg).await
}

// ---------------------------------------------------------------------------------------------
// A declarative agent of four tools, run step by step: each model request and each tool call a
// durable step. The ledger is a tool argument (the scripted model writes it), so the same tools
// note their calls on both executors without an environment variable.

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Trip {
    /// Where to
    pub city: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Plan {
    /// The plan in one line
    pub summary: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct Booking {
    /// Which leg of the trip
    pub leg: u32,
    /// The file the booking is noted in
    pub ledger: String,
}

fn note_in(ledger: &str, event: &str) -> Result<usize, String> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(ledger)
        .map_err(|e| e.to_string())?;
    file.write_all(format!("{event}\n").as_bytes())
        .map_err(|e| e.to_string())?;
    file.sync_all().map_err(|e| e.to_string())?;
    let text = std::fs::read_to_string(ledger).map_err(|e| e.to_string())?;
    Ok(text.lines().filter(|line| *line == event).count())
}

/// Books the flight.
#[tool(timeout = "3s", retry(attempts = 5, initial_interval = "100ms"))]
pub async fn t_flight(ctx: &ToolContext, args: Booking) -> Result<String, String> {
    note_in(
        &args.ledger,
        &format!("t_flight key {}", ctx.idempotency_key()),
    )?;
    note_in(&args.ledger, "t_flight")?;
    Ok(format!("flight booked (leg {})", args.leg))
}

/// Books the hotel.
#[tool(timeout = "3s", retry(attempts = 5, initial_interval = "100ms"))]
pub async fn t_hotel(args: Booking) -> Result<String, String> {
    note_in(&args.ledger, "t_hotel")?;
    Ok(format!("hotel booked (leg {})", args.leg))
}

/// Books the car. Its first run notes `t_car start` and waits (2 s, under its timeout) for its
/// worker to be killed; the timeout is what a killed worker's call is retried after.
#[tool(timeout = "3s", retry(attempts = 5, initial_interval = "100ms"))]
pub async fn t_car(ctx: &ToolContext, args: Booking) -> Result<String, String> {
    // what a payment API would deduplicate on: the same for the killed attempt and its retry
    note_in(
        &args.ledger,
        &format!("t_car key {}", ctx.idempotency_key()),
    )?;
    if note_in(&args.ledger, "t_car start")? == 1 {
        tokio::time::sleep(Duration::from_millis(2_000)).await;
    }
    note_in(&args.ledger, "t_car")?;
    Ok(format!("car booked (leg {})", args.leg))
}

/// Books dinner.
#[tool(timeout = "3s", retry(attempts = 5, initial_interval = "100ms"))]
pub async fn t_dinner(args: Booking) -> Result<String, String> {
    note_in(&args.ledger, "t_dinner")?;
    Ok(format!("dinner booked (leg {})", args.leg))
}

/// Plan the trip: book what it needs with the tools, then say what was booked.
#[agent(
    tools = [t_flight, t_hotel, t_car, t_dinner],
    timeout = "10s",
    retry(attempts = 3, initial_interval = "100ms")
)]
pub async fn trip_planner(input: Trip) -> Plan;

#[flow]
pub async fn trip_flow(ctx: &FlowContext, trip: Trip) -> Result<Plan, FlowError> {
    ctx.call(trip_planner, trip).await
}

/// Works it out with the calculator's MCP tools (the durability worker configures `calc` from
/// `FLOCK_MCP_SERVER` and `FLOCK_MCP_LEDGER`).
#[agent(
    mcp = ["calc"],
    timeout = "3s",
    retry(attempts = 5, initial_interval = "100ms")
)]
pub async fn mcp_planner(input: Trip) -> Plan;

#[flow]
pub async fn mcp_trip(ctx: &FlowContext, trip: Trip) -> Result<Plan, FlowError> {
    ctx.call(mcp_planner, trip).await
}

/// Pays for the trip; a person approves it first (its arguments are an approval token).
#[tool(timeout = "3s", retry(attempts = 5, initial_interval = "100ms"))]
pub async fn t_pay(args: flock::approval::Approved<Booking>) -> Result<String, String> {
    let by = args.decision().by.clone().unwrap_or_default();
    note_in(&args.ledger, &format!("t_pay by {by}"))?;
    Ok(format!("paid (leg {})", args.leg))
}

/// Pay for the trip with the tool, then say what was paid.
#[agent(
    tools = [t_pay],
    timeout = "10s",
    retry(attempts = 3, initial_interval = "100ms")
)]
pub async fn trip_payer(input: Trip) -> Plan;

#[flow]
pub async fn pay_trip(ctx: &FlowContext, trip: Trip) -> Result<Plan, FlowError> {
    ctx.call(trip_payer, trip).await
}
