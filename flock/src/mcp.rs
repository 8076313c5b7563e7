//! MCP servers as tools (feature `mcp`), on [rmcp](https://docs.rs/rmcp), the official Rust SDK.
//!
//! An agent names the servers whose tools it offers its model — `#[agent(mcp = ["files"])]`, a
//! fact of the code like its `tools` — and the `Flock` says how to reach each one, where it runs
//! (its worker's configuration): [`FlockBuilder::mcp_server`](crate::FlockBuilder::mcp_server)
//! with [`McpServer::stdio`] (a child process) or [`McpServer::http`] (streamable HTTP). Such an
//! agent runs step by step (see [`step`](crate::step)); its MCP servers add two kinds of steps:
//!
//! * `<server>.mcp_tools`: the server's tool list, fetched once per run (a recorded step: the
//!   same on replay; a session that moves on to a fresh history fetches it again);
//! * `<server>.mcp`: one tool call (`tools/call`), like a `#[tool]`'s `<tool>.tool` step, with
//!   the executor's default timeout and retry policy (as a `#[tool]` without settings); each
//!   request is bounded by the server's [`timeout`](McpServer::timeout), and the step heartbeats
//!   meanwhile, so a worker that dies mid-call is noticed within [`HEARTBEAT`] (5 s).
//!
//! A tool's own error (`isError`) is answered to the model as `error: …`, like a `#[tool]`'s.
//! The server failing is the step's error, classified: a command that cannot be started or a
//! server that answers something that is not MCP is permanent (naming the server and what it
//! sent); a server that exits or closes the connection is transient (the next attempt connects
//! again); one that does not answer within the server's timeout (30 s unless set) is transient.
//! Nothing waits forever.
//!
//! Each worker process keeps one connection per server, opened at the first call and shared by
//! every run it serves; a run's calls may reach different workers (and so different server
//! processes or sessions): servers that keep state per session across calls are not supported
//! across workers (a documented limit). Server credentials (`env`, `headers`) stay in the worker's
//! configuration: they are never in a step's input or output (so never in a history) nor in logs
//! (`Debug` shows their names only).
//!
//! ```rust,no_run,standalone_crate
//! use flock::mcp::McpServer;
//! use flock::prelude::*;
//!
//! #[derive(Debug, Serialize, Deserialize, JsonSchema)]
//! pub struct Question {
//!     /// What to find out
//!     pub question: String,
//! }
//! #[derive(Debug, Serialize, Deserialize, JsonSchema)]
//! pub struct Answer {
//!     /// The answer
//!     pub answer: String,
//! }
//!
//! /// Answer with the files you find.
//! #[agent(mcp = ["files"])]
//! async fn librarian(input: Question) -> Answer;
//!
//! # async fn run() -> Result<(), flock::Error> {
//! let flock = Flock::builder()
//!     .mcp_server(
//!         McpServer::stdio("files", "npx")
//!             .args(["-y", "@modelcontextprotocol/server-filesystem", "/srv/docs"]),
//!     )
//!     .mcp_server(McpServer::http("search", "https://mcp.example.com/mcp").header("Authorization", "Bearer TOKEN"))
//!     .build()
//!     .await?;
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::sync::Mutex;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::model::mcp::{DEFAULT_TIMEOUT, McpServer};

use crate::agent::{AgentContext, DynAgent};
use crate::error::AgentError;
use crate::spec::{AgentKind, AgentSpec};

// ---------------------------------------------------------------------------------------------
// Steps.

/// The heartbeat timeout of MCP steps (they heartbeat every quarter of it while a request is in
/// flight).
pub const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(5);

/// The suffix of the tool-list step of a server.
pub(crate) const LIST_STEP: &str = ".mcp_tools";
/// The suffix of the tool-call step of a server.
pub(crate) const CALL_STEP: &str = ".mcp";

/// The input of a `<server>.mcp` step.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct McpCallInput {
    /// The id the model gave the call.
    pub(crate) call_id: String,
    /// The server's tool.
    pub(crate) tool: String,
    /// Its arguments.
    pub(crate) arguments: Value,
}

/// The steps of one server: its tool list and its tool calls.
pub(crate) struct McpStep {
    server: &'static str,
    spec: &'static AgentSpec,
    list: bool,
}

type Steps = Mutex<BTreeMap<&'static str, (&'static McpStep, &'static McpStep)>>;
static STEPS: Steps = Mutex::new(BTreeMap::new());

/// The steps of server `server` (made on first use): `(tool list, tool call)`. Like the calls of
/// a `#[tool]` without settings, they take the executor's default timeout and retry policy;
/// each request within them is bounded by the server's [`timeout`](McpServer::timeout).
pub(crate) fn steps(server: &'static str) -> (&'static McpStep, &'static McpStep) {
    let mut steps = STEPS.lock().unwrap_or_else(|p| p.into_inner());
    *steps.entry(server).or_insert_with(|| {
        let make = |suffix: &str, list: bool, description: String| -> &'static McpStep {
            let name = Box::leak(format!("{server}{suffix}").into_boxed_str());
            let mut spec = AgentSpec::new(name, AgentKind::Code);
            spec.description = Box::leak(description.into_boxed_str());
            // the step heartbeats while a request is in flight: a worker that dies mid-call is
            // noticed within this, not at the end of the step's timeout
            spec.heartbeat = Some(HEARTBEAT);
            spec.location = "flock/src/mcp.rs";
            let spec = Box::leak(Box::new(spec));
            Box::leak(Box::new(McpStep { server, spec, list }))
        };
        (
            make(
                LIST_STEP,
                true,
                format!("The tools of MCP server `{server}`."),
            ),
            make(
                CALL_STEP,
                false,
                format!("A tool call of MCP server `{server}`."),
            ),
        )
    })
}

impl McpStep {
    /// The step's settings.
    pub(crate) fn spec(&self) -> &'static AgentSpec {
        self.spec
    }
}

impl DynAgent for McpStep {
    fn spec(&self) -> &'static AgentSpec {
        self.spec
    }

    fn input_schema(&self) -> schemars::Schema {
        schemars::Schema::default()
    }

    fn output_schema(&self) -> schemars::Schema {
        schemars::Schema::default()
    }

    fn call_json(
        &self,
        ctx: AgentContext,
        input: &Value,
    ) -> BoxFuture<'static, Result<Value, AgentError>> {
        let (server, list) = (self.server, self.list);
        let input = input.clone();
        Box::pin(async move {
            let clients = ctx.models().mcp();
            if list {
                let listing = clients.list(server);
                let tools = crate::agent::heartbeating(&ctx, listing, "a tools/list").await?;
                return Ok(serde_json::to_value(tools).unwrap_or_default());
            }
            let call: McpCallInput = serde_json::from_value(input).map_err(|e| {
                AgentError::invalid_input(format!(
                    "step `{server}{CALL_STEP}`: the input is not a tool call: {e}"
                ))
            })?;
            let span = crate::observe::tool_span(&call.tool, &call.call_id);
            let calling = tracing::Instrument::instrument(
                clients.call(server, &call.tool, call.arguments),
                span,
            );
            let answer = crate::agent::heartbeating(&ctx, calling, "a tools/call").await?;
            Ok(Value::String(answer))
        })
    }
}
