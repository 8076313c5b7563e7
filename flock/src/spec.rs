//! What `#[agent(..)]` and `#[flow(..)]` say about a definition, fixed at compile time: plain
//! data that every layer above reads and none below it needs. Facts that change a run's history
//! (local or normal activity, payload limits) are decided here, from the code alone, never by a
//! worker's configuration.

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::retry::RetrySpec;

/// Whether an agent is answered by its own code or by a language model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum AgentKind {
    /// The agent has a body.
    Code,
    /// The agent has no body: a language model evaluates it.
    Declarative,
}

/// Everything `#[agent(..)]` says about an agent, fixed at compile time.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct AgentSpec {
    /// The agent's name (the fn name, or `name = ".."`); on Temporal, its activity type.
    pub name: &'static str,
    /// The doc comment, or `description = ".."`.
    pub description: &'static str,
    /// Code or declarative.
    pub kind: AgentKind,
    /// `model = "provider/model"`: overrides the `Flock`'s default model.
    pub model: Option<&'static str>,
    /// The name of the agent this one hands off to.
    pub hand_off: Option<&'static str>,
    /// Start-to-close timeout of one attempt.
    pub timeout: Option<Duration>,
    /// Timeout of all attempts together, delays included.
    pub schedule_to_close: Option<Duration>,
    /// An attempt fails when it reports no progress for this long.
    pub heartbeat: Option<Duration>,
    /// The Temporal task queue of this agent's activities.
    pub task_queue: Option<&'static str>,
    /// Retry settings; unset fields fall back to the executor's defaults.
    pub retry: RetrySpec,
    /// How often a declarative agent re-asks the model after an answer that does not fit.
    pub output_retries: Option<u32>,
    /// The most rounds of tool calls before an answer (`max_tool_rounds = N`; default
    /// [`MAX_TOOL_ROUNDS`](crate::model::MAX_TOOL_ROUNDS)): a model still calling tools after
    /// them fails the call `InvalidOutput`.
    pub max_tool_rounds: Option<u32>,
    /// `continue_as_new_after = N`, for an agent that runs step by step: after this many steps
    /// (model requests and tool calls) in one history, the session moves on in a fresh one (on
    /// Temporal: into a child run of the built-in flow `flock.session`, which continues as new
    /// every N steps), at a safe point between steps. `None`: only when Temporal suggests it (the
    /// history is large).
    pub continue_as_new_after: Option<u32>,
    /// `mcp = ["files"]`: the MCP servers whose tools a declarative agent offers its model (each
    /// call a step `<server>.mcp`); the `Flock` says how to reach them (feature `mcp`, see
    /// `flock::mcp`).
    pub mcp: &'static [&'static str],
    /// `#[agent(local)]`: on Temporal, run as a local activity (inside the workflow task's worker,
    /// no task-queue round trip, but it may run again after a crash: see
    /// [`runs_locally`](Self::runs_locally)); `None` or `false`: a normal activity.
    pub local: Option<bool>,
    /// `max_concurrent = N`: at most this many calls of this step run at once in one process
    /// (a worker, or the local executor's); the others wait for a slot. See [`limit`](crate::limit).
    pub max_concurrent: Option<u32>,
    /// `per_second = R`: at most this many calls of this step start per second in one process,
    /// evenly spaced. See [`limit`](crate::limit).
    pub per_second: Option<f64>,
    /// `priority = N`: the priority key of this step's tasks, 1 (first) to 5 (last), instead of
    /// the run's (see [`Priority`](crate::Priority)).
    pub priority: Option<u32>,
    /// The tools a declarative agent offers the model.
    pub tools: &'static [&'static dyn DynTool],
    /// The source location of the definition.
    pub location: &'static str,
}

