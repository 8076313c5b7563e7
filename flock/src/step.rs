//! The durable steps of an agent that runs step by step
//! ([`AgentSpec::runs_step_by_step`]: a declarative agent with tools). Its loop runs in the flow
//! that calls it (written once, above both executors, as the innermost built-in layer around a
//! run's agent calls); what the loop does with the world is a step of its own, run and recorded
//! like an agent call:
//!
//! * **`<agent>.model`**: one model request. Input `{"transcript": .., "messages": [..]}`: the
//!   messages added since the last request, after the transcript of the conversation before
//!   them; output `{"response": .., "transcript": ..}`, the [`ModelResponse`] (text, tool calls,
//!   usage, the model that answered) and the transcript that now holds the conversation.
//!   The worker resolves the model (its configuration answers, not the client's), so a retry
//!   may reach another model only if the worker's configuration changed. It has the agent's
//!   settings: `timeout`, `heartbeat`, `retry`, `task_queue`, `local`.
//! * **`<tool>.tool`**: one tool call. Input `{"call_id": "..", "arguments": {..}}`; output the
//!   answer the model gets (a tool's `Err` is an answer too, `"error: …"`, so the model can
//!   correct itself). The executor's default settings (a normal, durable activity on the flow's
//!   task queue, the default timeout and retry policy): a tool is code with side effects, so it
//!   is never a local step that a crash could run again.
//!
//! On Temporal each step is an activity of that name; on the local executor a step of the run
//! record. A step that finished is never run again: a worker killed during tool call 3 re-runs
//! only tool call 3.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::Mutex;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::Value;

use crate::agent::{AgentContext, DynAgent, json_size, json_size_within, panic_message};
use crate::error::AgentError;
use crate::model::{Message, ModelRequest, ModelResponse};
use crate::spec::{
    AgentKind, AgentSpec, Direction, PayloadLimit, check_local_record_size, check_payload_size,
};
use crate::tool::DynTool;

/// The suffix of a model-request step's name: agent `research`'s are `research.model`.
pub const MODEL_STEP: &str = ".model";
/// The suffix of a tool-call step's name: tool `search`'s are `search.tool`.
pub const TOOL_STEP: &str = ".tool";

/// The input of a model-request step.
#[derive(Debug, Deserialize, serde::Serialize)]
pub(crate) struct ModelStepInput {
    /// The transcript that holds the conversation before `messages` (`None`: `messages` is the
    /// whole conversation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) transcript: Option<String>,
    /// The messages after it.
    pub(crate) messages: Vec<Message>,
    /// The tools of the agent's MCP servers, as the run listed them (its `#[tool]`s are known
    /// from its spec).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) tools: Vec<crate::model::ToolDefinition>,
}

/// The output of a model-request step.
#[derive(Debug, Deserialize, serde::Serialize)]
pub(crate) struct ModelStepOutput {
    /// The model's answer; `None` when the input's transcript is not on this worker (nothing was
    /// asked: the loop sends the whole conversation again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) response: Option<ModelResponse>,
    /// The transcript that now holds the conversation this step sent (the next request names
    /// it and sends only what came after).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) transcript: Option<String>,
}

/// The input of a tool-call step.
#[derive(Debug, Deserialize, serde::Serialize)]
pub(crate) struct ToolStepInput {
    /// The id of the call the model asked for.
    pub(crate) call_id: String,
    /// The arguments, checked to be JSON.
    pub(crate) arguments: Value,
    /// The decision that approved the call, for a tool that needs one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) approval: Option<crate::approval::Decision>,
}

/// The model requests of one agent.
pub(crate) struct ModelStep {
    agent: &'static dyn DynAgent,
    spec: &'static AgentSpec,
}

/// The calls of one tool.
pub(crate) struct ToolStep {
    tool: &'static dyn DynTool,
    spec: &'static AgentSpec,
}

