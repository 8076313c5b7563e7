//! The MCP client side of the model layer (feature `mcp`): how a worker reaches an MCP server
//! ([`McpServer`]) and its connections to them ([`McpClients`]). The steps that call them and
//! the user-facing documentation are in [`crate::mcp`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::{RoleClient, RunningService};
use serde_json::Value;

use super::ToolDefinition;
use crate::error::AgentError;

/// How long a server may take to start and to answer one request, unless set.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// An MCP server as a worker reaches it: its name (what agents name in `#[agent(mcp = [..])]`),
/// how to connect, and how long to wait for it.
#[derive(Clone)]
pub struct McpServer {
    name: String,
    transport: Transport,
    timeout: Duration,
}

#[derive(Clone)]
enum Transport {
    Stdio {
        command: String,
        args: Vec<String>,
        env: Vec<(String, String)>,
    },
    Http {
        url: String,
        headers: Vec<(String, String)>,
    },
}

impl McpServer {
    /// A server run as a child process that speaks MCP on its stdin and stdout.
    pub fn stdio(name: impl Into<String>, command: impl Into<String>) -> Self {
        McpServer {
            name: name.into(),
            transport: Transport::Stdio {
                command: command.into(),
                args: Vec::new(),
                env: Vec::new(),
            },
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// A server reached over streamable HTTP at `url` (e.g. `http://127.0.0.1:8000/mcp`).
    pub fn http(name: impl Into<String>, url: impl Into<String>) -> Self {
        McpServer {
            name: name.into(),
            transport: Transport::Http {
                url: url.into(),
                headers: Vec::new(),
            },
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// An argument of the command (stdio).
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        if let Transport::Stdio { args, .. } = &mut self.transport {
            args.push(arg.into());
        }
        self
    }

    /// Arguments of the command (stdio).
    pub fn args<S: Into<String>>(mut self, more: impl IntoIterator<Item = S>) -> Self {
        if let Transport::Stdio { args, .. } = &mut self.transport {
            args.extend(more.into_iter().map(Into::into));
        }
        self
    }

    /// An environment variable of the command (stdio), e.g. a token: kept in this process only.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        if let Transport::Stdio { env, .. } = &mut self.transport {
            env.push((key.into(), value.into()));
        }
        self
    }

    /// A header of every request (HTTP), e.g. `Authorization`: kept in this process only.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        if let Transport::Http { headers, .. } = &mut self.transport {
            headers.push((name.into(), value.into()));
        }
        self
    }

    /// How long the server may take to start and to answer one request (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The server's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Checks what can be checked before the first call: a name, a command, a URL that parses.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.name.is_empty() || self.name.contains(char::is_whitespace) {
            return Err(format!(
                "MCP server name `{}`: a name is not empty and has no spaces",
                self.name
            ));
        }
        match &self.transport {
            Transport::Stdio { command, .. } if command.is_empty() => {
                Err(format!("MCP server `{}`: the command is empty", self.name))
            }
            Transport::Http { url, headers } => {
                let parsed: Result<hyper::http::Uri, _> = url.parse();
                match parsed {
                    Ok(uri) if matches!(uri.scheme_str(), Some("http" | "https")) => {}
                    _ => {
                        return Err(format!(
                            "MCP server `{}`: `{url}` is not an http(s) URL",
                            self.name
                        ));
                    }
                }
                for (name, _) in headers {
                    if hyper::http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                        return Err(format!(
                            "MCP server `{}`: `{name}` is not a header name",
                            self.name
                        ));
                    }
                }
                Ok(())
            }
            Transport::Stdio { .. } => Ok(()),
        }
    }

    fn describe(&self) -> String {
        match &self.transport {
            Transport::Stdio { command, .. } => format!("MCP server `{}` (`{command}`)", self.name),
            Transport::Http { url, .. } => format!("MCP server `{}` ({url})", self.name),
        }
    }
}

/// Credentials are shown by name only.
impl std::fmt::Debug for McpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = |pairs: &[(String, String)]| -> Vec<String> {
            pairs.iter().map(|(k, _)| format!("{k}=…")).collect()
        };
        match &self.transport {
            Transport::Stdio { command, args, env } => f
                .debug_struct("McpServer")
                .field("name", &self.name)
                .field("command", command)
                .field("args", args)
                .field("env", &names(env))
                .field("timeout", &self.timeout)
                .finish(),
            Transport::Http { url, headers } => f
                .debug_struct("McpServer")
                .field("name", &self.name)
                .field("url", url)
                .field("headers", &names(headers))
                .field("timeout", &self.timeout)
                .finish(),
        }
    }
}