impl AgentSpec {
    /// A spec with every optional setting unset (for agents written by hand, and for the macro).
    pub const fn new(name: &'static str, kind: AgentKind) -> Self {
        AgentSpec {
            name,
            description: "",
            kind,
            model: None,
            hand_off: None,
            timeout: None,
            schedule_to_close: None,
            heartbeat: None,
            task_queue: None,
            retry: RetrySpec::EMPTY,
            output_retries: None,
            max_tool_rounds: None,
            continue_as_new_after: None,
            mcp: &[],
            local: None,
            max_concurrent: None,
            per_second: None,
            priority: None,
            tools: &[],
            location: "",
        }
    }
}

/// Everything `#[flow(..)]` says about a flow, fixed at compile time.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct FlowSpec {
    /// The flow's name (the fn name, or `name = ".."`); on Temporal, its workflow type.
    pub name: &'static str,
    /// The doc comment, or `description = ".."`.
    pub description: &'static str,
    /// The Temporal task queue of this flow's workflows.
    pub task_queue: Option<&'static str>,
    /// Timeout of the whole execution, retries and continue-as-new included.
    pub execution_timeout: Option<Duration>,
    /// Timeout of one run.
    pub run_timeout: Option<Duration>,
    /// The signals, queries and updates the flow declares.
    pub messages: &'static [MessageSpec],
    /// The agents, child flows and hand-off chains the body calls, one entry per call site in
    /// the order written (`#[flow]` reads them from the body).
    pub calls: &'static [CallSite],
    /// The source location of the definition.
    pub location: &'static str,
}

impl FlowSpec {
    /// A spec with every optional setting unset.
    pub const fn new(name: &'static str) -> Self {
        FlowSpec {
            name,
            description: "",
            task_queue: None,
            execution_timeout: None,
            run_timeout: None,
            messages: &[],
            calls: &[],
            location: "",
        }
    }
}

/// What a flow's call site calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallKind {
    /// An agent: `ctx.call(agent, ..)`.
    Agent,
    /// A child flow: `ctx.call_flow(flow, ..)`. (Not named `Flow`: rustc's messages would then
    /// spell the `Flow` trait `flock::Flow`.)
    ChildFlow,
    /// The hand-off chain that starts at an agent: `ctx.call_chain(agent, ..)`.
    Chain,
}

/// A call site of a flow body, as `#[flow]` sees it: what it calls and whether it may run more
/// than once.
///
/// The callee's name is its registered name (the agent's or flow's `name = ".."` when it has
/// one), resolved by rustc from the path written at the site. A site whose callee is not a path
/// to an item (a local binding, an expression such as `make_agent()`) is *unresolved*: only the
/// expression as written is known.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct CallSite {
    /// Agent, child flow or chain.
    pub kind: CallKind,
    /// The callee as written at the site (`agents::research`).
    pub written: &'static str,
    /// The site is inside a loop or a closure (an iterator's `map`, ..): it may run any number of
    /// times.
    pub repeated: bool,
    callee: Option<fn() -> Option<&'static str>>,
}

impl CallSite {
    /// A site whose callee's name `callee` gives.
    pub const fn new(
        kind: CallKind,
        written: &'static str,
        repeated: bool,
        callee: fn() -> Option<&'static str>,
    ) -> Self {
        CallSite {
            kind,
            written,
            repeated,
            callee: Some(callee),
        }
    }

    /// A site whose callee is known only as written.
    pub const fn unresolved(kind: CallKind, written: &'static str, repeated: bool) -> Self {
        CallSite {
            kind,
            written,
            repeated,
            callee: None,
        }
    }

    /// The registered name of the agent or flow called; `None` for an unresolved site.
    pub fn callee(&self) -> Option<&'static str> {
        self.callee.and_then(|name| name())
    }
}

/// What kind of message a flow declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// One-way: the flow takes it with [`FlowContext::wait`](crate::FlowContext::wait).
    Signal,
    /// Read-only: answered from the state the flow published with
    /// [`FlowContext::publish`](crate::FlowContext::publish).
    Query,
    /// A request the flow answers ([`FlowContext::next_update`](crate::FlowContext::next_update)),
    /// first checked by its validator: a rejected update is an error to its sender only.
    Update,
}

