//! The local executor: flows and agents run in-process, with the retry, timeout and error-class
//! semantics of the Temporal executor, and a run record the caller can inspect.
//!
//! [`run`] is the runtime a running flow asks (agent calls with their attempts, child flows,
//! timers, messages); this module is the [`Backend`] the facade asks from outside, and the table
//! of this `Flock`'s runs both share: each run's id (the id rules Temporal applies to workflow
//! ids), its mailbox while it runs, and its result for the handles that may still ask for it.

mod run;

use std::collections::{BTreeMap, HashMap, VecDeque, hash_map};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Instant, SystemTime};

use futures::future::BoxFuture;
use serde_json::Value;

use super::{Backend, Settings, Started};
use crate::approval;
use crate::error::{Error, FlowError};
use crate::message::Mailbox;
use crate::record::{RunRecord, StepEvent};
use crate::run::{FoundRun, IdReuse, Recorded, RunInfo, RunStart, id_taken};
use crate::spec::{FlowSpec, MessageKind};

/// How many closed runs a `Flock` remembers (their ids stay taken, `find_runs` finds them):
/// Temporal forgets closed runs after the namespace's retention period; a process running runs
/// for months must not keep every id.
const LOCAL_RETENTION: usize = 10_000;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The local executor's backend: the settings runs share and the table of runs.
#[derive(Debug)]
pub(crate) struct LocalBackend {
    settings: Arc<Settings>,
    runs: Arc<LocalRuns>,
}

impl LocalBackend {
    pub(crate) fn new(settings: Arc<Settings>) -> Self {
        LocalBackend {
            settings,
            runs: Arc::default(),
        }
    }

    /// The flow `start` names, as registered here.
    fn flow(&self, flow: &FlowSpec) -> Result<&'static dyn crate::flow::DynFlow, Error> {
        self.settings.registry.flow(flow.name).ok_or_else(|| {
            Error::Registry(format!(
                "flow `{}` is not registered: register it with `Flock::builder().flow(..)` (or, with `serve_only`, name it or a flow that calls it there)",
                flow.name
            ))
        })
    }

    /// Claims `start`'s id, opens its mailbox and delivers its signal: the run is ready to go.
    fn open(
        &self,
        start: &RunStart,
        started_at: SystemTime,
    ) -> Result<(Arc<str>, Arc<Cell>), Error> {
        let (id, cell) = self.runs.claim(start, started_at)?;
        if let Some((name, value)) = &start.signal
            && let Err(message) = cell.mailbox.signal(name, value.clone())
        {
            self.runs
                .close(&id, &cell, &Err(FlowError::msg(message.clone())), None);
            return Err(message_error(start.flow.name, &start.run_id, message));
        }
        Ok((id, cell))
    }

    /// Run `run_id` of `flow`, claimed with `cell`, as it is driven.
    fn claimed(
        &self,
        flow: &'static dyn crate::flow::DynFlow,
        cell: Arc<Cell>,
        run_id: Arc<str>,
        recording: bool,
        budget: Option<crate::usage::Budget>,
    ) -> run::Claimed {
        run::Claimed {
            settings: self.settings.clone(),
            runs: self.runs.clone(),
            cell,
            flow,
            run_id,
            recording,
            spending: budget.map(run::Spending::new),
        }
    }

    /// Runs an opened run to its end (or its cancellation) and closes it; with `recording`, its
    /// record is complete.
    async fn drive(
        run: run::Claimed,
        input: Value,
        started: Option<(Instant, SystemTime)>,
    ) -> (Result<Value, FlowError>, Option<RunRecord>) {
        let (runs, run_id, cell) = (run.runs.clone(), run.run_id.clone(), run.cell.clone());
        let mut closing = Closing::new(&runs, &run_id, &cell);
        let running = run::run_flow(run, input, started);
        let (result, record) = tokio::select! {
            (result, record) = running => (result, record),
            () = cell.cancelled() => (
                Err(FlowError::Cancelled { message: "the run was cancelled".into() }),
                None,
            ),
        };
        closing.close(&result, record.as_ref());
        (result, record)
    }

    /// Runs `start` to its end: its result, and with `recording` its record (`None` when it
    /// never started, or was cancelled).
    async fn run_to_end(
        &self,
        start: RunStart,
        recording: bool,
        (started, started_at): (Instant, SystemTime),
    ) -> (Result<Value, Error>, Option<RunRecord>) {
        let flow = match self.flow(start.flow) {
            Ok(flow) => flow,
            Err(error) => return (Err(error), None),
        };
        let (id, cell) = match self.open(&start, started_at) {
            Ok(opened) => opened,
            Err(error) => return (Err(error), None),
        };
        let name = start.flow.name;
        let (result, record) = Self::drive(
            self.claimed(flow, cell, id.clone(), recording, start.budget),
            start.input,
            Some((started, started_at)),
        )
        .await;
        (result.map_err(|cause| run_failed(name, &id, cause)), record)
    }

    /// The cell of running run `run_id` of `flow`, for its mailbox; a run that has ended is
    /// [`Error::RunEnded`], one of another flow [`Error::Message`].
    fn mailbox(&self, flow: &str, run_id: &str, what: &str) -> Result<Arc<Cell>, Error> {
        let (state, actual, cell) = self
            .runs
            .entry(run_id)
            .ok_or_else(|| message_error(flow, run_id, format!("run `{run_id}` is not running")))?;
        if actual != flow {
            return Err(message_error(
                flow,
                run_id,
                format!("run `{run_id}` is a run of `{actual}`"),
            ));
        }
        match (state, cell) {
            (RunState::Running, Some(cell)) => Ok(cell),
            (state, _) => Err(Error::RunEnded {
                flow: flow.to_owned(),
                run_id: run_id.to_owned(),
                status: state.name().to_owned(),
                message: format!(
                    "run `{run_id}` of `{flow}` has {}: {what} goes to running runs",
                    state.ended_words()
                ),
            }),
        }
    }
}

