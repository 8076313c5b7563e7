//! The seed's pipeline: a research agent hands off to a summarize agent (declarative agents).
//!
//! ```text
//! cargo run -p flock-examples --bin research -- "Temporal workflows"             # in-process
//! cargo run -p flock-examples --bin research -- "Temporal workflows" --temporal  # on Temporal
//! ```

use flock::prelude::*;
use flock_examples::research::{Summary, Topic, research_agent};
use flock_examples::{example_flock, example_model};

#[tokio::main]
async fn main() -> Result<(), flock::Error> {
    let topic = std::env::args()
        .skip(1)
        .find(|arg| !arg.starts_with("--"))
        .unwrap_or_else(|| "Temporal workflows".to_owned());
    let config = TemporalExecutorConfig {
        retry_attempts: 3,
        retry_interval: Duration::from_secs(5),
        ..Default::default()
    };
    let (flock, _server) =
        example_flock(Flock::builder().force_model(example_model()), config).await?;
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
    flock.shutdown().await
}