impl MessageKind {
    /// `"signal"`, `"query"` or `"update"`.
    pub const fn name(self) -> &'static str {
        match self {
            MessageKind::Signal => "signal",
            MessageKind::Query => "query",
            MessageKind::Update => "update",
        }
    }
}

/// A message as `#[flow(..)]` declares it.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct MessageSpec {
    /// The message's name (on Temporal: the signal, query or update name).
    pub name: &'static str,
    /// Its doc comment.
    pub description: &'static str,
    /// Signal, query or update.
    pub kind: MessageKind,
    /// The JSON Schema of what is sent (a signal's or update's input) or published (a query's
    /// state).
    pub schema: fn() -> schemars::Schema,
    /// The JSON Schema of an update's answer.
    pub answer_schema: Option<fn() -> schemars::Schema>,
    /// Checks a message's JSON before it is accepted: that it fits the type, and for an update
    /// its validator. The error says what is wrong.
    pub check: fn(&Value) -> Result<(), String>,
}

impl MessageSpec {
    /// A message of `kind` whose JSON is checked by `check`.
    pub const fn new(
        name: &'static str,
        kind: MessageKind,
        schema: fn() -> schemars::Schema,
        check: fn(&Value) -> Result<(), String>,
    ) -> Self {
        MessageSpec {
            name,
            description: "",
            kind,
            schema,
            answer_schema: None,
            check,
        }
    }
}

impl AgentSpec {
    /// Whether this agent runs as a Temporal local activity: only when it says so,
    /// `#[agent(local)]`. Decided by the code alone, so every worker schedules it the same way (a
    /// worker setting here would make histories differ).
    ///
    /// Every other agent is a normal activity: a *durable step*. Its result is in the run's
    /// history the moment it finishes, so a worker or server that crashes later never makes it
    /// run again. A local activity is faster (no task-queue round trip) but is recorded only when
    /// the workflow task that ran it completes, and a chain of local steps runs in one workflow
    /// task: a crash before that re-runs every local step of the task, finished ones included.
    /// `local` is for code that is safe to repeat.
    ///
    /// ```
    /// use flock::AgentSpec;
    /// use flock::AgentKind;
    ///
    /// assert!(!AgentSpec::new("count", AgentKind::Code).runs_locally());
    /// assert!(!AgentSpec::new("summarize", AgentKind::Declarative).runs_locally());
    /// ```
    pub const fn runs_locally(&self) -> bool {
        matches!(self.local, Some(true))
    }

    /// Whether the agent runs step by step: a declarative agent with tools runs its loop in the
    /// flow that calls it, each model request a durable step (`<agent>.model`, with the agent's
    /// settings) and each tool call one (`<tool>.tool`), so that a crash re-runs nothing that
    /// finished. Decided by the code (the agent has no body and offers tools), never by a
    /// worker's configuration. See [`step`](crate::step).
    ///
    /// ```
    /// use flock::{AgentKind, AgentSpec};
    ///
    /// assert!(!AgentSpec::new("summarize", AgentKind::Declarative).runs_step_by_step());
    /// assert!(!AgentSpec::new("count", AgentKind::Code).runs_step_by_step());
    /// ```
    pub const fn runs_step_by_step(&self) -> bool {
        matches!(self.kind, AgentKind::Declarative)
            && (!self.tools.is_empty() || !self.mcp.is_empty())
    }
}

/// The largest payload (an agent's or flow's input or output, as JSON) flock sends: Temporal
/// rejects payloads over 2 MiB, and a rejected payload otherwise shows up only in the history
/// while the run waits forever. Both executors enforce it, so development fails where
/// production would.
pub const MAX_PAYLOAD_BYTES: usize = 2 * 1024 * 1024 - 4 * 1024;

