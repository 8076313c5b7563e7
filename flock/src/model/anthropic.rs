//! Anthropic's Messages API, natively (`anthropic/<model>`): tools as `tool_use` /
//! `tool_result` content blocks, the system prompt as `system`, structured output through an
//! output tool the model is made to call.
//!
//! | setting | explicit config | environment | default |
//! |---|---|---|---|
//! | key (sent as `x-api-key`) | [`AnthropicConfig::api_key`] | `ANTHROPIC_API_KEY` | none: an error at `build()` for agents on `anthropic/…` |
//! | base URL (`/v1/messages` is appended) | [`AnthropicConfig::base_url`] | `ANTHROPIC_BASE_URL` | `https://api.anthropic.com` |
//! | `max_tokens` of every request | [`AnthropicConfig::max_tokens`] | | 4096 |
//!
//! The provider is registered in every [`Models`](super::Models) as `anthropic` with its
//! environment defaults; registering one of the same name replaces it:
//!
//! ```
//! use flock::model::{Anthropic, AnthropicConfig, ApiKey};
//! use flock::Flock;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let flock = Flock::builder()
//!     .provider(Anthropic::new(AnthropicConfig {
//!         api_key: Some(ApiKey::new("sk-ant-…")), // else ANTHROPIC_API_KEY
//!         max_tokens: 8192,
//!         ..AnthropicConfig::default()
//!     }))
//!     .model("anthropic/claude-sonnet-4-5")
//!     .build()
//!     .await?;
//! # let _ = flock;
//! # Ok::<(), flock::Error>(())
//! # }).unwrap();
//! ```
//!
//! **Structured output.** With [`AnthropicOutput::Tool`] (the default) the request carries one
//! more tool, [`OUTPUT_TOOL`], whose input schema is the agent's output schema, and
//! `tool_choice: {"type": "any"}`: the model answers by calling it (or calls the agent's own
//! tools first). Its input is the answer, validated like any other; when the model calls it
//! beside other tools, the answer wins and the other calls are not made. An agent tool named
//! like the output tool is an error. [`AnthropicOutput::Prompted`] sends no output tool: the
//! prompt alone asks for the JSON.
//!
//! With [`AnthropicConfig::stream`] answers stream as server-sent events. Not yet: prompt
//! caching; extended thinking.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use hyper::header::{HeaderName, HeaderValue, USER_AGENT};
use serde::Deserialize;
use serde_json::{Value, json};

use super::http::KeyHint;
use super::openai::{ApiKey, Target, check_url, secret_header};
use super::{Message, Model, ModelRequest, ModelResponse, Provider, Role, ToolCall, Usage};
use crate::error::AgentError;

/// `ANTHROPIC_API_KEY`: the Anthropic API key.
pub const ANTHROPIC_API_KEY: &str = "ANTHROPIC_API_KEY";
/// `ANTHROPIC_BASE_URL`: the API root (default `https://api.anthropic.com`).
pub const ANTHROPIC_BASE_URL: &str = "ANTHROPIC_BASE_URL";
/// The Anthropic API root.
pub const DEFAULT_ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com";
/// The `anthropic-version` header sent.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";
/// The name of the tool the model answers through ([`AnthropicOutput::Tool`]).
pub const OUTPUT_TOOL: &str = "final_result";

/// How the model is made to answer with the output type's JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AnthropicOutput {
    /// An output tool with the output schema, and `tool_choice: any` (see the module docs).
    #[default]
    Tool,
    /// The prompt alone asks for the JSON.
    Prompted,
}

/// Settings of the Anthropic provider. Unset fields fall back to the environment, then to the
/// defaults.
#[derive(Debug, Clone)]
pub struct AnthropicConfig {
    /// The API key (else `ANTHROPIC_API_KEY`).
    pub api_key: Option<ApiKey>,
    /// The API root, up to and excluding `/v1/messages` (else `ANTHROPIC_BASE_URL`, else
    /// `https://api.anthropic.com`).
    pub base_url: Option<String>,
    /// `max_tokens` of every request: the longest answer, in tokens (required by the API).
    pub max_tokens: u32,
    /// How long one call may take, connection and whole answer included.
    pub timeout: Duration,
    /// How structured output is requested.
    pub output: AnthropicOutput,
    /// Whether answers stream as server-sent events (`"stream": true`): `timeout` then bounds the
    /// wait for each event, not the whole answer. Off by default.
    pub stream: bool,
}

