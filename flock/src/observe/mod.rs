//! Observability: `tracing` spans and events named after the OpenTelemetry GenAI semantic
//! conventions, Prometheus metrics, and the price table that turns token usage into cost.
//!
//! Both executors report the same things, written once here:
//!
//! | span (`otel.name`)            | where                                  | attributes |
//! |-------------------------------|----------------------------------------|------------|
//! | `flow {name}` (`flock.flow`)  | a flow run (on Temporal: the workflow, not on replay) | `flock.flow.name`, `flock.run_id`, `flock.outcome`, `error.type` |
//! | `invoke_agent {name}` (`flock.agent`) | one attempt of an agent call   | `gen_ai.operation.name = "invoke_agent"`, `gen_ai.agent.name`, `flock.run_id`, `flock.attempt`, `flock.outcome`, `error.type` (the [`ErrorClass`]), `flock.retry_delay_ms` |
//! | `chat {model}` (`flock.model`) | one model request                     | `gen_ai.operation.name = "chat"`, `gen_ai.provider.name`, `gen_ai.request.model`, `gen_ai.response.model`, `gen_ai.usage.input_tokens`, `gen_ai.usage.output_tokens`, `gen_ai.agent.name`, `flock.cost_usd`, `error.type`; with `record_contents`, `gen_ai.input.messages` and `gen_ai.output.messages` |
//! | `execute_tool {name}` (`flock.tool`) | one tool call                   | `gen_ai.operation.name = "execute_tool"`, `gen_ai.tool.name`, `gen_ai.tool.call.id`, `error.type` |
//!
//! A failed attempt also logs a `WARN` event naming the agent, its class and the retry delay.
//! API keys are never recorded; prompt and answer texts only with
//! [`FlockBuilder::record_contents`](crate::FlockBuilder::record_contents)`(true)`.
//!
//! Metrics (enabled by [`serve_metrics`], [`FlockBuilder::metrics`](crate::FlockBuilder::metrics)
//! or [`enable_metrics`]; until then nothing is counted):
//!
//! * `flock_agent_attempts_total{agent,outcome="completed|failed|cancelled",error_class}`
//! * `flock_agent_duration_seconds{agent}` (histogram, per attempt)
//! * `flock_model_request_duration_seconds{model}` (histogram)
//! * `flock_tokens_total{agent,model,direction="input|output"}`
//! * `flock_cost_usd_total{agent,model}` (models in the price table)
//! * `flock_flows_total{flow,outcome="started|completed|failed|continued_as_new"}` (per run;
//!   each continue-as-new generation is a run)
//! * `flock_messages_dropped_total{flow,kind,name}`: messages a worker could not deliver (a
//!   signal sent past flock that the flow does not declare, or whose JSON does not fit)
//!
//! On Temporal a worker started while metrics are enabled also reports the SDK core's worker
//! metrics (`temporal_*`), served on the same endpoint.
//!
//! With the feature `otel`, `observe::otel` exports these spans, and on Temporal the SDK's own, to an
//! OTLP endpoint: one trace per run, from the client that starts it through the workflow to
//! each agent attempt and model request on whichever worker runs them.
//!
//! ```
//! use flock::observe::PriceTable;
//! use flock::usage::Usage;
//!
//! let prices = PriceTable::new().price("openai/gpt-4o-mini", 0.15, 0.60);
//! let usage = Usage { prompt_tokens: 2_000_000, completion_tokens: 1_000_000, ..Usage::default() };
//! assert_eq!(prices.cost("openai/gpt-4o-mini", &usage), Some(0.90));
//! assert_eq!(prices.cost("gpt-4o-mini", &usage), Some(0.90)); // the model part finds it too
//! assert_eq!(prices.cost("openai/gpt-4o", &usage), None);
//! ```

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use prometheus::{
    CounterVec, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts,
    Registry,
};
use tracing::Span;

use crate::error::{AgentError, Error, FlowError};
use crate::usage::Usage;

pub use prometheus;

#[cfg(feature = "otel")]
pub mod otel;

// ---------------------------------------------------------------------------------------------
// Cost: the price table is plain data beside usage (`usage`); here for the paths users know.

pub use crate::usage::{Price, PriceTable};

