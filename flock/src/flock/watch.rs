//! A run's live events ([`crate::events`]), made by a task of their own: pushed by the local
//! executor's step feed, or read from a Temporal run every [`WATCH_INTERVAL`].

use std::time::Duration;

use serde_json::Value;

use crate::Flock;
use crate::error::Error;
use crate::events::{
    EventKind, LookCache, RunEvents, Sender, Snapshot, WATCH_INTERVAL, Watched, of_step_event,
};

/// The events of run `run_id` of `flow` on `flock`, made by a task of their own: pushed by the
/// local executor (from `early`, a subscription made before the run started, when there is
/// one), or read from the Temporal run every [`WATCH_INTERVAL`].
pub(crate) fn watch(
    flock: Flock,
    flow: String,
    run_id: String,
    early: Option<tokio::sync::broadcast::Receiver<crate::record::StepEvent>>,
) -> RunEvents {
    let feed = early
        .map(Ok)
        .unwrap_or_else(|| flock.backend().step_events());
    RunEvents::spawn(move |sender| async move {
        match feed {
            Ok(feed) => watch_local(&flock, &flow, &run_id, feed, &sender).await,
            Err(_) => watch_temporal(&flock, &flow, &run_id, &sender).await,
        }
    })
}

/// How often the local watcher asks a run for the calls waiting for approval.
const LOCAL_APPROVALS_EVERY: Duration = Duration::from_millis(50);

async fn watch_local(
    flock: &Flock,
    flow: &str,
    run_id: &str,
    mut feed: tokio::sync::broadcast::Receiver<crate::record::StepEvent>,
    sender: &Sender,
) {
    use tokio::sync::broadcast::error::{RecvError, TryRecvError};
    let backend = flock.backend();
    let finished = backend.result(flow, run_id);
    tokio::pin!(finished);
    let mut approvals = tokio::time::interval(LOCAL_APPROVALS_EVERY);
    let mut watched = Watched::default();
    // the feed lives as long as the `Flock`'s settings (which this task holds): closed only
    // when they go, and then the run's end is what is left to wait for
    let mut feed_open = true;
    let tell = |event: &crate::record::StepEvent| {
        *event.run_id != *run_id
            || of_step_event(event)
                .into_iter()
                .all(|kind| sender.event(run_id, kind))
    };
    loop {
        tokio::select! {
            biased;
            event = feed.recv(), if feed_open => match event {
                Ok(event) => {
                    if !tell(&event) {
                        return;
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    if !sender.error(lagged(run_id, missed)) {
                        return;
                    }
                }
                Err(RecvError::Closed) => feed_open = false,
            },
            result = &mut finished => {
                loop {
                    match feed.try_recv() {
                        Ok(event) => {
                            if !tell(&event) {
                                return;
                            }
                        }
                        Err(TryRecvError::Lagged(missed)) => {
                            if !sender.error(lagged(run_id, missed)) {
                                return;
                            }
                        }
                        Err(_) => break,
                    }
                }
                sender.event(run_id, finish(result));
                return;
            }
            _ = approvals.tick() => {
                let Ok(waiting) = backend.query(flow, run_id, crate::approval::APPROVALS_QUERY).await else {
                    continue;
                };
                let Ok(pending) = serde_json::from_value(waiting) else {
                    continue;
                };
                let snapshot = Snapshot { approvals: Some(pending), ..Snapshot::default() };
                for kind in watched.events(snapshot) {
                    if !sender.event(run_id, kind) {
                        return;
                    }
                }
            }
        }
    }
}

/// The error of a local stream that fell behind the step feed by `missed` events.
fn lagged(run_id: &str, missed: u64) -> Error {
    Error::Executor(format!(
        "the live events of run `{run_id}` were read too slowly: {missed} events were missed"
    ))
}

/// How long looks at a Temporal run may keep failing (the server unreachable, say) before its
/// stream ends with the last error; a run that does not exist ends it at once.
const LOOKS_FAILING: Duration = Duration::from_secs(10);

async fn watch_temporal(flock: &Flock, flow: &str, run_id: &str, sender: &Sender) {
    let backend = flock.backend();
    let mut cache = LookCache::default();
    let mut watched = Watched::default();
    let mut tick = tokio::time::interval(WATCH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing_since: Option<std::time::Instant> = None;
    let mut approvals_due = false;
    loop {
        tick.tick().await;
        let look = match backend.look(flow, run_id, &mut cache).await {
            Ok(look) => look,
            Err(error) => {
                let since = *failing_since.get_or_insert_with(std::time::Instant::now);
                if since.elapsed() >= LOOKS_FAILING || matches!(error, Error::NotFound(_)) {
                    sender.error(error);
                    return;
                }
                continue;
            }
        };
        failing_since = None;
        let mut snapshot = look.snapshot;
        // a call waits for approval once the flow's state changed, which grows the history;
        // asked again at the next look when the query did not answer
        approvals_due |= look.grew;
        if approvals_due && look.running {
            // the flow's state: answered by a worker, so bounded (no worker, no approvals)
            let asked = backend.query(flow, run_id, crate::approval::APPROVALS_QUERY);
            if let Ok(Ok(waiting)) = tokio::time::timeout(APPROVALS_WAIT, asked).await {
                snapshot.approvals = serde_json::from_value(waiting).ok();
                approvals_due = snapshot.approvals.is_none();
            }
        }
        for snapshot in look.previous.into_iter().chain([snapshot]) {
            for kind in watched.events(snapshot) {
                if !sender.event(run_id, kind) {
                    return;
                }
            }
        }
        if !look.running {
            let mut end = finish(backend.result(flow, run_id).await);
            if let EventKind::RunFinished { status, .. } = &mut end
                && !look.status.is_empty()
            {
                // the server's word: terminated and timed out runs are failures to `result`
                status.clone_from(&look.status);
            }
            sender.event(run_id, end);
            return;
        }
    }
}

/// How long a Temporal watcher waits for the `flock.approvals` query's answer.
const APPROVALS_WAIT: Duration = Duration::from_secs(1);

/// The event that ends a run's stream, from its result.
fn finish(result: Result<Value, Error>) -> EventKind {
    use crate::error::FlowError;
    match result {
        Ok(_) => EventKind::RunFinished {
            status: "completed".into(),
            error: None,
        },
        Err(error) => {
            let status = match &error {
                Error::Run {
                    cause: FlowError::Cancelled { .. },
                    ..
                } => "cancelled",
                _ => "failed",
            };
            EventKind::RunFinished {
                status: status.into(),
                error: Some(error.to_string()),
            }
        }
    }
}
