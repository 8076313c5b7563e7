//! The model layer: how a declarative agent (an `#[agent]` without a body) is answered.
//!
//! A model is named `"provider/model"`. [`Models`] resolves names to [`Model`] implementations;
//! [`evaluate`] builds the prompt from the agent's description and schemas, asks the model, and
//! parses and validates the answer into the agent's output type, re-asking with the error when the
//! answer does not fit.

mod function;
mod prompt;
mod test_model;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::agent::{Agent, AgentContext};
use crate::error::AgentError;

pub use function::FunctionModel;
pub use prompt::build_messages;
pub use test_model::TestModel;

/// How often a declarative agent re-asks after an answer that does not fit, unless
/// `#[agent(output_retries = N)]` says otherwise.
pub const DEFAULT_OUTPUT_RETRIES: u32 = 2;

/// A language model: answers a chat request.
///
/// Implementations classify failures as [`AgentError`]s and never retry on their own: retries
/// belong to the executor's policy.
pub trait Model: Send + Sync + 'static {
    /// Answers one request.
    fn complete<'a>(
        &'a self,
        request: &'a ModelRequest,
    ) -> BoxFuture<'a, Result<ModelResponse, AgentError>>;
}

/// Resolves model names (`"provider/model"`) for one provider.
pub trait Provider: Send + Sync + 'static {
    /// The provider part of the names it serves (`"openai"`).
    fn name(&self) -> &'static str;
    /// The model called `model` (the part after `provider/`).
    fn model(&self, model: &str) -> Result<Arc<dyn Model>, String>;
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions.
    System,
    /// The input, and repair requests.
    User,
    /// The model's answers.
    Assistant,
    /// A tool's result.
    Tool,
}

/// A tool call the model asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The call's id, echoed in the tool's answer.
    pub id: String,
    /// The tool's name.
    pub name: String,
    /// The arguments, as the JSON text the model wrote.
    pub arguments: String,
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// The text.
    pub content: String,
    /// Tool calls of an assistant message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// The call a tool message answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl Message {
    /// A message with text only.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Message {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }
}

/// The structured output the model must produce.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutputFormat {
    /// A name for the schema (the output type's name).
    pub name: String,
    /// The output JSON Schema.
    pub schema: serde_json::Value,
}

/// A tool offered to the model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolDefinition {
    /// The tool's name.
    pub name: String,
    /// What it does.
    pub description: String,
    /// The JSON Schema of its arguments.
    pub parameters: serde_json::Value,
}

/// One request to a model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelRequest {
    /// The model, without its provider (`"gpt-4o"`).
    pub model: String,
    /// The agent asking.
    pub agent: String,
    /// The conversation so far.
    pub messages: Vec<Message>,
    /// The output the answer must have.
    pub output: OutputFormat,
    /// Tools the model may call.
    pub tools: Vec<ToolDefinition>,
}

/// Token usage of model calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt (input) tokens.
    pub prompt_tokens: u64,
    /// Completion (output) tokens.
    pub completion_tokens: u64,
    /// Model calls.
    pub requests: u64,
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, other: Usage) {
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.requests += other.requests;
    }
}

/// A model's answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelResponse {
    /// The text (JSON for structured output).
    pub content: String,
    /// Tools the model wants called before it answers.
    pub tool_calls: Vec<ToolCall>,
    /// Tokens used.
    pub usage: Usage,
}

impl ModelResponse {
    /// An answer with text only.
    pub fn text(content: impl Into<String>) -> Self {
        ModelResponse {
            content: content.into(),
            ..ModelResponse::default()
        }
    }
}

/// The models a `Flock` knows: a default model name, named model instances and providers.
///
/// Names resolve in this order: a forced model (for offline runs), the agent's `model = ".."`,
/// the default. A name is looked up first among registered instances, then by its provider part
/// among providers. `"test"` is always [`TestModel`].
#[derive(Default)]
pub struct Models {
    default: Option<String>,
    forced: Option<String>,
    instances: BTreeMap<String, Arc<dyn Model>>,
    providers: BTreeMap<&'static str, Arc<dyn Provider>>,
    cache: Mutex<BTreeMap<String, Arc<dyn Model>>>,
}

