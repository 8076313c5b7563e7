//! What `#[agent]` and `#[flow]` expand to, written by hand: the contract between the macros and
//! the runtime, kept compiling and running.
#![allow(non_camel_case_types)]

use flock::__private as fp;
use flock::prelude::*;

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
#[derive(Debug, Clone, Copy, Default)]
pub struct research;

const _: () = {
    impl fp::Agent for research {
        type Input = Topic;
        type Output = Findings;
        type Next = shout;
        const NAME: &'static str = "research";
        const CHAIN: &'static fp::FlowSpec = &{
            let mut spec = fp::FlowSpec::new("research.chain");
            spec.description = "Research the topic.";
            spec.location = "flock/tests/expansion_contract.rs:19";
            spec
        };
        fn spec(&self) -> &'static fp::AgentSpec {
            static SPEC: fp::AgentSpec = {
                let mut spec = fp::AgentSpec::new("research", fp::AgentKind::Declarative);
                spec.description = "Research the topic.";
                spec.hand_off = Some("shout");
                spec.retry.attempts = Some(3);
                spec.retry.initial_interval = Some(fp::core::time::Duration::from_millis(10));
                spec.location = "flock/tests/expansion_contract.rs:19";
                spec
            };
            &SPEC
        }
        fn call(
            self,
            ctx: fp::AgentContext,
            input: Topic,
        ) -> impl fp::core::future::Future<
            Output = fp::core::result::Result<Findings, fp::AgentError>,
        > + fp::core::marker::Send
        + 'static {
            fp::run_declarative::<Self>(ctx, input)
        }
    }
    fp::inventory::submit! {
        fp::AgentRegistration { agent: &research, chain: &fp::Chain(research) }
    }
};

/// Shouts.
#[derive(Debug, Clone, Copy, Default)]
pub struct shout;

const _: () = {
    impl shout {
        async fn __flock_body(ctx: &AgentContext, input: Findings) -> Result<Findings, AgentError> {
            let _ = ctx.attempt();
            Ok(Findings {
                findings: input.findings.to_uppercase(),
            })
        }
    }
    impl fp::Agent for shout {
        type Input = Findings;
        type Output = <Result<Findings, AgentError> as fp::FallibleReturn>::Ok;
        type Next = fp::End;
        const NAME: &'static str = "shout";
        const CHAIN: &'static fp::FlowSpec = &fp::FlowSpec::new("shout.chain");
        fn spec(&self) -> &'static fp::AgentSpec {
            static SPEC: fp::AgentSpec = fp::AgentSpec::new("shout", fp::AgentKind::Code);
            &SPEC
        }
        fn call(
            self,
            ctx: fp::AgentContext,
            input: Findings,
        ) -> impl fp::core::future::Future<
            Output = fp::core::result::Result<Findings, fp::AgentError>,
        > + fp::core::marker::Send
        + 'static {
            async move { fp::into_agent_result(Self::__flock_body(&ctx, input).await) }
        }
    }
    fp::inventory::submit! {
        fp::AgentRegistration { agent: &shout, chain: &fp::Chain(shout) }
    }
};

#[derive(Debug, Clone, Copy, Default)]
pub struct research_flow;

const _: () = {
    impl research_flow {
        async fn __flock_body(ctx: &FlowContext, topic: Topic) -> Result<Findings, FlowError> {
            let findings = ctx.call(research, topic).await?;
            ctx.call(shout, findings).await
        }
    }
    impl fp::Flow for research_flow {
        type Input = Topic;
        type Output = Findings;
        const NAME: &'static str = "research_flow";
        fn spec(&self) -> &'static fp::FlowSpec {
            static SPEC: fp::FlowSpec = fp::FlowSpec::new("research_flow");
            &SPEC
        }
        fn run(
            self,
            ctx: &fp::FlowContext,
            input: Topic,
        ) -> fp::futures::future::BoxFuture<'_, fp::core::result::Result<Findings, fp::FlowError>>
        {
            fp::std::boxed::Box::pin(Self::__flock_body(ctx, input))
        }
    }
    fp::inventory::submit! {
        fp::FlowRegistration { flow: &research_flow }
    }
};

#[tokio::test]
async fn hand_expanded_agents_and_flow_run() {
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
