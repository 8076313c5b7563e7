//! The seed's pipeline: a research agent hands off to a summarize agent. Both are declarative:
//! a language model answers them from their descriptions and types.

use flock::prelude::*;

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Topic {
    /// The topic to research
    pub topic: String,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Findings {
    /// Research findings
    pub findings: String,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Summary {
    /// Concise summary
    pub summary: String,
}

/// Research the topic and report what you found.
#[agent(hand_off = summarize_agent)]
pub async fn research_agent(input: Topic) -> Findings;

/// Summarize the findings in two sentences.
#[agent(retry(attempts = 5, initial_interval = "2s"))]
pub async fn summarize_agent(input: Findings) -> Summary;

/// The same pipeline as a flow.
#[flow]
pub async fn research_flow(ctx: &FlowContext, topic: Topic) -> Result<Summary, FlowError> {
    let findings = ctx.call(research_agent, topic).await?;
    ctx.call(summarize_agent, findings).await
}
