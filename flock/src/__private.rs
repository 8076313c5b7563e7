//! Support for the code `#[agent]`, `#[flow]` and `#[tool]` generate. Not a public API: it changes
//! without notice. Generated code names only `::flock::__private::…`, so users depend on `flock`
//! alone.

pub use ::core;
pub use ::futures;
pub use ::inventory;
pub use ::schemars;
pub use ::serde;
pub use ::serde_json;
pub use ::std;

/// Removes the item copy the prelude's derives give serde's and schemars' derives.
pub use ::flock_macros::erase_shadow;

pub use crate::agent::{Agent, AgentContext, AgentIo, run_declarative};
pub use crate::chain::{Chain, End, HandOff};
pub use crate::error::{AgentError, FlowError};
pub use crate::flow::{Flow, FlowContext};
pub use crate::message::{Query, Signal, Update, check_fits, check_update, message_schema};
pub use crate::registry::{Adapters, AgentRegistration, FlowRegistration};
pub use crate::retry::RetrySpec;
pub use crate::spec::{
    AgentKind, AgentSpec, CallKind, CallSite, FlowSpec, MessageKind, MessageSpec,
};
pub use crate::tool::{DynTool, ToolContext};

// ---------------------------------------------------------------------------------------------
// Registration. The registry knows no executor; what each executor needs per definition type is
// made here, where the executors are known, and carried as opaque adapters.

/// What `#[agent]` submits for agent `A` (and its hand-off chain).
pub const fn agent_registration<A: Agent<Next: HandOff<<A as Agent>::Output>>>(
    agent: &'static A,
    chain: &'static Chain<A>,
) -> AgentRegistration {
    AgentRegistration {
        agent,
        adapters: agent_adapters::<A>(),
        chain: flow_registration::<Chain<A>>(chain),
    }
}

/// What `#[flow]` submits for flow `F`.
pub const fn flow_registration<F: Flow>(flow: &'static F) -> FlowRegistration {
    FlowRegistration {
        flow,
        adapters: flow_adapters::<F>(),
    }
}

#[cfg_attr(not(feature = "temporal"), allow(clippy::extra_unused_type_parameters))]
const fn agent_adapters<A: Agent>() -> Adapters {
    Adapters {
        #[cfg(feature = "temporal")]
        temporal: Some(crate::executor::temporal::register_agent::<A>),
        #[cfg(not(feature = "temporal"))]
        temporal: None,
    }
}

#[cfg_attr(not(feature = "temporal"), allow(clippy::extra_unused_type_parameters))]
const fn flow_adapters<F: Flow>() -> Adapters {
    Adapters {
        #[cfg(feature = "temporal")]
        temporal: Some(crate::executor::temporal::register_flow::<F>),
        #[cfg(not(feature = "temporal"))]
        temporal: None,
    }
}

/// What a code agent's body returns: its output `T`, or `Result<T, E>` with `E` converting into
/// [`AgentError`]. It does not restate the output's requirements: the output checks report a
/// missing derive once, at the output type.
///
/// Generic over `T` (as pyo3's `OkWrap` is), so the two impls cannot overlap.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a valid agent return type for output `{T}`",
    label = "return the output type or `Result<Output, AgentError>`",
    note = "an `#[agent]` fn returns `Out` or `Result<Out, E>` where `E: Into<flock::AgentError>`"
)]
pub trait AgentBodyResult<T> {
    /// Converts into the executors' result.
    fn into_body_result(self) -> Result<T, AgentError>;
}

impl<T> AgentBodyResult<T> for T {
    #[inline]
    fn into_body_result(self) -> Result<T, AgentError> {
        Ok(self)
    }
}

impl<T, E: Into<AgentError>> AgentBodyResult<T> for Result<T, E> {
    #[inline]
    fn into_body_result(self) -> Result<T, AgentError> {
        self.map_err(Into::into)
    }
}

/// Converts what an agent body returned into the executors' result.
#[inline]
pub fn into_agent_result<T, R: AgentBodyResult<T>>(value: R) -> Result<T, AgentError> {
    value.into_body_result()
}

