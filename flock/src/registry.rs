//! The registry of agents and flows: every `#[agent]` and `#[flow]` linked into the binary
//! registers itself, so a worker serves them all without configuration. Executors find what a
//! run calls here, by name.
//!
//! The registry knows no executor. What an executor needs per definition type (on Temporal: an
//! activity or workflow type to register) travels with each registration as opaque
//! [`Adapters`], made where the executors are known (the code the macros generate, through
//! `flock::__private`, or [`FlockBuilder::agent`](crate::FlockBuilder::agent)).

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;

use crate::agent::DynAgent;
use crate::error::Error;
use crate::flow::DynFlow;
use crate::spec::CallSite;

/// Executor-specific glue for one definition, opaque to the registry: each executor reads its
/// own entry. Not a public API.
#[derive(Clone, Copy, Default)]
#[doc(hidden)]
pub struct Adapters {
    /// Registers the definition on a Temporal worker (given the executor's registrar).
    pub temporal: Option<fn(&mut dyn Any)>,
}

impl fmt::Debug for Adapters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Adapters")
            .field("temporal", &self.temporal.is_some())
            .finish()
    }
}

/// What `#[agent]` submits: the agent, and the hand-off chain that starts at it.
pub struct AgentRegistration {
    /// The agent.
    pub agent: &'static dyn DynAgent,
    /// Its executors' glue.
    #[doc(hidden)]
    pub adapters: Adapters,
    /// The chain that starts at it.
    pub chain: FlowRegistration,
}

/// What `#[flow]` submits.
pub struct FlowRegistration {
    /// The flow.
    pub flow: &'static dyn DynFlow,
    /// Its executors' glue.
    #[doc(hidden)]
    pub adapters: Adapters,
}

inventory::collect!(AgentRegistration);
inventory::collect!(FlowRegistration);

/// A registered agent.
#[derive(Clone, Copy)]
pub(crate) struct AgentEntry {
    pub(crate) agent: &'static dyn DynAgent,
    #[cfg_attr(not(feature = "temporal"), allow(dead_code))]
    pub(crate) adapters: Adapters,
}

/// A registered flow or hand-off chain.
#[derive(Clone, Copy)]
pub(crate) struct FlowEntry {
    pub(crate) flow: &'static dyn DynFlow,
    #[cfg_attr(not(feature = "temporal"), allow(dead_code))]
    pub(crate) adapters: Adapters,
    pub(crate) chain: bool,
    /// flock's own flow (the batches of `ctx.map`): run, never listed.
    pub(crate) builtin: bool,
}

