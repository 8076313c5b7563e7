//! The contract between the macros and the runtime: `#[agent]` (declarative and code) and
//! `#[flow]` expand to types the executors run, register and describe. (This file first held the
//! expansion written by hand; `flock-macros` now generates it, and `flock-macros`' own tests
//! check the generated code's shape.)

use std::time::Duration;

use flock::AgentKind;
use flock::prelude::*;
use flock::retry::Attempts;

#[derive(Debug, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct Topic {
    /// The topic to research
    pub topic: String,
}
#[derive(Debug, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct Findings {
    /// Research findings
    pub findings: String,
}

/// Research the topic.
#[agent(hand_off = shout, retry(attempts = 3, initial_interval = "10ms"))]
pub async fn research(input: Topic) -> Findings;

/// Shouts.
#[agent]
pub async fn shout(ctx: &AgentContext, input: Findings) -> Result<Findings, AgentError> {
    let _ = ctx.attempt();
    Ok(Findings {
        findings: input.findings.to_uppercase(),
    })
}

#[flow]
pub async fn research_flow(ctx: &FlowContext, topic: Topic) -> Result<Findings, FlowError> {
    let findings = ctx.call(research, topic).await?;
    ctx.call(shout, findings).await
}

#[test]
fn specs_say_what_the_attributes_said() {
    let spec = research.spec();
    assert_eq!(spec.name, "research");
    assert_eq!(spec.description, "Research the topic.");
    assert_eq!(spec.kind, AgentKind::Declarative);
    assert_eq!(spec.hand_off, Some("shout"));
    assert_eq!(spec.retry.attempts, Attempts::at_most(3));
    assert_eq!(spec.retry.initial_interval, Some(Duration::from_millis(10)));
    assert!(
        spec.location
            .starts_with("flock/tests/expansion_contract.rs:"),
        "{}",
        spec.location
    );
    let chain = <research as Agent>::CHAIN;
    assert_eq!(chain.name, "research.chain");
    assert_eq!(chain.description, "Research the topic.");
    assert_eq!(chain.location, spec.location);

    assert_eq!(<shout as Agent>::NAME, "shout");
    assert_eq!(shout.spec().kind, AgentKind::Code);
    assert_eq!(shout.spec().hand_off, None);
    assert_eq!(<research_flow as Flow>::NAME, "research_flow");
    assert_eq!(research_flow.spec().name, "research_flow");
}

#[tokio::test]
async fn expanded_agents_and_flow_run() {
    let flock = Flock::builder().model("test").build().await.unwrap();
    let out: Findings = flock
        .run(research, Topic { topic: "x".into() })
        .await
        .unwrap();
    assert_eq!(out.findings, "FINDINGS EXAMPLE");
    let recorded = flock
        .run_flow(research_flow, Topic { topic: "x".into() })
        .id("fixed-id")
        .recorded()
        .await;
    assert_eq!(recorded.result.unwrap().findings, "FINDINGS EXAMPLE");
    assert_eq!(recorded.record.run_id, "fixed-id");
    assert_eq!(recorded.record.steps.len(), 2);
    assert_eq!(recorded.record.steps[0].agent, "research");
    assert_eq!(
        recorded.record.steps[1].output.as_ref().unwrap()["findings"],
        "FINDINGS EXAMPLE"
    );
    let names: Vec<_> = flock.registry().agents().map(|a| a.spec().name).collect();
    assert_eq!(names, ["research", "shout"]);
}
