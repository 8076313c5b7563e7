//! Tools a declarative agent offers the model (`#[agent(tools = [..])]`).

use futures::future::BoxFuture;

/// A tool as the model layer sees it: a name, a description, a JSON Schema of its arguments,
/// and a call from JSON arguments to a JSON result.
///
/// `#[tool]` implements it on a zero-sized type named after the function:
///
/// ```rust,standalone_crate
/// use flock::prelude::*;
/// use flock::tool::DynTool;
///
/// #[derive(Deserialize, JsonSchema)]
/// pub struct Query {
///     /// What to look up
///     pub q: String,
/// }
///
/// /// Looks a word up.
/// #[tool]
/// async fn lookup(args: Query) -> Result<String, std::fmt::Error> {
///     Ok(format!("{} is a word", args.q))
/// }
///
/// assert_eq!(lookup.name(), "lookup");
/// assert_eq!(lookup.description(), "Looks a word up.");
/// assert_eq!(lookup.parameters_schema()["properties"]["q"]["description"], "What to look up");
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let answer = lookup.call_json(serde_json::json!({ "q": "flock" })).await;
/// assert_eq!(answer, Ok(serde_json::json!("flock is a word")));
/// # });
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a tool",
    label = "not a `#[tool]`",
    note = "`#[agent(tools = [..])]` lists `async fn`s marked `#[tool]`"
)]
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