// ---------------------------------------------------------------------------------------------
// Metrics.

/// flock's Prometheus metrics, in their own registry (see the module docs for the names).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    attempts: IntCounterVec,
    agent_duration: HistogramVec,
    model_duration: HistogramVec,
    tokens: IntCounterVec,
    cost: CounterVec,
    flows: IntCounterVec,
    #[cfg_attr(not(feature = "temporal"), allow(dead_code))]
    dropped: IntCounterVec,
    #[cfg_attr(not(feature = "temporal"), allow(dead_code))]
    backlog: GaugeVec,
    #[cfg_attr(not(feature = "temporal"), allow(dead_code))]
    backlog_age: GaugeVec,
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// Seconds, from a millisecond to ten minutes: agents and model requests.
const BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// Turns metrics on (process-wide) and gives them, e.g. to add them to an endpoint of your own
/// with [`Metrics::encode`]. [`serve_metrics`] calls it.
pub fn enable_metrics() -> &'static Metrics {
    METRICS.get_or_init(Metrics::new)
}

/// The metrics, when they are on.
pub(crate) fn metrics() -> Option<&'static Metrics> {
    METRICS.get()
}

/// A `&'static str` by address: agent and flow names are the registry's constants.
type Name = (usize, usize);

fn name(name: &'static str) -> Name {
    (name.as_ptr() as usize, name.len())
}

/// The label sets every run counts, resolved once per thread: `with_label_values` hashes each
/// label and takes a lock on every call, which was most of what metrics added to a local hop.
#[derive(Default)]
struct Handles {
    /// Per agent: its completed attempts and its duration histogram.
    agents: HashMap<Name, (IntCounter, Histogram)>,
    /// Per flow and outcome.
    flows: HashMap<(Name, &'static str), IntCounter>,
}

thread_local! {
    static HANDLES: RefCell<Handles> = RefCell::default();
}

impl Metrics {
    fn agent(&self, agent: &'static str) -> (IntCounter, Histogram) {
        HANDLES.with_borrow_mut(|handles| {
            handles
                .agents
                .entry(name(agent))
                .or_insert_with(|| {
                    (
                        self.attempts.with_label_values(&[agent, "completed", ""]),
                        self.agent_duration.with_label_values(&[agent]),
                    )
                })
                .clone()
        })
    }

    fn flow(&self, flow: &'static str, outcome: &'static str) -> IntCounter {
        HANDLES.with_borrow_mut(|handles| {
            handles
                .flows
                .entry((name(flow), outcome))
                .or_insert_with(|| self.flows.with_label_values(&[flow, outcome]))
                .clone()
        })
    }
}

impl Metrics {
    fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let counter = IntCounterVec::new(Opts::new(name, help), labels)
                .expect("a valid metric definition");
            registry
                .register(Box::new(counter.clone()))
                .expect("registered once");
            counter
        };
        let histogram = |name: &str, help: &str, labels: &[&str]| {
            let histogram = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(BUCKETS.to_vec()),
                labels,
            )
            .expect("a valid metric definition");
            registry
                .register(Box::new(histogram.clone()))
                .expect("registered once");
            histogram
        };
        let attempts = counter(
            "flock_agent_attempts_total",
            "Agent attempts, by outcome and error class",
            &["agent", "outcome", "error_class"],
        );
        let agent_duration = histogram(
            "flock_agent_duration_seconds",
            "Duration of agent attempts",
            &["agent"],
        );
        let model_duration = histogram(
            "flock_model_request_duration_seconds",
            "Duration of model requests",
            &["model"],
        );
        let tokens = counter(
            "flock_tokens_total",
            "Model tokens, by direction (input: prompt, output: completion)",
            &["agent", "model", "direction"],
        );
        let flows = counter(
            "flock_flows_total",
            "Flow runs started and how they ended",
            &["flow", "outcome"],
        );
        let dropped = counter(
            "flock_messages_dropped_total",
            "Messages a worker could not deliver to a flow (undeclared, or JSON that does not fit), by flow, kind and name",
            &["flow", "kind", "name"],
        );
        let cost = CounterVec::new(
            Opts::new(
                "flock_cost_usd_total",
                "Cost of model tokens in US dollars, from the price table",
            ),
            &["agent", "model"],
        )
        .expect("a valid metric definition");
        registry
            .register(Box::new(cost.clone()))
            .expect("registered once");
        let gauge = |name: &str, help: &str| {
            let gauge = GaugeVec::new(Opts::new(name, help), &["queue", "tasks"])
                .expect("a valid metric definition");
            registry
                .register(Box::new(gauge.clone()))
                .expect("registered once");
            gauge
        };
        let backlog = gauge(
            "flock_task_queue_backlog",
            "Tasks waiting in the worker's task queue (Temporal's approximate backlog count), by kind: flows, agents",
        );
        let backlog_age = gauge(
            "flock_task_queue_backlog_age_seconds",
            "How long the oldest waiting task of the worker's task queue has waited",
        );
        Metrics {
            backlog,
            backlog_age,
            registry,
            attempts,
            agent_duration,
            model_duration,
            tokens,
            cost,
            flows,
            dropped,
        }
    }

    /// The registry (add your own metrics to it to serve them on the same endpoint).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The metrics in the Prometheus text format (flock's, and the Temporal worker's when a
    /// worker reports them).
    pub async fn encode(&self) -> String {
        let mut text = String::new();
        let encoder = prometheus::TextEncoder::new();
        if let Err(e) = encoder.encode_utf8(&self.registry.gather(), &mut text) {
            tracing::warn!("cannot encode flock's metrics: {e}");
        }
        if let Some(core) = CORE_METRICS.get() {
            text.push_str(&scrape(*core).await.unwrap_or_else(|e| {
                format!("# the Temporal worker's metrics at {core} cannot be read: {e}\n")
            }));
        }
        text
    }
}

