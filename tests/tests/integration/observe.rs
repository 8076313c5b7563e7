//! Observability on both executors: the Prometheus endpoint scraped over HTTP after real runs
//! (attempts by outcome and class, tokens and cost from an OpenAI-protocol server in the test,
//! flows by outcome, and on Temporal the SDK core's worker metrics), the spans a run leaves
//! (flow → agent attempt → model request, with OpenTelemetry GenAI attributes), and what must
//! never be in them (the API key; by default the prompt).
//!
//! Metrics are process-wide: each executor's test has agents and flows of its own, so their
//! label sets do not mix.

use std::collections::BTreeMap;
use std::future::IntoFuture;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use flock::model::{OpenAi, OpenAiConfig};
use flock::observe::PriceTable;
use flock::prelude::*;
use tracing::Subscriber;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use super::model::server::{FakeOpenAi, answer};
use super::temporal::config;

/// The API key the model server is called with: it must appear nowhere.
const KEY: &str = "sk-observe-test-key-1f2e3d";
/// A phrase that is only in the prompt (the flow's input): by default it appears nowhere.
const SECRET_TOPIC: &str = "the confidential merger of Acme and Globex";

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Topic {
    /// The topic to review
    pub topic: String,
    /// Whether the run ends in an agent that always fails
    pub doomed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Verdict {
    /// The verdict
    pub verdict: String,
}

// A model name of this module's own (its Flocks' default: an agent's own `model = ".."` would
// need an OpenAI key in every Flock of this test binary): the metrics are process-wide, and
// other tests' requests must not count in its assertions.
/// Review the topic.
#[agent]
async fn obs_review(input: Topic) -> Verdict;

/// Fails twice (transient, then rate limited), then passes the verdict on.
#[agent(retry(attempts = 3, initial_interval = "10ms"))]
async fn obs_flaky(ctx: &AgentContext, input: Verdict) -> Result<Verdict, AgentError> {
    flaky(ctx, input)
}

/// Always fails, permanently.
#[agent]
async fn obs_doomed(input: Verdict) -> Result<Verdict, AgentError> {
    let _ = input;
    Err(AgentError::permanent("this agent always fails"))
}

#[flow]
async fn obs_flow(ctx: &FlowContext, input: Topic) -> Result<Verdict, FlowError> {
    let doomed = input.doomed;
    let verdict = ctx.call(obs_review, input).await?;
    let verdict = ctx.call(obs_flaky, verdict).await?;
    if doomed {
        ctx.call(obs_doomed, verdict).await
    } else {
        Ok(verdict)
    }
}

// The same on Temporal, under names of their own.

/// Review the topic.
#[agent]
async fn obs_t_review(input: Topic) -> Verdict;

/// Fails twice (transient, then rate limited), then passes the verdict on.
#[agent(retry(attempts = 3, initial_interval = "10ms"))]
async fn obs_t_flaky(ctx: &AgentContext, input: Verdict) -> Result<Verdict, AgentError> {
    flaky(ctx, input)
}

/// Always fails, permanently.
#[agent]
async fn obs_t_doomed(input: Verdict) -> Result<Verdict, AgentError> {
    let _ = input;
    Err(AgentError::permanent("this agent always fails"))
}

#[flow]
async fn obs_t_flow(ctx: &FlowContext, input: Topic) -> Result<Verdict, FlowError> {
    let doomed = input.doomed;
    let verdict = ctx.call(obs_t_review, input).await?;
    let verdict = ctx.call(obs_t_flaky, verdict).await?;
    if doomed {
        ctx.call(obs_t_doomed, verdict).await
    } else {
        Ok(verdict)
    }
}

fn flaky(ctx: &AgentContext, input: Verdict) -> Result<Verdict, AgentError> {
    match ctx.attempt() {
        1 => Err(AgentError::transient("the backend blinked")),
        2 => Err(AgentError::rate_limited(
            Duration::from_millis(20),
            "slow down",
        )),
        _ => Ok(input),
    }
}

fn topic(doomed: bool) -> Topic {
    Topic {
        topic: SECRET_TOPIC.into(),
        doomed,
    }
}

async fn model_server(requests: usize) -> FakeOpenAi {
    FakeOpenAi::start(
        (0..requests)
            .map(|_| answer(r#"{"verdict":"fine"}"#, 120, 30))
            .collect(),
    )
    .await
}

fn provider(server: &FakeOpenAi) -> OpenAi {
    OpenAi::new(OpenAiConfig {
        api_key: Some(KEY.into()),
        base_url: Some(server.base_url()),
        timeout: Duration::from_secs(10),
        ..OpenAiConfig::default()
    })
}

fn prices() -> PriceTable {
    PriceTable::new()
        .price("openai/gpt-4o-mini-observe", 0.15, 0.60)
        .price("gpt-4.1-mini", 0.40, 1.60)
}

// ---------------------------------------------------------------------------------------------
// The local executor.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_runs_show_in_metrics_and_spans() {
    capture();
    let server = model_server(3).await;
    let flock = Flock::builder()
        .provider(provider(&server))
        .model("openai/gpt-4o-mini-observe")
        .prices(prices())
        .metrics("127.0.0.1:0")
        .build()
        .await
        .expect("a local Flock");
    let addr = flock.metrics_addr().expect("the metrics endpoint");

    let ok = flock
        .run_flow(obs_flow, topic(false))
        .id("obs-local-ok")
        .recorded()
        .await;
    assert_eq!(ok.result.unwrap().verdict, "fine");
    let usage = ok.record.usage();
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (120, 30));
    // 120 × 0.15 + 30 × 0.60 dollars per million tokens
    assert!((usage.cost_usd - 0.000036).abs() < 1e-12, "{usage:?}");
    let failed = flock
        .run_flow(obs_flow, topic(true))
        .id("obs-local-doomed")
        .into_future()
        .await;
    assert!(failed.is_err());

    let text = scrape(addr).await;
    let m = Metrics::parse(&text);
    let attempts = "flock_agent_attempts_total";
    let ok_ = ("outcome", "completed");
    let failed_ = ("outcome", "failed");
    assert_eq!(
        m.get(
            attempts,
            &[("agent", "obs_review"), ok_, ("error_class", "")]
        ),
        2.0,
        "{text}"
    );
    assert_eq!(
        m.get(
            attempts,
            &[("agent", "obs_flaky"), ok_, ("error_class", "")]
        ),
        2.0
    );
    assert_eq!(
        m.get(
            attempts,
            &[
                ("agent", "obs_flaky"),
                failed_,
                ("error_class", "Transient")
            ]
        ),
        2.0
    );
    assert_eq!(
        m.get(
            attempts,
            &[
                ("agent", "obs_flaky"),
                failed_,
                ("error_class", "RateLimited")
            ]
        ),
        2.0
    );
    assert_eq!(
        m.get(
            attempts,
            &[
                ("agent", "obs_doomed"),
                failed_,
                ("error_class", "Permanent")
            ]
        ),
        1.0
    );
    assert_eq!(
        m.get(
            "flock_agent_duration_seconds_count",
            &[("agent", "obs_flaky")]
        ),
        6.0
    );
    let model = ("model", "openai/gpt-4o-mini-observe");
    assert_eq!(
        m.get("flock_model_request_duration_seconds_count", &[model]),
        2.0
    );
    let tokens = "flock_tokens_total";
    let review = ("agent", "obs_review");
    assert_eq!(
        m.get(tokens, &[review, model, ("direction", "input")]),
        240.0
    );
    assert_eq!(
        m.get(tokens, &[review, model, ("direction", "output")]),
        60.0
    );
    assert!((m.get("flock_cost_usd_total", &[review, model]) - 0.000072).abs() < 1e-12);
    let flows = "flock_flows_total";
    assert_eq!(
        m.get(flows, &[("flow", "obs_flow"), ("outcome", "started")]),
        2.0
    );
    assert_eq!(
        m.get(flows, &[("flow", "obs_flow"), ("outcome", "completed")]),
        1.0
    );
    assert_eq!(
        m.get(flows, &[("flow", "obs_flow"), ("outcome", "failed")]),
        1.0
    );
    assert!(!text.contains(KEY) && !text.contains(SECRET_TOPIC));

    // The spans: flow → attempt → model request, with the GenAI attributes.
    let spans = self::spans();
    let flow = spans
        .iter()
        .find(|s| s.name == "flock.flow" && s.field("flock.run_id") == "obs-local-ok")
        .expect("the flow span");
    assert_eq!(flow.field("otel.name"), "flow obs_flow");
    assert_eq!(flow.field("flock.outcome"), "completed");
    let attempt = spans
        .iter()
        .find(|s| s.parent == Some(flow.seq) && s.field("gen_ai.agent.name") == "obs_review")
        .expect("the review attempt, a child of the flow span");
    assert_eq!(attempt.field("gen_ai.operation.name"), "invoke_agent");
    assert_eq!(attempt.field("flock.attempt"), "1");
    assert_eq!(attempt.field("flock.outcome"), "completed");
    let request = spans
        .iter()
        .find(|s| s.parent == Some(attempt.seq) && s.name == "flock.model")
        .expect("the model request, a child of the attempt");
    assert_eq!(request.field("otel.name"), "chat gpt-4o-mini-observe");
    assert_eq!(request.field("gen_ai.operation.name"), "chat");
    assert_eq!(request.field("gen_ai.provider.name"), "openai");
    assert_eq!(request.field("gen_ai.request.model"), "gpt-4o-mini-observe");
    assert_eq!(
        request.field("gen_ai.response.model"),
        "gpt-4o-mini-2024-07-18"
    );
    assert_eq!(request.field("gen_ai.usage.input_tokens"), "120");
    assert_eq!(request.field("gen_ai.usage.output_tokens"), "30");
    assert_eq!(request.field("flock.cost_usd"), "3.6e-5");
    assert_eq!(request.field("gen_ai.input.messages"), "");
    let failed_attempt = spans
        .iter()
        .find(|s| {
            s.parent == Some(flow.seq)
                && s.field("gen_ai.agent.name") == "obs_flaky"
                && s.field("flock.attempt") == "1"
        })
        .expect("the first obs_flaky attempt");
    assert_eq!(failed_attempt.field("flock.outcome"), "failed");
    assert_eq!(failed_attempt.field("error.type"), "Transient");
    let delay: u64 = failed_attempt
        .field("flock.retry_delay_ms")
        .parse()
        .unwrap();
    assert!(
        (5..=20).contains(&delay),
        "a 10 ms backoff with jitter, got {delay} ms"
    );
    let rate_limited = spans
        .iter()
        .find(|s| {
            s.parent == Some(flow.seq)
                && s.field("gen_ai.agent.name") == "obs_flaky"
                && s.field("flock.attempt") == "2"
        })
        .expect("the second obs_flaky attempt");
    assert_eq!(rate_limited.field("error.type"), "RateLimited");
    assert!(
        rate_limited
            .field("flock.retry_delay_ms")
            .parse::<u64>()
            .unwrap()
            >= 20
    );
    let warned = events().into_iter().any(|e| {
        e.parent == Some(failed_attempt.seq)
            && e.field("message").contains(
                "agent `obs_flaky` attempt 1 failed (Transient): the backend blinked; retrying in",
            )
    });
    assert!(warned, "a WARN event for the failed attempt");
    assert_nothing_secret("obs_review");

    // Contents, when asked for: the prompt and the answer on the model request span.
    let with_contents = Flock::builder()
        .provider(provider(&server))
        .model("openai/gpt-4o-mini-observe")
        .record_contents(true)
        .build()
        .await
        .unwrap();
    let done = with_contents
        .run_flow(obs_flow, topic(false))
        .id("obs-local-contents")
        .into_future()
        .await;
    assert!(done.is_ok(), "{done:?}");
    let spans = self::spans();
    let flow = spans
        .iter()
        .find(|s| s.name == "flock.flow" && s.field("flock.run_id") == "obs-local-contents")
        .expect("the flow span");
    let attempt = spans
        .iter()
        .find(|s| s.parent == Some(flow.seq) && s.field("gen_ai.agent.name") == "obs_review")
        .unwrap();
    let request = spans
        .iter()
        .find(|s| s.parent == Some(attempt.seq) && s.name == "flock.model")
        .unwrap();
    assert!(
        request
            .field("gen_ai.input.messages")
            .contains(SECRET_TOPIC)
    );
    assert_eq!(
        request.field("gen_ai.output.messages"),
        r#"{"verdict":"fine"}"#
    );
    assert!(!request.field("gen_ai.input.messages").contains(KEY));
}

#[tokio::test]
async fn bad_metrics_addresses_fail_the_build() {
    let error = Flock::builder()
        .metrics("localhost:metrics")
        .build()
        .await
        .map(|_| ())
        .expect_err("an unparsable address is refused");
    assert_eq!(
        error.to_string(),
        "flock configuration error: metrics address `localhost:metrics`: invalid socket address syntax; give an IP address and port, e.g. `0.0.0.0:9464` or `127.0.0.1:0`"
    );
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    for local_debug in [true, false] {
        let mut builder = Flock::builder()
            .metrics(addr.clone())
            .local_debug(local_debug);
        if !local_debug {
            builder = builder.temporal(config("observe-bad-address"));
        }
        let error = builder
            .build()
            .await
            .map(|_| ())
            .expect_err("an address in use is refused");
        let message = error.to_string();
        assert!(
            message.starts_with(&format!(
                "flock configuration error: metrics address `{addr}`: cannot listen: "
            )) && message.contains("in use"),
            "{message}"
        );
    }
    let error = Flock::builder()
        .prices(PriceTable::new().price("openai/gpt-4o", 2.5, -10.0))
        .build()
        .await
        .map(|_| ())
        .expect_err("a negative price is refused");
    assert!(
        error
            .to_string()
            .contains("the output price of `openai/gpt-4o` is -10"),
        "{error}"
    );
}

// ---------------------------------------------------------------------------------------------
// Temporal.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporal_runs_show_in_metrics_and_spans() {
    capture();
    let server = model_server(2).await;
    let flock = Flock::builder()
        .provider(provider(&server))
        .model("openai/gpt-4.1-mini")
        .prices(prices())
        .metrics("127.0.0.1:0")
        .local_debug(false)
        .serve_only([obs_t_flow::NAME])
        .temporal(config("observe-metrics"))
        .build()
        .await
        .expect("a Flock on the test dev server");
    let addr = flock.metrics_addr().expect("the metrics endpoint");
    let run = uuid();
    let ok = flock
        .run_flow(obs_t_flow, topic(false))
        .id(format!("obs-temporal-ok-{run}"))
        .recorded()
        .await;
    assert_eq!(ok.result.unwrap().verdict, "fine");
    // 120 × 0.40 + 30 × 1.60 dollars per million tokens, read back from the history
    let usage = ok.record.usage();
    assert!((usage.cost_usd - 0.000096).abs() < 1e-12, "{usage:?}");
    let failed = flock
        .run_flow(obs_t_flow, topic(true))
        .id(format!("obs-temporal-doomed-{run}"))
        .into_future()
        .await;
    assert!(failed.is_err());

    // The SDK core counts a workflow completed or failed once the server has acknowledged the
    // completion, which may be after the client has seen the result: scrape until both show.
    let deadline = Instant::now() + Duration::from_secs(15);
    let (text, m) = loop {
        let text = scrape(addr).await;
        let m = Metrics::parse(&text);
        let sdk_counted = ["temporal_workflow_completed", "temporal_workflow_failed"]
            .iter()
            .all(|name| m.sum(name, &[("workflow_type", "obs_t_flow")]) >= 1.0);
        if sdk_counted || Instant::now() > deadline {
            break (text, m);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let attempts = "flock_agent_attempts_total";
    let ok_ = ("outcome", "completed");
    let failed_ = ("outcome", "failed");
    assert_eq!(
        m.get(
            attempts,
            &[("agent", "obs_t_review"), ok_, ("error_class", "")]
        ),
        2.0,
        "{text}"
    );
    assert_eq!(
        m.get(
            attempts,
            &[("agent", "obs_t_flaky"), ok_, ("error_class", "")]
        ),
        2.0
    );
    assert_eq!(
        m.get(
            attempts,
            &[
                ("agent", "obs_t_flaky"),
                failed_,
                ("error_class", "Transient")
            ]
        ),
        2.0
    );
    assert_eq!(
        m.get(
            attempts,
            &[
                ("agent", "obs_t_flaky"),
                failed_,
                ("error_class", "RateLimited")
            ]
        ),
        2.0
    );
    assert_eq!(
        m.get(
            attempts,
            &[
                ("agent", "obs_t_doomed"),
                failed_,
                ("error_class", "Permanent")
            ]
        ),
        1.0
    );
    let model = ("model", "openai/gpt-4.1-mini");
    let review = ("agent", "obs_t_review");
    assert_eq!(
        m.get(
            "flock_tokens_total",
            &[review, model, ("direction", "input")]
        ),
        240.0
    );
    assert_eq!(
        m.get(
            "flock_tokens_total",
            &[review, model, ("direction", "output")]
        ),
        60.0
    );
    assert!((m.get("flock_cost_usd_total", &[review, model]) - 0.000192).abs() < 1e-12);
    let flows = "flock_flows_total";
    assert_eq!(
        m.get(flows, &[("flow", "obs_t_flow"), ("outcome", "started")]),
        2.0
    );
    assert_eq!(
        m.get(flows, &[("flow", "obs_t_flow"), ("outcome", "completed")]),
        1.0
    );
    assert_eq!(
        m.get(flows, &[("flow", "obs_t_flow"), ("outcome", "failed")]),
        1.0
    );
    // The SDK core's worker metrics, on the same endpoint.
    assert!(
        m.sum(
            "temporal_workflow_completed",
            &[("workflow_type", "obs_t_flow")]
        ) >= 1.0,
        "{text}"
    );
    assert!(
        m.sum(
            "temporal_workflow_failed",
            &[("workflow_type", "obs_t_flow")]
        ) >= 1.0,
        "{text}"
    );
    assert!(!text.contains(KEY) && !text.contains(SECRET_TOPIC));

    // The spans: the workflow's flow span (once: not again on replay), and on the worker's
    // activity side attempt → model request.
    let spans = self::spans();
    let id = format!("obs-temporal-ok-{run}");
    let flow_spans: Vec<_> = spans
        .iter()
        .filter(|s| s.name == "flock.flow" && s.field("flock.run_id") == id)
        .collect();
    assert_eq!(
        flow_spans.len(),
        1,
        "one flow span for the run: {flow_spans:?}"
    );
    assert_eq!(flow_spans[0].field("flock.outcome"), "completed");
    let attempt = spans
        .iter()
        .find(|s| s.field("flock.run_id") == id && s.field("gen_ai.agent.name") == "obs_t_review")
        .expect("the review attempt");
    assert_eq!(attempt.field("otel.name"), "invoke_agent obs_t_review");
    assert_eq!(attempt.field("flock.outcome"), "completed");
    let request = spans
        .iter()
        .find(|s| s.parent == Some(attempt.seq) && s.name == "flock.model")
        .expect("the model request, a child of the attempt");
    assert_eq!(request.field("gen_ai.request.model"), "gpt-4.1-mini");
    assert_eq!(request.field("gen_ai.usage.input_tokens"), "120");
    assert_eq!(request.field("gen_ai.usage.output_tokens"), "30");
    let transient = spans
        .iter()
        .find(|s| {
            s.field("flock.run_id") == id
                && s.field("gen_ai.agent.name") == "obs_t_flaky"
                && s.field("flock.attempt") == "1"
        })
        .expect("the first obs_t_flaky attempt");
    assert_eq!(transient.field("error.type"), "Transient");
    assert_eq!(transient.field("flock.retry_delay_ms"), "10");
    assert_nothing_secret("obs_t_review");
}

// ---------------------------------------------------------------------------------------------
// Scraping.

/// `GET /metrics` over HTTP/1.1.
async fn scrape(addr: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8(response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    body.to_owned()
}

/// Samples of a Prometheus text exposition.
struct Metrics(Vec<(String, BTreeMap<String, String>, f64)>);

impl Metrics {
    fn parse(text: &str) -> Metrics {
        let mut samples = Vec::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let value: f64 = value.parse().unwrap();
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, labels.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .filter(|l| !l.is_empty())
                .map(|l| {
                    let (k, v) = l.split_once('=').unwrap();
                    (k.to_owned(), v.trim_matches('"').to_owned())
                })
                .collect();
            samples.push((name.to_owned(), labels, value));
        }
        Metrics(samples)
    }

    /// The sample `name` whose labels are exactly `labels` (0 when there is none).
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let wanted: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let found: Vec<f64> = self
            .0
            .iter()
            .filter(|(n, l, _)| n == name && *l == wanted)
            .map(|(_, _, v)| *v)
            .collect();
        assert!(found.len() <= 1, "{name} {labels:?} twice");
        found.first().copied().unwrap_or(0.0)
    }

    /// The sum of the samples `name` that have `labels` (and any others).
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).is_some_and(|x| x == v))
            })
            .map(|(_, _, v)| *v)
            .sum()
    }
}

