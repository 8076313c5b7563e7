//! Providers that speak OpenAI's chat-completions protocol: OpenAI itself, Azure OpenAI, Ollama,
//! and any OpenAI-compatible server given by its base URL (vLLM, llama.cpp server, LM Studio,
//! OpenRouter, Groq, …).
//!
//! Keys and URLs come from configuration or the environment, never from code: a provider reads
//! its environment variables when a model of it is first resolved, so a `Flock` builds without
//! `OPENAI_API_KEY` as long as nothing calls OpenAI, and a call without a key fails with a
//! [`Permanent`](crate::AgentError::Permanent) error naming the variable to set. Keys live in the
//! provider only: they are not part of a [`ModelRequest`] (so not of a run record or a Temporal
//! history), `Debug` prints them as `<redacted>`, and provider error messages are scrubbed of them.
//!
//! | provider | model names | settings (explicit config, else environment) |
//! |---|---|---|
//! | [`OpenAi::new`] | `openai/gpt-4o-mini` | `OPENAI_API_KEY`, `OPENAI_BASE_URL`, `OPENAI_ORG_ID`, `OPENAI_PROJECT_ID` |
//! | [`OpenAi::azure`] | `azure/<deployment>` | `AZURE_OPENAI_API_KEY`, `AZURE_OPENAI_ENDPOINT`, `OPENAI_API_VERSION` |
//! | [`OpenAi::ollama`] | `ollama/llama3.1` | `OLLAMA_HOST` (default `http://localhost:11434`) |
//! | [`OpenAi::compatible`] | `<name>/<model>` | the base URL given, the key variable given |
//!
//! `openai`, `azure` and `ollama` are registered in every [`Models`](super::Models) with their
//! environment defaults; registering a provider of the same name replaces them:
//!
//! ```
//! use std::time::Duration;
//! use flock::model::{OpenAi, OpenAiConfig, StructuredOutput};
//! use flock::Flock;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let flock = Flock::builder()
//!     .provider(OpenAi::new(OpenAiConfig {
//!         timeout: Duration::from_secs(60),
//!         ..OpenAiConfig::default()
//!     }))
//!     // Groq: OpenAI-compatible, key in GROQ_API_KEY, JSON mode instead of strict schemas
//!     .provider(OpenAi::compatible("groq", OpenAiConfig {
//!         base_url: Some("https://api.groq.com/openai/v1".into()),
//!         api_key_env: Some("GROQ_API_KEY".into()),
//!         structured_output: StructuredOutput::JsonObject,
//!         ..OpenAiConfig::default()
//!     }))
//!     .model("openai/gpt-4o-mini")
//!     .build()
//!     .await?;
//! # let _ = flock;
//! # Ok::<(), flock::Error>(())
//! # }).unwrap();
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use hyper::header::{AUTHORIZATION, HeaderName, HeaderValue, USER_AGENT};
use serde::Deserialize;
use serde_json::{Value, json};

use super::http::{self, KeyHint};
use super::schema::{strict_schema, wire_name};
use super::{Message, Model, ModelRequest, ModelResponse, Provider, Role, ToolCall, Usage};
use crate::error::AgentError;

/// `OPENAI_API_KEY`: the OpenAI API key.
pub const OPENAI_API_KEY: &str = "OPENAI_API_KEY";
/// `OPENAI_BASE_URL`: the OpenAI API base URL (default `https://api.openai.com/v1`).
pub const OPENAI_BASE_URL: &str = "OPENAI_BASE_URL";
/// `OPENAI_ORG_ID`: the OpenAI organization, sent as `OpenAI-Organization`.
pub const OPENAI_ORG_ID: &str = "OPENAI_ORG_ID";
/// `OPENAI_PROJECT_ID`: the OpenAI project, sent as `OpenAI-Project`.
pub const OPENAI_PROJECT_ID: &str = "OPENAI_PROJECT_ID";
/// `AZURE_OPENAI_API_KEY`: the Azure OpenAI resource key, sent as `api-key`.
pub const AZURE_OPENAI_API_KEY: &str = "AZURE_OPENAI_API_KEY";
/// `AZURE_OPENAI_ENDPOINT`: `https://<resource>.openai.azure.com`.
pub const AZURE_OPENAI_ENDPOINT: &str = "AZURE_OPENAI_ENDPOINT";
/// `OPENAI_API_VERSION`: the Azure OpenAI `api-version` (default [`DEFAULT_AZURE_API_VERSION`]).
pub const OPENAI_API_VERSION: &str = "OPENAI_API_VERSION";
/// `OLLAMA_HOST`: where Ollama listens (`host:port` or a URL; default `http://localhost:11434`).
pub const OLLAMA_HOST: &str = "OLLAMA_HOST";

/// The OpenAI API base URL.
pub const DEFAULT_OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
/// The Azure OpenAI `api-version` used unless configured (a GA version with structured outputs).
pub const DEFAULT_AZURE_API_VERSION: &str = "2024-10-21";
/// Where Ollama listens by default.
pub const DEFAULT_OLLAMA_HOST: &str = "http://localhost:11434";
/// How long one model call may take unless configured.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// An API key: `Debug` prints `<redacted>`, and it has no `Display`.
///
/// ```
/// use flock::model::ApiKey;
///
/// let key = ApiKey::new("sk-very-secret");
/// assert_eq!(format!("{key:?}"), "ApiKey(<redacted>)");
/// ```
#[derive(Clone)]
pub struct ApiKey(Arc<str>);

impl ApiKey {
    /// Wraps a key.
    pub fn new(key: impl Into<String>) -> Self {
        ApiKey(Arc::from(key.into()))
    }

