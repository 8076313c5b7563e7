//! The integration tests: one binary (the workspace builds the Temporal SDK once), one module per
//! area.

mod chaos;
mod checkpoint;
mod cli;
mod conformance;
mod connect;
mod deployment;
mod fresh_crate;
mod local;
mod messages;
mod model;
mod replay;
mod shutdown;
mod temporal;
