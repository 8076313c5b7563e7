//! The loop of an agent that runs step by step, driven in the flow that calls it: the built-in
//! [`StepLayer`] a `Flock` has when one of its agents runs step by step (see
//! [`step`](crate::step)); the run's `FlowContext` hands it the calls of such agents. It drives the pure
//! [`AgentLoop`](crate::model::agent_loop::AgentLoop): each model request and each tool call
//! goes to the runtime below as a durable step, the tool calls of one round concurrently. It is
//! flow code, deterministic: it decides from the steps' recorded results only.
//!
//! It sits above the layers a user installs: they, and the executor below them, see its steps
//! (`<agent>.model`, `<tool>.tool`), so that limits per model or tool apply to each.

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::agent::DynAgent;
use crate::agent::json_size_within;
use crate::error::{AgentError, FlowError};
use crate::flow::{Flow, FlowContext};
use crate::model::agent_loop::{AgentLoop, Next, ToolStep as Planned};
use crate::model::{ToolCall, ToolDefinition, build_messages};
use crate::registry::Registry;
use crate::runtime::{
    AgentCall, AgentLoopLayer, FlowRuntime, SESSION_FLOW, SESSION_SPEC, StepLayer,
};
use crate::spec::{AgentSpec, Direction, FlowSpec, PayloadLimit, check_payload_size};
use crate::step::{ModelStep, ModelStepInput, ToolStep, ToolStepInput, read_output};

/// The step-by-step loop of the agents that run so.
pub(crate) struct DurableLoop {
    registry: Registry,
    payload_limit: PayloadLimit,
}

impl DurableLoop {
    pub(crate) fn new(registry: Registry, payload_limit: PayloadLimit) -> Self {
        DurableLoop {
            registry,
            payload_limit,
        }
    }

    /// A call of an agent that runs step by step, from a flow: its session from the start.
    async fn run(&self, call: AgentCall, next: &dyn FlowRuntime) -> Result<Value, FlowError> {
        let spec = call.spec;
        let agent = self.agent(spec.name)?;
        let output = crate::model::output_format(&agent.output_schema());
        let messages = build_messages(
            spec,
            &agent.input_schema().to_value(),
            &output.schema,
            &call.input,
        );
        let (tools, mcp) = self.offered_tools(spec, next).await?;
        let turn = AgentLoop::new(spec, String::new(), messages, output, tools);
        self.drive(agent, turn, &mcp, Progress::default(), next)
            .await
    }

    /// A session carried into a run of [`SESSION_FLOW`]: on from where it was handed over.
    async fn resume(&self, session: Value, next: &dyn FlowRuntime) -> Result<Value, FlowError> {
        let session: Session =
            serde_json::from_value(session).map_err(|e| FlowError::Serialization {
                at: format!("the input of flow `{SESSION_FLOW}`"),
                message: e.to_string(),
            })?;
        let agent = self.agent(&session.agent)?;
        let spec = agent.spec();
        let output = crate::model::output_format(&agent.output_schema());
        // the MCP servers' tool lists are fetched again in each history
        let (tools, mcp) = self.offered_tools(spec, next).await?;
        let turn = AgentLoop::resume(
            spec,
            session.messages,
            output,
            tools,
            session.repairs,
            session.tool_rounds,
        );
        self.drive(agent, turn, &mcp, session.progress, next).await
    }

    /// The tools the agent offers its model: its `#[tool]`s, and the tools of its MCP servers,
    /// each server's list a step (`<server>.mcp_tools`, recorded: the same on replay). Gives the
    /// definitions and, by tool name, the call step of each MCP tool's server.
    async fn offered_tools(
        &self,
        spec: &'static AgentSpec,
        next: &dyn FlowRuntime,
    ) -> Result<(Vec<ToolDefinition>, McpTools), FlowError> {
        let mut tools = crate::model::tool_definitions(spec);
        let mut mcp = McpTools::new();
        for &server in spec.mcp {
            let steps = self
                .registry
                .agent(&format!("{server}.mcp_tools"))
                .zip(self.registry.agent(&format!("{server}.mcp")));
            let Some((list, call)) = steps.map(|(list, call)| (list.spec(), call.spec())) else {
                return Err(fail(
                    spec,
                    AgentError::permanent(format!(
                        "agent `{}` offers the tools of MCP server `{server}`, and this build of flock has no MCP client (enable flock's `mcp` feature)",
                        spec.name
                    )),
                ));
            };
            let listed = next
                .call_agent(AgentCall {
                    spec: list,
                    input: json!({}),
                })
                .await?;
            let listed: Vec<ToolDefinition> = serde_json::from_value(listed).map_err(|e| {
                fail(
                    spec,
                    AgentError::permanent(format!(
                        "step `{}` answered something that is not a tool list: {e}",
                        list.name
                    )),
                )
            })?;
            for tool in listed {
                if tools.iter().any(|t| t.name == tool.name) {
                    return Err(fail(
                        spec,
                        AgentError::permanent(format!(
                            "tool `{}` of MCP server `{server}` has the name of another tool agent `{}` offers; the model could not tell them apart",
                            tool.name, spec.name
                        )),
                    ));
                }
                mcp.insert(tool.name.clone(), call);
                tools.push(tool);
            }
        }
        Ok((tools, mcp))
    }

