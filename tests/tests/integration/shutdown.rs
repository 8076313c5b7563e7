//! Stopping a standalone worker process (`FlockWorker::run`) with SIGTERM, as Kubernetes and
//! systemd do: it drains the agent attempt in flight within its grace period, against the dev
//! server of `temporal.rs`. Every process signalled or killed here is one this test started.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use flock::prelude::*;
use flock_tests::shutdown::{self, Job, s_flow, s_flow_local, s_two_steps};

use super::support::wait_for;
use crate::temporal::server;

/// A worker process of this test; SIGKILLed (by its PID) if the test ends with it still running.
struct WorkerProcess {
    child: Child,
    stderr: PathBuf,
}

impl WorkerProcess {
    fn start(task_queue: &str, file: &Path, env: &[(&str, &str)]) -> WorkerProcess {
        let stderr = unique(file);
        let mut command = Command::new(env!("CARGO_BIN_EXE_shutdown_worker"));
        command
            .env("TEMPORAL_ADDRESS", server())
            .env("FLOCK_TASK_QUEUE", task_queue)
            .env(shutdown::FILE_VAR, file)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap());
        for (name, value) in env {
            command.env(name, value);
        }
        WorkerProcess {
            child: command.spawn().expect("the shutdown worker starts"),
            stderr,
        }
    }

    /// Sends SIGTERM to this process (by PID, with the system's `kill`).
    fn terminate(&self) {
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("`kill` runs");
        assert!(sent.success(), "kill -TERM {} failed", self.child.id());
    }

    async fn exit_within(&mut self, timeout: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                started.elapsed() < timeout,
                "the worker did not exit within {timeout:?}; its stderr: {}",
                self.stderr_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(&self.stderr);
    }
}

fn unique(path: &Path) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    path.with_extension(format!("stderr-{n}"))
}

fn side_effect_file(name: &str) -> PathBuf {
    let file = std::env::temp_dir().join(format!("flock-{name}-{}", std::process::id()));
    let _ = std::fs::remove_file(&file);
    file
}

fn count(file: &Path, event: &str) -> usize {
    std::fs::read_to_string(file)
        .map(|text| text.lines().filter(|line| *line == event).count())
        .unwrap_or(0)
}

async fn client(task_queue: &str) -> Flock {
    Flock::builder()
        .local_debug(false)
        .in_process_worker(false)
        .temporal(TemporalExecutorConfig {
            server_url: server(),
            task_queue: task_queue.to_owned(),
            ..Default::default()
        })
        .build()
        .await
        .expect("a client-only Flock on the test dev server")
}

fn job(name: &str) -> Job {
    Job { name: name.into() }
}

