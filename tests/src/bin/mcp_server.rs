//! An MCP server for the tests, written with rmcp: `mcp_server` speaks MCP on stdin and stdout;
//! `mcp_server http` serves streamable HTTP on a free loopback port and prints
//! `listening on http://127.0.0.1:PORT/mcp`. Every tool call is noted in the file named by
//! `FLOCK_MCP_LEDGER` (when set), so a test can count what ran. `FLOCK_MCP_SECRET` (when set)
//! is what `whoami` answers with: a credential that reaches the server only through its
//! environment.

use std::io::Write;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, ServerCapabilities, ServerConfig};
use rmcp::{ErrorData, ServerHandler, ServiceExt, schemars, tool, tool_handler, tool_router};
use serde::Deserialize;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct Pair {
    /// The first number
    a: i64,
    /// The second number
    b: i64,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct Nap {
    /// How long to wait, the first time
    ms: u64,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct Text {
    /// The text
    text: String,
}

fn note(event: &str) {
    if let Ok(path) = std::env::var("FLOCK_MCP_LEDGER") {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("the ledger opens");
        // one write per line: calls run concurrently
        file.write_all(format!("{event}\n").as_bytes())
            .expect("the ledger is written");
        file.sync_all().ok();
    }
}

/// How often `event` is in the ledger.
fn count(event: &str) -> usize {
    std::env::var("FLOCK_MCP_LEDGER")
        .ok()
        .and_then(|path| std::fs::read_to_string(path).ok())
        .map(|text| text.lines().filter(|line| *line == event).count())
        .unwrap_or(0)
}

#[derive(Debug, Clone)]
struct Calc {
    #[allow(dead_code)]
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Calc {
    #[tool(description = "Adds two numbers")]
    fn add(&self, Parameters(Pair { a, b }): Parameters<Pair>) -> String {
        note(&format!("add {a} {b}"));
        format!("{a} + {b} = {}", a + b)
    }

    #[tool(description = "Shouts the text")]
    fn shout(&self, Parameters(Text { text }): Parameters<Text>) -> String {
        note(&format!("shout {text}"));
        text.to_uppercase()
    }

    #[tool(description = "Says who the server runs as")]
    fn whoami(&self) -> String {
        note("whoami");
        match std::env::var("FLOCK_MCP_SECRET") {
            Ok(secret) => format!("a server holding a secret of {} bytes", secret.len()),
            Err(_) => "a server without a secret".to_owned(),
        }
    }

    #[tool(description = "Refuses, as a tool that fails does")]
    fn refuse(&self) -> Result<CallToolResult, ErrorData> {
        note("refuse");
        Ok(CallToolResult::error(vec![ContentBlock::text(
            "refused: the ledger is closed",
        )]))
    }

    #[tool(description = "Notes its start, waits `ms` milliseconds the first time, then answers")]
    async fn nap(&self, Parameters(Nap { ms }): Parameters<Nap>) -> String {
        let first = count("nap start") == 0;
        note("nap start");
        if first {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
        note("nap");
        "rested".to_owned()
    }

    #[tool(description = "Makes the server exit at once")]
    fn die(&self) -> String {
        note("die");
        std::process::exit(3)
    }

    #[tool(description = "Never answers")]
    async fn stall(&self) -> String {
        note("stall");
        tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
        "late".to_owned()
    }
}

#[tool_handler]
impl ServerHandler for Calc {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

fn calc() -> Calc {
    Calc {
        tool_router: Calc::tool_router(),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::args().nth(1).as_deref() == Some("http") {
        return serve_http().await;
    }
    let server = calc().serve(rmcp::transport::stdio()).await?;
    server.waiting().await?;
    Ok(())
}

/// Streamable HTTP on 127.0.0.1, one hyper connection per client.
async fn serve_http() -> Result<(), Box<dyn std::error::Error>> {
    use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
    use rmcp::transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService,
    };
    let service = StreamableHttpService::new(
        || Ok(calc()),
        std::sync::Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("listening on http://{}/mcp", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let service = hyper_util::service::TowerToHyperService::new(service.clone());
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}
