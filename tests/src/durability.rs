//! A 3-agent flow whose agents leave side effects in a file (`FLOCK_DURABILITY_FILE`), so a test
//! can kill the worker while the second agent runs and count what ran how often.

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
    writeln!(file, "{event}")?;
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
