//! Executor configuration, with the meaning Flock gives these settings.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::retry::RetryPolicy;

/// Settings of the Temporal executor; its retry and timeout defaults apply to the local executor
/// too, so that both behave the same.
///
/// ```
/// use std::time::Duration;
/// use flock::TemporalExecutorConfig;
///
/// let config = TemporalExecutorConfig {
///     retry_attempts: 3,
///     retry_interval: Duration::from_secs(5),
///     ..Default::default()
/// };
/// assert_eq!(config.task_queue, "flock-queue");
/// assert_eq!(config.activity_start_to_close, Duration::from_secs(300));
/// ```
#[derive(Clone, PartialEq)]
pub struct TemporalExecutorConfig {
    /// Maximum number of attempts of an agent, the first included (Temporal's `maximum_attempts`).
    pub retry_attempts: u32,
    /// Delay before the first retry.
    pub retry_interval: Duration,
    /// Maximum delay between retries.
    pub retry_max_interval: Duration,
    /// Factor the delay is multiplied by after each retry.
    pub retry_coefficient: f64,
    /// The task queue workers poll.
    pub task_queue: String,
    /// The Temporal namespace.
    pub namespace: String,
    /// The Temporal frontend address: `host:port`, `http://host:port` (plaintext) or
    /// `https://host:port` (TLS). The port is required (Temporal's default is 7233; flock does
    /// not assume it). Without a scheme, the connection uses TLS when `api_key` or the client
    /// certificate is set, as Temporal's other SDKs do, and plaintext otherwise.
    pub server_url: String,
    /// Client certificate for mTLS (Temporal Cloud): a PEM file (`-----BEGIN CERTIFICATE-----`),
    /// checked before connecting. Needs TLS, so `server_url` must not say `http://`.
    pub tls_cert_path: Option<PathBuf>,
    /// Client private key for mTLS (Temporal Cloud): a PEM file (PKCS#8, PKCS#1 or SEC1) that
    /// belongs to `tls_cert_path`, checked before connecting.
    pub tls_key_path: Option<PathBuf>,
    /// API key (Temporal Cloud), sent as a header; never printed. Turns TLS on unless
    /// `server_url` starts with `http://`, which sends it in plaintext (trusted networks only).
    pub api_key: Option<String>,
    /// Timeout of a whole workflow execution.
    pub workflow_execution_timeout: Option<Duration>,
    /// Timeout of one workflow run.
    pub workflow_run_timeout: Option<Duration>,
    /// Default start-to-close timeout of an agent attempt (5 minutes, as in Flock).
    pub activity_start_to_close: Duration,
    /// Start workflows eagerly when this process also runs the worker (saves a round trip).
    pub eager_workflow_start: bool,
    /// How long a client waiting for a result retries while the server is unreachable, before
    /// it gives up with [`Error::WaitGaveUp`](crate::Error::WaitGaveUp) (the run goes on).
    pub wait_retry_window: Duration,
    /// Worker Deployment Versioning: the deployment and build this process's workers belong to.
    /// `None` (the default) leaves versioning off: any worker on the task queue takes any task.
    pub deployment: Option<Deployment>,
    /// The payload codec (encryption with [`CodecKeys`](crate::codec::CodecKeys), claim-check
    /// offload of large payloads) applied to every payload the client and the workers send to
    /// and read from Temporal. When it is `None` and `FLOCK_CODEC_KEYS` is set, every
    /// [`FlockBuilder::build`](crate::FlockBuilder::build) encrypts with the variable's keys (a
    /// malformed value fails `build`); with neither, payloads are JSON in the clear.
    pub codec: Option<crate::codec::Codec>,
}

