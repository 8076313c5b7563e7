//! Code shared by the integration tests and the helper processes they start.

pub mod cli;
pub mod durability;
pub mod otel;
pub mod shutdown;