type Client = RunningService<RoleClient, ()>;

/// The MCP servers of one `Flock` and, in this process, one connection to each (opened at the
/// first call, opened again after the server went away).
#[derive(Default)]
pub(crate) struct McpClients {
    servers: BTreeMap<String, Slot>,
}

struct Slot {
    server: McpServer,
    client: tokio::sync::Mutex<Option<Arc<Client>>>,
}

impl std::fmt::Debug for McpClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.servers.values().map(|slot| &slot.server))
            .finish()
    }
}

impl McpClients {
    /// Adds a server; a second one of the same name is an error.
    pub(crate) fn add(&mut self, server: McpServer) -> Result<(), String> {
        server.check()?;
        if self.servers.contains_key(&server.name) {
            return Err(format!("two MCP servers are named `{}`", server.name));
        }
        self.servers.insert(
            server.name.clone(),
            Slot {
                server,
                client: tokio::sync::Mutex::new(None),
            },
        );
        Ok(())
    }

    /// Whether server `name` is configured.
    pub(crate) fn has(&self, name: &str) -> bool {
        self.servers.contains_key(name)
    }

    fn slot(&self, name: &str) -> Result<&Slot, AgentError> {
        self.servers.get(name).ok_or_else(|| {
            AgentError::permanent(format!(
                "MCP server `{name}` is not configured on this worker (`Flock::builder().mcp_server(McpServer::stdio(\"{name}\", ..))`)"
            ))
        })
    }

    /// The server's tools, as the model is offered them.
    pub(crate) async fn list(&self, name: &str) -> Result<Vec<ToolDefinition>, AgentError> {
        let slot = self.slot(name)?;
        let client = slot.connect().await?;
        let listed = tokio::time::timeout(slot.server.timeout, client.list_all_tools()).await;
        let tools = slot.answered(listed, "tools/list").await?;
        Ok(tools
            .into_iter()
            .map(|tool| ToolDefinition {
                name: tool.name.to_string(),
                description: tool.description.map(|d| d.to_string()).unwrap_or_default(),
                parameters: Value::Object((*tool.input_schema).clone()),
            })
            .collect())
    }

    /// Calls tool `tool`; gives the model's answer (`error: …` for the tool's own error).
    pub(crate) async fn call(
        &self,
        name: &str,
        tool: &str,
        arguments: Value,
    ) -> Result<String, AgentError> {
        let slot = self.slot(name)?;
        let arguments = match arguments {
            Value::Object(map) => Some(map),
            Value::Null => None,
            other => {
                return Ok(format!(
                    "error: the arguments of tool `{tool}` are not an object: {other}"
                ));
            }
        };
        let client = slot.connect().await?;
        let mut params = CallToolRequestParams::new(tool.to_owned());
        params.arguments = arguments;
        let called = tokio::time::timeout(slot.server.timeout, client.call_tool(params)).await;
        let result = slot
            .answered(called, &format!("tools/call `{tool}`"))
            .await?;
        Ok(answer_of(result))
    }
}

impl Slot {
    /// The connection, opened if there is none.
    async fn connect(&self) -> Result<Arc<Client>, AgentError> {
        let mut client = self.client.lock().await;
        if let Some(client) = client.as_ref()
            && !client.is_closed()
        {
            return Ok(client.clone());
        }
        let opened = tokio::time::timeout(self.server.timeout, self.open()).await;
        let opened = match opened {
            Ok(opened) => opened?,
            Err(_) => {
                return Err(AgentError::transient(format!(
                    "{} did not finish starting (the MCP handshake) within {:?}",
                    self.server.describe(),
                    self.server.timeout
                )));
            }
        };
        let opened = Arc::new(opened);
        *client = Some(opened.clone());
        Ok(opened)
    }