impl Backend for LocalBackend {
    fn start(&self, start: RunStart) -> BoxFuture<'_, Result<Started, Error>> {
        Box::pin(async move {
            let flow = self.flow(start.flow)?;
            // signal-with-start: a running run with this id is only signalled
            if let Some((name, value)) = &start.signal
                && let Some((RunState::Running, actual, Some(cell))) =
                    self.runs.entry(&start.run_id)
            {
                if actual != start.flow.name {
                    return Err(message_error(
                        start.flow.name,
                        &start.run_id,
                        format!("run `{}` is a run of `{actual}`", start.run_id),
                    ));
                }
                cell.mailbox
                    .signal(name, value.clone())
                    .map_err(|message| message_error(start.flow.name, &start.run_id, message))?;
                return Ok(Started(Some(cell)));
            }
            let (id, cell) = self.open(&start, SystemTime::now())?;
            tokio::spawn(Self::drive(
                self.claimed(flow, cell.clone(), id, true, start.budget),
                start.input,
                None,
            ));
            Ok(Started(Some(cell)))
        })
    }

    fn run(&self, start: RunStart, record: bool) -> BoxFuture<'_, Recorded<Value>> {
        Box::pin(async move {
            let (started, started_at) = (Instant::now(), SystemTime::now());
            let (name, run_id) = (start.flow.name, start.run_id.clone());
            let input = if record {
                start.input.clone()
            } else {
                Value::Null
            };
            let (result, kept) = self.run_to_end(start, record, (started, started_at)).await;
            let record = match kept {
                Some(kept) => kept,
                None if record => {
                    RunRecord::summary(&run_id, name, started_at, started.elapsed(), input, &result)
                }
                None => RunRecord::bare(started_at, started.elapsed(), &result),
            };
            Recorded { result, record }
        })
    }

    fn run_result(&self, start: RunStart) -> BoxFuture<'_, Result<Value, Error>> {
        Box::pin(async move {
            let started = (Instant::now(), SystemTime::now());
            self.run_to_end(start, false, started).await.0
        })
    }

    fn update_with_start<'a>(
        &'a self,
        start: RunStart,
        name: &'a str,
        value: Value,
    ) -> BoxFuture<'a, Result<(Started, Value), Error>> {
        Box::pin(async move {
            let (flow, run_id) = (start.flow.name, start.run_id.clone());
            let started = match self.runs.entry(&run_id) {
                Some((RunState::Running, _, Some(cell))) => Started(Some(cell)),
                _ => self.start(start).await?,
            };
            let answer = self.update(flow, &run_id, name, value).await?;
            Ok((started, answer))
        })
    }

    fn result<'a>(&'a self, flow: &'a str, run_id: &'a str) -> BoxFuture<'a, Result<Value, Error>> {
        Box::pin(async move {
            let cell = self.runs.cell(flow, run_id)?;
            cell.finished()
                .await
                .0
                .map_err(|cause| run_failed(flow, run_id, cause))
        })
    }

    fn check_flow<'a>(
        &'a self,
        flow: &'a str,
        run_id: &'a str,
    ) -> BoxFuture<'a, Result<(), Error>> {
        let checked = match self.runs.entry(run_id) {
            None => Err(no_such_run(run_id)),
            Some((_, actual, _)) if actual != flow => Err(Error::WrongFlow {
                run_id: run_id.to_owned(),
                expected: flow.to_owned(),
                actual: actual.to_owned(),
            }),
            Some(_) => Ok(()),
        };
        Box::pin(std::future::ready(checked))
    }

    fn describe<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<RunInfo, Error>> {
        Box::pin(std::future::ready(
            self.runs.info(run_id).ok_or_else(|| no_such_run(run_id)),
        ))
    }

    fn cancel<'a>(&'a self, flow: &'a str, run_id: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        let cancelled = match self.runs.entry(run_id) {
            None => Err(no_such_run(run_id)),
            Some((RunState::Running, _, Some(cell))) => {
                cell.cancel();
                Ok(())
            }
            Some((state, _, _)) => Err(Error::RunEnded {
                flow: flow.to_owned(),
                run_id: run_id.to_owned(),
                status: state.name().to_owned(),
                message: format!(
                    "run `{run_id}` of `{flow}` has {}: there is nothing to cancel",
                    state.ended_words()
                ),
            }),
        };
        Box::pin(std::future::ready(cancelled))
    }

    fn signal<'a>(
        &'a self,
        flow: &'a str,
        run_id: &'a str,
        name: &'a str,
        value: Value,
    ) -> BoxFuture<'a, Result<(), Error>> {
        let sent = self.mailbox(flow, run_id, "a signal").and_then(|cell| {
            cell.mailbox
                .signal(name, value)
                .map_err(|message| message_error(flow, run_id, message))
        });
        Box::pin(std::future::ready(sent))
    }

    fn query<'a>(
        &'a self,
        flow: &'a str,
        run_id: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Value, Error>> {
        let answer = match self.runs.entry(run_id) {
            None => Err(message_error(
                flow,
                run_id,
                format!("run `{run_id}` is not running"),
            )),
            Some((_, actual, _)) if actual != flow => Err(message_error(
                flow,
                run_id,
                format!("run `{run_id}` is a run of `{actual}`"),
            )),
            // a closed run answers from what it published last, as on Temporal
            Some((_, _, cell)) => match cell {
                Some(cell) => cell
                    .mailbox
                    .query(name)
                    .map_err(|message| message_error(flow, run_id, message)),
                None => Err(message_error(
                    flow,
                    run_id,
                    format!("run `{run_id}` has ended and its state is no longer kept"),
                )),
            },
        };
        Box::pin(std::future::ready(answer))
    }

    fn update<'a>(
        &'a self,
        flow: &'a str,
        run_id: &'a str,
        name: &'a str,
        value: Value,
    ) -> BoxFuture<'a, Result<Value, Error>> {
        Box::pin(async move {
            let cell = self.mailbox(flow, run_id, "an update")?;
            cell.mailbox
                .update(name, value)
                .await
                .map_err(|message| message_error(flow, run_id, message))
        })
    }

    fn find_runs<'a>(
        &'a self,
        flow: &'a str,
        attributes: &'a BTreeMap<String, String>,
    ) -> BoxFuture<'a, Result<Vec<FoundRun>, Error>> {
        Box::pin(std::future::ready(Ok(self.runs.find(flow, attributes))))
    }

    fn record<'a>(
        &'a self,
        flow: &'a str,
        run_id: &'a str,
    ) -> BoxFuture<'a, Result<RunRecord, Error>> {
        Box::pin(async move {
            let cell = self.runs.cell(flow, run_id)?;
            match cell.finished_now() {
                Some((_, Some(record))) => Ok(record),
                Some((_, None)) => Err(Error::Executor(format!(
                    "local run `{run_id}` was cancelled: it left no record"
                ))),
                None => Err(Error::Executor(format!(
                    "local run `{run_id}` is still running: its record is complete when it ends (follow it live with `Flock::events_of_run`)"
                ))),
            }
        })
    }

    fn step_events(&self) -> Result<tokio::sync::broadcast::Receiver<StepEvent>, Error> {
        Ok(self.settings.step_events.subscribe())
    }
}

