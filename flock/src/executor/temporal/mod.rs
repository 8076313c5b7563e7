//! The Temporal executor: agents are activities, flows (and hand-off chains) are workflows, run
//! by workers of the official Rust SDK against a Temporal server.

mod activity;
mod codec;
mod connect;
mod history;
mod workflow;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use temporalio_client::{
    Client, WorkflowCancelOptions, WorkflowGetResultOptions, WorkflowStartOptions,
    errors::WorkflowGetResultError,
};
use temporalio_common::RetryPolicy as TemporalRetryPolicy;
use temporalio_sdk::{
    ActivityOptions, LocalActivityOptions, Runtime as SdkRuntime, Worker, WorkerOptions,
};

use activity::AgentActivity;
pub(crate) use connect::connect;
use workflow::FlowWorkflow;

use super::Settings;
use crate::agent::Agent;
use crate::config::{TemporalExecutorConfig, WorkerLimits};
use crate::error::{Error, FlowError};
use crate::flow::Flow;
use crate::retry::RetryPolicy;
use crate::spec::{AgentSpec, FlowSpec};

/// What every activity and workflow of a worker shares.
pub(crate) struct WorkerShared {
    pub(crate) settings: Arc<Settings>,
    pub(crate) config: TemporalExecutorConfig,
}

/// What the registration functions of agents and flows (their [`Adapters`]) are handed: the
/// worker options being built.
///
/// [`Adapters`]: crate::registry::Adapters
struct Registrar {
    options: WorkerOptions,
    shared: Arc<WorkerShared>,
    error: Option<Error>,
}

/// Registers agent `A`'s activity (the `temporal` entry of its adapters).
pub(crate) fn register_agent<A: Agent>(registrar: &mut dyn std::any::Any) {
    if let Some(registrar) = registrar.downcast_mut::<Registrar>() {
        registrar
            .options
            .register_activity::<AgentActivity<A>>(registrar.shared.clone());
    }
}

/// Registers flow `F`'s workflow (the `temporal` entry of its adapters).
pub(crate) fn register_flow<F: Flow>(registrar: &mut dyn std::any::Any) {
    if let Some(registrar) = registrar.downcast_mut::<Registrar>() {
        let factory = FlowWorkflow::<F>::factory(registrar.shared.clone());
        if let Err(e) = registrar
            .options
            .register_workflow_with_factory::<FlowWorkflow<F>, _>(factory)
        {
            registrar.error.get_or_insert(Error::Registry(format!(
                "cannot register flow `{}` with Temporal: {e}",
                F::NAME
            )));
        }
    } else if let Some(registrar) = registrar.downcast_mut::<ReplayRegistrar>() {
        let factory = FlowWorkflow::<F>::factory(registrar.shared.clone());
        if let Err(e) = registrar
            .options
            .register_workflow_with_factory::<FlowWorkflow<F>, _>(factory)
        {
            registrar.error.get_or_insert(Error::Registry(format!(
                "cannot register flow `{}` with Temporal: {e}",
                F::NAME
            )));
        }
    }
}

impl WorkerShared {
    /// The workflow types a worker serves: every registered flow and hand-off chain, none in an
    /// agent pool.
    pub(crate) fn served_flows(&self, pool: Option<&crate::worker::AgentPool>) -> ServedFlows {
        let registry = &self.settings.registry;
        match pool {
            Some(_) => ServedFlows::default(),
            None => ServedFlows {
                flows: registry.flows().map(|flow| flow.spec().name).collect(),
                chains: registry.chains().map(|chain| chain.spec().name).collect(),
            },
        }
    }

    fn retry(policy: &RetryPolicy) -> TemporalRetryPolicy {
        let mut non_retryable: Vec<String> = vec!["Permanent".into(), "InvalidInput".into()];
        non_retryable.extend(policy.non_retryable.iter().map(|c| c.name().to_owned()));
        TemporalRetryPolicy::builder()
            .initial_interval(policy.initial_interval)
            .backoff_coefficient(policy.backoff_coefficient)
            .maximum_interval(policy.max_interval)
            .maximum_attempts(policy.max_attempts)
            .non_retryable_error_types(non_retryable)
            .build()
    }

    pub(crate) fn activity_options(
        &self,
        spec: &AgentSpec,
        policy: &RetryPolicy,
    ) -> ActivityOptions {
        let start_to_close = spec.timeout.unwrap_or(self.config.activity_start_to_close);
        let timeouts = match spec.schedule_to_close {
            Some(schedule_to_close) => {
                temporalio_sdk::ActivityCloseTimeouts::ScheduleAndStartToClose {
                    schedule_to_close,
                    start_to_close,
                }
            }
            None => temporalio_sdk::ActivityCloseTimeouts::StartToClose(start_to_close),
        };
        ActivityOptions::with_close_timeouts(timeouts)
            .maybe_heartbeat_timeout(spec.heartbeat)
            .maybe_task_queue(spec.task_queue.map(str::to_owned))
            .retry_policy(Self::retry(policy))
            .build()
    }

    pub(crate) fn local_activity_options(
        &self,
        spec: &AgentSpec,
        policy: &RetryPolicy,
    ) -> LocalActivityOptions {
        // The marker keeps the input (encoded by the codec like every payload, so offloaded
        // when large): the run record shows what each local agent was called with.
        LocalActivityOptions::builder()
            .include_arguments_in_marker(true)
            .start_to_close_timeout(spec.timeout.unwrap_or(self.config.activity_start_to_close))
            .maybe_schedule_to_close_timeout(spec.schedule_to_close)
            .retry_policy(Self::retry(policy))
            .build()
    }
}

/// Worker options serving every agent (as an activity) and flow and hand-off chain (as a
/// workflow) of the registry, on the configured task queue; or, with `pool`, only the pool's
/// agents on the pool's queue (no flows: an activity-only worker).
pub(crate) fn worker_options(
    shared: &Arc<WorkerShared>,
    limits: &WorkerLimits,
    pool: Option<&crate::worker::AgentPool>,
) -> Result<WorkerOptions, Error> {
    let deployment = shared
        .config
        .deployment
        .as_ref()
        .map(deployment_options)
        .transpose()?;
    let queue = pool.map_or(shared.config.task_queue.as_str(), |pool| pool.queue);
    let options = WorkerOptions::new(queue.to_owned())
        .max_cached_workflows(limits.max_cached_workflows)
        .tuner(tuner(limits))
        .maybe_deployment_options(deployment)
        // A flow whose code no longer matches its history fails, visibly, rather than retrying
        // its workflow task forever while the run stays Running.
        .workflow_failure_errors(std::collections::HashSet::from([
            temporalio_sdk::runtime::WorkflowErrorType::Nondeterminism,
        ]))
        // Checkpoints (heartbeat details) reach the server within this, not 0.8 × the heartbeat
        // timeout: what a killed worker's next attempt resumes from is at most this old.
        .max_heartbeat_throttle_interval(CHECKPOINT_FLUSH)
        .default_heartbeat_throttle_interval(CHECKPOINT_FLUSH)
        .build();
    let mut registrar = Registrar {
        options,
        shared: shared.clone(),
        error: None,
    };
    let registry = &shared.settings.registry;
    let adapters = registry
        .agent_entries()
        .map(|entry| (entry.agent.spec().name, entry.adapters))
        .filter(|(name, _)| pool.is_none_or(|pool| pool.agents.contains(name)))
        .chain(
            registry
                .flow_entries()
                .filter(|_| pool.is_none())
                .map(|entry| (entry.flow.spec().name, entry.adapters)),
        );
    for (name, adapters) in adapters {
        let Some(register) = adapters.temporal else {
            return Err(Error::Registry(format!(
                "`{name}` was registered without its Temporal adapter (register definitions with `Flock::builder().agent(..)` / `.flow(..)`)"
            )));
        };
        register(&mut registrar);
    }
    match registrar.error {
        Some(error) => Err(error),
        None => Ok(registrar.options),
    }
}