/// The output of an agent that returns `Result<Out, E>`: `Out`. Without bounds, so that a missing
/// derive is reported once, by the output checks, and a wrong error type once, by
/// [`into_agent_result`] (or, without a body, [`assert_agent_error`]).
///
/// Rust's coherence rules do not let one trait map both `T` and `Result<T, E>` to `T`, so
/// `#[agent]` picks between `Out` and `<Ret as AgentResultOk>::Ok` by the return type's form
/// (`Result<..>` or [`AgentResult<..>`](crate::AgentResult)).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not `Result<Output, E>` with `E: Into<AgentError>`",
    label = "an agent that can fail returns `Result<Output, AgentError>`",
    note = "an `#[agent]` fn returns `Out` or `Result<Out, E>` where `E: Into<flock::AgentError>`"
)]
pub trait AgentResultOk {
    /// The output type.
    type Ok;
}

impl<T, E> AgentResultOk for Result<T, E> {
    type Ok = T;
}

/// Checks that the error type of a declarative agent's `Result` converts into [`AgentError`].
pub const fn assert_agent_error<R: AgentResultOk + AgentBodyResult<R::Ok>>() {}

// ---------------------------------------------------------------------------------------------
// Context parameters. `#[agent]` passes the context to a body through `agent_context::<T>(..)`
// where `T` is the type the user wrote, spanned at that type: a wrong type fails there, once,
// with the message below.

/// The type of an agent fn's context parameter: `&AgentContext`.
#[diagnostic::on_unimplemented(
    message = "the first parameter of an agent with two parameters must be `&AgentContext`, not `{Self}`",
    label = "expected `&AgentContext`",
    note = "an `#[agent]` fn is `async fn name(input: In) -> Out` or `async fn name(ctx: &AgentContext, input: In) -> Out`",
    note = "an agent takes exactly one input value: to pass several values, put them in one struct"
)]
pub trait AgentContextParam<'a> {
    /// Borrows the context as the parameter's type.
    fn from_context(ctx: &'a AgentContext) -> Self;
}

impl<'a> AgentContextParam<'a> for &'a AgentContext {
    #[inline]
    fn from_context(ctx: &'a AgentContext) -> Self {
        ctx
    }
}

/// The type of a tool fn's context parameter: `&ToolContext`.
#[diagnostic::on_unimplemented(
    message = "the first parameter of a tool with two parameters must be `&ToolContext`, not `{Self}`",
    label = "expected `&ToolContext`",
    note = "a `#[tool]` fn is `async fn name(args: Args) -> Out` or `async fn name(ctx: &ToolContext, args: Args) -> Out`"
)]
pub trait ToolContextParam<'a> {
    /// Borrows the context as the parameter's type.
    fn from_context(ctx: &'a ToolContext) -> Self;
}

impl<'a> ToolContextParam<'a> for &'a ToolContext {
    #[inline]
    fn from_context(ctx: &'a ToolContext) -> Self {
        ctx
    }
}

/// Passes the context to a tool body as the type of its context parameter.
#[inline]
pub fn tool_context<'a, C: ToolContextParam<'a>>(ctx: &'a ToolContext) -> C {
    C::from_context(ctx)
}

/// Passes the context to an agent body as the type of its context parameter.
#[inline]
pub fn agent_context<'a, C: AgentContextParam<'a>>(ctx: &'a AgentContext) -> C {
    C::from_context(ctx)
}

/// The type of a flow fn's context parameter: `&FlowContext`.
#[diagnostic::on_unimplemented(
    message = "the first parameter of a flow must be `&FlowContext`, not `{Self}`",
    label = "expected `&FlowContext`",
    note = "a `#[flow]` fn is `async fn name(ctx: &FlowContext, input: In) -> Result<Out, FlowError>`"
)]
pub trait FlowContextParam<'a> {
    /// Borrows the context as the parameter's type.
    fn from_context(ctx: &'a FlowContext) -> Self;
}

