//! A binary with flock's command line, for the `cli` integration tests: the tests' and the
//! examples' agents and flows linked in, every agent answered by the offline TestModel.

use std::process::ExitCode;

use flock::Flock;
use flock_examples as _;
use flock_tests as _;

#[tokio::main]
async fn main() -> ExitCode {
    flock::cli::run(Flock::builder().force_model("test")).await
}
