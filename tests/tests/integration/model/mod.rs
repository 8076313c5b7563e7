//! The model layer against a chat-completions server on 127.0.0.1 (`model/server.rs`): the exact
//! request, structured output and its repair, error classes from HTTP, tools, usage, and keys
//! that never leak. No test touches the network.
//!
//! (This is `model/mod.rs`, not `model.rs`: cargo builds every top-level `tests/*.rs` as a test
//! binary of its own, and these tests belong to the one `integration` binary.)

pub(super) mod server;

use std::future::IntoFuture;
use std::time::Duration;

use flock::model::schema::strict_schema;
use flock::model::{
    AzureConfig, OpenAi, OpenAiConfig, OutputFormat, StructuredOutput, build_messages,
};
use flock::prelude::*;
use flock::{AgentSpec, ErrorClass, Recorded};
use serde_json::{Value, json};

use server::{FakeOpenAi, Reply, answer, failure, tool_calls, truncated};

/// The key every test configures: it must never show up anywhere but the request header.
const KEY: &str = "sk-flock-CANARY-7f3a9c1e5b";

// ---------------------------------------------------------------------------------------------
// Agents.

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Article {
    /// The article's title
    pub title: String,
    /// The article's text
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub enum Verdict {
    Accept,
    Revise,
    Reject,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Review {
    /// Whether the article can be published
    pub verdict: Verdict,
    /// Quality from 0 to 10
    pub score: u8,
    /// Remarks, most important first
    pub remarks: Vec<String>,
    /// A note for the editor, if any
    pub note: Option<String>,
}

/// Review the article: decide whether it can be published.
#[agent(retry(attempts = 1))]
async fn review_article(input: Article) -> Review;

/// Review the article, with one repair at most.
#[agent(output_retries = 1, retry(attempts = 1))]
async fn review_article_once(input: Article) -> Review;

/// Review the article; failures are retried once, quickly.
#[agent(retry(attempts = 2, initial_interval = "10ms"))]
async fn review_article_twice(input: Article) -> Review;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Topic {
    /// The topic
    pub topic: String,
}

/// Write a short article on the topic.
#[agent(hand_off = review_article, retry(attempts = 1))]
async fn draft_article(input: Topic) -> Article;

/// List the keywords of the article.
#[agent(retry(attempts = 1))]
async fn article_keywords(input: Article) -> Vec<String>;

#[derive(Debug, Deserialize, JsonSchema)]
pub struct WordArgs {
    /// The word to measure
    pub word: String,
}

/// Counts the letters of a word.
#[tool]
async fn word_length(args: WordArgs) -> Result<usize, String> {
    if args.word.is_empty() {
        return Err("the word is empty".into());
    }
    Ok(args.word.chars().count())
}

/// Review the article; measure words with the tool where needed.
#[agent(tools = [word_length], retry(attempts = 1))]
async fn review_with_tools(input: Article) -> Review;

// ---------------------------------------------------------------------------------------------
// Helpers.

fn article() -> Article {
    Article {
        title: "Flocks".into(),
        text: "Birds flock together.".into(),
    }
}

fn good_review() -> Value {
    json!({ "verdict": "Accept", "score": 8, "remarks": ["clear"], "note": null })
}

fn openai_config(server: &FakeOpenAi) -> OpenAiConfig {
    OpenAiConfig {
        api_key: Some(KEY.into()),
        base_url: Some(server.base_url()),
        timeout: Duration::from_secs(10),
        ..OpenAiConfig::default()
    }
}

async fn flock_with(provider: OpenAi) -> Flock {
    Flock::builder()
        .provider(provider)
        .model("openai/gpt-4o-mini")
        .build()
        .await
        .expect("flock builds")
}

async fn run_review(server: &FakeOpenAi) -> Recorded<Review> {
    flock_with(OpenAi::new(openai_config(server)))
        .await
        .run(review_article, article())
        .recorded()
        .await
}

/// A response with this status line and body, exactly.
fn raw(status: &str, body: &str) -> Reply {
    Reply::Raw(
        format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

fn agent_error<T: std::fmt::Debug>(recorded: &Recorded<T>) -> AgentError {
    let error = recorded.result.as_ref().expect_err("the run fails");
    error.agent_error().expect("an agent failed").2.clone()
}

// ---------------------------------------------------------------------------------------------
// The request.

/// The exact prompt of a sample agent: description and output schema in the system message, the
/// input and its schema in the user message.
#[test]
fn prompt_snapshot() {
    let spec = {
        let mut spec = AgentSpec::new("review_article", flock::AgentKind::Declarative);
        spec.description = "Review the article.";
        spec
    };
    let output = OutputFormat::of::<Verdict>();
    let messages = build_messages(
        &spec,
        &schemars::schema_for!(Topic).to_value(),
        &output.schema,
        &json!({ "topic": "birds" }),
    );
    assert_eq!(messages.len(), 2);
    assert_eq!(
        messages[0].content,
        r#"Review the article.

Answer with one JSON object that matches this JSON Schema, and nothing else:
{
  "additionalProperties": false,
  "properties": {
    "value": {
      "enum": [
        "Accept",
        "Revise",
        "Reject"
      ],
      "type": "string"
    }
  },
  "required": [
    "value"
  ],
  "title": "Verdict",
  "type": "object"
}"#
    );
    assert_eq!(
        messages[1].content,
        r#"Input, as JSON matching the schema below.

Schema:
{
  "properties": {
    "topic": {
      "description": "The topic",
      "type": "string"
    }
  },
  "required": [
    "topic"
  ],
  "title": "Topic",
  "type": "object"
}

Input:
{
  "topic": "birds"
}"#
    );
}

#[tokio::test]
async fn request_is_exact_and_valid_answer_is_deserialized() {
    let server = FakeOpenAi::start(vec![answer(&good_review().to_string(), 120, 20)]).await;
    let recorded = run_review(&server).await;
    let review = recorded.result.expect("the review succeeds");
    assert_eq!(
        review,
        Review {
            verdict: Verdict::Accept,
            score: 8,
            remarks: vec!["clear".into()],
            note: None,
        }
    );

    let received = server.received();
    assert_eq!(received.len(), 1);
    let request = &received[0];
    assert_eq!(request.path, "/v1/chat/completions");
    assert_eq!(
        request.header("authorization"),
        Some(&*format!("Bearer {KEY}"))
    );
    assert_eq!(request.header("content-type"), Some("application/json"));

    let output_schema = schemars::schema_for!(Review).to_value();
    let input_schema = schemars::schema_for!(Article).to_value();
    let expected_messages = build_messages(
        review_article.spec(),
        &input_schema,
        &output_schema,
        &serde_json::to_value(article()).unwrap(),
    );
    assert!(
        expected_messages[0]
            .content
            .starts_with("Review the article: decide whether it can be published.\n\n")
    );
    assert_eq!(
        request.body,
        json!({
            "model": "gpt-4o-mini",
            "messages": [
                { "role": "system", "content": expected_messages[0].content },
                { "role": "user", "content": expected_messages[1].content },
            ],
            "response_format": {
                "type": "json_schema",
                "json_schema": {
                    "name": "Review",
                    "strict": true,
                    "schema": {
                        "title": "Review",
                        "type": "object",
                        "properties": {
                            "verdict": {
                                "description": "Whether the article can be published",
                                "type": "string",
                                "enum": ["Accept", "Revise", "Reject"]
                            },
                            "score": {
                                "description": "Quality from 0 to 10",
                                "type": "integer",
                                "minimum": 0,
                                "maximum": 255
                            },
                            "remarks": {
                                "description": "Remarks, most important first",
                                "type": "array",
                                "items": { "type": "string" }
                            },
                            "note": {
                                "description": "A note for the editor, if any",
                                "type": ["string", "null"]
                            }
                        },
                        "required": ["note", "remarks", "score", "verdict"],
                        "additionalProperties": false,
                        "$defs": {
                            "Verdict": { "type": "string", "enum": ["Accept", "Revise", "Reject"] }
                        }
                    }
                }
            }
        })
    );
}

#[tokio::test]
async fn json_object_and_prompted_modes() {
    for (mode, expected) in [
        (
            StructuredOutput::JsonObject,
            Some(json!({ "type": "json_object" })),
        ),
        (StructuredOutput::Prompted, None),
    ] {
        let server = FakeOpenAi::start(vec![answer(
            &format!("Here it is:\n```json\n{}\n```", good_review()),
            10,
            5,
        )])
        .await;
        let provider = OpenAi::compatible(
            "openai",
            OpenAiConfig {
                structured_output: mode,
                ..openai_config(&server)
            },
        );
        let recorded = flock_with(provider)
            .await
            .run(review_article, article())
            .recorded()
            .await;
        assert_eq!(recorded.result.unwrap().score, 8);
        let body = &server.received()[0].body;
        assert_eq!(body.get("response_format").cloned(), expected, "{mode:?}");
        let system = body["messages"][0]["content"].as_str().unwrap();
        assert!(
            system.contains("\"remarks\""),
            "the schema is in the prompt"
        );
    }
}

#[tokio::test]
async fn non_object_output_is_wrapped_on_the_wire() {
    let server = FakeOpenAi::start(vec![answer(r#"{"value": ["birds", "flocks"]}"#, 10, 5)]).await;
    let keywords = flock_with(OpenAi::new(openai_config(&server)))
        .await
        .run(article_keywords, article())
        .await
        .expect("keywords");
    assert_eq!(keywords, ["birds", "flocks"]);
    let format = &server.received()[0].body["response_format"]["json_schema"];
    assert_eq!(format["name"], "Array_of_string");
    assert_eq!(
        format["schema"],
        json!({
            "title": "Array_of_string",
            "type": "object",
            "properties": { "value": { "type": "array", "items": { "type": "string" } } },
            "required": ["value"],
            "additionalProperties": false
        })
    );
}

// ---------------------------------------------------------------------------------------------
// Repair.

#[tokio::test]
async fn invalid_answer_is_repaired_with_the_validation_error() {
    let invalid = r#"{"verdict": "Accept", "score": "high", "remarks": [], "note": null}"#;
    let server = FakeOpenAi::start(vec![
        answer(invalid, 100, 10),
        answer(&good_review().to_string(), 130, 12),
    ])
    .await;
    let recorded = run_review(&server).await;
    assert_eq!(recorded.result.expect("repaired").score, 8);

    let received = server.received();
    assert_eq!(received.len(), 2);
    assert_eq!(server.unused_replies(), 0);
    let messages = received[1].messages();
    assert_eq!(messages.len(), 4);
    assert_eq!(messages[..2], received[0].messages()[..]);
    assert_eq!(
        messages[2],
        json!({ "role": "assistant", "content": invalid })
    );
    assert_eq!(messages[3]["role"], "user");
    assert_eq!(
        messages[3]["content"],
        "Your previous answer was rejected: the answer does not fit the output schema: at `/score`: expected integer, found string \"high\"\nAnswer again with one JSON object that matches the schema."
    );

    // Both calls count, in the step and in the run.
    let step = &recorded.record.steps[0];
    assert_eq!(step.usage.requests, 2);
    assert_eq!(step.usage.prompt_tokens, 230);
    assert_eq!(step.usage.completion_tokens, 22);
    assert_eq!(recorded.record.usage(), step.usage);
}

#[tokio::test]
async fn answers_that_never_fit_are_invalid_output() {
    let server = FakeOpenAi::start(vec![
        answer(
            r#"{"verdict": "Maybe", "score": 3, "remarks": [], "note": null}"#,
            10,
            5,
        ),
        answer("I think it is fine.", 10, 5),
    ])
    .await;
    let recorded = flock_with(OpenAi::new(openai_config(&server)))
        .await
        .run(review_article_once, article())
        .recorded()
        .await;
    let error = agent_error(&recorded);
    assert_eq!(error.class(), ErrorClass::InvalidOutput, "{error}");
    assert!(
        error.message().contains("the answer is not valid JSON"),
        "the last problem is reported: {error}"
    );
    assert!(error.message().contains("after 1 repair re-ask"), "{error}");
    let received = server.received();
    let repair = &received[1].messages()[3]["content"];
    assert!(
        repair.as_str().unwrap().contains(
            r#"at `/verdict`: expected one of "Accept", "Revise", "Reject", found string "Maybe""#
        ),
        "{repair}"
    );
    assert_eq!(recorded.record.steps[0].usage.requests, 2);
}

// ---------------------------------------------------------------------------------------------
// Error classes from HTTP.

#[tokio::test]
async fn rate_limit_carries_retry_after() {
    let server = FakeOpenAi::start(vec![failure(
        429,
        vec![("retry-after", "7".into())],
        "Rate limit reached for gpt-4o-mini",
    )])
    .await;
    let error = agent_error(&run_review(&server).await);
    assert_eq!(error.class(), ErrorClass::RateLimited, "{error}");
    assert_eq!(error.retry_after(), Some(Duration::from_secs(7)));
    assert!(error.message().contains("Rate limit reached"), "{error}");

    let server = FakeOpenAi::start(vec![failure(
        429,
        vec![
            ("retry-after-ms", "250".into()),
            ("retry-after", "1".into()),
        ],
        "slow down",
    )])
    .await;
    let error = agent_error(&run_review(&server).await);
    assert_eq!(error.retry_after(), Some(Duration::from_millis(250)));
}

#[tokio::test]
async fn server_errors_are_transient_and_the_executor_retries_them() {
    let server = FakeOpenAi::start(vec![failure(500, vec![], "The server had an error")]).await;
    let error = agent_error(&run_review(&server).await);
    assert_eq!(error.class(), ErrorClass::Transient, "{error}");
    assert!(error.message().contains("HTTP 500"), "{error}");

    // The client does not retry by itself; the agent's retry policy does.
    let server = FakeOpenAi::start(vec![
        failure(503, vec![], "overloaded"),
        answer(&good_review().to_string(), 10, 5),
    ])
    .await;
    let recorded = flock_with(OpenAi::new(openai_config(&server)))
        .await
        .run(review_article_twice, article())
        .recorded()
        .await;
    assert_eq!(recorded.result.expect("second attempt succeeds").score, 8);
    assert_eq!(server.received().len(), 2);
    let attempts = &recorded.record.steps[0].attempts;
    assert_eq!(attempts.len(), 2);
    assert_eq!(
        attempts[0].error.as_ref().unwrap().class(),
        ErrorClass::Transient
    );
}

#[tokio::test]
async fn client_errors_are_permanent() {
    for (status, message, expect) in [
        (
            400,
            "Invalid schema for response_format 'Review'",
            "HTTP 400",
        ),
        (404, "The model `gpt-5-nano-x` does not exist", "HTTP 404"),
    ] {
        let server = FakeOpenAi::start(vec![failure(status, vec![], message)]).await;
        let error = agent_error(&run_review(&server).await);
        assert_eq!(error.class(), ErrorClass::Permanent, "{error}");
        assert!(error.message().contains(expect), "{error}");
        assert!(error.message().contains(message), "{error}");
    }
}

#[tokio::test]
async fn unauthorized_names_the_variable_to_set() {
    let server = FakeOpenAi::start(vec![failure(401, vec![], "Incorrect API key provided")]).await;
    let provider = OpenAi::new(OpenAiConfig {
        api_key: None,
        ..openai_config(&server)
    })
    .with_env(|var| (var == "OPENAI_API_KEY").then(|| KEY.to_owned()));
    let recorded = flock_with(provider)
        .await
        .run(review_article, article())
        .recorded()
        .await;
    let error = agent_error(&recorded);
    assert_eq!(error.class(), ErrorClass::Permanent, "{error}");
    assert!(
        error
            .message()
            .contains("set `OPENAI_API_KEY` to a valid key"),
        "{error}"
    );
    assert_eq!(
        server.received()[0].header("authorization"),
        Some(&*format!("Bearer {KEY}"))
    );
}

/// A model that cannot answer (no key, a malformed URL) is an error when the `Flock` is built,
/// naming the agent and what to set, on both executors (a Temporal client that runs no worker
/// calls no model and builds); called directly, it is a permanent error and sends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_key_or_a_malformed_url_is_an_error_at_build_on_both_executors() {
    let server = FakeOpenAi::start(vec![]).await;
    let no_key = || {
        OpenAi::new(OpenAiConfig {
            api_key: None,
            ..openai_config(&server)
        })
        .with_env(|_| None)
    };
    let bad_url = || {
        OpenAi::new(OpenAiConfig {
            base_url: Some("ftp://models.example/v1".into()),
            ..openai_config(&server)
        })
    };
    let cases: [(&dyn Fn() -> OpenAi, &str); 2] = [
        (
            &no_key,
            "openai: no API key: set the environment variable `OPENAI_API_KEY`",
        ),
        (
            &bad_url,
            "`ftp://models.example/v1/chat/completions` is not an http(s) URL with a host",
        ),
    ];
    for (provider, expected) in cases {
        let builder = || {
            Flock::builder()
                .provider(provider())
                .model("openai/gpt-4o-mini")
                .serve_only(["review_article"])
        };
        let Err(local) = builder().build().await else {
            panic!("the local Flock is refused")
        };
        let Err(temporal) = builder()
            .local_debug(false)
            .temporal(super::temporal::config("model-build-check"))
            .build()
            .await
        else {
            panic!("the Temporal worker's Flock is refused")
        };
        for (executor, error) in [("local", local), ("temporal", temporal)] {
            let error = error.to_string();
            assert!(
                error.contains("agent `review_article`")
                    && error.contains("cannot be answered by model `openai/gpt-4o-mini`")
                    && error.contains(expected),
                "{executor}: {error}"
            );
        }
        builder()
            .local_debug(false)
            .in_process_worker(false)
            .temporal(super::temporal::config("model-build-check"))
            .build()
            .await
            .expect("a client runs no agent: it builds");
        // called directly: permanent, nothing sent
        let mut models = flock::model::Models::default();
        models.add_provider(std::sync::Arc::new(provider()));
        let (model, name) = models.resolve("openai/gpt-4o-mini").unwrap();
        assert!(
            model
                .unusable()
                .is_some_and(|problem| problem.contains(expected))
        );
        let request = flock::model::ModelRequest {
            model: name,
            agent: "review_article".into(),
            messages: vec![flock::model::Message::new(flock::model::Role::User, "hi")],
            output: OutputFormat::of::<Review>(),
            tools: vec![],
        };
        let error = model.complete(&request).await.unwrap_err();
        assert_eq!(error.class(), ErrorClass::Permanent, "{error}");
    }
    assert!(server.received().is_empty());
}

#[tokio::test]
async fn malformed_and_truncated_bodies_are_transient() {
    let truncated = truncated(answer(&good_review().to_string(), 1, 1));
    let garbage = raw("200 OK", "{\"choices\": [{\"m");
    let html = raw("502 Bad Gateway", "<html>bad gateway</html>");
    let hang_up = Reply::Raw(Vec::new());
    for (reply, expect) in [
        (truncated, "cut off"),
        (garbage, "not a valid chat completion"),
        (html, "HTTP 502"),
        (hang_up, "connection"),
    ] {
        let server = FakeOpenAi::start(vec![reply]).await;
        let error = agent_error(&run_review(&server).await);
        assert_eq!(error.class(), ErrorClass::Transient, "{error}");
        assert!(error.message().contains(expect), "{expect}: {error}");
    }
}

#[tokio::test]
async fn slow_answers_time_out_as_transient() {
    let server = FakeOpenAi::start(vec![Reply::After(
        Duration::from_secs(5),
        Box::new(answer(&good_review().to_string(), 1, 1)),
    )])
    .await;
    let provider = OpenAi::new(OpenAiConfig {
        timeout: Duration::from_millis(200),
        ..openai_config(&server)
    });
    let started = std::time::Instant::now();
    let recorded = flock_with(provider)
        .await
        .run(review_article, article())
        .recorded()
        .await;
    let error = agent_error(&recorded);
    assert_eq!(error.class(), ErrorClass::Transient, "{error}");
    assert!(error.message().contains("timed out after 200ms"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn unreachable_server_is_transient() {
    let server = FakeOpenAi::start(vec![]).await;
    let base_url = server.base_url();
    drop(server);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let provider = OpenAi::new(OpenAiConfig {
        base_url: Some(base_url),
        api_key: Some(KEY.into()),
        ..OpenAiConfig::default()
    });
    let recorded = flock_with(provider)
        .await
        .run(review_article, article())
        .recorded()
        .await;
    let error = agent_error(&recorded);
    assert_eq!(error.class(), ErrorClass::Transient, "{error}");
}

// ---------------------------------------------------------------------------------------------
// Tools.

#[tokio::test]
async fn tool_call_round_trip() {
    let server = FakeOpenAi::start(vec![
        tool_calls(
            &[
                ("call_1", "word_length", r#"{"word": "flock"}"#),
                ("call_2", "word_length", r#"{"word": ""}"#),
                ("call_3", "no_such_tool", "{}"),
            ],
            50,
        ),
        answer(&good_review().to_string(), 80, 10),
    ])
    .await;
    let recorded = flock_with(OpenAi::new(openai_config(&server)))
        .await
        .run(review_with_tools, article())
        .recorded()
        .await;
    assert_eq!(recorded.result.expect("answered after tools").score, 8);

    let received = server.received();
    assert_eq!(received.len(), 2);
    assert_eq!(server.unused_replies(), 0);
    assert_eq!(
        received[0].body["tools"],
        json!([{
            "type": "function",
            "function": {
                "name": "word_length",
                "description": "Counts the letters of a word.",
                "strict": true,
                "parameters": {
                    "title": "WordArgs",
                    "type": "object",
                    "properties": {
                        "word": { "description": "The word to measure", "type": "string" }
                    },
                    "required": ["word"],
                    "additionalProperties": false
                }
            }
        }])
    );
    let messages = received[1].messages();
    assert_eq!(messages.len(), 6, "system, user, assistant, 3 tool answers");
    assert_eq!(
        messages[2],
        json!({
            "role": "assistant",
            "content": null,
            "tool_calls": [
                { "id": "call_1", "type": "function", "function": { "name": "word_length", "arguments": "{\"word\": \"flock\"}" } },
                { "id": "call_2", "type": "function", "function": { "name": "word_length", "arguments": "{\"word\": \"\"}" } },
                { "id": "call_3", "type": "function", "function": { "name": "no_such_tool", "arguments": "{}" } }
            ]
        })
    );
    assert_eq!(
        messages[3],
        json!({ "role": "tool", "tool_call_id": "call_1", "content": "5" })
    );
    assert_eq!(messages[4]["tool_call_id"], "call_2");
    assert!(
        messages[4]["content"]
            .as_str()
            .unwrap()
            .contains("the word is empty"),
        "tool errors go back to the model: {}",
        messages[4]
    );
    assert_eq!(
        messages[5]["content"],
        "error: there is no tool named `no_such_tool`"
    );
    let usage = recorded.record.usage();
    assert_eq!((usage.requests, usage.prompt_tokens), (2, 130));
}

// ---------------------------------------------------------------------------------------------
// Usage over a run, other providers.

#[tokio::test]
async fn usage_is_summed_per_step_and_per_run() {
    let draft = json!({ "title": "Birds", "text": "They flock." }).to_string();
    let server = FakeOpenAi::start(vec![
        answer(&draft, 40, 15),
        answer("not json", 60, 3),
        answer(&good_review().to_string(), 70, 12),
    ])
    .await;
    let recorded = flock_with(OpenAi::new(openai_config(&server)))
        .await
        .run(
            draft_article,
            Topic {
                topic: "birds".into(),
            },
        )
        .recorded()
        .await;
    assert_eq!(
        recorded.result.expect("chain runs").verdict,
        Verdict::Accept
    );
    let steps = &recorded.record.steps;
    assert_eq!(steps[0].agent, "draft_article");
    assert_eq!(
        (
            steps[0].usage.requests,
            steps[0].usage.prompt_tokens,
            steps[0].usage.completion_tokens
        ),
        (1, 40, 15)
    );
    assert_eq!(
        (
            steps[1].usage.requests,
            steps[1].usage.prompt_tokens,
            steps[1].usage.completion_tokens
        ),
        (2, 130, 15)
    );
    let total = recorded.record.usage();
    assert_eq!(
        (total.requests, total.prompt_tokens, total.completion_tokens),
        (3, 170, 30)
    );
    // The second agent got the first one's output as its input.
    let user = server.received()[1].messages()[1]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        user.ends_with("\"text\": \"They flock.\",\n  \"title\": \"Birds\"\n}"),
        "{user}"
    );
}

#[tokio::test]
async fn ollama_and_azure_speak_the_same_protocol() {
    let server = FakeOpenAi::start(vec![
        answer(&good_review().to_string(), 1, 1),
        answer(&good_review().to_string(), 1, 1),
    ])
    .await;
    let host = server.url();
    let ollama = OpenAi::ollama(OpenAiConfig::default())
        .with_env(move |var| (var == "OLLAMA_HOST").then(|| host.clone()));
    let endpoint = server.url();
    let azure = OpenAi::azure(AzureConfig::default()).with_env(move |var| match var {
        "AZURE_OPENAI_ENDPOINT" => Some(endpoint.clone()),
        "AZURE_OPENAI_API_KEY" => Some(KEY.to_owned()),
        _ => None,
    });
    let flock = Flock::builder()
        .provider(ollama)
        .provider(azure)
        .model("ollama/llama3.1")
        .build()
        .await
        .unwrap();
    flock.run(review_article, article()).await.expect("ollama");
    let flock = Flock::builder()
        .provider(OpenAi::azure(AzureConfig {
            endpoint: Some(server.url()),
            api_key: Some(KEY.into()),
            ..AzureConfig::default()
        }))
        .model("azure/gpt4o-prod")
        .build()
        .await
        .unwrap();
    flock.run(review_article, article()).await.expect("azure");

    let received = server.received();
    assert_eq!(received[0].path, "/v1/chat/completions");
    assert_eq!(received[0].body["model"], "llama3.1");
    assert_eq!(received[0].header("authorization"), None);
    assert_eq!(
        received[1].path,
        "/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-10-21"
    );
    assert_eq!(received[1].header("api-key"), Some(KEY));
    assert_eq!(received[1].header("authorization"), None);
}

/// Azure OpenAI streams like OpenAI when asked (`AzureConfig::stream`): the request says so, and
/// the answer is put together from the chunks.
#[tokio::test]
async fn azure_streams_when_asked() {
    let server = FakeOpenAi::start(vec![super::model::server::streamed(
        &good_review().to_string(),
        7,
        Duration::from_millis(2),
        false,
    )])
    .await;
    let flock = Flock::builder()
        .provider(OpenAi::azure(AzureConfig {
            endpoint: Some(server.url()),
            api_key: Some(KEY.into()),
            stream: true,
            ..AzureConfig::default()
        }))
        .model("azure/gpt4o-prod")
        .build()
        .await
        .unwrap();
    let review = flock
        .run(review_article, article())
        .await
        .expect("a streamed answer");
    assert_eq!(serde_json::to_value(review).unwrap(), good_review());
    let received = server.received();
    assert_eq!(received[0].body["stream"], true);
    assert_eq!(received[0].body["stream_options"]["include_usage"], true);
    assert!(
        received[0]
            .path
            .starts_with("/openai/deployments/gpt4o-prod/chat/completions")
    );
}

#[tokio::test]
async fn unknown_provider_is_a_clear_error() {
    let error = Flock::builder()
        .model("mistral/mistral-large")
        .build()
        .await
        .expect_err("no such provider");
    let message = error.to_string();
    assert!(
        message.contains(
            "unknown model provider `mistral` in `mistral/mistral-large` (known providers: test, anthropic, azure, ollama, openai)"
        ),
        "{message}"
    );
}

// ---------------------------------------------------------------------------------------------
// Keys never leak.

#[tokio::test]
async fn the_api_key_never_leaks() {
    let server = FakeOpenAi::start(vec![
        // A server that echoes the key back, as some proxies do.
        failure(401, vec![], &format!("Incorrect API key provided: {KEY}")),
        failure(500, vec![], &format!("upstream said {KEY}")),
        raw("200 OK", &format!("{{\"junk\": \"{KEY}")),
        failure(429, vec![("retry-after", "1".into())], KEY),
    ])
    .await;
    let provider = OpenAi::new(openai_config(&server));
    let provider_debug = format!("{provider:?}");
    let flock = flock_with(provider).await;
    let mut seen = vec![
        provider_debug,
        format!("{flock:?}"),
        format!("{:?}", flock.models()),
    ];
    for _ in 0..4 {
        let recorded = flock.run(review_article, article()).recorded().await;
        let error = recorded.result.as_ref().expect_err("fails");
        seen.push(error.to_string());
        seen.push(format!("{error:?}"));
        seen.push(format!("{:?}", recorded.record));
        seen.push(serde_json::to_string(&recorded.record).unwrap());
    }
    let received = server.received();
    assert_eq!(received.len(), 4);
    for request in &received {
        seen.push(request.body.to_string());
    }
    for text in &seen {
        assert!(!text.contains(KEY), "the key leaked into: {text}");
        assert!(
            !text.contains("CANARY"),
            "part of the key leaked into: {text}"
        );
    }
    assert!(seen.iter().any(|t| t.contains("<redacted>")));
    // It was sent, where it belongs.
    assert_eq!(
        received[0].header("authorization"),
        Some(&*format!("Bearer {KEY}"))
    );
}

// ---------------------------------------------------------------------------------------------
// The strict-schema sanitizer on the shapes Rust types take.

mod shapes {
    #![allow(dead_code)]

    use std::collections::{BTreeMap, HashMap};

    use super::*;

    #[derive(Deserialize, JsonSchema)]
    pub struct Address {
        /// Street and number
        pub street: String,
        pub zip: Option<String>,
    }

    #[derive(Deserialize, JsonSchema)]
    pub enum Shape {
        Point,
        Circle { radius: f64 },
        Square(f64),
    }

    #[derive(Deserialize, JsonSchema)]
    #[serde(tag = "kind")]
    pub enum Event {
        Created { id: u32 },
        Deleted,
    }

    #[derive(Deserialize, JsonSchema)]
    pub struct Person {
        /// Where they live
        pub home: Address,
        pub work: Option<Address>,
        pub shapes: Vec<Shape>,
        pub events: Vec<Event>,
        #[serde(default)]
        pub visits: u32,
    }

    #[derive(Debug, Deserialize, JsonSchema)]
    pub struct Tree {
        pub label: String,
        pub children: Vec<Tree>,
        pub parent: Option<Box<Tree>>,
    }

    #[derive(Debug, Serialize, Deserialize, JsonSchema)]
    pub struct WithMap {
        pub counts: HashMap<String, u32>,
    }

    #[derive(Deserialize, JsonSchema)]
    pub struct WithBTreeMap {
        pub nested: Vec<BTreeMap<String, String>>,
    }

    #[derive(Deserialize, JsonSchema)]
    pub struct WithAnything {
        pub extra: serde_json::Value,
    }

    #[derive(Deserialize, JsonSchema)]
    pub struct WithTuple {
        pub pair: (u32, String),
    }
}

fn strict_of<T: JsonSchema>() -> Result<Value, String> {
    strict_schema(&OutputFormat::of::<T>().schema).map_err(|e| e.to_string())
}

#[test]
fn sanitizer_nested_structs_options_vecs_and_enums() {
    let strict = strict_of::<shapes::Person>().unwrap();
    assert_eq!(
        strict["properties"],
        json!({
            // A `$ref` with a description next to it is inlined.
            "home": {
                "description": "Where they live",
                "type": "object",
                "properties": {
                    "street": { "description": "Street and number", "type": "string" },
                    "zip": { "type": ["string", "null"] }
                },
                "required": ["street", "zip"],
                "additionalProperties": false
            },
            "work": { "anyOf": [{ "$ref": "#/$defs/Address" }, { "type": "null" }] },
            "shapes": { "type": "array", "items": { "$ref": "#/$defs/Shape" } },
            "events": { "type": "array", "items": { "$ref": "#/$defs/Event" } },
            // `#[serde(default)]`: required on the wire, nullable, no `default`, no `format`.
            "visits": { "type": ["integer", "null"], "minimum": 0 }
        })
    );
    assert_eq!(
        strict["required"],
        json!(["events", "home", "shapes", "visits", "work"])
    );
    let defs = &strict["$defs"];
    assert_eq!(defs["Address"]["additionalProperties"], false);
    // Data-carrying enum: `oneOf` becomes `anyOf`, every branch closed.
    assert_eq!(
        defs["Shape"],
        json!({ "anyOf": [
            { "type": "string", "enum": ["Point"] },
            {
                "type": "object",
                "properties": { "Circle": {
                    "type": "object",
                    "properties": { "radius": { "type": "number" } },
                    "required": ["radius"],
                    "additionalProperties": false
                } },
                "required": ["Circle"],
                "additionalProperties": false
            },
            {
                "type": "object",
                "properties": { "Square": { "type": "number" } },
                "required": ["Square"],
                "additionalProperties": false
            }
        ] })
    );
    // Internally tagged enum: the tag's `const` becomes a one-value enum.
    assert_eq!(
        defs["Event"]["anyOf"][1],
        json!({
            "type": "object",
            "properties": { "kind": { "type": "string", "enum": ["Deleted"] } },
            "required": ["kind"],
            "additionalProperties": false
        })
    );

    // A strict answer (absent things as `null`) is read back into the type.
    let format = OutputFormat::of::<shapes::Person>();
    let person: shapes::Person = format
        .parse_answer(
            &json!({
                "home": { "street": "Main St 1", "zip": null },
                "work": null,
                "shapes": ["Point", { "Circle": { "radius": 2.0 } }, { "Square": 1.5 }],
                "events": [{ "kind": "Created", "id": 7 }, { "kind": "Deleted" }],
                "visits": null
            })
            .to_string(),
        )
        .expect("a strict answer parses");
    assert_eq!(person.visits, 0);
    assert_eq!(person.shapes.len(), 3);
}

#[test]
fn sanitizer_keeps_recursion() {
    let strict = strict_of::<shapes::Tree>().unwrap();
    assert_eq!(
        strict["properties"]["children"],
        json!({ "type": "array", "items": { "$ref": "#" } })
    );
    assert_eq!(
        strict["properties"]["parent"],
        json!({ "anyOf": [{ "$ref": "#" }, { "type": "null" }] })
    );
    let format = OutputFormat::of::<shapes::Tree>();
    let tree: shapes::Tree = format
        .parse_answer(r#"{"label": "a", "children": [{"label": "b", "children": [], "parent": null}], "parent": null}"#)
        .unwrap();
    assert_eq!(tree.children[0].label, "b");
    let error = format
        .parse_answer::<shapes::Tree>(
            r#"{"label": "a", "children": [{"label": 1, "children": []}]}"#,
        )
        .unwrap_err();
    assert!(
        error.contains("at `/children/0/label`: expected string"),
        "{error}"
    );
}

#[test]
fn sanitizer_rejects_what_strict_mode_cannot_express() {
    for (error, path, says) in [
        (
            strict_of::<shapes::WithMap>().unwrap_err(),
            "/properties/counts",
            "maps with arbitrary keys",
        ),
        (
            strict_of::<shapes::WithBTreeMap>().unwrap_err(),
            "/properties/nested/items",
            "maps with arbitrary keys",
        ),
        (
            strict_of::<shapes::WithAnything>().unwrap_err(),
            "/properties/extra",
            "any JSON value",
        ),
        (
            strict_of::<shapes::WithTuple>().unwrap_err(),
            "/properties/pair",
            "tuples",
        ),
    ] {
        assert!(error.contains(&format!("`{path}`")), "{error}");
        assert!(error.contains(says), "{error}");
    }
}

#[tokio::test]
async fn inexpressible_output_types_fail_permanently_before_sending() {
    /// Count things.
    #[agent(retry(attempts = 1))]
    async fn count_things(input: Article) -> shapes::WithMap;

    let server = FakeOpenAi::start(vec![]).await;
    let recorded = flock_with(OpenAi::new(openai_config(&server)))
        .await
        .run(count_things, article())
        .recorded()
        .await;
    let error = agent_error(&recorded);
    assert_eq!(error.class(), ErrorClass::Permanent, "{error}");
    assert!(
        error.message().contains("StructuredOutput::JsonObject"),
        "{error}"
    );
    assert!(server.received().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Cancellation reaches the request in flight; a slow model keeps its attempt's heartbeat.

/// Review the article, within half a second.
#[agent(timeout = "500ms", retry(attempts = 1))]
async fn review_in_half_a_second(input: Article) -> Review;

/// Review the article (with a heartbeat timeout far shorter than the model takes).
#[agent(heartbeat = "1s", timeout = "60s", retry(attempts = 1))]
async fn review_with_heartbeat(input: Article) -> Review;

/// A `Flock` on `executor` ("local" or "temporal", serving `queue`) whose model is `server`,
/// with an HTTP timeout far longer than any test waits.
async fn executor_with(executor: &str, server: &FakeOpenAi, queue: &str) -> Flock {
    let provider = OpenAi::new(OpenAiConfig {
        timeout: Duration::from_secs(60),
        ..openai_config(server)
    });
    if executor == "local" {
        return flock_with(provider).await;
    }
    Flock::builder()
        .provider(provider)
        .model("openai/gpt-4o-mini")
        .local_debug(false)
        .queue_served_elsewhere(super::conformance::POOL_QUEUE)
        .temporal(super::temporal::config(queue))
        .build()
        .await
        .expect("a Flock on the test dev server")
}

/// Waits until `done`, failing the test after `timeout`.
async fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !done() {
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_attempt_ends_its_model_request() {
    for executor in ["local", "temporal"] {
        let server = FakeOpenAi::start(vec![Reply::Hang]).await;
        let flock = executor_with(executor, &server, "model-timeout").await;
        let run = flock.run(review_in_half_a_second, article());
        let error = tokio::time::timeout(Duration::from_secs(30), run.into_future())
            .await
            .unwrap_or_else(|_| panic!("{executor}: the run did not end"))
            .expect_err("the run times out");
        assert!(
            error.to_string().contains("timed out"),
            "{executor}: {error}"
        );
        // the connection closes at the timeout, not after the HTTP client's 60 s
        wait_until(
            &format!("{executor}: the request to end"),
            Duration::from_secs(5),
            || server.hang_ups() == 1,
        )
        .await;
        flock.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_run_ends_its_model_request() {
    for executor in ["local", "temporal"] {
        let server = FakeOpenAi::start(vec![Reply::Hang]).await;
        let flock = executor_with(executor, &server, "model-cancel").await;
        let handle = flock
            .run(review_with_heartbeat, article())
            .start()
            .await
            .unwrap();
        wait_until(
            &format!("{executor}: the request"),
            Duration::from_secs(20),
            || server.received().len() == 1,
        )
        .await;
        // Twice the heartbeat timeout: the attempt heartbeats by itself while it waits.
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(server.hang_ups(), 0, "{executor}: the request is in flight");
        handle.cancel().await.unwrap();
        wait_until(
            &format!("{executor}: the request to end after the cancellation"),
            Duration::from_secs(10),
            || server.hang_ups() == 1,
        )
        .await;
        let error = tokio::time::timeout(Duration::from_secs(30), handle.result())
            .await
            .unwrap_or_else(|_| panic!("{executor}: the run did not end"))
            .expect_err("the run is cancelled");
        assert!(
            error.to_string().contains("cancelled"),
            "{executor}: {error}"
        );
        assert_eq!(server.received().len(), 1, "{executor}: not retried");
        flock.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_slower_than_the_heartbeat_timeout_succeeds() {
    for executor in ["local", "temporal"] {
        let server = FakeOpenAi::start(vec![Reply::After(
            Duration::from_millis(2500),
            Box::new(answer(&good_review().to_string(), 10, 5)),
        )])
        .await;
        let flock = executor_with(executor, &server, "model-slow").await;
        let review = tokio::time::timeout(
            Duration::from_secs(30),
            flock.run(review_with_heartbeat, article()).into_future(),
        )
        .await
        .unwrap_or_else(|_| panic!("{executor}: the run did not end"))
        .unwrap_or_else(|e| panic!("{executor}: {e}"));
        assert_eq!(review.verdict, Verdict::Accept, "{executor}");
        assert_eq!(server.received().len(), 1, "{executor}: one attempt");
        flock.shutdown().await.unwrap();
    }
}

/// With `stream: true` an answer arrives as server-sent events, put together like a whole one;
/// the timeout bounds the wait for each chunk: an answer that takes longer than it in all but
/// keeps coming succeeds, a stream that stalls or ends before `[DONE]` is a transient error. On
/// both executors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_answer_arrives_in_pieces_and_a_stalled_or_cut_stream_is_transient() {
    let review = good_review().to_string();
    let piece = Duration::from_millis(100);
    for executor in ["local", "temporal"] {
        let server = FakeOpenAi::start(vec![
            // ~12 pieces, 100 ms apart: longer than the 400 ms timeout in all
            server::streamed(&review, 6, piece, false),
            server::streamed(&review, 6, Duration::from_millis(900), false),
            server::streamed(&review, 6, Duration::ZERO, true),
        ])
        .await;
        let provider = OpenAi::new(OpenAiConfig {
            timeout: Duration::from_millis(400),
            stream: true,
            ..openai_config(&server)
        });
        let builder = Flock::builder()
            .provider(provider)
            .model("openai/gpt-4o-mini");
        let flock = match executor {
            "local" => builder.build().await.expect("a local Flock"),
            _ => builder
                .local_debug(false)
                .queue_served_elsewhere(super::conformance::POOL_QUEUE)
                .temporal(super::temporal::config("model-stream"))
                .build()
                .await
                .expect("a Flock on the test dev server"),
        };
        let started = std::time::Instant::now();
        let recorded = tokio::time::timeout(
            Duration::from_secs(30),
            flock
                .run(review_article, article())
                .recorded()
                .into_future(),
        )
        .await
        .expect("the run ends");
        let took = started.elapsed();
        let review_got = recorded.result.as_ref().expect("the streamed answer");
        assert_eq!(serde_json::to_value(review_got).unwrap(), good_review());
        assert!(took > Duration::from_millis(400), "{executor}: {took:?}");
        assert_eq!(recorded.record.usage().prompt_tokens, 11, "{executor}");
        let sent = &server.received()[0].body;
        assert_eq!(sent["stream"], true, "{executor}");
        assert_eq!(sent["stream_options"], json!({ "include_usage": true }));

        let stalled = flock.run(review_article, article()).recorded().await;
        let error = agent_error(&stalled);
        assert_eq!(error.class(), ErrorClass::Transient, "{executor}: {error}");
        assert!(
            error.message().contains("stalled: nothing came for 400ms"),
            "{executor}: {error}"
        );
        let cut = flock.run(review_article, article()).recorded().await;
        let error = agent_error(&cut);
        assert_eq!(error.class(), ErrorClass::Transient, "{executor}: {error}");
        assert!(
            error.message().contains("the stream ended before `[DONE]`"),
            "{executor}: {error}"
        );
        assert_eq!(server.received().len(), 3, "{executor}");
    }
}