/// Where the Temporal SDK core serves its worker metrics in this process (a loopback port of its
/// own exporter, read at each scrape of flock's endpoint).
static CORE_METRICS: OnceLock<SocketAddr> = OnceLock::new();

#[cfg_attr(not(feature = "temporal"), allow(dead_code))]
pub(crate) fn core_metrics_at(addr: SocketAddr) {
    let _ = CORE_METRICS.set(addr);
}

/// Reads `/metrics` from the SDK core's exporter.
async fn scrape(addr: SocketAddr) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let response = String::from_utf8_lossy(&response);
    match response.split_once("\r\n\r\n") {
        Some((head, body))
            if head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200") =>
        {
            Ok(body.to_owned())
        }
        _ => Err(std::io::Error::other("not a 200 response")),
    }
}

/// A running metrics endpoint: `GET /metrics` on [`addr`](Self::addr). It stops when dropped.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    task: tokio::task::AbortHandle,
}

impl MetricsServer {
    /// The address it listens on (with the port the system chose for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Turns metrics on and serves them on `addr` (`host:port`; port 0 picks a free one) at
/// `/metrics`, in the Prometheus text format. Call it inside a Tokio runtime, before the
/// `Flock` whose worker's metrics it should serve is built (or use
/// [`FlockBuilder::metrics`](crate::FlockBuilder::metrics), which does that).
///
/// Errors ([`Error::Config`], naming the address): `addr` is not `host:port` with an IP address,
/// or it cannot be listened on (in use, not this machine's).
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let server = flock::observe::serve_metrics("127.0.0.1:0").unwrap();
/// assert_ne!(server.addr().port(), 0);
/// let error = flock::observe::serve_metrics("localhost:99999").unwrap_err();
/// assert!(error.to_string().contains("`localhost:99999`"), "{error}");
/// # });
/// ```
pub fn serve_metrics(addr: &str) -> Result<MetricsServer, Error> {
    let parsed: SocketAddr = addr.parse().map_err(|e| {
        Error::Config(format!(
            "metrics address `{addr}`: {e}; give an IP address and port, e.g. `0.0.0.0:9464` or `127.0.0.1:0`"
        ))
    })?;
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
        Error::Config(format!(
            "metrics address `{addr}`: serving metrics needs a Tokio runtime; call it inside one"
        ))
    })?;
    let listener = std::net::TcpListener::bind(parsed)
        .and_then(|listener| listener.set_nonblocking(true).map(|()| listener))
        .map_err(|e| Error::Config(format!("metrics address `{addr}`: cannot listen: {e}")))?;
    let bound = listener
        .local_addr()
        .map_err(|e| Error::Config(format!("metrics address `{addr}`: {e}")))?;
    let _guard = runtime.enter();
    let listener = tokio::net::TcpListener::from_std(listener)
        .map_err(|e| Error::Config(format!("metrics address `{addr}`: cannot listen: {e}")))?;
    let metrics = enable_metrics();
    let task = runtime.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| async move {
                    Ok::<_, std::convert::Infallible>(respond(metrics, request).await)
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    Ok(MetricsServer {
        addr: bound,
        task: task.abort_handle(),
    })
}

