//! The client side of the Temporal executor: runs started, awaited, messaged, cancelled and
//! listed through a Temporal client, and the in-process worker of a development `Flock`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use temporalio_client::{
    Client, WorkflowCancelOptions, WorkflowGetResultOptions, WorkflowStartOptions,
    errors::WorkflowGetResultError,
};

use futures::future::BoxFuture;
use temporalio_common::protos::temporal::api::enums::v1::TaskQueueType;
use temporalio_common::protos::temporal::api::workflowservice::v1::DescribeTaskQueueResponse;

use super::worker::{replay, run_worker, worker_options};
use super::{WorkerShared, connect, history, workflow};
use crate::config::{TemporalExecutorConfig, WorkerLimits};
use crate::error::{Error, FlowError};
use crate::executor::{Backend, Settings, Started};
use crate::record::RunRecord;
use crate::run::{FoundRun, IdReuse, Recorded, RunInfo, RunStart, id_taken};

/// Temporal's id reuse policy for flock's.
fn reuse_policy(id_reuse: IdReuse) -> temporalio_client::WorkflowIdReusePolicy {
    use IdReuse;
    use temporalio_client::WorkflowIdReusePolicy;
    match id_reuse {
        IdReuse::FailedOnly => WorkflowIdReusePolicy::AllowDuplicateFailedOnly,
        IdReuse::Allow => WorkflowIdReusePolicy::AllowDuplicate,
        IdReuse::Reject => WorkflowIdReusePolicy::RejectDuplicate,
    }
}

/// A run's priority as the SDK takes it.
pub(crate) fn sdk_priority(priority: &crate::run::Priority) -> temporalio_client::Priority {
    temporalio_client::Priority::builder()
        .maybe_priority_key(priority.key)
        .maybe_fairness_key(priority.fairness_key.clone())
        .maybe_fairness_weight(priority.fairness_weight)
        .build()
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

/// The client side of the Temporal executor, and the in-process worker when there is one.
pub(crate) struct TemporalBackend {
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

impl std::fmt::Debug for TemporalBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemporalBackend")
            .field("config", &self.config)
            .field("eager", &self.eager)
            .finish_non_exhaustive()
    }
}