impl fmt::Debug for Models {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Models")
            .field("default", &self.default)
            .field("forced", &self.forced)
            .field("instances", &self.instances.keys().collect::<Vec<_>>())
            .field("providers", &self.providers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Models {
    /// Sets the default model name.
    pub fn set_default(&mut self, name: impl Into<String>) {
        self.default = Some(name.into());
    }

    /// Makes every agent use `name`, whatever its own `model = ".."` says.
    pub fn force(&mut self, name: impl Into<String>) {
        self.forced = Some(name.into());
    }

    /// Registers a model instance under a name.
    pub fn insert(&mut self, name: impl Into<String>, model: Arc<dyn Model>) {
        self.instances.insert(name.into(), model);
    }

    /// Registers a provider.
    pub fn add_provider(&mut self, provider: Arc<dyn Provider>) {
        self.providers.insert(provider.name(), provider);
    }

    /// The default model name.
    pub fn default_name(&self) -> Option<&str> {
        self.default.as_deref()
    }

    /// The model name an agent uses.
    pub fn name_for(&self, agent_model: Option<&'static str>) -> Option<&str> {
        self.forced
            .as_deref()
            .or(agent_model)
            .or(self.default.as_deref())
    }

    /// Resolves a model name to a model and the model part of the name.
    pub fn resolve(&self, name: &str) -> Result<(Arc<dyn Model>, String), String> {
        if let Some(model) = self.instances.get(name) {
            return Ok((model.clone(), name.to_owned()));
        }
        if name == "test" {
            return Ok((Arc::new(TestModel::new()), "test".to_owned()));
        }
        let (provider, model) = name.split_once('/').ok_or_else(|| {
            format!(
                "model name `{name}` is not of the form \"provider/model\" (known providers: {})",
                self.known()
            )
        })?;
        let provider = self.providers.get(provider).ok_or_else(|| {
            format!(
                "unknown model provider `{provider}` in `{name}` (known providers: {})",
                self.known()
            )
        })?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(found) = cache.get(name) {
            return Ok((found.clone(), model.to_owned()));
        }
        let resolved = provider.model(model)?;
        cache.insert(name.to_owned(), resolved.clone());
        Ok((resolved, model.to_owned()))
    }

    fn known(&self) -> String {
        let mut known: Vec<&str> = vec!["test"];
        known.extend(self.providers.keys().copied());
        known.extend(self.instances.keys().map(String::as_str));
        known.join(", ")
    }
}

/// Answers a declarative agent: prompt from its description and schemas, the model's answer
/// parsed into `A::Output`, re-asking with the error while the answer does not fit.
pub async fn evaluate<A: Agent>(
    ctx: AgentContext,
    input: A::Input,
) -> Result<A::Output, AgentError> {
    let spec = ctx.spec();
    let name = ctx.models().name_for(spec.model).ok_or_else(|| {
        AgentError::permanent(format!(
            "agent `{}` has no body and no model: set `Flock::builder().model(\"provider/model\")` or `#[agent(model = \"..\")]`",
            spec.name
        ))
    })?;
    let (model, model_name) = ctx
        .models()
        .resolve(name)
        .map_err(|e| AgentError::permanent(format!("agent `{}`: {e}", spec.name)))?;
    let agent = A::default();
    let output_schema = to_json(agent.output_schema());
    let input_json = serde_json::to_value(&input).map_err(|e| {
        AgentError::invalid_input(format!(
            "agent `{}`: input not serializable: {e}",
            spec.name
        ))
    })?;
    let mut request = ModelRequest {
        model: model_name,
        agent: spec.name.to_owned(),
        messages: build_messages(
            spec,
            &to_json(agent.input_schema()),
            &output_schema,
            &input_json,
        ),
        output: OutputFormat {
            name: schema_title(&output_schema),
            schema: output_schema,
        },
        tools: spec
            .tools
            .iter()
            .map(|tool| ToolDefinition {
                name: tool.name().to_owned(),
                description: tool.description().to_owned(),
                parameters: tool.parameters_schema(),
            })
            .collect(),
    };
    let output_retries = spec.output_retries.unwrap_or(DEFAULT_OUTPUT_RETRIES);
    let mut repairs = 0;
    let mut tool_rounds = 0;
    loop {
        let response = model.complete(&request).await?;
        ctx.add_usage(Usage {
            requests: 1,
            ..response.usage
        });
        if !response.tool_calls.is_empty() {
            tool_rounds += 1;
            if tool_rounds > MAX_TOOL_ROUNDS {
                return Err(AgentError::invalid_output(format!(
                    "agent `{}`: the model kept calling tools after {MAX_TOOL_ROUNDS} rounds",
                    spec.name
                )));
            }
            run_tools(spec, &mut request.messages, response).await;
            continue;
        }
        match serde_json::from_str::<A::Output>(&response.content) {
            Ok(output) => return Ok(output),
            Err(error) => {
                let problem = format!("the answer does not fit the output schema: {error}");
                if repairs >= output_retries {
                    return Err(AgentError::invalid_output(format!(
                        "agent `{}`: {problem} (after {} repair re-asks)",
                        spec.name, repairs
                    )));
                }
                repairs += 1;
                request
                    .messages
                    .push(Message::new(Role::Assistant, response.content));
                request
                    .messages
                    .push(Message::new(Role::User, prompt::repair_message(&problem)));
            }
        }
    }
}

/// At most this many rounds of tool calls before an answer.
pub const MAX_TOOL_ROUNDS: u32 = 8;

async fn run_tools(
    spec: &crate::agent::AgentSpec,
    messages: &mut Vec<Message>,
    response: ModelResponse,
) {
    let calls = response.tool_calls.clone();
    messages.push(Message {
        role: Role::Assistant,
        content: response.content,
        tool_calls: response.tool_calls,
        tool_call_id: None,
    });
    for call in calls {
        let answer = match spec.tools.iter().find(|t| t.name() == call.name) {
            None => format!("error: there is no tool named `{}`", call.name),
            Some(tool) => match serde_json::from_str(&call.arguments) {
                Err(e) => format!("error: the arguments are not valid JSON: {e}"),
                Ok(arguments) => match tool.call_json(arguments).await {
                    Ok(value) => value.to_string(),
                    Err(e) => format!("error: {e}"),
                },
            },
        };
        messages.push(Message {
            role: Role::Tool,
            content: answer,
            tool_calls: Vec::new(),
            tool_call_id: Some(call.id),
        });
    }
}

fn to_json(schema: schemars::Schema) -> serde_json::Value {
    schema.to_value()
}

fn schema_title(schema: &serde_json::Value) -> String {
    schema
        .get("title")
        .and_then(|t| t.as_str())
        .unwrap_or("output")
        .to_owned()
}