impl<'a> FlowContextParam<'a> for &'a FlowContext {
    #[inline]
    fn from_context(ctx: &'a FlowContext) -> Self {
        ctx
    }
}

/// Passes the context to a flow body as the type of its context parameter.
#[inline]
pub fn flow_context<'a, C: FlowContextParam<'a>>(ctx: &'a FlowContext) -> C {
    C::from_context(ctx)
}

// ---------------------------------------------------------------------------------------------
// Flow return types.

/// What a flow fn returns: `Result<Out, FlowError>` (through any alias).
#[diagnostic::on_unimplemented(
    message = "a flow returns `Result<Output, FlowError>`, not `{Self}`",
    label = "expected `Result<Output, FlowError>`",
    note = "a `#[flow]` fn is `async fn name(ctx: &FlowContext, input: In) -> Result<Out, FlowError>`; `?` converts agent and other errors into `FlowError`"
)]
pub trait FlowReturn {
    /// The flow's output type.
    type Ok;
    /// Converts into the executors' result.
    fn into_flow_result(self) -> Result<Self::Ok, FlowError>;
}

impl<T> FlowReturn for Result<T, FlowError> {
    type Ok = T;

    #[inline]
    fn into_flow_result(self) -> Result<T, FlowError> {
        self
    }
}

/// Converts what a flow body returned into the executors' result.
#[inline]
pub fn flow_result<R: FlowReturn>(value: R) -> Result<R::Ok, FlowError> {
    value.into_flow_result()
}

// ---------------------------------------------------------------------------------------------
// Input and output checks, one trait per requirement so that the message names the missing
// derive and says whether the input or the output lacks it. Each trait has one blanket impl
// whose bound has the same self type, so rustc reports the trait's own message.