/// How long a checkpoint (an activity's heartbeat details) may wait before the worker sends it
/// to the server. The SDK sends an attempt's first heartbeat at once and later ones at most this
/// often, keeping the latest; a worker killed in between loses the checkpoints made since.
pub const CHECKPOINT_FLUSH: Duration = Duration::from_secs(1);

/// The SDK's deployment options for a versioned worker.
fn deployment_options(
    deployment: &crate::config::Deployment,
) -> Result<temporalio_common::worker::WorkerDeploymentOptions, Error> {
    use crate::config::VersioningBehavior as Behavior;
    use temporalio_common::worker::{
        VersioningBehavior, WorkerDeploymentOptions, WorkerDeploymentVersion,
    };
    deployment.check()?;
    let version = WorkerDeploymentVersion::builder()
        .deployment_name(deployment.name.clone())
        .build_id(deployment.build_id.clone())
        .build();
    Ok(WorkerDeploymentOptions::new(version)
        .use_worker_versioning(true)
        .default_versioning_behavior(match deployment.behavior {
            Behavior::Pinned => VersioningBehavior::Pinned,
            Behavior::AutoUpgrade => VersioningBehavior::AutoUpgrade,
        })
        .build())
}

/// Temporal's id reuse policy for flock's.
fn reuse_policy(id_reuse: crate::flock::IdReuse) -> temporalio_client::WorkflowIdReusePolicy {
    use crate::flock::IdReuse;
    use temporalio_client::WorkflowIdReusePolicy;
    match id_reuse {
        IdReuse::FailedOnly => WorkflowIdReusePolicy::AllowDuplicateFailedOnly,
        IdReuse::Allow => WorkflowIdReusePolicy::AllowDuplicate,
        IdReuse::Reject => WorkflowIdReusePolicy::RejectDuplicate,
    }
}

/// What a run starts with.
pub(crate) struct Start<'a> {
    pub(crate) spec: &'a FlowSpec,
    pub(crate) run_id: &'a str,
    pub(crate) input: Value,
    pub(crate) id_reuse: crate::flock::IdReuse,
    pub(crate) attributes: &'a BTreeMap<String, String>,
}

/// Keyword search attributes as the start options take them.
fn search_attributes(
    attributes: &BTreeMap<String, String>,
) -> Option<temporalio_common::search_attributes::SearchAttributes> {
    use temporalio_common::protos::temporal::api::common::v1::{Payload, SearchAttributes};
    if attributes.is_empty() {
        return None;
    }
    let indexed_fields = attributes
        .iter()
        .map(|(name, value)| {
            let payload = Payload {
                metadata: std::collections::HashMap::from([
                    ("encoding".to_owned(), b"json/plain".to_vec()),
                    ("type".to_owned(), b"Keyword".to_vec()),
                ]),
                data: serde_json::to_vec(value).unwrap_or_default(),
                ..Default::default()
            };
            (name.clone(), payload)
        })
        .collect();
    Some(SearchAttributes { indexed_fields }.into())
}

/// What the adapters register into for a replay: the replayer's options.
struct ReplayRegistrar {
    options: temporalio_sdk::workflow_replayer::WorkflowReplayerOptions,
    shared: Arc<WorkerShared>,
    error: Option<Error>,
}

/// Replays a workflow history (JSON, as `Flock::history_json` or `temporal workflow show
/// --output json` gives it) against the flows linked in: an error when the current code no
/// longer makes the history's commands (non-determinism) or fails its workflow task.
pub(crate) async fn replay(shared: Arc<WorkerShared>, history_json: Vec<u8>) -> Result<(), Error> {
    use temporalio_sdk::workflow_replayer::{
        WorkflowReplayError, WorkflowReplayFailure, WorkflowReplayer, WorkflowReplayerOptions,
    };
    // flock's own JSON (`history_json`) or proto3 JSON (`temporal workflow show -o json`)
    let history = history::history_from_json(&history_json).map_err(|e| {
        Error::Config(format!(
            "the workflow history is not valid JSON history (neither `Flock::history_json`'s nor `temporal workflow show --output json`'s): {e}"
        ))
    })?;
    let events = history.events.clone();
    let history = temporalio_client::WorkflowHistory::from(history);
    let workflow_type = events
        .first()
        .and_then(|event| match &event.attributes {
            Some(temporalio_common::protos::temporal::api::history::v1::history_event::Attributes::WorkflowExecutionStartedEventAttributes(a)) => {
                a.workflow_type.as_ref().map(|t| t.name.clone())
            }
            _ => None,
        })
        .ok_or_else(|| {
            Error::Config("the workflow history does not start with a workflow start event".into())
        })?;
    let mut registrar = ReplayRegistrar {
        options: {
            let options = WorkflowReplayerOptions::new()
                .data_converter(codec::data_converter(shared.config.codec.as_ref(), true));
            #[cfg(feature = "otel")]
            let options = options.worker_plugin(crate::observe::otel::temporal_plugin());
            options.build()
        },
        shared: shared.clone(),
        error: None,
    };
    for entry in shared.settings.registry.flow_entries() {
        if let Some(register) = entry.adapters.temporal {
            register(&mut registrar);
        }
    }
    if let Some(error) = registrar.error {
        return Err(error);
    }
    if shared.settings.registry.flow(&workflow_type).is_none() {
        return Err(Error::Registry(format!(
            "the history is a run of `{workflow_type}`, which is not a flow linked into this binary"
        )));
    }
    let replayer = WorkflowReplayer::new(registrar.options)
        .map_err(|e| Error::Executor(format!("cannot start a replay: {e}")))?;
    let nondeterministic = |message: String| Error::Run {
        name: workflow_type.clone(),
        run_id: "replay".into(),
        cause: FlowError::NonDeterminism {
            flow: workflow_type.clone(),
            message: format!("replaying its history with the current code failed: {message}"),
        },
    };
    match replayer.replay_workflow(history).await {
        Ok(()) => Ok(()),
        Err(WorkflowReplayError::Replay(WorkflowReplayFailure::Nondeterminism { message }))
        | Err(WorkflowReplayError::Replay(WorkflowReplayFailure::WorkflowTaskFailure {
            message,
        })) => Err(nondeterministic(message)),
        Err(other) => Err(Error::Executor(format!(
            "replaying a history of `{workflow_type}` failed: {other}"
        ))),
    }
}

/// The SDK tuner of a worker with these limits.
fn tuner(limits: &WorkerLimits) -> temporalio_sdk::runtime::worker_tuner::WorkerTuner {
    use temporalio_sdk::runtime::worker_tuner::{FixedSizeSlotSupplier, TunerHolder};
    TunerHolder::builder()
        .workflow_task_slot_supplier(FixedSizeSlotSupplier::new(limits.max_concurrent_flow_tasks))
        .activity_task_slot_supplier(FixedSizeSlotSupplier::new(limits.max_concurrent_agents))
        .local_activity_task_slot_supplier(FixedSizeSlotSupplier::new(limits.max_concurrent_agents))
        .nexus_task_slot_supplier(FixedSizeSlotSupplier::new(1))
        .build()
        .into()
}

