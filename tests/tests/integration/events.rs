//! A run's live events (`flock::events`): the text of a model's answer as the provider streams
//! it, seen by a watcher before the answer ends and whole exactly once (on Temporal by another
//! process, `flock watch ID -o json`, and without a history event per token); retried attempts
//! marked; approvals; the run's end; bad input. Both executors, against the OpenAI-protocol
//! stand-in streaming a 200-token answer over 2 s.

use std::io::BufRead;
use std::process::Stdio;
use std::time::{Duration, Instant};

use flock::events::{EventKind, RunEvent, RunEvents};
use flock::model::{OpenAi, OpenAiConfig};
use flock::prelude::*;
use futures::StreamExt;

use super::model::server::{FakeOpenAi, Reply, answer, streamed};

/// How long a run may take before it counts as hung.
const BOUND: Duration = Duration::from_secs(60);

/// How long the stand-in waits before it streams: a watcher in another process is attached by
/// then, so that the time to the first token is measured from the provider's side.
const BEFORE_STREAM: Duration = Duration::from_millis(2500);

/// The answer: 200 tokens, one per chunk, 10 ms apart (2 s).
const TOKENS: usize = 200;
const EVERY: Duration = Duration::from_millis(10);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Subject {
    /// What the story is about
    pub about: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Story {
    /// The story
    pub text: String,
}

/// Tell a story about the subject.
#[agent(retry(attempts = 2, initial_interval = "10ms"))]
async fn tell_story(input: Subject) -> Story;

#[flow]
async fn storytelling(ctx: &FlowContext, input: Subject) -> Result<Story, FlowError> {
    ctx.call(tell_story, input).await
}

/// The model's answer (the story as JSON), in [`TOKENS`] tokens.
fn story_answer() -> (String, Vec<String>) {
    let mut tokens = vec![r#"{"text": ""#.to_owned()];
    tokens.extend((1..TOKENS - 1).map(|i| format!("w{i} ")));
    tokens.push(r#"end."}"#.to_owned());
    (tokens.concat(), tokens)
}

/// A stream of `tokens`, one per chunk, `every` apart (the first after `every` too).
fn stream_of(tokens: &[String], every: Duration, cut: bool) -> Reply {
    // one character per "piece" would split tokens; join them with a separator the pieces keep
    let Reply::Stream(mut events) = streamed("", 1, every, cut) else {
        unreachable!()
    };
    let pieces = tokens.iter().map(|token| {
        let chunk = serde_json::json!({
            "id": "chatcmpl-s",
            "object": "chat.completion.chunk",
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [{ "index": 0, "delta": { "content": token }, "finish_reason": null }]
        });
        (every, format!("data: {chunk}\n\n"))
    });
    let tail = events.split_off(0);
    events.extend(pieces);
    events.extend(tail);
    Reply::Stream(events)
}

fn streaming(model: &FakeOpenAi) -> flock::FlockBuilder {
    Flock::builder()
        .provider(OpenAi::new(OpenAiConfig {
            api_key: Some("sk-events".into()),
            base_url: Some(model.base_url()),
            timeout: Duration::from_secs(10),
            stream: true,
            ..OpenAiConfig::default()
        }))
        .model("openai/gpt-4o-mini")
}

fn subject() -> Subject {
    Subject {
        about: "a lighthouse".into(),
    }
}

/// Events as they arrive, each with when (in this process).
type Seen = Vec<(Instant, RunEvent)>;

/// Reads `events` to their end (bounded).
async fn collect(mut events: RunEvents) -> Seen {
    let mut seen = Vec::new();
    let reading = async {
        while let Some(event) = events.next().await {
            seen.push((Instant::now(), event.expect("an event")));
        }
    };
    tokio::time::timeout(BOUND, reading)
        .await
        .expect("the event stream ends after the run");
    seen
}

/// The text events of `attempt`, joined.
fn text_of(seen: &Seen, attempt: u32) -> String {
    seen.iter()
        .filter_map(|(_, event)| match &event.kind {
            EventKind::Text {
                text, attempt: a, ..
            } if *a == attempt => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

/// `flock watch ID -o json` in another process: its events as they arrive, with when.
fn watch_in_another_process(run_id: &str) -> std::thread::JoinHandle<(Seen, i32, String)> {
    let mut child = super::cli::command("events-watch", &["watch", run_id, "-o", "json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the flock_cli binary runs");
    let stdout = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.expect("a line");
            let event: RunEvent = serde_json::from_str(&line).unwrap_or_else(|e| {
                panic!("`watch -o json` printed a line that is not an event ({e}): {line}")
            });
            seen.push((Instant::now(), event));
        }
        let status = child.wait().expect("watch ends");
        let mut stderr = String::new();
        if let Some(mut err) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut err, &mut stderr);
        }
        (seen, status.code().unwrap_or(-1), stderr)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_sees_the_text_as_it_streams_and_the_whole_text_once_on_both_executors() {
    let (whole, tokens) = story_answer();
    let script = vec![Reply::After(
        BEFORE_STREAM,
        Box::new(stream_of(&tokens, EVERY, false)),
    )];
    for (executor, flock, model) in
        super::temporal::on_both("events-stream", script, streaming).await
    {
        let handle = flock.start_flow(storytelling, subject()).await.unwrap();
        let (seen, watcher) = if executor == "local" {
            let seen = collect(handle.events().await.unwrap()).await;
            (seen, None)
        } else {
            // another process, knowing only the run id
            let watching = watch_in_another_process(handle.id());
            let (seen, code, stderr) = tokio::task::spawn_blocking(move || watching.join())
                .await
                .unwrap()
                .expect("the watching thread");
            (seen, Some((code, stderr)))
        };
        let story = tokio::time::timeout(BOUND, handle.result())
            .await
            .expect("the run ends")
            .expect("the story");
        let expected: Story = serde_json::from_str(&whole).unwrap();
        assert_eq!(story, expected, "{executor}");
        if let Some((code, stderr)) = &watcher {
            assert_eq!(*code, 0, "{executor}: `watch` exit code; stderr: {stderr}");
        }

        // the whole text, once, in order
        assert_eq!(text_of(&seen, 1), whole, "{executor}: {seen:#?}");
        let kinds: Vec<&str> = seen
            .iter()
            .map(|(_, e)| match &e.kind {
                EventKind::StepStarted { .. } => "started",
                EventKind::Text { .. } => "text",
                EventKind::StepFinished { .. } => "finished",
                EventKind::RunFinished { .. } => "run_finished",
                _ => "other",
            })
            .collect();
        assert_eq!(kinds.first(), Some(&"started"), "{executor}: {kinds:?}");
        assert_eq!(kinds.last(), Some(&"run_finished"), "{executor}: {kinds:?}");
        let finished = seen
            .iter()
            .find_map(|(_, e)| match &e.kind {
                EventKind::StepFinished { name, usage, .. } => Some((name.clone(), *usage)),
                _ => None,
            })
            .expect("the step finished");
        assert_eq!(finished.0, "tell_story", "{executor}");
        assert_eq!(finished.1.prompt_tokens, 11, "{executor}");

        // seen while it streamed: the first text well before the answer ended
        let asked = model.received()[0].at;
        let first_token_sent = asked + BEFORE_STREAM + EVERY;
        let last_token_sent = asked + BEFORE_STREAM + EVERY * TOKENS as u32;
        let text_times: Vec<Instant> = seen
            .iter()
            .filter(|(_, e)| matches!(e.kind, EventKind::Text { .. }))
            .map(|(at, _)| *at)
            .collect();
        let first_seen = text_times[0];
        eprintln!(
            "events: {executor}: first token sent → watcher got it: {:?}; text in {} pieces",
            first_seen.saturating_duration_since(first_token_sent),
            text_times.len()
        );
        assert!(
            first_seen < last_token_sent - Duration::from_millis(500),
            "{executor}: the first text came {:?} after the first token was sent, the answer \
             took {:?}",
            first_seen.saturating_duration_since(first_token_sent),
            EVERY * TOKENS as u32
        );
        assert!(
            text_times.len() >= 5,
            "{executor}: the text came in {} pieces",
            text_times.len()
        );

        if executor == "temporal" {
            // no event per token: the streamed run's history has as many events as one whose
            // answer came whole, and about as many bytes
            let plain_model = FakeOpenAi::start(vec![answer(&whole, 11, 200)]).await;
            let plain = super::temporal::on_test_server(
                Flock::builder()
                    .provider(OpenAi::new(OpenAiConfig {
                        api_key: Some("sk-events".into()),
                        base_url: Some(plain_model.base_url()),
                        timeout: Duration::from_secs(10),
                        ..OpenAiConfig::default()
                    }))
                    .model("openai/gpt-4o-mini"),
                "events-plain",
            )
            .build()
            .await
            .unwrap();
            let plain_run = plain.start_flow(storytelling, subject()).await.unwrap();
            plain_run.result().await.unwrap();
            let streamed_history = flock.history_json(handle.id()).await.unwrap();
            let plain_history = plain.history_json(plain_run.id()).await.unwrap();
            let count = |history: &[u8]| {
                serde_json::from_slice::<serde_json::Value>(history).unwrap()["events"]
                    .as_array()
                    .map_or(0, Vec::len)
            };
            assert_eq!(
                count(&streamed_history),
                count(&plain_history),
                "streaming adds history events"
            );
            assert!(count(&streamed_history) < 20);
            eprintln!(
                "events: history bytes: streamed {} vs whole answer {} ({:+})",
                streamed_history.len(),
                plain_history.len(),
                streamed_history.len() as i64 - plain_history.len() as i64
            );
            plain.shutdown().await.unwrap();
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Loud {
    /// What to say loudly
    pub text: String,
}

/// Says the text loudly.
#[tool]
async fn shout_title(args: Loud) -> String {
    args.text.to_uppercase()
}

/// Tell a story about the subject, shouting its title first.
#[agent(tools = [shout_title], retry(attempts = 1))]
async fn shout_story(input: Subject) -> Story;

#[flow]
async fn shouted_storytelling(ctx: &FlowContext, input: Subject) -> Result<Story, FlowError> {
    ctx.call(shout_story, input).await
}

/// A streamed answer that calls tool `name` with `arguments`.
fn streamed_tool_call(name: &str, arguments: &str) -> Reply {
    let call = serde_json::json!({
        "object": "chat.completion.chunk",
        "choices": [{ "index": 0, "delta": { "tool_calls": [{
            "index": 0, "id": "call-1", "type": "function",
            "function": { "name": name, "arguments": arguments }
        }] }, "finish_reason": null }]
    });
    let end = serde_json::json!({
        "object": "chat.completion.chunk",
        "choices": [{ "index": 0, "delta": {}, "finish_reason": "tool_calls" }],
        "usage": { "prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10 }
    });
    Reply::Stream(vec![(
        Duration::ZERO,
        format!("data: {call}\n\ndata: {end}\n\ndata: [DONE]\n\n"),
    )])
}

/// An agent with tools runs step by step: its model requests are steps (`<agent>.model`), and the
/// text of the one that streams is that step's, whole once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_text_of_a_model_step_is_that_steps_on_both_executors() {
    let (whole, tokens) = story_answer();
    let script = vec![
        streamed_tool_call("shout_title", r#"{"text": "the lighthouse"}"#),
        stream_of(&tokens, Duration::from_millis(3), false),
    ];
    for (executor, flock, _model) in
        super::temporal::on_both("events-steps", script, streaming).await
    {
        let handle = flock
            .start_flow(shouted_storytelling, subject())
            .await
            .unwrap();
        let seen = collect(handle.events().await.unwrap()).await;
        handle.result().await.expect("the story");
        let texts: Vec<(u64, &str)> = seen
            .iter()
            .filter_map(|(_, e)| match &e.kind {
                EventKind::Text { step, name, .. } => Some((*step, name.as_str())),
                _ => None,
            })
            .collect();
        assert!(!texts.is_empty(), "{executor}: no text: {seen:#?}");
        assert!(
            texts.iter().all(|(_, name)| *name == "shout_story.model"),
            "{executor}: {texts:?}"
        );
        assert_eq!(text_of(&seen, 1), whole, "{executor}");
        let steps: Vec<(&str, flock::events::StepKind)> = seen
            .iter()
            .filter_map(|(_, e)| match &e.kind {
                EventKind::StepFinished { name, kind, .. } => Some((name.as_str(), *kind)),
                _ => None,
            })
            .collect();
        use flock::events::StepKind;
        assert!(
            steps.contains(&("shout_title.tool", StepKind::Tool))
                && steps.contains(&("shout_story.model", StepKind::Model)),
            "{executor}: {steps:?}"
        );
    }
}

/// Tell a story about the subject; a failure is retried after 600 ms.
#[agent(retry(attempts = 2, initial_interval = "600ms", backoff = 1.0))]
async fn tell_story_patiently(input: Subject) -> Story;

#[flow]
async fn patient_storytelling(ctx: &FlowContext, input: Subject) -> Result<Story, FlowError> {
    ctx.call(tell_story_patiently, input).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_attempt_is_marked_and_its_text_starts_afresh_on_both_executors() {
    let (whole, tokens) = story_answer();
    let script = vec![
        // cut off before `[DONE]`: a transient failure, retried
        stream_of(&tokens[..120], Duration::from_millis(5), true),
        stream_of(&tokens, Duration::from_millis(5), false),
    ];
    for (executor, flock, _model) in
        super::temporal::on_both("events-retry", script, streaming).await
    {
        let handle = flock
            .start_flow(patient_storytelling, subject())
            .await
            .unwrap();
        let events = match executor {
            "local" => handle.events().await.unwrap(),
            _ => flock.events_of_run(handle.id()).await.unwrap(),
        };
        let seen = collect(events).await;
        handle.result().await.expect("the second attempt answers");
        let events: Vec<&EventKind> = seen.iter().map(|(_, e)| &e.kind).collect();
        let failed = events
            .iter()
            .position(|e| {
                matches!(e, EventKind::AttemptFailed { attempt: 1, retry: true, error, .. }
                    if error.contains("cut off"))
            })
            .unwrap_or_else(|| panic!("{executor}: no failed attempt 1: {events:#?}"));
        let second = events
            .iter()
            .position(|e| matches!(e, EventKind::StepStarted { attempt: 2, .. }))
            .unwrap_or_else(|| panic!("{executor}: no attempt 2: {events:#?}"));
        assert!(failed < second, "{executor}: {events:#?}");
        // when the retry starts: told with the failure (600 ms, less the time to the look)
        match events[failed] {
            EventKind::AttemptFailed {
                retry_in_ms: Some(ms),
                ..
            } => assert!((100..=700).contains(ms), "{executor}: retry in {ms} ms"),
            other => panic!("{executor}: no retry delay: {other:?}"),
        }
        // nothing of attempt 2 before it started, nothing of attempt 1 after
        for (i, event) in events.iter().enumerate() {
            if let EventKind::Text { attempt, .. } = event {
                assert!(
                    (*attempt == 1 && i < failed) || (*attempt == 2 && i > second),
                    "{executor}: text of attempt {attempt} at {i}: {events:#?}"
                );
            }
        }
        // the first attempt's text is its own (a beginning of the answer), the second's whole
        assert!(whole.starts_with(&text_of(&seen, 1)), "{executor}");
        assert_eq!(text_of(&seen, 2), whole, "{executor}");
        assert!(
            events.iter().any(|e| matches!(
                e,
                EventKind::StepFinished {
                    attempts: 2,
                    error: None,
                    ..
                }
            )),
            "{executor}: {events:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_waiting_for_approval_and_the_runs_end_are_events_on_both_executors() {
    for executor in ["local", "temporal"] {
        let payment = super::approval::pay(executor, "events-approval", None).await;
        let mut events = payment.handle.events().await.unwrap();
        let mut waiting = Vec::new();
        let deadline = Instant::now() + BOUND;
        while waiting.len() < 2 {
            let event = tokio::time::timeout_at(deadline.into(), events.next())
                .await
                .expect("two calls wait")
                .expect("the stream goes on")
                .unwrap();
            if let EventKind::ApprovalWaiting {
                call,
                tool,
                arguments,
                ..
            } = event.kind
            {
                assert_eq!(tool, "wire", "{executor}");
                assert!(arguments["to"].is_string(), "{executor}");
                waiting.push(call);
            }
        }
        assert_eq!(waiting, ["payer/wire/1", "payer/wire/2"], "{executor}");
        payment.handle.approve("payer/wire/1").await.unwrap();
        payment.handle.deny("payer/wire/2", "no").await.unwrap();
        let rest = collect(events).await;
        assert!(
            !rest
                .iter()
                .any(|(_, e)| matches!(e.kind, EventKind::ApprovalWaiting { .. })),
            "{executor}: an approval told twice"
        );
        match &rest.last().expect("events after the decisions").1.kind {
            EventKind::RunFinished { status, error } => {
                assert_eq!(status, "completed", "{executor}: {error:?}");
            }
            other => panic!("{executor}: the stream ended with {other:?}"),
        }
        let tools: Vec<&str> = rest
            .iter()
            .filter_map(|(_, e)| match &e.kind {
                EventKind::StepFinished { name, .. } => Some(name.as_str()),
                _ => None,
            })
            .collect();
        assert!(tools.contains(&"wire.tool"), "{executor}: {tools:?}");
        drop(payment);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_to_the_live_events_is_a_clear_error_on_both_executors() {
    let script = vec![super::model::server::failure(400, vec![], "no such model")];
    for (executor, flock, _model) in super::temporal::on_both("events-bad", script, streaming).await
    {
        // an unknown run
        let error = flock.events_of_run("no-such-run").await.unwrap_err();
        assert!(
            matches!(error, flock::Error::NotFound(_)) && error.to_string().contains("no-such-run"),
            "{executor}: {error}"
        );
        // a run of another flow
        let handle = flock.start_flow(storytelling, subject()).await.unwrap();
        let wrong = flock
            .flow_handle(super::approval::pay_flow, handle.id())
            .unwrap()
            .events()
            .await
            .unwrap_err();
        assert!(
            matches!(wrong, flock::Error::WrongFlow { .. }),
            "{executor}: {wrong}"
        );
        // a run that fails: the stream ends with its failure, naming the agent and why
        let seen = collect(handle.events().await.unwrap()).await;
        match &seen.last().expect("events").1.kind {
            EventKind::RunFinished {
                status,
                error: Some(error),
            } => {
                assert_eq!(status, "failed", "{executor}");
                assert!(
                    error.contains("tell_story") && error.contains("no such model"),
                    "{executor}: {error}"
                );
            }
            other => panic!("{executor}: the stream ended with {other:?}"),
        }
        // the last attempt's failure (not retried), then the step's end
        let failed: Vec<&EventKind> = seen
            .iter()
            .map(|(_, e)| &e.kind)
            .filter(|e| {
                matches!(
                    e,
                    EventKind::AttemptFailed { .. } | EventKind::StepFinished { .. }
                )
            })
            .collect();
        assert!(
            matches!(
                failed.as_slice(),
                [
                    EventKind::AttemptFailed { attempt: 1, retry: false, .. },
                    EventKind::StepFinished { attempts: 1, error: Some(error), .. },
                ] if error.contains("no such model")
            ),
            "{executor}: {failed:#?}"
        );
        // a stream opened on a run that has ended: its end at once
        let late = collect(flock.events_of_run(handle.id()).await.unwrap()).await;
        assert!(
            matches!(
                late.last().map(|(_, e)| &e.kind),
                Some(EventKind::RunFinished { .. })
            ),
            "{executor}: {late:#?}"
        );
        if executor == "temporal" {
            // `flock watch` of the ended run, for people: the steps and the end on stderr, and
            // the exit code of a failed run
            let watched = super::cli::cli("events-bad", &["watch", handle.id()]);
            assert_eq!(watched.code, 1, "{}", watched.stderr);
            assert!(
                watched.stderr.contains("step 1 tell_story: started")
                    && watched
                        .stderr
                        .contains("step 1 tell_story: failed after 1 attempt(s)")
                    && watched
                        .stderr
                        .contains(&format!("run {} failed", handle.id())),
                "{}",
                watched.stderr
            );
        }
    }
    // the command line: an unknown run, no name for `schema`, the events' schema
    let unknown = super::cli::cli("events-bad", &["watch", "no-such-run"]);
    assert_eq!(unknown.code, 3, "{}", unknown.stderr);
    assert!(unknown.stderr.contains("no-such-run"), "{}", unknown.stderr);
    let nameless = super::cli::cli("events-bad", &["schema"]);
    assert_eq!(nameless.code, 2, "{}", nameless.stderr);
    let schema = super::cli::cli("events-bad", &["schema", "--events"]);
    assert_eq!(schema.code, 0, "{}", schema.stderr);
    assert_eq!(schema.json(), flock::events::schema());
}

/// Encryption configured is encryption applied to streamed text too: the heartbeat details the
/// server holds for the running model call, and the history, carry no token in plaintext; a
/// watcher with the key reads the text whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_text_is_encrypted_where_the_server_keeps_it() {
    use flock::codec::{Codec, CodecKeys};
    use temporalio_common::UntypedWorkflow;
    let (whole, tokens) = story_answer();
    let model = FakeOpenAi::start(vec![stream_of(&tokens, Duration::from_millis(15), false)]).await;
    let codec = Codec::new(CodecKeys::new([("k1", [7u8; 32])]).unwrap());
    let flock = streaming(&model)
        .local_debug(false)
        .queue_served_elsewhere(super::conformance::POOL_QUEUE)
        .temporal(flock::TemporalExecutorConfig {
            codec: Some(codec),
            ..super::temporal::config("events-encrypted")
        })
        .build()
        .await
        .unwrap();
    let handle = flock.start_flow(storytelling, subject()).await.unwrap();
    let watching = tokio::spawn(collect(handle.events().await.unwrap()));
    // what the server holds while the answer streams, read without the key
    let raw = super::temporal::sdk_client().await;
    let mut details_seen = 0;
    let deadline = Instant::now() + BOUND;
    while !watching.is_finished() && Instant::now() < deadline {
        let description = raw
            .get_workflow_handle::<UntypedWorkflow>(handle.id().to_owned())
            .describe(Default::default())
            .await
            .unwrap();
        for activity in &description.raw_description.pending_activities {
            for payload in activity.heartbeat_details.iter().flat_map(|d| &d.payloads) {
                details_seen += 1;
                let data = String::from_utf8_lossy(&payload.data);
                assert!(
                    !data.contains("w1 w2") && !data.contains("\"text\""),
                    "heartbeat details in plaintext: {data}"
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        details_seen > 0,
        "no heartbeat details were seen while the answer streamed"
    );
    let seen = watching.await.unwrap();
    assert_eq!(text_of(&seen, 1), whole);
    handle.result().await.unwrap();
    let history = flock.history_json(handle.id()).await.unwrap();
    let history = String::from_utf8_lossy(&history);
    assert!(
        !history.contains("w150"),
        "a token in the history in plaintext"
    );
}

#[flow]
async fn two_stories(ctx: &FlowContext, input: Subject) -> Result<Vec<Story>, FlowError> {
    let (a, b) = futures::future::join(
        ctx.call(tell_story, input.clone()),
        ctx.call(tell_story, input),
    )
    .await;
    Ok(vec![a?, b?])
}

/// Two calls of one agent at once, each streaming: each step's text is its own, whole, and
/// nothing looks like a retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_of_one_name_at_once_keep_their_own_text_on_both_executors() {
    let answer_of = |tag: &str| -> (String, Vec<String>) {
        let mut tokens = vec![r#"{"text": ""#.to_owned()];
        tokens.extend((1..60).map(|i| format!("{tag}{i} ")));
        tokens.push(r#"end."}"#.to_owned());
        (tokens.concat(), tokens)
    };
    let (a, a_tokens) = answer_of("a");
    let (b, b_tokens) = answer_of("b");
    let script = vec![
        stream_of(&a_tokens, Duration::from_millis(15), false),
        stream_of(&b_tokens, Duration::from_millis(15), false),
    ];
    for (executor, flock, _model) in
        super::temporal::on_both("events-parallel", script, streaming).await
    {
        let handle = flock.start_flow(two_stories, subject()).await.unwrap();
        let seen = collect(handle.events().await.unwrap()).await;
        handle.result().await.expect("two stories");
        let mut texts: Vec<String> = [1, 2]
            .iter()
            .map(|n| {
                seen.iter()
                    .filter_map(|(_, e)| match &e.kind {
                        EventKind::Text { step, text, .. } if step == n => Some(text.as_str()),
                        _ => None,
                    })
                    .collect()
            })
            .collect();
        texts.sort();
        assert_eq!(texts, [a.clone(), b.clone()], "{executor}: {seen:#?}");
        assert!(
            !seen.iter().any(|(_, e)| matches!(
                e.kind,
                EventKind::AttemptFailed { .. } | EventKind::StepStarted { attempt: 2.., .. }
            )),
            "{executor}: a retry that was not: {seen:#?}"
        );
    }
}

/// Counts one up: the first and the last step slowly enough for a look to see them running,
/// the ones in between at once (their generations start and end between two looks).
#[agent]
async fn count_up(n: u64) -> u64 {
    if n == 0 || n == 5 {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    n + 1
}

/// Counts to 6, one generation per step.
#[flow]
async fn counting_generations(ctx: &FlowContext, n: u64) -> Result<u64, FlowError> {
    let n = ctx.call(count_up, n).await?;
    if n < 6 {
        return ctx.continue_as_new(counting_generations, n);
    }
    Ok(n)
}

/// A run that continues as new: its stream goes on through every generation, each step
/// started and finished once, and ends once, with the last generation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_continues_as_new_is_watched_to_its_end_on_both_executors() {
    for (executor, flock, _model) in
        super::temporal::on_both("events-generations", vec![], streaming).await
    {
        let handle = flock.start_flow(counting_generations, 0).await.unwrap();
        let seen = collect(handle.events().await.unwrap()).await;
        assert_eq!(handle.result().await.unwrap(), 6, "{executor}");
        let started = seen
            .iter()
            .filter(|(_, e)| matches!(e.kind, EventKind::StepStarted { .. }))
            .count();
        let finished: Vec<u64> = seen
            .iter()
            .filter_map(|(_, e)| match &e.kind {
                EventKind::StepFinished { step, name, .. } if name == "count_up" => Some(*step),
                _ => None,
            })
            .collect();
        assert_eq!(started, 6, "{executor}: {seen:#?}");
        match executor {
            // locally each generation numbers its steps from 1
            "local" => assert_eq!(finished, [1; 6], "{executor}"),
            _ => assert_eq!(finished, [1, 2, 3, 4, 5, 6], "{executor}: {seen:#?}"),
        }
        let ends = seen
            .iter()
            .filter(|(_, e)| matches!(e.kind, EventKind::RunFinished { .. }))
            .count();
        assert_eq!(ends, 1, "{executor}");
    }
}

/// A streamed answer whose text and typed output together would be over the payload limit:
/// the run still completes (the result leaves the text out), on both executors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_answer_near_the_payload_limit_still_completes_on_both_executors() {
    // ~1.2 MB of text: the output fits the 2 MiB limit, the output and its text together do not
    let words: Vec<String> = (0..150_000).map(|i| format!("w{i:06} ")).collect();
    let mut tokens = vec![r#"{"text": ""#.to_owned()];
    tokens.extend(words.chunks(500).map(|chunk| chunk.concat()));
    tokens.push(r#"end."}"#.to_owned());
    let whole = tokens.concat();
    let script = vec![stream_of(&tokens, Duration::ZERO, false)];
    for (executor, flock, _model) in
        super::temporal::on_both("events-large", script, streaming).await
    {
        let handle = flock.start_flow(storytelling, subject()).await.unwrap();
        let story = tokio::time::timeout(BOUND, handle.result())
            .await
            .expect("the run ends")
            .unwrap_or_else(|e| panic!("{executor}: {e}"));
        let expected: Story = serde_json::from_str(&whole).unwrap();
        assert_eq!(story.text.len(), expected.text.len(), "{executor}");
    }
}