/// The agents and flows a `Flock` serves, by name.
#[derive(Clone, Default)]
pub struct Registry {
    agents: BTreeMap<&'static str, AgentEntry>,
    /// Flows and hand-off chains share one namespace: on Temporal both are workflow types.
    flows: BTreeMap<&'static str, FlowEntry>,
    /// The steps of the agents that run step by step (their model requests and tool calls),
    /// run by name like agents.
    steps: BTreeMap<&'static str, &'static dyn DynAgent>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("agents", &self.agents.keys().collect::<Vec<_>>())
            .field(
                "flows",
                &self.flows().map(|f| f.spec().name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Registry {
    /// Every agent and flow linked into this binary.
    ///
    /// Fails when two agents (or two flows, or a flow and an agent's hand-off chain) defined in
    /// different places share a name, naming both places.
    pub fn linked() -> Result<Registry, Error> {
        let mut registry = Registry::default();
        for registration in inventory::iter::<AgentRegistration> {
            registry.add_agent(registration)?;
        }
        for registration in inventory::iter::<FlowRegistration> {
            registry.add_flow(registration)?;
        }
        Ok(registry)
    }

    /// Adds an agent (and its chain). Adding the same definition twice is harmless.
    pub fn add_agent(&mut self, registration: &AgentRegistration) -> Result<(), Error> {
        let spec = registration.agent.spec();
        if let Some(existing) = self.agents.get(spec.name) {
            return same_place(
                "agents",
                spec.name,
                existing.agent.spec().location,
                spec.location,
            );
        }
        if self.steps.contains_key(spec.name) {
            return Err(Error::Registry(format!(
                "agent `{}` ({}) has the name of a step of an agent that runs step by step; rename the agent (`#[agent(name = \"..\")]`)",
                spec.name, spec.location
            )));
        }
        self.insert_flow(&registration.chain, true)?;
        self.insert_steps(registration.agent)?;
        self.agents.insert(
            spec.name,
            AgentEntry {
                agent: registration.agent,
                adapters: registration.adapters,
            },
        );
        Ok(())
    }

    /// The steps of `agent` when it runs step by step: its model requests, and a call of each of
    /// its tools. Two different tools of one name are an error (their steps would share an
    /// activity type on Temporal).
    fn insert_steps(&mut self, agent: &'static dyn DynAgent) -> Result<(), Error> {
        let spec = agent.spec();
        if !spec.runs_step_by_step() {
            return Ok(());
        }
        let model = crate::step::ModelStep::of(agent);
        self.insert_step(model.spec().name, model, spec.location)?;
        for &tool in spec.tools {
            let step = crate::step::ToolStep::of(tool);
            if !step.same_tool(tool) {
                return Err(Error::Registry(format!(
                    "two different tools are named `{}` (one is offered by agent `{}`, {}); their calls would share the step `{}`: rename one (`#[tool(name = \"..\")]`)",
                    tool.name(),
                    spec.name,
                    spec.location,
                    step.spec().name
                )));
            }
            self.insert_step(step.spec().name, step, spec.location)?;
        }
        #[cfg(feature = "mcp")]
        for &server in spec.mcp {
            let (list, call) = crate::mcp::steps(server);
            self.insert_step(list.spec().name, list, spec.location)?;
            self.insert_step(call.spec().name, call, spec.location)?;
        }
        Ok(())
    }

    fn insert_step(
        &mut self,
        name: &'static str,
        step: &'static dyn DynAgent,
        location: &'static str,
    ) -> Result<(), Error> {
        if let Some(agent) = self.agents.get(name) {
            return Err(Error::Registry(format!(
                "agent `{name}` ({}) has the name of a step of the agent defined at {location}; rename the agent (`#[agent(name = \"..\")]`)",
                agent.agent.spec().location
            )));
        }
        self.steps.insert(name, step);
        Ok(())
    }

    /// Adds one of flock's own flows (the batches of `ctx.map`: the `Flock` adds it when it
    /// has agents), run like a flow and never listed; a flow of the user's with its name is an
    /// error.
    pub(crate) fn insert_builtin(&mut self, registration: &FlowRegistration) -> Result<(), Error> {
        let name = registration.flow.spec().name;
        if let Some(existing) = self.flows.get(name)
            && !existing.builtin
        {
            return Err(Error::Registry(format!(
                "flow `{name}` ({}) has the name of flock's own flow (the batches of `ctx.map`); rename it (`#[flow(name = \"..\")]`)",
                existing.flow.spec().location
            )));
        }
        self.flows.insert(
            name,
            FlowEntry {
                flow: registration.flow,
                adapters: registration.adapters,
                chain: false,
                builtin: true,
            },
        );
        Ok(())
    }

    /// Adds a flow. Adding the same definition twice is harmless.
    pub fn add_flow(&mut self, registration: &FlowRegistration) -> Result<(), Error> {
        self.insert_flow(registration, false)
    }

    fn insert_flow(&mut self, registration: &FlowRegistration, chain: bool) -> Result<(), Error> {
        let spec = registration.flow.spec();
        if let Some(existing) = self.flows.get(spec.name) {
            let existing_spec = existing.flow.spec();
            if existing.builtin {
                return Err(Error::Registry(format!(
                    "flow `{}` ({}) has the name of flock's own flow (the batches of `ctx.map`); rename it (`#[flow(name = \"..\")]`)",
                    spec.name, spec.location
                )));
            }
            if existing.chain != chain {
                return Err(Error::Registry(format!(
                    "flow `{}` ({}) has the name of an agent's hand-off chain ({}); on Temporal both are workflow types: rename the flow (`#[flow(name = \"..\")]`)",
                    spec.name,
                    if chain {
                        existing_spec.location
                    } else {
                        spec.location
                    },
                    if chain {
                        spec.location
                    } else {
                        existing_spec.location
                    },
                )));
            }
            return same_place("flows", spec.name, existing_spec.location, spec.location);
        }
        self.flows.insert(
            spec.name,
            FlowEntry {
                flow: registration.flow,
                adapters: registration.adapters,
                chain,
                builtin: false,
            },
        );
        Ok(())
    }

    /// This registry cut down to `roots` (flows, agents or hand-off chains, by name) and what
    /// they call: the agents, child flows and chains of each flow's call sites, each agent's
    /// hand-off chain and the agents it hands off to. What a `Flock` built with
    /// [`FlockBuilder::serve_only`](crate::FlockBuilder::serve_only) serves.
    ///
    /// A call the macro could not resolve to a name (an agent passed in a variable) is not
    /// followed: name its callee among the roots too. An unknown root is [`Error::NotFound`]
    /// with the closest known name.
    pub fn only<'a>(&self, roots: impl IntoIterator<Item = &'a str>) -> Result<Registry, Error> {
        let mut todo: Vec<&'static str> = Vec::new();
        for root in roots {
            match (
                self.agents.get_key_value(root),
                self.flows.get_key_value(root),
            ) {
                (Some((name, _)), _) | (None, Some((name, _))) => todo.push(name),
                (None, None) => {
                    let known: Vec<&str> = self
                        .flows()
                        .map(|f| f.spec().name)
                        .chain(self.agents().map(|a| a.spec().name))
                        .collect();
                    return Err(not_found("flow or agent", root, &known));
                }
            }
        }
        let mut kept = Registry::default();
        while let Some(name) = todo.pop() {
            if let Some((&key, &entry)) = self.agents.get_key_value(name)
                && kept.agents.insert(key, entry).is_none()
            {
                kept.insert_steps(entry.agent)?;
                let spec = entry.agent.spec();
                if let Some((&chain, _)) =
                    self.flows.get_key_value(format!("{name}.chain").as_str())
                {
                    todo.push(chain);
                }
                todo.extend(spec.hand_off);
            }
            if let Some((&key, &entry)) = self.flows.get_key_value(name)
                && kept.flows.insert(key, entry).is_none()
            {
                if entry.chain {
                    // the chain of agent `x` is `x.chain`: it runs `x` and its hand-offs
                    if let Some((&agent, _)) = name
                        .strip_suffix(".chain")
                        .and_then(|agent| self.agents.get_key_value(agent))
                    {
                        todo.push(agent);
                    }
                }
                todo.extend(entry.flow.spec().calls.iter().filter_map(CallSite::callee));
            }
        }
        // the flows kept may map (a pool, without flows, runs no batches)
        if !kept.flows.is_empty() {
            for (&name, &entry) in self.flows.iter().filter(|(_, entry)| entry.builtin) {
                kept.flows.insert(name, entry);
            }
        }
        Ok(kept)
    }

    /// The agents, by name.
    pub fn agents(&self) -> impl Iterator<Item = &'static dyn DynAgent> + '_ {
        self.agents.values().map(|entry| entry.agent)
    }

    /// The flows, by name (hand-off chains not included).
    pub fn flows(&self) -> impl Iterator<Item = &'static dyn DynFlow> + '_ {
        self.flows
            .values()
            .filter(|entry| !entry.chain && !entry.builtin)
            .map(|entry| entry.flow)
    }

    /// The hand-off chains (one per agent), by name.
    pub fn chains(&self) -> impl Iterator<Item = &'static dyn DynFlow> + '_ {
        self.flows
            .values()
            .filter(|entry| entry.chain)
            .map(|entry| entry.flow)
    }

    /// The agent called `name`.
    pub fn agent(&self, name: &str) -> Option<&'static dyn DynAgent> {
        match self.agents.get(name) {
            Some(entry) => Some(entry.agent),
            None => self.steps.get(name).copied(),
        }
    }

    /// The steps of the agents that run step by step
    /// ([`AgentSpec::runs_step_by_step`](crate::AgentSpec::runs_step_by_step)), by name: what
    /// [`agent`](Self::agent) finds besides the agents.
    pub fn steps(&self) -> impl Iterator<Item = &'static dyn DynAgent> + '_ {
        self.steps.values().copied()
    }

    /// Whether an agent here runs step by step.
    pub(crate) fn has_steps(&self) -> bool {
        !self.steps.is_empty()
    }

    /// The flow or chain called `name`.
    pub fn flow(&self, name: &str) -> Option<&'static dyn DynFlow> {
        self.flows.get(name).map(|entry| entry.flow)
    }

