//! A binary with flock's command line, for the `cli` integration tests: the tests' and the
//! examples' agents and flows linked in, every agent answered by the offline TestModel, the MCP
//! server `calc` the test crate's `mcp_server` (the binary next to this one).

use std::process::ExitCode;

use flock::Flock;
use flock_examples as _;
use flock_tests as _;

#[tokio::main]
async fn main() -> ExitCode {
    let mcp_server = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join("mcp_server")))
        .unwrap_or_default();
    let calc = flock::mcp::McpServer::stdio("calc", mcp_server.to_string_lossy());
    flock::cli::run(Flock::builder().force_model("test").mcp_server(calc)).await
}