impl TemporalBackend {
    /// Connects; with `in_process_worker`, also starts a worker on a thread of its own (the SDK's
    /// worker future is not `Send`), sharing the connection so workflow starts can be eager.
    pub(crate) async fn start(
        config: TemporalExecutorConfig,
        settings: Arc<Settings>,
        in_process_worker: Option<WorkerLimits>,
    ) -> Result<TemporalBackend, Error> {
        let Some(limits) = in_process_worker else {
            let client = connect(&config).await?;
            return Ok(TemporalBackend {
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
        Ok(TemporalBackend {
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

    /// The options `start` starts with; `attach_running` for signal-with-start (a running run
    /// with its id is signalled instead).
    fn start_options(&self, start: &RunStart, attach_running: bool) -> WorkflowStartOptions {
        use temporalio_client::WorkflowIdConflictPolicy;
        let spec = start.flow;
        WorkflowStartOptions::new(
            spec.task_queue
                .unwrap_or(&self.config.task_queue)
                .to_owned(),
            start.run_id.to_string(),
        )
        .maybe_execution_timeout(
            spec.execution_timeout
                .or(self.config.workflow_execution_timeout),
        )
        .maybe_run_timeout(spec.run_timeout.or(self.config.workflow_run_timeout))
        .enable_eager_workflow_start(self.eager && !attach_running)
        .id_reuse_policy(reuse_policy(start.id_reuse))
        .id_conflict_policy(if attach_running {
            WorkflowIdConflictPolicy::UseExisting
        } else {
            WorkflowIdConflictPolicy::Fail
        })
        .maybe_search_attributes(search_attributes(&start.attributes))
        .priority(sdk_priority(&start.priority))
        .maybe_memo(start.budget.map(super::workflow::budget_memo))
        .build()
    }

    /// Starts a workflow of flow `name`; with `signal`, signal-with-start (a running run with
    /// this id is signalled instead).
    pub(crate) async fn start_run(&self, start: RunStart) -> Result<(), Error> {
        let options = self.start_options(&start, start.signal.is_some());
        let RunStart {
            flow: spec,
            run_id,
            input,
            id_reuse,
            signal,
            ..
        } = start;
        let run_id = &*run_id;
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

    async fn id_refused(&self, flow: &str, run_id: &str, id_reuse: IdReuse) -> Error {
        let state = match self.status_of(run_id).await {
            Some(true) => "is still running",
            Some(false) if id_reuse == IdReuse::FailedOnly => "completed",
            Some(false) => "closed",
            None => "exists",
        };
        id_taken(run_id, flow, state, id_reuse)
    }

    /// Update-with-start: starts the run unless one with this id is running, sends it update
    /// `name` and waits for the answer.
    pub(crate) async fn update_with_start(
        &self,
        start: RunStart,
        name: &str,
        value: Value,
    ) -> Result<Value, Error> {
        let RunStart {
            flow: spec,
            run_id,
            input,
            id_reuse,
            attributes,
            priority,
            budget,
            ..
        } = start;
        let (run_id, attributes) = (&*run_id, &attributes);
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
        .priority(sdk_priority(&priority))
        .maybe_memo(budget.map(super::workflow::budget_memo))
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
    ) -> Result<Vec<FoundRun>, Error> {
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
            found.push(FoundRun::new(
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

impl TemporalBackend {
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

    /// Temporal's DescribeTaskQueue of `queue` for tasks of type `kind`, with its backlog
    /// statistics when `stats`.
    async fn describe_queue(
        &self,
        queue: &str,
        kind: TaskQueueType,
        stats: bool,
    ) -> Result<DescribeTaskQueueResponse, temporalio_client::tonic::Status> {
        use temporalio_client::grpc::WorkflowService;
        use temporalio_common::protos::temporal::api::enums::v1::TaskQueueKind;
        use temporalio_common::protos::temporal::api::taskqueue::v1::TaskQueue;
        use temporalio_common::protos::temporal::api::workflowservice::v1::DescribeTaskQueueRequest;
        let request = DescribeTaskQueueRequest {
            namespace: self.config.namespace.clone(),
            task_queue: Some(TaskQueue {
                name: queue.to_owned(),
                kind: TaskQueueKind::Normal as i32,
                ..Default::default()
            }),
            task_queue_type: kind as i32,
            report_stats: stats,
            ..Default::default()
        };
        let mut client = self.client.clone();
        let answer = client
            .describe_task_queue(temporalio_client::tonic::Request::new(request))
            .await?;
        Ok(answer.into_inner())
    }

    /// The backlog of one type of task of `queue`.
    async fn task_stats(
        &self,
        queue: &str,
        kind: TaskQueueType,
    ) -> Result<crate::run::TaskStats, Error> {
        let answer = self.describe_queue(queue, kind, true).await.map_err(|e| {
            Error::Executor(format!(
                "cannot read the backlog of task queue `{queue}`: {e}"
            ))
        })?;
        let stats = answer.stats.unwrap_or_default();
        let age = stats
            .approximate_backlog_age
            .map(|age| age.seconds as f64 + f64::from(age.nanos) / 1e9)
            .unwrap_or_default();
        Ok(crate::run::TaskStats {
            backlog: u64::try_from(stats.approximate_backlog_count).unwrap_or_default(),
            backlog_age_secs: age,
            add_rate: stats.tasks_add_rate,
            dispatch_rate: stats.tasks_dispatch_rate,
            pollers: answer.pollers.len(),
        })
    }

    /// [`Error::NoWorker`] for `what` (`query `status``) when no worker has polled the task
    /// queue of run `run_id` lately (Temporal's DescribeTaskQueue); `None` when one has, or when
    /// it cannot be told.
    async fn no_worker(&self, flow: &str, run_id: &str, what: &str) -> Option<Error> {
        let task_queue = self.description(run_id).await.ok()?.task_queue().to_owned();
        let pollers = self
            .describe_queue(&task_queue, TaskQueueType::Workflow, false)
            .await
            .ok()?
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
            Err(Error::WrongFlow {
                run_id: run_id.to_owned(),
                expected: name.to_owned(),
                actual: actual.to_owned(),
            })
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
    pub(crate) async fn describe(&self, run_id: &str) -> Result<RunInfo, Error> {
        let description = self.description(run_id).await?;
        Ok(RunInfo::new(
            run_id.to_owned(),
            description.workflow_type().to_owned(),
            status_name(description.status()),
            description.start_time(),
            description.close_time(),
        ))
    }

    /// The runs a visibility query selects, newest first, at most `limit`.
    pub(crate) async fn list(&self, query: &str, limit: usize) -> Result<Vec<RunInfo>, Error> {
        use futures::StreamExt;
        let options = temporalio_client::WorkflowListOptions::builder()
            .limit(limit)
            .build();
        let mut stream = self.client.list_workflows(query.to_owned(), options);
        let mut found = Vec::new();
        while let Some(execution) = stream.next().await {
            let execution = execution
                .map_err(|e| Error::Executor(format!("cannot list runs (query `{query}`): {e}")))?;
            found.push(RunInfo::new(
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

impl TemporalBackend {
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
            walked = self.continued_from(run_id, &walked).await?;
        }
        Ok((current, count))
    }

    /// The generation (Temporal run id) of workflow `run_id` that `generation` continued from;
    /// empty for the first. One page of one event read.
    async fn continued_from(&self, run_id: &str, generation: &str) -> Result<String, Error> {
        use temporalio_client::grpc::WorkflowService;
        use temporalio_client::tonic::Request;
        use temporalio_common::protos::temporal::api::common::v1::WorkflowExecution;
        use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;
        use temporalio_common::protos::temporal::api::workflowservice::v1::GetWorkflowExecutionHistoryRequest;
        let request = GetWorkflowExecutionHistoryRequest {
            namespace: self.config.namespace.clone(),
            execution: Some(WorkflowExecution {
                workflow_id: run_id.to_owned(),
                run_id: generation.to_owned(),
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
        Ok(history
            .history
            .and_then(|h| h.events.into_iter().next())
            .and_then(|event| match event.attributes {
                Some(Attributes::WorkflowExecutionStartedEventAttributes(a)) => {
                    Some(a.continued_execution_run_id)
                }
                _ => None,
            })
            .unwrap_or_default())
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
/// How many generations a run's live events walk back to the one they saw last.
const WALK_BACK: usize = 100;

impl TemporalBackend {
    /// One look at workflow `run_id` of `flow` for its live events: the description (one call),
    /// and the current generation's history when it grew since `cache` was filled.
    async fn look(
        &self,
        flow: &str,
        run_id: &str,
        cache: &mut crate::events::LookCache,
    ) -> Result<crate::events::Look, Error> {
        use crate::events::{Look, Snapshot};
        use temporalio_client::WorkflowExecutionStatus as Status;
        let description = self.description(run_id).await?;
        let status = description.status();
        let raw = &description.raw_description;
        let info = raw.workflow_execution_info.as_ref();
        let length = info.map_or(0, |info| info.history_length);
        let generation = info
            .and_then(|info| info.execution.as_ref())
            .map(|execution| execution.run_id.clone())
            .unwrap_or_default();
        let moved_on = generation != cache.generation;
        let grew = length != cache.history_length || moved_on;
        // the run continued as new since the last look: the end of the generation it left
        // and the generations in between, so that their steps are in the stream too
        let mut previous = Vec::new();
        if moved_on && !cache.generation.is_empty() {
            let mut between = Vec::new();
            let mut walked = self.continued_from(run_id, &generation).await?;
            while !walked.is_empty() && walked != cache.generation && between.len() < WALK_BACK {
                between.push(walked.clone());
                walked = self.continued_from(run_id, &walked).await?;
            }
            if walked != cache.generation {
                between.clear(); // not a continuation of it: the id was used again
            }
            let left = std::mem::take(&mut cache.generation);
            for generation in std::iter::once(left).chain(between.into_iter().rev()) {
                previous.push(Snapshot {
                    steps: self.step_snapshots(run_id, flow, &generation).await?,
                    generation,
                    approvals: None,
                });
            }
        }
        if grew {
            cache.steps = self.step_snapshots(run_id, flow, &generation).await?;
            cache.history_length = length;
            cache.generation.clone_from(&generation);
        }
        // the running steps: Temporal writes an activity's started event when it closes, so
        // their attempts (and streamed text) come from the pending activities, told apart by
        // activity id (steps of one name may run at once)
        let mut pending: Vec<_> = raw.pending_activities.iter().collect();
        let mut steps = cache.steps.clone();
        for step in steps.iter_mut().filter(|step| step.finished.is_none()) {
            let Some(i) = pending
                .iter()
                .position(|p| history::is_pending(step.activity_id.as_deref(), &step.name, p))
            else {
                continue;
            };
            history::pending_step(&self.client, pending.remove(i), step).await;
        }
        // a paused run goes on once it is unpaused
        let running = matches!(
            status,
            Status::Running | Status::ContinuedAsNew | Status::Paused
        );
        Ok(Look {
            previous,
            snapshot: Snapshot {
                generation,
                steps,
                approvals: None,
            },
            grew,
            running,
            status: status_name(status).to_owned(),
        })
    }

    /// The steps of generation `generation` of run `run_id` as its history shows them.
    async fn step_snapshots(
        &self,
        run_id: &str,
        flow: &str,
        generation: &str,
    ) -> Result<Vec<crate::events::StepSnapshot>, Error> {
        let steps = history::generation_steps(
            &self.client,
            &self.settings.registry,
            run_id,
            flow,
            generation,
        )
        .await
        .map_err(Error::Executor)?;
        Ok(steps
            .into_iter()
            .map(|step| crate::events::StepSnapshot {
                attempt: u32::try_from(step.attempts.len()).unwrap_or(u32::MAX),
                failures: step
                    .attempts
                    .iter()
                    .map(|a| a.error.as_ref().map(ToString::to_string))
                    .collect(),
                finished: match (step.output, step.error) {
                    (Some(output), _) => Some(Ok(output)),
                    (None, Some(error)) => Some(Err(error.to_string())),
                    (None, None) => None,
                },
                usage: step.usage,
                duration: step.duration,
                streamed: step.streamed,
                activity_id: step.activity_id,
                name: step.agent,
                ..Default::default()
            })
            .collect())
    }
}

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

impl Backend for TemporalBackend {
    fn start(&self, start: RunStart) -> BoxFuture<'_, Result<Started, Error>> {
        Box::pin(async move {
            self.start_run(start).await?;
            Ok(Started::default())
        })
    }

    fn run(&self, start: RunStart, record: bool) -> BoxFuture<'_, Recorded<Value>> {
        Box::pin(async move {
            let (started, started_at) = (std::time::Instant::now(), std::time::SystemTime::now());
            let (name, run_id, input) =
                (start.flow.name, start.run_id.clone(), start.input.clone());
            let result = async {
                self.start_run(start).await?;
                self.result(name, &run_id).await
            }
            .await;
            let mut summary =
                RunRecord::summary(&run_id, name, started_at, started.elapsed(), input, &result);
            if record {
                self.fill_record(&mut summary).await;
            }
            Recorded {
                result,
                record: summary,
            }
        })
    }

    fn update_with_start<'a>(
        &'a self,
        start: RunStart,
        name: &'a str,
        value: Value,
    ) -> BoxFuture<'a, Result<(Started, Value), Error>> {
        Box::pin(async move {
            let answer = TemporalBackend::update_with_start(self, start, name, value).await?;
            Ok((Started::default(), answer))
        })
    }

    fn result<'a>(&'a self, flow: &'a str, run_id: &'a str) -> BoxFuture<'a, Result<Value, Error>> {
        Box::pin(TemporalBackend::result(self, flow, run_id))
    }

    fn check_flow<'a>(
        &'a self,
        flow: &'a str,
        run_id: &'a str,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(self.check_type(flow, run_id))
    }

    fn describe<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<RunInfo, Error>> {
        Box::pin(TemporalBackend::describe(self, run_id))
    }

    fn cancel<'a>(&'a self, _flow: &'a str, run_id: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(TemporalBackend::cancel(self, run_id))
    }

    fn signal<'a>(
        &'a self,
        flow: &'a str,
        run_id: &'a str,
        name: &'a str,
        value: Value,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(TemporalBackend::signal(self, flow, run_id, name, value))
    }

    fn query<'a>(
        &'a self,
        flow: &'a str,
        run_id: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Value, Error>> {
        Box::pin(TemporalBackend::query(self, flow, run_id, name))
    }

    fn update<'a>(
        &'a self,
        flow: &'a str,
        run_id: &'a str,
        name: &'a str,
        value: Value,
    ) -> BoxFuture<'a, Result<Value, Error>> {
        Box::pin(TemporalBackend::update(self, flow, run_id, name, value))
    }

    fn find_runs<'a>(
        &'a self,
        flow: &'a str,
        attributes: &'a BTreeMap<String, String>,
    ) -> BoxFuture<'a, Result<Vec<FoundRun>, Error>> {
        Box::pin(TemporalBackend::find_runs(self, flow, attributes))
    }

    fn record<'a>(
        &'a self,
        flow: &'a str,
        run_id: &'a str,
    ) -> BoxFuture<'a, Result<RunRecord, Error>> {
        Box::pin(async move {
            let mut record = RunRecord::summary(
                run_id,
                flow,
                std::time::SystemTime::now(),
                Duration::ZERO,
                Value::Null,
                &Ok(Value::Null),
            );
            record.output = None;
            self.record_from_history(&mut record).await?;
            Ok(record)
        })
    }

    fn terminate<'a>(
        &'a self,
        run_id: &'a str,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(TemporalBackend::terminate(self, run_id, reason))
    }

    fn list<'a>(
        &'a self,
        query: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<RunInfo>, Error>> {
        Box::pin(TemporalBackend::list(self, query, limit))
    }

    fn generations<'a>(
        &'a self,
        run_id: &'a str,
        known: Option<&'a str>,
        limit: u32,
    ) -> BoxFuture<'a, Result<(String, u32), Error>> {
        Box::pin(self.generations_since(run_id, known, limit))
    }

    fn look<'a>(
        &'a self,
        flow: &'a str,
        run_id: &'a str,
        cache: &'a mut crate::events::LookCache,
    ) -> BoxFuture<'a, Result<crate::events::Look, Error>> {
        Box::pin(TemporalBackend::look(self, flow, run_id, cache))
    }

    fn history_json<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<Vec<u8>, Error>> {
        Box::pin(TemporalBackend::history_json(self, run_id))
    }

    fn queue_stats<'a>(
        &'a self,
        queue: &'a str,
    ) -> BoxFuture<'a, Result<crate::run::QueueStats, Error>> {
        Box::pin(async move {
            Ok(crate::run::QueueStats {
                queue: queue.to_owned(),
                flows: self.task_stats(queue, TaskQueueType::Workflow).await?,
                agents: self.task_stats(queue, TaskQueueType::Activity).await?,
            })
        })
    }

    fn replay(&self, history_json: Vec<u8>) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(TemporalBackend::replay(
            self,
            self.settings.clone(),
            history_json,
        ))
    }

    fn set_current_version<'a>(&'a self, build_id: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(TemporalBackend::set_current_version(self, build_id))
    }

    fn run_build_id<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<Option<String>, Error>> {
        Box::pin(self.run_version(run_id))
    }

    fn shutdown(&self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(TemporalBackend::shutdown(self))
    }

    fn temporal(&self) -> Option<&TemporalBackend> {
        Some(self)
    }
}
