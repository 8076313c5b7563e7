//! Tool approval, typed: a tool whose arguments are `Approved<Args>` waits, durably, until a
//! person decides. Approved, it runs once; denied, it does not run and the model is told the
//! reason. Decisions come from the run's handle, from a process that knows only a business id
//! (a search attribute), and from the `flock approve` command; a decision for a call that does
//! not wait is an error and changes nothing. Both executors, against the OpenAI-protocol
//! stand-in.

use std::future::IntoFuture;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use flock::approval::{Approved, Pending};
use flock::model::{OpenAi, OpenAiConfig};
use flock::prelude::*;
use serde_json::json;

use super::model::server::{FakeOpenAi, Reply, answer, tool_calls};
use super::support::unique;

/// How long a run may take before it counts as hung.
const BOUND: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Transfer {
    /// Cents to send
    pub cents: u64,
    /// The receiving account
    pub to: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PayRequest {
    /// What to pay
    pub what: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PayReply {
    /// What happened
    pub status: String,
}

/// The transfers made: `to`, cents and who approved, one line per run of `wire`'s body.
static WIRED: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn wired_to(to: &str) -> Vec<String> {
    WIRED
        .lock()
        .unwrap()
        .iter()
        .filter(|line| line.starts_with(&format!("{to} ")))
        .cloned()
        .collect()
}

/// Sends money; a person approves every transfer first.
#[tool(retry(attempts = 3, initial_interval = "10ms"))]
async fn wire(transfer: Approved<Transfer>) -> String {
    let by = transfer.decision().by.clone().unwrap_or_default();
    WIRED
        .lock()
        .unwrap()
        .push(format!("{} {} {by}", transfer.to, transfer.cents));
    format!("sent {} cents to {}", transfer.cents, transfer.to)
}

/// Pay what is asked, with the wire tool.
#[agent(tools = [wire], retry(attempts = 1))]
pub(super) async fn payer(input: PayRequest) -> PayReply;

#[flow]
pub(super) async fn pay_flow(ctx: &FlowContext, input: PayRequest) -> Result<PayReply, FlowError> {
    ctx.call(payer, input).await
}

fn provider(server: &FakeOpenAi) -> OpenAi {
    OpenAi::new(OpenAiConfig {
        api_key: Some("sk-approval".into()),
        base_url: Some(server.base_url()),
        timeout: Duration::from_secs(10),
        ..OpenAiConfig::default()
    })
}

/// Two transfers asked for at once (to accounts unique to the test), then the answer.
fn script(to: &[&str; 2]) -> Vec<Reply> {
    let calls: Vec<(String, String)> = to
        .iter()
        .enumerate()
        .map(|(i, to)| {
            (
                format!("c{}", i + 1),
                json!({ "cents": 500 * (i + 1), "to": to }).to_string(),
            )
        })
        .collect();
    vec![
        tool_calls(
            &[
                (&calls[0].0, "wire", &calls[0].1),
                (&calls[1].0, "wire", &calls[1].1),
            ],
            10,
        ),
        answer(r#"{"status": "one sent, one refused"}"#, 10, 5),
    ]
}

/// A started run of `pay_flow` on `executor` (a `Flock` of its own, its worker on `queue` on
/// Temporal), whose model, a stand-in of its own, asks for two transfers at once, to the accounts
/// `to` (unique to the run); started with the business id `ticket` when given.
pub(super) struct Payment {
    pub(super) flock: Flock,
    pub(super) model: FakeOpenAi,
    pub(super) to: [String; 2],
    pub(super) handle: flock::FlowHandle<pay_flow>,
}

pub(super) async fn pay(executor: &str, queue: &str, ticket: Option<&str>) -> Payment {
    let tag = unique();
    let to = [format!("acct-{tag}-1"), format!("acct-{tag}-2")];
    let model = FakeOpenAi::start(script(&[to[0].as_str(), to[1].as_str()])).await;
    let mut builder = Flock::builder()
        .provider(provider(&model))
        .model("openai/gpt-4o-mini");
    if executor == "temporal" {
        builder = super::temporal::on_test_server(builder, queue);
    }
    let flock = builder.build().await.expect("a Flock");
    let mut request = flock.run_flow(
        pay_flow,
        PayRequest {
            what: "rent".into(),
        },
    );
    if let Some(ticket) = ticket {
        request = request.search_attribute("TicketId", ticket);
    }
    let handle = request.start().await.unwrap();
    Payment {
        flock,
        model,
        to,
        handle,
    }
}

/// Waits until the run shows `n` calls waiting for approval.
async fn waiting(executor: &str, handle: &flock::FlowHandle<pay_flow>, n: usize) -> Vec<Pending> {
    let started = Instant::now();
    loop {
        match handle.approvals().await {
            Ok(waiting) if waiting.len() == n => return waiting,
            Ok(_) | Err(_) if started.elapsed() < BOUND => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            other => panic!("{executor}: never {n} calls waiting: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_call_runs_once_and_a_denied_one_tells_the_model_on_both_executors() {
    for executor in ["local", "temporal"] {
        let Payment {
            model, to, handle, ..
        } = pay(executor, "approval-decide", None).await;

        // both calls of the round wait, listed with their arguments, and nothing ran
        let pending = waiting(executor, &handle, 2).await;
        let calls: Vec<&str> = pending.iter().map(|p| p.call.as_str()).collect();
        assert_eq!(calls, ["payer/wire/1", "payer/wire/2"], "{executor}");
        assert_eq!(pending[0].tool, "wire");
        assert_eq!(pending[0].arguments["to"], to[0].as_str(), "{executor}");
        assert!(
            wired_to(&to[0]).is_empty(),
            "{executor}: ran before approval"
        );

        // bad decisions: a call that was never asked for changes nothing
        let unknown = handle
            .approve("payer/wire/9")
            .await
            .unwrap_err()
            .to_string();
        assert!(
            unknown.contains("no tool call `payer/wire/9` waits for approval")
                && unknown.contains("waiting: `payer/wire/1`, `payer/wire/2`"),
            "{executor}: {unknown}"
        );

        handle
            .decide(flock::approval::Decision::approve("payer/wire/1").by("alice"))
            .await
            .unwrap();
        // decided already: a second decision is refused, and the first stands
        let again = handle.deny("payer/wire/1", "changed my mind").await;
        let again = again.unwrap_err().to_string();
        assert!(
            again.contains("no tool call `payer/wire/1` waits")
                && again.contains("waiting: `payer/wire/2`"),
            "{executor}: {again}"
        );
        handle
            .deny("payer/wire/2", "over the monthly limit")
            .await
            .unwrap();

        let reply = tokio::time::timeout(BOUND, handle.result())
            .await
            .expect("the run ends")
            .unwrap();
        assert_eq!(reply.status, "one sent, one refused", "{executor}");
        // approved: ran exactly once, with the approver; denied: never ran
        assert_eq!(
            wired_to(&to[0]),
            [format!("{} 500 alice", to[0])],
            "{executor}"
        );
        assert!(wired_to(&to[1]).is_empty(), "{executor}");
        // the model got the tool's answer and the denial with its reason
        let received = model.received();
        assert_eq!(received.len(), 2, "{executor}");
        assert_eq!(
            received[1].tool_answers(),
            [
                format!("sent 500 cents to {}", to[0]).as_str(),
                "error: the call was denied: over the monthly limit"
            ],
            "{executor}"
        );
        // the run has ended: nothing waits, and a decision is an error
        let late = handle.approve("payer/wire/2").await.unwrap_err();
        assert!(late.to_string().contains(handle.id()), "{executor}: {late}");
    }
}

/// A process that knows only the business id (a search attribute) finds the run and decides:
/// on the local executor through `find_runs` and `decide_run`; on Temporal through the
/// `flock approve` command (another process), which lists the waiting calls too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_that_knows_only_the_business_id_approves_on_both_executors() {
    let queue = "approval-business-id";
    for executor in ["local", "temporal"] {
        let ticket = format!("PAY-{executor}-{}", unique());
        let Payment {
            flock,
            to,
            handle,
            model: _model, // the stand-in answers while it is kept
        } = pay(executor, queue, Some(&ticket)).await;
        waiting(executor, &handle, 2).await;
        if executor == "local" {
            let found = flock
                .find_runs(pay_flow, &[("TicketId", &ticket)])
                .await
                .unwrap();
            let run_id = &found[0].run_id;
            let pending = flock.approvals_of_run(run_id).await.unwrap();
            for p in pending {
                let decision = if p.arguments["to"] == to[0].as_str() {
                    flock::approval::Decision::approve(p.call).by("desk")
                } else {
                    flock::approval::Decision::deny(p.call, "not this one")
                };
                flock.decide_run(run_id, decision).await.unwrap();
            }
        } else {
            let find = ["--flow", "pay_flow", "--attribute"];
            let attribute = format!("TicketId={ticket}");
            // the visibility store follows a start by a moment
            let started = Instant::now();
            let listed = loop {
                let listed = super::cli::cli(queue, &["approvals", handle.id(), "-o", "json"]);
                if listed.code == 0 || started.elapsed() > BOUND {
                    break listed;
                }
            };
            let listed = listed.json();
            assert_eq!(listed[1]["call"], "payer/wire/2", "{listed}");
            // more than one waits: the call must be named
            let ambiguous = super::cli::cli(queue, &["approve", handle.id()]);
            assert_eq!(ambiguous.code, 2, "{}", ambiguous.stderr);
            assert!(
                ambiguous
                    .stderr
                    .contains("2 tool calls wait for approval in run")
                    && ambiguous.stderr.contains("choose one with --call"),
                "{}",
                ambiguous.stderr
            );
            let approve = |extra: &[&str]| {
                let mut args = vec!["approve"];
                args.extend(find);
                args.push(&attribute);
                args.extend(extra);
                args.extend(["-o", "json"]);
                let started = Instant::now();
                loop {
                    let ran = super::cli::cli(queue, &args);
                    if ran.code == 0 || !ran.stderr.contains("no running run") {
                        break ran;
                    }
                    assert!(started.elapsed() < BOUND, "{}", ran.stderr);
                    std::thread::sleep(Duration::from_millis(200));
                }
            };
            let approved = approve(&["--call", "payer/wire/1", "--by", "desk"]);
            assert_eq!(approved.code, 0, "{}", approved.stderr);
            assert_eq!(
                approved.json(),
                json!({"run_id": handle.id(), "call": "payer/wire/1", "approved": true})
            );
            // now one waits: no --call needed
            let denied = approve(&["--deny", "not this one"]);
            assert_eq!(denied.code, 0, "{}", denied.stderr);
            assert_eq!(denied.json()["call"], "payer/wire/2");
        }
        let reply = tokio::time::timeout(BOUND, handle.result().into_future())
            .await
            .expect("the run ends")
            .unwrap();
        assert_eq!(reply.status, "one sent, one refused", "{executor}");
        assert_eq!(
            wired_to(&to[0]),
            [format!("{} 500 desk", to[0])],
            "{executor}"
        );
        assert!(wired_to(&to[1]).is_empty(), "{executor}");
    }
}

/// A run cancelled while a call waits ends cancelled, and the tool never ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_cancelled_while_a_call_waits_ends_cancelled_on_both_executors() {
    for executor in ["local", "temporal"] {
        let Payment {
            to,
            handle,
            model: _model, // the stand-in answers while it is kept
            ..
        } = pay(executor, "approval-cancel", None).await;
        waiting(executor, &handle, 2).await;
        handle.cancel().await.unwrap();
        let error = tokio::time::timeout(BOUND, handle.result())
            .await
            .expect("the run ends")
            .unwrap_err()
            .to_string();
        assert!(error.contains("failed: cancelled"), "{executor}: {error}");
        assert!(wired_to(&to[0]).is_empty() && wired_to(&to[1]).is_empty());
    }
}

/// The wait is durable: the worker that ran the model request is SIGKILLed while the call waits;
/// a new worker replays the run to the same waiting call, takes the decision, and the tool runs
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_waiting_for_approval_survives_its_worker_being_killed() {
    use flock_tests::durability::{self, Trip, pay_trip};
    let queue = "approval-kill";
    let file = std::env::temp_dir().join(format!("flock-approval-kill-{}", unique()));
    let ledger = file.to_string_lossy().into_owned();
    let arguments = json!({ "leg": 1, "ledger": ledger }).to_string();
    let model = FakeOpenAi::start(vec![
        tool_calls(&[("c1", "t_pay", &arguments)], 10),
        answer(r#"{"summary": "paid"}"#, 10, 5),
    ])
    .await;
    let client = super::temporal::client_only_flock(queue).await;
    let env = [("FLOCK_MODEL_URL", model.base_url())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut first = super::support::spawn_worker(queue, &file, &env);
    let handle = client
        .run_flow(
            pay_trip,
            Trip {
                city: "Oslo".into(),
            },
        )
        .start()
        .await
        .unwrap();
    let started = Instant::now();
    while handle.approvals().await.map(|w| w.len()).unwrap_or(0) != 1 {
        assert!(started.elapsed() < BOUND, "the call never waited");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();

    let mut second = super::support::spawn_worker(queue, &file, &env);
    // the new worker rebuilt the wait from the history: the same call waits
    let pending = tokio::time::timeout(BOUND, handle.approvals())
        .await
        .expect("the new worker answers")
        .unwrap();
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0].call, "trip_payer/t_pay/1");
    handle
        .decide(flock::approval::Decision::approve("trip_payer/t_pay/1").by("ops"))
        .await
        .unwrap();
    let result = tokio::time::timeout(BOUND, handle.result()).await;
    second.kill().unwrap();
    second.wait().unwrap();
    let plan = result.expect("the run ends").unwrap();
    assert_eq!(plan.summary, "paid");
    assert_eq!(
        durability::count(&file, "t_pay by ops"),
        1,
        "the tool ran once"
    );
    assert_eq!(model.received().len(), 2, "each model request ran once");
    let _ = std::fs::remove_file(&file);
}

/// `flock approve` with what cannot work: an unknown run, a malformed attribute, a business id
/// no running run has, a run where nothing waits. Each a clear error with its exit code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flock_approve_refuses_what_cannot_be_approved() {
    let queue = "approval-cli-bad";
    let cli = |args: &[&str]| super::cli::cli(queue, args);
    let unknown = cli(&["approve", "no-such-run-anywhere"]);
    assert_eq!(unknown.code, 3, "{}", unknown.stderr);
    assert!(
        unknown.stderr.contains("no-such-run-anywhere"),
        "{}",
        unknown.stderr
    );

    let malformed = cli(&["approve", "--flow", "pay_flow", "--attribute", "TicketId"]);
    assert_eq!(malformed.code, 2, "{}", malformed.stderr);
    assert!(
        malformed.stderr.contains("--attribute takes NAME=VALUE"),
        "{}",
        malformed.stderr
    );

    let nobody = cli(&[
        "approve",
        "--flow",
        "pay_flow",
        "--attribute",
        &format!("TicketId=nobody-{}", unique()),
    ]);
    assert_eq!(nobody.code, 3, "{}", nobody.stderr);
    assert!(
        nobody
            .stderr
            .contains("no running run of `pay_flow` has TicketId"),
        "{}",
        nobody.stderr
    );

    // a run where nothing waits for approval
    let flock = super::temporal::temporal_flock(queue).await;
    let handle = flock
        .run_flow(super::messages::waiter, ())
        .start()
        .await
        .unwrap();
    let nothing = cli(&["approve", handle.id()]);
    assert_eq!(nothing.code, 3, "{}", nothing.stderr);
    assert!(
        nothing
            .stderr
            .contains("no tool call waits for approval in run"),
        "{}",
        nothing.stderr
    );
    assert!(handle.approvals().await.unwrap().is_empty());
    handle.cancel().await.unwrap();
}