/// Which way a payload goes, for size errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Input,
    Output,
}

impl Direction {
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Direction::Input => "input",
            Direction::Output => "output",
        }
    }
}

/// The payload limit in force for what a run sends: Temporal's ([`MAX_PAYLOAD_BYTES`]), or,
/// when the payload codec offloads large payloads to a blob store (an
/// [`Offload`](crate::codec::Offload) in the configuration's codec), that offload's
/// `max_payload`: the history then holds only a claim check. Both executors apply the limit of
/// their configuration, so development fails where production would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PayloadLimit {
    bytes: usize,
    offloaded: bool,
}

impl PayloadLimit {
    /// Temporal's limit: what the server itself stores.
    pub(crate) const TEMPORAL: PayloadLimit = PayloadLimit {
        bytes: MAX_PAYLOAD_BYTES,
        offloaded: false,
    };

    /// The limit with the codec `codec` (if any).
    pub(crate) fn of(codec: Option<&crate::codec::Codec>) -> PayloadLimit {
        match codec.and_then(crate::codec::Codec::offload) {
            Some(offload) => PayloadLimit {
                bytes: offload.max_payload,
                offloaded: true,
            },
            None => PayloadLimit::TEMPORAL,
        }
    }

    /// The limit, in bytes of JSON.
    pub(crate) const fn bytes(self) -> usize {
        self.bytes
    }

    fn why(self) -> &'static str {
        if self.offloaded {
            "the claim-check offload's `Offload::max_payload`; raise it, or pass a reference (a path, URL or id) instead of the data"
        } else {
            "Temporal rejects payloads over 2 MiB; pass a reference (a path, URL or id) instead of the data, or offload large payloads with `Codec::with_offload`"
        }
    }

    /// Whether the input and the output of a local step count together: on Temporal a local
    /// activity's history record (its marker) holds both in one event, under the one limit; with
    /// the offload, large payloads are claim checks there.
    pub(crate) const fn counts_local_records(self) -> bool {
        !self.offloaded
    }
}

/// Checks the record of local step `name` (its input and its output together, see
/// [`PayloadLimit::counts_local_records`]) against `limit`.
pub(crate) fn check_local_record_size(
    kind: &str,
    name: &str,
    input: usize,
    output: usize,
    limit: PayloadLimit,
) -> Result<(), String> {
    let total = input + output;
    if total > limit.bytes {
        Err(format!(
            "{kind} `{name}` runs as a local activity, whose record in the run's history holds its \
             input ({input} bytes as JSON) and its output ({output} bytes) together: {total} bytes, \
             over the {}-byte payload limit; drop `local` from `#[{kind}(local)]` (a durable step's \
             input and output are recorded apart), offload large payloads with \
             `Codec::with_offload`, or pass a reference (a path, URL or id) instead of the data",
            limit.bytes
        ))
    } else {
        Ok(())
    }
}

/// Checks a payload against `limit`; the error names what, which way, how large, and the limit.
pub(crate) fn check_payload_size(
    kind: &str,
    name: &str,
    direction: Direction,
    bytes: usize,
    limit: PayloadLimit,
) -> Result<(), String> {
    if bytes > limit.bytes {
        Err(format!(
            "the {} of {kind} `{name}` is {bytes} bytes as JSON, over the {}-byte payload limit ({})",
            direction.name(),
            limit.bytes,
            limit.why()
        ))
    } else {
        Ok(())
    }
}

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
    /// Calls the tool in the context of one call (`#[tool]` passes it to a tool fn whose first
    /// parameter is `ctx: &ToolContext`); an error is fed back to the model as the tool's
    /// answer.
    fn call_with(
        &self,
        ctx: ToolContext,
        arguments: serde_json::Value,
    ) -> futures::future::BoxFuture<'static, Result<serde_json::Value, String>>;

    /// Calls the tool outside any run (a [detached](ToolContext::detached) context), e.g. in a
    /// unit test.
    fn call_json(
        &self,
        arguments: serde_json::Value,
    ) -> futures::future::BoxFuture<'static, Result<serde_json::Value, String>> {
        self.call_with(ToolContext::detached(self.name()), arguments)
    }

    /// The settings of the tool's calls when an agent runs step by step (each call a durable
    /// step named `<tool>.tool`, see [`step`](crate::step)): what `#[tool(timeout = "30s",
    /// retry(attempts = 3), heartbeat = "10s", task_queue = "tools", local)]` says. `None` (the
    /// default of a tool written by hand): the executor's defaults.
    fn step_spec(&self) -> Option<&'static AgentSpec> {
        None
    }

    /// Whether a call of the tool waits for a person to approve it (`#[tool(approval)]`, or
    /// arguments of type [`Approved<Args>`](crate::approval::Approved)): see
    /// [`approval`](crate::approval).
    fn needs_approval(&self) -> bool {
        false
    }
}