    /// The flow called `name`, or the hand-off chain of the agent called `name` (what
    /// `flock.run(agent, ..)` runs); an unknown name is [`Error::NotFound`] with the closest known
    /// name.
    pub fn flow_or_chain(&self, name: &str) -> Result<&'static dyn DynFlow, Error> {
        if let Some(entry) = self.flows.get(name).filter(|entry| !entry.chain) {
            return Ok(entry.flow);
        }
        if self.agents.contains_key(name)
            && let Some(chain) = self.flow(&format!("{name}.chain"))
        {
            return Ok(chain);
        }
        if let Some(flow) = self.flow(name) {
            return Ok(flow);
        }
        let known: Vec<&str> = self
            .flows()
            .map(|f| f.spec().name)
            .chain(self.agents().map(|a| a.spec().name))
            .collect();
        Err(not_found("flow or agent", name, &known))
    }

    /// The agent called `name`; an unknown name is [`Error::NotFound`] with the closest known
    /// agent's name.
    pub fn agent_named(&self, name: &str) -> Result<&'static dyn DynAgent, Error> {
        if let Some(agent) = self.agent(name) {
            return Ok(agent);
        }
        let known: Vec<&str> = self.agents().map(|a| a.spec().name).collect();
        Err(not_found("agent", name, &known))
    }

    /// Checks `input` against the input schema of flow (or agent) `name`: [`Error::Input`] names
    /// the JSON path that does not fit and the type expected there.
    pub fn check_input_json(
        &self,
        name: &str,
        input: &serde_json::Value,
    ) -> Result<&'static dyn DynFlow, Error> {
        let flow = self.flow_or_chain(name)?;
        let schema =
            serde_json::to_value(flow.input_schema()).unwrap_or(serde_json::Value::Bool(true));
        crate::model::validate::validate(&schema, input).map_err(|violations| {
            Error::Input(format!(
                "the input does not fit the input schema of `{name}`: {}",
                crate::model::validate::describe(&violations)
            ))
        })?;
        Ok(flow)
    }

    /// Every agent with its executors' glue.
    #[cfg_attr(not(feature = "temporal"), allow(dead_code))]
    pub(crate) fn agent_entries(&self) -> impl Iterator<Item = &AgentEntry> + '_ {
        self.agents.values()
    }

    /// Every flow and chain with its executors' glue.
    #[cfg_attr(not(feature = "temporal"), allow(dead_code))]
    pub(crate) fn flow_entries(&self) -> impl Iterator<Item = &FlowEntry> + '_ {
        self.flows.values()
    }

    /// The error of a run that calls `name`, which is not registered here.
    pub(crate) fn not_registered(kind: &str, name: &str) -> crate::error::FlowError {
        crate::error::FlowError::NotRegistered {
            name: name.to_owned(),
            message: format!(
                "no {kind} of that name is linked into this binary or registered on the `Flock` (`Flock::builder().{kind}(..)`)"
            ),
        }
    }
}

/// "There is no `what` `name`", with the closest of the `known` names, or the list.
fn not_found(what: &str, name: &str, known: &[&str]) -> Error {
    let hint = match closest(name, known.iter().copied()) {
        Some(close) => format!("; did you mean `{close}`?"),
        None if known.is_empty() => "; none is linked into this binary".to_owned(),
        None => format!("; known: {}", known.join(", ")),
    };
    Error::NotFound(format!("there is no {what} `{name}` in this binary{hint}"))
}

/// The names closest to `name` (edit distance at most a third of its length, at least 2): for a
/// "did you mean".
fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(2);
    candidates
        .into_iter()
        .map(|candidate| (distance(name, candidate), candidate))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
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

#[cfg(test)]
mod tests {
    #[test]
    fn did_you_mean() {
        let names = ["research_agent", "summarize_agent", "research_flow"];
        assert_eq!(
            super::closest("reserch_agent", names),
            Some("research_agent")
        );
        assert_eq!(
            super::closest("summarise_agent", names),
            Some("summarize_agent")
        );
        assert_eq!(super::closest("deploy", names), None);
    }
}