impl Default for AnthropicConfig {
    fn default() -> Self {
        AnthropicConfig {
            api_key: None,
            base_url: None,
            max_tokens: 4096,
            timeout: super::openai::DEFAULT_TIMEOUT,
            output: AnthropicOutput::Tool,
            stream: false,
        }
    }
}

type Env = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The Anthropic Messages API provider (see the [module docs](self)).
#[derive(Clone)]
pub struct Anthropic {
    config: AnthropicConfig,
    env: Env,
}

impl fmt::Debug for Anthropic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Anthropic")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Anthropic {
    /// Anthropic (`anthropic/<model>`).
    pub fn new(config: AnthropicConfig) -> Self {
        Anthropic {
            config,
            env: Arc::new(|var| std::env::var(var).ok().filter(|v| !v.trim().is_empty())),
        }
    }

    /// Reads settings from `env` instead of the process environment (e.g. a secrets store).
    ///
    /// ```
    /// use flock::model::{Anthropic, AnthropicConfig, Provider};
    ///
    /// let provider = Anthropic::new(AnthropicConfig::default())
    ///     .with_env(|var| (var == "ANTHROPIC_API_KEY").then(|| "sk-ant-…".to_owned()));
    /// let model = provider.model("claude-sonnet-4-5").unwrap();
    /// assert!(model.unusable().is_none());
    /// assert!(format!("{model:?}").contains("https://api.anthropic.com/v1/messages"));
    /// ```
    pub fn with_env(
        mut self,
        env: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.env = Arc::new(env);
        self
    }

    /// Where requests go, the key's origin and the key; adds the headers. `Err`: what is
    /// missing or malformed (the model's [`unusable`](Model::unusable) reason).
    fn target(
        &self,
        headers: &mut Vec<(HeaderName, HeaderValue)>,
    ) -> Result<(String, KeyHint, ApiKey), String> {
        let base = self
            .config
            .base_url
            .clone()
            .or_else(|| (self.env)(ANTHROPIC_BASE_URL))
            .unwrap_or_else(|| DEFAULT_ANTHROPIC_BASE_URL.to_owned());
        let url = format!("{}/v1/messages", base.trim_end_matches('/'));
        check_url("anthropic", &url)?;
        let (key, hint) = match &self.config.api_key {
            Some(key) => (key.clone(), KeyHint::Config("AnthropicConfig::api_key")),
            None => match (self.env)(ANTHROPIC_API_KEY) {
                Some(key) => (ApiKey::new(key), KeyHint::Env(ANTHROPIC_API_KEY.to_owned())),
                None => {
                    return Err(format!(
                        "anthropic: no API key: set the environment variable `{ANTHROPIC_API_KEY}` (or `AnthropicConfig::api_key`)"
                    ));
                }
            },
        };
        headers.push((
            HeaderName::from_static("x-api-key"),
            secret_header(key.expose())?,
        ));
        headers.push((
            HeaderName::from_static("anthropic-version"),
            HeaderValue::from_static(ANTHROPIC_VERSION),
        ));
        Ok((url, hint, key))
    }
}

impl Provider for Anthropic {
    fn name(&self) -> &str {
        "anthropic"
    }

    fn model(&self, model: &str) -> Result<Arc<dyn Model>, String> {
        if model.trim().is_empty() {
            return Err(
                "model name `anthropic/` names no model (write \"anthropic/<model>\")".into(),
            );
        }
        if self.config.max_tokens == 0 {
            return Err("anthropic: `AnthropicConfig::max_tokens` is 0: no answer would fit; give at least 1".into());
        }
        let mut headers = vec![(
            USER_AGENT,
            HeaderValue::from_static(concat!("flock/", env!("CARGO_PKG_VERSION"))),
        )];
        let target = self.target(&mut headers);
        Ok(Arc::new(MessagesModel {
            model: model.to_owned(),
            max_tokens: self.config.max_tokens,
            timeout: self.config.timeout,
            output: self.config.output,
            stream: self.config.stream,
            target: target.map(|(url, key, secret)| Target {
                url,
                headers,
                key,
                secret: Some(secret),
            }),
        }))
    }
}

/// One Anthropic model.
struct MessagesModel {
    model: String,
    max_tokens: u32,
    timeout: Duration,
    output: AnthropicOutput,
    stream: bool,
    target: Result<Target, String>,
}

