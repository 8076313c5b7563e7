//! The examples' command line (`flock::cli`): the seed pipeline (a research agent hands off to a
//! summarize agent), the code-only ticket pipeline and the approval flow, all linked in.
//!
//! ```text
//! # the seed pipeline, durably, on a Temporal dev server this command starts (with its Web UI)
//! cargo run -p flock-examples --bin pipeline -- run research_agent --dev --input '{"topic": "Temporal workflows"}'
//! # the same in-process
//! cargo run -p flock-examples --bin pipeline -- run research_agent --local --input '{"topic": "Temporal workflows"}'
//! cargo run -p flock-examples --bin pipeline -- --help
//! ```

use std::process::ExitCode;

use flock::Flock;
use flock_examples::example_model_quiet;

#[tokio::main]
async fn main() -> ExitCode {
    flock::cli::run(Flock::builder().force_model(example_model_quiet())).await
}
