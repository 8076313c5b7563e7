//! The model layer: how a declarative agent (an `#[agent]` without a body) is answered.
//!
//! A model is named `"provider/model"`. [`Models`] resolves names to [`Model`] implementations;
//! [`evaluate`] builds the prompt from the agent's description and schemas, asks the model, and
//! parses and validates the answer into the agent's output type, re-asking with the error when the
//! answer does not fit.
//!
//! * [`openai`]: providers speaking OpenAI's chat-completions protocol (OpenAI, Azure OpenAI,
//!   Ollama, any compatible server), registered by default as `openai/…`, `azure/…`, `ollama/…`;
//! * [`anthropic`]: Anthropic's Messages API, natively, registered by default as `anthropic/…`;
//! * [`schema`]: the object root and strict-mode form of output schemas;
//! * [`validate`]: the validator answers pass before they are deserialized;
//! * [`TestModel`] and [`FunctionModel`]: models that need no network.

pub mod agent_loop;
pub mod anthropic;
mod function;
#[cfg(test)]
mod fuzz;
mod http;
#[cfg(feature = "mcp")]
pub(crate) mod mcp;
pub mod openai;
mod prompt;
pub mod schema;
mod test_model;
pub mod transcript;
pub mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::Instrument;

use crate::error::AgentError;
use crate::spec::AgentSpec;
pub use crate::usage::Usage;

use agent_loop::{AgentLoop, Next, ToolStep};
pub use anthropic::{Anthropic, AnthropicConfig, AnthropicOutput};
pub use function::FunctionModel;
pub use openai::{ApiKey, AzureConfig, OpenAi, OpenAiConfig, StructuredOutput};
pub use prompt::build_messages;
pub use test_model::{TestAnswer, TestModel};

/// How often a declarative agent re-asks after an answer that does not fit, unless
/// `#[agent(output_retries = N)]` says otherwise.
pub const DEFAULT_OUTPUT_RETRIES: u32 = 2;

/// A language model: answers a chat request.
///
/// Implementations classify failures as [`AgentError`]s and never retry on their own: retries
/// belong to the executor's policy. `Debug` shows where a model sends requests (never its keys).
pub trait Model: fmt::Debug + Send + Sync + 'static {
    /// Answers one request.
    fn complete<'a>(
        &'a self,
        request: &'a ModelRequest,
    ) -> BoxFuture<'a, Result<ModelResponse, AgentError>>;

    /// Why no request can succeed, known before any is sent (no API key, a malformed base URL):
    /// a `Flock` that runs agents refuses to build with such a model for one of its agents,
    /// instead of failing their first call. `None` (the default): nothing known.
    fn unusable(&self) -> Option<&str> {
        None
    }
}

/// Resolves model names (`"provider/model"`) for one provider.
pub trait Provider: Send + Sync + 'static {
    /// The provider part of the names it serves (`"openai"`).
    fn name(&self) -> &str;
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
    /// The output JSON Schema, with an object at its root (see [`schema::object_root`]): answers
    /// are validated against it.
    pub schema: Value,
    /// Whether the output type's own schema is wrapped as the property
    /// [`"value"`](schema::WRAPPER_PROPERTY) of `schema`, because it does not describe an object.
    pub wrapped: bool,
}

impl OutputFormat {
    /// The format for a schema (wrapped when its root is not an object); `name` defaults to the
    /// schema's `title`.
    pub fn new(name: impl Into<String>, schema: Value) -> Self {
        let (schema, wrapped) = schema::object_root(schema);
        OutputFormat {
            name: name.into(),
            schema,
            wrapped,
        }
    }

    /// The format for the output type `T`.
    ///
    /// ```
    /// use flock::model::OutputFormat;
    ///
    /// let format = OutputFormat::of::<Vec<String>>();
    /// assert!(format.wrapped);
    /// assert_eq!(format.name, "Array_of_string");
    /// let strings: Vec<String> = format.parse_answer(r#"{"value": ["a", "b"]}"#).unwrap();
    /// assert_eq!(strings, ["a", "b"]);
    /// ```
    pub fn of<T: schemars::JsonSchema>() -> Self {
        let schema = schemars::schema_for!(T).to_value();
        let name = schema_title(&schema);
        OutputFormat::new(name, schema)
    }