/// A worker's place in Temporal's Worker Deployment Versioning: which deployment, which build,
/// and what the flows it starts do when a newer build becomes current.
///
/// Versioned workers only get the tasks of their own build. New runs go to the deployment's
/// *current* version, which an operator sets once the new build's workers are up
/// ([`Flock::set_current_version`](crate::Flock::set_current_version), or `temporal worker
/// deployment set-current-version`); until a version is current, new runs wait for an
/// unversioned worker. A pinned run stays on the build that started it, so the workers of an old
/// build must keep running until its runs have finished (`temporal workflow list --query
/// "TemporalWorkerDeploymentVersion = 'NAME:BUILD'"` lists them).
///
/// ```
/// use flock::config::{Deployment, VersioningBehavior};
/// use flock::TemporalExecutorConfig;
///
/// let config = TemporalExecutorConfig {
///     deployment: Some(Deployment::new("billing", "2026-12-02.1")),
///     ..Default::default()
/// };
/// let deployment = config.deployment.unwrap();
/// assert_eq!(deployment.behavior, VersioningBehavior::Pinned);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    /// The deployment's name, shared by every build of one service.
    pub name: String,
    /// This build's id, e.g. a release number or a commit hash.
    pub build_id: String,
    /// What the flows this build serves do when another build becomes current.
    pub behavior: VersioningBehavior,
}

impl Deployment {
    /// Build `build_id` of deployment `name`, its flows pinned.
    pub fn new(name: impl Into<String>, build_id: impl Into<String>) -> Self {
        Deployment {
            name: name.into(),
            build_id: build_id.into(),
            behavior: VersioningBehavior::Pinned,
        }
    }

    /// The same, with `behavior` for its flows.
    pub fn behavior(mut self, behavior: VersioningBehavior) -> Self {
        self.behavior = behavior;
        self
    }

    #[cfg_attr(not(feature = "temporal"), allow(dead_code))]
    pub(crate) fn check(&self) -> Result<(), crate::Error> {
        let bad = |what: &str, value: &str| {
            crate::Error::Config(format!(
                "worker deployment: the {what} `{value}` must be non-empty and must not contain `:` or whitespace"
            ))
        };
        let fine = |value: &str| {
            !value.is_empty() && !value.contains(':') && !value.chars().any(char::is_whitespace)
        };
        if !fine(&self.name) {
            return Err(bad("deployment name", &self.name));
        }
        if !fine(&self.build_id) {
            return Err(bad("build id", &self.build_id));
        }
        Ok(())
    }
}

/// What a versioned flow run does when a newer build of its deployment becomes current.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VersioningBehavior {
    /// The run stays on the build that started it until it ends: its code never changes under
    /// it, so it needs no `ctx.patched(..)`.
    #[default]
    Pinned,
    /// The run moves to the current build at its next flow task: its changes need
    /// `ctx.patched(..)`, as without versioning.
    AutoUpgrade,
}

impl Default for TemporalExecutorConfig {
    fn default() -> Self {
        let retry = RetryPolicy::default();
        TemporalExecutorConfig {
            retry_attempts: retry.max_attempts,
            retry_interval: retry.initial_interval,
            retry_max_interval: retry.max_interval,
            retry_coefficient: retry.backoff_coefficient,
            task_queue: "flock-queue".to_owned(),
            namespace: "default".to_owned(),
            server_url: "localhost:7233".to_owned(),
            tls_cert_path: None,
            tls_key_path: None,
            api_key: None,
            workflow_execution_timeout: None,
            workflow_run_timeout: None,
            activity_start_to_close: Duration::from_secs(300),
            eager_workflow_start: true,
            wait_retry_window: Duration::from_secs(120),
            deployment: None,
            codec: None,
        }
    }
}

impl TemporalExecutorConfig {
    /// The defaults overridden the way the Temporal SDKs configure clients: the profile
    /// (`TEMPORAL_PROFILE`, default `default`) of `temporal.toml` (`TEMPORAL_CONFIG_FILE`, default
    /// `~/.config/temporalio/temporal.toml`), then the `TEMPORAL_*` environment variables
    /// (`TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE`, `TEMPORAL_API_KEY`,
    /// `TEMPORAL_TLS_CLIENT_CERT_PATH`, `TEMPORAL_TLS_CLIENT_KEY_PATH`). A missing file is not an
    /// error; a malformed one is. The payload codec's keys come from `FLOCK_CODEC_KEYS`
    /// ([`CodecKeys::parse`](crate::codec::CodecKeys::parse)'s form).
    #[cfg(feature = "temporal")]
    pub fn from_env() -> Result<Self, crate::Error> {
        Self::load(None)
    }

