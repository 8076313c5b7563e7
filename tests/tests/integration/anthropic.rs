//! Anthropic's Messages API, natively: a declarative agent with a tool answers through it on both
//! executors, against a stand-in speaking that protocol (`model/server.rs` with Anthropic-shaped
//! replies); what it sends is the real request shape (`x-api-key`, `anthropic-version`, `system`,
//! `tools` with `input_schema`, tool results as `tool_result` blocks of one user turn). Bad
//! settings are errors at `build()`; bad answers are named.

use std::future::IntoFuture;
use std::time::Duration;

use flock::model::{Anthropic, AnthropicConfig};
use flock::prelude::*;
use serde_json::{Value, json};

use super::model::server::{FakeOpenAi, Reply};
use super::temporal::config;

const BOUND: Duration = Duration::from_secs(60);
const KEY: &str = "sk-ant-test-key";

/// A Messages API answer with these content blocks.
fn message(content: Value, stop_reason: &str, input_tokens: u64) -> Reply {
    Reply::Json(
        200,
        vec![],
        json!({
            "id": "msg_01",
            "type": "message",
            "role": "assistant",
            "model": "claude-test-2026",
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": null,
            "usage": { "input_tokens": input_tokens, "output_tokens": 7 }
        }),
    )
}

fn tool_use(id: &str, name: &str, input: Value) -> Reply {
    message(
        json!([
            { "type": "text", "text": "Let me compute that." },
            { "type": "tool_use", "id": id, "name": name, "input": input }
        ]),
        "tool_use",
        20,
    )
}