/// The SDK runtime's options: with metrics on ([`observe`](crate::observe)), the SDK core's
/// worker metrics go to its Prometheus exporter, started once per process on a loopback port,
/// which flock's metrics endpoint reads at every scrape.
fn runtime_options() -> Result<temporalio_sdk::runtime::RuntimeOptions, Error> {
    use temporalio_common::telemetry::metrics::CoreMeter;
    use temporalio_common::telemetry::{
        PrometheusExporterOptions, TelemetryOptions, start_prometheus_metric_exporter,
    };
    static CORE_METER: std::sync::OnceLock<Result<Arc<dyn CoreMeter>, String>> =
        std::sync::OnceLock::new();
    let mut telemetry = TelemetryOptions::builder().build();
    if crate::observe::metrics().is_some() {
        let meter = CORE_METER
            .get_or_init(|| {
                // On a thread of its own: it serves for the life of the process, whichever
                // runtime the first worker ran on.
                let (sender, started) = std::sync::mpsc::channel();
                let spawned = std::thread::Builder::new()
                    .name("flock-core-metrics".into())
                    .spawn(move || {
                        let runtime = match tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                        {
                            Ok(runtime) => runtime,
                            Err(e) => return drop(sender.send(Err(e.to_string()))),
                        };
                        runtime.block_on(async move {
                            let options = PrometheusExporterOptions::builder()
                                .socket_addr(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
                                .use_seconds_for_durations(true)
                                .build();
                            let started = start_prometheus_metric_exporter(options)
                                .map(|started| (started.meter, started.bound_addr))
                                .map_err(|e| e.to_string());
                            let _ = sender.send(started);
                            std::future::pending::<()>().await
                        })
                    });
                let (meter, addr) = spawned
                    .map_err(|e| e.to_string())
                    .and_then(|_| started.recv().map_err(|e| e.to_string())?)
                    .map_err(|e| {
                        format!("cannot start the Temporal worker's metrics exporter: {e}")
                    })?;
                crate::observe::core_metrics_at(addr);
                Ok(meter as Arc<dyn CoreMeter>)
            })
            .clone()
            .map_err(Error::Executor)?;
        telemetry.metrics = Some(meter);
    }
    temporalio_sdk::runtime::RuntimeOptions::builder()
        .telemetry_options(telemetry)
        .build()
        .map_err(|e| Error::Executor(format!("the Temporal worker runtime's options: {e}")))
}

/// Runs a worker until it fails, or until `stop` resolves and it has drained: the SDK's shutdown
/// stops polling, tells the server (so the flows' next tasks go to other workers at once), and
/// waits for the attempts in flight, cancelling those still running after the options'
/// `graceful_shutdown_period`. A worker that fails before `stop` returns its error at once.
pub(crate) async fn run_worker(
    client: Client,
    codec: Option<&crate::codec::Codec>,
    flows: ServedFlows,
    mut options: WorkerOptions,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), Error> {
    options.worker_interceptor(UnknownFlows {
        flows,
        client: client.clone(),
        task_queue: options.task_queue.clone(),
    });
    // The worker's own client over the same connection: its codec turns a payload that does not
    // decode into a failed run rather than a workflow task retried forever.
    let client = match codec {
        None => client,
        Some(codec) => {
            let options = temporalio_client::ClientOptions::new(client.options().namespace.clone())
                .data_converter(codec::data_converter(Some(codec), true));
            #[cfg(feature = "otel")]
            let options = options.plugin(crate::observe::otel::temporal_plugin());
            Client::new(client.connection().clone(), options.build())
                .map_err(|e| Error::Executor(format!("cannot create the worker's client: {e}")))?
        }
    };
    let sdk_runtime = SdkRuntime::from_current_tokio(runtime_options()?)
        .map_err(|e| Error::Executor(format!("cannot start the Temporal worker runtime: {e}")))?;
    let mut worker = Worker::new(&sdk_runtime, client, options)
        .map_err(|e| Error::Executor(format!("cannot create the Temporal worker: {e}")))?;
    let shutdown = worker.shutdown_handle();
    let mut stop = std::pin::pin!(stop);
    let mut running = std::pin::pin!(worker.run());
    let ended_by_itself = tokio::select! {
        result = running.as_mut() => Some(result),
        () = stop.as_mut() => None,
    };
    let result = match ended_by_itself {
        Some(result) => result,
        None => {
            shutdown();
            running.await
        }
    };
    result.map_err(|e| Error::Executor(format!("the Temporal worker stopped: {e}")))
}

/// Ends runs of flows this worker does not serve: the SDK fails their workflow task, which the
/// server retries forever while the run stays Running, its reason only in the history. The
/// worker logs it at error level and terminates the run, naming the flow and the flows it serves
/// (a run of a flow no worker knows cannot finish; one that a newer build knows is started
/// again once that build serves the queue).
struct UnknownFlows {
    flows: ServedFlows,
    client: Client,
    task_queue: String,
}

/// The workflow types of a worker: its flows and its agents' hand-off chains.
#[derive(Debug, Default)]
pub(crate) struct ServedFlows {
    flows: Vec<&'static str>,
    chains: Vec<&'static str>,
}

impl ServedFlows {
    fn contains(&self, workflow_type: &str) -> bool {
        self.flows.contains(&workflow_type) || self.chains.contains(&workflow_type)
    }

    /// What a worker serves, in words.
    fn describe(&self) -> String {
        if self.flows.is_empty() && self.chains.is_empty() {
            return "no flows (an agent pool)".to_owned();
        }
        format!(
            "the flows {} and the hand-off chains of its {} agents (`<agent>.chain`)",
            self.flows.join(", "),
            self.chains.len()
        )
    }
}

#[async_trait::async_trait(?Send)]
impl temporalio_sdk::interceptors::WorkerInterceptor for UnknownFlows {
    async fn on_workflow_activation(
        &self,
        activation: &temporalio_common::protos::coresdk::workflow_activation::WorkflowActivation,
    ) -> Result<(), anyhow::Error> {
        use temporalio_common::protos::coresdk::workflow_activation::workflow_activation_job::Variant;
        for job in &activation.jobs {
            let Some(Variant::InitializeWorkflow(start)) = &job.variant else {
                continue;
            };
            if self.flows.contains(&start.workflow_type) {
                continue;
            }
            let serves = self.flows.describe();
            let reason = format!(
                "no flow `{}` is linked into the worker serving task queue `{}`, which serves {serves}",
                start.workflow_type, self.task_queue
            );
            tracing::error!(
                flow = %start.workflow_type,
                run_id = %start.workflow_id,
                "{reason}; terminating the run (it could never finish)"
            );
            // this run only: a later run under the same id is not this one's business
            let handle = temporalio_client::WorkflowHandle::<_, workflow::ByName>::new(
                self.client.clone(),
                temporalio_client::WorkflowExecutionInfo::builder()
                    .namespace(self.client.options().namespace.clone())
                    .workflow_id(start.workflow_id.clone())
                    .run_id(activation.run_id.clone())
                    .build(),
            );
            tokio::spawn(async move {
                let options = temporalio_client::WorkflowTerminateOptions::builder()
                    .reason(reason)
                    .build();
                if let Err(error) = handle.terminate(options).await {
                    tracing::warn!(%error, "could not terminate a run of an unknown flow");
                }
            });
        }
        Ok(())
    }
}

/// The client side of the Temporal executor, and the in-process worker when there is one.
pub(crate) struct TemporalExecutor {
    pub(crate) client: Client,
    pub(crate) config: TemporalExecutorConfig,
    settings: Arc<Settings>,
    eager: bool,
    worker: std::sync::Mutex<Option<InProcessWorker>>,
}

struct InProcessWorker {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), Error>>>,
}

