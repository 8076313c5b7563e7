//! The integration tests: one binary (the workspace builds the Temporal SDK once), one module per
//! area.

mod agent_loop;
mod chaos;
mod checkpoint;
mod cli;
mod codec;
mod conformance;
mod connect;
mod deployment;
mod fresh_crate;
mod hop;
mod idempotency;
mod limits;
mod local;
mod map;
mod messages;
mod model;
mod observe;
mod otel;
mod payloads;
mod pools;
mod priority;
mod replay;
mod shutdown;
mod support;
mod temporal;