async fn respond(
    metrics: &'static Metrics,
    request: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<http_body_util::Full<bytes::Bytes>> {
    let (status, content_type, body) = if request.uri().path() != "/metrics" {
        (
            404,
            "text/plain",
            "not found: metrics are at /metrics\n".to_owned(),
        )
    } else if request.method() != hyper::Method::GET {
        (405, "text/plain", "GET /metrics\n".to_owned())
    } else {
        (200, "text/plain; version=0.0.4", metrics.encode().await)
    };
    let mut response = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(body)));
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
    if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

// ---------------------------------------------------------------------------------------------
// What the executors and the model layer report.

/// The span of one flow run.
pub(crate) fn flow_span(flow: &'static str, run_id: &str) -> Span {
    tracing::info_span!(
        "flock.flow",
        otel.name = %format_args!("flow {flow}"),
        flock.flow.name = flow,
        flock.run_id = run_id,
        flock.outcome = tracing::field::Empty,
        error.type = tracing::field::Empty,
    )
}

/// A flow run starts.
/// A message a worker could not deliver to run `run_id` of `flow` (a signal sent past flock:
/// undeclared, or JSON that does not fit): logged at error level and counted in
/// `flock_messages_dropped_total`. The history keeps the message itself, so the run's record
/// lists it too.
#[cfg_attr(not(feature = "temporal"), allow(dead_code))]
pub(crate) fn message_dropped(flow: &'static str, run_id: &str, kind: &str, name: &str, why: &str) {
    tracing::error!(
        flow,
        run_id,
        kind,
        name,
        "{kind} `{name}` not delivered to run `{run_id}` of `{flow}`: {why}"
    );
    if let Some(metrics) = metrics() {
        metrics.dropped.with_label_values(&[flow, kind, name]).inc();
    }
}

/// The backlog of a worker's task queue, read every few seconds while it serves with metrics on.
#[cfg(feature = "temporal")]
pub(crate) fn queue_backlog(stats: &crate::run::QueueStats) {
    if let Some(metrics) = metrics() {
        for (tasks, of) in [("flows", &stats.flows), ("agents", &stats.agents)] {
            let labels = [stats.queue.as_str(), tasks];
            metrics
                .backlog
                .with_label_values(&labels)
                .set(of.backlog as f64);
            metrics
                .backlog_age
                .with_label_values(&labels)
                .set(of.backlog_age_secs);
        }
    }
}

pub(crate) fn flow_started(flow: &'static str) {
    if let Some(m) = metrics() {
        m.flow(flow, "started").inc();
    }
}

/// A flow run ended (an `Err` of [`FlowError::ContinueAsNew`] continues it as a new run).
pub(crate) fn flow_finished<T>(span: &Span, flow: &'static str, result: &Result<T, FlowError>) {
    let outcome = match result {
        Ok(_) => "completed",
        Err(FlowError::ContinueAsNew { .. }) => "continued_as_new",
        Err(_) => "failed",
    };
    span.record("flock.outcome", outcome);
    if let Err(error) = result
        && outcome == "failed"
    {
        span.record("error.type", flow_error_type(error));
    }
    if let Some(m) = metrics() {
        m.flow(flow, outcome).inc();
    }
}

fn flow_error_type(error: &FlowError) -> &'static str {
    match error {
        FlowError::Agent { cause, .. } => cause.class().name(),
        FlowError::Cancelled { .. } => "Cancelled",
        FlowError::ChildFlow { .. } => "ChildFlow",
        _ => "FlowError",
    }
}