impl Drop for InProcessWorker {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl std::fmt::Debug for TemporalExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemporalExecutor")
            .field("config", &self.config)
            .field("eager", &self.eager)
            .finish_non_exhaustive()
    }
}

impl TemporalExecutor {
    /// Connects; with `in_process_worker`, also starts a worker on a thread of its own (the SDK's
    /// worker future is not `Send`), sharing the connection so workflow starts can be eager.
    pub(crate) async fn start(
        config: TemporalExecutorConfig,
        settings: Arc<Settings>,
        in_process_worker: Option<WorkerLimits>,
    ) -> Result<TemporalExecutor, Error> {
        let Some(limits) = in_process_worker else {
            let client = connect(&config).await?;
            return Ok(TemporalExecutor {
                client,
                config,
                settings,
                eager: false,
                worker: std::sync::Mutex::new(None),
            });
        };
        let shared = Arc::new(WorkerShared {
            settings: settings.clone(),
            config: config.clone(),
        });
        let options = worker_options(&shared, &limits, None)?;
        let flows = shared.served_flows(None);
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Result<Client, Error>>();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread_config = config.clone();
        let thread = std::thread::Builder::new()
            .name("flock-temporal-worker".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .map_err(|e| {
                        Error::Executor(format!("cannot start the worker's runtime: {e}"))
                    })?;
                rt.block_on(async move {
                    let client = match connect(&thread_config).await {
                        Ok(client) => client,
                        Err(error) => {
                            let _ = ready_tx.send(Err(error.clone()));
                            return Err(error);
                        }
                    };
                    let _ = ready_tx.send(Ok(client.clone()));
                    run_worker(
                        client,
                        thread_config.codec.as_ref(),
                        flows,
                        options,
                        async {
                            let _ = stop_rx.await;
                        },
                    )
                    .await
                })
            })
            .map_err(|e| Error::Executor(format!("cannot start the worker thread: {e}")))?;
        let client = match ready_rx.await {
            Ok(Ok(client)) => client,
            Ok(Err(error)) => return Err(error),
            Err(_) => {
                let outcome = thread
                    .join()
                    .map_err(|_| Error::Executor("the worker thread panicked".into()))?;
                return Err(outcome
                    .err()
                    .unwrap_or_else(|| Error::Executor("the worker thread ended early".into())));
            }
        };
        let eager = config.eager_workflow_start;
        Ok(TemporalExecutor {
            client,
            config,
            settings,
            eager,
            worker: std::sync::Mutex::new(Some(InProcessWorker {
                stop: Some(stop_tx),
                thread: Some(thread),
            })),
        })
    }

    /// Stops the in-process worker and waits for it to drain.
    pub(crate) async fn shutdown(&self) -> Result<(), Error> {
        let taken = self.worker.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(mut worker) = taken else {
            return Ok(());
        };
        if let Some(stop) = worker.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = worker.thread.take() {
            return tokio::task::spawn_blocking(move || thread.join())
                .await
                .map_err(|e| Error::Executor(format!("waiting for the worker failed: {e}")))?
                .map_err(|_| Error::Executor("the worker thread panicked".into()))?;
        }
        Ok(())
    }

    /// The options a run of `spec` starts with.
    fn start_options(
        &self,
        spec: &FlowSpec,
        run_id: &str,
        id_reuse: crate::flock::IdReuse,
        attach_running: bool,
        attributes: &BTreeMap<String, String>,
    ) -> WorkflowStartOptions {
        use temporalio_client::WorkflowIdConflictPolicy;
        WorkflowStartOptions::new(
            spec.task_queue
                .unwrap_or(&self.config.task_queue)
                .to_owned(),
            run_id.to_owned(),
        )
        .maybe_execution_timeout(
            spec.execution_timeout
                .or(self.config.workflow_execution_timeout),
        )
        .maybe_run_timeout(spec.run_timeout.or(self.config.workflow_run_timeout))
        .enable_eager_workflow_start(self.eager && !attach_running)
        .id_reuse_policy(reuse_policy(id_reuse))
        .id_conflict_policy(if attach_running {
            WorkflowIdConflictPolicy::UseExisting
        } else {
            WorkflowIdConflictPolicy::Fail
        })
        .maybe_search_attributes(search_attributes(attributes))
        .build()
    }

    /// Starts a workflow of flow `name`; with `signal`, signal-with-start (a running run with
    /// this id is signalled instead).
    pub(crate) async fn start_run(
        &self,
        start: Start<'_>,
        signal: Option<(&'static str, Value)>,
    ) -> Result<(), Error> {
        let Start {
            spec,
            run_id,
            input,
            id_reuse,
            attributes,
        } = start;
        let options = self.start_options(spec, run_id, id_reuse, signal.is_some(), attributes);
        let started = match signal {
            None => self
                .client
                .start_workflow(workflow::ByName(spec.name), input, options)
                .await
                .map(drop),
            Some((name, value)) => self
                .client
                .signal_with_start_workflow(
                    workflow::ByName(spec.name),
                    input,
                    workflow::MessageByName(name.to_owned()),
                    value,
                    options,
                )
                .await
                .map(drop),
        };
        match started {
            Ok(()) => Ok(()),
            Err(temporalio_client::errors::WorkflowStartError::AlreadyStarted { .. }) => {
                Err(self.id_refused(spec.name, run_id, id_reuse).await)
            }
            Err(e) => Err(Error::Executor(format!(
                "cannot start `{}` as workflow `{run_id}`: {e}",
                spec.name
            ))),
        }
    }

    async fn id_refused(&self, flow: &str, run_id: &str, id_reuse: crate::flock::IdReuse) -> Error {
        let state = match self.status_of(run_id).await {
            Some(true) => "is still running",
            Some(false) if id_reuse == crate::flock::IdReuse::FailedOnly => "completed",
            Some(false) => "closed",
            None => "exists",
        };
        crate::flock::id_taken(run_id, flow, state, id_reuse)
    }

    /// Update-with-start: starts the run unless one with this id is running, sends it update
    /// `name` and waits for the answer.
    pub(crate) async fn update_with_start(
        &self,
        start: Start<'_>,
        name: &'static str,
        value: Value,
    ) -> Result<Value, Error> {
        let Start {
            spec,
            run_id,
            input,
            id_reuse,
            attributes,
        } = start;
        use temporalio_client::errors::WorkflowUpdateWithStartError;
        use temporalio_client::{WorkflowIdConflictPolicy, WorkflowUpdateWithStartOptions};
        let options = WorkflowUpdateWithStartOptions::new(
            spec.task_queue
                .unwrap_or(&self.config.task_queue)
                .to_owned(),
            run_id.to_owned(),
            WorkflowIdConflictPolicy::UseExisting,
        )
        .id_reuse_policy(reuse_policy(id_reuse))
        .maybe_execution_timeout(
            spec.execution_timeout
                .or(self.config.workflow_execution_timeout),
        )
        .maybe_run_timeout(spec.run_timeout.or(self.config.workflow_run_timeout))
        .maybe_search_attributes(search_attributes(attributes))
        .build();
        let handle = match self
            .client
            .start_update_with_start_workflow(
                workflow::ByName(spec.name),
                input,
                workflow::MessageByName(name.to_owned()),
                value,
                options,
            )
            .await
        {
            Ok(handle) => handle,
            Err(WorkflowUpdateWithStartError::Update(e)) => {
                return Err(self.update_error(spec.name, run_id, name, e).await);
            }
            Err(other) => {
                return Err(Error::Executor(format!(
                    "cannot start `{}` as workflow `{run_id}` with update `{name}`: {other}",
                    spec.name
                )));
            }
        };
        handle
            .get_result(Default::default())
            .await
            .map_err(|e| self.answer_error(spec.name, run_id, name, e))
    }

    /// The runs of flow `flow` with these keyword search attributes, newest first.
    pub(crate) async fn find_runs(
        &self,
        flow: &str,
        attributes: &BTreeMap<String, String>,
    ) -> Result<Vec<crate::flock::FoundRun>, Error> {
        use futures::StreamExt;
        use temporalio_client::WorkflowExecutionStatus;
        let mut query = format!("WorkflowType = '{flow}'");
        for (name, value) in attributes {
            query.push_str(&format!(" AND {name} = '{value}'"));
        }
        let mut stream = self
            .client
            .list_workflows(query.clone(), Default::default());
        let mut found = Vec::new();
        while let Some(execution) = stream.next().await {
            let execution = execution.map_err(|e| {
                Error::Executor(format!(
                    "cannot list runs ({query}): {e} (a search attribute must be registered on the namespace: `temporal operator search-attribute create --name NAME --type Keyword`)"
                ))
            })?;
            found.push(crate::flock::FoundRun::new(
                execution.id().to_owned(),
                execution.status() == WorkflowExecutionStatus::Running,
            ));
        }
        Ok(found)
    }

    /// Sends signal `name` to workflow `run_id`.
    pub(crate) async fn signal(
        &self,
        flow: &str,
        run_id: &str,
        name: &str,
        value: Value,
    ) -> Result<(), Error> {
        match self
            .client
            .get_workflow_handle::<workflow::ByName>(run_id.to_owned())
            .signal(
                workflow::MessageByName(name.to_owned()),
                value,
                Default::default(),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(e) => Err(self
                .interaction_error(flow, run_id, &format!("signal `{name}`"), e)
                .await),
        }
    }

    /// Asks workflow `run_id` query `name`. A worker answers queries, of closed runs too: when
    /// the server gives up waiting for one and none polls the run's task queue, the error says
    /// so ([`Error::NoWorker`]).
    pub(crate) async fn query(&self, flow: &str, run_id: &str, name: &str) -> Result<Value, Error> {
        use temporalio_client::errors::WorkflowQueryError;
        let asked = self
            .client
            .get_workflow_handle::<workflow::ByName>(run_id.to_owned())
            .query(
                workflow::MessageByName(name.to_owned()),
                Value::Null,
                Default::default(),
            )
            .await;
        let value = match asked {
            Ok(value) => value,
            Err(e) => {
                let message = match e {
                    WorkflowQueryError::NotFound(_) => {
                        format!(
                            "there is no run `{run_id}` in namespace `{}`",
                            self.config.namespace
                        )
                    }
                    WorkflowQueryError::Rpc(status) => {
                        let what = format!("query `{name}`");
                        if let Some(no_worker) = self.no_worker(flow, run_id, &what).await {
                            return Err(no_worker);
                        }
                        status.message().to_owned()
                    }
                    other => other.to_string(),
                };
                return Err(Error::Message {
                    flow: flow.to_owned(),
                    run_id: run_id.to_owned(),
                    message: format!("query `{name}`: {message}"),
                });
            }
        };
        Ok(value).and_then(|value| {
            undecodable_check(value).map_err(|reason| Error::Message {
                flow: flow.to_owned(),
                run_id: run_id.to_owned(),
                message: format!("query `{name}`: the answer cannot be decoded: {reason}"),
            })
        })
    }

    /// Sends workflow `run_id` update `name` and waits for the answer. Until a worker has
    /// accepted the update (its validator ran there), the wait is bounded: every
    /// [`UPDATE_ACCEPT_WAIT`] without acceptance the run's task queue is checked, and with no
    /// worker polling it the update fails ([`Error::NoWorker`]; the update, never accepted, is
    /// not in the run). Once accepted, the sender waits for the flow's answer as long as the
    /// flow takes.
    pub(crate) async fn update(
        &self,
        flow: &str,
        run_id: &str,
        name: &str,
        value: Value,
    ) -> Result<Value, Error> {
        use temporalio_client::{RpcOptions, WorkflowStartUpdateOptions};
        let handle = self
            .client
            .get_workflow_handle::<workflow::ByName>(run_id.to_owned());
        // one id for every attempt to send it: the server takes it once
        let update_id = uuid::Uuid::new_v4().to_string();
        let accepted = loop {
            let options = WorkflowStartUpdateOptions::builder()
                .update_id(update_id.clone())
                .build();
            let start = handle.start_update(
                workflow::MessageByName(name.to_owned()),
                value.clone(),
                options,
            );
            match tokio::time::timeout(UPDATE_ACCEPT_WAIT, start).await {
                Ok(started) => break started,
                Err(_) => {
                    let what = format!("update `{name}`");
                    if let Some(no_worker) = self.no_worker(flow, run_id, &what).await {
                        return Err(no_worker);
                    }
                    // a worker polls: the run is busy; keep waiting for it to accept
                }
            }
        };
        let accepted = match accepted {
            Ok(accepted) => accepted,
            Err(e) => return Err(self.update_error(flow, run_id, name, e).await),
        };
        accepted
            .get_result(RpcOptions::default())
            .await
            .map_err(|e| self.answer_error(flow, run_id, name, e))
            .and_then(|value| {
                undecodable_check(value).map_err(|reason| Error::Message {
                    flow: flow.to_owned(),
                    run_id: run_id.to_owned(),
                    message: format!("update `{name}`: the answer cannot be decoded: {reason}"),
                })
            })
    }
}