    /// Reads an answer: the JSON in `content` (a surrounding Markdown code fence or prose is
    /// tolerated), `null`s for absent optional properties dropped, validated against
    /// [`schema`](Self::schema), unwrapped, deserialized. The error says what is wrong, in words
    /// meant for the model's repair re-ask.
    ///
    /// ```
    /// use flock::model::OutputFormat;
    /// use serde_json::json;
    ///
    /// let format = OutputFormat::new("Score", json!({
    ///     "type": "object",
    ///     "properties": { "score": { "type": "integer", "minimum": 0 } },
    ///     "required": ["score"]
    /// }));
    /// let ok: serde_json::Value = format.parse_answer("```json\n{\"score\": 3}\n```").unwrap();
    /// assert_eq!(ok, json!({ "score": 3 }));
    /// let error = format.parse_answer::<serde_json::Value>(r#"{"score": -1}"#).unwrap_err();
    /// assert_eq!(error, "the answer does not fit the output schema: at `/score`: expected at least 0, found -1");
    /// ```
    pub fn parse_answer<T: DeserializeOwned>(&self, content: &str) -> Result<T, String> {
        let json = extract_json(content);
        let mut value: Value =
            serde_json::from_str(json).map_err(|e| format!("the answer is not valid JSON: {e}"))?;
        schema::drop_optional_nulls(&self.schema, &mut value);
        validate::validate(&self.schema, &value).map_err(|violations| {
            format!(
                "the answer does not fit the output schema: {}",
                validate::describe(&violations)
            )
        })?;
        if self.wrapped {
            value = match value {
                Value::Object(mut map) => map.remove(schema::WRAPPER_PROPERTY).unwrap_or_default(),
                other => other,
            };
        }
        serde_json::from_value(value).map_err(|e| {
            format!(
                "the answer does not fit the output type `{}`: {e}",
                self.name
            )
        })
    }
}

/// The JSON in a model's answer: the whole text, or the inside of a Markdown code fence, or the
/// span from the first `{` to the last `}` when prose surrounds it.
fn extract_json(content: &str) -> &str {
    let text = content.trim();
    if let Some(fenced) = text.strip_prefix("```") {
        let body = fenced.split_once('\n').map_or("", |(_, rest)| rest);
        return body.trim_end().trim_end_matches("```").trim();
    }
    if text.starts_with(['{', '[', '"']) {
        return text;
    }
    match (text.find('{'), text.rfind('}')) {
        (Some(start), Some(end)) if start < end => &text[start..=end],
        _ => text,
    }
}

/// A tool offered to the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

/// A model's answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelResponse {
    /// The text (JSON for structured output).
    pub content: String,
    /// Tools the model wants called before it answers.
    pub tool_calls: Vec<ToolCall>,
    /// Tokens used.
    pub usage: Usage,
    /// The model that answered, as the provider names it (`gen_ai.response.model`), when it says.
    #[serde(default)]
    pub model: Option<String>,
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
/// among providers. `"test"` is always [`TestModel`]. The providers `openai`, `azure`,
/// `ollama` and `anthropic` are registered from the start, reading their settings from the
/// environment when one of their models is first resolved (see [`openai`], [`anthropic`]);
/// [`add_provider`](Self::add_provider) replaces them.
///
/// ```
/// use flock::model::Models;
///
/// let models = Models::default();
/// assert!(models.resolve("openai/gpt-4o-mini").is_ok()); // no key needed until it is called
/// let error = models.resolve("mistral/large").err().unwrap();
/// assert_eq!(
///     error,
///     "unknown model provider `mistral` in `mistral/large` (known providers: test, anthropic, azure, ollama, openai)"
/// );
/// ```
pub struct Models {
    default: Option<String>,
    forced: Option<String>,
    instances: BTreeMap<String, Arc<dyn Model>>,
    providers: BTreeMap<String, Arc<dyn Provider>>,
    cache: Mutex<BTreeMap<String, Arc<dyn Model>>>,
    prices: crate::usage::PriceTable,
    record_contents: bool,
    transcripts: Option<transcript::TranscriptStore>,
    limits: crate::limit::ModelLimits,
    #[cfg(feature = "mcp")]
    mcp: mcp::McpClients,
}

