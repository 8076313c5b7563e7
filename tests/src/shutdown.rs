//! A one-agent flow whose agent takes a while (`FLOCK_AGENT_MS`, default 2000 ms) and notes its
//! start and end in a file (`FLOCK_SHUTDOWN_FILE`), so a test can stop the worker while the agent
//! runs and count how often it ran and whether it finished.

use std::io::Write;
use std::time::Duration;

use flock::prelude::*;

/// The side-effect file's variable.
pub const FILE_VAR: &str = "FLOCK_SHUTDOWN_FILE";
/// How long the agent takes, in milliseconds.
pub const AGENT_MS_VAR: &str = "FLOCK_AGENT_MS";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Job {
    /// Who asked
    pub name: String,
}

fn note(event: &str) -> Result<(), AgentError> {
    let path = std::env::var(FILE_VAR)
        .map_err(|_| AgentError::permanent(format!("{FILE_VAR} is not set")))?;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    writeln!(file, "{event}")?;
    file.sync_all()?;
    Ok(())
}

/// Notes `slow-start`, works for `FLOCK_AGENT_MS`, notes `slow-done`. A normal activity (its
/// timeout is over the local-activity limit).
#[agent(timeout = "2m", retry(attempts = 3, initial_interval = "100ms"))]
pub async fn s_slow(input: Job) -> Result<Job, AgentError> {
    slow(input).await
}

/// `s_slow` as a local activity.
#[agent(local, timeout = "2m", retry(attempts = 3, initial_interval = "100ms"))]
pub async fn s_slow_local(input: Job) -> Result<Job, AgentError> {
    slow(input).await
}

async fn slow(input: Job) -> Result<Job, AgentError> {
    let millis = match std::env::var(AGENT_MS_VAR) {
        Err(_) => 2000,
        Ok(text) => text.parse::<u64>().map_err(|_| {
            AgentError::permanent(format!("{AGENT_MS_VAR} is {text:?}, not milliseconds"))
        })?,
    };
    note("slow-start")?;
    tokio::time::sleep(Duration::from_millis(millis)).await;
    note("slow-done")?;
    Ok(Job {
        name: format!("{} (done)", input.name),
    })
}

#[flow]
pub async fn s_flow(ctx: &FlowContext, job: Job) -> Result<Job, FlowError> {
    ctx.call(s_slow, job).await
}

/// `s_flow` over a local activity.
#[flow]
pub async fn s_flow_local(ctx: &FlowContext, job: Job) -> Result<Job, FlowError> {
    ctx.call(s_slow_local, job).await
}

/// Notes `step-start`, works for `FLOCK_AGENT_MS`, notes `step-done`: a code agent written the
/// obvious way, with default settings.
#[agent]
pub async fn s_step(input: Job) -> Result<Job, AgentError> {
    let millis = match std::env::var(AGENT_MS_VAR) {
        Err(_) => 2000,
        Ok(text) => text.parse::<u64>().map_err(|_| {
            AgentError::permanent(format!("{AGENT_MS_VAR} is {text:?}, not milliseconds"))
        })?,
    };
    note("step-start")?;
    tokio::time::sleep(Duration::from_millis(millis)).await;
    note("step-done")?;
    Ok(Job {
        name: format!("{} +", input.name),
    })
}

/// Two [`s_step`]s, one after the other.
#[flow]
pub async fn s_two_steps(ctx: &FlowContext, job: Job) -> Result<Job, FlowError> {
    let job = ctx.call(s_step, job).await?;
    ctx.call(s_step, job).await
}