/// A message error naming the flow and the run.
fn message_error(flow: &str, run_id: &str, message: String) -> Error {
    Error::Message {
        flow: flow.to_owned(),
        run_id: run_id.to_owned(),
        message,
    }
}

fn run_failed(flow: &str, run_id: &str, cause: FlowError) -> Error {
    Error::Run {
        name: flow.to_owned(),
        run_id: run_id.to_owned(),
        cause,
    }
}

fn no_such_run(run_id: &str) -> Error {
    Error::NotFound(format!(
        "there is no local run `{run_id}` (local runs live in the process that started them; its last {LOCAL_RETENTION} closed runs are remembered)"
    ))
}

// -------------------------------------------------------------------------------------------
// The table of runs.

/// How a local run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunState {
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl RunState {
    fn name(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Completed => "completed",
            RunState::Failed => "failed",
            RunState::Cancelled => "cancelled",
        }
    }

    /// `has …`: how a closed run ended, in words.
    fn ended_words(self) -> &'static str {
        match self {
            RunState::Running => "not ended",
            RunState::Completed => "already completed",
            RunState::Failed => "already failed",
            RunState::Cancelled => "been cancelled",
        }
    }
}

/// One run's mailbox and outcome: shared by the run (while it runs) and by the handles that
/// started or found it; the table keeps it only weakly once the run has closed, so a result
/// nobody can ask for any more is freed. One allocation per run.
pub(crate) struct Cell {
    pub(crate) mailbox: LocalMailbox,
    outcome: Mutex<Option<Outcome>>,
    done: tokio::sync::Notify,
    cancel: tokio::sync::Notify,
}