impl Default for Models {
    fn default() -> Self {
        let mut models = Models {
            default: None,
            forced: None,
            instances: BTreeMap::new(),
            providers: BTreeMap::new(),
            cache: Mutex::new(BTreeMap::new()),
            prices: crate::usage::PriceTable::default(),
            record_contents: false,
            transcripts: None,
            limits: Default::default(),
            #[cfg(feature = "mcp")]
            mcp: Default::default(),
        };
        models.add_provider(Arc::new(OpenAi::new(OpenAiConfig::default())));
        models.add_provider(Arc::new(OpenAi::azure(AzureConfig::default())));
        models.add_provider(Arc::new(OpenAi::ollama(OpenAiConfig::default())));
        models.add_provider(Arc::new(Anthropic::new(AnthropicConfig::default())));
        models
    }
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

    /// Registers a provider, replacing one of the same name (and forgetting the models resolved
    /// through it).
    pub fn add_provider(&mut self, provider: Arc<dyn Provider>) {
        let name = provider.name().to_owned();
        let prefix = format!("{name}/");
        self.cache
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|model, _| !model.starts_with(&prefix));
        self.providers.insert(name, provider);
    }

    /// Sets the prices that turn token usage into cost (in the run record and the metrics).
    pub fn set_prices(&mut self, prices: crate::usage::PriceTable) {
        self.prices = prices;
    }

    /// Whether model request spans carry prompts and answers (`gen_ai.input.messages`,
    /// `gen_ai.output.messages`). Off by default: prompts hold user data.
    pub fn set_record_contents(&mut self, on: bool) {
        self.record_contents = on;
    }

    /// Limits the requests to model `name` (`"openai/gpt-4o-mini"`, a registered instance's
    /// name) or to every model of provider `name` (`"openai"`), in this process; see
    /// [`limit`](crate::limit). Fails when the limit cannot be enforced.
    pub fn set_limit(
        &mut self,
        name: impl Into<String>,
        limit: crate::limit::Limit,
    ) -> Result<(), String> {
        self.limits.set(name.into(), limit)
    }

    /// Keeps the transcripts of model requests in `store` too (see [`transcript`]), encrypted
    /// with `codec`'s keys when it has some.
    pub(crate) fn set_transcript_store(
        &mut self,
        store: std::sync::Arc<dyn crate::codec::BlobStore>,
        codec: Option<crate::codec::Codec>,
    ) {
        self.transcripts = Some(transcript::TranscriptStore { store, codec });
    }

    /// The MCP servers and this process's connections to them.
    #[cfg(feature = "mcp")]
    pub(crate) fn mcp(&self) -> &mcp::McpClients {
        &self.mcp
    }

    /// The MCP servers, to add to.
    #[cfg(feature = "mcp")]
    pub(crate) fn mcp_mut(&mut self) -> &mut mcp::McpClients {
        &mut self.mcp
    }

    /// An MCP server `spec` names that these models' configuration lacks.
    pub(crate) fn missing_mcp_server(&self, spec: &AgentSpec) -> Option<&'static str> {
        #[cfg(feature = "mcp")]
        return spec.mcp.iter().copied().find(|name| !self.mcp.has(name));
        #[cfg(not(feature = "mcp"))]
        return spec.mcp.first().copied();
    }

    /// Where transcripts are kept besides memory.
    pub(crate) fn transcript_store(&self) -> Option<&transcript::TranscriptStore> {
        self.transcripts.as_ref()
    }

    /// The price table.
    pub fn prices(&self) -> &crate::usage::PriceTable {
        &self.prices
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
        known.extend(self.providers.keys().map(String::as_str));
        known.extend(self.instances.keys().map(String::as_str));
        known.join(", ")
    }
}

