//! Tools a declarative agent offers the model (`#[agent(tools = [..])]`).

use futures::future::BoxFuture;

/// A tool as the model layer sees it: a name, a description, a JSON Schema of its arguments,
/// and a call from JSON arguments to a JSON result.
pub trait DynTool: Send + Sync + std::fmt::Debug {
    /// The tool's name, as offered to the model.
    fn name(&self) -> &'static str;
    /// What the tool does (its doc comment).
    fn description(&self) -> &'static str;
    /// The JSON Schema of its arguments.
    fn parameters_schema(&self) -> serde_json::Value;
    /// Calls the tool; an error is fed back to the model as the tool's answer.
    fn call_json(
        &self,
        arguments: serde_json::Value,
    ) -> BoxFuture<'static, Result<serde_json::Value, String>>;
}