    /// [`from_env`](Self::from_env) with the variables taken from `vars` instead of the process
    /// environment.
    #[cfg(feature = "temporal")]
    pub fn from_env_map(
        vars: &std::collections::HashMap<String, String>,
    ) -> Result<Self, crate::Error> {
        Self::load(Some(vars))
    }

    #[cfg(feature = "temporal")]
    fn load(
        vars: Option<&std::collections::HashMap<String, String>>,
    ) -> Result<Self, crate::Error> {
        use temporalio_common::envconfig::{
            DataSource, LoadClientConfigProfileOptions, load_client_config_profile,
        };
        let profile = load_client_config_profile(LoadClientConfigProfileOptions::default(), vars)
            .map_err(|e| {
            crate::Error::Config(format!(
                "cannot load the Temporal client configuration: {e}"
            ))
        })?;
        let mut config = TemporalExecutorConfig {
            codec: codec_from_env(vars)?,
            ..TemporalExecutorConfig::default()
        };
        if let Some(address) = profile.address {
            config.server_url = address;
        }
        if let Some(namespace) = profile.namespace {
            config.namespace = namespace;
        }
        config.api_key = profile.api_key;
        if let Some(tls) = profile.tls {
            let path = |source: Option<DataSource>, what: &str| match source {
                None => Ok(None),
                Some(DataSource::Path(path)) => Ok(Some(PathBuf::from(path))),
                Some(_) => Err(crate::Error::Config(format!(
                    "inline TLS {what} data is not supported; give a path (TEMPORAL_TLS_CLIENT_{}_PATH)",
                    what.to_uppercase()
                ))),
            };
            config.tls_cert_path = path(tls.client_cert, "cert")?;
            config.tls_key_path = path(tls.client_key, "key")?;
        }
        Ok(config)
    }

    /// The default retry policy of agents.
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.retry_attempts,
            initial_interval: self.retry_interval,
            backoff_coefficient: self.retry_coefficient,
            max_interval: self.retry_max_interval,
            ..RetryPolicy::default()
        }
    }
}

/// The codec of `FLOCK_CODEC_KEYS` (from `vars`, else the process environment): `None` when it
/// is unset or blank; a malformed value is an error naming the variable (never the keys).
pub(crate) fn codec_from_env(
    vars: Option<&std::collections::HashMap<String, String>>,
) -> Result<Option<crate::codec::Codec>, crate::Error> {
    let keys = match vars {
        Some(vars) => vars.get(crate::codec::KEYS_ENV).cloned(),
        None => std::env::var(crate::codec::KEYS_ENV).ok(),
    };
    let Some(keys) = keys.filter(|k| !k.trim().is_empty()) else {
        return Ok(None);
    };
    let keys = crate::codec::CodecKeys::parse(&keys)
        .map_err(|e| crate::Error::Config(format!("{}: {e}", crate::codec::KEYS_ENV)))?;
    Ok(Some(crate::codec::Codec::new(keys)))
}

impl TemporalExecutorConfig {
    /// This configuration with the environment's codec keys applied: when `FLOCK_CODEC_KEYS`
    /// is set and this configuration has no codec of its own, its keys encrypt (so a key set
    /// in the environment is never silently ignored, whichever way the configuration was
    /// built); a malformed value is an error even when a codec is configured in code.
    pub(crate) fn with_env_codec(mut self) -> Result<Self, crate::Error> {
        let from_env = codec_from_env(None)?;
        if self.codec.is_none() {
            self.codec = from_env;
        }
        Ok(self)
    }
}