impl fmt::Debug for MessagesModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("MessagesModel");
        s.field("model", &self.model)
            .field("max_tokens", &self.max_tokens)
            .field("timeout", &self.timeout)
            .field("output", &self.output)
            .field("stream", &self.stream);
        match &self.target {
            Ok(target) => s.field("url", &target.url).field("api_key", &"<redacted>"),
            Err(problem) => s.field("unusable", problem),
        };
        s.finish()
    }
}

impl Model for MessagesModel {
    fn unusable(&self) -> Option<&str> {
        self.target.as_ref().err().map(String::as_str)
    }

    fn complete<'a>(
        &'a self,
        request: &'a ModelRequest,
    ) -> BoxFuture<'a, Result<ModelResponse, AgentError>> {
        Box::pin(async move {
            let target = self
                .target
                .as_ref()
                .map_err(|problem| AgentError::permanent(problem.clone()))?;
            let mut body = request_body(&self.model, self.max_tokens, request, self.output)
                .map_err(|e| AgentError::permanent(format!("anthropic: {e}")))?;
            if !self.stream {
                return target
                    .exchange("anthropic", &body, self.timeout, |bytes| {
                        parse_response(bytes, self.output)
                    })
                    .await;
            }
            body["stream"] = Value::Bool(true);
            let mut message = StreamedMessage::default();
            target
                .stream("anthropic", &body, self.timeout, |data| message.take(data))
                .await?;
            message.finish(self.output)
        })
    }
}

/// The Messages API request body for `request`: system messages joined into `system`, tool
/// results as `tool_result` blocks of one user turn, the output tool when `output` asks for it.
///
/// ```
/// use flock::model::anthropic::{AnthropicOutput, request_body};
/// use flock::model::{Message, ModelRequest, OutputFormat, Role};
/// use serde_json::json;
///
/// let request = ModelRequest {
///     model: "claude-sonnet-4-5".into(),
///     agent: "summarize".into(),
///     messages: vec![Message::new(Role::System, "Be brief."), Message::new(Role::User, "Summarize: …")],
///     output: OutputFormat::new("Summary", json!({
///         "type": "object",
///         "properties": { "summary": { "type": "string" } },
///         "required": ["summary"]
///     })),
///     tools: vec![],
/// };
/// let body = request_body("claude-sonnet-4-5", 1024, &request, AnthropicOutput::Tool).unwrap();
/// assert_eq!(body["system"], "Be brief.");
/// assert_eq!(body["messages"], json!([{ "role": "user", "content": "Summarize: …" }]));
/// assert_eq!(body["tools"][0]["name"], "final_result");
/// assert_eq!(body["tool_choice"], json!({ "type": "any" }));
/// ```
pub fn request_body(
    model: &str,
    max_tokens: u32,
    request: &ModelRequest,
    output: AnthropicOutput,
) -> Result<Value, String> {
    let system: Vec<&str> = request
        .messages
        .iter()
        .filter(|m| m.role == Role::System)
        .map(|m| m.content.as_str())
        .collect();
    let mut messages: Vec<Value> = Vec::new();
    for message in request.messages.iter().filter(|m| m.role != Role::System) {
        let (role, blocks) = wire_blocks(message);
        // tool results of one round go back in one user turn, after the assistant's tool uses
        match messages.last_mut() {
            Some(last) if last["role"] == role && message.role == Role::Tool => {
                if let Some(content) = last["content"].as_array_mut() {
                    content.extend(blocks);
                    continue;
                }
                messages.push(json!({ "role": role, "content": blocks }));
            }
            _ => messages.push(json!({ "role": role, "content": blocks })),
        }
    }
    // a turn of one text block is sent as a string, the API's plain form
    for message in &mut messages {
        if let Some([block]) = message["content"].as_array().map(Vec::as_slice)
            && block["type"] == "text"
        {
            message["content"] = block["text"].clone();
        }
    }
    let mut tools: Vec<Value> = request
        .tools
        .iter()
        .map(|tool| {
            json!({
                "name": tool.name,
                "description": tool.description,
                "input_schema": tool.parameters,
            })
        })
        .collect();
    let mut body = json!({
        "model": model,
        "max_tokens": max_tokens,
        "messages": messages,
    });
    if !system.is_empty() {
        body["system"] = Value::String(system.join("\n\n"));
    }
    if output == AnthropicOutput::Tool {
        if request.tools.iter().any(|tool| tool.name == OUTPUT_TOOL) {
            return Err(format!(
                "agent `{}` has a tool named `{OUTPUT_TOOL}`, the name of the output tool flock adds: rename the tool (or configure `AnthropicOutput::Prompted`)",
                request.agent
            ));
        }
        tools.push(json!({
            "name": OUTPUT_TOOL,
            "description": format!("Give the final answer, a `{}`, as this tool's input.", request.output.name),
            "input_schema": request.output.schema,
        }));
        body["tool_choice"] = json!({ "type": "any" });
    }
    if !tools.is_empty() {
        body["tools"] = Value::Array(tools);
    }
    Ok(body)
}

