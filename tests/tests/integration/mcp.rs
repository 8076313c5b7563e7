//! MCP servers as tools, on both executors, against real servers: the test crate's own rmcp
//! server (`mcp_server`: stdio, and streamable HTTP on a loopback port) and the reference server
//! `@modelcontextprotocol/server-everything` from npm (over stdio; `scripts/test` installs it).
//! Each MCP tool call is a step (`<server>.mcp`), the tool list one (`<server>.mcp_tools`);
//! servers that exit, hang or answer garbage end the run with an error naming them.

use std::future::IntoFuture;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use flock::mcp::McpServer;
use flock::model::{OpenAi, OpenAiConfig};
use flock::prelude::*;

use super::model::server::{FakeOpenAi, Reply, answer, tool_calls};
use super::support::unique;

const BOUND: Duration = Duration::from_secs(60);
const SERVER: &str = env!("CARGO_BIN_EXE_mcp_server");
/// What the stdio server's environment holds: it must never reach a history or a log.
const SECRET: &str = "mcp-secret-5f1d0c";

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Ask {
    /// What to work out
    pub question: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Worked {
    /// The answer
    pub answer: String,
}

/// Answer with the calculator's tools.
#[agent(mcp = ["calc"], retry(attempts = 2, initial_interval = "10ms"))]
async fn calc_user(input: Ask) -> Worked;

/// Answer with the reference server's tools.
#[agent(mcp = ["everything"], retry(attempts = 2, initial_interval = "10ms"))]
async fn everything_user(input: Ask) -> Worked;

fn ask() -> Ask {
    Ask {
        question: "what is 2 + 40, and shout hi".into(),
    }
}

fn provider(server: &FakeOpenAi) -> OpenAi {
    OpenAi::new(OpenAiConfig {
        api_key: Some("sk-mcp".into()),
        base_url: Some(server.base_url()),
        timeout: Duration::from_secs(10),
        ..OpenAiConfig::default()
    })
}

/// A local `Flock` and one on the test server, each with `server()` as its MCP server.
async fn both(
    queue: &str,
    replies: Vec<Reply>,
    server: impl Fn() -> McpServer,
) -> [(&'static str, Flock, FakeOpenAi); 2] {
    super::temporal::on_both(queue, replies, |model| {
        Flock::builder()
            .provider(provider(model))
            .model("openai/gpt-4o-mini")
            .mcp_server(server())
            .temporal(TemporalExecutorConfig {
                retry_interval: Duration::from_millis(10),
                ..Default::default()
            })
    })
    .await
}

fn ledger() -> PathBuf {
    std::env::temp_dir().join(format!("flock-mcp-{}-{}", std::process::id(), unique()))
}

fn count(ledger: &PathBuf, event: &str) -> usize {
    std::fs::read_to_string(ledger)
        .unwrap_or_default()
        .lines()
        .filter(|line| *line == event)
        .count()
}

/// The tool answers the model got in its second request.
fn tool_answers(model: &FakeOpenAi) -> Vec<String> {
    model.received()[1].tool_answers()
}

fn calc_script() -> Vec<Reply> {
    vec![
        tool_calls(
            &[
                ("c1", "add", r#"{"a": 2, "b": 40}"#),
                ("c2", "shout", r#"{"text": "hi"}"#),
                ("c3", "whoami", "{}"),
                ("c4", "refuse", "{}"),
            ],
            10,
        ),
        answer(r#"{"answer": "42, HI"}"#, 10, 5),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_uses_the_tools_of_an_rmcp_server_over_stdio_on_both_executors() {
    for executor in ["local", "temporal"] {
        let file = ledger();
        let path = file.to_string_lossy().into_owned();
        let server = || {
            McpServer::stdio("calc", SERVER)
                .env("FLOCK_MCP_LEDGER", path.clone())
                .env("FLOCK_MCP_SECRET", SECRET)
        };
        let [local, temporal] = both("mcp-stdio", calc_script(), server).await;
        let (_, flock, model) = if executor == "local" { local } else { temporal };
        let recorded =
            tokio::time::timeout(BOUND, flock.run(calc_user, ask()).recorded().into_future())
                .await
                .expect("the run ends");
        let worked = recorded
            .result
            .unwrap_or_else(|e| panic!("{executor}: {e}"));
        assert_eq!(worked.answer, "42, HI");
        // the server's tools were offered, with their schemas
        let offered: Vec<String> = model.received()[0].body["tools"]
            .as_array()
            .unwrap_or_else(|| panic!("{executor}: no tools in {}", model.received()[0].body))
            .iter()
            .map(|t| {
                t["function"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        for tool in ["add", "shout", "whoami", "refuse", "die", "stall"] {
            assert!(
                offered.contains(&tool.to_owned()),
                "{executor}: {offered:?}"
            );
        }
        assert_eq!(
            tool_answers(&model),
            [
                "2 + 40 = 42",
                "HI",
                "a server holding a secret of 17 bytes",
                "error: refused: the ledger is closed"
            ],
            "{executor}"
        );
        // each call ran once
        for event in ["add 2 40", "shout hi", "whoami", "refuse"] {
            assert_eq!(count(&file, event), 1, "{executor}: {event}");
        }
        let steps = super::support::step_names(&recorded.record);
        assert_eq!(
            steps,
            [
                "calc.mcp_tools",
                "calc_user.model",
                "calc.mcp",
                "calc.mcp",
                "calc.mcp",
                "calc.mcp",
                "calc_user.model"
            ],
            "{executor}"
        );
        if executor == "temporal" {
            let run_id = &recorded.record.run_id;
            let history = super::temporal::history(run_id).await;
            assert_eq!(history.activities, steps);
            // the credential stays in the worker's configuration
            let json = flock.history_json(run_id).await.unwrap();
            assert!(
                !String::from_utf8_lossy(&json).contains(SECRET),
                "the server's secret reached the history"
            );
        }
        let _ = std::fs::remove_file(&file);
    }
}

/// The stdio server's address when it serves streamable HTTP; killed when dropped.
struct HttpServer {
    child: Child,
    url: String,
}

impl HttpServer {
    fn start(ledger: &PathBuf) -> HttpServer {
        let mut child = Command::new(SERVER)
            .arg("http")
            .env("FLOCK_MCP_LEDGER", ledger)
            .stdout(Stdio::piped())
            .spawn()
            .expect("the MCP server starts");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("the server said `{line}`"))
            .to_owned();
        HttpServer { child, url }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_uses_the_tools_of_a_server_over_streamable_http_on_both_executors() {
    let script = vec![
        tool_calls(
            &[
                ("c1", "add", r#"{"a": 2, "b": 40}"#),
                ("c2", "shout", r#"{"text": "hi"}"#),
            ],
            10,
        ),
        answer(r#"{"answer": "42, HI"}"#, 10, 5),
    ];
    let file = ledger();
    let server = HttpServer::start(&file);
    let url = server.url.clone();
    for (executor, flock, model) in both("mcp-http", script, || {
        McpServer::http("calc", url.clone()).header("Authorization", format!("Bearer {SECRET}"))
    })
    .await
    {
        let worked = tokio::time::timeout(BOUND, flock.run(calc_user, ask()).into_future())
            .await
            .expect("the run ends")
            .unwrap_or_else(|e| panic!("{executor}: {e}"));
        assert_eq!(worked.answer, "42, HI");
        assert_eq!(tool_answers(&model), ["2 + 40 = 42", "HI"], "{executor}");
    }
    assert_eq!(count(&file, "add 2 40"), 2, "once per executor");
    let _ = std::fs::remove_file(&file);
}

/// The reference server from npm: `scripts/test` installs it into `.mcp-servers/` (or point
/// `FLOCK_MCP_EVERYTHING` at its `dist/index.js`).
fn everything() -> String {
    let path = std::env::var("FLOCK_MCP_EVERYTHING").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../.mcp-servers/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
        )
        .to_owned()
    });
    assert!(
        std::path::Path::new(&path).exists(),
        "the MCP reference server is not installed at {path}: run `npm install --prefix .mcp-servers @modelcontextprotocol/server-everything` in the workspace (scripts/test does), or set FLOCK_MCP_EVERYTHING to its dist/index.js"
    );
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_uses_the_tools_of_the_npm_reference_server_on_both_executors() {
    let script = vec![
        tool_calls(
            &[
                ("c1", "echo", r#"{"message": "hello"}"#),
                ("c2", "get-sum", r#"{"a": 2, "b": 3}"#),
            ],
            10,
        ),
        answer(r#"{"answer": "hello, 5"}"#, 10, 5),
    ];
    let index = everything();
    for (executor, flock, model) in both("mcp-everything", script, || {
        McpServer::stdio("everything", "node").args([index.as_str(), "stdio"])
    })
    .await
    {
        let worked = tokio::time::timeout(BOUND, flock.run(everything_user, ask()).into_future())
            .await
            .expect("the run ends")
            .unwrap_or_else(|e| panic!("{executor}: {e}"));
        assert_eq!(worked.answer, "hello, 5");
        assert_eq!(
            tool_answers(&model),
            ["Echo: hello", "The sum of 2 and 3 is 5."],
            "{executor}"
        );
    }
}

/// A server that exits, hangs, answers garbage, or cannot be started, and one that dies during
/// a call: the run fails within its bound with an error naming the server, on both executors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_that_exit_hang_or_answer_garbage_fail_the_run_naming_them_on_both_executors() {
    let short = Duration::from_secs(1);
    let cases: Vec<(&str, McpServer, &str)> = vec![
        (
            "exits",
            McpServer::stdio("calc", "sh").args(["-c", "exit 3"]),
            "did not complete the MCP handshake",
        ),
        (
            "hangs",
            McpServer::stdio("calc", "sleep").arg("60").timeout(short),
            "did not finish starting (the MCP handshake) within 1s",
        ),
        (
            "garbage",
            McpServer::stdio("calc", "sh")
                .args(["-c", "echo this is not MCP; sleep 60"])
                .timeout(short),
            "MCP server `calc`",
        ),
        (
            "missing",
            McpServer::stdio("calc", "/nonexistent/mcp-server"),
            "could not be started",
        ),
    ];
    for (case, server, expected) in cases {
        for (executor, flock, model) in
            both(&format!("mcp-bad-{case}"), calc_script(), || server.clone()).await
        {
            let error = tokio::time::timeout(BOUND, flock.run(calc_user, ask()).into_future())
                .await
                .unwrap_or_else(|_| panic!("{executor} {case}: the run hung"))
                .unwrap_err()
                .to_string();
            assert!(
                error.contains("calc.mcp_tools") && error.contains(expected),
                "{executor} {case}: {error}"
            );
            assert!(model.received().is_empty(), "{executor} {case}");
        }
    }

    // a server that dies during a call: the call is tried again (a new server process) and,
    // dying each time, fails the run naming the server; one that stalls times out
    for (tool, expected) in [
        ("die", "failed during tools/call `die`"),
        ("stall", "did not answer tools/call `stall` within 1s"),
    ] {
        let script = vec![tool_calls(&[("c1", tool, "{}")], 10)];
        let file = ledger();
        let path = file.to_string_lossy().into_owned();
        for (executor, flock, _model) in both(&format!("mcp-bad-{tool}"), script, || {
            McpServer::stdio("calc", SERVER)
                .env("FLOCK_MCP_LEDGER", path.clone())
                .timeout(short)
        })
        .await
        {
            let error = tokio::time::timeout(BOUND, flock.run(calc_user, ask()).into_future())
                .await
                .unwrap_or_else(|_| panic!("{executor} {tool}: the run hung"))
                .unwrap_err()
                .to_string();
            assert!(
                error.contains("calc.mcp") && error.contains(expected),
                "{executor} {tool}: {error}"
            );
        }
        // the executor's default 3 attempts (MCP steps take none of the agent's settings), on
        // each executor
        assert_eq!(count(&file, tool), 6, "{tool}");
        let _ = std::fs::remove_file(&file);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_mcp_configuration_is_an_error_at_build() {
    for (server, expected) in [
        (
            McpServer::http("calc", "not a url"),
            "MCP server `calc`: `not a url` is not an http(s) URL",
        ),
        (McpServer::stdio("", "x"), "a name is not empty"),
        (
            McpServer::http("calc", "http://127.0.0.1:1/mcp").header("bad header", "x"),
            "`bad header` is not a header name",
        ),
    ] {
        let error = Flock::builder()
            .model("test")
            .mcp_server(server)
            .build()
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains(expected), "{error}");
    }
    let twice = Flock::builder()
        .model("test")
        .mcp_server(McpServer::stdio("calc", SERVER))
        .mcp_server(McpServer::stdio("calc", SERVER))
        .build()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        twice.contains("two MCP servers are named `calc`"),
        "{twice}"
    );
    // credentials are not shown
    let shown = format!(
        "{:?}",
        McpServer::stdio("calc", SERVER).env("TOKEN", SECRET)
    );
    assert!(
        !shown.contains(SECRET) && shown.contains("TOKEN=…"),
        "{shown}"
    );
}

/// The worker is SIGKILLed while an MCP call (the second) is in flight: a new worker (with a new
/// server process) takes the run over, the finished call is not made again, the killed one is
/// tried again, and the run completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_during_an_mcp_call_is_replaced_and_the_run_completes() {
    use flock_tests::durability::{Trip, mcp_trip};
    let queue = "mcp-kill";
    let file = ledger();
    let model = FakeOpenAi::start(vec![
        tool_calls(&[("c1", "add", r#"{"a": 2, "b": 40}"#)], 10),
        tool_calls(&[("c2", "nap", r#"{"ms": 2000}"#)], 10),
        answer(r#"{"summary": "42, rested"}"#, 10, 5),
    ])
    .await;
    let client = super::temporal::client_only_flock(queue).await;
    let ledger_path = file.to_string_lossy().into_owned();
    let env = [
        ("FLOCK_MODEL_URL", model.base_url()),
        ("FLOCK_MCP_SERVER", SERVER.to_owned()),
        ("FLOCK_MCP_LEDGER", ledger_path),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut first = super::support::spawn_worker(queue, &file, &env);
    let handle = client
        .run_flow(
            mcp_trip,
            Trip {
                city: "Oslo".into(),
            },
        )
        .start()
        .await
        .unwrap();
    super::support::wait_for("the MCP call to start", BOUND, || {
        count(&file, "nap start") == 1
    })
    .await;
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let mut second = super::support::spawn_worker(queue, &file, &env);
    let result = tokio::time::timeout(BOUND, handle.result()).await;
    second.kill().unwrap();
    second.wait().unwrap();
    let plan = result.expect("the run completes").unwrap();
    assert_eq!(plan.summary, "42, rested");
    assert_eq!(count(&file, "add 2 40"), 1, "the finished call ran once");
    assert_eq!(
        count(&file, "nap start"),
        2,
        "the killed call, then its retry"
    );
    assert_eq!(model.received().len(), 3, "each model request ran once");
    // the new worker does not hold the conversation (no shared transcript store): its first
    // request asks nothing and the loop sends the conversation whole (see agent_loop.rs)
    let history = super::temporal::history(handle.id()).await;
    assert_eq!(
        history.activities,
        [
            "calc.mcp_tools",
            "mcp_planner.model",
            "calc.mcp",
            "mcp_planner.model",
            "calc.mcp",
            "mcp_planner.model",
            "mcp_planner.model"
        ]
    );
    let _ = std::fs::remove_file(&file);
}

/// Adds two numbers (the `#[tool]` twin of the MCP server's `add`).
#[tool]
async fn add_here(args: AddArgs) -> String {
    format!("{} + {} = {}", args.a, args.b, args.a + args.b)
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct AddArgs {
    /// The first number
    pub a: i64,
    /// The second number
    pub b: i64,
}

/// Answer with the `#[tool]`.
#[agent(tools = [add_here], max_tool_rounds = 1000, retry(attempts = 1))]
async fn tool_adder(input: Ask) -> Worked;

/// Answer with the MCP server's tool.
#[agent(mcp = ["calc"], max_tool_rounds = 1000, retry(attempts = 1))]
async fn mcp_adder(input: Ask) -> Worked;

/// The cost of an MCP call against the same tool as a `#[tool]`, on the local executor (where
/// nothing else differs: on Temporal both are one activity): `FLOCK_MCP_BENCH_CALLS` sequential
/// calls of `add` each way, after one warm-up run (the server process is started once per
/// `Flock`, then reused). Prints the per-call difference; asserts both ways answer alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_call_against_the_same_tool_as_a_tool_fn() {
    let calls: usize = std::env::var("FLOCK_MCP_BENCH_CALLS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(50);
    let script = |tool: &str| -> Vec<Reply> {
        let mut replies: Vec<Reply> = (0..calls)
            .map(|n| {
                let arguments = format!(r#"{{"a": {n}, "b": 1}}"#);
                tool_calls(&[(&format!("c{n}"), tool, &arguments)], 1)
            })
            .collect();
        replies.push(answer(r#"{"answer": "done"}"#, 1, 1));
        replies
    };
    let mut per_call = Vec::new();
    for (name, tool) in [("tool", "add_here"), ("mcp", "add")] {
        // a warm-up run, then the measured one, each against its own scripted stand-in
        let mut times = Vec::new();
        for _ in 0..2 {
            let model = FakeOpenAi::start(script(tool)).await;
            let flock = Flock::builder()
                .provider(provider(&model))
                .model("openai/gpt-4o-mini")
                .mcp_server(McpServer::stdio("calc", SERVER))
                .build()
                .await
                .unwrap();
            let started = std::time::Instant::now();
            let worked = if name == "tool" {
                flock.run(tool_adder, ask()).await
            } else {
                flock.run(mcp_adder, ask()).await
            };
            times.push(started.elapsed());
            assert_eq!(worked.unwrap().answer, "done", "{name}");
            let answers = model.received().pop().unwrap().tool_answers();
            let expected: Vec<String> =
                (0..calls).map(|n| format!("{n} + 1 = {}", n + 1)).collect();
            assert_eq!(answers, expected, "{name}");
        }
        per_call.push(times[1] / (calls as u32 + 1));
    }
    println!(
        "local executor, {calls} sequential calls: {:?} per round (model request + call) with a #[tool], {:?} with the MCP server over stdio: +{:?} per MCP call",
        per_call[0],
        per_call[1],
        per_call[1].saturating_sub(per_call[0])
    );
}
