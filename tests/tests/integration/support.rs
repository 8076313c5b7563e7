//! What several test modules need, in one place: free ports, unique names, waiting for a
//! condition, and the durability worker process.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The names of a record's own steps, in order.
pub(crate) fn step_names(record: &flock::RunRecord) -> Vec<&str> {
    record.steps.iter().map(|s| s.agent.as_str()).collect()
}

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

/// A moto S3 server on a free loopback port (`FLOCK_MOTO_SERVER`, set by `scripts/test`), ended
/// when dropped.
pub(crate) struct Moto {
    child: std::process::Child,
    pub(crate) port: u16,
}

impl Moto {
    pub(crate) fn start() -> Moto {
        let Ok(server) = std::env::var("FLOCK_MOTO_SERVER") else {
            panic!(
                "FLOCK_MOTO_SERVER is not set: the S3 tests (offload, transcripts) need an S3-protocol server; `pip install \"moto[server]\"` and set FLOCK_MOTO_SERVER to its `moto_server` (scripts/test does both)"
            );
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new(&server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {server}: {e}"));
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "moto did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto { child, port }
    }

    pub(crate) fn store(&self, bucket: &str) -> object_store::aws::AmazonS3 {
        object_store::aws::AmazonS3Builder::new()
            .with_endpoint(format!("http://127.0.0.1:{}", self.port))
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_bucket_name(bucket)
            .with_access_key_id("flock-test")
            .with_secret_access_key("flock-test")
            .build()
            .unwrap()
    }

    /// Creates a bucket (S3's `PUT /bucket`).
    pub(crate) fn create_bucket(&self, bucket: &str) {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            stream,
            "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
