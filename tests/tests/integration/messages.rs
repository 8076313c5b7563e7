//! Messages to running flows, long-running flows, on both executors with one semantics: an
//! approval flow (signals before and after the wait, a durable timeout, a query during the wait,
//! an update with a rejecting validator), signal- and update-with-start, undeclared and mistyped
//! messages, flows signalling flows, continue-as-new.

use std::time::Duration;

use flock::prelude::*;
use flock::{Error, FlowHandle, RunRecord, record::RunStatus};
use futures::future::Either;
use serde_json::json;

use super::conformance::{both, worker_log};
use super::support::unique;
use super::temporal::{client_only_flock, sdk_client};

/// How long any one case may take before it counts as hung.
const BOUND: Duration = Duration::from_secs(45);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Brief {
    pub topic: String,
    /// How long to wait for the decision, in milliseconds.
    pub wait_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Draft {
    pub text: String,
}

/// A reviewer's decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Decision {
    pub approve: bool,
    pub note: String,
}

/// A reviewer's edit of the draft.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Edit {
    pub text: String,
}

/// Where the approval stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Status {
    pub stage: String,
    pub draft: String,
    pub edits: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Outcome {
    pub published: bool,
    pub text: String,
    pub note: String,
    pub edits: u32,
}

/// Writes the first draft.
#[agent]
async fn write_draft(brief: Brief) -> Draft {
    Draft {
        text: format!("draft about {}", brief.topic),
    }
}

fn non_empty(edit: &Edit) -> Result<(), String> {
    if edit.text.trim().is_empty() {
        Err("an edit must not be empty".into())
    } else {
        Ok(())
    }
}

/// Drafts, then waits for a reviewer: edits (updates) revise the draft, a decision (signal) ends
/// the wait, and no decision within `wait_ms` ends it too.
#[flow(
    signals(
        /// The reviewer's decision.
        decision: Decision
    ),
    queries(
        /// Where the approval stands.
        status: Status
    ),
    updates(
        /// Replace the draft's text; answered with the new draft.
        edit: Edit -> Draft
    ),
    validate(edit = non_empty)
)]
async fn approval(ctx: &FlowContext, brief: Brief) -> Result<Outcome, FlowError> {
    let mut draft = ctx.call(write_draft, brief.clone()).await?;
    let mut edits = 0;
    let status = |stage: &str, draft: &Draft, edits| Status {
        stage: stage.into(),
        draft: draft.text.clone(),
        edits,
    };
    ctx.publish(approval::status, &status("waiting", &draft, edits))?;
    let wait = Duration::from_millis(brief.wait_ms);
    let decision = loop {
        let decision = ctx.wait(approval::decision).timeout(wait);
        let edit = Box::pin(ctx.next_update(approval::edit));
        match futures::future::select(decision, edit).await {
            Either::Left((decision, _)) => break decision?,
            Either::Right((request, _)) => {
                let request = request?;
                draft.text = request.input().text.clone();
                edits += 1;
                ctx.publish(approval::status, &status("waiting", &draft, edits))?;
                request.reply(&draft)?;
            }
        }
    };
    let outcome = match decision {
        Some(decision) => Outcome {
            published: decision.approve,
            text: draft.text.clone(),
            note: decision.note,
            edits,
        },
        None => Outcome {
            published: false,
            text: draft.text.clone(),
            note: "no decision in time".into(),
            edits,
        },
    };
    ctx.publish(approval::status, &status("decided", &draft, edits))?;
    Ok(outcome)
}

fn brief(wait: Duration) -> Brief {
    Brief {
        topic: "durable agents".into(),
        wait_ms: wait.as_millis() as u64,
    }
}

const DAY: Duration = Duration::from_secs(24 * 3600);

/// A suffix for run ids, unique across test runs on one server.
async fn bounded<T>(what: &str, future: impl std::future::IntoFuture<Output = T>) -> T {
    tokio::time::timeout(BOUND, future.into_future())
        .await
        .unwrap_or_else(|_| panic!("{what}: no result within {BOUND:?}"))
}