fn final_result(input: Value) -> Reply {
    message(
        json!([{ "type": "tool_use", "id": "toolu_final", "name": "final_result", "input": input }]),
        "tool_use",
        30,
    )
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct Number {
    /// The number
    pub n: u32,
}

/// Doubles a number.
#[tool]
async fn twice(args: Number) -> u32 {
    args.n * 2
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Sum {
    /// The question
    pub question: String,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Answer {
    /// The answer
    pub answer: String,
}

/// Answer the question; use the tool to double numbers.
#[agent(tools = [twice], retry(attempts = 1))]
async fn claude_agent(input: Sum) -> Answer;

/// Answer the question; use the tool to double numbers. Failures are retried, quickly.
#[agent(tools = [twice], retry(attempts = 3, initial_interval = "10ms"))]
async fn claude_retried(input: Sum) -> Answer;

fn provider(server: &FakeOpenAi) -> Anthropic {
    Anthropic::new(AnthropicConfig {
        timeout: Duration::from_secs(10),
        ..provider_config(server)
    })
}

/// A local `Flock` and one on the test server, each answered by its own stand-in.
async fn both(queue: &str, replies: Vec<Reply>) -> [(&'static str, Flock, FakeOpenAi); 2] {
    super::temporal::on_both(queue, replies, |model| {
        Flock::builder()
            .provider(provider(model))
            .model("anthropic/claude-test")
            .serve_only(["claude_agent"])
    })
    .await
}

fn question() -> Sum {
    Sum {
        question: "what is twice 21?".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_with_a_tool_answers_through_the_messages_api_on_both_executors() {
    let script = vec![
        tool_use("toolu_1", "twice", json!({ "n": 21 })),
        final_result(json!({ "answer": "42" })),
    ];
    for (executor, flock, model) in both("anthropic-tools", script).await {
        let recorded = tokio::time::timeout(
            BOUND,
            flock.run(claude_agent, question()).recorded().into_future(),
        )
        .await
        .expect("the run ends");
        assert_eq!(recorded.result.unwrap().answer, "42", "{executor}");
        // the record: both model requests, their tokens and the model that answered
        let answered: Vec<Option<&str>> = recorded
            .record
            .steps_of("claude_agent.model")
            .map(|step| step.model())
            .collect();
        assert_eq!(
            answered,
            [Some("claude-test-2026"), Some("claude-test-2026")],
            "{executor}"
        );
        assert_eq!(recorded.record.usage().prompt_tokens, 50, "{executor}");
        assert_eq!(
            recorded.record.steps_of("twice.tool").count(),
            1,
            "{executor}"
        );

        let received = model.received();
        assert_eq!(received.len(), 2, "{executor}");
        let first = &received[0];
        assert_eq!(first.path, "/v1/messages", "{executor}");
        assert_eq!(first.header("x-api-key"), Some(KEY), "{executor}");
        assert_eq!(first.header("anthropic-version"), Some("2023-06-01"));
        assert_eq!(first.header("authorization"), None, "{executor}");
        let body = &first.body;
        assert_eq!(body["model"], "claude-test", "{executor}");
        assert_eq!(body["max_tokens"], 4096, "{executor}");
        assert!(
            body["system"]
                .as_str()
                .is_some_and(|s| s.contains("use the tool to double numbers")),
            "{executor}: {body}"
        );
        assert_eq!(body["messages"][0]["role"], "user", "{executor}");
        let tools: Vec<&str> = body["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(tools, ["twice", "final_result"], "{executor}");
        assert_eq!(
            body["tools"][0]["input_schema"]["properties"]["n"]["type"], "integer",
            "{executor}"
        );
        assert_eq!(
            body["tools"][1]["input_schema"]["required"],
            json!(["answer"]),
            "{executor}"
        );
        assert_eq!(body["tool_choice"], json!({ "type": "any" }), "{executor}");
        // the second request carries the tool use and its result, as Anthropic wants them
        let messages = received[1].body["messages"].as_array().unwrap().clone();
        let n = messages.len();
        assert_eq!(
            messages[n - 2],
            json!({ "role": "assistant", "content": [
                { "type": "text", "text": "Let me compute that." },
                { "type": "tool_use", "id": "toolu_1", "name": "twice", "input": { "n": 21 } }
            ] }),
            "{executor}"
        );
        assert_eq!(
            messages[n - 1],
            json!({ "role": "user", "content": [
                { "type": "tool_result", "tool_use_id": "toolu_1", "content": "42" }
            ] }),
            "{executor}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_answers_are_named_on_both_executors() {
    // cut off at max_tokens: named as such, not re-asked as invalid JSON
    let cut = message(
        json!([{ "type": "text", "text": "{\"answer\": \"the first" }]),
        "max_tokens",
        5,
    );
    for (executor, flock, model) in both("anthropic-cut", vec![cut]).await {
        let error = tokio::time::timeout(BOUND, flock.run(claude_agent, question()).into_future())
            .await
            .expect("the run ends")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("anthropic: the answer was cut off at the request's token limit (stop_reason `max_tokens`, after 7 output tokens)"),
            "{executor}: {error}"
        );
        assert_eq!(model.received().len(), 1, "{executor}");
    }
    // a rejected key: permanent, naming where the key came from, the key itself never shown
    let rejected = Reply::Json(
        401,
        vec![],
        json!({ "type": "error", "error": { "type": "authentication_error", "message": format!("invalid x-api-key {KEY}") } }),
    );
    for (executor, flock, model) in both("anthropic-401", vec![rejected]).await {
        let error = tokio::time::timeout(BOUND, flock.run(claude_agent, question()).into_future())
            .await
            .expect("the run ends")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("anthropic: HTTP 401 Unauthorized: the API key given in `AnthropicConfig::api_key` was rejected")
                && error.contains("invalid x-api-key <redacted>")
                && !error.contains(KEY),
            "{executor}: {error}"
        );
        assert_eq!(model.received().len(), 1, "{executor}");
    }
}

/// No key, a malformed base URL: an error when the `Flock` is built, naming the agent, on both
/// executors; nothing is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_key_or_a_malformed_url_is_an_error_at_build_on_both_executors() {
    let server = FakeOpenAi::start(vec![]).await;
    let no_key = || {
        Anthropic::new(AnthropicConfig {
            api_key: None,
            ..AnthropicConfig::default()
        })
        .with_env(|_| None)
    };
    let bad_url = || {
        Anthropic::new(AnthropicConfig {
            base_url: Some("localhost:8080".into()),
            ..provider_config(&server)
        })
    };
    let cases: [(&dyn Fn() -> Anthropic, &str); 2] = [
        (
            &no_key,
            "anthropic: no API key: set the environment variable `ANTHROPIC_API_KEY` (or `AnthropicConfig::api_key`)",
        ),
        (&bad_url, "anthropic: `localhost:8080/v1/messages`"),
    ];
    for (provider, expected) in cases {
        for local in [true, false] {
            let error = Flock::builder()
                .provider(provider())
                .model("anthropic/claude-test")
                .serve_only(["claude_agent"])
                .local_debug(local)
                .temporal(config("anthropic-build"))
                .build()
                .await
                .err()
                .unwrap_or_else(|| panic!("built without {expected} (local: {local})"))
                .to_string();
            assert!(
                error.contains("agent `claude_agent`") && error.contains(expected),
                "local: {local}: {error}"
            );
        }
    }
    assert!(server.received().is_empty());
}

fn provider_config(server: &FakeOpenAi) -> AnthropicConfig {
    AnthropicConfig {
        api_key: Some(KEY.into()),
        base_url: Some(server.url()),
        ..AnthropicConfig::default()
    }
}

/// A streamed Messages API answer: `event:`/`data:` pairs, one every 50 ms.
fn stream_of(events: &[Value]) -> Reply {
    Reply::Stream(
        events
            .iter()
            .map(|event| {
                let kind = event["type"].as_str().unwrap_or("message");
                (
                    Duration::from_millis(50),
                    format!("event: {kind}\ndata: {event}\n\n"),
                )
            })
            .collect(),
    )
}

/// A streamed message of one tool use, its input in two pieces.
fn streamed_tool_use(id: &str, name: &str, first: &str, second: &str, input_tokens: u64) -> Reply {
    stream_of(&[
        json!({ "type": "message_start", "message": { "id": "msg_s", "type": "message", "role": "assistant", "content": [], "model": "claude-test-2026", "stop_reason": null, "usage": { "input_tokens": input_tokens, "output_tokens": 1 } } }),
        json!({ "type": "content_block_start", "index": 0, "content_block": { "type": "tool_use", "id": id, "name": name, "input": {} } }),
        json!({ "type": "ping" }),
        json!({ "type": "content_block_delta", "index": 0, "delta": { "type": "input_json_delta", "partial_json": first } }),
        json!({ "type": "content_block_delta", "index": 0, "delta": { "type": "input_json_delta", "partial_json": second } }),
        json!({ "type": "content_block_stop", "index": 0 }),
        json!({ "type": "message_delta", "delta": { "stop_reason": "tool_use", "stop_sequence": null }, "usage": { "output_tokens": 7 } }),
        json!({ "type": "message_stop" }),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_message_answers_on_both_executors() {
    let script = vec![
        streamed_tool_use("toolu_1", "twice", r#"{"n": "#, "21}", 20),
        streamed_tool_use(
            "toolu_final",
            "final_result",
            r#"{"answer": "#,
            r#""42"}"#,
            30,
        ),
    ];
    for (executor, flock, model) in super::temporal::on_both("anthropic-stream", script, |model| {
        Flock::builder()
            .provider(Anthropic::new(AnthropicConfig {
                stream: true,
                // the whole answer takes ~400 ms: the timeout bounds each event's wait
                timeout: Duration::from_millis(300),
                ..provider_config(model)
            }))
            .model("anthropic/claude-test")
            .serve_only(["claude_agent"])
    })
    .await
    {
        let recorded = tokio::time::timeout(
            BOUND,
            flock.run(claude_agent, question()).recorded().into_future(),
        )
        .await
        .expect("the run ends");
        assert_eq!(recorded.result.unwrap().answer, "42", "{executor}");
        assert_eq!(recorded.record.usage().prompt_tokens, 50, "{executor}");
        let received = model.received();
        assert_eq!(received.len(), 2, "{executor}");
        assert_eq!(received[0].body["stream"], true, "{executor}");
        // the tool's input, put together from its pieces, went back as a tool use
        let messages = received[1].body["messages"].as_array().unwrap().clone();
        assert_eq!(
            messages[messages.len() - 2]["content"][0]["input"],
            json!({ "n": 21 }),
            "{executor}"
        );
    }
}

/// A 429 with `retry-after` and an overloaded 529 (Anthropic's own status) are retried: the
/// first after the delay the provider asked for, the second as transient; then the tool call and
/// the answer, on both executors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_and_an_overload_are_retried_on_both_executors() {
    let script = vec![
        Reply::Json(
            429,
            vec![("retry-after", "1".into())],
            json!({ "type": "error", "error": { "type": "rate_limit_error", "message": "slow down" } }),
        ),
        Reply::Json(
            529,
            vec![],
            json!({ "type": "error", "error": { "type": "overloaded_error", "message": "Overloaded" } }),
        ),
        tool_use("toolu_1", "twice", json!({ "n": 21 })),
        final_result(json!({ "answer": "42" })),
    ];
    for (executor, flock, model) in super::temporal::on_both("anthropic-retry", script, |model| {
        Flock::builder()
            .provider(provider(model))
            .model("anthropic/claude-test")
            .serve_only(["claude_retried"])
    })
    .await
    {
        let recorded = tokio::time::timeout(
            BOUND,
            flock
                .run(claude_retried, question())
                .recorded()
                .into_future(),
        )
        .await
        .expect("the run ends");
        assert_eq!(recorded.result.unwrap().answer, "42", "{executor}");
        let received = model.received();
        assert_eq!(received.len(), 4, "{executor}");
        // the provider's `retry-after: 1` was waited out
        let waited = received[1].at - received[0].at;
        assert!(
            waited >= Duration::from_millis(950),
            "{executor}: retried after {waited:?}"
        );
        // the first model step took three attempts, named in its record
        let first = recorded
            .record
            .steps_of("claude_retried.model")
            .next()
            .expect("a model step");
        let errors: Vec<String> = first
            .attempts
            .iter()
            .filter_map(|a| a.error.as_ref().map(ToString::to_string))
            .collect();
        assert_eq!(first.attempts.len(), 3, "{executor}: {errors:?}");
        assert!(
            errors
                .last()
                .is_some_and(|e| e.contains("529") && e.contains("Overloaded")),
            "{executor}: {errors:?}"
        );
    }
}
