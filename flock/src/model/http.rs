//! The HTTP side of model providers: one pooled HTTPS client per process (hyper 1 + rustls with
//! ring, the stack the Temporal SDK already links), a JSON POST with a deadline, and the mapping
//! from HTTP outcomes to [`AgentError`] classes.
//!
//! The client never retries: retries belong to the executor's policy, which decides them from the
//! class of the error returned here.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::error::AgentError;

type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

fn client() -> Result<&'static HttpsClient, AgentError> {
    static CLIENT: OnceLock<Result<HttpsClient, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            let connector = hyper_rustls::HttpsConnectorBuilder::new()
                .with_provider_and_native_roots(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
                .map_err(|e| format!("no usable TLS root certificates on this system ({e}); install the CA certificates (e.g. the `ca-certificates` package)"))?
                .https_or_http()
                .enable_http1()
                .enable_http2()
                .build();
            Ok(Client::builder(TokioExecutor::new()).build(connector))
        })
        .as_ref()
        .map_err(|message| AgentError::permanent(message.clone()))
}

/// A response, read to the end.
#[derive(Debug)]
pub(crate) struct HttpResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// POSTs `body` as JSON to `url` and reads the whole response within `timeout`.
///
/// Connection failures, resets, timeouts and bodies cut off midway are
/// [`Transient`](AgentError::Transient); the status is left to the caller.
pub(crate) async fn post_json(
    url: &str,
    headers: &[(HeaderName, HeaderValue)],
    body: Vec<u8>,
    timeout: Duration,
) -> Result<HttpResponse, AgentError> {
    let client = client()?;
    let request = json_post(url, headers, body, None)?;
    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| connection_failed(url, &e))?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(|e| {
            AgentError::transient(format!(
                "the response from {url} was cut off (HTTP {}): {}",
                parts.status,
                error_chain(&e)
            ))
        })?;
        Ok(HttpResponse {
            status: parts.status,
            headers: parts.headers,
            body: body.to_bytes(),
        })
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(result) => result,
        Err(_) => Err(AgentError::transient(format!(
            "the request to {url} timed out after {timeout:?}"
        ))),
    }
}

/// What a streamed POST gave: the events of a successful response were handed to the caller
/// one by one; any other response is read whole, for [`classify`].
pub(crate) enum Streamed {
    /// A 2xx response whose events were all handed over.
    Done,
    /// A response that is not 2xx, read whole.
    Failed(HttpResponse),
}

/// POSTs `body` as JSON to `url` and reads a server-sent-event stream: each event's `data` goes
/// to `on_data` as it arrives. `timeout` bounds the wait for the response head and then for each
/// chunk of the stream, not the whole answer: a long answer that keeps streaming is not cut off
/// by it, a stalled one is.
///
/// Connection failures, resets, timeouts and streams cut off midway are
/// [`Transient`](AgentError::Transient); an error from `on_data` ends the stream with it.
pub(crate) async fn post_sse(
    url: &str,
    headers: &[(HeaderName, HeaderValue)],
    body: Vec<u8>,
    timeout: Duration,
    mut on_data: impl FnMut(&str) -> Result<(), AgentError>,
) -> Result<Streamed, AgentError> {
    let client = client()?;
    let request = json_post(url, headers, body, Some("text/event-stream"))?;
    let timed_out = || {
        AgentError::transient(format!(
            "the stream from {url} stalled: nothing came for {timeout:?}"
        ))
    };
    let response = tokio::time::timeout(timeout, client.request(request))
        .await
        .map_err(|_| timed_out())?
        .map_err(|e| connection_failed(url, &e))?;
    let (parts, mut body) = response.into_parts();
    let cut_off = |e: &(dyn std::error::Error + 'static)| {
        AgentError::transient(format!(
            "the stream from {url} was cut off (HTTP {}): {}",
            parts.status,
            error_chain(e)
        ))
    };
    if !parts.status.is_success() {
        let whole = tokio::time::timeout(timeout, body.collect())
            .await
            .map_err(|_| timed_out())?
            .map_err(|e| cut_off(&e))?;
        return Ok(Streamed::Failed(HttpResponse {
            status: parts.status,
            headers: parts.headers,
            body: whole.to_bytes(),
        }));
    }
    let mut events = SseParser::default();
    loop {
        let frame = match tokio::time::timeout(timeout, body.frame()).await {
            Err(_) => return Err(timed_out()),
            Ok(None) => break,
            Ok(Some(frame)) => frame.map_err(|e| cut_off(&e))?,
        };
        if let Ok(bytes) = frame.into_data() {
            for data in events.push(&bytes) {
                on_data(&data)?;
            }
        }
    }
    if let Some(data) = events.finish() {
        on_data(&data)?;
    }
    Ok(Streamed::Done)
}

