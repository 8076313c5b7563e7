//! The examples' agents and flows (a library, so the conformance tests run the very same code),
//! and their shared set-up.

pub mod approval;
pub mod pipeline;
pub mod research;

use flock::dev_server::{DevServer, DevServerOptions};
use flock::{Flock, FlockBuilder, TemporalExecutorConfig};

/// The model the examples use: `FLOCK_MODEL` when set, `openai/gpt-4o-mini` when `OPENAI_API_KEY`
/// is set, else the offline `TestModel` (with a notice: these examples run agents).
pub fn example_model() -> String {
    let model = example_model_quiet();
    if model == "test" {
        eprintln!(
            "notice: no OPENAI_API_KEY or FLOCK_MODEL set; declarative agents are answered by the offline TestModel"
        );
    }
    model
}

/// [`example_model`] without the notice, for a command line (`pipeline`): `flock::cli` says it
/// on the commands that run agents, not on those that only read the registry.
pub fn example_model_quiet() -> String {
    if let Ok(model) = std::env::var("FLOCK_MODEL") {
        return model;
    }
    if std::env::var_os("OPENAI_API_KEY").is_some() {
        return "openai/gpt-4o-mini".to_owned();
    }
    "test".to_owned()
}

/// Whether the example was asked to run on Temporal (`--temporal`).
pub fn wants_temporal() -> bool {
    std::env::args().any(|arg| arg == "--temporal")
}

/// Builds the examples' `Flock`: local, or with `--temporal` on Temporal, connecting to
/// `TEMPORAL_ADDRESS` when set, else starting a dev server when the `temporal` CLI is installed.
pub async fn example_flock(
    builder: FlockBuilder,
    config: TemporalExecutorConfig,
) -> Result<(Flock, Option<DevServer>), flock::Error> {
    if !wants_temporal() {
        return Ok((
            builder.local_debug(true).temporal(config).build().await?,
            None,
        ));
    }
    let (server_url, server) = match std::env::var("TEMPORAL_ADDRESS") {
        Ok(address) => (address, None),
        Err(_) => {
            let server = DevServer::start(DevServerOptions::default()).await?;
            eprintln!("started a Temporal dev server at {}", server.address());
            (server.address(), Some(server))
        }
    };
    let flock = builder
        .local_debug(false)
        .temporal(TemporalExecutorConfig {
            server_url,
            ..config
        })
        .build()
        .await?;
    Ok((flock, server))
}
