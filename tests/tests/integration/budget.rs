//! A run's budget ([`RunRequest::budget`]) holds across its whole run tree, child flows included,
//! on both executors: every model request of the stand-in (`model/server.rs`) costs 150 tokens
//! (100 prompt, 50 completion) and, priced, $0.01. Over the budget the run fails naming the
//! budget and the totals; within it the record sums the tree's usage. A budget that allows
//! nothing fails the start.

use std::future::IntoFuture;
use std::time::Duration;

use flock::model::{OpenAi, OpenAiConfig};
use flock::prelude::*;
use flock::usage::PriceTable;
use flock::{Budget, Usage};

use super::model::server::{FakeOpenAi, Reply, answer};

const BOUND: Duration = Duration::from_secs(60);

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Brief {
    /// What to write about
    pub topic: String,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Draft {
    /// The text
    pub text: String,
}

/// Write a short draft about the topic.
#[agent(retry(attempts = 1))]
async fn budget_writer(input: Brief) -> Draft;

/// Two drafts, one after the other.
#[flow]
async fn budget_child(ctx: &FlowContext, input: Brief) -> Result<Draft, FlowError> {
    let first = ctx
        .call(
            budget_writer,
            Brief {
                topic: input.topic.clone(),
            },
        )
        .await?;
    let second = ctx.call(budget_writer, Brief { topic: first.text }).await?;
    Ok(second)
}

/// Two child flows, one after the other: four model requests in all.
#[flow]
async fn budget_tree(ctx: &FlowContext, input: Brief) -> Result<Draft, FlowError> {
    let first = ctx.call_flow(budget_child, input).await?;
    ctx.call_flow(budget_child, Brief { topic: first.text })
        .await
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Rounds {
    /// Rounds left
    pub left: u32,
}

/// One draft per run, continuing as new until no rounds are left.
#[flow]
async fn budget_rounds(ctx: &FlowContext, input: Rounds) -> Result<Draft, FlowError> {
    let draft = ctx.call(budget_writer, brief()).await?;
    if input.left <= 1 {
        return Ok(draft);
    }
    ctx.continue_as_new(
        budget_rounds,
        Rounds {
            left: input.left - 1,
        },
    )
}

/// Answers that each cost 150 tokens.
fn replies(n: usize) -> Vec<Reply> {
    (0..n)
        .map(|i| answer(&format!(r#"{{"text": "draft {i}"}}"#), 100, 50))
        .collect()
}

/// A local `Flock` and one on the test server (with its own worker on `queue`), each answered by
/// its own stand-in with `n` answers; requests to `openai/gpt-4o-mini` priced at $0.01 each.
async fn both(queue: &str, n: usize) -> [(&'static str, Flock, FakeOpenAi); 2] {
    super::temporal::on_both(queue, replies(n), |model| {
        Flock::builder()
            .provider(OpenAi::new(OpenAiConfig {
                api_key: Some("sk-budget".into()),
                base_url: Some(model.base_url()),
                timeout: Duration::from_secs(10),
                ..OpenAiConfig::default()
            }))
            .model("openai/gpt-4o-mini")
            .prices(PriceTable::new().price("openai/gpt-4o-mini", 50.0, 100.0))
            .serve_only(["budget_tree", "budget_rounds", "budget_writer"])
    })
    .await
}

/// How a run that must fail failed, within [`BOUND`].
async fn failure<T: std::fmt::Debug>(
    run: impl IntoFuture<Output = Result<T, flock::Error>>,
) -> String {
    tokio::time::timeout(BOUND, run.into_future())
        .await
        .expect("the run ends")
        .expect_err("the run fails")
        .to_string()
}

fn brief() -> Brief {
    Brief {
        topic: "budgets".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_tree_over_its_budget_fails_naming_the_budget_and_the_totals_on_both_executors() {
    // 400 tokens: the first child spends 300, the second's first request takes the tree to 450
    for (executor, flock, model) in both("budget-tokens", 4).await {
        let text = failure(
            flock
                .run_flow(budget_tree, brief())
                .budget(Budget::tokens(400)),
        )
        .await;
        assert!(
            text.contains("child flow `budget_child`")
                && text.contains("the run's budget is used up: its run tree spent 450 tokens (300 prompt, 150 completion) in 3 model requests, $0.0300, with a budget of 400 tokens"),
            "{executor}: {text}"
        );
        // the fourth request was never made
        assert_eq!(model.received().len(), 3, "{executor}");
    }
    // in dollars: $0.025 lets two requests through and stops the run after the third
    for (executor, flock, model) in both("budget-cost", 4).await {
        let error = failure(
            flock
                .run_flow(budget_tree, brief())
                .budget(Budget::cost_usd(0.025)),
        )
        .await;
        assert!(
            error.contains("spent 450 tokens") && error.contains("with a budget of $0.0250"),
            "{executor}: {error}"
        );
        assert_eq!(model.received().len(), 3, "{executor}");
    }
    // across continue-as-new: the third run's request takes the spending to 450
    for (executor, flock, model) in both("budget-rounds", 4).await {
        let error = failure(
            flock
                .run_flow(budget_rounds, Rounds { left: 4 })
                .budget(Budget::tokens(400)),
        )
        .await;
        assert!(
            error.contains("spent 450 tokens") && error.contains("with a budget of 400 tokens"),
            "{executor}: {error}"
        );
        assert_eq!(model.received().len(), 3, "{executor}");
    }
    // an agent run on its own with a budget smaller than one answer: it fails after the answer
    for (executor, flock, model) in both("budget-agent", 1).await {
        let error = failure(
            flock
                .run(budget_writer, brief())
                .budget(Budget::tokens(100)),
        )
        .await;
        assert!(
            error.contains("spent 150 tokens") && error.contains("with a budget of 100 tokens"),
            "{executor}: {error}"
        );
        assert_eq!(model.received().len(), 1, "{executor}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_tree_within_its_budget_completes_and_its_record_sums_the_tree_on_both_executors() {
    for (executor, flock, model) in both("budget-within", 4).await {
        let recorded = tokio::time::timeout(
            BOUND,
            flock
                .run_flow(budget_tree, brief())
                .budget(Budget::tokens(600).and_cost_usd(1.0))
                .recorded()
                .into_future(),
        )
        .await
        .expect("the run ends");
        assert_eq!(recorded.result.unwrap().text, "draft 3", "{executor}");
        assert_eq!(model.received().len(), 4, "{executor}");
        let usage = recorded.record.usage();
        assert_eq!(
            (usage.prompt_tokens, usage.completion_tokens, usage.requests),
            (400, 200, 4),
            "{executor}: {usage:?}"
        );
        assert!(
            (usage.cost_usd - 0.04).abs() < 1e-9,
            "{executor}: {usage:?}"
        );
        // per agent call, per flow, per run tree
        let record = &recorded.record;
        assert_eq!(record.children.len(), 2, "{executor}");
        assert_eq!(
            record.own_usage().requests,
            0,
            "{executor}: the root calls no agent"
        );
        for child in &record.children {
            assert_eq!(child.own_usage().tokens(), 300, "{executor}");
            let per_call: Vec<u64> = child.steps.iter().map(|s| s.usage.tokens()).collect();
            assert_eq!(per_call, [150, 150], "{executor}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_that_allows_nothing_fails_the_start_on_both_executors() {
    for (executor, flock, model) in both("budget-bad", 0).await {
        for (budget, problem) in [
            (Budget::tokens(0), "the budget allows 0 tokens"),
            (Budget::cost_usd(0.0), "the budget allows $0"),
            (Budget::cost_usd(f64::NAN), "the budget allows $NaN"),
            (Budget::default(), "the budget sets no limit"),
        ] {
            let error = flock
                .run_flow(budget_tree, brief())
                .id(format!("budget-bad-{}", super::support::unique()))
                .budget(budget)
                .await
                .expect_err("a budget that allows nothing was taken")
                .to_string();
            assert!(
                error.contains("of `budget_tree`: ") && error.contains(problem),
                "{executor}: {error}"
            );
        }
        assert!(model.received().is_empty(), "{executor}");
    }
    // (a run's spending adds up like usage)
    let mut spent = Usage::default();
    spent += Usage {
        prompt_tokens: 1,
        completion_tokens: 2,
        requests: 1,
        cost_usd: 0.5,
    };
    assert!(Budget::cost_usd(0.4).exceeded_by(&spent));
    assert!(!Budget::tokens(3).exceeded_by(&spent));
}

/// A run whose memo holds a budget flock cannot read (started by another client) fails, naming
/// it, on the client and in the worker's log; it never runs without the budget it was given, nor
/// stays Running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_in_the_memo_that_cannot_be_read_fails_the_run_visibly() {
    let log = super::conformance::worker_log();
    let [_, (_, flock, model)] = both("budget-memo", 4).await;
    for (i, memo) in [
        serde_json::json!("garbage"),
        serde_json::json!({ "budget": { "tokens": 0 } }),
    ]
    .into_iter()
    .enumerate()
    {
        let run_id = format!("budget-memo-{i}-{}", super::support::unique());
        let mut memo_values = temporalio_common::MemoValues::new();
        memo_values.insert("flock-budget", memo);
        let input = temporalio_common::protos::temporal::api::common::v1::Payload {
            metadata: std::collections::HashMap::from([(
                "encoding".to_owned(),
                b"json/plain".to_vec(),
            )]),
            data: br#"{"topic": "budgets"}"#.to_vec(),
            ..Default::default()
        };
        super::temporal::sdk_client()
            .await
            .start_workflow(
                temporalio_common::UntypedWorkflow::new("budget_tree"),
                temporalio_common::data_converters::RawValue::new(vec![input]),
                temporalio_client::WorkflowStartOptions::new(
                    "budget-memo".to_owned(),
                    run_id.clone(),
                )
                .memo(memo_values)
                .build(),
            )
            .await
            .unwrap();
        let error = tokio::time::timeout(BOUND, flock.result_json(&run_id))
            .await
            .expect("the run ends; it does not stay Running")
            .expect_err("the run fails")
            .to_string();
        assert!(
            error.contains("the run's budget (memo `flock-budget`) cannot be read"),
            "{i}: {error}"
        );
        let text = String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
        assert!(
            text.contains(&run_id) && text.contains("cannot be read"),
            "the worker logs it: {text}"
        );
    }
    assert!(model.received().is_empty(), "no model request ran");
}