macro_rules! io_check {
    ($(#[$doc:meta])* $trait:ident, $bound:path, $message:literal, $label:literal, $note:literal) => {
        $(#[$doc])*
        #[diagnostic::on_unimplemented(message = $message, label = $label, note = $note)]
        pub trait $trait: $bound {}
        impl<T: $bound> $trait for T {}
    };
}

io_check!(
    /// An agent input is `Serialize`.
    AgentInputSerialize, serde::Serialize,
    "the agent input `{Self}` does not implement `Serialize`",
    "add `#[derive(Serialize)]` to this type",
    "agent inputs and outputs cross process boundaries as JSON: they derive `Serialize`, `Deserialize` and `JsonSchema` (all re-exported by `flock::prelude`)"
);
io_check!(
    /// An agent input is `DeserializeOwned`.
    AgentInputDeserialize, serde::de::DeserializeOwned,
    "the agent input `{Self}` does not implement `Deserialize`",
    "add `#[derive(Deserialize)]` to this type",
    "agent inputs and outputs cross process boundaries as JSON: they derive `Serialize`, `Deserialize` and `JsonSchema` (all re-exported by `flock::prelude`), and own their data (no borrowed fields)"
);
io_check!(
    /// An agent input is `JsonSchema`.
    AgentInputJsonSchema, schemars::JsonSchema,
    "the agent input `{Self}` does not implement `JsonSchema`",
    "add `#[derive(JsonSchema)]` to this type",
    "the JSON Schema of an agent's input and output describes them to the model: derive `JsonSchema` (re-exported by `flock::prelude`)"
);
io_check!(
    /// An agent output is `Serialize`.
    AgentOutputSerialize, serde::Serialize,
    "the agent output `{Self}` does not implement `Serialize`",
    "add `#[derive(Serialize)]` to this type",
    "agent inputs and outputs cross process boundaries as JSON: they derive `Serialize`, `Deserialize` and `JsonSchema` (all re-exported by `flock::prelude`)"
);
io_check!(
    /// An agent output is `DeserializeOwned`.
    AgentOutputDeserialize, serde::de::DeserializeOwned,
    "the agent output `{Self}` does not implement `Deserialize`",
    "add `#[derive(Deserialize)]` to this type",
    "agent inputs and outputs cross process boundaries as JSON: they derive `Serialize`, `Deserialize` and `JsonSchema` (all re-exported by `flock::prelude`), and own their data (no borrowed fields)"
);
io_check!(
    /// An agent output is `JsonSchema`.
    AgentOutputJsonSchema, schemars::JsonSchema,
    "the agent output `{Self}` does not implement `JsonSchema`",
    "add `#[derive(JsonSchema)]` to this type",
    "the JSON Schema of an agent's input and output describes them to the model: derive `JsonSchema` (re-exported by `flock::prelude`)"
);
io_check!(
    /// A flow input is `Serialize`.
    FlowInputSerialize, serde::Serialize,
    "the flow input `{Self}` does not implement `Serialize`",
    "add `#[derive(Serialize)]` to this type",
    "flow inputs and outputs cross process boundaries as JSON: they derive `Serialize`, `Deserialize` and `JsonSchema` (all re-exported by `flock::prelude`)"
);
io_check!(
    /// A flow input is `DeserializeOwned`.
    FlowInputDeserialize, serde::de::DeserializeOwned,
    "the flow input `{Self}` does not implement `Deserialize`",
    "add `#[derive(Deserialize)]` to this type",
    "flow inputs and outputs cross process boundaries as JSON: they derive `Serialize`, `Deserialize` and `JsonSchema` (all re-exported by `flock::prelude`), and own their data (no borrowed fields)"
);
io_check!(
    /// A flow input is `JsonSchema`.
    FlowInputJsonSchema, schemars::JsonSchema,
    "the flow input `{Self}` does not implement `JsonSchema`",
    "add `#[derive(JsonSchema)]` to this type",
    "a flow's input and output schemas describe it to its callers: derive `JsonSchema` (re-exported by `flock::prelude`)"
);
io_check!(
    /// A flow output is `Serialize`.
    FlowOutputSerialize, serde::Serialize,
    "the flow output `{Self}` does not implement `Serialize`",
    "add `#[derive(Serialize)]` to this type",
    "flow inputs and outputs cross process boundaries as JSON: they derive `Serialize`, `Deserialize` and `JsonSchema` (all re-exported by `flock::prelude`)"
);
io_check!(
    /// A flow output is `DeserializeOwned`.
    FlowOutputDeserialize, serde::de::DeserializeOwned,
    "the flow output `{Self}` does not implement `Deserialize`",
    "add `#[derive(Deserialize)]` to this type",
    "flow inputs and outputs cross process boundaries as JSON: they derive `Serialize`, `Deserialize` and `JsonSchema` (all re-exported by `flock::prelude`), and own their data (no borrowed fields)"
);
io_check!(
    /// A flow output is `JsonSchema`.
    FlowOutputJsonSchema, schemars::JsonSchema,
    "the flow output `{Self}` does not implement `JsonSchema`",
    "add `#[derive(JsonSchema)]` to this type",
    "a flow's input and output schemas describe it to its callers: derive `JsonSchema` (re-exported by `flock::prelude`)"
);
io_check!(
    /// Tool arguments are `DeserializeOwned`.
    ToolArgsDeserialize, serde::de::DeserializeOwned,
    "the tool arguments `{Self}` do not implement `Deserialize`",
    "add `#[derive(Deserialize)]` to this type",
    "the model calls a tool with JSON arguments: they derive `Deserialize` and `JsonSchema` (re-exported by `flock::prelude`)"
);
io_check!(
    /// Tool arguments are `JsonSchema`.
    ToolArgsJsonSchema, schemars::JsonSchema,
    "the tool arguments `{Self}` do not implement `JsonSchema`",
    "add `#[derive(JsonSchema)]` to this type",
    "the JSON Schema of a tool's arguments tells the model how to call it: derive `JsonSchema` (re-exported by `flock::prelude`)"
);
io_check!(
    /// A tool's output is `Serialize`.
    ToolOutputSerialize, serde::Serialize,
    "the tool output `{Self}` does not implement `Serialize`",
    "add `#[derive(Serialize)]` to this type",
    "a tool's answer goes back to the model as JSON: it derives `Serialize` (re-exported by `flock::prelude`)"
);
io_check!(
    /// A tool's error is `Display`.
    ToolErrorDisplay, core::fmt::Display,
    "the tool error `{Self}` does not implement `Display`",
    "a failing tool returns `Result<Out, E>` with `E: Display`",
    "the error's text goes back to the model as the tool's answer"
);

// The checks, written out (not generated by the macro) so that rustc's notes show one line.

/// Checks [`AgentInputSerialize`].
pub const fn assert_agent_input_serialize<T: AgentInputSerialize>() {}

/// Checks [`AgentInputDeserialize`].
pub const fn assert_agent_input_deserialize<T: AgentInputDeserialize>() {}

/// Checks [`AgentInputJsonSchema`].
pub const fn assert_agent_input_json_schema<T: AgentInputJsonSchema>() {}

/// Checks [`AgentOutputSerialize`].
pub const fn assert_agent_output_serialize<T: AgentOutputSerialize>() {}

/// Checks [`AgentOutputDeserialize`].
pub const fn assert_agent_output_deserialize<T: AgentOutputDeserialize>() {}

/// Checks [`AgentOutputJsonSchema`].
pub const fn assert_agent_output_json_schema<T: AgentOutputJsonSchema>() {}

/// Checks [`FlowInputSerialize`].
pub const fn assert_flow_input_serialize<T: FlowInputSerialize>() {}

/// Checks [`FlowInputDeserialize`].
pub const fn assert_flow_input_deserialize<T: FlowInputDeserialize>() {}

/// Checks [`FlowInputJsonSchema`].
pub const fn assert_flow_input_json_schema<T: FlowInputJsonSchema>() {}

/// Checks [`FlowOutputSerialize`].
pub const fn assert_flow_output_serialize<T: FlowOutputSerialize>() {}

/// Checks [`FlowOutputDeserialize`].
pub const fn assert_flow_output_deserialize<T: FlowOutputDeserialize>() {}

/// Checks [`FlowOutputJsonSchema`].
pub const fn assert_flow_output_json_schema<T: FlowOutputJsonSchema>() {}

// ---------------------------------------------------------------------------------------------
// Hand-offs.

/// `#[agent(hand_off = To)]` on agent `From`: the output of `From` converts into `Self`, the input
/// of `To`. (Implemented for the target's input so that rustc reports this message.)
#[diagnostic::on_unimplemented(
    message = "agent `{From}` cannot hand off to agent `{To}`: its output `{FromOutput}` does not convert into `{Self}`, the input of `{To}`",
    label = "`{FromOutput}` does not implement `Into<{Self}>`",
    note = "make the types agree, or implement `From<{FromOutput}> for {Self}`"
)]
pub trait HandsOffTo<From, To, FromOutput> {}

