//! The integration tests: one binary (the workspace builds the Temporal SDK once), one module per
//! area.

mod checkpoint;
mod conformance;
mod connect;
mod fresh_crate;
mod local;
mod messages;
mod model;
mod observe;
mod replay;
mod shutdown;
mod temporal;
