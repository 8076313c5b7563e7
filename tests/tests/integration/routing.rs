//! A routing flow exercised offline: a scripted `TestModel` (a rule over each request) makes the
//! router agent pick every desk in turn, so every branch of the flow runs, on both executors; a
//! scripted answer that is not one of the router's variants is the router's invalid output, named.

use std::future::IntoFuture;
use std::time::Duration;

use flock::model::{TestAnswer, TestModel};
use flock::prelude::*;
use serde_json::json;

const BOUND: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub enum Desk {
    Billing,
    Tech,
    Sales,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Ticket {
    /// What the customer wrote
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Handled {
    /// The desk that handled it
    pub by: String,
}

/// Which desk takes the ticket.
#[agent(retry(attempts = 1))]
async fn pick_desk(input: Ticket) -> Desk;

/// Billing handles it.
#[agent]
async fn billing_desk(input: Ticket) -> Handled {
    let _ = input;
    Handled {
        by: "billing".into(),
    }
}

/// Tech handles it.
#[agent]
async fn tech_desk(input: Ticket) -> Handled {
    let _ = input;
    Handled { by: "tech".into() }
}

/// Sales handles it.
#[agent]
async fn sales_desk(input: Ticket) -> Handled {
    let _ = input;
    Handled { by: "sales".into() }
}

#[flow]
async fn triage(ctx: &FlowContext, ticket: Ticket) -> Result<Handled, FlowError> {
    match ctx.call(pick_desk, ticket.clone()).await? {
        Desk::Billing => ctx.call(billing_desk, ticket).await,
        Desk::Tech => ctx.call(tech_desk, ticket).await,
        Desk::Sales => ctx.call(sales_desk, ticket).await,
    }
}

/// The router's model: by what the ticket says (the prompt carries the input).
fn scripted() -> TestModel {
    TestModel::new().rule("pick_desk", |request| {
        let prompt: String = request
            .messages
            .iter()
            .map(|m| m.content.as_str())
            .collect();
        let desk = if prompt.contains("invoice") {
            "Billing"
        } else if prompt.contains("crash") {
            "Tech"
        } else if prompt.contains("price") {
            "Sales"
        } else {
            "Marketing" // not a desk
        };
        TestAnswer::output(json!(desk))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routing_flow_reaches_every_branch_offline_on_both_executors() {
    for executor in ["local", "temporal"] {
        let mut builder = Flock::builder()
            .register_model("scripted", scripted())
            .model("scripted");
        if executor == "temporal" {
            builder = super::temporal::on_test_server(builder, "routing");
        }
        let flock = builder.build().await.expect("a Flock");
        for (text, desk) in [
            ("my invoice is wrong", "billing"),
            ("the app crashes at start", "tech"),
            ("what is the price of the pro plan", "sales"),
        ] {
            let ticket = Ticket { text: text.into() };
            let recorded = tokio::time::timeout(
                BOUND,
                flock.run_flow(triage, ticket).recorded().into_future(),
            )
            .await
            .expect("the run ends");
            assert_eq!(
                recorded.result.expect("handled").by,
                desk,
                "{executor}: {text}"
            );
            let steps = super::support::step_names(&recorded.record);
            assert_eq!(
                steps,
                ["pick_desk", &format!("{desk}_desk")],
                "{executor}: {text}"
            );
        }
        // an answer that is none of the variants: the router's invalid output, naming it
        let error = tokio::time::timeout(
            BOUND,
            flock
                .run_flow(
                    triage,
                    Ticket {
                        text: "hello".into(),
                    },
                )
                .into_future(),
        )
        .await
        .expect("the run ends")
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("pick_desk") && error.contains("Marketing"),
            "{executor}: {error}"
        );
        flock.shutdown().await.unwrap();
    }
}
