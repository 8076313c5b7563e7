//! Connecting with a wrong address, TLS or API key, or bad PEM files: each a clear error naming
//! the setting at fault, against the real (plaintext) dev server of `temporal.rs`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use flock::prelude::*;

use crate::temporal::server;

async fn build(config: TemporalExecutorConfig) -> Result<Flock, flock::Error> {
    Flock::builder()
        .local_debug(false)
        .in_process_worker(false)
        .temporal(config)
        .build()
        .await
}

async fn build_err(config: TemporalExecutorConfig) -> String {
    match build(config).await {
        Ok(_) => panic!("the configuration was accepted"),
        Err(error) => error.to_string(),
    }
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// A file of the test's own, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, contents: &[u8]) -> TempFile {
        let path =
            std::env::temp_dir().join(format!("flock-connect-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// What a user-facing message must not contain: Rust `Debug` output of the SDK's errors.
fn assert_no_debug_dump(text: &str) {
    for dump in [
        "(())",
        "ConnectError",
        "HttpsUriWithoutTlsSupport",
        "Some(",
        "{ ",
    ] {
        assert!(!text.contains(dump), "a Debug dump ({dump:?}) in: {text}");
    }
}

#[tokio::test]
async fn an_address_without_a_port_is_rejected_without_dialling() {
    for address in [
        "127.0.0.1",
        "localhost",
        "http://127.0.0.1",
        "https://localhost",
    ] {
        let started = Instant::now();
        let text = build_err(TemporalExecutorConfig {
            server_url: address.into(),
            ..Default::default()
        })
        .await;
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{address:?} took {:?}: it was dialled",
            started.elapsed()
        );
        assert!(
            text.contains("server_url")
                && text.contains(&format!("{address:?}"))
                && text.contains("no port")
                && text.contains("host:port")
                && text.contains("7233"),
            "{address:?}: {text}"
        );
        assert_no_debug_dump(&text);
    }
}

#[tokio::test]
async fn tls_against_a_plaintext_server_says_tls_was_requested_and_how_to_drop_it() {
    let server = server();
    let cases = [
        (
            TemporalExecutorConfig {
                server_url: format!("https://{server}"),
                ..Default::default()
            },
            "`https://`",
        ),
        (
            TemporalExecutorConfig {
                server_url: server.clone(),
                api_key: Some("test-key".into()),
                ..Default::default()
            },
            "`api_key`",
        ),
        (
            TemporalExecutorConfig {
                server_url: server.clone(),
                tls_cert_path: Some(fixture("client.pem")),
                tls_key_path: Some(fixture("client.key")),
                ..Default::default()
            },
            "`tls_cert_path`",
        ),
    ];
    for (config, reason) in cases {
        let started = Instant::now();
        let text = build_err(config).await;
        assert!(started.elapsed() < Duration::from_secs(15), "{reason}");
        assert!(
            text.contains(&server)
                && text.contains("does not speak TLS")
                && text.contains(reason)
                && text.contains(&format!("http://{server}")),
            "{reason}: {text}"
        );
        assert!(
            !text.contains("test-key"),
            "the API key is never printed: {text}"
        );
        assert_no_debug_dump(&text);
    }
}

#[tokio::test]
async fn an_api_key_over_explicit_http_reaches_a_plaintext_server() {
    let flock = build(TemporalExecutorConfig {
        server_url: format!("http://{}", server()),
        api_key: Some("test-key".into()),
        ..Default::default()
    })
    .await
    .expect("`http://` sends the API key without TLS");
    flock.shutdown().await.unwrap();
}

#[tokio::test]
async fn client_certificates_over_explicit_http_are_a_contradiction() {
    let text = build_err(TemporalExecutorConfig {
        server_url: format!("http://{}", server()),
        tls_cert_path: Some(fixture("client.pem")),
        tls_key_path: Some(fixture("client.key")),
        ..Default::default()
    })
    .await;
    assert!(
        text.contains("`http://`") && text.contains("tls_cert_path"),
        "{text}"
    );
    assert_no_debug_dump(&text);
}

#[tokio::test]
async fn a_bad_pem_file_is_named_before_connecting() {
    let garbage = TempFile::new("garbage.pem", b"this is not a certificate\n");
    let cert = fixture("client.pem");
    let key = fixture("client.key");
    let other_key = fixture("other.key");
    // (cert, key, the file the error must name, what it must say)
    let cases: [(&Path, &Path, &Path, &str); 5] = [
        (&garbage.0, &key, &garbage.0, "not a PEM certificate"),
        (&cert, &garbage.0, &garbage.0, "not a PEM private key"),
        (&key, &key, &key, "a private key, not a certificate"),
        (&cert, &cert, &cert, "a certificate, not a private key"),
        (
            &cert,
            &other_key,
            &other_key,
            "does not belong to the certificate",
        ),
    ];
    for (cert_path, key_path, named, says) in cases {
        let text = build_err(TemporalExecutorConfig {
            server_url: server(),
            tls_cert_path: Some(cert_path.to_owned()),
            tls_key_path: Some(key_path.to_owned()),
            ..Default::default()
        })
        .await;
        assert!(
            text.contains(&named.display().to_string()) && text.contains(says),
            "{}: {text}",
            named.display()
        );
        assert!(!text.contains("cannot reach"), "{text}");
        assert_no_debug_dump(&text);
    }
}
