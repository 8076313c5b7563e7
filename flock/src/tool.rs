//! Tools a declarative agent offers the model (`#[agent(tools = [..])]`).

pub use crate::spec::{DynTool, ToolContext};
