//! Flock without LLMs: code agents, routing on a typed enum, parallel fan-out, child flows.
//!
//! ```text
//! cargo run -p flock-examples --bin pipeline              # in-process
//! cargo run -p flock-examples --bin pipeline -- --temporal  # on Temporal
//! ```

use flock::prelude::*;
use flock_examples::example_flock;
use flock_examples::pipeline::{Resolutions, handle_batch, sample_batch};

#[tokio::main]
async fn main() -> Result<(), flock::Error> {
    let (flock, _server) =
        example_flock(Flock::builder(), TemporalExecutorConfig::default()).await?;
    let resolutions: Resolutions = flock.run_flow(handle_batch, sample_batch()).await?;
    for resolution in &resolutions.resolutions {
        println!(
            "#{} {:?}: {}",
            resolution.id, resolution.route, resolution.action
        );
    }
    flock.shutdown().await
}