/// A message's role on the wire and its content blocks.
fn wire_blocks(message: &Message) -> (&'static str, Vec<Value>) {
    let text = |text: &str| (!text.is_empty()).then(|| json!({ "type": "text", "text": text }));
    match message.role {
        Role::System | Role::User => ("user", text(&message.content).into_iter().collect()),
        Role::Assistant => {
            let uses = message.tool_calls.iter().map(|call| {
                // the model wrote the arguments as an object; a call whose text is not one
                // (repaired by the loop) goes back as the text it was
                let input = serde_json::from_str::<Value>(&call.arguments)
                    .ok()
                    .filter(Value::is_object)
                    .unwrap_or_else(|| json!({ "arguments": call.arguments }));
                json!({ "type": "tool_use", "id": call.id, "name": call.name, "input": input })
            });
            (
                "assistant",
                text(&message.content).into_iter().chain(uses).collect(),
            )
        }
        Role::Tool => (
            "user",
            vec![json!({
                "type": "tool_result",
                "tool_use_id": message.tool_call_id.clone().unwrap_or_default(),
                "content": message.content,
            })],
        ),
    }
}

#[derive(Deserialize)]
struct WireResponse {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    content: Vec<WireBlock>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireBlock {
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
}

/// Reads a successful Messages API response. A body that is not the expected JSON is
/// [`Transient`](AgentError::Transient); `stop_reason: "refusal"` is
/// [`Permanent`](AgentError::Permanent); `"max_tokens"` is
/// [`InvalidOutput`](AgentError::InvalidOutput) naming the cut-off (not "invalid JSON").
fn parse_response(body: &[u8], output: AnthropicOutput) -> Result<ModelResponse, AgentError> {
    let wire: WireResponse = serde_json::from_slice(body).map_err(|e| {
        let shown: String = String::from_utf8_lossy(body).chars().take(200).collect();
        AgentError::transient(format!(
            "anthropic: the response is not a valid Messages API message ({e}); it began with: {shown:?}"
        ))
    })?;
    let usage = wire.usage.map(WireUsage::usage).unwrap_or_default();
    let blocks = wire
        .content
        .into_iter()
        .filter_map(|block| match block {
            WireBlock::Text { text } => Some(Block::Text(text)),
            WireBlock::ToolUse { id, name, input } => Some(Block::ToolUse {
                id,
                name,
                input: input.to_string(),
            }),
            WireBlock::Other => None,
        })
        .collect();
    answer_of(
        wire.model,
        blocks,
        wire.stop_reason.as_deref(),
        usage,
        output,
    )
}

/// A content block of an answer, its tool input as JSON text.
#[derive(Debug)]
enum Block {
    Text(String),
    ToolUse {
        id: String,
        name: String,
        input: String,
    },
}

impl WireUsage {
    fn usage(self) -> Usage {
        Usage {
            prompt_tokens: self.input_tokens.unwrap_or(0),
            completion_tokens: self.output_tokens.unwrap_or(0),
            ..Usage::default()
        }
    }
}

/// The answer in a message (whole, or put together from a stream).
fn answer_of(
    model: Option<String>,
    blocks: Vec<Block>,
    stop_reason: Option<&str>,
    usage: Usage,
    output: AnthropicOutput,
) -> Result<ModelResponse, AgentError> {
    match stop_reason {
        Some("max_tokens") => {
            return Err(AgentError::invalid_output(format!(
                "anthropic: the answer was cut off at the request's token limit (stop_reason `max_tokens`, after {} output tokens): raise `AnthropicConfig::max_tokens`, or ask for a shorter answer",
                usage.completion_tokens
            )));
        }
        Some("refusal") => {
            return Err(AgentError::permanent(
                "anthropic: the model refused to answer (stop_reason `refusal`)",
            ));
        }
        _ => {}
    }
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    let mut answer = None;
    for block in blocks {
        match block {
            Block::Text(part) => text.push_str(&part),
            Block::ToolUse { name, input, .. }
                if output == AnthropicOutput::Tool && name == OUTPUT_TOOL =>
            {
                answer = Some(input);
            }
            Block::ToolUse { id, name, input } => tool_calls.push(ToolCall {
                id,
                name,
                arguments: input,
            }),
        }
    }
    let (content, tool_calls) = match answer {
        Some(answer) => (answer, Vec::new()),
        None => (text, tool_calls),
    };
    Ok(ModelResponse {
        content,
        tool_calls,
        usage,
        model,
    })
}

/// A streamed message as it comes (the Messages API's events: `message_start`,
/// `content_block_start`/`_delta`/`_stop`, `message_delta`, `message_stop`, `ping`, `error`):
/// text deltas appended, tool inputs put together from their partial JSON; whole at
/// `message_stop`.
#[derive(Default)]
struct StreamedMessage {
    model: Option<String>,
    blocks: BTreeMap<u64, Block>,
    stop_reason: Option<String>,
    usage: Usage,
    done: bool,
}

impl StreamedMessage {
    /// One event's data.
    fn take(&mut self, data: &str) -> Result<(), AgentError> {
        let event: Value = serde_json::from_str(data).map_err(|e| {
            let shown: String = data.chars().take(200).collect();
            AgentError::transient(format!(
                "anthropic: a streamed event is not valid JSON ({e}): {shown:?}"
            ))
        })?;
        let index = event["index"].as_u64().unwrap_or(0);
        match event["type"].as_str().unwrap_or_default() {
            "message_start" => {
                let message = &event["message"];
                self.model = message["model"].as_str().map(str::to_owned);
                self.usage.prompt_tokens = message["usage"]["input_tokens"].as_u64().unwrap_or(0);
            }
            "content_block_start" => {
                let block = &event["content_block"];
                let text = |key: &str| block[key].as_str().unwrap_or_default().to_owned();
                let started = match block["type"].as_str() {
                    Some("tool_use") => Block::ToolUse {
                        id: text("id"),
                        name: text("name"),
                        // the input comes as partial JSON; an empty one is the start's input
                        input: String::new(),
                    },
                    _ => Block::Text(text("text")),
                };
                self.blocks.insert(index, started);
            }
            "content_block_delta" => {
                let delta = &event["delta"];
                match (self.blocks.get_mut(&index), delta["type"].as_str()) {
                    (Some(Block::Text(text)), Some("text_delta")) => {
                        let piece = delta["text"].as_str().unwrap_or_default();
                        crate::events::stream_text(piece);
                        text.push_str(piece);
                    }
                    (Some(Block::ToolUse { input, name, .. }), Some("input_json_delta")) => {
                        let piece = delta["partial_json"].as_str().unwrap_or_default();
                        // the answer, when the model answers through the output tool
                        if name == OUTPUT_TOOL {
                            crate::events::stream_text(piece);
                        }
                        input.push_str(piece);
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(reason) = event["delta"]["stop_reason"].as_str() {
                    self.stop_reason = Some(reason.to_owned());
                }
                if let Some(tokens) = event["usage"]["output_tokens"].as_u64() {
                    self.usage.completion_tokens = tokens;
                }
            }
            "message_stop" => self.done = true,
            "error" => {
                let error = &event["error"];
                return Err(AgentError::transient(format!(
                    "anthropic: the stream reported an error: {} ({})",
                    error["message"].as_str().unwrap_or_default(),
                    error["type"].as_str().unwrap_or("error")
                )));
            }
            _ => {}
        }
        Ok(())
    }

    /// The whole answer; a stream that ended before `message_stop` was cut off.
    fn finish(self, output: AnthropicOutput) -> Result<ModelResponse, AgentError> {
        if !self.done {
            return Err(AgentError::transient(
                "anthropic: the stream ended before `message_stop`: cut off",
            ));
        }
        let blocks = self
            .blocks
            .into_values()
            .map(|block| match block {
                Block::ToolUse { id, name, input } if input.trim().is_empty() => Block::ToolUse {
                    id,
                    name,
                    input: "{}".into(),
                },
                block => block,
            })
            .collect();
        answer_of(
            self.model,
            blocks,
            self.stop_reason.as_deref(),
            self.usage,
            output,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{OutputFormat, ToolDefinition};

    fn request(messages: Vec<Message>, tools: Vec<ToolDefinition>) -> ModelRequest {
        ModelRequest {
            model: "claude".into(),
            agent: "a".into(),
            messages,
            output: OutputFormat::of::<Vec<String>>(),
            tools,
        }
    }

    #[test]
    fn tool_rounds_go_back_as_tool_use_and_one_turn_of_tool_results() {
        let mut asked = Message::new(Role::Assistant, "");
        asked.tool_calls = vec![
            ToolCall {
                id: "t1".into(),
                name: "add".into(),
                arguments: r#"{"a": 1}"#.into(),
            },
            ToolCall {
                id: "t2".into(),
                name: "add".into(),
                arguments: "not json".into(),
            },
        ];
        let result = |id: &str, content: &str| Message {
            tool_call_id: Some(id.into()),
            ..Message::new(Role::Tool, content)
        };
        let request = request(
            vec![
                Message::new(Role::User, "go"),
                asked,
                result("t1", "2"),
                result("t2", "error: bad arguments"),
            ],
            vec![],
        );
        let body = request_body("claude", 100, &request, AnthropicOutput::Prompted).unwrap();
        assert_eq!(
            body["messages"],
            json!([
                { "role": "user", "content": "go" },
                { "role": "assistant", "content": [
                    { "type": "tool_use", "id": "t1", "name": "add", "input": { "a": 1 } },
                    { "type": "tool_use", "id": "t2", "name": "add", "input": { "arguments": "not json" } },
                ] },
                { "role": "user", "content": [
                    { "type": "tool_result", "tool_use_id": "t1", "content": "2" },
                    { "type": "tool_result", "tool_use_id": "t2", "content": "error: bad arguments" },
                ] },
            ])
        );
        assert!(body.get("tools").is_none() && body.get("tool_choice").is_none());
    }

    #[test]
    fn the_output_tool_is_the_answer_and_wins_over_other_calls() {
        let body = json!({
            "model": "claude-x",
            "content": [
                { "type": "text", "text": "Here:" },
                { "type": "tool_use", "id": "a", "name": "search", "input": { "q": "x" } },
                { "type": "tool_use", "id": "b", "name": "final_result", "input": { "value": ["x"] } },
            ],
            "stop_reason": "tool_use",
            "usage": { "input_tokens": 10, "output_tokens": 3 }
        });
        let response = parse_response(body.to_string().as_bytes(), AnthropicOutput::Tool).unwrap();
        assert_eq!(response.content, r#"{"value":["x"]}"#);
        assert!(response.tool_calls.is_empty());
        assert_eq!(response.usage.prompt_tokens, 10);
        assert_eq!(response.model.as_deref(), Some("claude-x"));
        // prompted: the output tool is just another tool
        let response =
            parse_response(body.to_string().as_bytes(), AnthropicOutput::Prompted).unwrap();
        assert_eq!(response.content, "Here:");
        assert_eq!(response.tool_calls.len(), 2);
    }

    /// The events of a streamed message, as the Messages API sends them.
    const STREAM: [&str; 11] = [
        r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude-x","stop_reason":null,"usage":{"input_tokens":25,"output_tokens":1}}}"#,
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        r#"{"type": "ping"}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Let me "}}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"check."}}"#,
        r#"{"type":"content_block_stop","index":0}"#,
        r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"twice","input":{}}}"#,
        r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"n\": "}}"#,
        r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"21}"}}"#,
        r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":40}}"#,
        r#"{"type":"message_stop"}"#,
    ];