/// How a run ended: its result and (unless it was cancelled) its record.
type Outcome = (Result<Value, FlowError>, Option<RunRecord>);

impl Cell {
    fn new(flow: &'static FlowSpec) -> Self {
        Cell {
            mailbox: LocalMailbox::new(flow),
            outcome: Mutex::new(None),
            done: tokio::sync::Notify::new(),
            cancel: tokio::sync::Notify::new(),
        }
    }

    fn cancel(&self) {
        self.cancel.notify_one();
    }

    async fn cancelled(&self) {
        self.cancel.notified().await;
    }

    /// The outcome, once the run has one.
    async fn finished(&self) -> Outcome {
        loop {
            let notified = self.done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(outcome) = self.finished_now() {
                return outcome;
            }
            notified.await;
        }
    }

    fn finished_now(&self) -> Option<Outcome> {
        lock(&self.outcome).clone()
    }

    fn finish(&self, outcome: Outcome) {
        *lock(&self.outcome) = Some(outcome);
        self.done.notify_waiters();
    }
}

#[derive(Default)]
pub(crate) struct LocalRuns(Mutex<Table>);

impl std::fmt::Debug for LocalRuns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalRuns").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Table {
    runs: HashMap<Arc<str>, Entry>,
    /// Closed runs, oldest first, with the generation they closed in (a run id started again
    /// under `IdReuse::Allow` closes again in a later generation).
    closed: VecDeque<(Arc<str>, u64)>,
    generation: u64,
}