    fn agent(&self, name: &str) -> Result<&'static dyn DynAgent, FlowError> {
        self.registry
            .agent(name)
            .ok_or_else(|| Registry::not_registered("agent", name))
    }

    /// Runs the loop's steps until the agent's output, or until the session moves on in a fresh
    /// history: then `Err(ContinueAsNew)` of [`SESSION_FLOW`] carrying the session (the flow
    /// context starts it as a child run; a run of it continues as new).
    async fn drive(
        &self,
        agent: &'static dyn DynAgent,
        mut turn: AgentLoop,
        mcp: &McpTools,
        mut progress: Progress,
        next: &dyn FlowRuntime,
    ) -> Result<Value, FlowError> {
        let spec = agent.spec();
        let model_step = ModelStep::of(agent).spec();
        // The transcript that holds the first `sent` messages of the conversation, on the
        // worker that answered the last request: the next request sends only the messages after.
        let mut transcript: Option<String> = None;
        let mut sent = 0;
        // the steps taken in this history
        let mut here: u64 = 0;
        loop {
            // a safe point: no step in flight
            if here > 0 && self.moves_on(spec, here, next) {
                progress.steps += here;
                progress.runs += 1;
                return Err(self.hand_over(spec, &turn, progress)?);
            }
            let messages = &turn.request().messages;
            let input = json!(ModelStepInput {
                transcript: transcript.clone(),
                messages: messages[sent..].to_vec(),
                tools: turn.request().tools[spec.tools.len()..].to_vec(),
            });
            let sending = messages.len();
            let bytes = json_size_within(&input, self.payload_limit.bytes());
            check_payload_size(
                "agent",
                spec.name,
                Direction::Input,
                bytes,
                self.payload_limit,
            )
            .map_err(|problem| {
                fail(
                    spec,
                    AgentError::permanent(format!(
                        "the conversation outgrew a model request: {problem}"
                    )),
                )
            })?;
            here += 1;
            let answer = next
                .call_agent(AgentCall {
                    spec: model_step,
                    input,
                })
                .await?;
            let answer = read_output(model_step.name, answer)
                .map_err(|message| fail(spec, AgentError::permanent(message)))?;
            let Some(response) = answer.response else {
                if transcript.is_none() {
                    return Err(fail(
                        spec,
                        AgentError::permanent(format!(
                            "step `{}` answered a whole conversation with nothing",
                            model_step.name
                        )),
                    ));
                }
                // the transcript is not on the worker that took the request: send it whole
                (transcript, sent) = (None, 0);
                continue;
            };
            (transcript, sent) = (answer.transcript, sending);
            match turn.answered::<Value>(response) {
                Next::Request => {}
                Next::CallTools(calls) => {
                    here += calls.len() as u64;
                    let answers = futures::future::try_join_all(
                        calls
                            .iter()
                            .map(|call| self.tool_call(spec, &turn, mcp, call, next)),
                    )
                    .await?;
                    turn.tools_answered::<Value>(answers);
                }
                Next::Done(output) => return Ok(output),
                Next::Fail(error) => return Err(fail(spec, error)),
            }
        }
    }

    /// Whether the session moves on in a fresh history now, after `here` steps in this one: at
    /// the agent's `continue_as_new_after`, or when the executor suggests it (on Temporal: the
    /// history is large). Runs from before this rule replay without it (a patch marker).
    fn moves_on(&self, spec: &AgentSpec, here: u64, next: &dyn FlowRuntime) -> bool {
        let bound = spec
            .continue_as_new_after
            .is_some_and(|after| here >= u64::from(after));
        (bound || next.continue_as_new_suggested()) && next.patched(SESSION_PATCH)
    }

    /// The session as the next run takes it, checked against the payload limit.
    fn hand_over(
        &self,
        spec: &AgentSpec,
        turn: &AgentLoop,
        progress: Progress,
    ) -> Result<FlowError, FlowError> {
        let session = Session {
            agent: spec.name.to_owned(),
            messages: turn.request().messages.clone(),
            repairs: turn.repairs(),
            tool_rounds: turn.tool_rounds(),
            progress,
        };
        let input = serde_json::to_value(&session).unwrap_or_default();
        let bytes = json_size_within(&input, self.payload_limit.bytes());
        check_payload_size(
            "flow",
            SESSION_FLOW,
            Direction::Input,
            bytes,
            self.payload_limit,
        )
        .map_err(|problem| {
            fail(
                spec,
                AgentError::permanent(format!(
                    "the session cannot move on to a fresh history, its conversation is too large: {problem}; offload large payloads with `Codec::with_offload`"
                )),
            )
        })?;
        Ok(FlowError::ContinueAsNew {
            flow: SESSION_FLOW.to_owned(),
            input,
        })
    }

    /// One tool call the model asked for: a step, or (an unknown tool, arguments that are not
    /// JSON) an answer the model gets at once. Gives `(call id, answer)`.
    async fn tool_call(
        &self,
        spec: &'static AgentSpec,
        turn: &AgentLoop,
        mcp: &McpTools,
        call: &ToolCall,
        next: &dyn FlowRuntime,
    ) -> Result<(String, String), FlowError> {
        let (name, arguments) = match turn.tool_step(call) {
            Planned::Answer(answer) => return Ok((call.id.clone(), answer)),
            Planned::Call { name, arguments } => (name, arguments),
        };
        let (step, input) = match spec.tools.iter().find(|t| t.name() == name) {
            Some(&tool) => {
                // a tool that needs approval waits for a decision first (durably: the decision
                // is an event of the run); denied, it does not run and the model is told why
                let approval = if tool.needs_approval() {
                    let decision = next
                        .approval(spec.name, tool.name(), arguments.clone())
                        .await?;
                    if !decision.approved {
                        return Ok((call.id.clone(), decision.denial()));
                    }
                    Some(decision)
                } else {
                    None
                };
                let input = json!(ToolStepInput {
                    call_id: call.id.clone(),
                    arguments,
                    approval,
                });
                (ToolStep::of(tool).spec(), input)
            }
            None => match mcp.get(&name) {
                Some(&step) => {
                    let input = json!({ "call_id": call.id, "tool": name, "arguments": arguments });
                    (step, input)
                }
                None => {
                    let answer = format!("error: there is no tool named `{name}`");
                    return Ok((call.id.clone(), answer));
                }
            },
        };
        let bytes = json_size_within(&input, self.payload_limit.bytes());
        if let Err(problem) =
            check_payload_size("tool", &name, Direction::Input, bytes, self.payload_limit)
        {
            return Ok((call.id.clone(), format!("error: {problem}")));
        }
        let answer = next.call_agent(AgentCall { spec: step, input }).await?;
        let answer = match answer {
            Value::String(text) => text,
            other => other.to_string(),
        };
        Ok((call.id.clone(), answer))
    }
}