/// `value`, unless it stands for a payload the codec could not decode (then the reason).
fn undecodable_check(value: Value) -> Result<Value, String> {
    match crate::codec::undecodable_reason(&value) {
        Some(reason) => Err(reason.to_owned()),
        None => Ok(value),
    }
}

/// How long an update waits to be accepted before the run's task queue is checked for a worker
/// (queries give up after about as long, on the server).
pub(crate) const UPDATE_ACCEPT_WAIT: Duration = Duration::from_secs(30);

/// How recently a worker must have polled a task queue to count as serving it: an idle worker's
/// long poll lasts about a minute, and the server lists pollers for minutes after they stopped.
const POLLED_WITHIN: Duration = Duration::from_secs(90);

impl TemporalExecutor {
    /// An update that was not accepted: rejected by its validator, sent to a run that does not
    /// exist or has ended.
    async fn update_error(
        &self,
        flow: &str,
        run_id: &str,
        name: &str,
        error: temporalio_client::errors::WorkflowUpdateError,
    ) -> Error {
        use temporalio_client::errors::WorkflowUpdateError;
        let message = match error {
            WorkflowUpdateError::Failed(failure) => history::message_of(&failure),
            WorkflowUpdateError::NotFound(_) => {
                if let Some(ended) = self.ended(flow, run_id, &format!("update `{name}`")).await {
                    return ended;
                }
                format!(
                    "there is no run `{run_id}` in namespace `{}`",
                    self.config.namespace
                )
            }
            WorkflowUpdateError::Rpc(status) => status.message().to_owned(),
            other => other.to_string(),
        };
        Error::Message {
            flow: flow.to_owned(),
            run_id: run_id.to_owned(),
            message: format!("update `{name}`: {message}"),
        }
    }