struct Entry {
    flow: &'static str,
    state: RunState,
    attributes: BTreeMap<String, String>,
    generation: u64,
    started_at: SystemTime,
    closed_at: Option<SystemTime>,
    /// Held while the run runs; once it closes, only weakly.
    running: Option<Arc<Cell>>,
    cell: Weak<Cell>,
}

impl Entry {
    fn cell(&self) -> Option<Arc<Cell>> {
        self.running.clone().or_else(|| self.cell.upgrade())
    }
}

impl LocalRuns {
    /// Claims `start`'s run id for a new run under its id reuse rule (the same rule Temporal
    /// applies to workflow ids); gives the run's id, shared, and its cell.
    fn claim(
        &self,
        start: &RunStart,
        started_at: SystemTime,
    ) -> Result<(Arc<str>, Arc<Cell>), Error> {
        let id = start.run_id.clone();
        let cell = self.claim_id(
            &id,
            start.flow,
            start.id_reuse,
            &start.attributes,
            started_at,
        )?;
        Ok((id, cell))
    }

    fn claim_id(
        &self,
        id: &Arc<str>,
        flow: &'static FlowSpec,
        policy: IdReuse,
        attributes: &BTreeMap<String, String>,
        started_at: SystemTime,
    ) -> Result<Arc<Cell>, Error> {
        let mut table = lock(&self.0);
        let slot = table.runs.entry(id.clone());
        let refused = match &slot {
            hash_map::Entry::Vacant(_) => None,
            hash_map::Entry::Occupied(run) => match run.get().state {
                RunState::Running => Some("is still running"),
                RunState::Completed if policy != IdReuse::Allow => Some("completed"),
                RunState::Failed | RunState::Cancelled if policy == IdReuse::Reject => {
                    Some("failed")
                }
                _ => None,
            },
        };
        if let Some(state) = refused {
            return Err(id_taken(id, flow.name, state, policy));
        }
        let cell = Arc::new(Cell::new(flow));
        let entry = Entry {
            flow: flow.name,
            state: RunState::Running,
            attributes: attributes.clone(),
            generation: 0,
            started_at,
            closed_at: None,
            running: Some(cell.clone()),
            cell: Arc::downgrade(&cell),
        };
        match slot {
            hash_map::Entry::Vacant(slot) => {
                slot.insert(entry);
            }
            hash_map::Entry::Occupied(mut slot) => {
                slot.insert(entry);
            }
        }
        Ok(cell)
    }

    /// A child flow's run: refused while a run with its id is running.
    pub(crate) fn claim_child(
        &self,
        run_id: &Arc<str>,
        flow: &'static FlowSpec,
    ) -> Result<Arc<Cell>, FlowError> {
        self.claim_id(
            run_id,
            flow,
            IdReuse::Allow,
            &BTreeMap::new(),
            SystemTime::now(),
        )
        .map_err(|_| FlowError::ChildFlow {
            flow: flow.name.to_owned(),
            run_id: run_id.to_string(),
            cause: Box::new(FlowError::msg(format!(
                "a run with id `{run_id}` is running already"
            ))),
        })
    }

