//! OpenTelemetry export across the client/worker boundary: a run started by a client in this
//! process (its spans exported by `flock::observe::otel`) and run by a `flock_cli worker` in
//! another (configured by the `OTEL_*` environment alone), both exporting to an OTLP/HTTP
//! receiver in this test that decodes the `ExportTraceServiceRequest`s with
//! `opentelemetry-proto`. The agent's model is an OpenAI-protocol server in this test.
//!
//! Asserted: one trace per run; each span's parent is the span before it in
//! `StartWorkflow` (client) → `RunWorkflow` → `flow` → `StartActivity` → `RunActivity` →
//! `invoke_agent` → `chat` (worker), compared by span id; the GenAI attributes; neither the API
//! key nor the prompt anywhere in what was exported; on a worker that keeps no cache, nothing
//! exported twice. Bad input: a collector that is not listening (over HTTP/protobuf and gRPC)
//! costs the run nothing, the worker logs the failed export and still stops promptly; bad
//! `OTEL_*` values stop the worker with a message naming the variable.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flock::observe::otel::Otel;
use flock::prelude::*;
use flock_tests::otel::{OtelTopic, otel_flow};
use http_body_util::BodyExt;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value::Value};
use prost::Message;

use super::model::server::{FakeOpenAi, answer};

const BIN: &str = env!("CARGO_BIN_EXE_flock_cli");

/// The API key the worker calls the model with: it must appear nowhere in what is exported.
const KEY: &str = "sk-otel-test-key-9a8b7c";
/// A phrase only in the prompt (the flow's input): contents are not recorded by default.
const SECRET_TOPIC: &str = "the unannounced acquisition of Initech";

// ---------------------------------------------------------------------------------------------
// The OTLP/HTTP receiver.

/// One span as exported, with its resource's `service.name`.
#[derive(Debug, Clone)]
struct Exported {
    service: String,
    name: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent_span_id: Vec<u8>,
    attributes: BTreeMap<String, String>,
}

impl Exported {
    fn attr(&self, name: &str) -> &str {
        self.attributes.get(name).map_or("", String::as_str)
    }
}

