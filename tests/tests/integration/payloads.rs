//! Large payloads: an input over Temporal's limit fails fast on both executors with an error
//! naming the agent, the direction and the size; with offload on, a large input round-trips
//! through the blob store and the history holds only the claim check.

use std::time::{Duration, Instant};

use flock::codec::{Codec, CodecKeys, FsBlobStore, Offload};
use flock::prelude::*;

use super::conformance::both;
use super::temporal::config;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Blob {
    /// The data.
    pub text: String,
}

/// Measures its input.
#[agent]
async fn p_measure(input: Blob) -> Blob {
    Blob {
        text: format!(
            "{} bytes, ends with {}",
            input.text.len(),
            &input.text[input.text.len() - 4..]
        ),
    }
}

/// Answers with its input, extended.
#[agent]
async fn p_echo(input: Blob) -> Blob {
    Blob {
        text: format!("{}!", input.text),
    }
}

#[flow]
async fn p_flow(ctx: &FlowContext, input: Blob) -> Result<Blob, FlowError> {
    let echoed = ctx.call(p_echo, input).await?;
    ctx.call(p_measure, echoed).await
}

fn big(bytes: usize) -> Blob {
    let mut text: String = "x".repeat(bytes - 4);
    text.push_str("tail");
    Blob { text }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_3_mb_input_fails_fast_naming_agent_direction_and_size_on_both_executors() {
    for (executor, flock) in both("payloads-limit").await {
        let started = Instant::now();
        let error = flock
            .run(p_measure, big(3 * 1024 * 1024))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{executor}: slow"
        );
        assert!(
            error.contains("input") && error.contains("p_measure") && error.contains("3145"),
            "{executor}: {error}"
        );
        let error = flock
            .run_flow(p_flow, big(3 * 1024 * 1024))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("input") && error.contains("p_flow") && error.contains("3145"),
            "{executor}: {error}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_offload_a_large_input_travels_as_a_claim_check() {
    let dir = std::env::temp_dir().join(format!("flock-offload-{}", std::process::id()));
    let keys = CodecKeys::new([("k1", [5u8; 32])]).unwrap();
    let codec =
        Codec::new(keys).with_offload(Offload::new(FsBlobStore::new(&dir)).threshold(64 * 1024));
    let flock = Flock::builder()
        .model("test")
        .local_debug(false)
        .queue_served_elsewhere(super::conformance::UNSERVED_QUEUE)
        .temporal(TemporalExecutorConfig {
            codec: Some(codec),
            ..config("payloads-offload")
        })
        .build()
        .await
        .unwrap();
    let input = big(1024 * 1024);
    let run = flock.run_flow(p_flow, input.clone()).recorded().await;
    assert_eq!(
        run.result.unwrap().text,
        format!("{} bytes, ends with ail!", input.text.len() + 1)
    );
    let history = flock.history_json(&run.record.run_id).await.unwrap();
    assert!(
        history.len() < 64 * 1024,
        "the history is {} bytes: the payloads were not offloaded",
        history.len()
    );
    let blobs = std::fs::read_dir(&dir).unwrap().count();
    assert!(blobs >= 3, "{blobs} blobs in {}", dir.display());
    let _ = std::fs::remove_dir_all(&dir);
}