    /// The run ended: its outcome goes to the handles that hold its cell (none: nothing is kept,
    /// nothing copied), its id stays taken (for the last [`LOCAL_RETENTION`] closed runs).
    fn close(
        &self,
        run_id: &Arc<str>,
        cell: &Arc<Cell>,
        result: &Result<Value, FlowError>,
        record: Option<&RunRecord>,
    ) {
        let state = match result {
            Ok(_) => RunState::Completed,
            Err(error) if error.is_cancellation() => RunState::Cancelled,
            Err(_) => RunState::Failed,
        };
        // the table first: whoever the outcome wakes finds the run closed
        let shared = self.close_entry(run_id, cell, state);
        cell.mailbox.close();
        if shared {
            cell.finish((result.clone(), record.cloned()));
        }
    }

    /// Closes the table's entry of the run whose cell is `cell`; gives whether anyone but the
    /// caller holds the cell (a handle, a waiter), who then needs the outcome. When nobody does,
    /// the entry forgets the cell, so that nobody can take it up later and wait for an outcome
    /// that was never kept.
    fn close_entry(&self, run_id: &Arc<str>, cell: &Arc<Cell>, state: RunState) -> bool {
        let mut guard = lock(&self.0);
        let table = &mut *guard;
        let Some(run) = table.runs.get_mut(run_id) else {
            return Arc::strong_count(cell) > 1;
        };
        if !run.running.as_ref().is_some_and(|c| Arc::ptr_eq(c, cell)) {
            // another run took the id since (not while this one ran: closed before)
            return Arc::strong_count(cell) > 1;
        }
        run.running = None;
        let shared = Arc::strong_count(cell) > 1;
        if !shared {
            run.cell = Weak::new();
        }
        table.generation += 1;
        run.state = state;
        run.generation = table.generation;
        run.closed_at = Some(SystemTime::now());
        table.closed.push_back((run_id.clone(), table.generation));
        while table.closed.len() > LOCAL_RETENTION {
            let Some((old, generation)) = table.closed.pop_front() else {
                break;
            };
            // only if it has not been started again (and maybe closed again) since
            if let hash_map::Entry::Occupied(run) = table.runs.entry(old)
                && run.get().generation == generation
                && run.get().state != RunState::Running
            {
                run.remove();
            }
        }
        shared
    }

    /// Run `run_id`: how it stands, its flow, and its cell while anyone holds it.
    fn entry(&self, run_id: &str) -> Option<(RunState, &'static str, Option<Arc<Cell>>)> {
        let table = lock(&self.0);
        let run = table.runs.get(run_id)?;
        Some((run.state, run.flow, run.cell()))
    }

    /// The cell of running run `run_id` (for a flow signalling another).
    pub(crate) fn running(&self, run_id: &str) -> Option<Arc<Cell>> {
        let table = lock(&self.0);
        table.runs.get(run_id)?.running.clone()
    }

    /// The cell of run `run_id` of `flow`, for its result or record.
    fn cell(&self, flow: &str, run_id: &str) -> Result<Arc<Cell>, Error> {
        match self.entry(run_id) {
            None => Err(no_such_run(run_id)),
            Some((_, actual, _)) if actual != flow => Err(Error::WrongFlow {
                run_id: run_id.to_owned(),
                expected: flow.to_owned(),
                actual: actual.to_owned(),
            }),
            Some((_, _, Some(cell))) => Ok(cell),
            Some((state, _, None)) => Err(Error::Executor(format!(
                "local run `{run_id}` of `{flow}` has {}, and its result is no longer kept: a local run keeps it for as long as a handle to it (from `start` or `flow_handle`) lives",
                state.ended_words()
            ))),
        }
    }

    fn info(&self, run_id: &str) -> Option<RunInfo> {
        let table = lock(&self.0);
        let run = table.runs.get(run_id)?;
        Some(RunInfo::new(
            run_id.to_owned(),
            run.flow.to_owned(),
            run.state.name(),
            Some(run.started_at),
            run.closed_at,
        ))
    }

