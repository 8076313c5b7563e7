//! The codec server: Temporal's remote codec HTTP endpoints (`POST /encode`, `POST /decode`, a
//! JSON body `{"payloads": [...]}`), which the Temporal Web UI ("Codec Server endpoint") and the
//! `temporal` CLI (`--codec-endpoint`, `--codec-auth`) call to show people who are allowed to
//! see them the payloads the server only stores encrypted.

use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use super::{Codec, Payload};
use crate::Error;

/// Who may call the codec server.
#[derive(Clone, Default)]
pub struct CodecServerOptions {
    /// The token every request must carry as `Authorization: Bearer <token>` (the `temporal`
    /// CLI's `--codec-auth "Bearer <token>"`; the Web UI forwards its user's token when
    /// "pass access token" is on). `None` accepts every request: loopback-only setups.
    pub bearer_token: Option<String>,
    /// The one browser origin allowed to call (the Web UI's, e.g. `http://localhost:8233`):
    /// CORS answers name it, requests from other origins are refused. `None` refuses every
    /// request that carries an `Origin` (browsers), and serves the rest (the CLI).
    pub allowed_origin: Option<String>,
    /// The largest request body accepted, in bytes (64 MiB by default when 0).
    pub max_body: usize,
}

impl fmt::Debug for CodecServerOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CodecServerOptions")
            .field(
                "bearer_token",
                &self.bearer_token.as_ref().map(|_| "<redacted>"),
            )
            .field("allowed_origin", &self.allowed_origin)
            .field("max_body", &self.max_body)
            .finish()
    }
}

/// A running codec server; dropping it (or [`shutdown`](Self::shutdown)) stops it.
#[derive(Debug)]
pub struct CodecServer {
    local_addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl CodecServer {
    /// The address it listens on (the port chosen when `addr` asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Its base URL, `http://host:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.local_addr)
    }

    /// Stops accepting connections.
    pub fn shutdown(self) {
        self.task.abort();
    }

    /// Serves until the task ends (it ends only when aborted).
    pub async fn wait(self) {
        let _ = (&mut { self }.task).await;
    }
}

impl Drop for CodecServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a codec server on `addr` decoding and encoding with `codec`.
///
/// ```no_run
/// use flock::codec::{Codec, CodecServerOptions, serve};
///
/// # async fn run() -> Result<(), flock::Error> {
/// let codec = Codec::from_env()?.expect("FLOCK_CODEC_KEYS is set");
/// let server = serve(
///     "127.0.0.1:8081".parse().unwrap(),
///     codec,
///     CodecServerOptions {
///         bearer_token: Some(std::env::var("CODEC_TOKEN").unwrap()),
///         allowed_origin: Some("http://localhost:8233".into()),
///         ..Default::default()
///     },
/// )
/// .await?;
/// println!("temporal workflow show --codec-endpoint {} ...", server.url());
/// server.wait().await;
/// # Ok(()) }
/// ```
pub async fn serve(
    addr: SocketAddr,
    codec: Codec,
    options: CodecServerOptions,
) -> Result<CodecServer, Error> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Config(format!("codec server: cannot listen on {addr}: {e}")))?;
    let local_addr = listener
        .local_addr()
        .map_err(|e| Error::Config(format!("codec server: {e}")))?;
    let state = std::sync::Arc::new((codec, options));
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let state = state.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(handle(&state.0, &state.1, request).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(CodecServer { local_addr, task })
}

type Answer = Response<Full<Bytes>>;

fn answer(status: StatusCode, body: impl Into<Bytes>, content_type: &str) -> Answer {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    if let Ok(value) = HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

fn refuse(status: StatusCode, message: &str) -> Answer {
    answer(status, format!("{message}\n"), "text/plain; charset=utf-8")
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn handle(codec: &Codec, options: &CodecServerOptions, request: Request<Incoming>) -> Answer {
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .map(str::to_owned);
    let allowed = match (&origin, &options.allowed_origin) {
        (None, _) => true,
        (Some(origin), Some(allowed)) => origin == allowed,
        (Some(_), None) => false,
    };
    let mut response = if !allowed {
        refuse(
            StatusCode::FORBIDDEN,
            "this origin may not call the codec server",
        )
    } else if request.method() == Method::OPTIONS {
        answer(StatusCode::NO_CONTENT, Bytes::new(), "text/plain")
    } else {
        serve_request(codec, options, request).await
    };
    if let (true, Some(origin)) = (allowed, origin) {
        let headers = response.headers_mut();
        if let Ok(origin) = HeaderValue::from_str(&origin) {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        }
        headers.insert(header::VARY, HeaderValue::from_static("Origin"));
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("POST, OPTIONS"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type, x-namespace"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    response
}

async fn serve_request(
    codec: &Codec,
    options: &CodecServerOptions,
    request: Request<Incoming>,
) -> Answer {
    if let Some(token) = &options.bearer_token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if !same(given, format!("Bearer {token}").as_bytes()) {
            let mut response = refuse(
                StatusCode::UNAUTHORIZED,
                "missing or wrong `Authorization: Bearer <token>`",
            );
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
    }
    let encode = match request.uri().path().trim_end_matches('/') {
        path if path.ends_with("/encode") => true,
        path if path.ends_with("/decode") => false,
        _ => return refuse(StatusCode::NOT_FOUND, "POST /encode or POST /decode"),
    };
    if request.method() != Method::POST {
        return refuse(
            StatusCode::METHOD_NOT_ALLOWED,
            "POST /encode or POST /decode",
        );
    }
    let max_body = if options.max_body == 0 {
        64 * 1024 * 1024
    } else {
        options.max_body
    };
    let body = match Limited::new(request.into_body(), max_body).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the body is over {max_body} bytes, or broken"),
            );
        }
    };
    let payloads = match parse_payloads(&body) {
        Ok(payloads) => payloads,
        Err(message) => return refuse(StatusCode::BAD_REQUEST, &message),
    };
    let result = if encode {
        codec.encode(payloads).await
    } else {
        codec.decode(payloads).await
    };
    match result {
        Ok(payloads) => {
            let json = serde_json::json!({
                "payloads": payloads.iter().map(Payload::to_proto_json).collect::<Vec<_>>()
            });
            answer(StatusCode::OK, json.to_string(), "application/json")
        }
        Err(error) => refuse(StatusCode::BAD_REQUEST, &error.to_string()),
    }
}

fn parse_payloads(body: &[u8]) -> Result<Vec<Payload>, String> {
    let json: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let list = json
        .get("payloads")
        .and_then(|p| p.as_array())
        .ok_or("the body is not `{\"payloads\": [...]}`")?;
    list.iter()
        .map(|p| Payload::from_proto_json(p).map_err(|e| e.to_string()))
        .collect()
}
