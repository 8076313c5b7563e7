//! Payload encryption on a real dev server: the history holds no plaintext of inputs, prompts,
//! answers or error messages; the codec server (real HTTP) gives them back to callers with the
//! token and the allowed origin; after a key rotation old runs still decode and record; a wrong
//! or missing key is a clear error naming the key; a worker that cannot decode fails the run.

use std::time::Duration;

use flock::codec::{Codec, CodecKeys, CodecServerOptions, Payload};
use flock::prelude::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::temporal::config;

const SECRET_INPUT: &str = "input-4f1c-classified";
const SECRET_ERROR: &str = "error-9a7e-classified";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Secret {
    /// The private text.
    pub text: String,
}

/// Answers with the input, marked.
#[agent]
async fn enc_echo(input: Secret) -> Secret {
    Secret {
        text: format!("{} answered", input.text),
    }
}

/// Fails with a message carrying the input.
#[agent(retry(attempts = 1))]
async fn enc_fail(input: Secret) -> Result<Secret, AgentError> {
    Err(AgentError::permanent(format!(
        "{SECRET_ERROR} about {}",
        input.text
    )))
}

/// A declarative agent: the test model answers; the prompt holds the input.
#[agent]
async fn enc_model(input: Secret) -> Secret;

#[flow]
async fn enc_flow(ctx: &FlowContext, input: Secret) -> Result<Secret, FlowError> {
    let echoed = ctx.call(enc_echo, input).await?;
    let _ = ctx.call(enc_model, echoed.clone()).await?;
    Ok(echoed)
}

#[flow]
async fn enc_failing(ctx: &FlowContext, input: Secret) -> Result<Secret, FlowError> {
    ctx.call(enc_fail, input).await
}

fn keys(spec: &[(&str, u8)]) -> Codec {
    Codec::new(CodecKeys::new(spec.iter().map(|(id, b)| (*id, [*b; 32]))).unwrap())
}

async fn flock_with(queue: &str, codec: Option<Codec>, worker: bool) -> Flock {
    Flock::builder()
        .model("test")
        .local_debug(false)
        .in_process_worker(worker)
        .queue_served_elsewhere(super::conformance::POOL_QUEUE)
        .temporal(TemporalExecutorConfig {
            codec,
            ..config(queue)
        })
        .build()
        .await
        .expect("a Flock on the test dev server")
}