    fn find(&self, flow: &str, attributes: &BTreeMap<String, String>) -> Vec<FoundRun> {
        let table = lock(&self.0);
        let mut found: Vec<FoundRun> = table
            .runs
            .iter()
            .filter(|(_, run)| {
                run.flow == flow
                    && attributes
                        .iter()
                        .all(|(k, v)| run.attributes.get(k) == Some(v))
            })
            .map(|(run_id, run)| FoundRun::new(run_id.to_string(), run.state == RunState::Running))
            .collect();
        found.sort_by(|a, b| a.run_id.cmp(&b.run_id));
        found
    }
}

/// Closes a run when it ends, or when the future running it is dropped before (its caller
/// stopped waiting, its parent was cancelled): a run never stays "running" in the table.
pub(crate) struct Closing<'a> {
    runs: &'a LocalRuns,
    run_id: &'a Arc<str>,
    cell: &'a Arc<Cell>,
    open: bool,
}

impl<'a> Closing<'a> {
    pub(crate) fn new(runs: &'a LocalRuns, run_id: &'a Arc<str>, cell: &'a Arc<Cell>) -> Self {
        Closing {
            runs,
            run_id,
            cell,
            open: true,
        }
    }

    /// The run ended with `result`.
    pub(crate) fn close(&mut self, result: &Result<Value, FlowError>, record: Option<&RunRecord>) {
        self.open = false;
        self.runs.close(self.run_id, self.cell, result, record);
    }
}

impl Drop for Closing<'_> {
    fn drop(&mut self) {
        if self.open {
            let stopped = FlowError::Cancelled {
                message: "the run stopped: what was running it was dropped".into(),
            };
            self.runs.close(self.run_id, self.cell, &Err(stopped), None);
        }
    }
}

// -------------------------------------------------------------------------------------------
// Mailboxes.

/// The mailbox of one local run: the shared [`Mailbox`] behind a lock, and a notification for
/// the flow (waiting for a message) and for update senders (waiting for an answer).
pub(crate) struct LocalMailbox {
    pub(crate) flow: &'static FlowSpec,
    pub(crate) state: Mutex<Mailbox>,
    pub(crate) changed: tokio::sync::Notify,
}

impl LocalMailbox {
    fn new(flow: &'static FlowSpec) -> Self {
        LocalMailbox {
            flow,
            state: Mutex::new(Mailbox::default()),
            changed: tokio::sync::Notify::new(),
        }
    }

    /// Delivers signal `name`, checked first (declared, fitting its type).
    pub(crate) fn signal(&self, name: &str, value: Value) -> Result<(), String> {
        self.flow.check_message(MessageKind::Signal, name, &value)?;
        lock(&self.state).push_signal(name, value);
        self.changed.notify_waiters();
        Ok(())
    }

    /// Answers query `name` from the state the flow published (the built-in
    /// `flock.approvals`: the calls waiting for approval).
    fn query(&self, name: &str) -> Result<Value, String> {
        let state = lock(&self.state);
        if name == approval::APPROVALS_QUERY {
            return Ok(serde_json::to_value(state.approvals.waiting()).unwrap_or_default());
        }
        state.query(self.flow, name)
    }

    /// Delivers update `name` once its validator accepts it, and waits for the flow's answer.
    /// The built-in `flock.approve` is answered here, at once: the decision of a call that
    /// waits is kept for the loop; any other is an error and changes nothing.
    async fn update(&self, name: &str, value: Value) -> Result<Value, String> {
        if name == approval::APPROVE_UPDATE {
            let decision = approval::read_decision(value)?;
            let mut state = lock(&self.state);
            state.approvals.check(&decision)?;
            state.approvals.decide(decision);
            drop(state);
            self.changed.notify_waiters();
            return Ok(Value::Null);
        }
        self.flow.check_message(MessageKind::Update, name, &value)?;
        let id = lock(&self.state).push_update(name, value);
        self.changed.notify_waiters();
        self.until(|mailbox| mailbox.take_answer(id)).await
    }