    async fn open(&self) -> Result<Client, AgentError> {
        let server = &self.server;
        match &server.transport {
            Transport::Stdio { command, args, env } => {
                let mut cmd = tokio::process::Command::new(command);
                cmd.args(args)
                    .envs(env.iter().map(|(k, v)| (k, v)))
                    .kill_on_drop(true);
                let (transport, _stderr) = rmcp::transport::TokioChildProcess::builder(cmd)
                    .stderr(std::process::Stdio::inherit())
                    .spawn()
                    .map_err(|e| {
                        AgentError::permanent(format!(
                            "{} could not be started: {e}",
                            server.describe()
                        ))
                    })?;
                ().serve(transport).await.map_err(|e| {
                    AgentError::transient(format!(
                        "{} did not complete the MCP handshake: {e} (a server that exits, or writes something other than MCP to its stdout)",
                        server.describe()
                    ))
                })
            }
            Transport::Http { url, headers } => {
                use rmcp::transport::StreamableHttpClientTransport;
                use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
                let mut custom = std::collections::HashMap::new();
                for (name, value) in headers {
                    let name = hyper::http::HeaderName::from_bytes(name.as_bytes())
                        .map_err(|e| AgentError::permanent(e.to_string()))?;
                    let value = hyper::http::HeaderValue::from_str(value).map_err(|_| {
                        AgentError::permanent(format!(
                            "{}: the value of header `{name}` is not a header value",
                            server.describe()
                        ))
                    })?;
                    custom.insert(name, value);
                }
                let config = StreamableHttpClientTransportConfig::with_uri(url.as_str())
                    .custom_headers(custom);
                let transport = StreamableHttpClientTransport::with_client(http_client()?, config);
                ().serve(transport).await.map_err(|e| {
                    AgentError::transient(format!(
                        "{} did not complete the MCP handshake: {e}",
                        server.describe()
                    ))
                })
            }
        }
    }

    /// The answer to one request, or its error, classified; after a failure the connection is
    /// dropped, so the next attempt opens a new one.
    async fn answered<T>(
        &self,
        answered: Result<Result<T, rmcp::ServiceError>, tokio::time::error::Elapsed>,
        request: &str,
    ) -> Result<T, AgentError> {
        let error = match answered {
            Ok(Ok(answer)) => return Ok(answer),
            Ok(Err(error)) => error,
            Err(_) => {
                self.drop_connection().await;
                return Err(AgentError::transient(format!(
                    "{} did not answer {request} within {:?}",
                    self.server.describe(),
                    self.server.timeout
                )));
            }
        };
        let server = self.server.describe();
        Err(match error {
            rmcp::ServiceError::McpError(e) => AgentError::permanent(format!(
                "{server} answered {request} with an error: {}",
                e.message
            )),
            rmcp::ServiceError::UnexpectedResponse => {
                self.drop_connection().await;
                AgentError::permanent(format!(
                    "{server} answered {request} with something that is not its answer"
                ))
            }
            other => {
                self.drop_connection().await;
                AgentError::transient(format!("{server} failed during {request}: {other}"))
            }
        })
    }

    async fn drop_connection(&self) {
        self.client.lock().await.take();
    }
}

/// The HTTP client of streamable-HTTP servers: rustls on the ring provider (the one the model
/// layer and the Temporal client use), the platform's roots.
fn http_client() -> Result<reqwest::Client, AgentError> {
    static CLIENT: std::sync::OnceLock<Result<reqwest::Client, String>> =
        std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            crate::observe::install_crypto_provider();
            let mut roots = rustls::RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let tls = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots)
                .with_no_client_auth();
            reqwest::Client::builder()
                .tls_backend_preconfigured(tls)
                .build()
                .map_err(|e| format!("the MCP HTTP client cannot be built: {e}"))
        })
        .clone()
        .map_err(AgentError::permanent)
}

/// The model's answer for a tool's result: its text (and structured content), `error: …` when
/// the tool says it failed.
fn answer_of(result: CallToolResult) -> String {
    let mut parts: Vec<String> = result
        .content
        .iter()
        .filter_map(|block| match serde_json::to_value(block) {
            Ok(Value::Object(map)) => match map.get("text") {
                Some(Value::String(text)) => Some(text.clone()),
                _ => Some(Value::Object(map).to_string()),
            },
            _ => None,
        })
        .collect();
    if parts.is_empty()
        && let Some(structured) = &result.structured_content
    {
        parts.push(structured.to_string());
    }
    let text = parts.join("\n");
    if result.is_error == Some(true) {
        format!("error: {text}")
    } else {
        text
    }
}