    /// An accepted update that got no answer: the flow failed it, or the run ended first.
    fn answer_error(
        &self,
        flow: &str,
        run_id: &str,
        name: &str,
        error: temporalio_client::errors::WorkflowUpdateError,
    ) -> Error {
        use temporalio_client::errors::WorkflowUpdateError;
        let message = match error {
            WorkflowUpdateError::Failed(failure) => history::message_of(&failure),
            WorkflowUpdateError::NotFound(_) => {
                format!("flow `{flow}` ended before it answered the update")
            }
            WorkflowUpdateError::Rpc(status) => status.message().to_owned(),
            other => other.to_string(),
        };
        Error::Message {
            flow: flow.to_owned(),
            run_id: run_id.to_owned(),
            message: format!("update `{name}`: {message}"),
        }
    }

    async fn interaction_error(
        &self,
        flow: &str,
        run_id: &str,
        what: &str,
        error: temporalio_client::errors::WorkflowInteractionError,
    ) -> Error {
        use temporalio_client::errors::WorkflowInteractionError;
        let message = match error {
            WorkflowInteractionError::NotFound(_) => {
                if let Some(ended) = self.ended(flow, run_id, what).await {
                    return ended;
                }
                format!(
                    "there is no running run `{run_id}` in namespace `{}`",
                    self.config.namespace
                )
            }
            WorkflowInteractionError::Rpc(status) => status.message().to_owned(),
            other => other.to_string(),
        };
        Error::Message {
            flow: flow.to_owned(),
            run_id: run_id.to_owned(),
            message: format!("{what}: {message}"),
        }
    }

    /// [`Error::RunEnded`] for message `what` (`update `edit``) when run `run_id` exists and has
    /// ended; `None` when it is running or unknown.
    async fn ended(&self, flow: &str, run_id: &str, what: &str) -> Option<Error> {
        let status = self.closed_status(run_id).await?;
        let kinds = if what.starts_with("signal") {
            "signals"
        } else {
            "updates"
        };
        Some(Error::RunEnded {
            flow: flow.to_owned(),
            run_id: run_id.to_owned(),
            status: status.to_owned(),
            message: format!(
                "message to run `{run_id}` of `{flow}`: {what}: the run has {}; {kinds} go to running runs",
                ended_words(status)
            ),
        })
    }

