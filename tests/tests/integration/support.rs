//! What several test modules need, in one place: free ports, unique names, waiting for a
//! condition, and the durability worker process.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on the loopback interface.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A name no other call in this process (or an earlier run of the tests) gives: the time in
/// nanoseconds and a counter.
pub(crate) fn unique() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{nanos}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Waits until `done` holds, checking every 20 ms; fails the test naming `what` after `timeout`.
pub(crate) async fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The durability worker (`tests/src/bin/durability_worker.rs`) serving `task_queue` of the
/// test server, noting its agents' side effects in `file`, with `env` added.
pub(crate) fn spawn_worker(task_queue: &str, file: &Path, env: &[(&str, &str)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_durability_worker"))
        .env("TEMPORAL_ADDRESS", super::temporal::server())
        .env("FLOCK_TASK_QUEUE", task_queue)
        .env(flock_tests::durability::FILE_VAR, file)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .spawn()
        .expect("the durability worker starts")
}