/// `POST /v1/traces` with `application/x-protobuf` bodies, as the OTLP/HTTP spec has it.
struct Receiver {
    url: String,
    /// Each request's body, as received.
    bodies: Arc<Mutex<Vec<Vec<u8>>>>,
    /// Each request's content type.
    content_types: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let content_types = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let bodies = bodies.clone();
            let content_types = content_types.clone();
            async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let bodies = bodies.clone();
                    let content_types = content_types.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |request| {
                            let bodies = bodies.clone();
                            let content_types = content_types.clone();
                            async move {
                                Ok::<_, std::convert::Infallible>(
                                    receive(request, &bodies, &content_types).await,
                                )
                            }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                            .await;
                    });
                }
            }
        });
        Receiver {
            url,
            bodies,
            content_types,
            task,
        }
    }

    /// Every span received so far, decoded.
    fn spans(&self) -> Vec<Exported> {
        let mut spans = Vec::new();
        for body in self.bodies.lock().unwrap().iter() {
            let request = ExportTraceServiceRequest::decode(body.as_slice())
                .expect("the receiver keeps only bodies that decoded");
            for resource_spans in request.resource_spans {
                let service = resource_spans
                    .resource
                    .as_ref()
                    .and_then(|r| attributes(&r.attributes).remove("service.name"))
                    .unwrap_or_default();
                for scope_spans in resource_spans.scope_spans {
                    for span in scope_spans.spans {
                        spans.push(Exported {
                            service: service.clone(),
                            name: span.name,
                            trace_id: span.trace_id,
                            span_id: span.span_id,
                            parent_span_id: span.parent_span_id,
                            attributes: attributes(&span.attributes),
                        });
                    }
                }
            }
        }
        spans
    }

    /// Every byte received (the protobuf encoding keeps strings as they are).
    fn raw(&self) -> Vec<u8> {
        self.bodies.lock().unwrap().concat()
    }

    /// Waits until `done` holds of the spans received.
    async fn wait_for(&self, what: &str, done: impl Fn(&[Exported]) -> bool) -> Vec<Exported> {
        let started = Instant::now();
        loop {
            let spans = self.spans();
            if done(&spans) {
                return spans;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{what}: the receiver has {:#?}",
                spans
                    .iter()
                    .map(|s| (&s.service, &s.name))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive(
    request: hyper::Request<hyper::body::Incoming>,
    bodies: &Mutex<Vec<Vec<u8>>>,
    content_types: &Mutex<Vec<String>>,
) -> hyper::Response<http_body_util::Full<bytes::Bytes>> {
    let respond = |status: u16, body: Vec<u8>| {
        let mut response =
            hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(body)));
        *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
        response.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/x-protobuf"),
        );
        response
    };
    if request.method() != hyper::Method::POST || request.uri().path() != "/v1/traces" {
        return respond(404, Vec::new());
    }
    let content_type = request
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let Ok(body) = request.into_body().collect().await else {
        return respond(400, Vec::new());
    };
    let body = body.to_bytes().to_vec();
    if ExportTraceServiceRequest::decode(body.as_slice()).is_err() {
        return respond(400, Vec::new());
    }
    content_types.lock().unwrap().push(content_type);
    bodies.lock().unwrap().push(body);
    respond(200, ExportTraceServiceResponse::default().encode_to_vec())
}

/// Attributes as text (strings as they are, numbers and booleans written out).
fn attributes(attributes: &[KeyValue]) -> BTreeMap<String, String> {
    attributes
        .iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(s)) => s.clone(),
                Some(Value::IntValue(i)) => i.to_string(),
                Some(Value::DoubleValue(d)) => d.to_string(),
                Some(Value::BoolValue(b)) => b.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The worker process.

/// `flock_cli --model openai/gpt-4o-mini worker ARGS` on `queue`, with these extra environment
/// variables, its model the OpenAI-protocol server at `model_url`.
fn worker(queue: &str, model_url: &str, args: &[&str], env: &[(&str, &str)]) -> Child {
    let mut command = Command::new(BIN);
    command
        .args([
            "--model",
            "openai/gpt-4o-mini",
            "worker",
            "--grace-period",
            "5s",
        ])
        .args(args)
        .env("TEMPORAL_ADDRESS", super::temporal::server())
        .env("FLOCK_TASK_QUEUE", queue)
        .env("OPENAI_API_KEY", KEY)
        .env("OPENAI_BASE_URL", model_url)
        .env_remove("FLOCK_FORCE_MODEL")
        .env_remove("TEMPORAL_NAMESPACE")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for var in [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_TRACES_EXPORTER",
        "OTEL_SDK_DISABLED",
        "OTEL_SERVICE_NAME",
        "OTEL_TRACES_SAMPLER",
    ] {
        command.env_remove(var);
    }
    command.envs(env.iter().copied());
    command.spawn().expect("the flock_cli worker starts")
}

/// SIGTERM, then the exit code, the log and how long it took to exit.
fn stop(child: Child) -> (i32, String, Duration) {
    let started = Instant::now();
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let output = child.wait_with_output().expect("the worker ends");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
        started.elapsed(),
    )
}

/// A client in this process, running no worker.
async fn client(queue: &str) -> Flock {
    super::temporal::client_only_flock(queue).await
}

fn topic() -> OtelTopic {
    OtelTopic {
        topic: SECRET_TOPIC.into(),
    }
}

fn run_id(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("otel-{what}-{nanos}")
}

