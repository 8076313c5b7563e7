//! The worker side of the Temporal executor: the options a worker serves agents and flows
//! with, running a worker until it is told to stop, ending runs of flows it does not know,
//! agent pools, and replaying a recorded history against the flows linked in.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use temporalio_client::Client;
use temporalio_sdk::{Runtime as SdkRuntime, Worker, WorkerOptions};

use super::{Registrar, WorkerShared, codec, history, workflow};
use crate::config::{Pollers, WorkerLimits};
use crate::error::{Error, FlowError};
use crate::registry::Registry;

/// Worker options serving every agent (as an activity) and flow and hand-off chain (as a
/// workflow) of the registry, on the configured task queue; or, with `pool`, only the pool's
/// agents on the pool's queue (no flows: an activity-only worker).
pub(crate) fn worker_options(
    shared: &Arc<WorkerShared>,
    limits: &WorkerLimits,
    pool: Option<&AgentPool>,
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
        .maybe_max_task_queue_activities_per_second(limits.queue_activities_per_second)
        .tuner(tuner(limits))
        .workflow_task_poller_behavior(poller_behavior(limits.pollers))
        .activity_task_poller_behavior(poller_behavior(limits.pollers))
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
    // The steps of the agents that run step by step: a pool serves the model requests of its
    // agents (they have the agent's task queue) and the tool calls it names.
    for step in registry.steps() {
        if pool.is_none_or(|pool| pool.agents.contains(step.spec().name)) {
            super::activity::register_step(&mut registrar.options, shared, step);
        }
    }
    match registrar.error {
        Some(error) => Err(error),
        None => Ok(registrar.options),
    }
}

/// How long a checkpoint (an activity's heartbeat details) may wait before the worker sends it
/// to the server. The SDK sends an attempt's first heartbeat at once and later ones at most this
/// often, keeping the latest; a worker killed in between loses the checkpoints made since. Also
/// what delays streamed model text on its way to a run's live events ([`crate::events`]): a
/// heartbeat is one small call to the server, no history event (1 s before the live events).
pub const CHECKPOINT_FLUSH: Duration = Duration::from_millis(100);

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

/// What the adapters register into for a replay: the replayer's options.
pub(crate) struct ReplayRegistrar {
    pub(super) options: temporalio_sdk::workflow_replayer::WorkflowReplayerOptions,
    pub(super) shared: Arc<WorkerShared>,
    pub(super) error: Option<Error>,
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

/// The SDK's poller behavior for these pollers.
fn poller_behavior(pollers: Pollers) -> temporalio_sdk::runtime::PollerBehavior {
    use temporalio_sdk::runtime::{AutoscalingOptions, PollerBehavior};
    match pollers {
        Pollers::Fixed(maximum) => PollerBehavior::SimpleMaximum(maximum),
        Pollers::Autoscaling {
            minimum,
            maximum,
            initial,
        } => PollerBehavior::Autoscaling(
            AutoscalingOptions::builder()
                .minimum(minimum)
                .maximum(maximum)
                .initial(initial)
                .build(),
        ),
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
    pub(super) flows: Vec<&'static str>,
    pub(super) chains: Vec<&'static str>,
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

/// What an agent-pool worker ([`FlockWorker::agents`](crate::FlockWorker::agents)) serves: the
/// agents of one task queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AgentPool {
    /// The task queue the agents declare.
    pub(crate) queue: &'static str,
    /// The agents' names.
    pub(crate) agents: BTreeSet<&'static str>,
}

impl AgentPool {
    /// The pool of agents `names`. Temporal gives a task to any worker polling its queue, so
    /// every worker on a queue must serve everything that runs there: the agents must declare
    /// their own task queue (`#[agent(task_queue = "..")]`), one and the same, and name every
    /// agent declared on it; no flow may be declared on it.
    pub(crate) fn of(registry: &Registry, names: &[String]) -> Result<AgentPool, Error> {
        let mut queues: BTreeMap<&'static str, Vec<&'static str>> = BTreeMap::new();
        let mut agents = BTreeSet::new();
        for name in names {
            let spec = registry.agent_named(name)?.spec();
            let Some(queue) = spec.task_queue else {
                return Err(Error::Config(format!(
                    "agent `{}` ({}) runs on the task queue of the flows that call it, where every \
                     worker serves every flow and agent; to serve it in a pool of its own, give it \
                     a queue: `#[agent(task_queue = \"..\")]`",
                    spec.name, spec.location
                )));
            };
            queues.entry(queue).or_default().push(spec.name);
            agents.insert(spec.name);
            // an agent that runs step by step makes its model requests on its queue
            if spec.runs_step_by_step()
                && let Some(step) =
                    registry.agent(&format!("{}{}", spec.name, crate::step::MODEL_STEP))
            {
                agents.insert(step.spec().name);
            }
        }
        if queues.len() > 1 {
            let list = queues
                .iter()
                .map(|(queue, names)| format!("`{queue}`: {}", names.join(", ")))
                .collect::<Vec<_>>()
                .join("; ");
            return Err(Error::Config(format!(
                "the agents of one pool worker must share a task queue, these are on several \
                 ({list}): run one worker per queue"
            )));
        }
        let Some((&queue, _)) = queues.first_key_value() else {
            return Err(Error::Config(
                "an agent pool needs at least one agent name".into(),
            ));
        };
        let left_out: Vec<String> = registry
            .agents()
            .chain(registry.steps())
            .map(|a| a.spec())
            .filter(|spec| spec.task_queue == Some(queue) && !agents.contains(spec.name))
            .map(|spec| format!("agent `{}`", spec.name))
            .chain(
                registry
                    .flows()
                    .map(|f| f.spec())
                    .filter(|spec| spec.task_queue == Some(queue))
                    .map(|spec| format!("flow `{}`", spec.name)),
            )
            .collect();
        if !left_out.is_empty() {
            let (runs, them) = if left_out.len() == 1 {
                ("runs", "it")
            } else {
                ("run", "them")
            };
            return Err(Error::Config(format!(
                "{} also {runs} on task queue `{queue}`, and Temporal gives a queue's tasks to any \
                 worker polling it: a pool worker on `{queue}` must serve {them} too (name every \
                 agent of the queue; a flow declared on it needs a full worker there)",
                left_out.join(", ")
            )));
        }
        Ok(AgentPool { queue, agents })
    }
}