    /// How run `run_id` ended; `None` while it runs, or when it is unknown.
    async fn closed_status(&self, run_id: &str) -> Option<&'static str> {
        let description = self.description(run_id).await.ok()?;
        let status = status_name(description.status());
        (status != "running").then_some(status)
    }

    /// [`Error::NoWorker`] for `what` (`query `status``) when no worker has polled the task
    /// queue of run `run_id` lately (Temporal's DescribeTaskQueue); `None` when one has, or when
    /// it cannot be told.
    async fn no_worker(&self, flow: &str, run_id: &str, what: &str) -> Option<Error> {
        use temporalio_client::grpc::WorkflowService;
        use temporalio_client::tonic::Request;
        use temporalio_common::protos::temporal::api::enums::v1::{TaskQueueKind, TaskQueueType};
        use temporalio_common::protos::temporal::api::taskqueue::v1::TaskQueue;
        use temporalio_common::protos::temporal::api::workflowservice::v1::DescribeTaskQueueRequest;
        let task_queue = self.description(run_id).await.ok()?.task_queue().to_owned();
        let request = DescribeTaskQueueRequest {
            namespace: self.config.namespace.clone(),
            task_queue: Some(TaskQueue {
                name: task_queue.clone(),
                kind: TaskQueueKind::Normal as i32,
                ..Default::default()
            }),
            task_queue_type: TaskQueueType::Workflow as i32,
            ..Default::default()
        };
        let mut client = self.client.clone();
        let pollers = client
            .describe_task_queue(Request::new(request))
            .await
            .ok()?
            .into_inner()
            .pollers;
        let now = std::time::SystemTime::now();
        let serving = pollers.iter().any(|poller| {
            poller
                .last_access_time
                .as_ref()
                .and_then(|t| std::time::SystemTime::try_from(*t).ok())
                .is_none_or(|at| now.duration_since(at).unwrap_or_default() < POLLED_WITHIN)
        });
        (!serving).then(|| Error::NoWorker {
            flow: flow.to_owned(),
            run_id: run_id.to_owned(),
            task_queue: task_queue.clone(),
            message: format!(
                "message to run `{run_id}` of `{flow}`: {what}: no worker is serving task queue `{task_queue}` of run `{run_id}`"
            ),
        })
    }

    /// Waits for the result of workflow `run_id`. Transport errors while waiting (a server that
    /// is briefly unavailable) are retried for up to `wait_retry_window`; past that the wait gives
    /// up with [`Error::WaitGaveUp`], which says nothing about the run itself.
    pub(crate) async fn result(&self, name: &str, run_id: &str) -> Result<Value, Error> {
        use temporalio_client::tonic::Code;
        let handle = self
            .client
            .get_workflow_handle::<workflow::ByName>(run_id.to_owned());
        let failed = |cause: FlowError| Error::Run {
            name: name.to_owned(),
            run_id: run_id.to_owned(),
            cause,
        };
        let window_start = std::time::Instant::now();
        let mut backoff = Duration::from_millis(200);
        loop {
            let status = match handle.get_result(WorkflowGetResultOptions::default()).await {
                Ok(value) => {
                    return undecodable_check(value).map_err(|reason| Error::Undecodable {
                        name: name.to_owned(),
                        run_id: run_id.to_owned(),
                        status: "completed".to_owned(),
                        message: format!("its result: {reason}"),
                    });
                }
                Err(WorkflowGetResultError::Failed(error)) => {
                    use temporalio_common::error::IncomingError;
                    if let IncomingError::Application(failure) = &*error
                        && let Some(reason) =
                            failure.failure().and_then(workflow::undecodable_failure)
                    {
                        return Err(Error::Undecodable {
                            name: name.to_owned(),
                            run_id: run_id.to_owned(),
                            status: "failed".to_owned(),
                            message: format!("its failure: {reason}"),
                        });
                    }
                    return Err(failed(match &*error {
                        IncomingError::Application(failure) => {
                            workflow::flow_error_from_failure(name, failure)
                        }
                        other => FlowError::msg(other.to_string()),
                    }));
                }
                Err(WorkflowGetResultError::Cancelled { .. }) => {
                    return Err(failed(FlowError::Cancelled {
                        message: "the workflow was cancelled".into(),
                    }));
                }
                Err(WorkflowGetResultError::Terminated { .. }) => {
                    let message = match history::termination_reason(&self.client, run_id).await {
                        Some(reason) => format!("the workflow was terminated: {reason}"),
                        None => "the workflow was terminated".to_owned(),
                    };
                    return Err(failed(FlowError::msg(message)));
                }
                Err(WorkflowGetResultError::TimedOut) => {
                    return Err(failed(FlowError::msg(
                        "the workflow timed out (its execution or run timeout passed)",
                    )));
                }
                Err(WorkflowGetResultError::NotFound(_)) => {
                    return Err(Error::Executor(format!(
                        "there is no run `{run_id}` (of `{name}`) in namespace `{}`",
                        self.config.namespace
                    )));
                }
                Err(WorkflowGetResultError::Rpc(status)) => status,
                Err(other) => return Err(failed(FlowError::msg(other.to_string()))),
            };
            let transient = matches!(
                status.code(),
                Code::Unavailable
                    | Code::Unknown
                    | Code::DeadlineExceeded
                    | Code::ResourceExhausted
                    | Code::Aborted
            );
            if !transient {
                return Err(Error::Executor(format!(
                    "waiting for run `{run_id}` of `{name}` failed: the server answered {:?}: {}",
                    status.code(),
                    status.message()
                )));
            }
            if window_start.elapsed() >= self.config.wait_retry_window {
                return Err(Error::WaitGaveUp {
                    run_id: run_id.to_owned(),
                    message: format!(
                        "the Temporal server at {} was unreachable for {:?} while waiting for the result of `{name}` ({}); the run itself may still complete: wait again with `flock.flow_handle(..)`",
                        self.config.server_url,
                        self.config.wait_retry_window,
                        status.message()
                    ),
                });
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// The server's description of workflow `run_id`; an unknown id is [`Error::NotFound`].
    async fn description(
        &self,
        run_id: &str,
    ) -> Result<temporalio_client::WorkflowExecutionDescription, Error> {
        self.client
            .get_workflow_handle::<workflow::ByName>(run_id.to_owned())
            .describe(Default::default())
            .await
            .map_err(|e| match e {
                temporalio_client::errors::WorkflowInteractionError::NotFound(_) => {
                    Error::NotFound(format!(
                        "there is no run `{run_id}` in namespace `{}`",
                        self.config.namespace
                    ))
                }
                other => Error::Executor(format!("cannot describe run `{run_id}`: {other}")),
            })
    }

    /// Whether workflow `run_id` is running (`Some(true)`), closed (`Some(false)`), or unknown.
    async fn status_of(&self, run_id: &str) -> Option<bool> {
        use temporalio_common::protos::temporal::api::enums::v1::WorkflowExecutionStatus;
        let description = self.description(run_id).await.ok()?;
        let status = description
            .raw_description
            .workflow_execution_info
            .as_ref()?
            .status();
        Some(status == WorkflowExecutionStatus::Running)
    }

    /// Checks that workflow `run_id` is a run of flow `name` (before a handle found by id uses it).
    pub(crate) async fn check_type(&self, name: &str, run_id: &str) -> Result<(), Error> {
        let description = self.description(run_id).await?;
        let actual = description.workflow_type();
        if actual == name {
            Ok(())
        } else {
            Err(Error::Config(format!(
                "run `{run_id}` is a run of `{actual}`, not of `{name}`: re-attach with `flock.flow_handle({actual}, ..)`"
            )))
        }
    }

    /// Fills the record of a run this client has just waited for with its steps and children
    /// from the server's history. The run's result is already known; a history that cannot be
    /// read leaves the record incomplete, and says so in the log (`run_record` makes it an
    /// error).
    pub(crate) async fn fill_record(&self, record: &mut crate::record::RunRecord) {
        if let Err(error) =
            history::fill_record(&self.client, &self.settings.registry, record).await
        {
            tracing::warn!(run_id = %record.run_id, %error, "the run record is incomplete");
        }
    }

    /// The history of workflow `run_id` (its latest run), as JSON.
    pub(crate) async fn history_json(&self, run_id: &str) -> Result<Vec<u8>, Error> {
        self.client
            .get_workflow_handle::<workflow::ByName>(run_id.to_owned())
            .fetch_history(Default::default())
            .to_json()
            .await
            .map_err(|e| Error::Executor(format!("cannot read the history of `{run_id}`: {e}")))
    }

    /// Replays `history_json` against this process's flows (see [`replay`]).
    pub(crate) async fn replay(
        &self,
        settings: Arc<Settings>,
        history_json: Vec<u8>,
    ) -> Result<(), Error> {
        let shared = Arc::new(WorkerShared {
            settings,
            config: self.config.clone(),
        });
        // the replay worker's future is not `Send`: it runs on a thread of its own
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let result = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Error::Executor(format!("cannot start a replay runtime: {e}")))
                .and_then(|runtime| runtime.block_on(replay(shared, history_json)));
            let _ = tx.send(result);
        });
        rx.await
            .map_err(|_| Error::Executor("the replay thread panicked".into()))?
    }

    /// Makes `build_id` the current version of this process's deployment: new runs go to its
    /// workers. Waits (up to `wait_retry_window`) for the build's workers to have polled, since
    /// the server only knows a version once one of its workers has.
    pub(crate) async fn set_current_version(&self, build_id: &str) -> Result<(), Error> {
        use temporalio_client::grpc::WorkflowService;
        use temporalio_client::tonic::{Code, Request};
        use temporalio_common::protos::temporal::api::workflowservice::v1::SetWorkerDeploymentCurrentVersionRequest;
        let Some(deployment) = &self.config.deployment else {
            return Err(Error::Config(
                "set_current_version: this Flock has no worker deployment (set `TemporalExecutorConfig::deployment`)".into(),
            ));
        };
        crate::config::Deployment {
            build_id: build_id.to_owned(),
            ..deployment.clone()
        }
        .check()?;
        let deadline = std::time::Instant::now() + self.config.wait_retry_window;
        loop {
            let request = SetWorkerDeploymentCurrentVersionRequest {
                namespace: self.config.namespace.clone(),
                deployment_name: deployment.name.clone(),
                build_id: build_id.to_owned(),
                identity: format!("flock@{}", std::process::id()),
                ..Default::default()
            };
            let mut client = self.client.clone();
            match client
                .set_worker_deployment_current_version(Request::new(request))
                .await
            {
                Ok(_) => return Ok(()),
                // the version is not known yet: its workers have not polled
                Err(status)
                    if matches!(status.code(), Code::NotFound | Code::FailedPrecondition)
                        && std::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(status) => {
                    return Err(Error::Executor(format!(
                        "cannot make build `{build_id}` the current version of worker deployment `{}`: {} (its workers must be running and polling task queue `{}`)",
                        deployment.name,
                        status.message(),
                        self.config.task_queue
                    )));
                }
            }
        }
    }

    /// The build of its deployment that workflow `run_id` is on, if it is versioned.
    pub(crate) async fn run_version(&self, run_id: &str) -> Result<Option<String>, Error> {
        let description = self.description(run_id).await?;
        Ok(description
            .raw_description
            .workflow_execution_info
            .and_then(|info| info.versioning_info)
            .and_then(|versioning| versioning.deployment_version)
            .map(|version| version.build_id))
    }

    /// Workflow `run_id` as the server describes it; an unknown id is [`Error::NotFound`].
    pub(crate) async fn describe(&self, run_id: &str) -> Result<crate::flock::RunInfo, Error> {
        let description = self.description(run_id).await?;
        Ok(crate::flock::RunInfo::new(
            run_id.to_owned(),
            description.workflow_type().to_owned(),
            status_name(description.status()),
            description.start_time(),
            description.close_time(),
        ))
    }

    /// The runs a visibility query selects, newest first, at most `limit`.
    pub(crate) async fn list(
        &self,
        query: &str,
        limit: usize,
    ) -> Result<Vec<crate::flock::RunInfo>, Error> {
        use futures::StreamExt;
        let options = temporalio_client::WorkflowListOptions::builder()
            .limit(limit)
            .build();
        let mut stream = self.client.list_workflows(query.to_owned(), options);
        let mut found = Vec::new();
        while let Some(execution) = stream.next().await {
            let execution = execution
                .map_err(|e| Error::Executor(format!("cannot list runs (query `{query}`): {e}")))?;
            found.push(crate::flock::RunInfo::new(
                execution.id().to_owned(),
                execution.workflow_type().to_owned(),
                status_name(execution.status()),
                execution.start_time(),
                execution.close_time(),
            ));
        }
        Ok(found)
    }

    /// Terminates workflow `run_id`: it stops at once, without running any more flow code. A
    /// run that has ended is [`Error::RunEnded`].
    pub(crate) async fn terminate(&self, run_id: &str, reason: &str) -> Result<(), Error> {
        let terminated = self
            .client
            .get_workflow_handle::<workflow::ByName>(run_id.to_owned())
            .terminate(
                temporalio_client::WorkflowTerminateOptions::builder()
                    .reason(reason.to_owned())
                    .build(),
            )
            .await;
        match terminated {
            Ok(()) => Ok(()),
            Err(e) => Err(self
                .closed_run_error(run_id, "terminate")
                .await
                .unwrap_or_else(|| {
                    Error::Executor(format!("cannot terminate workflow `{run_id}`: {e}"))
                })),
        }
    }

    /// [`Error::RunEnded`] for a cancellation or termination (`verb`) of run `run_id`, when it
    /// has ended; `None` when it is running or unknown.
    async fn closed_run_error(&self, run_id: &str, verb: &str) -> Option<Error> {
        let description = self.description(run_id).await.ok()?;
        let status = status_name(description.status());
        if status == "running" {
            return None;
        }
        let flow = description.workflow_type().to_owned();
        Some(Error::RunEnded {
            message: format!(
                "run `{run_id}` of `{flow}` has already {}: there is nothing to {verb}",
                ended_words(status)
            ),
            flow,
            run_id: run_id.to_owned(),
            status: status.to_owned(),
        })
    }

    /// Fills a record of a run started elsewhere from its history: steps, children, and (when
    /// it has closed) its status and output.
    /// An unreadable history (a payload the configured keys cannot decode) is an error.
    pub(crate) async fn record_from_history(
        &self,
        record: &mut crate::record::RunRecord,
    ) -> Result<(), Error> {
        history::fill_from_history(&self.client, &self.settings.registry, record)
            .await
            .map_err(Error::Executor)
    }

    /// [`record_from_history`](Self::record_from_history) for the current generation's steps
    /// alone (the command line's progress).
    #[cfg_attr(not(feature = "cli"), allow(dead_code))]
    pub(crate) async fn current_steps(
        &self,
        record: &mut crate::record::RunRecord,
    ) -> Result<(), Error> {
        history::fill_current_steps(&self.client, &self.settings.registry, record)
            .await
            .map_err(Error::Executor)
    }

    /// Requests cancellation of workflow `run_id`. A run that has ended is [`Error::RunEnded`]
    /// (the server would take the request and do nothing).
    pub(crate) async fn cancel(&self, run_id: &str) -> Result<(), Error> {
        if let Some(ended) = self.closed_run_error(run_id, "cancel").await {
            return Err(ended);
        }
        let cancelled = self
            .client
            .get_workflow_handle::<workflow::ByName>(run_id.to_owned())
            .cancel(WorkflowCancelOptions::default())
            .await;
        match cancelled {
            Ok(()) => Ok(()),
            Err(e) => Err(self
                .closed_run_error(run_id, "cancel")
                .await
                .unwrap_or_else(|| {
                    Error::Executor(format!("cannot cancel workflow `{run_id}`: {e}"))
                })),
        }
    }
}