// ---------------------------------------------------------------------------------------------
// The tests.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_is_one_trace_from_the_client_through_the_worker_to_the_model_request() {
    let receiver = Receiver::start().await;
    let model = FakeOpenAi::start(vec![
        answer(r#"{"verdict":"fine"}"#, 120, 30),
        answer(r#"{"verdict":"fine"}"#, 120, 30),
    ])
    .await;
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url.as_str()),
        ("OTEL_SERVICE_NAME", "otel-test-worker"),
    ];
    // A worker that keeps its runs cached, and one that keeps none: it replays each run's
    // history at each of its workflow tasks, which must export nothing twice.
    let cached = worker("otel-trace", &model.base_url(), &[], &env);
    let replaying = worker(
        "otel-trace-replay",
        &model.base_url(),
        &["--max-cached-flows", "0"],
        &env,
    );

    // The client: this process's global tracer provider, as long as the guard lives.
    let otel = Otel::from_env()
        .endpoint(&receiver.url)
        .service_name("otel-test-client")
        .install()
        .expect("the client's export");
    let ids = [run_id("trace"), run_id("replay")];
    for (queue, id) in ["otel-trace", "otel-trace-replay"].into_iter().zip(&ids) {
        let verdict = client(queue)
            .await
            .run_flow(otel_flow, topic())
            .id(id.clone())
            .await
            .expect("the run completes");
        assert_eq!(verdict.verdict, "fine");
    }
    otel.shutdown().expect("the client's spans are sent");
    for worker in [cached, replaying] {
        let (code, log, _) = stop(worker);
        assert_eq!(code, 0, "the worker drains and exits: {log}");
    }
    // the model was called with the key, so its absence below means something
    let requests = model.received();
    assert_eq!(requests.len(), 2);
    assert!(
        requests[0].headers.iter().any(|(_, v)| v.contains(KEY)),
        "{:?}",
        requests[0].headers
    );

    let spans = receiver
        .wait_for("the runs' spans from both processes", |spans| {
            spans
                .iter()
                .filter(|s| s.name == "StartWorkflow:otel_flow")
                .count()
                >= 2
                && spans
                    .iter()
                    .filter(|s| s.name == "chat gpt-4o-mini")
                    .count()
                    >= 2
        })
        .await;
    assert!(
        receiver
            .content_types
            .lock()
            .unwrap()
            .iter()
            .all(|c| c == "application/x-protobuf"),
        "OTLP/HTTP with protobuf bodies"
    );
    assert_one_trace(&spans, &ids[0], false);
    assert_one_trace(&spans, &ids[1], true);

    // Neither the key nor the prompt in anything exported: attributes, events, resources.
    let raw = receiver.raw();
    for (secret, what) in [(KEY, "the API key"), (SECRET_TOPIC, "the prompt")] {
        assert!(
            !contains(&raw, secret.as_bytes()),
            "{what} is in the exported spans"
        );
    }
    assert!(
        !contains(&raw, b"Review the topic"),
        "the agent's instructions"
    );
    assert!(
        contains(&raw, ids[0].as_bytes()),
        "the search itself finds text"
    );
}

