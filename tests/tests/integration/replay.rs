//! Versioning and replay: a flow changed behind `ctx.patched` replays the histories of runs
//! started before the change, the same change without it fails replay with a non-determinism
//! error; and the recorded histories of the example flows (in `tests/histories/`) replay against
//! the current code, so a change that would break runs in flight fails here.

use std::path::PathBuf;

use flock::prelude::*;
use flock_examples::approval::{Brief, Decision, publish};
use flock_examples::pipeline::{handle_batch, sample_batch};
use flock_examples::research::{Topic, research_flow};
use serde_json::Value;

use super::conformance::both;

/// Adds one.
#[agent]
async fn plus_one(n: u64) -> u64 {
    n + 1
}

/// Version 1: one step.
#[flow]
async fn versioned_v1(ctx: &FlowContext, n: u64) -> Result<u64, FlowError> {
    ctx.call(plus_one, n).await
}

/// Version 2, behind a patch: runs from before it keep one step.
#[flow]
async fn versioned_patched(ctx: &FlowContext, n: u64) -> Result<u64, FlowError> {
    let n = ctx.call(plus_one, n).await?;
    if ctx.patched("second-step") {
        return ctx.call(plus_one, n).await;
    }
    Ok(n)
}

/// Version 2, changed in place: not what runs in flight did.
#[flow]
async fn versioned_unpatched(ctx: &FlowContext, n: u64) -> Result<u64, FlowError> {
    let n = ctx.call(plus_one, n).await?;
    ctx.call(plus_one, n).await
}

/// `history` as a history of `flow` (the same code, deployed under the name of its old version).
fn as_run_of(history: &[u8], flow: &str) -> Vec<u8> {
    let mut json: Value = serde_json::from_slice(history).unwrap();
    json["events"][0]["attributes"]["WorkflowExecutionStartedEventAttributes"]["workflow_type"]["name"] =
        Value::from(flow);
    serde_json::to_vec(&json).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_behind_patched_replays_old_histories_and_one_without_fails_replay() {
    let [_, (_, flock)] = both("replay-patched").await;
    let run_id = "versioned-v1-run";
    let run = flock
        .run_flow(versioned_v1, 1)
        .id(run_id)
        .id_reuse(flock::IdReuse::Allow)
        .await
        .unwrap();
    assert_eq!(run, 2);
    let history = flock.history_json(run_id).await.unwrap();

    flock
        .replay(&history)
        .await
        .expect("a history replays against its own code");
    flock
        .replay(&as_run_of(&history, "versioned_patched"))
        .await
        .expect("the patched change replays the old history");
    let error = flock
        .replay(&as_run_of(&history, "versioned_unpatched"))
        .await
        .expect_err("the unpatched change does not replay");
    let message = error.to_string();
    assert!(
        matches!(&error, flock::Error::Run { cause: FlowError::NonDeterminism { flow, .. }, .. } if flow == "versioned_unpatched"),
        "{error:?}"
    );
    assert!(message.contains("versioned_unpatched"), "{message}");

    // new runs take the patched path
    assert_eq!(flock.run_flow(versioned_patched, 1).await.unwrap(), 3);
    // and a history that is not JSON, or of a flow not linked in, is a clear error
    let garbage = flock.replay(b"not json").await.expect_err("garbage");
    assert!(
        garbage.to_string().contains("not valid JSON history"),
        "{garbage}"
    );
    let unknown = flock
        .replay(&as_run_of(&history, "no_such_flow"))
        .await
        .expect_err("unknown flow");
    assert!(unknown.to_string().contains("`no_such_flow`"), "{unknown}");
}

fn histories_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("histories")
}