/// The agent's call failed for good, decided in the loop (one attempt of the loop: its steps
/// have attempts of their own).
fn fail(spec: &AgentSpec, cause: AgentError) -> FlowError {
    FlowError::Agent {
        agent: spec.name.to_owned(),
        attempts: 1,
        cause,
    }
}

/// The tools of an agent's MCP servers, by name: the call step of each one's server.
type McpTools = std::collections::BTreeMap<String, &'static AgentSpec>;

/// The patch marker of the rule that moves long sessions on (runs from before it replay
/// without it).
const SESSION_PATCH: &str = "flock.session";

/// A session handed over to a fresh history: the conversation, the loop's counters, and how far
/// the session has come.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Session {
    agent: String,
    messages: Vec<crate::model::Message>,
    repairs: u32,
    tool_rounds: u32,
    #[serde(flatten)]
    progress: Progress,
}

/// How far a session has come.
#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize)]
struct Progress {
    /// Steps (model requests and tool calls) in the histories before.
    steps: u64,
    /// Histories the session has moved on from.
    runs: u32,
}

impl AgentLoopLayer for DurableLoop {
    fn resume_session<'a>(
        &'a self,
        session: Value,
        next: &'a dyn FlowRuntime,
    ) -> BoxFuture<'a, Result<Value, FlowError>> {
        Box::pin(self.resume(session, next))
    }
}

/// The built-in flow [`SESSION_FLOW`]: the rest of a long session, continued as new at safe
/// points between steps.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SessionFlow;

impl Flow for SessionFlow {
    type Input = Value;
    type Output = Value;
    const NAME: &'static str = SESSION_FLOW;

    fn spec(&self) -> &'static FlowSpec {
        &SESSION_SPEC
    }

    async fn run(self, ctx: &FlowContext, session: Value) -> Result<Value, FlowError> {
        ctx.resume_session(session).await
    }
}

static SESSION_FLOW_IMPL: SessionFlow = SessionFlow;

/// The registration of [`SESSION_FLOW`]: every registry with an agent that runs step by step
/// has it.
pub(crate) static REGISTRATION: crate::registry::FlowRegistration =
    crate::__private::flow_registration(&SESSION_FLOW_IMPL);

impl StepLayer for DurableLoop {
    fn call_agent<'a>(
        &'a self,
        call: AgentCall,
        next: &'a dyn FlowRuntime,
    ) -> BoxFuture<'a, Result<Value, FlowError>> {
        if call.spec.runs_step_by_step() {
            Box::pin(self.run(call, next))
        } else {
            next.call_agent(call)
        }
    }
}