    pub(super) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl From<String> for ApiKey {
    fn from(key: String) -> Self {
        ApiKey::new(key)
    }
}

impl From<&str> for ApiKey {
    fn from(key: &str) -> Self {
        ApiKey::new(key)
    }
}

/// How a provider gets the model to answer with the output type's JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StructuredOutput {
    /// `response_format: {type: "json_schema", json_schema: {name, schema, strict: true}}` with the
    /// strict-mode form of the output schema (see [`strict_schema`]); tools are sent with
    /// `strict: true` too. OpenAI, Azure OpenAI, and most current compatible servers.
    #[default]
    JsonSchema,
    /// `response_format: {type: "json_object"}` (JSON mode): valid JSON, shape from the prompt.
    JsonObject,
    /// No `response_format`: the prompt alone asks for the JSON (any chat endpoint).
    Prompted,
}

/// Settings of an OpenAI(-compatible) provider. Unset fields fall back to the provider's
/// environment variables, then to its defaults.
#[derive(Debug, Clone)]
pub struct OpenAiConfig {
    /// The API key (else read from `api_key_env`, or the provider's variable).
    pub api_key: Option<ApiKey>,
    /// The environment variable holding the key, instead of the provider's own
    /// (`OPENAI_API_KEY` for OpenAI, none for Ollama and compatible servers).
    pub api_key_env: Option<String>,
    /// The API base URL, up to and excluding `/chat/completions` (`https://api.openai.com/v1`).
    /// For Ollama, the host (`http://localhost:11434`); `/v1` is appended.
    pub base_url: Option<String>,
    /// `OpenAI-Organization` header (OpenAI; else `OPENAI_ORG_ID`).
    pub organization: Option<String>,
    /// `OpenAI-Project` header (OpenAI; else `OPENAI_PROJECT_ID`).
    pub project: Option<String>,
    /// How long one call may take, connection and whole answer included.
    pub timeout: Duration,
    /// How structured output is requested.
    pub structured_output: StructuredOutput,
    /// Per-model exceptions to `structured_output` (keyed by the model part of the name).
    pub structured_output_by_model: BTreeMap<String, StructuredOutput>,
    /// Whether answers stream as server-sent events (`"stream": true`, with
    /// `stream_options.include_usage` for the token counts). Then `timeout` bounds the wait for
    /// each chunk, not the whole answer: a long answer that keeps coming is not cut off, a
    /// stalled stream is. Off by default: not every compatible server takes `stream_options`.
    pub stream: bool,
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        OpenAiConfig {
            api_key: None,
            api_key_env: None,
            base_url: None,
            organization: None,
            project: None,
            timeout: DEFAULT_TIMEOUT,
            structured_output: StructuredOutput::JsonSchema,
            structured_output_by_model: BTreeMap::new(),
            stream: false,
        }
    }
}

/// Settings of the Azure OpenAI provider (model names `azure/<deployment>`). Unset fields fall
/// back to `AZURE_OPENAI_API_KEY`, `AZURE_OPENAI_ENDPOINT` and `OPENAI_API_VERSION`.
#[derive(Debug, Clone)]
pub struct AzureConfig {
    /// The resource key, sent as the `api-key` header.
    pub api_key: Option<ApiKey>,
    /// `https://<resource>.openai.azure.com`.
    pub endpoint: Option<String>,
    /// The `api-version` query parameter (default [`DEFAULT_AZURE_API_VERSION`]).
    pub api_version: Option<String>,
    /// How long one call may take.
    pub timeout: Duration,
    /// How structured output is requested.
    pub structured_output: StructuredOutput,
    /// Per-deployment exceptions to `structured_output`.
    pub structured_output_by_model: BTreeMap<String, StructuredOutput>,
    /// Whether answers stream as server-sent events, as [`OpenAiConfig::stream`] (Azure OpenAI
    /// sends the token counts in the last chunk from `api-version` 2024-09-01-preview on). Off
    /// by default.
    pub stream: bool,
}

impl Default for AzureConfig {
    fn default() -> Self {
        AzureConfig {
            api_key: None,
            endpoint: None,
            api_version: None,
            timeout: DEFAULT_TIMEOUT,
            structured_output: StructuredOutput::JsonSchema,
            structured_output_by_model: BTreeMap::new(),
            stream: false,
        }
    }
}

#[derive(Debug, Clone)]
enum Flavor {
    OpenAi(OpenAiConfig),
    Compatible(OpenAiConfig),
    Ollama(OpenAiConfig),
    Azure(AzureConfig),
}

type Env = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// A provider speaking OpenAI's chat-completions protocol (see the [module docs](self)).
#[derive(Clone)]
pub struct OpenAi {
    name: String,
    flavor: Flavor,
    env: Env,
}

impl fmt::Debug for OpenAi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAi")
            .field("name", &self.name)
            .field("config", &self.flavor)
            .finish_non_exhaustive()
    }
}

impl OpenAi {
    /// OpenAI (`openai/<model>`).
    pub fn new(config: OpenAiConfig) -> Self {
        Self::with_flavor("openai", Flavor::OpenAi(config))
    }

    /// An OpenAI-compatible server named `name` (`<name>/<model>`): `config.base_url` (required)
    /// is its API root, e.g. `http://localhost:8000/v1` (vLLM), `http://localhost:8080/v1`
    /// (llama.cpp server), `http://localhost:1234/v1` (LM Studio),
    /// `https://openrouter.ai/api/v1`, `https://api.groq.com/openai/v1`; the key, if the server
    /// wants one, is `config.api_key` or the variable `config.api_key_env`.
    pub fn compatible(name: impl Into<String>, config: OpenAiConfig) -> Self {
        Self::with_flavor(name, Flavor::Compatible(config))
    }