impl fmt::Debug for TemporalExecutorConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TemporalExecutorConfig")
            .field("retry_attempts", &self.retry_attempts)
            .field("retry_interval", &self.retry_interval)
            .field("retry_max_interval", &self.retry_max_interval)
            .field("retry_coefficient", &self.retry_coefficient)
            .field("task_queue", &self.task_queue)
            .field("namespace", &self.namespace)
            .field("server_url", &self.server_url)
            .field("tls_cert_path", &self.tls_cert_path)
            .field("tls_key_path", &self.tls_key_path)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field(
                "workflow_execution_timeout",
                &self.workflow_execution_timeout,
            )
            .field("workflow_run_timeout", &self.workflow_run_timeout)
            .field("activity_start_to_close", &self.activity_start_to_close)
            .field("eager_workflow_start", &self.eager_workflow_start)
            .field("wait_retry_window", &self.wait_retry_window)
            .field("deployment", &self.deployment)
            .field("codec", &self.codec)
            .finish()
    }
}

/// Concurrency limits of a worker.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WorkerLimits {
    /// Agent attempts (activities) running at once.
    pub max_concurrent_agents: usize,
    /// Flow (workflow) tasks processed at once.
    pub max_concurrent_flow_tasks: usize,
    /// Flow runs kept in the worker's cache.
    pub max_cached_workflows: usize,
    /// The most agent attempts (activities) started per second on the worker's task queue, by
    /// all its workers together: Temporal's task-queue rate limit, enforced by the server (the
    /// last worker to poll sets it). `None`: no limit. For a rate of one agent in one process,
    /// see [`limit`](crate::limit).
    pub queue_activities_per_second: Option<f64>,
    /// How many polls for work the worker keeps open on its task queue, for flow tasks and for
    /// agent attempts each. Default: [`Pollers::AUTO`].
    pub pollers: Pollers,
}

/// How many long polls for work a worker keeps open on its task queue (for flow tasks and for
/// agent attempts, each). A poll brings one task; a worker whose polls are all waiting for an
/// answer takes no more work, however many slots it has free, so on a network where a poll's
/// round trip is slow a few fixed polls cap the worker's intake.
///
/// ```
/// use flock::{Pollers, WorkerLimits};
///
/// let limits = WorkerLimits { pollers: Pollers::Fixed(8), ..Default::default() };
/// assert!(limits.check().is_ok());
/// assert_eq!("2..50".parse::<Pollers>().unwrap(), Pollers::Autoscaling { minimum: 2, maximum: 50, initial: 5 });
/// assert_eq!("auto".parse::<Pollers>().unwrap(), Pollers::AUTO);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pollers {
    /// At most this many polls at once (Temporal's `SimpleMaximum`); at least 1, and at least 2
    /// while the worker caches flows (one for its own sticky queue, one for the shared queue).
    Fixed(usize),
    /// Scaled by Temporal's poller autoscaler between `minimum` and `maximum`, starting at
    /// `initial`: more polls while the server reports a backlog or polls keep coming back with
    /// work, fewer while they come back empty. `minimum` ≥ 1, `minimum` ≤ `initial` ≤ `maximum`.
    Autoscaling {
        /// The fewest polls kept open (at least 1).
        minimum: usize,
        /// The most polls kept open.
        maximum: usize,
        /// The polls a worker starts with.
        initial: usize,
    },
}

impl Pollers {
    /// The default: autoscaling between 1 and 100 polls, starting at 5 (the bounds Temporal's
    /// SDK enrolls workers with where the namespace asks for it): polls that come back empty
    /// shrink it toward one per kind of task, a backlog grows it up to 100.
    pub const AUTO: Pollers = Pollers::Autoscaling {
        minimum: 1,
        maximum: 100,
        initial: 5,
    };

    /// Why a worker could not poll with these settings, if it could not.
    fn problem(&self, max_cached_workflows: usize) -> Option<String> {
        match *self {
            Pollers::Fixed(0) => Some("is `Fixed(0)`: the worker would never take work".into()),
            Pollers::Fixed(1) if max_cached_workflows > 0 => Some(
                "is `Fixed(1)` while the worker caches flows: a caching worker polls its own sticky queue and the shared one, so it needs at least 2 (or `max_cached_workflows: 0`)".into(),
            ),
            Pollers::Fixed(_) => None,
            Pollers::Autoscaling { minimum: 0, .. } => Some(
                "has `minimum: 0`: the worker would stop taking work when idle; give at least 1"
                    .into(),
            ),
            Pollers::Autoscaling {
                minimum, maximum, ..
            } if maximum < minimum => Some(format!(
                "has `maximum: {maximum}` below `minimum: {minimum}`"
            )),
            Pollers::Autoscaling {
                minimum,
                maximum,
                initial,
            } if !(minimum..=maximum).contains(&initial) => Some(format!(
                "has `initial: {initial}` outside `minimum..=maximum` ({minimum}..={maximum})"
            )),
            Pollers::Autoscaling { .. } => None,
        }
    }
}