/// Server-sent events from a byte stream: the `data` of each event (its `data:` lines joined by
/// newlines), events ending at a blank line; comments and other fields are skipped. Chunks may
/// split lines and UTF-8 characters anywhere.
#[derive(Default)]
pub(crate) struct SseParser {
    pending: Vec<u8>,
    data: Option<String>,
}

impl SseParser {
    /// The events completed by `bytes`.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.pending.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                events.extend(self.data.take());
            } else if let Some(value) = line.strip_prefix("data:") {
                let value = value.strip_prefix(' ').unwrap_or(value);
                match &mut self.data {
                    Some(data) => {
                        data.push('\n');
                        data.push_str(value);
                    }
                    None => self.data = Some(value.to_owned()),
                }
            }
        }
        events
    }

    /// The last event, when the stream ended without the blank line after it.
    pub(crate) fn finish(&mut self) -> Option<String> {
        // end the line in progress, if any, then the event
        let ending: &[u8] = if self.pending.is_empty() {
            b"\n"
        } else {
            b"\n\n"
        };
        self.push(ending).pop()
    }
}

/// A JSON POST of `body` to `url` with `headers`, asking for `accept` when given.
fn json_post(
    url: &str,
    headers: &[(HeaderName, HeaderValue)],
    body: Vec<u8>,
    accept: Option<&'static str>,
) -> Result<Request<Full<Bytes>>, AgentError> {
    let mut request = Request::builder().method(Method::POST).uri(url);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    if let Some(accept) = accept {
        request = request.header(hyper::header::ACCEPT, HeaderValue::from_static(accept));
    }
    request
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| AgentError::permanent(format!("invalid request to {url}: {e}")))
}

/// A request that got no response: transient, saying whether the connection was ever made.
fn connection_failed(url: &str, error: &hyper_util::client::legacy::Error) -> AgentError {
    let what = if error.is_connect() {
        "could not connect to"
    } else {
        "the connection failed while talking to"
    };
    AgentError::transient(format!("{what} {url}: {}", error_chain(error)))
}

fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// The delay a rate-limited response asks for: `retry-after-ms` (milliseconds, OpenAI and Azure),
/// else `Retry-After` in seconds or as an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = text("retry-after-ms").and_then(|v| v.parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    let value = text("retry-after")?;
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Who to blame when a key is rejected or missing: what the user should set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyHint {
    /// The key came from this environment variable.
    Env(String),
    /// The key came from the provider's configuration.
    Config(&'static str),
    /// No key was sent; it could come from this variable or the configuration.
    Missing {
        /// The variable that would hold it, when the provider has one.
        env: Option<String>,
        /// The configuration field.
        config: &'static str,
    },
}

impl KeyHint {
    fn advice(&self) -> String {
        match self {
            KeyHint::Env(var) => {
                format!(
                    "the API key in the environment variable `{var}` was rejected: set `{var}` to a valid key"
                )
            }
            KeyHint::Config(field) => {
                format!("the API key given in `{field}` was rejected: configure a valid key")
            }
            KeyHint::Missing {
                env: Some(var),
                config,
            } => {
                format!("no API key was sent: set the environment variable `{var}` (or `{config}`)")
            }
            KeyHint::Missing { env: None, config } => {
                format!("no API key was sent: configure `{config}`")
            }
        }
    }
}

/// What an HTTP failure means for the agent: its class and a message that says what happened
/// and, where the user can fix it, how.
///
/// * 429 → `RateLimited` with the delay the service asked for (an exhausted quota, which waiting
///   does not fix, is `Permanent`);
/// * 408, 409 and 5xx → `Transient`;
/// * 401 and 403 → `Permanent`, naming the key's variable;
/// * other 4xx (bad request, unknown model, context length exceeded) → `Permanent`.
pub(crate) fn classify(
    provider: &str,
    response: &HttpResponse,
    key: &KeyHint,
    now: SystemTime,
) -> AgentError {
    let status = response.status;
    let detail = ErrorDetail::parse(&response.body);
    let said = detail.describe();
    let code = status.as_u16();
    match code {
        429 if detail.code.as_deref() == Some("insufficient_quota")
            || detail.kind.as_deref() == Some("insufficient_quota") =>
        {
            AgentError::permanent(format!(
                "{provider}: HTTP 429, the account's quota is exhausted (waiting will not help){said}"
            ))
        }
        429 => AgentError::rate_limited(
            retry_after(&response.headers, now),
            format!("{provider}: HTTP 429 Too Many Requests{said}"),
        ),
        401 | 403 => AgentError::permanent(format!(
            "{provider}: HTTP {code} {}: {}{said}",
            reason(status),
            key.advice()
        )),
        408 | 409 | 500..=599 => {
            AgentError::transient(format!("{provider}: HTTP {code} {}{said}", reason(status)))
        }
        _ if detail.code.as_deref() == Some("context_length_exceeded") => {
            AgentError::permanent(format!(
                "{provider}: HTTP {code}, the prompt does not fit the model's context window{said}"
            ))
        }
        404 => AgentError::permanent(format!(
            "{provider}: HTTP 404 Not Found (is the model or deployment name right, and the base URL?){said}"
        )),
        _ => AgentError::permanent(format!("{provider}: HTTP {code} {}{said}", reason(status))),
    }
}

fn reason(status: StatusCode) -> &'static str {
    status.canonical_reason().unwrap_or("")
}

/// The `{"error": {"message", "type", "code"}}` body of an OpenAI-style error (or a plain text
/// body), cut to a readable length.
#[derive(Debug, Default)]
struct ErrorDetail {
    message: Option<String>,
    kind: Option<String>,
    code: Option<String>,
}

const MAX_DETAIL: usize = 500;

impl ErrorDetail {
    fn parse(body: &[u8]) -> ErrorDetail {
        let text = |v: Option<&serde_json::Value>| match v {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(value) => {
                let error = value.get("error").unwrap_or(&value);
                if let serde_json::Value::String(message) = error {
                    return ErrorDetail {
                        message: Some(message.clone()),
                        ..ErrorDetail::default()
                    };
                }
                ErrorDetail {
                    message: text(error.get("message")).or_else(|| text(value.get("detail"))),
                    kind: text(error.get("type")),
                    code: text(error.get("code")),
                }
            }
            Err(_) => {
                let body = String::from_utf8_lossy(body).trim().to_owned();
                ErrorDetail {
                    message: (!body.is_empty()).then_some(body),
                    ..ErrorDetail::default()
                }
            }
        }
    }

    fn describe(&self) -> String {
        match &self.message {
            None => String::new(),
            Some(message) => {
                let mut message: String = message.chars().take(MAX_DETAIL).collect();
                if let Some(code) = &self.code {
                    message.push_str(&format!(" (code `{code}`)"));
                }
                format!(": {message}")
            }
        }
    }
}

#[cfg(test)]
mod sse_tests {
    use super::SseParser;

