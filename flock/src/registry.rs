//! The registry of agents and flows: every `#[agent]` and `#[flow]` linked into the binary
//! registers itself, so a worker serves them all without configuration.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::Value;

use crate::agent::{Agent, AgentContext, AgentSpec};
use crate::error::{AgentError, Error, FlowError};
use crate::executor::temporal::{AgentActivity, FlowWorkflow, WorkerShared};
use crate::flow::{Chain, Flow, FlowContext, FlowSpec};

/// An agent behind JSON: what a worker needs to run it by name.
pub trait DynAgent: Send + Sync {
    /// The agent's settings.
    fn spec(&self) -> &'static AgentSpec;
    /// The input JSON Schema.
    fn input_schema(&self) -> schemars::Schema;
    /// The output JSON Schema.
    fn output_schema(&self) -> schemars::Schema;
    /// Runs one attempt on JSON input, giving JSON output.
    fn call_json(
        &self,
        ctx: AgentContext,
        input: Value,
    ) -> BoxFuture<'static, Result<Value, AgentError>>;
    #[doc(hidden)]
    /// Registers the agent's activity on a Temporal worker.
    fn register_activity(
        &self,
        options: &mut temporalio_sdk::WorkerOptions,
        shared: &Arc<WorkerShared>,
    );
}

impl<A: Agent> DynAgent for A {
    fn spec(&self) -> &'static AgentSpec {
        Agent::spec(self)
    }

    fn input_schema(&self) -> schemars::Schema {
        Agent::input_schema(self)
    }

    fn output_schema(&self) -> schemars::Schema {
        Agent::output_schema(self)
    }

    fn call_json(
        &self,
        ctx: AgentContext,
        input: Value,
    ) -> BoxFuture<'static, Result<Value, AgentError>> {
        let agent = *self;
        Box::pin(async move {
            let input = serde_json::from_value::<A::Input>(input).map_err(|e| {
                AgentError::invalid_input(format!(
                    "agent `{}`: input does not match its type: {e}",
                    A::NAME
                ))
            })?;
            let output = agent.call(ctx, input).await?;
            serde_json::to_value(&output).map_err(|e| {
                AgentError::permanent(format!("agent `{}`: output not serializable: {e}", A::NAME))
            })
        })
    }

    fn register_activity(
        &self,
        options: &mut temporalio_sdk::WorkerOptions,
        shared: &Arc<WorkerShared>,
    ) {
        options.register_activity::<AgentActivity<A>>(shared.clone());
    }
}

/// A flow behind JSON: what a worker needs to run it by name.
pub trait DynFlow: Send + Sync {
    /// The flow's settings.
    fn spec(&self) -> &'static FlowSpec;
    /// The input JSON Schema.
    fn input_schema(&self) -> schemars::Schema;
    /// The output JSON Schema.
    fn output_schema(&self) -> schemars::Schema;
    /// Runs the flow on JSON input, giving JSON output.
    fn run_json<'a>(
        &self,
        ctx: &'a FlowContext,
        input: Value,
    ) -> BoxFuture<'a, Result<Value, FlowError>>;
    #[doc(hidden)]
    /// Registers the flow's workflow on a Temporal worker.
    fn register_workflow(
        &self,
        options: &mut temporalio_sdk::WorkerOptions,
        shared: &Arc<WorkerShared>,
    ) -> Result<(), temporalio_sdk::workflows::WorkflowRegistrationError>;
}

impl<F: Flow> DynFlow for F {
    fn spec(&self) -> &'static FlowSpec {
        Flow::spec(self)
    }

    fn input_schema(&self) -> schemars::Schema {
        Flow::input_schema(self)
    }

    fn output_schema(&self) -> schemars::Schema {
        Flow::output_schema(self)
    }

    fn run_json<'a>(
        &self,
        ctx: &'a FlowContext,
        input: Value,
    ) -> BoxFuture<'a, Result<Value, FlowError>> {
        let flow = *self;
        Box::pin(async move {
            let input = serde_json::from_value::<F::Input>(input).map_err(|e| {
                FlowError::Serialization {
                    at: F::NAME.to_owned(),
                    message: format!("input: {e}"),
                }
            })?;
            let output = flow.run(ctx, input).await?;
            serde_json::to_value(&output).map_err(|e| FlowError::Serialization {
                at: F::NAME.to_owned(),
                message: format!("output: {e}"),
            })
        })
    }

    fn register_workflow(
        &self,
        options: &mut temporalio_sdk::WorkerOptions,
        shared: &Arc<WorkerShared>,
    ) -> Result<(), temporalio_sdk::workflows::WorkflowRegistrationError> {
        options
            .register_workflow_with_factory::<FlowWorkflow<F>, _>(FlowWorkflow::<F>::factory(
                shared.clone(),
            ))
            .map(|_| ())
    }
}