/// The span of one attempt of an agent call.
pub(crate) fn attempt_span(agent: &'static str, run_id: &str, attempt: u32) -> Span {
    tracing::info_span!(
        "flock.agent",
        otel.name = %format_args!("invoke_agent {agent}"),
        gen_ai.operation.name = "invoke_agent",
        gen_ai.agent.name = agent,
        flock.run_id = run_id,
        flock.attempt = attempt,
        flock.outcome = tracing::field::Empty,
        error.type = tracing::field::Empty,
        flock.retry_delay_ms = tracing::field::Empty,
    )
}

/// How an attempt ended.
pub(crate) enum AttemptOutcome<'a> {
    Completed,
    /// Failed; retried after the delay, or not (`None`) when the policy gives up.
    Failed(&'a AgentError, Option<Duration>),
    /// Cancelled (on Temporal: the server cancelled the activity).
    #[cfg_attr(not(feature = "temporal"), allow(dead_code))]
    Cancelled,
}

/// An attempt ended after `duration`.
pub(crate) fn attempt_finished(
    span: &Span,
    agent: &'static str,
    attempt: u32,
    outcome: AttemptOutcome<'_>,
    duration: Duration,
) {
    let (label, class) = match &outcome {
        AttemptOutcome::Completed => ("completed", ""),
        AttemptOutcome::Failed(error, _) => ("failed", error.class().name()),
        AttemptOutcome::Cancelled => ("cancelled", "Cancelled"),
    };
    span.record("flock.outcome", label);
    if !class.is_empty() {
        span.record("error.type", class);
    }
    if let AttemptOutcome::Failed(error, retry) = &outcome {
        match retry {
            Some(delay) => {
                span.record("flock.retry_delay_ms", delay.as_millis() as u64);
                tracing::warn!(
                    parent: span,
                    agent,
                    attempt,
                    error.type = class,
                    flock.retry_delay_ms = delay.as_millis() as u64,
                    "agent `{agent}` attempt {attempt} failed ({class}): {}; retrying in {delay:?}",
                    error.message()
                );
            }
            None => tracing::warn!(
                parent: span,
                agent,
                attempt,
                error.type = class,
                "agent `{agent}` attempt {attempt} failed ({class}): {}; not retried",
                error.message()
            ),
        }
    }
    if let Some(m) = metrics() {
        let (completed, durations) = m.agent(agent);
        match outcome {
            AttemptOutcome::Completed => completed.inc(),
            _ => m.attempts.with_label_values(&[agent, label, class]).inc(),
        }
        durations.observe(duration.as_secs_f64());
    }
}

/// The span of one model request of agent `agent` to model `name` (`provider/model`).
pub(crate) fn model_span(agent: &str, name: &str, model: &str) -> Span {
    let provider = name.split_once('/').map_or(name, |(provider, _)| provider);
    tracing::info_span!(
        "flock.model",
        otel.name = %format_args!("chat {model}"),
        gen_ai.operation.name = "chat",
        gen_ai.provider.name = provider,
        gen_ai.request.model = model,
        gen_ai.response.model = tracing::field::Empty,
        gen_ai.usage.input_tokens = tracing::field::Empty,
        gen_ai.usage.output_tokens = tracing::field::Empty,
        gen_ai.agent.name = agent,
        flock.cost_usd = tracing::field::Empty,
        error.type = tracing::field::Empty,
        gen_ai.input.messages = tracing::field::Empty,
        gen_ai.output.messages = tracing::field::Empty,
    )
}

/// What a model answered, as its request's span and the metrics record it.
pub(crate) struct Answered<'a> {
    /// The tokens it used.
    pub(crate) usage: Usage,
    /// The model that answered, as the provider names it.
    pub(crate) model: Option<&'a str>,
    /// The answer's text (recorded only with `record_contents`).
    pub(crate) content: &'a str,
}