    #[test]
    fn events_split_anywhere_come_out_whole() {
        let stream = "data: {\"a\": 1}\n\n: a comment\nevent: x\ndata: line one\ndata: line two\n\ndata: [DONE]\n\n";
        for split in 0..stream.len() {
            let mut parser = SseParser::default();
            let (head, tail) = stream.as_bytes().split_at(split);
            let mut events = parser.push(head);
            events.extend(parser.push(tail));
            events.extend(parser.finish());
            assert_eq!(
                events,
                ["{\"a\": 1}", "line one\nline two", "[DONE]"],
                "split at {split}"
            );
        }
        // CRLF lines, and a last event without its blank line
        let mut parser = SseParser::default();
        let mut events = parser.push(b"data: one\r\n\r\ndata: two");
        events.extend(parser.finish());
        assert_eq!(events, ["one", "two"]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorClass;

    fn response(status: u16, headers: &[(&'static str, &str)], body: &str) -> HttpResponse {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        HttpResponse {
            status: StatusCode::from_u16(status).unwrap(),
            headers: map,
            body: Bytes::from(body.to_owned()),
        }
    }

    const KEY: KeyHint = KeyHint::Config("OpenAiConfig::api_key");

    #[test]
    fn retry_after_in_all_its_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let r = response(429, &[("retry-after", "7")], "");
        assert_eq!(retry_after(&r.headers, now), Some(Duration::from_secs(7)));
        let r = response(429, &[("retry-after-ms", "1500"), ("retry-after", "7")], "");
        assert_eq!(
            retry_after(&r.headers, now),
            Some(Duration::from_millis(1500))
        );
        let date = httpdate::fmt_http_date(now + Duration::from_secs(30));
        let r = response(429, &[("retry-after", &date)], "");
        assert_eq!(retry_after(&r.headers, now), Some(Duration::from_secs(30)));
        let r = response(429, &[("retry-after", "soon")], "");
        assert_eq!(retry_after(&r.headers, now), None);
    }

    #[test]
    fn statuses_map_to_classes() {
        let now = SystemTime::now();
        let class = |status, body: &str| {
            classify("openai", &response(status, &[], body), &KEY, now).class()
        };
        assert_eq!(class(429, ""), ErrorClass::RateLimited);
        assert_eq!(
            class(
                429,
                r#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}"#
            ),
            ErrorClass::Permanent
        );
        assert_eq!(class(500, ""), ErrorClass::Transient);
        assert_eq!(class(503, "upstream down"), ErrorClass::Transient);
        assert_eq!(class(408, ""), ErrorClass::Transient);
        assert_eq!(class(400, ""), ErrorClass::Permanent);
        assert_eq!(class(404, ""), ErrorClass::Permanent);
        assert_eq!(class(401, ""), ErrorClass::Permanent);
        let context = classify(
            "openai",
            &response(
                400,
                &[],
                r#"{"error":{"message":"This model's maximum context length is 128000 tokens.","code":"context_length_exceeded"}}"#,
            ),
            &KEY,
            now,
        );
        assert_eq!(context.class(), ErrorClass::Permanent);
        assert!(context.message().contains("context window"), "{context}");
        assert!(
            context
                .message()
                .contains("maximum context length is 128000"),
            "{context}"
        );
    }

    #[test]
    fn auth_errors_say_what_to_set() {
        let now = SystemTime::now();
        let env = KeyHint::Env("OPENAI_API_KEY".into());
        let error = classify(
            "openai",
            &response(
                401,
                &[],
                r#"{"error":{"message":"Incorrect API key provided"}}"#,
            ),
            &env,
            now,
        );
        assert!(error.message().contains("set `OPENAI_API_KEY`"), "{error}");
        assert!(
            error.message().contains("Incorrect API key provided"),
            "{error}"
        );
        let missing = KeyHint::Missing {
            env: Some("GROQ_API_KEY".into()),
            config: "OpenAiConfig::api_key",
        };
        let error = classify("groq", &response(403, &[], ""), &missing, now);
        assert!(error.message().contains("`GROQ_API_KEY`"), "{error}");
    }
}