    /// Waits until `take` gives something.
    pub(crate) async fn until<T>(&self, mut take: impl FnMut(&mut Mailbox) -> Option<T>) -> T {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(value) = take(&mut lock(&self.state)) {
                return value;
            }
            notified.await;
        }
    }

    /// The run ended: waiting update senders get an error.
    fn close(&self) {
        lock(&self.state).close(self.flow.name);
        self.changed.notify_waiters();
    }

    /// The run continues as new: its untaken signals stay for the next run, its untaken
    /// updates are answered (see [`Mailbox::continue_as_new`]).
    fn continue_as_new(&self) {
        lock(&self.state).continue_as_new(self.flow.name);
        self.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static FLOW: FlowSpec = FlowSpec::new("f");

    fn start(run_id: &str, policy: IdReuse) -> RunStart {
        RunStart {
            id_reuse: policy,
            ..RunStart::new(&FLOW, run_id.to_owned(), Value::Null)
        }
    }

    #[test]
    fn run_ids_are_remembered_while_running_and_for_the_last_closed_runs() {
        let runs = LocalRuns::default();
        let claim = |id: &str, policy| {
            runs.claim(&start(id, policy), SystemTime::now())
                .map(|(_, cell)| cell)
        };
        let close =
            |id: &str, cell: &Arc<Cell>| runs.close(&Arc::from(id), cell, &Ok(Value::Null), None);
        let _running = claim("running", IdReuse::FailedOnly).unwrap();
        let again = claim("again", IdReuse::FailedOnly).unwrap();
        close("again", &again);
        let _again = claim("again", IdReuse::Allow).unwrap(); // started again: running
        for n in 0..=LOCAL_RETENTION {
            let id = format!("run-{n}");
            let cell = claim(&id, IdReuse::FailedOnly).unwrap();
            close(&id, &cell);
        }
        // the oldest closed runs are forgotten; the newest are remembered, running ones always
        assert!(claim("run-0", IdReuse::FailedOnly).is_ok());
        assert!(matches!(
            claim("run-1", IdReuse::FailedOnly),
            Err(Error::IdTaken { .. })
        ));
        let last = format!("run-{LOCAL_RETENTION}");
        assert!(claim(&last, IdReuse::FailedOnly).is_err());
        assert!(claim("running", IdReuse::Allow).is_err());
        assert!(claim("again", IdReuse::Allow).is_err());
        let table = runs.0.lock().unwrap();
        assert!(
            table.runs.len() <= LOCAL_RETENTION + 3,
            "{}",
            table.runs.len()
        );
        assert!(table.closed.len() <= LOCAL_RETENTION);
    }

    #[tokio::test]
    async fn a_result_lives_as_long_as_a_handle_to_it() {
        let runs = LocalRuns::default();
        let (_, cell) = runs
            .claim(&start("r", IdReuse::FailedOnly), SystemTime::now())
            .unwrap();
        let handle = cell.clone(); // what `start` gives a handle
        runs.close(&Arc::from("r"), &cell, &Ok(Value::from(7)), None);
        drop(cell);
        assert_eq!(
            runs.cell("f", "r").unwrap().finished().await.0,
            Ok(Value::from(7))
        );
        drop(handle);
        let gone = runs.cell("f", "r").err().unwrap().to_string();
        assert!(gone.contains("no longer kept"), "{gone}");
        assert_eq!(runs.info("r").unwrap().status, "completed");
        // a run nobody holds a handle to keeps nothing, and nobody waits for it
        let (_, alone) = runs
            .claim(&start("alone", IdReuse::FailedOnly), SystemTime::now())
            .unwrap();
        runs.close(&Arc::from("alone"), &alone, &Ok(Value::from(1)), None);
        assert!(alone.finished_now().is_none());
        assert!(runs.cell("f", "alone").is_err());
    }
}