impl Default for Pollers {
    fn default() -> Self {
        Pollers::AUTO
    }
}

impl std::fmt::Display for Pollers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Pollers::AUTO => f.write_str("auto"),
            Pollers::Fixed(n) => write!(f, "{n}"),
            Pollers::Autoscaling {
                minimum, maximum, ..
            } => write!(f, "{minimum}..{maximum}"),
        }
    }
}

/// `auto` ([`Pollers::AUTO`]), `N` (fixed) or `MIN..MAX` (autoscaling, starting at 5 kept within
/// the bounds): the CLI's `--pollers`.
impl std::str::FromStr for Pollers {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let number = |part: &str| {
            part.trim().parse::<usize>().map_err(|e| match part == text {
                true => format!("`{text}` is not `auto`, `N` or `MIN..MAX` ({e}); write e.g. `auto`, `8` or `2..50`"),
                false => format!("`{part}` in `{text}` is not a whole number ({e}); write e.g. `2..50`"),
            })
        };
        let pollers = if text == "auto" {
            Pollers::AUTO
        } else if let Some((low, high)) = text.split_once("..") {
            let (minimum, maximum) = (number(low)?, number(high)?);
            Pollers::Autoscaling {
                minimum,
                maximum,
                initial: 5.clamp(minimum, maximum.max(minimum)),
            }
        } else {
            Pollers::Fixed(number(text)?)
        };
        match pollers.problem(0) {
            Some(problem) => Err(format!("`{text}` {problem}")),
            None => Ok(pollers),
        }
    }
}

impl WorkerLimits {
    /// Refuses a concurrency limit of 0, naming the field: a worker with no slots for agent
    /// attempts or flow tasks takes no work, and its runs would stay running forever.
    /// (`max_cached_workflows: 0` is allowed: no cache, every flow task replays its run's
    /// history.)
    ///
    /// ```
    /// use flock::WorkerLimits;
    ///
    /// assert!(WorkerLimits::default().check().is_ok());
    /// let error = WorkerLimits { max_concurrent_agents: 0, ..Default::default() }
    ///     .check()
    ///     .unwrap_err();
    /// assert!(error.to_string().contains("`max_concurrent_agents` is 0"));
    /// ```
    pub fn check(&self) -> Result<(), crate::Error> {
        for (field, value, what) in [
            (
                "max_concurrent_agents",
                self.max_concurrent_agents,
                "no agent attempt would ever start",
            ),
            (
                "max_concurrent_flow_tasks",
                self.max_concurrent_flow_tasks,
                "no flow would ever make progress",
            ),
        ] {
            if value == 0 {
                return Err(crate::Error::Config(format!(
                    "worker limit `{field}` is 0: {what}, and runs would wait forever; give at least 1"
                )));
            }
        }
        if let Some(rate) = self.queue_activities_per_second {
            crate::limit::Limit::new()
                .per_second(rate)
                .check()
                .map_err(|problem| {
                    crate::Error::Config(format!(
                        "worker limit `queue_activities_per_second`: {}",
                        problem.trim_start_matches("`per_second` ")
                    ))
                })?;
        }
        if let Some(problem) = self.pollers.problem(self.max_cached_workflows) {
            return Err(crate::Error::Config(format!(
                "worker limit `pollers` {problem}"
            )));
        }
        Ok(())
    }
}

impl Default for WorkerLimits {
    fn default() -> Self {
        WorkerLimits {
            max_concurrent_agents: 100,
            max_concurrent_flow_tasks: 100,
            max_cached_workflows: 1000,
            queue_activities_per_second: None,
            pollers: Pollers::AUTO,
        }
    }
}