    /// Ollama's OpenAI-compatible endpoint (`ollama/<model>`), at `config.base_url`, else
    /// `OLLAMA_HOST`, else `http://localhost:11434`.
    pub fn ollama(config: OpenAiConfig) -> Self {
        Self::with_flavor("ollama", Flavor::Ollama(config))
    }

    /// Azure OpenAI (`azure/<deployment>`).
    pub fn azure(config: AzureConfig) -> Self {
        Self::with_flavor("azure", Flavor::Azure(config))
    }

    /// Reads settings from `env` instead of the process environment (e.g. a secrets store).
    ///
    /// ```
    /// use flock::model::{OpenAi, OpenAiConfig, Provider};
    ///
    /// let provider = OpenAi::ollama(OpenAiConfig::default())
    ///     .with_env(|var| (var == "OLLAMA_HOST").then(|| "gpu-box:11434".to_owned()));
    /// let model = provider.model("llama3.1").unwrap();
    /// assert!(format!("{model:?}").contains("http://gpu-box:11434/v1/chat/completions"));
    /// ```
    pub fn with_env(
        mut self,
        env: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.env = Arc::new(env);
        self
    }

    fn with_flavor(name: impl Into<String>, flavor: Flavor) -> Self {
        OpenAi {
            name: name.into(),
            flavor,
            env: Arc::new(|var| std::env::var(var).ok().filter(|v| !v.trim().is_empty())),
        }
    }

    fn var(&self, name: &str) -> Option<String> {
        (self.env)(name)
    }

    fn chat_model(&self, model: &str) -> Result<ChatModel, String> {
        if model.trim().is_empty() {
            return Err(format!(
                "model name `{}/` names no model (write \"{}/<model>\")",
                self.name, self.name
            ));
        }
        let mut headers = vec![(
            USER_AGENT,
            HeaderValue::from_static(concat!("flock/", env!("CARGO_PKG_VERSION"))),
        )];
        let stream = match &self.flavor {
            Flavor::OpenAi(config) | Flavor::Compatible(config) | Flavor::Ollama(config) => {
                config.stream
            }
            Flavor::Azure(config) => config.stream,
        };
        let (config_timeout, mode, target) = match &self.flavor {
            Flavor::OpenAi(config) | Flavor::Compatible(config) | Flavor::Ollama(config) => {
                let target = self.openai_target(config, &mut headers);
                (
                    config.timeout,
                    config
                        .structured_output_by_model
                        .get(model)
                        .copied()
                        .unwrap_or(config.structured_output),
                    target,
                )
            }
            Flavor::Azure(config) => {
                let target = self.azure_target(config, model, &mut headers);
                (
                    config.timeout,
                    config
                        .structured_output_by_model
                        .get(model)
                        .copied()
                        .unwrap_or(config.structured_output),
                    target,
                )
            }
        };
        Ok(ChatModel {
            provider: self.name.clone(),
            model: model.to_owned(),
            timeout: config_timeout,
            stream,
            structured_output: mode,
            target: target.map(|(url, key, secret)| Target {
                url,
                headers,
                key,
                secret,
            }),
        })
    }

    /// The URL, where the key came from, and the key, for the OpenAI-protocol flavors; adds the
    /// auth and organization headers. `Err`: what is missing: the model's [`unusable`](Model::unusable) reason (a `Flock` that
    /// runs agents refuses it at `build()`), and its requests' permanent error.
    fn openai_target(
        &self,
        config: &OpenAiConfig,
        headers: &mut Vec<(HeaderName, HeaderValue)>,
    ) -> Result<(String, KeyHint, Option<ApiKey>), String> {
        let name = &self.name;
        let (base, default_key_env) = match &self.flavor {
            Flavor::OpenAi(_) => (
                config
                    .base_url
                    .clone()
                    .or_else(|| self.var(OPENAI_BASE_URL))
                    .unwrap_or_else(|| DEFAULT_OPENAI_BASE_URL.to_owned()),
                Some(OPENAI_API_KEY),
            ),
            Flavor::Ollama(_) => {
                let host = config
                    .base_url
                    .clone()
                    .or_else(|| self.var(OLLAMA_HOST))
                    .unwrap_or_else(|| DEFAULT_OLLAMA_HOST.to_owned());
                (format!("{}/v1", ollama_host(&host)), None)
            }
            _ => (
                config.base_url.clone().ok_or_else(|| {
                    format!("the OpenAI-compatible provider `{name}` has no base URL: set `OpenAiConfig::base_url`")
                })?,
                None,
            ),
        };
        let url = format!("{}/chat/completions", base.trim_end_matches('/'));
        check_url(name, &url)?;
        let key_env = config
            .api_key_env
            .clone()
            .or(default_key_env.map(str::to_owned));
        let (key, hint) = match (&config.api_key, &key_env) {
            (Some(key), _) => (Some(key.clone()), KeyHint::Config("OpenAiConfig::api_key")),
            (None, Some(var)) => match self.var(var) {
                Some(key) => (Some(ApiKey::new(key)), KeyHint::Env(var.clone())),
                None if matches!(self.flavor, Flavor::OpenAi(_))
                    || config.api_key_env.is_some() =>
                {
                    return Err(format!(
                        "{name}: no API key: set the environment variable `{var}` (or `OpenAiConfig::api_key`)"
                    ));
                }
                None => (
                    None,
                    KeyHint::Missing {
                        env: Some(var.clone()),
                        config: "OpenAiConfig::api_key",
                    },
                ),
            },
            (None, None) => (
                None,
                KeyHint::Missing {
                    env: None,
                    config: "OpenAiConfig::api_key",
                },
            ),
        };
        if let Some(key) = &key {
            headers.push((
                AUTHORIZATION,
                secret_header(&format!("Bearer {}", key.expose()))?,
            ));
        }
        if let Flavor::OpenAi(_) = self.flavor {
            let organization = config
                .organization
                .clone()
                .or_else(|| self.var(OPENAI_ORG_ID));
            let project = config
                .project
                .clone()
                .or_else(|| self.var(OPENAI_PROJECT_ID));
            for (header, value) in [
                ("openai-organization", organization),
                ("openai-project", project),
            ] {
                if let Some(value) = value {
                    let value = HeaderValue::from_str(&value)
                        .map_err(|_| format!("{name}: `{header}` is not a valid header value"))?;
                    headers.push((HeaderName::from_static(header), value));
                }
            }
        }
        Ok((url, hint, key))
    }

