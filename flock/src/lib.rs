//! # flock: typed LLM agents and pipelines, run in-process or durably on Temporal
//!
//! Agents are `async fn`s with a typed input and output (`#[agent]`); without a body a language
//! model answers them from their description and JSON Schemas. Flows are `async fn`s that call
//! agents (`#[flow]`). Hand-offs between agents are checked at compile time.
//!
//! ```rust,standalone_crate
//! use flock::prelude::*;
//!
//! #[derive(Debug, Serialize, Deserialize, JsonSchema)]
//! pub struct Topic {
//!     /// The topic to research
//!     pub topic: String,
//! }
//! #[derive(Debug, Serialize, Deserialize, JsonSchema)]
//! pub struct Findings {
//!     /// Research findings
//!     pub findings: String,
//! }
//! #[derive(Debug, Serialize, Deserialize, JsonSchema)]
//! pub struct Summary {
//!     /// Concise summary
//!     pub summary: String,
//! }
//!
//! /// Research the topic and report what you found.
//! #[agent(hand_off = summarize_agent)]
//! async fn research_agent(input: Topic) -> Findings;
//!
//! /// Summarize the findings in two sentences.
//! #[agent(retry(attempts = 5, initial_interval = "2s"))]
//! async fn summarize_agent(input: Findings) -> Summary;
//!
//! /// A code agent: it has a body.
//! #[agent(timeout = "30s")]
//! async fn shout(ctx: &AgentContext, input: Summary) -> Result<Summary, AgentError> {
//!     Ok(Summary { summary: input.summary.to_uppercase() })
//! }
//!
//! #[flow]
//! async fn research_flow(ctx: &FlowContext, topic: Topic) -> Result<Summary, FlowError> {
//!     let findings = ctx.call(research_agent, topic).await?;
//!     let summary = ctx.call(summarize_agent, findings).await?;
//!     ctx.call(shout, summary).await
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let flock = Flock::builder().model("test").local_debug(true).build().await?;
//! // follows the static hand-off chain; the result type is the last agent's output
//! let summary: Summary = flock.run(research_agent, Topic { topic: "Temporal".into() }).await?;
//! assert_eq!(summary.summary, "summary example");
//! let loud: Summary = flock.run_flow(research_flow, Topic { topic: "Temporal".into() }).await?;
//! assert_eq!(loud.summary, "SUMMARY EXAMPLE");
//! # Ok::<(), flock::Error>(())
//! # }).unwrap();
//! ```
#![warn(missing_docs)]

// Bottom to top: plain data (spec, error, retry, usage, record), the model layer, the concepts
// the macros implement (agent, flow, chain), the runtime interface and the determinism guard
// they run on, the registry, the executors, and the facade users call.
pub mod agent;
pub mod approval;
pub mod chain;
#[cfg(feature = "cli")]
pub mod cli;
pub mod codec;
pub mod config;
pub mod dev_server;
mod durable_loop;
pub mod error;
pub mod events;
mod executor;
mod flock;
pub mod flow;
mod guard;
pub mod join;
pub mod limit;
pub mod map;
#[cfg(feature = "mcp")]
pub mod mcp;
pub mod message;
pub mod model;
pub mod observe;
pub mod record;
mod recycle;
pub mod registry;
pub mod retry;
mod run;
pub mod runtime;
pub mod spec;
pub mod step;
pub mod tool;
pub mod usage;
#[cfg(feature = "temporal")]
pub mod worker;

pub use crate::agent::{Agent, AgentContext, AgentResult};
pub use crate::chain::{Chain, ChainOutput, End, HandOff};
pub use crate::config::{
    Deployment, Pollers, TemporalExecutorConfig, VersioningBehavior, WorkerLimits,
};
pub use crate::error::{AgentError, Error, ErrorClass, FlowError};
pub use crate::flock::{Flock, FlockBuilder, FlowHandle, RunFuture, RunOutput, RunRequest};
pub use crate::flow::{ChildRequest, Flow, FlowContext, UpdateRequest, Wait};
pub use crate::limit::Limit;
pub use crate::message::{Query, Signal, Update};
pub use crate::record::{RunRecord, StepEvent, StepEventKind};
pub use crate::registry::Registry;
pub use crate::retry::{RetryPolicy, RetrySpec};
pub use crate::run::{
    FoundRun, IdReuse, Priority, QueueStats, Recorded, RunInfo, TaskStats, rfc3339,
};
pub use crate::spec::{AgentKind, AgentSpec, CallKind, CallSite, FlowSpec};
pub use crate::usage::{Budget, Usage};
#[cfg(feature = "temporal")]
pub use crate::worker::FlockWorker;
pub use flock_macros::{agent, flow, nondeterministic, tool};

pub use crate::join::{join_all, try_join_all};
pub use futures::future::{Either, select};
pub use futures::{join, try_join};

/// What a typical user file imports.
///
/// `Serialize`, `Deserialize` and `JsonSchema` are each two things here: serde's and schemars'
/// traits, and flock's derives of them. The derives are serde's and schemars' own, run through
/// flock's re-exports of those crates, so a crate that depends on `flock` alone can use them;
/// they take every attribute serde's and schemars' derives take, and doc comments become schema
/// descriptions.
///
/// ```
/// use flock::model::OutputFormat;
/// use flock::prelude::*;
///
/// /// Where a request goes.
/// #[derive(Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
/// #[serde(tag = "kind", rename_all = "snake_case")]
/// pub enum Route {
///     /// Answer from the knowledge base.
///     Answer { topic: String },
///     Escalate,
/// }
///
/// /// A page of results.
/// #[derive(Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
/// pub struct Page<T> {
///     /// The results on this page.
///     pub items: Vec<T>,
///     #[serde(default)]
///     pub next: Option<u32>,
/// }
///
/// let format = OutputFormat::of::<Page<Route>>();
/// assert_eq!(format.name, "Page");
/// assert_eq!(format.schema["properties"]["items"]["description"], "The results on this page.");
/// let page: Page<Route> = format
///     .parse_answer(r#"{"items": [{"kind": "answer", "topic": "Temporal"}, {"kind": "escalate"}]}"#)
///     .unwrap();
/// assert_eq!(page.items[0], Route::Answer { topic: "Temporal".into() });
/// assert_eq!(page.next, None);
/// ```
pub mod prelude {
    pub use crate::tool::ToolContext;
    pub use crate::{
        Agent, AgentContext, AgentError, Error, Flock, Flow, FlowContext, FlowError,
        TemporalExecutorConfig, agent, flow, tool,
    };
    pub use flock_macros::{Deserialize, JsonSchema, Serialize};
    pub use std::time::Duration;

    // The traits. A glob import, so that the derives imported above by name shadow serde's and
    // schemars' derives of the same names (a named import shadows a glob import in its own
    // namespace, macros, and leaves the traits).
    pub use self::traits::*;
    mod traits {
        pub use schemars::JsonSchema;
        pub use serde::{Deserialize, Serialize};
    }
}

#[doc(hidden)]
pub mod __private;

#[cfg(test)]
mod module_graph;

/// The README's tour, compiled as a doc test so it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
