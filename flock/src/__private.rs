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

pub use crate::agent::{
    Agent, AgentContext, AgentIo, AgentKind, AgentSpec, End, FallibleReturn, HandOff,
    IntoAgentResult,
};
pub use crate::error::{AgentError, FlowError};
pub use crate::flow::{Chain, Flow, FlowContext, FlowSpec};
pub use crate::registry::{AgentRegistration, FlowRegistration};
pub use crate::retry::RetrySpec;
pub use crate::tool::DynTool;

/// A bodiless agent's `call`: the configured model answers it.
pub async fn run_declarative<A: Agent>(
    ctx: AgentContext,
    input: A::Input,
) -> Result<A::Output, AgentError> {
    crate::model::evaluate::<A>(ctx, input).await
}

/// Converts what an agent body returned into the executors' result.
#[inline]
pub fn into_agent_result<T, R: IntoAgentResult<T>>(value: R) -> Result<T, AgentError> {
    value.into_agent_result()
}