impl<From, To, FromOutput, ToInput> HandsOffTo<From, To, FromOutput> for ToInput where
    FromOutput: Into<ToInput>
{
}

/// Checks `#[agent(hand_off = To)]` on agent `From`, and gives `To`'s name for the spec (one
/// call, so that the check and the name do not report a wrong hand-off twice).
pub const fn assert_hand_off<From: Agent, To: Agent>() -> &'static str
where
    To::Input: HandsOffTo<From, To, From::Output>,
{
    To::NAME
}

// ---------------------------------------------------------------------------------------------
// Tools.

/// The JSON Schema of a tool's arguments.
pub fn tool_parameters_schema<A: ToolArgsJsonSchema>() -> serde_json::Value {
    schemars::schema_for!(A).to_value()
}

/// Deserializes a tool's JSON arguments, with an error message for the model.
pub fn tool_arguments<A: ToolArgsDeserialize>(
    tool: &'static str,
    arguments: serde_json::Value,
) -> Result<A, String> {
    serde_json::from_value(arguments)
        .map_err(|e| format!("the arguments of tool `{tool}` do not match its schema: {e}"))
}

/// Deserializes the arguments of a tool that demands an approval (`Approved<Args>`): only a
/// call someone approved gets them.
pub fn approved_arguments<A: ToolArgsDeserialize>(
    tool: &'static str,
    arguments: serde_json::Value,
    ctx: &ToolContext,
) -> Result<crate::approval::Approved<A>, String> {
    let decision = crate::approval::approval_of(tool, ctx.approval())?;
    let args = tool_arguments::<A>(tool, arguments)?;
    Ok(crate::approval::Approved::new(args, decision))
}