fn uuid() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

// ---------------------------------------------------------------------------------------------
// Capturing spans: a layer of the test binary's global subscriber (see
// `conformance::worker_log`), recording flock's spans and events.

/// A span as recorded: its own sequence number (span ids are reused), its parent's, its fields.
#[derive(Debug, Clone)]
pub(super) struct Recorded {
    seq: u64,
    parent: Option<u64>,
    name: &'static str,
    fields: BTreeMap<String, String>,
}

impl Recorded {
    fn field(&self, name: &str) -> &str {
        self.fields.get(name).map_or("", String::as_str)
    }
}

static SPANS: Mutex<Vec<Recorded>> = Mutex::new(Vec::new());
static EVENTS: Mutex<Vec<Recorded>> = Mutex::new(Vec::new());
static SEQ: AtomicU64 = AtomicU64::new(1);

fn capture() {
    super::conformance::worker_log();
}

fn spans() -> Vec<Recorded> {
    SPANS.lock().unwrap().clone()
}

fn events() -> Vec<Recorded> {
    EVENTS.lock().unwrap().clone()
}

/// Neither the key nor (contents not being recorded) the prompt in any field of flock's spans
/// and events of `agent`'s attempts and requests, nor in the worker log.
fn assert_nothing_secret(agent: &str) {
    let mut seen = 0;
    for record in spans().iter().chain(events().iter()) {
        for (name, value) in &record.fields {
            assert!(!value.contains(KEY), "the API key in {name} of {record:?}");
        }
        if record.field("gen_ai.agent.name") != agent {
            continue;
        }
        seen += 1;
        for (name, value) in &record.fields {
            assert!(!value.contains(KEY), "the API key in {name} of {record:?}");
            assert!(
                !value.contains(SECRET_TOPIC) && !value.contains("Review the topic"),
                "the prompt in {name} of {record:?}"
            );
        }
    }
    assert!(seen >= 2, "spans of `{agent}` were recorded");
    let log =
        String::from_utf8_lossy(&super::conformance::worker_log().lock().unwrap()).into_owned();
    assert!(!log.contains(KEY) && !log.contains(SECRET_TOPIC));
}