/// A model request ended after `duration`; gives the usage with its cost.
pub(crate) fn model_finished(
    span: &Span,
    agent: &str,
    name: &str,
    prices: &PriceTable,
    contents: bool,
    result: Result<Answered<'_>, &AgentError>,
    duration: Duration,
) -> Usage {
    if let Some(m) = metrics() {
        m.model_duration
            .with_label_values(&[name])
            .observe(duration.as_secs_f64());
    }
    let response = match result {
        Ok(response) => response,
        Err(error) => {
            span.record("error.type", error.class().name());
            return Usage::default();
        }
    };
    let mut usage = Usage {
        requests: 1,
        ..response.usage
    };
    let cost = prices.cost(name, &usage);
    usage.cost_usd = cost.unwrap_or(0.0);
    span.record("gen_ai.usage.input_tokens", usage.prompt_tokens);
    span.record("gen_ai.usage.output_tokens", usage.completion_tokens);
    if let Some(model) = response.model {
        span.record("gen_ai.response.model", model);
    }
    if let Some(cost) = cost {
        span.record("flock.cost_usd", cost);
    }
    if contents {
        span.record(
            "gen_ai.output.messages",
            tracing::field::display(response.content),
        );
    }
    if let Some(m) = metrics() {
        m.tokens
            .with_label_values(&[agent, name, "input"])
            .inc_by(usage.prompt_tokens);
        m.tokens
            .with_label_values(&[agent, name, "output"])
            .inc_by(usage.completion_tokens);
        if let Some(cost) = cost {
            m.cost.with_label_values(&[agent, name]).inc_by(cost);
        }
    }
    usage
}

/// The span of one tool call.
pub(crate) fn tool_span(tool: &str, call_id: &str) -> Span {
    tracing::info_span!(
        "flock.tool",
        otel.name = %format_args!("execute_tool {tool}"),
        gen_ai.operation.name = "execute_tool",
        gen_ai.tool.name = tool,
        gen_ai.tool.call.id = call_id,
        error.type = tracing::field::Empty,
    )
}

/// Makes ring (the rustls provider flock's own HTTPS uses) the process's default rustls provider,
/// unless one is installed already. reqwest 0.13 built with `rustls-no-provider` (what rmcp's
/// HTTP client is built with under flock's `mcp` feature, and so every reqwest 0.13 client in the
/// binary) panics when it builds a client without a default provider.
#[cfg(any(feature = "mcp", feature = "otel"))]
pub(crate) fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_turn_usage_into_cost() {
        let prices = PriceTable::new()
            .price("openai/gpt-4o", 2.5, 10.0)
            .price("llama3.1", 0.0, 0.0);
        let usage = Usage {
            prompt_tokens: 1_000,
            completion_tokens: 500,
            ..Usage::default()
        };
        assert_eq!(prices.cost("openai/gpt-4o", &usage), Some(0.0075));
        assert_eq!(prices.cost("ollama/llama3.1", &usage), Some(0.0));
        assert_eq!(prices.cost("openai/gpt-4o-mini", &usage), None);
        assert!(prices.check().is_ok());
    }

    #[test]
    fn bad_prices_are_refused_naming_the_model() {
        let error = PriceTable::new()
            .price("openai/gpt-4o", -1.0, 10.0)
            .check()
            .unwrap_err();
        // (a `Flock` refuses to build with it: `Error::Config` with this message)
        assert_eq!(
            error,
            "price table: the input price of `openai/gpt-4o` is -1; prices are US dollars per million tokens, finite and not negative"
        );
        let error = PriceTable::new()
            .price("m", 1.0, f64::NAN)
            .check()
            .unwrap_err();
        assert!(
            error.to_string().contains("the output price of `m` is NaN"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn bad_metrics_addresses_are_clear_errors() {
        let error = serve_metrics("not an address").unwrap_err();
        assert!(
            error
                .to_string()
                .contains("metrics address `not an address`: invalid socket address syntax; give an IP address and port"),
            "{error}"
        );
        let taken = serve_metrics("127.0.0.1:0").unwrap();
        let again = taken.addr().to_string();
        let error = serve_metrics(&again).unwrap_err();
        assert!(
            error
                .to_string()
                .contains(&format!("metrics address `{again}`: cannot listen: ")),
            "{error}"
        );
    }

    #[test]
    fn serving_metrics_outside_a_runtime_says_so() {
        let error = serve_metrics("127.0.0.1:0").unwrap_err();
        assert!(
            error.to_string().contains("needs a Tokio runtime"),
            "{error}"
        );
    }
}