/// Serializes what an infallible tool returned.
pub fn tool_output<T: ToolOutputSerialize>(
    tool: &'static str,
    output: T,
) -> Result<serde_json::Value, String> {
    serde_json::to_value(output)
        .map_err(|e| format!("the output of tool `{tool}` is not serializable: {e}"))
}

/// Serializes what a fallible tool returned; its error becomes the model's answer.
pub fn tool_result<T: ToolOutputSerialize, E: ToolErrorDisplay>(
    tool: &'static str,
    result: Result<T, E>,
) -> Result<serde_json::Value, String> {
    match result {
        Ok(output) => tool_output(tool, output),
        Err(error) => Err(error.to_string()),
    }
}

/// The `call_json` of a `#[tool]`: deserializes the arguments, runs the body, serializes.
pub fn call_tool<A, Fut>(
    tool: &'static str,
    arguments: serde_json::Value,
    body: fn(A) -> Fut,
    finish: fn(&'static str, Fut::Output) -> Result<serde_json::Value, String>,
) -> futures::future::BoxFuture<'static, Result<serde_json::Value, String>>
where
    A: ToolArgsDeserialize,
    Fut: core::future::Future + Send + 'static,
{
    match tool_arguments::<A>(tool, arguments) {
        Ok(arguments) => {
            let call = body(arguments);
            Box::pin(async move { finish(tool, call.await) })
        }
        Err(error) => Box::pin(core::future::ready(Err(error))),
    }
}

// ---------------------------------------------------------------------------------------------
// Retry attempts.

pub use crate::retry::Attempts;

/// `retry(attempts = n)`. `#[agent]` rejects `n = 0` (Temporal's "unlimited"), and the call
/// initializes a `static`, so the panic cannot happen at run time.
pub const fn attempts_at_most(n: u32) -> Attempts {
    match Attempts::at_most(n) {
        Some(attempts) => attempts,
        None => panic!("`retry(attempts = 0)`: write `attempts = unlimited`"),
    }
}

// ---------------------------------------------------------------------------------------------
// Return types that hide a `Result`. `#[agent]` and `#[tool]` tell a fn that can fail by the
// `Result` written in its return type (the output type depends on it, and a trait cannot map
// both `T` and `Result<T, E>` to `T`). Behind an alias the `Result` is not written, so for a
// return type spelled as a plain output the macros ask rustc, which sees through aliases:
// `(&ReturnProbe::<Ret>::new()).__flock_return_kind()` is `AliasedResult` when `Ret` is a
// `Result` (the impl on `ReturnProbe<Result<T, E>>` needs no autoref, so method lookup picks it
// first) and `NotAResult` otherwise; the check functions accept only `NotAResult`.

/// A return type, probed by method lookup.
pub struct ReturnProbe<T>(core::marker::PhantomData<T>);

impl<T> ReturnProbe<T> {
    /// The probe of `T`.
    #[inline]
    pub const fn new() -> Self {
        ReturnProbe(core::marker::PhantomData)
    }
}

impl<T> Default for ReturnProbe<T> {
    #[inline]
    fn default() -> Self {
        Self::new()
    }
}

/// The probed return type is a `Result` that its spelling hides.
pub struct AliasedResult;

/// The probed return type is not a `Result`.
pub struct NotAResult;

/// Applies to `ReturnProbe<Result<T, E>>` itself.
pub trait ProbeAliasedResult {
    /// This type is a `Result`.
    #[inline]
    fn __flock_return_kind(&self) -> AliasedResult {
        AliasedResult
    }
}

impl<T, E> ProbeAliasedResult for ReturnProbe<Result<T, E>> {}

/// Applies to every `&ReturnProbe<T>`, one autoref further.
pub trait ProbeNotAResult {
    /// This type is not a `Result`.
    #[inline]
    fn __flock_return_kind(&self) -> NotAResult {
        NotAResult
    }
}

impl<T> ProbeNotAResult for &ReturnProbe<T> {}

/// An agent's return type that is not spelled `Result<..>` or `AgentResult<..>` is not one.
#[diagnostic::on_unimplemented(
    message = "this return type is a `Result` behind an alias: write `Result<Out, E>` out so that flock sees the agent can fail",
    label = "a `Result` behind an alias",
    note = "`#[agent]` tells an agent that can fail by the `Result` (or `AgentResult`) written in its return type; behind an alias the whole `Result` would become the agent's output",
    note = "for an output that is itself a `Result` value, wrap it in a struct or enum"
)]
pub trait AgentReturnSpelledOut {}