    fn azure_target(
        &self,
        config: &AzureConfig,
        deployment: &str,
        headers: &mut Vec<(HeaderName, HeaderValue)>,
    ) -> Result<(String, KeyHint, Option<ApiKey>), String> {
        if !deployment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(format!(
                "azure: `{deployment}` is not a deployment name (letters, digits, `-`, `_`, `.`)"
            ));
        }
        let endpoint = config
            .endpoint
            .clone()
            .or_else(|| self.var(AZURE_OPENAI_ENDPOINT))
            .ok_or_else(|| {
                format!("azure: no endpoint: set the environment variable `{AZURE_OPENAI_ENDPOINT}` (https://<resource>.openai.azure.com) or `AzureConfig::endpoint`")
            })?;
        let version = config
            .api_version
            .clone()
            .or_else(|| self.var(OPENAI_API_VERSION))
            .unwrap_or_else(|| DEFAULT_AZURE_API_VERSION.to_owned());
        let url = format!(
            "{}/openai/deployments/{deployment}/chat/completions?api-version={version}",
            endpoint.trim_end_matches('/')
        );
        check_url("azure", &url)?;
        let (key, hint) = match &config.api_key {
            Some(key) => (key.clone(), KeyHint::Config("AzureConfig::api_key")),
            None => match self.var(AZURE_OPENAI_API_KEY) {
                Some(key) => (
                    ApiKey::new(key),
                    KeyHint::Env(AZURE_OPENAI_API_KEY.to_owned()),
                ),
                None => {
                    return Err(format!(
                        "azure: no API key: set the environment variable `{AZURE_OPENAI_API_KEY}` (or `AzureConfig::api_key`)"
                    ));
                }
            },
        };
        headers.push((
            HeaderName::from_static("api-key"),
            secret_header(key.expose())?,
        ));
        Ok((url, hint, Some(key)))
    }
}

impl Provider for OpenAi {
    fn name(&self) -> &str {
        &self.name
    }

    fn model(&self, model: &str) -> Result<Arc<dyn Model>, String> {
        Ok(Arc::new(self.chat_model(model)?))
    }
}

pub(super) fn secret_header(value: &str) -> Result<HeaderValue, String> {
    let mut value = HeaderValue::from_str(value).map_err(|_| {
        "the API key contains characters that cannot be sent in a header".to_owned()
    })?;
    value.set_sensitive(true);
    Ok(value)
}

pub(super) fn check_url(provider: &str, url: &str) -> Result<(), String> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| format!("{provider}: `{url}` is not a valid URL: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") if uri.host().is_some() => Ok(()),
        _ => Err(format!(
            "{provider}: `{url}` is not an http(s) URL with a host"
        )),
    }
}

/// `OLLAMA_HOST` as Ollama reads it: `host`, `host:port` or a URL; the port defaults to 11434.
fn ollama_host(host: &str) -> String {
    let host = host.trim().trim_end_matches('/');
    let (scheme, rest) = match host.split_once("://") {
        Some((scheme, rest)) => (scheme, rest),
        None => ("http", host),
    };
    let has_port = rest
        .rsplit_once(':')
        .is_some_and(|(_, port)| !port.is_empty() && port.chars().all(|c| c.is_ascii_digit()));
    if has_port || scheme == "https" || rest.contains('/') {
        format!("{scheme}://{rest}")
    } else {
        format!("{scheme}://{rest}:11434")
    }
}

/// One model of an OpenAI-protocol provider.
struct ChatModel {
    provider: String,
    model: String,
    timeout: Duration,
    stream: bool,
    structured_output: StructuredOutput,
    /// Where to send requests; `Err`: what configuration is missing (reported per call).
    target: Result<Target, String>,
}

/// Where a provider's requests go, with their headers, where the key came from, and the key.
pub(super) struct Target {
    pub(super) url: String,
    pub(super) headers: Vec<(HeaderName, HeaderValue)>,
    pub(super) key: KeyHint,
    pub(super) secret: Option<ApiKey>,
}

impl Target {
    /// POSTs `body` and reads the whole answer with `parse`: a failed status is classified (a
    /// rejected key named by where it came from), and the key is scrubbed from every error.
    pub(super) async fn exchange(
        &self,
        provider: &str,
        body: &Value,
        timeout: Duration,
        parse: impl FnOnce(&[u8]) -> Result<ModelResponse, AgentError>,
    ) -> Result<ModelResponse, AgentError> {
        let answer = async {
            let body = serde_json::to_vec(body).map_err(|e| {
                AgentError::permanent(format!("{provider}: request not serializable: {e}"))
            })?;
            let response = http::post_json(&self.url, &self.headers, body, timeout).await?;
            if !response.status.is_success() {
                return Err(http::classify(
                    provider,
                    &response,
                    &self.key,
                    SystemTime::now(),
                ));
            }
            parse(&response.body)
        };
        answer.await.map_err(|e| scrub(e, self.secret.as_ref()))
    }