/// Polls query `status` until the flow is waiting (the query answers during the wait).
async fn until_waiting(handle: &FlowHandle<approval>) -> Status {
    let started = std::time::Instant::now();
    loop {
        match handle.query(approval::status).await {
            Ok(status) if status.stage == "waiting" => return status,
            Ok(_) | Err(Error::Message { .. }) if started.elapsed() < BOUND => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => panic!("the status query never showed the wait: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_sent_before_the_wait_is_kept_until_the_flow_waits() {
    for (executor, flock) in both("messages-before").await {
        let handle = flock
            .run_flow(approval, brief(DAY))
            .id(format!("approval-before-{executor}-{}", unique()))
            .signal(
                approval::decision,
                Decision {
                    approve: true,
                    note: "ship it".into(),
                },
            )
            .start()
            .await
            .unwrap_or_else(|e| panic!("{executor}: {e}"));
        let outcome = bounded(executor, handle.result()).await.unwrap();
        assert_eq!(
            outcome,
            Outcome {
                published: true,
                text: "draft about durable agents".into(),
                note: "ship it".into(),
                edits: 0
            },
            "{executor}"
        );
        // the published state outlives the wait
        let status = handle.query(approval::status).await;
        if executor == "temporal" {
            assert_eq!(status.unwrap().stage, "decided");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviewer_queries_edits_and_decides_during_the_wait() {
    for (executor, flock) in both("messages-during").await {
        let handle = flock
            .run_flow(approval, brief(DAY))
            .id(format!("approval-during-{executor}-{}", unique()))
            .start()
            .await
            .unwrap();
        let status = bounded(executor, until_waiting(&handle)).await;
        assert_eq!(status.draft, "draft about durable agents", "{executor}");
        assert_eq!(status.edits, 0, "{executor}");

        // the validator rejects an empty edit: an error to the sender, nothing in the run
        let rejected = handle
            .update(approval::edit, Edit { text: "  ".into() })
            .await
            .expect_err("an empty edit is rejected");
        let message = rejected.to_string();
        assert!(
            matches!(rejected, Error::Message { .. }),
            "{executor}: {rejected:?}"
        );
        assert!(
            message.contains("an edit must not be empty"),
            "{executor}: {message}"
        );
        assert!(message.contains("edit"), "{executor}: {message}");

        let draft = bounded(
            executor,
            handle.update(
                approval::edit,
                Edit {
                    text: "a better draft".into(),
                },
            ),
        )
        .await
        .unwrap_or_else(|e| panic!("{executor}: {e}"));
        assert_eq!(draft.text, "a better draft", "{executor}");
        let status = handle.query(approval::status).await.unwrap();
        assert_eq!(
            (status.edits, status.draft.as_str()),
            (1, "a better draft"),
            "{executor}"
        );

        handle
            .signal(
                approval::decision,
                Decision {
                    approve: true,
                    note: "better".into(),
                },
            )
            .await
            .unwrap();
        let outcome = bounded(executor, handle.result()).await.unwrap();
        assert_eq!(
            outcome,
            Outcome {
                published: true,
                text: "a better draft".into(),
                note: "better".into(),
                edits: 1
            },
            "{executor}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_decision_within_the_timeout_ends_the_wait() {
    for (executor, flock) in both("messages-timeout").await {
        let started = std::time::Instant::now();
        let outcome = bounded(
            executor,
            flock.run_flow(approval, brief(Duration::from_millis(1500))),
        )
        .await
        .unwrap_or_else(|e| panic!("{executor}: {e}"));
        assert!(!outcome.published, "{executor}");
        assert_eq!(outcome.note, "no decision in time", "{executor}");
        assert!(
            started.elapsed() >= Duration::from_millis(1500),
            "{executor}: the wait ended early"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undeclared_and_mistyped_messages_are_rejected_naming_the_flow_and_the_message() {
    for (executor, flock) in both("messages-bad").await {
        let handle = flock
            .run_flow(approval, brief(DAY))
            .id(format!("approval-bad-{executor}-{}", unique()))
            .start()
            .await
            .unwrap();
        bounded(executor, until_waiting(&handle)).await;

        let undeclared = handle
            .signal_json("approve", json!({"approve": true}))
            .await
            .expect_err("an undeclared signal is rejected");
        let message = undeclared.to_string();
        assert!(
            message.contains("flow `approval` has no signal `approve`"),
            "{executor}: {message}"
        );
        assert!(message.contains("`decision`"), "{executor}: {message}");

        let mistyped = handle
            .signal_json("decision", json!("yes"))
            .await
            .expect_err("a signal that does not fit is rejected");
        let message = mistyped.to_string();
        assert!(
            message.contains("signal `decision`"),
            "{executor}: {message}"
        );
        assert!(message.contains("Decision"), "{executor}: {message}");

        let query = handle
            .query_json("progress")
            .await
            .expect_err("undeclared query");
        assert!(
            query.to_string().contains("has no query `progress`"),
            "{executor}: {query}"
        );
        let update = handle
            .update_json("rewrite", json!({"text": "x"}))
            .await
            .expect_err("undeclared update");
        assert!(
            update.to_string().contains("has no update `rewrite`"),
            "{executor}: {update}"
        );

        // the run is unaffected: it still takes its decision
        handle
            .signal(
                approval::decision,
                Decision {
                    approve: false,
                    note: "no".into(),
                },
            )
            .await
            .unwrap();
        let outcome = bounded(executor, handle.result()).await.unwrap();
        assert_eq!(outcome.note, "no", "{executor}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_sent_past_flock_is_logged_not_dropped_silently() {
    let log = worker_log();
    let metrics = flock::observe::enable_metrics();
    let [_, (_, flock)] = both("messages-raw").await;
    let run_id = format!("approval-raw-{}", unique());
    let handle = flock
        .run_flow(approval, brief(DAY))
        .id(run_id.clone())
        .start()
        .await
        .unwrap();
    bounded("temporal", until_waiting(&handle)).await;
    // what `temporal workflow signal --name approve` does: no check on the way
    let client = sdk_client().await;
    client
        .get_workflow_handle::<temporalio_common::UntypedWorkflow>(run_id.clone())
        .signal(
            temporalio_client::UntypedSignal::new("approve"),
            temporalio_common::data_converters::RawValue::new(vec![]),
            Default::default(),
        )
        .await
        .unwrap();
    // an update past flock: the worker's validator rejects it, the run goes on
    let json = |value: serde_json::Value| {
        temporalio_common::data_converters::RawValue::new(vec![
            temporalio_common::protos::temporal::api::common::v1::Payload {
                metadata: [("encoding".to_owned(), b"json/plain".to_vec())].into(),
                data: serde_json::to_vec(&value).unwrap(),
                ..Default::default()
            },
        ])
    };
    let raw = client.get_workflow_handle::<temporalio_common::UntypedWorkflow>(run_id.clone());
    let rejected = raw
        .execute_update(
            temporalio_client::UntypedUpdate::new("edit"),
            json(json!({"text": " "})),
            Default::default(),
        )
        .await
        .expect_err("the worker's validator rejects an empty edit");
    assert!(
        format!("{rejected:?}").contains("an edit must not be empty"),
        "{rejected:?}"
    );
    let undeclared = raw
        .execute_update(
            temporalio_client::UntypedUpdate::new("rewrite"),
            json(json!({"text": "x"})),
            Default::default(),
        )
        .await
        .expect_err("an undeclared update is rejected");
    assert!(
        format!("{undeclared:?}").contains("rewrite"),
        "{undeclared:?}"
    );
    let status = handle.query(approval::status).await.unwrap();
    assert_eq!(status.edits, 0, "rejected updates leave the run as it was");

    let started = std::time::Instant::now();
    loop {
        let text = String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
        if text.contains(&run_id) && text.contains("signal `approve` not delivered") {
            assert!(
                text.contains("ERROR") && text.contains("flow `approval` has no signal `approve`"),
                "{text}"
            );
            break;
        }
        assert!(
            started.elapsed() < BOUND,
            "no error logged for the undeclared signal: {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    handle
        .signal(
            approval::decision,
            Decision {
                approve: true,
                note: "still fine".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        bounded("temporal", handle.result()).await.unwrap().note,
        "still fine"
    );
    // visible without the log: in the run's record and in the metrics
    let record = flock.run_record(&run_id).await.unwrap();
    let undelivered: Vec<_> = record
        .undelivered
        .iter()
        .map(|m| (m.kind.as_str(), m.name.as_str()))
        .collect();
    assert_eq!(undelivered, [("signal", "approve")], "{record:#?}");
    assert!(
        record.undelivered[0]
            .reason
            .contains("has no signal `approve`"),
        "{record:#?}"
    );
    let scrape = metrics.encode().await;
    assert!(
        scrape
            .lines()
            .any(|line| line.starts_with("flock_messages_dropped_total")
                && line.contains(r#"flow="approval""#)
                && line.contains(r#"name="approve""#)),
        "{scrape}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_only_flock_signals_and_updates_with_start() {
    let queue = "messages-with-start";
    // the worker: a Flock with an in-process worker on the queue
    let [_, (_, _worker)] = both(queue).await;
    let client = client_only_flock(queue).await;

    let run_id = format!("approval-sws-{}", unique());
    let decision = Decision {
        approve: true,
        note: "from a web hook".into(),
    };
    let handle = client
        .run_flow(approval, brief(DAY))
        .id(run_id.clone())
        .signal(approval::decision, decision.clone())
        .start()
        .await
        .unwrap();
    assert_eq!(
        bounded("signal-with-start", handle.result())
            .await
            .unwrap()
            .note,
        "from a web hook"
    );

    let run_id = format!("approval-uws-{}", unique());
    let (handle, draft) = bounded(
        "update-with-start",
        client
            .run_flow(approval, brief(DAY))
            .id(run_id.clone())
            .start_with_update(
                approval::edit,
                Edit {
                    text: "first words".into(),
                },
            ),
    )
    .await
    .unwrap();
    assert_eq!(draft.text, "first words");
    // the same call again attaches to the running run
    let (_, draft) = bounded(
        "update-with-start again",
        client
            .run_flow(approval, brief(DAY))
            .id(run_id.clone())
            .start_with_update(
                approval::edit,
                Edit {
                    text: "second words".into(),
                },
            ),
    )
    .await
    .unwrap();
    assert_eq!(draft.text, "second words");
    // a re-attached handle messages the run too
    let again = client.flow_handle(approval, run_id).unwrap();
    again.signal(approval::decision, decision).await.unwrap();
    let outcome = bounded("update-with-start result", handle.result())
        .await
        .unwrap();
    assert_eq!((outcome.text.as_str(), outcome.edits), ("second words", 2));

    // undeclared messages are refused before anything is sent
    let refused = client
        .flow_handle(approval, "approval-nobody")
        .unwrap()
        .signal_json("approve", json!(true))
        .await
        .expect_err("undeclared");
    assert!(
        refused.to_string().contains("has no signal `approve`"),
        "{refused}"
    );
}

/// Waits for one `go` signal and returns its value.
#[flow(signals(go: u32))]
pub(super) async fn waiter(ctx: &FlowContext, _input: ()) -> Result<u32, FlowError> {
    ctx.wait(waiter::go).await
}

/// Signals `go` to the waiter run named in the input.
#[flow]
async fn notifier(ctx: &FlowContext, target: String) -> Result<(), FlowError> {
    ctx.signal_flow(waiter::go, target, &7).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_signals_another_running_flow() {
    for (executor, flock) in both("messages-cross").await {
        let target = format!("waiter-{executor}-{}", unique());
        let handle = flock
            .run_flow(waiter, ())
            .id(target.clone())
            .start()
            .await
            .unwrap();
        bounded(executor, flock.run_flow(notifier, target))
            .await
            .unwrap();
        assert_eq!(
            bounded(executor, handle.result()).await.unwrap(),
            7,
            "{executor}"
        );

        // a signal to a run that does not exist fails the sender, naming the run
        let error = bounded(executor, flock.run_flow(notifier, "waiter-nobody".into()))
            .await
            .expect_err("no such run");
        assert!(
            error.to_string().contains("waiter-nobody"),
            "{executor}: {error}"
        );
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Tally {
    pub generation: u32,
    pub total: u64,
    pub seen: Vec<u32>,
}

/// Adds one.
#[agent]
async fn add_one(n: u64) -> u64 {
    n + 1
}

/// Counts through three generations, each a new run carrying the tally.
#[flow]
async fn generations(ctx: &FlowContext, tally: Tally) -> Result<Tally, FlowError> {
    let total = ctx.call(add_one, tally.total).await?;
    let mut seen = tally.seen.clone();
    seen.push(tally.generation);
    let next = Tally {
        generation: tally.generation + 1,
        total,
        seen,
    };
    if next.generation < 3 {
        return ctx.continue_as_new(generations, next);
    }
    Ok(next)
}

fn generations_of(record: &RunRecord) -> Vec<(RunStatus, serde_json::Value)> {
    let mut out = vec![(record.status, record.input["generation"].clone())];
    let mut previous = record.previous.as_deref();
    while let Some(run) = previous {
        out.push((run.status, run.input["generation"].clone()));
        previous = run.previous.as_deref();
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continue_as_new_carries_typed_state_over_three_generations() {
    for (executor, flock) in both("messages-generations").await {
        let start = Tally {
            generation: 0,
            total: 10,
            seen: vec![],
        };
        let run = bounded(
            executor,
            flock
                .run_flow(generations, start)
                .id(format!("generations-{executor}-{}", unique()))
                .recorded(),
        )
        .await;
        let tally = run.result.unwrap_or_else(|e| panic!("{executor}: {e}"));
        assert_eq!(
            tally,
            Tally {
                generation: 3,
                total: 13,
                seen: vec![0, 1, 2]
            },
            "{executor}"
        );
        assert_eq!(
            generations_of(&run.record),
            vec![
                (RunStatus::Completed, json!(2)),
                (RunStatus::ContinuedAsNew, json!(1)),
                (RunStatus::ContinuedAsNew, json!(0)),
            ],
            "{executor}: {:#?}",
            run.record
        );
        assert_eq!(
            run.record.steps.len(),
            1,
            "{executor}: the last generation's own steps"
        );
    }
}

/// Tries to continue as another flow.
#[flow]
async fn wrong_continuation(ctx: &FlowContext, _input: ()) -> Result<(), FlowError> {
    ctx.continue_as_new(waiter, ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuing_as_another_flow_fails_naming_both() {
    for (executor, flock) in both("messages-wrong-continuation").await {
        let error = bounded(executor, flock.run_flow(wrong_continuation, ()))
            .await
            .expect_err("a run continues as the same flow");
        let message = error.to_string();
        assert!(
            message.contains("`wrong_continuation` cannot continue as new as `waiter`"),
            "{executor}: {message}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_are_found_by_flow_and_search_attribute() {
    for (executor, flock) in both("messages-find").await {
        let ticket = format!("T-{executor}-{}", unique());
        let run_id = format!("waiter-find-{executor}-{}", unique());
        let handle = flock
            .run_flow(waiter, ())
            .id(run_id.clone())
            .search_attribute("TicketId", ticket.clone())
            .start()
            .await
            .unwrap_or_else(|e| panic!("{executor}: {e}"));
        // another run of the same flow, another ticket: not found
        let other = flock
            .run_flow(waiter, ())
            .id(format!("waiter-find-other-{executor}-{}", unique()))
            .search_attribute("TicketId", format!("{ticket}-other"))
            .start()
            .await
            .unwrap();
        let started = std::time::Instant::now();
        let found = loop {
            let found = flock
                .find_runs(waiter, &[("TicketId", &ticket)])
                .await
                .unwrap_or_else(|e| panic!("{executor}: {e}"));
            // Temporal's visibility store follows a start by a moment
            if !found.is_empty() || started.elapsed() > BOUND {
                break found;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(found.len(), 1, "{executor}: {found:?}");
        assert_eq!(found[0].run_id, run_id, "{executor}");
        assert!(found[0].running, "{executor}");
        // the approver addresses the run found
        let again = flock.flow_handle(waiter, found[0].run_id.clone()).unwrap();
        again.signal(waiter::go, 3).await.unwrap();
        assert_eq!(
            bounded(executor, handle.result()).await.unwrap(),
            3,
            "{executor}"
        );
        other.signal(waiter::go, 4).await.unwrap();
        bounded(executor, other.result()).await.unwrap();

        let bad = flock
            .find_runs(waiter, &[("TicketId", "x' OR '1'='1")])
            .await
            .expect_err("quotes are refused");
        assert!(bad.to_string().contains("no quotes"), "{executor}: {bad}");
    }
}

/// Declares an update, ends after one signal without ever taking an update.
#[flow(signals(go: u32), updates(ask: u32 -> u32))]
async fn ignorer(ctx: &FlowContext, _input: ()) -> Result<u32, FlowError> {
    ctx.wait(ignorer::go).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_the_flow_never_takes_fails_its_sender_when_the_run_ends() {
    for (executor, flock) in both("messages-ignored-update").await {
        let handle = flock
            .run_flow(ignorer, ())
            .id(format!("ignorer-{executor}-{}", unique()))
            .start()
            .await
            .unwrap();
        let ask = async {
            // the sender waits while the run goes on
            handle.update(ignorer::ask, 1).await
        };
        let end = async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            handle.signal(ignorer::go, 5).await.unwrap();
        };
        let (answer, ()) = bounded(executor, async { tokio::join!(ask, end) }).await;
        let error = answer.expect_err("the run ended without answering");
        assert!(
            matches!(error, Error::Message { .. }),
            "{executor}: {error:?}"
        );
        assert_eq!(
            bounded(executor, handle.result()).await.unwrap(),
            5,
            "{executor}"
        );
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Count {
    /// Ticks taken so far, over every run.
    pub taken: u32,
    /// The sum of the ticks' values, over every run.
    pub sum: u64,
    /// How many ticks to take in all.
    pub goal: u32,
    /// How many ticks one run takes before it continues as new.
    pub per_run: u32,
    /// Runs so far.
    pub runs: u32,
}

/// Takes `goal` ticks, continuing as new after every `per_run`: signals that arrive while a run
/// is ending are carried into the next one.
#[flow(signals(tick: u32))]
async fn counter(ctx: &FlowContext, mut count: Count) -> Result<Count, FlowError> {
    count.runs += 1;
    let mut in_this_run = 0;
    while count.taken < count.goal {
        if in_this_run == count.per_run {
            return ctx.continue_as_new(counter, count);
        }
        let tick = ctx.wait(counter::tick).await?;
        count.taken += 1;
        count.sum += u64::from(tick);
        in_this_run += 1;
    }
    Ok(count)
}

/// Every signal sent with `Ok` is taken, across continue-as-new: `FLOCK_CAN_SIGNALS` signals
/// (500 by default; the issue's 5,000 by hand) from 8 senders at once to a counter that
/// continues as new every 50, on both executors; each tick's value once in the sum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_signal_sent_with_ok_is_lost_when_a_flow_continues_as_new() {
    let total: u32 = std::env::var("FLOCK_CAN_SIGNALS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(500);
    for (executor, flock) in both("messages-counter").await {
        let handle = flock
            .run_flow(
                counter,
                Count {
                    taken: 0,
                    sum: 0,
                    goal: total,
                    per_run: 50,
                    runs: 0,
                },
            )
            .id(format!("counter-{executor}-{}", unique()))
            .start()
            .await
            .unwrap();
        let senders = (0..8u32).map(|sender| {
            let handle = &handle;
            async move {
                for n in (sender..total).step_by(8) {
                    handle
                        .signal(counter::tick, n + 1)
                        .await
                        .unwrap_or_else(|e| panic!("{executor}: tick {n}: {e}"));
                }
            }
        });
        let sending = futures::future::join_all(senders);
        let bound = BOUND + Duration::from_millis(u64::from(total) * 20);
        tokio::time::timeout(bound, sending)
            .await
            .unwrap_or_else(|_| panic!("{executor}: sending {total} signals took over {bound:?}"));
        let count = tokio::time::timeout(bound, handle.result())
            .await
            .unwrap_or_else(|_| {
                panic!("{executor}: the counter did not take all {total} signals within {bound:?}: some were lost")
            })
            .unwrap_or_else(|e| panic!("{executor}: {e}"));
        assert_eq!(count.taken, total, "{executor}");
        assert_eq!(
            count.sum,
            u64::from(total) * u64::from(total + 1) / 2,
            "{executor}: every tick taken exactly once"
        );
        assert!(
            count.runs >= total / 50,
            "{executor}: it continued as new ({} runs)",
            count.runs
        );
    }
}
