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
use serde_json::{Value, json};

use crate::agent::json_size_within;
use crate::error::{AgentError, FlowError};
use crate::model::agent_loop::{AgentLoop, Next, ToolStep as Planned};
use crate::model::{ToolCall, build_messages};
use crate::registry::Registry;
use crate::runtime::{AgentCall, FlowRuntime, StepLayer};
use crate::spec::{AgentSpec, Direction, PayloadLimit, check_payload_size};
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

    async fn run(&self, call: AgentCall, next: &dyn FlowRuntime) -> Result<Value, FlowError> {
        let spec = call.spec;
        let Some(agent) = self.registry.agent(spec.name) else {
            return Err(Registry::not_registered("agent", spec.name));
        };
        let model_step = ModelStep::of(agent).spec();
        let output = crate::model::output_format(&agent.output_schema());
        let messages = build_messages(
            spec,
            &agent.input_schema().to_value(),
            &output.schema,
            &call.input,
        );
        let tools = crate::model::tool_definitions(spec);
        let mut turn = AgentLoop::new(spec, String::new(), messages, output, tools);
        // The transcript that holds the first `sent` messages of the conversation, on the
        // worker that answered the last request: the next request sends only the messages after.
        let mut transcript: Option<String> = None;
        let mut sent = 0;
        loop {
            let messages = &turn.request().messages;
            let input = json!(ModelStepInput {
                transcript: transcript.clone(),
                messages: messages[sent..].to_vec(),
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
                    let answers = futures::future::try_join_all(
                        calls
                            .iter()
                            .map(|call| self.tool_call(spec, &turn, call, next)),
                    )
                    .await?;
                    turn.tools_answered::<Value>(answers);
                }
                Next::Done(output) => return Ok(output),
                Next::Fail(error) => return Err(fail(spec, error)),
            }
        }
    }

    /// One tool call the model asked for: a step, or (an unknown tool, arguments that are not
    /// JSON) an answer the model gets at once. Gives `(call id, answer)`.
    async fn tool_call(
        &self,
        spec: &'static AgentSpec,
        turn: &AgentLoop,
        call: &ToolCall,
        next: &dyn FlowRuntime,
    ) -> Result<(String, String), FlowError> {
        let (name, arguments) = match turn.tool_step(call) {
            Planned::Answer(answer) => return Ok((call.id.clone(), answer)),
            Planned::Call { name, arguments } => (name, arguments),
        };
        let Some(&tool) = spec.tools.iter().find(|t| t.name() == name) else {
            return Ok((
                call.id.clone(),
                format!("error: there is no tool named `{name}`"),
            ));
        };
        let step = ToolStep::of(tool).spec();
        // a tool that needs approval waits for a decision first (durably: the decision is an
        // event of the run); denied, it does not run and the model is told why
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
        let bytes = json_size_within(&input, self.payload_limit.bytes());
        if let Err(problem) = check_payload_size(
            "tool",
            tool.name(),
            Direction::Input,
            bytes,
            self.payload_limit,
        ) {
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
