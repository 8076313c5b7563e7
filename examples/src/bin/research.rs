//! The seed's pipeline: a research agent hands off to a summarize agent. Both are declarative:
//! a language model answers them from their descriptions and types.
//!
//! ```text
//! cargo run -p flock-examples --bin research -- "Temporal workflows"
//! ```

use flock::prelude::*;
use flock_examples::example_model;

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
async fn research_agent(input: Topic) -> Findings;

/// Summarize the findings in two sentences.
#[agent(retry(attempts = 5, initial_interval = "2s"))]
async fn summarize_agent(input: Findings) -> Summary;

#[tokio::main]
async fn main() -> Result<(), flock::Error> {
    let topic = std::env::args().nth(1).unwrap_or_else(|| "Temporal workflows".to_owned());
    let flock = Flock::builder()
        .force_model(example_model())
        .temporal(TemporalExecutorConfig {
            retry_attempts: 3,
            retry_interval: Duration::from_secs(5),
            ..Default::default()
        })
        .build()
        .await?;
    let recorded = flock.run(research_agent, Topic { topic }).recorded().await;
    let summary: Summary = recorded.result?;
    println!("{summary:#?}");
    for step in &recorded.record.steps {
        println!(
            "  {} ran {} attempt(s) in {:?}",
            step.agent,
            step.attempts.len(),
            step.duration
        );
    }
    Ok(())
}