/// What `#[agent]` submits: the agent, and the hand-off chain that starts at it.
pub struct AgentRegistration {
    /// The agent.
    pub agent: &'static dyn DynAgent,
    /// The chain that starts at it.
    pub chain: &'static dyn DynFlow,
}

/// What `#[flow]` submits.
pub struct FlowRegistration {
    /// The flow.
    pub flow: &'static dyn DynFlow,
}

inventory::collect!(AgentRegistration);
inventory::collect!(FlowRegistration);

/// The agents and flows a `Flock` serves, by name.
#[derive(Clone, Default)]
pub struct Registry {
    agents: BTreeMap<&'static str, &'static dyn DynAgent>,
    chains: BTreeMap<&'static str, &'static dyn DynFlow>,
    flows: BTreeMap<&'static str, &'static dyn DynFlow>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("agents", &self.agents.keys().collect::<Vec<_>>())
            .field("flows", &self.flows.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Registry {
    /// Every agent and flow linked into this binary.
    ///
    /// Fails when two agents (or two flows) defined in different places share a name, naming both
    /// places.
    pub fn linked() -> Result<Registry, Error> {
        let mut registry = Registry::default();
        for registration in inventory::iter::<AgentRegistration> {
            registry.add_agent(registration.agent, registration.chain)?;
        }
        for registration in inventory::iter::<FlowRegistration> {
            registry.add_flow(registration.flow)?;
        }
        Ok(registry)
    }

    /// Adds an agent (and its chain). Adding the same definition twice is harmless.
    pub fn add_agent(
        &mut self,
        agent: &'static dyn DynAgent,
        chain: &'static dyn DynFlow,
    ) -> Result<(), Error> {
        let spec = agent.spec();
        if let Some(existing) = self.agents.get(spec.name) {
            return same_place("agents", spec.name, existing.spec().location, spec.location);
        }
        self.agents.insert(spec.name, agent);
        self.chains.insert(chain.spec().name, chain);
        Ok(())
    }

    /// Adds a flow. Adding the same definition twice is harmless.
    pub fn add_flow(&mut self, flow: &'static dyn DynFlow) -> Result<(), Error> {
        let spec = flow.spec();
        if let Some(existing) = self.flows.get(spec.name) {
            return same_place("flows", spec.name, existing.spec().location, spec.location);
        }
        self.flows.insert(spec.name, flow);
        Ok(())
    }

    /// Adds an agent given as a value.
    pub fn register_agent<A: Agent>(&mut self, agent: A) -> Result<(), Error> {
        let _ = agent;
        self.add_agent(leak(A::default()), leak(Chain(A::default())))
    }

    /// Adds a flow given as a value.
    pub fn register_flow<F: Flow>(&mut self, flow: F) -> Result<(), Error> {
        let _ = flow;
        self.add_flow(leak(F::default()))
    }

    /// The agents, by name.
    pub fn agents(&self) -> impl Iterator<Item = &'static dyn DynAgent> + '_ {
        self.agents.values().copied()
    }

    /// The flows, by name (hand-off chains not included).
    pub fn flows(&self) -> impl Iterator<Item = &'static dyn DynFlow> + '_ {
        self.flows.values().copied()
    }

    /// The hand-off chains (one per agent), by name.
    pub fn chains(&self) -> impl Iterator<Item = &'static dyn DynFlow> + '_ {
        self.chains.values().copied()
    }

    /// The agent called `name`.
    pub fn agent(&self, name: &str) -> Option<&'static dyn DynAgent> {
        self.agents.get(name).copied()
    }

    /// The flow or chain called `name`.
    pub fn flow(&self, name: &str) -> Option<&'static dyn DynFlow> {
        self.flows
            .get(name)
            .or_else(|| self.chains.get(name))
            .copied()
    }
}

fn same_place(
    kind: &str,
    name: &str,
    first: &'static str,
    second: &'static str,
) -> Result<(), Error> {
    if first == second {
        Ok(())
    } else {
        Err(Error::Registry(format!(
            "two {kind} are named `{name}`: one defined at {first}, the other at {second}; rename one (e.g. `name = \"..\"`)"
        )))
    }
}

/// Zero-sized agents and flows cost nothing to leak.
fn leak<T: Send + Sync + 'static>(value: T) -> &'static T {
    Box::leak(Box::new(value))
}