    /// POSTs `body` and hands each server-sent event's data of a successful answer to
    /// `on_data` as it comes ([`http::post_sse`]); a failed status is classified, and the key is
    /// scrubbed from every error.
    pub(super) async fn stream(
        &self,
        provider: &str,
        body: &Value,
        timeout: Duration,
        on_data: impl FnMut(&str) -> Result<(), AgentError>,
    ) -> Result<(), AgentError> {
        let streamed = async {
            let body = serde_json::to_vec(body).map_err(|e| {
                AgentError::permanent(format!("{provider}: request not serializable: {e}"))
            })?;
            match http::post_sse(&self.url, &self.headers, body, timeout, on_data).await? {
                http::Streamed::Done => Ok(()),
                http::Streamed::Failed(response) => Err(http::classify(
                    provider,
                    &response,
                    &self.key,
                    SystemTime::now(),
                )),
            }
        };
        streamed.await.map_err(|e| scrub(e, self.secret.as_ref()))
    }
}

impl fmt::Debug for ChatModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("ChatModel");
        s.field("provider", &self.provider)
            .field("model", &self.model)
            .field("timeout", &self.timeout)
            .field("stream", &self.stream)
            .field("structured_output", &self.structured_output);
        match &self.target {
            Ok(target) => s
                .field("url", &target.url)
                .field("api_key", &target.secret.as_ref().map(|_| "<redacted>")),
            Err(problem) => s.field("unusable", problem),
        };
        s.finish()
    }
}

impl Model for ChatModel {
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
            let mut body = request_body(&self.model, request, self.structured_output)
                .map_err(|e| AgentError::permanent(format!("{}: {e}", self.provider)))?;
            if !self.stream {
                return target
                    .exchange(&self.provider, &body, self.timeout, |bytes| {
                        parse_response(&self.provider, bytes)
                    })
                    .await;
            }
            body["stream"] = Value::Bool(true);
            body["stream_options"] = json!({ "include_usage": true });
            let mut answer = StreamedAnswer::default();
            target
                .stream(&self.provider, &body, self.timeout, |data| {
                    answer.take(&self.provider, data)
                })
                .await?;
            answer
                .finish(&self.provider)
                .map_err(|e| scrub(e, target.secret.as_ref()))
        })
    }
}

fn scrub(error: AgentError, secret: Option<&ApiKey>) -> AgentError {
    match secret {
        Some(secret)
            if !secret.expose().is_empty() && error.message().contains(secret.expose()) =>
        {
            let message = error.message().replace(secret.expose(), "<redacted>");
            AgentError::from_class(error.class(), message, error.retry_after())
        }
        _ => error,
    }
}