    fn streamed(events: &[&str]) -> Result<ModelResponse, AgentError> {
        let mut message = StreamedMessage::default();
        for event in events {
            message.take(event)?;
        }
        message.finish(AnthropicOutput::Tool)
    }

    #[test]
    fn a_streamed_message_is_put_together_like_a_whole_one() {
        let response = streamed(&STREAM).unwrap();
        assert_eq!(response.content, "Let me check.");
        assert_eq!(response.model.as_deref(), Some("claude-x"));
        assert_eq!(
            (
                response.usage.prompt_tokens,
                response.usage.completion_tokens
            ),
            (25, 40)
        );
        assert_eq!(
            response.tool_calls,
            [ToolCall {
                id: "toolu_1".into(),
                name: "twice".into(),
                arguments: r#"{"n": 21}"#.into(),
            }]
        );
        // the output tool's input is the answer; a tool without deltas has the input {}
        let answer = streamed(&[
            STREAM[0],
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"t","name":"final_result","input":{}}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"value\": [\"x\"]}"}}"#,
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"u","name":"noop","input":{}}}"#,
            r#"{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":9}}"#,
            r#"{"type":"message_stop"}"#,
        ])
        .unwrap();
        assert_eq!(answer.content, r#"{"value": ["x"]}"#);
        assert!(answer.tool_calls.is_empty());
    }

    #[test]
    fn a_stream_cut_off_garbled_or_reporting_an_error_is_named() {
        let error = streamed(&STREAM[..9]).unwrap_err();
        assert_eq!(error.class(), crate::ErrorClass::Transient);
        assert!(error.message().contains("before `message_stop`"), "{error}");
        let error = streamed(&["<html>"]).unwrap_err();
        assert!(error.message().contains("not valid JSON"), "{error}");
        let error = streamed(&[
            STREAM[0],
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        ])
        .unwrap_err();
        assert_eq!(
            error.message(),
            "anthropic: the stream reported an error: Overloaded (overloaded_error)"
        );
        let error = streamed(&[
            STREAM[0],
            r#"{"type":"message_delta","delta":{"stop_reason":"max_tokens"},"usage":{"output_tokens":4096}}"#,
            r#"{"type":"message_stop"}"#,
        ])
        .unwrap_err();
        assert_eq!(error.class(), crate::ErrorClass::InvalidOutput);
    }

    #[test]
    fn a_cut_off_a_refusal_and_garbage_are_named() {
        let cut = json!({ "content": [{ "type": "text", "text": "{\"val" }], "stop_reason": "max_tokens", "usage": { "input_tokens": 5, "output_tokens": 100 } });
        let error = parse_response(cut.to_string().as_bytes(), AnthropicOutput::Tool).unwrap_err();
        assert_eq!(error.class(), crate::ErrorClass::InvalidOutput);
        assert!(
            error.message().contains("cut off")
                && error.message().contains("after 100 output tokens"),
            "{error}"
        );
        let refused = json!({ "content": [], "stop_reason": "refusal" });
        let error =
            parse_response(refused.to_string().as_bytes(), AnthropicOutput::Tool).unwrap_err();
        assert_eq!(error.class(), crate::ErrorClass::Permanent);
        let error = parse_response(b"<html>", AnthropicOutput::Tool).unwrap_err();
        assert_eq!(error.class(), crate::ErrorClass::Transient);
        assert!(error.message().contains("\"<html>\""), "{error}");
    }

    #[test]
    fn bad_settings_are_named_before_any_request() {
        let provider = Anthropic::new(AnthropicConfig::default()).with_env(|_| None);
        let model = provider.model("claude").unwrap();
        assert_eq!(
            model.unusable(),
            Some(
                "anthropic: no API key: set the environment variable `ANTHROPIC_API_KEY` (or `AnthropicConfig::api_key`)"
            )
        );
        let provider = Anthropic::new(AnthropicConfig {
            base_url: Some("not a url".into()),
            api_key: Some(ApiKey::new("k")),
            ..AnthropicConfig::default()
        });
        let problem = provider
            .model("claude")
            .unwrap()
            .unusable()
            .unwrap()
            .to_owned();
        assert!(
            problem.starts_with("anthropic: `not a url/v1/messages`"),
            "{problem}"
        );
        let provider = Anthropic::new(AnthropicConfig {
            max_tokens: 0,
            ..AnthropicConfig::default()
        });
        assert!(
            provider
                .model("claude")
                .unwrap_err()
                .contains("`AnthropicConfig::max_tokens` is 0")
        );
        assert!(provider.model(" ").unwrap_err().contains("names no model"));
        let clash = request(
            vec![Message::new(Role::User, "go")],
            vec![ToolDefinition {
                name: OUTPUT_TOOL.into(),
                description: String::new(),
                parameters: json!({ "type": "object" }),
            }],
        );
        let error = request_body("claude", 10, &clash, AnthropicOutput::Tool).unwrap_err();
        assert!(error.contains("has a tool named `final_result`"), "{error}");
    }
}
