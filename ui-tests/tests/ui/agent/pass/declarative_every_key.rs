//! A declarative agent with every attribute key, in a module with `pub(crate)` visibility, and
//! one with none: the spec says exactly what the attribute said.

use std::time::Duration;

use flock::prelude::*;
use flock::retry::Attempts;
use flock::{AgentKind, ErrorClass};

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Topic {
    /// The topic to research
    pub topic: String,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Findings {
    /// Research findings
    pub findings: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct Query {
    /// What to search for
    pub q: String,
}

/// Searches the web.
#[tool]
async fn search(args: Query) -> String {
    format!("results for {}", args.q)
}

mod agents {
    use super::*;

    /// Research the topic
    /// and report what you found.
    #[agent(
        name = "researcher",
        description = "Researches.",
        model = "openai/gpt-4o-mini",
        hand_off = summarize,
        timeout = "30s",
        schedule_to_close = "5m",
        heartbeat = "10s",
        task_queue = "research",
        output_retries = 4,
        local = false,
        tools = [search],
        max_concurrent = 4,
        per_second = 2.5,
        priority = 1,
        retry(
            attempts = 5,
            initial_interval = "500ms",
            max_interval = "2h",
            backoff = 1.5,
            jitter = 0.2,
            non_retryable = ["InvalidOutput", "RateLimited"],
        ),
    )]
    pub(crate) async fn research(input: Topic) -> Findings;

    /// Summarize the findings.
    #[agent]
    pub async fn summarize(input: Findings) -> Findings;

    /// Retried until it succeeds.
    #[agent(retry(attempts = unlimited))]
    pub async fn persist(input: Findings) -> Findings;
}

use agents::{persist, research, summarize};

fn main() {
    assert_eq!(<research as Agent>::NAME, "researcher");
    let spec = research.spec();
    assert_eq!(spec.name, "researcher");
    assert_eq!(spec.description, "Researches.");
    assert_eq!(spec.kind, AgentKind::Declarative);
    assert_eq!(spec.model, Some("openai/gpt-4o-mini"));
    assert_eq!(spec.hand_off, Some("summarize"));
    assert_eq!(spec.timeout, Some(Duration::from_secs(30)));
    assert_eq!(spec.schedule_to_close, Some(Duration::from_secs(300)));
    assert_eq!(spec.heartbeat, Some(Duration::from_secs(10)));
    assert_eq!(spec.task_queue, Some("research"));
    assert_eq!(spec.output_retries, Some(4));
    assert_eq!(spec.local, Some(false));
    assert_eq!((spec.max_concurrent, spec.per_second), (Some(4), Some(2.5)));
    assert_eq!(spec.priority, Some(1));
    assert_eq!(spec.retry.attempts, Attempts::at_most(5));
    assert_eq!(spec.retry.initial_interval, Some(Duration::from_millis(500)));
    assert_eq!(spec.retry.max_interval, Some(Duration::from_secs(7200)));
    assert_eq!(spec.retry.backoff, Some(1.5));
    assert_eq!(spec.retry.jitter, Some(0.2));
    assert_eq!(spec.retry.non_retryable, ["InvalidOutput", "RateLimited"]);
    assert!(ErrorClass::from_name(spec.retry.non_retryable[0]).is_some());
    let tools: Vec<_> = spec.tools.iter().map(|t| t.name()).collect();
    assert_eq!(tools, ["search"]);
    assert!(spec.location.contains("declarative_every_key.rs:"), "{}", spec.location);

    assert_eq!(<research as Agent>::CHAIN.name, "researcher.chain");
    assert_eq!(<research as Agent>::CHAIN.description, "Researches.");

    // No keys: the fn's name, the doc comment, everything else unset.
    let spec = summarize.spec();
    assert_eq!(spec.name, "summarize");
    assert_eq!(spec.description, "Summarize the findings.");
    assert_eq!(spec.kind, AgentKind::Declarative);
    assert_eq!((spec.model, spec.hand_off, spec.timeout, spec.local), (None, None, None, None));
    assert_eq!((spec.max_concurrent, spec.per_second), (None, None));
    assert_eq!(spec.retry, flock::RetrySpec::EMPTY);
    assert!(spec.tools.is_empty());

    // No limit, spelled out; the policy the executors read says the same.
    assert_eq!(persist.spec().retry.attempts, Some(Attempts::Unlimited));
    let policy = flock::RetryPolicy::default().with_spec(&persist.spec().retry);
    assert_eq!(policy.attempts(), Attempts::Unlimited);

    // The generated type: a copyable, defaultable value with a readable `Debug`.
    let copy = research;
    let _ = (copy, research, <research as Default>::default());
    assert_eq!(format!("{research:?}"), "researcher");
    let schema = serde_json::to_value(research.input_schema()).unwrap();
    assert_eq!(schema["properties"]["topic"]["description"], "The topic to research");
}
