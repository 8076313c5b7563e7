//! Worker Deployment Versioning: versioned workers, the current version, pinned runs.

use std::time::Duration;

use flock::prelude::*;
use flock::{Deployment, Error};

use super::conformance::POOL_QUEUE;
use super::support::unique;
use super::temporal::config;

const BOUND: Duration = Duration::from_secs(60);

/// Waits for one `go` signal and returns its value.
#[flow(signals(go: u32))]
async fn versioned(ctx: &FlowContext, _input: ()) -> Result<u32, FlowError> {
    ctx.wait(versioned::go).await
}

/// A Flock whose in-process worker is build `build` of deployment `name`.
async fn build(queue: &str, deployment: Deployment) -> Result<Flock, Error> {
    Flock::builder()
        .model("test")
        .local_debug(false)
        .queue_served_elsewhere(POOL_QUEUE)
        .temporal(TemporalExecutorConfig {
            deployment: Some(deployment),
            ..config(queue)
        })
        .build()
        .await
}

/// Polls until run `run_id` is on a build, and gives it.
async fn build_of(flock: &Flock, run_id: &str) -> String {
    let started = std::time::Instant::now();
    loop {
        if let Some(build) = flock.run_build_id(run_id).await.unwrap() {
            return build;
        }
        assert!(
            started.elapsed() < BOUND,
            "run `{run_id}` never reached a versioned worker"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_run_stays_on_its_build_while_new_runs_go_to_the_current_one() {
    let queue = format!("deployment-{}", unique());
    let name = format!("flock-test-{}", unique());
    let v1 = build(&queue, Deployment::new(&name, "v1")).await.unwrap();
    v1.set_current_version("v1").await.unwrap();
    let first = v1.run_flow(versioned, ()).start().await.unwrap();
    assert_eq!(build_of(&v1, first.id()).await, "v1");

    // build v2 comes up beside v1 and becomes current
    let v2 = build(&queue, Deployment::new(&name, "v2")).await.unwrap();
    v2.set_current_version("v2").await.unwrap();
    let second = v2.run_flow(versioned, ()).start().await.unwrap();
    assert_eq!(build_of(&v2, second.id()).await, "v2");

    // the first run finishes on v1, where it was pinned; the second on v2
    first.signal(versioned::go, 1).await.unwrap();
    second.signal(versioned::go, 2).await.unwrap();
    let results = tokio::time::timeout(BOUND, async {
        (first.result().await, second.result().await)
    })
    .await
    .expect("both runs finish");
    assert_eq!((results.0.unwrap(), results.1.unwrap()), (1, 2));
    assert_eq!(
        v2.run_build_id(first.id()).await.unwrap().as_deref(),
        Some("v1")
    );
    assert_eq!(
        v2.run_build_id(second.id()).await.unwrap().as_deref(),
        Some("v2")
    );
    v1.shutdown().await.unwrap();
    v2.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_deployment_settings_are_clear_errors() {
    let queue = format!("deployment-bad-{}", unique());

    // names the versioning API cannot take
    for (deployment, what) in [
        (Deployment::new("", "v1"), "the deployment name ``"),
        (Deployment::new("billing", "v 1"), "the build id `v 1`"),
        (
            Deployment::new("bill:ing", "v1"),
            "the deployment name `bill:ing`",
        ),
    ] {
        let error = build(&queue, deployment).await.expect_err("refused");
        assert!(
            matches!(&error, Error::Config(m) if m.contains(what)),
            "{what}: {error}"
        );
    }

    // a build no worker serves cannot become current: the error names it and the queue
    let flock = Flock::builder()
        .model("test")
        .local_debug(false)
        .queue_served_elsewhere(POOL_QUEUE)
        .in_process_worker(false)
        .temporal(TemporalExecutorConfig {
            deployment: Some(Deployment::new(format!("flock-test-{}", unique()), "v1")),
            wait_retry_window: Duration::from_secs(1),
            ..config(&queue)
        })
        .build()
        .await
        .unwrap();
    let error = flock
        .set_current_version("v9")
        .await
        .expect_err("no workers");
    let message = error.to_string();
    assert!(
        message.contains("build `v9`") && message.contains(&queue),
        "{message}"
    );

    // without a deployment, and on the local executor, there is nothing to set
    let unversioned = super::temporal::client_only_flock(&queue).await;
    let error = unversioned
        .set_current_version("v1")
        .await
        .expect_err("no deployment");
    assert!(
        error.to_string().contains("no worker deployment"),
        "{error}"
    );
    let local = Flock::builder()
        .model("test")
        .local_debug(true)
        .build()
        .await
        .unwrap();
    let error = local.set_current_version("v1").await.expect_err("local");
    assert!(
        matches!(error, flock::Error::NeedsTemporal { .. }),
        "{error}"
    );
}