impl AgentReturnSpelledOut for NotAResult {}

/// Checks [`AgentReturnSpelledOut`] on the probe's verdict.
#[inline]
pub fn assert_agent_return_spelled_out<K: AgentReturnSpelledOut>(_: K) {}

/// A tool's return type that is not spelled `Result<..>` is not one.
#[diagnostic::on_unimplemented(
    message = "this return type is a `Result` behind an alias: write `Result<Out, E>` out so that flock sees the tool can fail",
    label = "a `Result` behind an alias",
    note = "`#[tool]` tells a tool that can fail by the `Result` written in its return type; behind an alias an `Err` would go to the model as the tool's successful answer",
    note = "for an answer that is itself a `Result` value, wrap it in a struct or enum"
)]
pub trait ToolReturnSpelledOut {}

impl ToolReturnSpelledOut for NotAResult {}

/// Checks [`ToolReturnSpelledOut`] on the probe's verdict.
#[inline]
pub fn assert_tool_return_spelled_out<K: ToolReturnSpelledOut>(_: K) {}

// ---------------------------------------------------------------------------------------------
// The callees of a flow's call sites. `#[flow]` names each callee's path in
// `(&agent_probe(&path)).__flock_callee()`: the registered name when the path is an agent (the
// impl on `CalleeProbe<A>` needs no autoref, so method lookup picks it first), `None` otherwise.
// A callee that is not an agent fails the body's own `ctx.call` with rustc's message; the probe
// adds no second error.

/// A callee, probed by method lookup.
pub struct CalleeProbe<T, K>(core::marker::PhantomData<(T, K)>);

/// The probe of an agent call's callee.
pub struct AgentCallee;

/// The probe of a child-flow call's callee.
pub struct FlowCallee;

/// Probes `callee` as an agent.
#[inline]
pub fn agent_probe<T>(callee: &T) -> CalleeProbe<T, AgentCallee> {
    let _ = callee;
    CalleeProbe(core::marker::PhantomData)
}

/// Probes `callee` as a flow.
#[inline]
pub fn flow_probe<T>(callee: &T) -> CalleeProbe<T, FlowCallee> {
    let _ = callee;
    CalleeProbe(core::marker::PhantomData)
}

/// Applies to the probe of an agent or flow.
pub trait ProbeCallee {
    /// The callee's registered name.
    fn __flock_callee(&self) -> Option<&'static str>;
}

impl<A: Agent> ProbeCallee for CalleeProbe<A, AgentCallee> {
    #[inline]
    fn __flock_callee(&self) -> Option<&'static str> {
        Some(A::NAME)
    }
}

impl<F: Flow> ProbeCallee for CalleeProbe<F, FlowCallee> {
    #[inline]
    fn __flock_callee(&self) -> Option<&'static str> {
        Some(F::NAME)
    }
}

/// Applies to every `&CalleeProbe`, one autoref further.
pub trait ProbeNotCallee {
    /// Not an agent or flow.
    #[inline]
    fn __flock_callee(&self) -> Option<&'static str> {
        None
    }
}

impl<T, K> ProbeNotCallee for &CalleeProbe<T, K> {}