impl TemporalExecutor {
    /// The generations (runs linked by continue-as-new) of workflow `run_id`: the current one's
    /// Temporal run id, and how many generations started after `known` (a Temporal run id seen
    /// before; `None`: count them all, the first included). Walks back from the current run
    /// through each history's first event, at most `limit` steps.
    #[cfg_attr(not(feature = "cli"), allow(dead_code))]
    pub(crate) async fn generations_since(
        &self,
        run_id: &str,
        known: Option<&str>,
        limit: u32,
    ) -> Result<(String, u32), Error> {
        use temporalio_client::grpc::WorkflowService;
        use temporalio_client::tonic::Request;
        use temporalio_common::protos::temporal::api::common::v1::WorkflowExecution;
        use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;
        use temporalio_common::protos::temporal::api::workflowservice::v1::GetWorkflowExecutionHistoryRequest;
        let description = self.description(run_id).await?;
        let current = description
            .raw_description
            .workflow_execution_info
            .as_ref()
            .and_then(|info| info.execution.as_ref())
            .map(|execution| execution.run_id.clone())
            .unwrap_or_default();
        let mut walked = current.clone();
        let mut count = 0;
        while Some(walked.as_str()) != known && count < limit && !walked.is_empty() {
            count += 1;
            let request = GetWorkflowExecutionHistoryRequest {
                namespace: self.config.namespace.clone(),
                execution: Some(WorkflowExecution {
                    workflow_id: run_id.to_owned(),
                    run_id: walked.clone(),
                }),
                maximum_page_size: 1,
                ..Default::default()
            };
            let mut client = self.client.clone();
            let history = client
                .get_workflow_execution_history(Request::new(request))
                .await
                .map_err(|e| {
                    Error::Executor(format!(
                        "cannot read the history of `{run_id}`: {}",
                        e.message()
                    ))
                })?
                .into_inner();
            walked = history
                .history
                .and_then(|h| h.events.into_iter().next())
                .and_then(|event| match event.attributes {
                    Some(Attributes::WorkflowExecutionStartedEventAttributes(a)) => {
                        Some(a.continued_execution_run_id)
                    }
                    _ => None,
                })
                .unwrap_or_default();
        }
        Ok((current, count))
    }
}

/// How a run ended, as the rest of a sentence: "has completed", "has been cancelled", ...
fn ended_words(status: &str) -> &'static str {
    match status {
        "completed" => "completed",
        "failed" => "failed",
        "cancelled" => "been cancelled",
        "terminated" => "been terminated",
        "timed_out" => "timed out",
        "continued_as_new" => "continued as a new run",
        _ => "ended",
    }
}

/// A workflow status in the words the command line uses.
fn status_name(status: temporalio_client::WorkflowExecutionStatus) -> &'static str {
    use temporalio_client::WorkflowExecutionStatus as S;
    match status {
        S::Running => "running",
        S::Completed => "completed",
        S::Failed => "failed",
        S::Canceled => "cancelled",
        S::Terminated => "terminated",
        S::ContinuedAsNew => "continued_as_new",
        S::TimedOut => "timed_out",
        S::Paused => "paused",
        _ => "unknown",
    }
}