/// The chat-completions request body for `request`.
///
/// ```
/// use flock::model::{Message, ModelRequest, OutputFormat, Role, StructuredOutput, openai::request_body};
/// use serde_json::json;
///
/// let request = ModelRequest {
///     model: "gpt-4o-mini".into(),
///     agent: "summarize".into(),
///     messages: vec![Message::new(Role::User, "Summarize: …")],
///     output: OutputFormat::new("Summary", json!({
///         "type": "object",
///         "properties": { "summary": { "type": "string" } },
///         "required": ["summary"]
///     })),
///     tools: vec![],
/// };
/// let body = request_body("gpt-4o-mini", &request, StructuredOutput::JsonSchema).unwrap();
/// assert_eq!(body["response_format"]["json_schema"]["strict"], true);
/// assert_eq!(body["response_format"]["json_schema"]["schema"]["additionalProperties"], false);
/// let body = request_body("gpt-4o-mini", &request, StructuredOutput::JsonObject).unwrap();
/// assert_eq!(body["response_format"], json!({ "type": "json_object" }));
/// ```
pub fn request_body(
    model: &str,
    request: &ModelRequest,
    mode: StructuredOutput,
) -> Result<Value, String> {
    let mut body = serde_json::Map::new();
    body.insert("model".into(), Value::String(model.to_owned()));
    body.insert(
        "messages".into(),
        Value::Array(request.messages.iter().map(wire_message).collect()),
    );
    match mode {
        StructuredOutput::JsonSchema => {
            let schema = strict_schema(&request.output.schema).map_err(|e| {
                format!(
                    "the output type `{}` cannot be sent as a strict JSON Schema: {e} (or configure `StructuredOutput::JsonObject` for this model)",
                    request.output.name
                )
            })?;
            body.insert(
                "response_format".into(),
                json!({
                    "type": "json_schema",
                    "json_schema": {
                        "name": wire_name(&request.output.name),
                        "schema": schema,
                        "strict": true,
                    }
                }),
            );
        }
        StructuredOutput::JsonObject => {
            body.insert("response_format".into(), json!({ "type": "json_object" }));
        }
        StructuredOutput::Prompted => {}
    }
    if !request.tools.is_empty() {
        let tools = request
            .tools
            .iter()
            .map(|tool| {
                let mut function = serde_json::Map::new();
                function.insert("name".into(), Value::String(tool.name.clone()));
                function.insert(
                    "description".into(),
                    Value::String(tool.description.clone()),
                );
                let strict = match mode {
                    StructuredOutput::JsonSchema => strict_schema(&tool.parameters).ok(),
                    _ => None,
                };
                match strict {
                    Some(parameters) => {
                        function.insert("parameters".into(), parameters);
                        function.insert("strict".into(), Value::Bool(true));
                    }
                    None => {
                        function.insert("parameters".into(), tool.parameters.clone());
                    }
                }
                json!({ "type": "function", "function": function })
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
    }
    Ok(Value::Object(body))
}

fn wire_message(message: &Message) -> Value {
    match message.role {
        Role::System => json!({ "role": "system", "content": message.content }),
        Role::User => json!({ "role": "user", "content": message.content }),
        Role::Assistant if message.tool_calls.is_empty() => {
            json!({ "role": "assistant", "content": message.content })
        }
        Role::Assistant => {
            let content = if message.content.is_empty() {
                Value::Null
            } else {
                Value::String(message.content.clone())
            };
            let calls: Vec<Value> = message
                .tool_calls
                .iter()
                .map(|call| {
                    json!({
                        "id": call.id,
                        "type": "function",
                        "function": { "name": call.name, "arguments": call.arguments },
                    })
                })
                .collect();
            json!({ "role": "assistant", "content": content, "tool_calls": calls })
        }
        Role::Tool => json!({
            "role": "tool",
            "tool_call_id": message.tool_call_id.clone().unwrap_or_default(),
            "content": message.content,
        }),
    }
}

#[derive(Deserialize)]
struct WireResponse {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    choices: Vec<WireChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireChoice {
    message: WireMessage,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<WireToolCall>>,
    #[serde(default)]
    refusal: Option<String>,
}

#[derive(Deserialize)]
struct WireToolCall {
    id: String,
    function: WireFunction,
}

#[derive(Deserialize)]
struct WireFunction {
    name: String,
    #[serde(default)]
    arguments: String,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
}

/// Reads a successful chat-completions response. A body that is not the expected JSON (cut off,
/// garbled by a proxy) is [`Transient`](AgentError::Transient); a refusal, or an answer the
/// provider's content filter withheld, is [`Permanent`](AgentError::Permanent); an answer cut
/// off at the output token limit (`finish_reason: "length"`) is
/// [`InvalidOutput`](AgentError::InvalidOutput) saying so (not "invalid JSON", which a repair
/// re-ask would only cut off again).
fn parse_response(provider: &str, body: &[u8]) -> Result<ModelResponse, AgentError> {
    let wire: WireResponse = serde_json::from_slice(body).map_err(|e| {
        let shown: String = String::from_utf8_lossy(body).chars().take(200).collect();
        AgentError::transient(format!(
            "{provider}: the response is not a valid chat completion ({e}); it began with: {shown:?}"
        ))
    })?;
    answer_of(provider, wire)
}

/// The answer in a chat completion (whole, or put together from a stream).
fn answer_of(provider: &str, wire: WireResponse) -> Result<ModelResponse, AgentError> {
    let usage = wire
        .usage
        .map(|u| Usage {
            prompt_tokens: u.prompt_tokens.unwrap_or(0),
            completion_tokens: u.completion_tokens.unwrap_or(0),
            ..Usage::default()
        })
        .unwrap_or_default();
    let choice =
        wire.choices.into_iter().next().ok_or_else(|| {
            AgentError::transient(format!("{provider}: the response has no choices"))
        })?;
    if let Some(refusal) = choice.message.refusal.filter(|r| !r.is_empty()) {
        return Err(AgentError::permanent(format!(
            "{provider}: the model refused to answer: {refusal}"
        )));
    }
    match choice.finish_reason.as_deref() {
        Some("length") => {
            return Err(AgentError::invalid_output(format!(
                "{provider}: the answer was cut off at the model's output token limit (finish_reason `length`, after {} completion tokens): raise the model's `max_tokens`, or ask for a shorter answer",
                usage.completion_tokens
            )));
        }
        Some("content_filter") => {
            return Err(AgentError::permanent(format!(
                "{provider}: the provider's content filter withheld the answer (finish_reason `content_filter`)"
            )));
        }
        _ => {}
    }
    Ok(ModelResponse {
        content: choice.message.content.unwrap_or_default(),
        tool_calls: choice
            .message
            .tool_calls
            .unwrap_or_default()
            .into_iter()
            .map(|call| ToolCall {
                id: call.id,
                name: call.function.name,
                arguments: call.function.arguments,
            })
            .collect(),
        usage,
        model: wire.model,
    })
}

#[derive(Deserialize)]
struct WireChunk {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    choices: Vec<WireChunkChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct WireChunkChoice {
    #[serde(default)]
    delta: WireDelta,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct WireDelta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<WireToolDelta>>,
}

#[derive(Deserialize)]
struct WireToolDelta {
    #[serde(default)]
    index: usize,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<WireFunctionDelta>,
}

#[derive(Deserialize)]
struct WireFunctionDelta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

/// A streamed chat completion as it comes: text and refusal deltas appended, tool calls put
/// together by index, the finish reason and the usage of the last chunks; whole at `[DONE]`.
#[derive(Default)]
struct StreamedAnswer {
    model: Option<String>,
    content: String,
    refusal: String,
    tool_calls: BTreeMap<usize, (String, String, String)>,
    finish_reason: Option<String>,
    usage: Option<WireUsage>,
    done: bool,
}

impl StreamedAnswer {
    /// One event's data.
    fn take(&mut self, provider: &str, data: &str) -> Result<(), AgentError> {
        if data.trim() == "[DONE]" {
            self.done = true;
            return Ok(());
        }
        let chunk: WireChunk = serde_json::from_str(data).map_err(|e| {
            let shown: String = data.chars().take(200).collect();
            AgentError::transient(format!(
                "{provider}: a streamed chunk is not a valid chat completion chunk ({e}): {shown:?}"
            ))
        })?;
        if let Some(error) = chunk.error {
            let message = error["message"]
                .as_str()
                .map_or_else(|| error.to_string(), str::to_owned);
            return Err(AgentError::transient(format!(
                "{provider}: the stream reported an error: {message}"
            )));
        }
        if chunk.model.is_some() {
            self.model = chunk.model;
        }
        if chunk.usage.is_some() {
            self.usage = chunk.usage;
        }
        for choice in chunk.choices {
            if let Some(text) = choice.delta.content {
                crate::events::stream_text(&text);
                self.content.push_str(&text);
            }
            if let Some(text) = choice.delta.refusal {
                self.refusal.push_str(&text);
            }
            for call in choice.delta.tool_calls.unwrap_or_default() {
                let entry = self.tool_calls.entry(call.index).or_default();
                if let Some(id) = call.id {
                    entry.0 = id;
                }
                if let Some(function) = call.function {
                    if let Some(name) = function.name {
                        entry.1.push_str(&name);
                    }
                    if let Some(arguments) = function.arguments {
                        entry.2.push_str(&arguments);
                    }
                }
            }
            if choice.finish_reason.is_some() {
                self.finish_reason = choice.finish_reason;
            }
        }
        Ok(())
    }

    /// The whole answer; a stream that ended before `[DONE]` was cut off.
    fn finish(self, provider: &str) -> Result<ModelResponse, AgentError> {
        if !self.done {
            return Err(AgentError::transient(format!(
                "{provider}: the stream ended before `[DONE]` (after {} characters of the answer): cut off",
                self.content.chars().count()
            )));
        }
        let tool_calls: Vec<WireToolCall> = self
            .tool_calls
            .into_values()
            .map(|(id, name, arguments)| WireToolCall {
                id,
                function: WireFunction { name, arguments },
            })
            .collect();
        answer_of(
            provider,
            WireResponse {
                model: self.model,
                choices: vec![WireChoice {
                    message: WireMessage {
                        content: Some(self.content),
                        tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
                        refusal: (!self.refusal.is_empty()).then_some(self.refusal),
                    },
                    finish_reason: self.finish_reason,
                }],
                usage: self.usage,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorClass;

    fn streamed(events: &[&str]) -> Result<ModelResponse, AgentError> {
        let mut answer = StreamedAnswer::default();
        for event in events {
            answer.take("openai", event)?;
        }
        answer.finish("openai")
    }

    #[test]
    fn a_streamed_answer_is_put_together_like_a_whole_one() {
        let response = streamed(&[
            r#"{"model": "gpt-x", "choices": [{"delta": {"role": "assistant", "content": "{\"ans"}}]}"#,
            r#"{"choices": [{"delta": {"content": "wer\": 42}"}}]}"#,
            r#"{"choices": [{"delta": {}, "finish_reason": "stop"}]}"#,
            r#"{"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 5}}"#,
            "[DONE]",
        ])
        .unwrap();
        assert_eq!(response.content, r#"{"answer": 42}"#);
        assert_eq!(response.model.as_deref(), Some("gpt-x"));
        assert_eq!(
            (
                response.usage.prompt_tokens,
                response.usage.completion_tokens
            ),
            (12, 5)
        );
        // tool calls arrive in pieces, by index
        let response = streamed(&[
            r#"{"choices": [{"delta": {"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "add", "arguments": ""}}]}}]}"#,
            r#"{"choices": [{"delta": {"tool_calls": [{"index": 1, "id": "c2", "function": {"name": "sub", "arguments": "{\"n\""}}]}}]}"#,
            r#"{"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{\"n\": 1}"}}]}}]}"#,
            r#"{"choices": [{"delta": {"tool_calls": [{"index": 1, "function": {"arguments": ": 2}"}}]}, "finish_reason": "tool_calls"}]}"#,
            "[DONE]",
        ])
        .unwrap();
        let calls: Vec<(&str, &str, &str)> = response
            .tool_calls
            .iter()
            .map(|c| (c.id.as_str(), c.name.as_str(), c.arguments.as_str()))
            .collect();
        assert_eq!(
            calls,
            [("c1", "add", r#"{"n": 1}"#), ("c2", "sub", r#"{"n": 2}"#)]
        );
    }

    #[test]
    fn a_stream_cut_off_garbled_or_reporting_an_error_is_named() {
        let error = streamed(&[r#"{"choices": [{"delta": {"content": "{\"a"}}]}"#]).unwrap_err();
        assert_eq!(error.class(), ErrorClass::Transient);
        assert!(
            error
                .message()
                .contains("the stream ended before `[DONE]` (after 3 characters of the answer)"),
            "{error}"
        );
        let error = streamed(&["<html>"]).unwrap_err();
        assert_eq!(error.class(), ErrorClass::Transient);
        assert!(
            error
                .message()
                .contains("not a valid chat completion chunk"),
            "{error}"
        );
        let error = streamed(&[r#"{"error": {"message": "overloaded"}}"#]).unwrap_err();
        assert_eq!(
            error.message(),
            "openai: the stream reported an error: overloaded"
        );
        // cut off at the token limit: named like a whole answer's
        let error = streamed(&[
            r#"{"choices": [{"delta": {"content": "{"}, "finish_reason": "length"}]}"#,
            "[DONE]",
        ])
        .unwrap_err();
        assert_eq!(error.class(), ErrorClass::InvalidOutput);
    }

    fn env(
        vars: &'static [(&'static str, &'static str)],
    ) -> impl Fn(&str) -> Option<String> + Send + Sync {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn ollama_host_forms() {
        assert_eq!(ollama_host("localhost"), "http://localhost:11434");
        assert_eq!(ollama_host("0.0.0.0:9999"), "http://0.0.0.0:9999");
        assert_eq!(ollama_host("http://gpu:11434/"), "http://gpu:11434");
        assert_eq!(
            ollama_host("https://ollama.example.com"),
            "https://ollama.example.com"
        );
    }

    #[test]
    fn openai_reads_env_when_a_model_is_resolved() {
        let provider = OpenAi::new(OpenAiConfig::default()).with_env(env(&[
            ("OPENAI_API_KEY", "sk-env-key"),
            ("OPENAI_BASE_URL", "http://127.0.0.1:9/v1/"),
            ("OPENAI_ORG_ID", "org-1"),
        ]));
        let model = provider.chat_model("gpt-4o").unwrap();
        let target = model.target.as_ref().unwrap();
        assert_eq!(target.url, "http://127.0.0.1:9/v1/chat/completions");
        assert_eq!(target.key, KeyHint::Env("OPENAI_API_KEY".into()));
        let names: Vec<_> = target.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["user-agent", "authorization", "openai-organization"]
        );
        let debug = format!("{model:?} {provider:?}");
        assert!(!debug.contains("sk-env-key"), "{debug}");
    }

    #[test]
    fn missing_openai_key_names_the_variable_at_call_time() {
        let provider = OpenAi::new(OpenAiConfig::default()).with_env(|_| None);
        let model = provider.chat_model("gpt-4o").unwrap();
        let problem = model.target.as_ref().err().unwrap();
        assert!(problem.contains("`OPENAI_API_KEY`"), "{problem}");
    }

    #[test]
    fn azure_url_and_header() {
        let provider = OpenAi::azure(AzureConfig::default()).with_env(env(&[
            ("AZURE_OPENAI_API_KEY", "azure-secret"),
            ("AZURE_OPENAI_ENDPOINT", "https://res.openai.azure.com/"),
        ]));
        let model = provider.chat_model("my-gpt4o").unwrap();
        let target = model.target.as_ref().unwrap();
        assert_eq!(
            target.url,
            "https://res.openai.azure.com/openai/deployments/my-gpt4o/chat/completions?api-version=2024-10-21"
        );
        assert!(
            target
                .headers
                .iter()
                .any(|(n, v)| n == "api-key" && v.is_sensitive())
        );
        assert!(provider.chat_model("a/b").is_ok_and(|m| m.target.is_err()));
        let no_endpoint = OpenAi::azure(AzureConfig::default()).with_env(|_| None);
        let problem = no_endpoint.chat_model("d").unwrap().target.err().unwrap();
        assert!(problem.contains("AZURE_OPENAI_ENDPOINT"), "{problem}");
    }

    #[test]
    fn compatible_needs_a_base_url_and_optional_key() {
        let provider = OpenAi::compatible("vllm", OpenAiConfig::default());
        let problem = provider.chat_model("m").unwrap().target.err().unwrap();
        assert!(problem.contains("base URL"), "{problem}");
        let provider = OpenAi::compatible(
            "vllm",
            OpenAiConfig {
                base_url: Some("http://localhost:8000/v1".into()),
                ..OpenAiConfig::default()
            },
        )
        .with_env(|_| None);
        let model = provider.chat_model("m").unwrap();
        assert!(model.target.as_ref().unwrap().secret.is_none());
    }

    #[test]
    fn responses_parse_and_garbage_is_transient() {
        let ok = br#"{"choices":[{"message":{"role":"assistant","content":"{\"a\":1}"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15}}"#;
        let response = parse_response("openai", ok).unwrap();
        assert_eq!(response.content, r#"{"a":1}"#);
        assert_eq!(response.usage.prompt_tokens, 12);
        for bad in [&b"{\"choices\": [{\"mess"[..], b"<html>502</html>", b"{}"] {
            let error = parse_response("openai", bad).unwrap_err();
            assert_eq!(error.class(), ErrorClass::Transient, "{error}");
        }
        let cut = br#"{"choices":[{"message":{"content":"{\"a\": [1, 2"},"finish_reason":"length"}],"usage":{"prompt_tokens":12,"completion_tokens":4096}}"#;
        let error = parse_response("openai", cut).unwrap_err();
        assert_eq!(error.class(), ErrorClass::InvalidOutput, "{error}");
        assert!(
            error
                .message()
                .contains("cut off at the model's output token limit (finish_reason `length`, after 4096 completion tokens)"),
            "{error}"
        );
        let filtered =
            br#"{"choices":[{"message":{"content":""},"finish_reason":"content_filter"}]}"#;
        assert_eq!(
            parse_response("openai", filtered).unwrap_err().class(),
            ErrorClass::Permanent
        );
        let refusal =
            br#"{"choices":[{"message":{"content":null,"refusal":"I can't help with that."}}]}"#;
        assert_eq!(
            parse_response("openai", refusal).unwrap_err().class(),
            ErrorClass::Permanent
        );
    }

    #[test]
    fn scrub_removes_the_key() {
        let key = ApiKey::new("sk-secret-123");
        let error = scrub(
            AgentError::permanent("Incorrect API key provided: sk-secret-123"),
            Some(&key),
        );
        assert_eq!(error.message(), "Incorrect API key provided: <redacted>");
    }
}