/// Every payload of a history (JSON), as the server stores it.
pub(super) fn payloads_of(history: &[u8]) -> Vec<Payload> {
    fn walk(value: &Value, out: &mut Vec<Payload>) {
        match value {
            Value::Object(map) => {
                if map.get("metadata").is_some_and(Value::is_object)
                    && let Ok(payload) = Payload::from_proto_json(value)
                {
                    out.push(payload);
                }
                map.values().for_each(|v| walk(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let json: Value = serde_json::from_slice(history).unwrap();
    let mut out = Vec::new();
    walk(&json, &mut out);
    out
}

/// Where `needle` is readable in a history: in its raw JSON or any payload's bytes.
fn plaintext_in(history: &[u8], needle: &str) -> bool {
    String::from_utf8_lossy(history).contains(needle)
        || payloads_of(history)
            .iter()
            .any(|p| String::from_utf8_lossy(&p.data).contains(needle))
}

/// One HTTP/1.1 request to the codec server: (status, body).
async fn http(
    address: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response[9..12].parse().unwrap();
    (status, response)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_holds_ciphertext_only_and_the_codec_server_decodes_it() {
    // Control: without a codec the same run leaves its input readable in the history (so the
    // check below can fail).
    let plain = flock_with("codec-plain", None, true).await;
    let run = plain
        .run_flow(
            enc_flow,
            Secret {
                text: SECRET_INPUT.into(),
            },
        )
        .recorded()
        .await;
    run.result.unwrap();
    let history = plain.history_json(&run.record.run_id).await.unwrap();
    assert!(plaintext_in(&history, SECRET_INPUT));

    let codec = keys(&[("k1", 1)]);
    let flock = flock_with("codec-k1", Some(codec.clone()), true).await;
    let ok = flock
        .run_flow(
            enc_flow,
            Secret {
                text: SECRET_INPUT.into(),
            },
        )
        .recorded()
        .await;
    assert_eq!(ok.result.unwrap().text, format!("{SECRET_INPUT} answered"));
    assert_eq!(ok.record.steps.len(), 2, "{:?}", ok.record.steps);
    // the record reads back through the codec: the local code agent's input (from its marker),
    // the model agent's input and answer
    assert_eq!(ok.record.steps[0].input["text"], SECRET_INPUT);
    assert_eq!(
        ok.record.steps[1].input["text"],
        format!("{SECRET_INPUT} answered")
    );
    assert_eq!(
        ok.record.steps[1].output.as_ref().unwrap()["text"],
        "text example"
    );
    let failed = flock
        .run_flow(
            enc_failing,
            Secret {
                text: SECRET_INPUT.into(),
            },
        )
        .recorded()
        .await;
    let error = failed.result.unwrap_err().to_string();
    assert!(error.contains(SECRET_ERROR), "{error}");
    let step_error = failed.record.steps[0].error.as_ref().unwrap().to_string();
    assert!(step_error.contains(SECRET_ERROR), "{step_error}");

    let ok_history = flock.history_json(&ok.record.run_id).await.unwrap();
    let failed_history = flock.history_json(&failed.record.run_id).await.unwrap();
    for (history, what) in [(&ok_history, "ok"), (&failed_history, "failed")] {
        for needle in [SECRET_INPUT, SECRET_ERROR, "answered", "text example"] {
            assert!(
                !plaintext_in(history, needle),
                "`{needle}` readable in the {what} run's history"
            );
        }
        assert!(
            payloads_of(history)
                .iter()
                .any(|p| p.encoding() == "binary/encrypted")
        );
    }

    // The codec server gives them back, to callers with the token and the allowed origin.
    let server = flock::codec::serve(
        "127.0.0.1:0".parse().unwrap(),
        codec,
        CodecServerOptions {
            bearer_token: Some("let-me-in".into()),
            allowed_origin: Some("http://ui.example".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let encrypted: Vec<Value> = payloads_of(&failed_history)
        .iter()
        .filter(|p| p.encoding() == "binary/encrypted")
        .map(Payload::to_proto_json)
        .collect();
    let body = serde_json::json!({ "payloads": encrypted }).to_string();
    let auth = ("Authorization", "Bearer let-me-in");
    let (status, response) = http(server.local_addr(), "POST", "/decode", &[auth], &body).await;
    assert_eq!(status, 200, "{response}");
    let json: Value = serde_json::from_str(response.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    let decoded: Vec<Payload> = json["payloads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| Payload::from_proto_json(p).unwrap())
        .collect();
    let text: String = decoded
        .iter()
        .map(|p| String::from_utf8_lossy(&p.data).into_owned())
        .collect();
    assert!(text.contains(SECRET_INPUT), "{text}");
    assert!(text.contains(SECRET_ERROR), "{text}");

    let (status, _) = http(server.local_addr(), "POST", "/decode", &[], &body).await;
    assert_eq!(status, 401);
    let (status, _) = http(
        server.local_addr(),
        "POST",
        "/decode",
        &[("Authorization", "Bearer guess")],
        &body,
    )
    .await;
    assert_eq!(status, 401);
    let (status, response) = http(
        server.local_addr(),
        "OPTIONS",
        "/decode",
        &[
            ("Origin", "http://ui.example"),
            ("Access-Control-Request-Method", "POST"),
        ],
        "",
    )
    .await;
    assert_eq!(status, 204, "{response}");
    assert!(
        response
            .to_lowercase()
            .contains("access-control-allow-origin: http://ui.example"),
        "{response}"
    );
    let (status, response) = http(
        server.local_addr(),
        "POST",
        "/decode",
        &[auth, ("Origin", "http://evil.example")],
        &body,
    )
    .await;
    assert_eq!(status, 403, "{response}");
    assert!(
        !response
            .to_lowercase()
            .contains("access-control-allow-origin")
    );
    // encode round-trips through decode
    let plain =
        serde_json::json!({"payloads": [Payload::json(&serde_json::json!("hi")).to_proto_json()]});
    let (status, response) = http(
        server.local_addr(),
        "POST",
        "/encode",
        &[auth],
        &plain.to_string(),
    )
    .await;
    assert_eq!(status, 200, "{response}");
    assert!(response.contains("YmluYXJ5L2VuY3J5cHRlZA=="), "{response}"); // binary/encrypted

    // Rotation: a new current key, the old one kept for reading.
    let rotated = flock_with("codec-k1", Some(keys(&[("k2", 2), ("k1", 1)])), false).await;
    let old = rotated
        .flow_handle(enc_flow, ok.record.run_id.clone())
        .unwrap()
        .result()
        .await
        .unwrap();
    assert_eq!(old.text, format!("{SECRET_INPUT} answered"));
    // and its record, read back through the rotated keys
    let old_record = rotated.run_record(&ok.record.run_id).await.unwrap();
    assert_eq!(old_record.input["text"], SECRET_INPUT);
    assert_eq!(old_record.steps.len(), 2, "{:?}", old_record.steps);
    assert_eq!(old_record.steps[0].input["text"], SECRET_INPUT);
    assert_eq!(
        old_record.steps[1].output.as_ref().unwrap()["text"],
        "text example"
    );
    rotated.replay(&ok_history).await.unwrap();
    drop(rotated);
    let rotated = flock_with("codec-k2", Some(keys(&[("k2", 2), ("k1", 1)])), true).await;
    let again = rotated
        .run_flow(
            enc_flow,
            Secret {
                text: "after rotation".into(),
            },
        )
        .recorded()
        .await;
    again.result.unwrap();
    assert_eq!(
        again.record.steps[1].input["text"],
        "after rotation answered"
    );
    let history = rotated.history_json(&again.record.run_id).await.unwrap();
    assert!(payloads_of(&history).iter().any(|p| {
        p.metadata
            .get("encryption-key-id")
            .is_some_and(|id| id == b"k2")
    }));

    // A missing key and a wrong key are errors that name the key.
    let missing = flock_with("codec-k1", Some(keys(&[("k3", 3)])), false).await;
    let error = missing
        .flow_handle(enc_flow, ok.record.run_id.clone())
        .unwrap()
        .result()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("`k1`") && error.contains("not configured"),
        "{error}"
    );
    let wrong = flock_with("codec-k1", Some(keys(&[("k1", 9)])), false).await;
    let error = wrong
        .flow_handle(enc_flow, ok.record.run_id.clone())
        .unwrap()
        .result()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("`k1`") && error.contains("does not decrypt"),
        "{error}"
    );
    let none = flock_with("codec-k1", None, false).await;
    let error = none
        .flow_handle(enc_flow, ok.record.run_id.clone())
        .unwrap()
        .result()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("`k1`") && error.contains("no codec keys"),
        "{error}"
    );
    // The run's record, read back by id: the same errors, never a record of nulls.
    for (flock, reason) in [
        (&missing, "not configured"),
        (&wrong, "does not decrypt"),
        (&none, "no codec keys"),
    ] {
        let error = flock
            .run_record(&ok.record.run_id)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(&ok.record.run_id) && error.contains("`k1`") && error.contains(reason),
            "{error}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_without_the_key_fails_the_run_naming_the_key() {
    let queue = "codec-undecodable";
    let client = flock_with(queue, Some(keys(&[("kA", 1)])), false).await;
    let handle = client
        .run_flow(
            enc_flow,
            Secret {
                text: SECRET_INPUT.into(),
            },
        )
        .start()
        .await
        .unwrap();
    // The worker has another key only: it cannot read the run's input.
    let worker = flock_with(queue, Some(keys(&[("kB", 2)])), true).await;
    let error = tokio::time::timeout(
        Duration::from_secs(30),
        worker.flow_handle(enc_flow, handle.id()).unwrap().result(),
    )
    .await
    .expect("the run fails, it does not hang")
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("`kA`") && error.contains("not configured"),
        "{error}"
    );
    // The client holds kA: the failure the worker wrote is encrypted with kB, which it says,
    // rather than "Encoded failure".
    let error = tokio::time::timeout(Duration::from_secs(30), handle.result())
        .await
        .expect("the result comes")
        .unwrap_err();
    assert!(
        matches!(&error, flock::Error::Undecodable { status, .. } if status == "failed"),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(
        text.contains("failed") && text.contains("`kB`") && !text.contains("Encoded failure"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_the_key_says_the_run_completed_and_which_key_it_lacks() {
    let queue = "codec-keyless-client";
    let worker = flock_with(queue, Some(keys(&[("kA", 1)])), true).await;
    let input = Secret {
        text: SECRET_INPUT.into(),
    };
    let run = worker.run_flow(enc_flow, input).start().await.unwrap();
    run.result().await.expect("the run completes");
    for client in [
        flock_with(queue, None, false).await,
        flock_with(queue, Some(keys(&[("kZ", 9)])), false).await,
    ] {
        let error = client
            .flow_handle(enc_flow, run.id())
            .unwrap()
            .result()
            .await
            .unwrap_err();
        assert!(
            matches!(&error, flock::Error::Undecodable { status, .. } if status == "completed"),
            "{error:?}"
        );
        let text = error.to_string();
        assert!(
            text.contains("completed") && text.contains("`kA`") && text.contains("result"),
            "{text}"
        );
    }
}

/// `flock::cli::run(Flock::builder())`, the README's one-liner, with `FLOCK_CODEC_KEYS`: the
/// history of a run of the seed pipeline holds ciphertext only; malformed keys stop the worker,
/// naming the variable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_one_liner_applies_the_environment_keys_and_refuses_bad_ones() {
    use std::process::{Command, Stdio};
    let queue = "codec-cli-env";
    let key = format!("k1:{}", "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=");
    let cli = |args: &[&str], keys: &str| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_flock_cli"));
        command
            .args(args)
            .env("TEMPORAL_ADDRESS", super::temporal::server())
            .env("FLOCK_TASK_QUEUE", queue)
            .env("FLOCK_CODEC_KEYS", keys)
            .env_remove("FLOCK_FORCE_MODEL")
            .stdin(Stdio::null());
        command
    };
    let mut worker = cli(&["worker"], &key)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let run_id = format!("codec-cli-{}", std::process::id());
    let ran = cli(
        &[
            "run",
            "research_flow",
            "--id",
            &run_id,
            "-o",
            "json",
            "--quiet",
            "--input",
            &format!(r#"{{"topic": "{SECRET_INPUT}"}}"#),
        ],
        &key,
    )
    .output()
    .unwrap();
    let _ = worker.kill();
    let _ = worker.wait();
    assert!(
        ran.status.success(),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    let history = flock_with(queue, Some(keys(&[("k1", 1)])), false)
        .await
        .history_json(&run_id)
        .await
        .unwrap();
    assert!(
        !plaintext_in(&history, SECRET_INPUT),
        "the input is in the clear"
    );
    let encrypted = payloads_of(&history)
        .iter()
        .filter(|p| p.encoding() == "binary/encrypted")
        .count();
    assert!(encrypted > 0, "no encrypted payload in the history");

    for (bad, says) in [
        ("garbage", "not `id:base64key`"),
        ("k1:not-base64!", "not standard base64"),
        (":AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=", "non-empty"),
        (&format!("{key},{key}") as &str, "given twice"),
    ] {
        let out = cli(&["worker"], bad)
            .stdout(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "`{bad}` was accepted: {stderr}");
        assert!(
            stderr.contains("FLOCK_CODEC_KEYS") && stderr.contains(says),
            "`{bad}`: {stderr}"
        );
        assert!(!stderr.contains("AQEBAQ"), "the key is printed: {stderr}");
    }
}