/// Answers a declarative agent: prompt from its description and schemas, the model's answer
/// parsed into its output type `T`, re-asking with the error while the answer does not fit.
///
/// One call of this function is one attempt of the agent: it drives an [`AgentLoop`] (the
/// decisions, without I/O) — model requests, the tool calls the model asks for (at most
/// [`MAX_TOOL_ROUNDS`] rounds, each round's calls concurrently), repair re-asks — and adds every
/// model call's token usage to the attempt. After `output_retries` re-asks (default
/// [`DEFAULT_OUTPUT_RETRIES`]) an answer that still does not fit is [`AgentError::InvalidOutput`].
pub async fn evaluate<T: DeserializeOwned>(
    spec: &'static AgentSpec,
    models: &Models,
    input_schema: &schemars::Schema,
    output_schema: &schemars::Schema,
    input: &Value,
    add_usage: &(dyn Fn(Usage) + Sync),
) -> Result<T, AgentError> {
    let (name, model, model_name) = resolve(spec, models)?;
    let output = output_format(output_schema);
    let messages = build_messages(
        spec,
        &input_schema.clone().to_value(),
        &output.schema,
        input,
    );
    let tools = tool_definitions(spec);
    let mut turn = AgentLoop::new(spec, model_name, messages, output, tools);
    loop {
        let response = request(spec.name, name, models, model.as_ref(), turn.request()).await?;
        add_usage(response.usage_with_cost);
        match turn.answered::<T>(response.response) {
            Next::Request => {}
            Next::CallTools(calls) => {
                let answers =
                    futures::future::join_all(calls.iter().map(|call| run_tool(spec, &turn, call)))
                        .await;
                turn.tools_answered::<T>(answers);
            }
            Next::Done(output) => return Ok(output),
            Next::Fail(error) => return Err(error),
        }
    }
}

/// The model agent `spec` is answered by: its configured name, the model, and the model part of
/// the name. No model configured, or a name that does not resolve, is
/// [`AgentError::Permanent`] naming the agent.
pub(crate) fn resolve<'m>(
    spec: &AgentSpec,
    models: &'m Models,
) -> Result<(&'m str, Arc<dyn Model>, String), AgentError> {
    let name = models.name_for(spec.model).ok_or_else(|| {
        AgentError::permanent(format!(
            "agent `{}` has no body and no model: set `Flock::builder().model(\"provider/model\")` or `#[agent(model = \"..\")]`",
            spec.name
        ))
    })?;
    let (model, model_name) = models
        .resolve(name)
        .map_err(|e| AgentError::permanent(format!("agent `{}`: {e}", spec.name)))?;
    Ok((name, model, model_name))
}

/// The output format of an agent whose output schema is `schema`.
pub(crate) fn output_format(schema: &schemars::Schema) -> OutputFormat {
    let schema = schema.clone().to_value();
    let name = schema_title(&schema);
    OutputFormat::new(name, schema)
}

/// The tools agent `spec` offers the model.
pub(crate) fn tool_definitions(spec: &AgentSpec) -> Vec<ToolDefinition> {
    spec.tools
        .iter()
        .map(|tool| ToolDefinition {
            name: tool.name().to_owned(),
            description: tool.description().to_owned(),
            parameters: tool.parameters_schema(),
        })
        .collect()
}

/// A model's answer with the usage it cost (the price table applied).
pub(crate) struct Answer {
    pub(crate) response: ModelResponse,
    pub(crate) usage_with_cost: Usage,
}

/// One model request of agent `agent` to model `name`, in its span, with its metrics.
pub(crate) async fn request(
    agent: &str,
    name: &str,
    models: &Models,
    model: &dyn Model,
    request: &ModelRequest,
) -> Result<Answer, AgentError> {
    // Waiting for the model's limits is not part of the request (its span, its duration).
    let _permits = models.limits.admit(name).await;
    // The provider's error names the provider; the executor's error names the agent.
    let span = crate::observe::model_span(agent, name, &request.model);
    if models.record_contents {
        let messages = serde_json::to_string(&request.messages).unwrap_or_default();
        span.record("gen_ai.input.messages", messages.as_str());
    }
    let started = std::time::Instant::now();
    let response = model.complete(request).instrument(span.clone()).await;
    let answered = response.as_ref().map(|response| crate::observe::Answered {
        usage: response.usage,
        model: response.model.as_deref(),
        content: &response.content,
    });
    let usage_with_cost = crate::observe::model_finished(
        &span,
        agent,
        name,
        models.prices(),
        models.record_contents,
        answered,
        started.elapsed(),
    );
    Ok(Answer {
        response: response?,
        usage_with_cost,
    })
}

/// At most this many rounds of tool calls before an answer.
pub const MAX_TOOL_ROUNDS: u32 = 8;

