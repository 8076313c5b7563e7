//! Large payloads: an input over Temporal's limit fails fast on both executors with an error
//! naming the agent, the direction and the size; with offload on, a large input round-trips
//! through the blob store and the history holds only the claim check.

use std::future::IntoFuture;
use std::time::{Duration, Instant};

use flock::codec::{Codec, CodecKeys, FsBlobStore, ObjectStoreBlobStore, Offload};
use flock::prelude::*;

use super::conformance::both;
use super::support::Moto;
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
        .queue_served_elsewhere(super::conformance::POOL_QUEUE)
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
    assert_recorded_inputs(&run.record, &input);
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

/// The record of a `p_flow` run on `input` shows the run's and each step's real input (the
/// first step's is the run's, the second's the first's output), read back through the codec.
fn assert_recorded_inputs(record: &flock::RunRecord, input: &Blob) {
    let text = |value: &serde_json::Value| value["text"].as_str().map(str::len);
    assert_eq!(text(&record.input), Some(input.text.len()), "run input");
    assert_eq!(record.steps.len(), 2, "{} steps", record.steps.len());
    assert_eq!(record.steps[0].agent, "p_echo");
    assert_eq!(
        record.steps[0].input,
        serde_json::json!({ "text": input.text }),
        "step 1's recorded input is not the run's input (length {:?})",
        text(&record.steps[0].input)
    );
    assert_eq!(
        text(&record.steps[1].input),
        Some(input.text.len() + 1),
        "step 2's recorded input"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_offload_a_payload_over_max_payload_fails_naming_agent_direction_size_and_limit() {
    let dir = std::env::temp_dir().join(format!("flock-offload-max-{}", std::process::id()));
    // a limit below Temporal's, so that the limit in force is seen to be the offload's
    let codec = Codec::offload_only(
        Offload::new(FsBlobStore::new(&dir))
            .threshold(64 * 1024)
            .max_payload(1024 * 1024),
    );
    for local in [true, false] {
        let executor = if local { "local" } else { "temporal" };
        let flock = Flock::builder()
            .model("test")
            .local_debug(local)
            .queue_served_elsewhere(super::conformance::POOL_QUEUE)
            .temporal(TemporalExecutorConfig {
                codec: Some(codec.clone()),
                ..config("payloads-offload-max")
            })
            .build()
            .await
            .unwrap();
        // the input of the run's first agent: refused before anything is sent
        let error = flock
            .run(p_measure, big(1536 * 1024))
            .await
            .unwrap_err()
            .to_string();
        for part in [
            "the input of flow `p_measure.chain`",
            "1572875 bytes",
            "1048576-byte payload limit",
            "Offload::max_payload",
        ] {
            assert!(error.contains(part), "{executor}: no `{part}` in: {error}");
        }
        // an agent's output over the limit (its input is within it) fails the run, naming it
        let error = flock
            .run_flow(p_flow, big(1024 * 1024 - 11))
            .await
            .unwrap_err()
            .to_string();
        for part in [
            "the output of agent `p_echo`",
            "1048577 bytes",
            "1048576-byte payload limit",
        ] {
            assert!(error.contains(part), "{executor}: no `{part}` in: {error}");
        }
        // within the limit, over Temporal's threshold: it runs
        let ok = flock.run(p_measure, big(900 * 1024)).await.unwrap();
        assert_eq!(ok.text, format!("{} bytes, ends with tail", 900 * 1024));
        flock.shutdown().await.unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_s3_offload_a_large_input_travels_through_the_bucket() {
    use futures::TryStreamExt;
    use object_store::ObjectStore;
    let moto = Moto::start();
    moto.create_bucket("flock-blobs");
    let store: std::sync::Arc<dyn ObjectStore> = std::sync::Arc::new(moto.store("flock-blobs"));
    let blobs = ObjectStoreBlobStore::new(store.clone(), "claims/", "s3://flock-blobs");
    let keys = CodecKeys::new([("k1", [6u8; 32])]).unwrap();
    let codec = Codec::new(keys).with_offload(Offload::new(blobs).threshold(64 * 1024));
    let flock = Flock::builder()
        .model("test")
        .local_debug(false)
        .queue_served_elsewhere(super::conformance::POOL_QUEUE)
        .temporal(TemporalExecutorConfig {
            codec: Some(codec),
            ..config("payloads-offload-s3")
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
    // the record reads the claim checks back: each local agent's input, from its marker
    assert_recorded_inputs(&run.record, &input);
    let history = flock.history_json(&run.record.run_id).await.unwrap();
    assert!(
        history.len() < 64 * 1024,
        "the history is {} bytes: the payloads were not offloaded",
        history.len()
    );
    let objects: Vec<_> = store
        .list(Some(&object_store::path::Path::from("claims")))
        .try_collect()
        .await
        .unwrap();
    assert!(
        objects.len() >= 3,
        "{} objects in the bucket",
        objects.len()
    );
    // the bucket holds ciphertext: none of the input's text
    let first = store
        .get(&objects[0].location)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(
        !first.windows(32).any(|w| w == &input.text.as_bytes()[..32]),
        "a blob holds plaintext"
    );
    flock.shutdown().await.unwrap();
}

/// 20 MB, ten times Temporal's limit, through the bucket. Offload only: AES-GCM's generic code is
/// instantiated in flock, so a debug build encrypts a few MB/s, too slow for 20 MB passing
/// through the codec a dozen times (the test above checks the bucket holds ciphertext).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_s3_offload_a_20_mb_input_round_trips_and_the_history_holds_only_claim_checks() {
    use object_store::ObjectStore;
    let moto = Moto::start();
    moto.create_bucket("flock-blobs-20mb");
    let store: std::sync::Arc<dyn ObjectStore> =
        std::sync::Arc::new(moto.store("flock-blobs-20mb"));
    let blobs = ObjectStoreBlobStore::new(store.clone(), "claims/", "s3://flock-blobs-20mb");
    let codec = Codec::offload_only(Offload::new(blobs));
    let flock = Flock::builder()
        .model("test")
        .local_debug(false)
        .queue_served_elsewhere(super::conformance::POOL_QUEUE)
        .temporal(TemporalExecutorConfig {
            codec: Some(codec),
            ..config("payloads-offload-20mb")
        })
        .build()
        .await
        .unwrap();
    let input = big(20 * 1024 * 1024);
    let run = flock.run_flow(p_flow, input.clone()).recorded().await;
    assert_eq!(
        run.result.unwrap().text,
        format!("{} bytes, ends with ail!", input.text.len() + 1)
    );
    assert_recorded_inputs(&run.record, &input);
    // the raw history (no codec) holds claim checks only
    let history = flock.history_json(&run.record.run_id).await.unwrap();
    let payloads = super::codec::payloads_of(&history);
    let payload_bytes: usize = payloads.iter().map(|p| p.data.len()).sum();
    let claims = payloads
        .iter()
        .filter(|p| p.encoding() == "json/flock-claim-check")
        .count();
    // the large ones: the run's input, `p_echo`'s input and output (scheduled, completed), `p_measure`'s
    // input; `p_measure`'s output and the run's are small and stay in the history
    assert_eq!(claims, 4, "claim checks in the history");
    assert!(
        payload_bytes < 64 * 1024 && history.len() < 256 * 1024,
        "the history is {} bytes, {payload_bytes} of them payloads: the payloads were not offloaded",
        history.len()
    );
    flock.shutdown().await.unwrap();
}

/// Answers with its input, extended; a durable step (its input and output are recorded apart).
#[agent]
async fn p_remote_echo(input: Blob) -> Blob {
    Blob {
        text: format!("{}!", input.text),
    }
}

/// Answers with its input, extended; a local step (its marker holds its input and output).
#[agent(local)]
async fn p_local_echo(input: Blob) -> Blob {
    Blob {
        text: format!("{}!", input.text),
    }
}

#[flow]
async fn p_local_twice(ctx: &FlowContext, input: Blob) -> Result<Blob, FlowError> {
    // A local step's marker holds its input and its output: 2 × 1.5 MiB in one history event.
    ctx.call(p_local_echo, input).await
}

#[flow]
async fn p_remote_twice(ctx: &FlowContext, input: Blob) -> Result<Blob, FlowError> {
    ctx.call(p_remote_echo, input).await
}

#[flow]
async fn p_fan_out(ctx: &FlowContext, input: Blob) -> Result<Blob, FlowError> {
    // Three remote calls scheduled at once: one workflow task completion of 3 × 1.5 MiB.
    let (a, b, c) = flock::try_join!(
        ctx.call(p_remote_echo, input.clone()),
        ctx.call(p_remote_echo, input.clone()),
        ctx.call(p_remote_echo, input),
    )?;
    Ok(Blob {
        text: format!("{} {} {}", a.text.len(), b.text.len(), c.text.len()),
    })
}

/// A local step whose input and output are each under the limit but together over it: on
/// Temporal its record (one marker event holds both) would fail every workflow task and leave
/// the run Running; both executors fail the run, naming the agent, the sizes and the way out. The
/// same step as a remote activity completes (its input and output are recorded apart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_step_whose_input_and_output_together_exceed_the_limit_fails_the_run() {
    for (executor, flock) in both("payloads-add-up").await {
        let input = big(1536 * 1024);
        let error = tokio::time::timeout(
            Duration::from_secs(60),
            flock.run_flow(p_local_twice, input.clone()).into_future(),
        )
        .await
        .unwrap_or_else(|_| panic!("{executor}: p_local_twice stayed running"))
        .unwrap_err();
        let (agent, attempts, _) = error.agent_error().expect("the agent failed the run");
        assert_eq!(
            (agent, attempts),
            ("p_local_echo", 1),
            "{executor}: {error}"
        );
        let error = error.to_string();
        assert!(
            error.contains("agent `p_local_echo` runs as a local activity")
                && error.contains("(1572875 bytes as JSON)")
                && error.contains("(1572876 bytes)")
                && error.contains("3145751 bytes")
                && error.contains("drop `local`"),
            "{executor}: {error}"
        );
        let remote = tokio::time::timeout(
            Duration::from_secs(60),
            flock.run_flow(p_remote_twice, input).into_future(),
        )
        .await
        .unwrap_or_else(|_| panic!("{executor}: p_remote_twice stayed running"))
        .unwrap();
        assert_eq!(remote.text.len(), 1536 * 1024 + 1, "{executor}");
    }
}

/// Calls scheduled at once whose inputs together exceed what one workflow task completion may
/// carry (about 4 MiB): Temporal terminates the run, and the error says why. (The local executor
/// has no such limit: this is where the executors differ, as README.md says.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_scheduled_at_once_over_the_task_limit_end_the_run_saying_why() {
    let [(_, local), (_, temporal)] = both("payloads-fan-out").await;
    let input = big(1536 * 1024);
    let fine = local.run_flow(p_fan_out, input.clone()).await.unwrap();
    assert_eq!(fine.text, "1572865 1572865 1572865");
    let error = tokio::time::timeout(
        Duration::from_secs(60),
        temporal.run_flow(p_fan_out, input).into_future(),
    )
    .await
    .expect("p_fan_out stayed running")
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("p_fan_out")
            && error.contains("terminated: GrpcMessageTooLarge")
            && error.contains("more data at once than one workflow task"),
        "{error}"
    );
}