/// Steps are made once per process and name: their specs must be `'static` (what executors run
/// by), and a process builds its registry again for every `Flock`.
static MODEL_STEPS: Mutex<BTreeMap<&'static str, &'static ModelStep>> = Mutex::new(BTreeMap::new());
static TOOL_STEPS: Mutex<BTreeMap<&'static str, &'static ToolStep>> = Mutex::new(BTreeMap::new());

fn leak(text: String) -> &'static str {
    Box::leak(text.into_boxed_str())
}

impl ModelStep {
    /// The model-request step of `agent` (made on first use).
    pub(crate) fn of(agent: &'static dyn DynAgent) -> &'static ModelStep {
        let parent = agent.spec();
        let mut steps = MODEL_STEPS.lock().unwrap_or_else(|p| p.into_inner());
        steps.entry(parent.name).or_insert_with(|| {
            let spec = Box::leak(Box::new(AgentSpec {
                name: leak(format!("{}{MODEL_STEP}", parent.name)),
                description: leak(format!("A model request of agent `{}`.", parent.name)),
                // a model answers it (its usage is counted), and it offers no tools itself
                kind: AgentKind::Declarative,
                hand_off: None,
                output_retries: None,
                max_tool_rounds: None,
                continue_as_new_after: None,
                tools: &[],
                mcp: &[],
                ..*parent
            }));
            Box::leak(Box::new(ModelStep { agent, spec }))
        })
    }

    /// The step's settings (the agent's, under the step's name).
    pub(crate) fn spec(&self) -> &'static AgentSpec {
        self.spec
    }
}

impl ToolStep {
    /// The tool-call step of `tool` (made on first use). Two different tools of one name share
    /// it: [`same_tool`](Self::same_tool) tells them apart, for the registry's error.
    pub(crate) fn of(tool: &'static dyn DynTool) -> &'static ToolStep {
        let mut steps = TOOL_STEPS.lock().unwrap_or_else(|p| p.into_inner());
        steps.entry(tool.name()).or_insert_with(|| {
            let spec = tool.step_spec().unwrap_or_else(|| {
                let mut spec =
                    AgentSpec::new(leak(format!("{}{TOOL_STEP}", tool.name())), AgentKind::Code);
                spec.description = tool.description();
                Box::leak(Box::new(spec))
            });
            Box::leak(Box::new(ToolStep { tool, spec }))
        })
    }

    /// The step's settings.
    pub(crate) fn spec(&self) -> &'static AgentSpec {
        self.spec
    }

    /// Whether `tool` is the tool this step calls (the same name, description and schema).
    pub(crate) fn same_tool(&self, tool: &dyn DynTool) -> bool {
        self.tool.name() == tool.name()
            && self.tool.description() == tool.description()
            && self.tool.parameters_schema() == tool.parameters_schema()
    }
}

impl DynAgent for ModelStep {
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
        let (agent, name, spec) = (self.agent, self.spec.name, self.spec);
        let local_input = local_input_bytes(spec, &ctx, input);
        let input = ModelStepInput::deserialize(input).map_err(|e| {
            AgentError::invalid_input(format!(
                "step `{name}`: the input is not a conversation: {e}"
            ))
        });
        Box::pin(async move {
            let input = input?;
            let mut tools = crate::model::tool_definitions(agent.spec());
            tools.extend(input.tools);
            let messages = match &input.transcript {
                None => input.messages,
                Some(name) => {
                    let store = ctx.models().transcript_store();
                    let Some(before) = crate::model::transcript::load(store, name).await else {
                        return Ok(serde_json::to_value(ModelStepOutput {
                            response: None,
                            transcript: None,
                        })
                        .unwrap_or_default());
                    };
                    let mut messages = Vec::with_capacity(before.len() + input.messages.len());
                    messages.extend(before.iter().cloned());
                    messages.extend(input.messages);
                    messages
                }
            };
            let parent = agent.spec();
            let models = ctx.models();
            let (model_name, model, model_part) = crate::model::resolve(parent, models)?;
            let request = ModelRequest {
                model: model_part,
                agent: parent.name.to_owned(),
                messages,
                output: crate::model::output_format(&agent.output_schema()),
                tools,
            };
            let answer = crate::agent::heartbeating(
                &ctx,
                crate::model::request(parent.name, model_name, models, model.as_ref(), &request),
                "its model request",
            )
            .await?;
            ctx.add_usage(answer.usage_with_cost);
            let transcript = ctx.idempotency_key().to_owned();
            crate::model::transcript::keep(
                ctx.models().transcript_store(),
                transcript.clone(),
                request.messages,
            )
            .await;
            let output = serde_json::to_value(ModelStepOutput {
                response: Some(answer.response),
                transcript: Some(transcript),
            })
            .map_err(|e| {
                AgentError::permanent(format!("step `{name}`: the answer is not JSON: {e}"))
            })?;
            check_output("agent", name, local_input, &output, ctx.payload_limit)?;
            Ok(output)
        })
    }
}