/// Runs one tool call in its span and gives `(call id, answer)`. A failing tool, an unknown tool
/// or arguments that are not JSON become the call's answer (`"error: …"`), so the model can
/// correct itself.
async fn run_tool(spec: &AgentSpec, turn: &AgentLoop, call: &ToolCall) -> (String, String) {
    let answer = match turn.tool_step(call) {
        ToolStep::Answer(answer) => answer,
        ToolStep::Call { name, arguments } => match spec.tools.iter().find(|t| t.name() == name) {
            None => format!("error: there is no tool named `{name}`"),
            // outside a run nobody can approve the call: it does not run
            Some(tool) if tool.needs_approval() => format!(
                "error: tool `{name}` needs an approval, and only a run (a flow or `Flock::run`) can wait for one"
            ),
            Some(tool) => {
                let span = crate::observe::tool_span(&call.name, &call.id);
                let ctx = crate::spec::ToolContext::new(
                    std::sync::Arc::from("detached"),
                    call.id.clone(),
                    1,
                    format!("{}/{}", spec.name, call.id),
                );
                match tool
                    .call_with(ctx, arguments)
                    .instrument(span.clone())
                    .await
                {
                    Ok(Value::String(text)) => text,
                    Ok(value) => value.to_string(),
                    Err(e) => {
                        span.record("error.type", "ToolError");
                        format!("error: {e}")
                    }
                }
            }
        },
    };
    (call.id.clone(), answer)
}

fn schema_title(schema: &Value) -> String {
    schema
        .get("title")
        .and_then(|t| t.as_str())
        .unwrap_or("output")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_found_in_fences_and_prose() {
        assert_eq!(extract_json(" {\"a\": 1} "), "{\"a\": 1}");
        assert_eq!(extract_json("```json\n{\"a\": 1}\n```"), "{\"a\": 1}");
        assert_eq!(extract_json("```\n[1]\n```\n"), "[1]");
        assert_eq!(
            extract_json("Sure! {\"a\": 1} Hope it helps."),
            "{\"a\": 1}"
        );
        assert_eq!(extract_json("no json"), "no json");
    }

    #[test]
    fn answers_are_validated_then_deserialized() {
        #[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
        #[allow(dead_code)]
        struct Out {
            n: u8,
            #[serde(default)]
            note: String,
        }
        let format = OutputFormat::of::<Out>();
        assert!(!format.wrapped);
        let ok: Out = format.parse_answer(r#"{"n": 3, "note": null}"#).unwrap();
        assert_eq!(ok.n, 3);
        let error = format.parse_answer::<Out>(r#"{"n": "3"}"#).unwrap_err();
        assert!(
            error.contains("at `/n`: expected integer, found string"),
            "{error}"
        );
        // In the schema's range (minimum 0, maximum 255) but the type decides too.
        let error = format.parse_answer::<Out>(r#"{"n": 300}"#).unwrap_err();
        assert!(error.contains("300"), "{error}");
        let error = format.parse_answer::<Out>("{\"n\": ").unwrap_err();
        assert!(error.starts_with("the answer is not valid JSON"), "{error}");
    }

    #[tokio::test]
    async fn models_know_the_builtin_providers_and_replace_them() {
        let mut models = Models::default();
        let (_, model) = models.resolve("ollama/llama3.1").unwrap();
        assert_eq!(model, "llama3.1");
        models.add_provider(Arc::new(OpenAi::compatible(
            "ollama",
            OpenAiConfig {
                base_url: Some("http://127.0.0.1:1/v1".into()),
                ..OpenAiConfig::default()
            },
        )));
        let (resolved, _) = models.resolve("ollama/llama3.1").unwrap();
        let request = ModelRequest {
            model: "llama3.1".into(),
            agent: "a".into(),
            messages: vec![Message::new(Role::User, "hi")],
            output: OutputFormat::of::<Vec<String>>(),
            tools: vec![],
        };
        let error = resolved.complete(&request).await.unwrap_err();
        assert_eq!(error.class(), crate::ErrorClass::Transient, "{error}");
        assert!(
            error
                .message()
                .contains("http://127.0.0.1:1/v1/chat/completions"),
            "{error}"
        );
    }
}