/// Run `id` is one trace, rooted in the client's start, each span's parent the one before it,
/// each span once. `evicted`: the worker kept no cache, so the run's second workflow task
/// replayed the first.
fn assert_one_trace(spans: &[Exported], id: &str, evicted: bool) {
    let start = one(spans, "the client's start", |s| {
        s.name == "StartWorkflow:otel_flow" && s.attr("temporalWorkflowID") == id
    });
    assert_eq!(start.service, "otel-test-client");
    assert!(start.parent_span_id.is_empty(), "{start:?}");
    let trace: Vec<&Exported> = spans
        .iter()
        .filter(|s| s.trace_id == start.trace_id)
        .collect();

    // Each span's parent is the one before it, by span id: the chain breaks if the context is
    // not carried across the client/worker boundary, from the workflow to the activity, or from
    // the SDK's spans to flock's.
    let child_of = |parent: &Exported, what: &str, name: &str| -> Exported {
        let found: Vec<&&Exported> = trace
            .iter()
            .filter(|s| s.name == name && s.parent_span_id == parent.span_id)
            .collect();
        assert_eq!(
            found.len(),
            1,
            "{id}, {what}: one `{name}` span whose parent is `{}`; the trace has {:#?}",
            parent.name,
            trace
                .iter()
                .map(|s| (&s.name, hex(&s.span_id), hex(&s.parent_span_id)))
                .collect::<Vec<_>>()
        );
        (*found[0]).clone()
    };
    let flow = if evicted {
        // The SDK (1.1.1) never ends the workflow span of a run evicted from the cache before
        // it completes: it is not exported at all, and what the first task started is not
        // started again by the replay.
        let workflows = trace
            .iter()
            .filter(|s| s.name == "RunWorkflow:otel_flow")
            .count();
        assert!(workflows <= 1, "{id}: the workflow span once at most");
        let flow = one(spans, "flock's flow span, once", |s| {
            s.name == "flow otel_flow" && s.attr("flock.run_id") == id
        });
        assert_eq!(flow.trace_id, start.trace_id);
        assert!(!flow.parent_span_id.is_empty());
        // the task that ended the run replayed the one that started it (no cache): the span
        // that one started ended when it was evicted, before the outcome was known
        assert_eq!(flow.attr("flock.outcome"), "", "the run was replayed");
        flow.clone()
    } else {
        let workflow = child_of(start, "the workflow", "RunWorkflow:otel_flow");
        assert_eq!(workflow.service, "otel-test-worker");
        let flow = child_of(&workflow, "flock's flow span", "flow otel_flow");
        assert_eq!(flow.attr("flock.outcome"), "completed");
        flow
    };
    assert_eq!(flow.service, "otel-test-worker");
    assert_eq!(flow.attr("flock.flow.name"), "otel_flow");
    assert_eq!(flow.attr("flock.run_id"), id);
    let schedule = child_of(&flow, "the agent call", "StartActivity:otel_review");
    let activity = child_of(&schedule, "the activity", "RunActivity:otel_review");
    let attempt = child_of(&activity, "the agent attempt", "invoke_agent otel_review");
    assert_eq!(attempt.service, "otel-test-worker");
    assert_eq!(attempt.attr("gen_ai.operation.name"), "invoke_agent");
    assert_eq!(attempt.attr("gen_ai.agent.name"), "otel_review");
    assert_eq!(attempt.attr("flock.run_id"), id);
    assert_eq!(attempt.attr("flock.attempt"), "1");
    assert_eq!(attempt.attr("flock.outcome"), "completed");
    let chat = child_of(&attempt, "the model request", "chat gpt-4o-mini");
    assert_eq!(chat.attr("gen_ai.operation.name"), "chat");
    assert_eq!(chat.attr("gen_ai.provider.name"), "openai");
    assert_eq!(chat.attr("gen_ai.request.model"), "gpt-4o-mini");
    assert_eq!(chat.attr("gen_ai.response.model"), "gpt-4o-mini-2024-07-18");
    assert_eq!(chat.attr("gen_ai.usage.input_tokens"), "120");
    assert_eq!(chat.attr("gen_ai.usage.output_tokens"), "30");
    assert_eq!(chat.attr("gen_ai.input.messages"), "");
    assert_eq!(chat.attr("gen_ai.output.messages"), "");

    // One trace per run, nothing twice: every span of the run, on either side, is in the
    // client's trace, and each of the seven once.
    let of_run: Vec<&Exported> = spans
        .iter()
        .filter(|s| s.attr("temporalWorkflowID") == id || s.attr("flock.run_id") == id)
        .collect();
    for span in &of_run {
        assert_eq!(
            span.trace_id, start.trace_id,
            "{span:#?} is in another trace"
        );
    }
    let mut names: Vec<&str> = of_run.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    let mut expected = vec![
        "RunActivity:otel_review",
        "RunWorkflow:otel_flow",
        "StartActivity:otel_review",
        "StartWorkflow:otel_flow",
        "flow otel_flow",
        "invoke_agent otel_review",
    ];
    if evicted {
        expected.retain(|name| names.contains(name) || *name != "RunWorkflow:otel_flow");
    }
    assert_eq!(
        names, expected,
        "{id}: each span of the run once (the model request has no run id)"
    );
    assert_eq!(
        trace
            .iter()
            .filter(|s| s.name == "chat gpt-4o-mini")
            .count(),
        1,
        "{id}: one model request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_is_not_listening_costs_the_run_nothing() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let model = FakeOpenAi::start(vec![
        answer(r#"{"verdict":"fine"}"#, 10, 5),
        answer(r#"{"verdict":"fine"}"#, 10, 5),
    ])
    .await;
    // over both transports: HTTP/protobuf and gRPC (tonic, whose export runs on the worker's
    // Tokio runtime and must not block its shutdown)
    for (protocol, failed) in [
        ("http/protobuf", "HTTP export failed"),
        ("grpc", "TonicTracesClient export failed"),
    ] {
        let queue = format!("otel-closed-port-{}", protocol.replace('/', "-"));
        let worker = worker(
            &queue,
            &model.base_url(),
            &[],
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
                // export at once, while the worker runs
                ("OTEL_BSP_SCHEDULE_DELAY", "50"),
            ],
        );
        let flock = client(&queue).await;
        let started = Instant::now();
        let verdict = tokio::time::timeout(
            Duration::from_secs(60),
            flock.run_flow(otel_flow, topic()).id(run_id("closed")),
        )
        .await
        .expect("the run does not wait for the collector")
        .expect("the run completes");
        assert_eq!(verdict.verdict, "fine");
        assert!(started.elapsed() < Duration::from_secs(30), "{protocol}");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (code, log, took) = stop(worker);
        assert_eq!(code, 0, "{protocol}: the worker drains and exits: {log}");
        assert!(
            took < Duration::from_secs(15),
            "{protocol}: the last flush does not hang: {took:?}"
        );
        // the failed export is in the log, not silent
        assert!(
            log.contains("BatchSpanProcessor.ExportError") && log.contains(failed),
            "{protocol}: {log}"
        );
        assert!(!log.contains(KEY) && !log.contains(SECRET_TOPIC), "{log}");
    }
}