impl DynAgent for ToolStep {
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
        let (tool, name) = (self.tool, self.spec.name);
        let local_input = local_input_bytes(self.spec, &ctx, input);
        let input = ToolStepInput::deserialize(input).map_err(|e| {
            AgentError::invalid_input(format!("step `{name}`: the input is not a tool call: {e}"))
        });
        Box::pin(async move {
            let input = input?;
            let span = crate::observe::tool_span(tool.name(), &input.call_id);
            let tool_ctx = crate::spec::ToolContext::new(
                ctx.run_id.clone(),
                input.call_id.clone(),
                ctx.attempt(),
                ctx.idempotency_key().to_owned(),
            )
            .approved(input.approval);
            let call = async move { tool.call_with(tool_ctx, input.arguments).await };
            let answer = match AssertUnwindSafe(tracing::Instrument::instrument(call, span.clone()))
                .catch_unwind()
                .await
            {
                Ok(Ok(Value::String(text))) => text,
                Ok(Ok(value)) => value.to_string(),
                Ok(Err(e)) => {
                    span.record("error.type", "ToolError");
                    format!("error: {e}")
                }
                Err(panic) => {
                    return Err(AgentError::permanent(format!(
                        "tool `{}` panicked: {}",
                        tool.name(),
                        panic_message(&*panic)
                    )));
                }
            };
            let answer = Value::String(answer);
            check_output("tool", tool.name(), local_input, &answer, ctx.payload_limit)?;
            Ok(answer)
        })
    }
}

/// The size of a step's input when the step runs as a local activity and its input and output
/// share one history record (see [`PayloadLimit::counts_local_records`]).
fn local_input_bytes(spec: &AgentSpec, ctx: &AgentContext, input: &Value) -> Option<usize> {
    (ctx.payload_limit.counts_local_records() && spec.runs_locally()).then(|| json_size(input))
}

/// Checks a step's output against the payload limit, and with `local_input` (the step runs
/// as a local activity) its input and output together: over either, the run would otherwise
/// fail only in the server (or stay Running); it fails here, permanent, naming `kind` `name`.
fn check_output(
    kind: &str,
    name: &str,
    local_input: Option<usize>,
    output: &Value,
    limit: PayloadLimit,
) -> Result<(), AgentError> {
    let budget = limit.bytes().saturating_sub(local_input.unwrap_or(0));
    let output_bytes = json_size_within(output, budget);
    check_payload_size(kind, name, Direction::Output, output_bytes, limit)
        .map_err(AgentError::permanent)?;
    if let Some(input_bytes) = local_input {
        check_local_record_size(kind, name, input_bytes, output_bytes, limit)
            .map_err(AgentError::permanent)?;
    }
    Ok(())
}

/// A model step's output read back.
pub(crate) fn read_output(step: &str, output: Value) -> Result<ModelStepOutput, String> {
    ModelStepOutput::deserialize(output)
        .map_err(|e| format!("step `{step}`: the answer is not a model response: {e}"))
}