/// SIGTERM while the agent runs: the worker finishes the attempt and exits 0; a second worker
/// completes the flow without running the agent again.
async fn drains_on_sigterm<F: Flow<Input = Job, Output = Job>>(task_queue: &str, flow: F) {
    let env: &[(&str, &str)] = &[];
    let file = side_effect_file(task_queue);
    let client = client(task_queue).await;
    let mut first = WorkerProcess::start(task_queue, &file, env);
    let handle = client
        .run_flow(flow, job(task_queue))
        .start()
        .await
        .unwrap();
    wait_for("the agent to start", Duration::from_secs(60), || {
        count(&file, "slow-start") == 1
    })
    .await;
    first.terminate();
    let status = first.exit_within(Duration::from_secs(30)).await;
    let stderr = first.stderr_text();
    assert_eq!(
        status.code(),
        Some(0),
        "the worker exits 0 after draining, not at once ({status}); its stderr: {stderr}"
    );
    assert_eq!(
        count(&file, "slow-done"),
        1,
        "the attempt in flight finished before the worker exited; its stderr: {stderr}"
    );
    assert!(
        stderr.contains("SIGTERM received") && stderr.contains("30s"),
        "the worker says what it is doing: {stderr}"
    );

    // the flow's next workflow task goes to a new worker, which has nothing left to run twice
    // (with a local activity the flow may complete on the first worker already)
    let mut second = WorkerProcess::start(task_queue, &file, env);
    let result = tokio::time::timeout(Duration::from_secs(60), handle.result()).await;
    wait_for(
        "the second worker to serve",
        Duration::from_secs(30),
        || second.stderr_text().contains("flock worker: serving"),
    )
    .await;
    second.terminate();
    let second_status = second.exit_within(Duration::from_secs(30)).await;
    let job = result.expect("the flow completes").unwrap();
    assert_eq!(job.name, format!("{task_queue} (done)"));
    assert_eq!(count(&file, "slow-start"), 1, "the agent ran exactly once");
    assert_eq!(count(&file, "slow-done"), 1);
    assert_eq!(
        second_status.code(),
        Some(0),
        "an idle worker stops at once: {}",
        second.stderr_text()
    );
    let _ = std::fs::remove_file(&file);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_the_attempt_in_flight_and_exits_0() {
    drains_on_sigterm("shutdown-drain", s_flow).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_a_local_activity_in_flight_too() {
    drains_on_sigterm("shutdown-drain-local", s_flow_local).await;
}

/// An agent slower than the grace period: in the grace period's last part the SDK cancels the
/// attempt, the agent sees the cancellation and stops (its future is dropped), and the worker
/// exits 0 within the grace period; the attempt does not finish here (Temporal retries it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_cancels_attempts_still_running_at_the_end_of_its_grace_period() {
    let task_queue = "shutdown-grace";
    let file = side_effect_file(task_queue);
    let client = client(task_queue).await;
    let env = [("FLOCK_AGENT_MS", "60000"), ("FLOCK_GRACE_MS", "6000")];
    let mut worker = WorkerProcess::start(task_queue, &file, &env);
    let _handle = client
        .run_flow(s_flow, job(task_queue))
        .start()
        .await
        .unwrap();
    wait_for("the agent to start", Duration::from_secs(60), || {
        count(&file, "slow-start") == 1
    })
    .await;
    let signalled = Instant::now();
    worker.terminate();
    let status = worker.exit_within(Duration::from_secs(20)).await;
    let waited = signalled.elapsed();
    let stderr = worker.stderr_text();
    assert_eq!(status.code(), Some(0), "{status}; its stderr: {stderr}");
    assert!(
        waited >= Duration::from_millis(500) && waited < Duration::from_secs(10),
        "it waited {waited:?} for a grace period of 6 s"
    );
    assert_eq!(
        count(&file, "slow-done"),
        0,
        "the cancelled attempt stopped"
    );
    let _ = std::fs::remove_file(&file);
}

/// A second SIGTERM stops a draining worker without waiting for the grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_stops_a_draining_worker_at_once() {
    let task_queue = "shutdown-twice";
    let file = side_effect_file(task_queue);
    let client = client(task_queue).await;
    let env = [("FLOCK_AGENT_MS", "60000")];
    let mut worker = WorkerProcess::start(task_queue, &file, &env);
    let _handle = client
        .run_flow(s_flow, job(task_queue))
        .start()
        .await
        .unwrap();
    wait_for("the agent to start", Duration::from_secs(60), || {
        count(&file, "slow-start") == 1
    })
    .await;
    worker.terminate();
    wait_for(
        "the worker to start draining",
        Duration::from_secs(10),
        || worker.stderr_text().contains("SIGTERM received;"),
    )
    .await;
    let signalled = Instant::now();
    worker.terminate();
    let status = worker.exit_within(Duration::from_secs(10)).await;
    let stderr = worker.stderr_text();
    assert_eq!(status.code(), Some(1), "{status}; its stderr: {stderr}");
    assert!(signalled.elapsed() < Duration::from_secs(5), "{stderr}");
    assert!(
        stderr.contains("received again") && stderr.contains("abandoned"),
        "{stderr}"
    );
    let _ = std::fs::remove_file(&file);
}

/// SIGTERM during the first of two default code agents: the draining worker finishes that
/// attempt and exits 0 without starting the second (it takes no new work); a new worker runs the
/// second. As local activities (the earlier default) the draining worker ran on into the second
/// step inside the same workflow task and abandoned it when its grace period ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_worker_starts_no_new_step() {
    let task_queue = "shutdown-two-steps";
    let file = side_effect_file(task_queue);
    let client = client(task_queue).await;
    let env = [("FLOCK_AGENT_MS", "2000"), ("FLOCK_GRACE_MS", "3000")];
    let mut first = WorkerProcess::start(task_queue, &file, &env);
    let handle = client
        .run_flow(s_two_steps, job(task_queue))
        .start()
        .await
        .unwrap();
    wait_for("the first step to start", Duration::from_secs(60), || {
        count(&file, "step-start") == 1
    })
    .await;
    first.terminate();
    let status = first.exit_within(Duration::from_secs(20)).await;
    let stderr = first.stderr_text();
    assert_eq!(status.code(), Some(0), "{status}; its stderr: {stderr}");
    assert_eq!(
        (count(&file, "step-start"), count(&file, "step-done")),
        (1, 1),
        "the draining worker finished the first step and started no other; its stderr: {stderr}"
    );
    let _second = WorkerProcess::start(task_queue, &file, &env);
    let result = tokio::time::timeout(Duration::from_secs(60), handle.result()).await;
    let job = result.expect("the flow completes").unwrap();
    assert_eq!(job.name, format!("{task_queue} + +"));
    assert_eq!(count(&file, "step-start"), 2, "each step started once");
    let _ = std::fs::remove_file(&file);
}