#[test]
fn bad_otel_settings_stop_the_worker_naming_the_variable() {
    let cases = [
        (
            vec![
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon"),
            ],
            "error: flock configuration error: OTEL_EXPORTER_OTLP_PROTOCOL=`carrier-pigeon` is not an OTLP protocol; use `http/protobuf` or `grpc`",
        ),
        (
            vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")],
            "error: flock configuration error: OTEL_EXPORTER_OTLP_ENDPOINT=`collector:4318` is not an OTLP endpoint URL; give e.g. `http://localhost:4318` (http/protobuf) or `http://localhost:4317` (grpc)",
        ),
        (
            vec![("OTEL_TRACES_EXPORTER", "zipkin")],
            "error: flock configuration error: OTEL_TRACES_EXPORTER=`zipkin`: flock exports traces over OTLP only; set `otlp`, or `none` for no export",
        ),
    ];
    for (env, message) in cases {
        let child = worker("otel-bad-settings", "http://127.0.0.1:9/v1", &[], &env);
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{env:?}: {stderr}");
        assert_eq!(stderr.trim_end(), message, "{env:?}");
    }
}

fn one<'a>(spans: &'a [Exported], what: &str, pick: impl Fn(&Exported) -> bool) -> &'a Exported {
    let found: Vec<&Exported> = spans.iter().filter(|s| pick(s)).collect();
    assert_eq!(found.len(), 1, "{what}: {found:#?}");
    found[0]
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