/// The example flows' runs whose histories are kept in the repository. Recorded from the dev
/// server when missing, or when `FLOCK_RECORD_HISTORIES=1` (after an intended, patched change).
async fn record_missing(flock: &Flock) {
    let record = std::env::var_os("FLOCK_RECORD_HISTORIES").is_some();
    let dir = histories_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let runs: [(&str, &str); 3] = [
        ("research_flow", "history-research"),
        ("handle_batch", "history-batch"),
        ("publish", "history-approval"),
    ];
    for (flow, run_id) in runs {
        let path = dir.join(format!("{flow}.json"));
        if path.exists() && !record {
            continue;
        }
        let reuse = flock::IdReuse::Allow;
        match flow {
            "research_flow" => {
                let topic = Topic {
                    topic: "Temporal".into(),
                };
                flock
                    .run_flow(research_flow, topic)
                    .id(run_id)
                    .id_reuse(reuse)
                    .await
                    .unwrap();
            }
            "handle_batch" => {
                flock
                    .run_flow(handle_batch, sample_batch())
                    .id(run_id)
                    .id_reuse(reuse)
                    .await
                    .unwrap();
            }
            _ => {
                let brief = Brief {
                    topic: "durable agents".into(),
                    review_seconds: 3600,
                };
                let decision = Decision {
                    approve: true,
                    note: "recorded".into(),
                };
                let handle = flock
                    .run_flow(publish, brief)
                    .id(run_id)
                    .id_reuse(reuse)
                    .signal(publish::decision, decision)
                    .start()
                    .await
                    .unwrap();
                handle.result().await.unwrap();
            }
        }
        let history = flock.history_json(run_id).await.unwrap();
        std::fs::write(&path, history).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recorded_histories_of_the_example_flows_replay_against_the_current_code() {
    let [_, (_, flock)] = both("replay-examples").await;
    record_missing(&flock).await;
    let mut replayed = 0;
    for entry in std::fs::read_dir(histories_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let history = std::fs::read(&path).unwrap();
        flock
            .replay(&history)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        replayed += 1;
    }
    assert!(
        replayed >= 3,
        "only {replayed} histories in {}",
        histories_dir().display()
    );
}

/// `temporal workflow show --output json` (the proto3 JSON every Temporal tool writes) replays
/// like `Flock::history_json`'s output: the examples' flows (agents, child flows, a signal, a
/// timer, an update) recorded with the real `temporal` CLI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn histories_from_temporal_workflow_show_replay() {
    let [_, (_, flock)] = both("replay-cli-json").await;
    let reuse = flock::IdReuse::Allow;
    flock
        .run_flow(
            research_flow,
            Topic {
                topic: "CLI".into(),
            },
        )
        .id("cli-json-research")
        .id_reuse(reuse)
        .await
        .unwrap();
    flock
        .run_flow(handle_batch, sample_batch())
        .id("cli-json-batch")
        .id_reuse(reuse)
        .await
        .unwrap();
    let handle = flock
        .run_flow(
            publish,
            Brief {
                topic: "json".into(),
                review_seconds: 3600,
            },
        )
        .id("cli-json-approval")
        .id_reuse(reuse)
        .start()
        .await
        .unwrap();
    let edit = flock_examples::approval::Edit {
        text: "edited".into(),
    };
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while handle.update(publish::edit, edit.clone()).await.is_err() {
        assert!(
            std::time::Instant::now() < until,
            "the edit was never taken"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    handle
        .signal(
            publish::decision,
            Decision {
                approve: true,
                note: "json".into(),
            },
        )
        .await
        .unwrap();
    handle.result().await.unwrap();
    let cli = flock::dev_server::DevServer::find_cli().expect("the temporal CLI");
    for run_id in ["cli-json-research", "cli-json-batch", "cli-json-approval"] {
        let shown = std::process::Command::new(&cli)
            .args([
                "workflow",
                "show",
                "--workflow-id",
                run_id,
                "--output",
                "json",
            ])
            .args(["--address", &super::temporal::server()])
            .output()
            .expect("temporal workflow show runs");
        assert!(
            shown.status.success(),
            "{}",
            String::from_utf8_lossy(&shown.stderr)
        );
        let json: Value = serde_json::from_slice(&shown.stdout).unwrap();
        assert!(
            json["events"][0].get("eventId").is_some(),
            "not proto3 JSON: {json}"
        );
        flock
            .replay(&shown.stdout)
            .await
            .unwrap_or_else(|e| panic!("{run_id}: {e}"));
        // and changed in place it still fails, as from `history_json`
        let mut changed: Value = json.clone();
        changed["events"][0]["workflowExecutionStartedEventAttributes"]["workflowType"]["name"] =
            Value::from("no_such_flow");
        let error = flock
            .replay(&serde_json::to_vec(&changed).unwrap())
            .await
            .expect_err("unknown flow");
        assert!(error.to_string().contains("`no_such_flow`"), "{error}");
    }
}