/// The layer that records flock's spans and events.
pub(super) struct Capture;

struct Seq(u64);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.to_string());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), value.to_string());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), format!("{value:e}"));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Capture {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        let Some(span) = ctx.span(id) else { return };
        let seq = SEQ.fetch_add(1, Ordering::SeqCst);
        let parent = span
            .parent()
            .and_then(|p| p.extensions().get::<Seq>().map(|s| s.0));
        span.extensions_mut().insert(Seq(seq));
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        SPANS.lock().unwrap().push(Recorded {
            seq,
            parent,
            name: attrs.metadata().name(),
            fields,
        });
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: Context<'_, S>,
    ) {
        let Some(seq) = ctx
            .span(id)
            .and_then(|s| s.extensions().get::<Seq>().map(|s| s.0))
        else {
            return;
        };
        let mut spans = SPANS.lock().unwrap();
        if let Some(span) = spans.iter_mut().rev().find(|s| s.seq == seq) {
            values.record(&mut Fields(&mut span.fields));
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        let parent = ctx
            .event_span(event)
            .and_then(|s| s.extensions().get::<Seq>().map(|s| s.0));
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        EVENTS.lock().unwrap().push(Recorded {
            seq: 0,
            parent,
            name: event.metadata().name(),
            fields,
        });
    }
}