/// What one call of a tool runs with: which call it is, and a key for its side effects.
///
/// ```rust,standalone_crate
/// use flock::prelude::*;
/// use flock::tool::{DynTool, ToolContext};
///
/// #[derive(Deserialize, JsonSchema)]
/// pub struct Payment {
///     /// Cents to charge
///     pub cents: u64,
/// }
///
/// /// Charges the card once, however often the call is retried.
/// #[tool(retry(attempts = 5))]
/// async fn charge(ctx: &ToolContext, args: Payment) -> String {
///     // a payment API deduplicates on its `Idempotency-Key` header
///     format!("charged {} cents with key {}", args.cents, ctx.idempotency_key())
/// }
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let ctx = ToolContext::detached("call_1");
/// let answer = charge.call_with(ctx, serde_json::json!({ "cents": 500 })).await.unwrap();
/// assert_eq!(answer, "charged 500 cents with key detached/call_1");
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct ToolContext {
    run_id: std::sync::Arc<str>,
    call_id: String,
    attempt: u32,
    key: String,
    approval: Option<crate::approval::Decision>,
}

impl ToolContext {
    /// The context of attempt `attempt` of call `call_id` (the id the model gave it) in run
    /// `run_id`, whose idempotency key is `key`.
    pub(crate) fn new(
        run_id: std::sync::Arc<str>,
        call_id: String,
        attempt: u32,
        key: String,
    ) -> Self {
        ToolContext {
            run_id,
            call_id,
            attempt,
            key,
            approval: None,
        }
    }

    /// The same context, for a call someone approved.
    pub(crate) fn approved(mut self, decision: Option<crate::approval::Decision>) -> Self {
        self.approval = decision;
        self
    }

    /// A context outside any run: run id `detached`, first attempt, key `detached/<call_id>`.
    pub fn detached(call_id: &str) -> Self {
        ToolContext {
            run_id: std::sync::Arc::from("detached"),
            call_id: call_id.to_owned(),
            attempt: 1,
            key: format!("detached/{call_id}"),
            approval: None,
        }
    }

    /// A key that is the same for every attempt (retry) of this tool call and different for
    /// every other call, also of the same tool with the same arguments: pass it to the target of
    /// a side effect (a payment API's `Idempotency-Key` header, a unique column) so the effect
    /// happens once however often the call is retried. When an agent runs step by step it is
    /// the key of the call's step (on Temporal: the workflow id, its run id and the activity id;
    /// on the local executor: the run id, a per-run random id and the step's sequence number).
    pub fn idempotency_key(&self) -> &str {
        &self.key
    }

    /// The attempt of this call, from 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The id of the run (on Temporal: the workflow id).
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The id the model gave this call.
    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// The decision that approved this call, for a tool that needs one (see
    /// [`approval`](crate::approval)); `None` for every other call.
    pub fn approval(&self) -> Option<&crate::approval::Decision> {
        self.approval.as_ref()
    }
}
