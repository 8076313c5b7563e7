use flock::prelude::*;

#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Topic {
    pub topic: String,
}

#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Findings {
    pub findings: String,
}

type Fallible = Result<Findings, AgentError>;
/// Serializable and with a schema: before the check this compiled, with the whole `Result` as the
/// agent's output.
type Answer = Result<Findings, String>;

#[agent]
async fn research(input: Topic) -> Fallible {
    Ok(Findings { findings: input.topic })
}

#[agent]
async fn summarize(input: Topic) -> Answer;

#[agent]
async fn review(ctx: &AgentContext, input: Topic) -> Answer {
    let _ = ctx.attempt();
    Ok(Findings { findings: input.topic })
}

fn main() {}
