//! A chat-completions server on 127.0.0.1 for the model tests: it records every request and
//! answers with scripted replies, including the broken ones (429, 500, garbage, cut-off bodies,
//! stalls, hangs). One request per connection (`Connection: close`), HTTP/1.1.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request the server received.
#[derive(Debug, Clone)]
pub struct Received {
    /// `POST /v1/chat/completions` → `"/v1/chat/completions"` (query included).
    pub path: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body, parsed.
    pub body: Value,
    /// When its head had arrived.
    pub at: std::time::Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The messages of the request.
    pub fn messages(&self) -> &Vec<Value> {
        self.body["messages"].as_array().expect("messages")
    }

    /// The tools' answers in the request's conversation, in order.
    pub fn tool_answers(&self) -> Vec<String> {
        self.messages()
            .iter()
            .filter(|m| m["role"] == "tool")
            .map(|m| m["content"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

/// What the server answers.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A status, extra headers and a JSON body.
    Json(u16, Vec<(&'static str, String)>, Value),
    /// These bytes exactly, then the connection closes.
    Raw(Vec<u8>),
    /// Waits, then replies.
    After(Duration, Box<Reply>),
    /// Never replies; waits for the client to close the connection (counted by
    /// [`FakeOpenAi::hang_ups`]).
    Hang,
    /// A `200 text/event-stream` response, its pieces written one after another, each after its
    /// delay; then the connection closes.
    Stream(Vec<(Duration, String)>),
}

/// A streamed completion (server-sent events, chat-completion chunks) of `content` in pieces of
/// `piece` characters, each after `every`, with usage and `[DONE]`; without `[DONE]` (and the
/// usage) when `cut`.
pub fn streamed(content: &str, piece: usize, every: Duration, cut: bool) -> Reply {
    let chars: Vec<char> = content.chars().collect();
    let mut events: Vec<(Duration, String)> = chars
        .chunks(piece.max(1))
        .map(|part| {
            let text: String = part.iter().collect();
            let chunk = json!({
                "id": "chatcmpl-s",
                "object": "chat.completion.chunk",
                "model": "gpt-4o-mini-2024-07-18",
                "choices": [{ "index": 0, "delta": { "content": text }, "finish_reason": null }]
            });
            (every, format!("data: {chunk}\n\n"))
        })
        .collect();
    if !cut {
        let stop = json!({ "object": "chat.completion.chunk", "choices": [{ "index": 0, "delta": {}, "finish_reason": "stop" }] });
        let usage = json!({ "object": "chat.completion.chunk", "choices": [], "usage": { "prompt_tokens": 11, "completion_tokens": chars.len(), "total_tokens": 11 + chars.len() } });
        events.push((
            Duration::ZERO,
            format!("data: {stop}\n\ndata: {usage}\n\ndata: [DONE]\n\n"),
        ));
    }
    Reply::Stream(events)
}

/// A successful completion whose message content is `content`.
pub fn answer(content: &str, prompt_tokens: u64, completion_tokens: u64) -> Reply {
    Reply::Json(
        200,
        vec![],
        json!({
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [{
                "index": 0,
                "message": { "role": "assistant", "content": content, "refusal": null },
                "logprobs": null,
                "finish_reason": "stop"
            }],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens
            }
        }),
    )
}

/// A completion that calls tools: `(id, name, arguments)`.
pub fn tool_calls(calls: &[(&str, &str, &str)], prompt_tokens: u64) -> Reply {
    let calls: Vec<Value> = calls
        .iter()
        .map(|(id, name, arguments)| {
            json!({ "id": id, "type": "function", "function": { "name": name, "arguments": arguments } })
        })
        .collect();
    Reply::Json(
        200,
        vec![],
        json!({
            "id": "chatcmpl-2",
            "object": "chat.completion",
            "choices": [{
                "index": 0,
                "message": { "role": "assistant", "content": null, "tool_calls": calls },
                "finish_reason": "tool_calls"
            }],
            "usage": { "prompt_tokens": prompt_tokens, "completion_tokens": 9, "total_tokens": prompt_tokens + 9 }
        }),
    )
}

/// `reply` (an [`answer`]) stopped at the output token limit: `finish_reason: "length"`.
pub fn cut_off(reply: Reply) -> Reply {
    let Reply::Json(status, headers, mut body) = reply else {
        panic!("cut_off: only a JSON reply has a finish reason")
    };
    body["choices"][0]["finish_reason"] = json!("length");
    Reply::Json(status, headers, body)
}

/// `reply`'s status line and headers with only the first half of its JSON body: a response cut
/// off midway (`content-length` promises the whole body).
pub fn truncated(reply: Reply) -> Reply {
    let Reply::Json(status, _, body) = reply else {
        panic!("truncated: only a JSON reply can be cut off")
    };
    let body = body.to_string();
    let mut raw = format!(
        "HTTP/1.1 {status} OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(&body.as_bytes()[..body.len() / 2]);
    Reply::Raw(raw)
}

/// An OpenAI-style error body.
pub fn failure(status: u16, headers: Vec<(&'static str, String)>, message: &str) -> Reply {
    Reply::Json(
        status,
        headers,
        json!({ "error": { "message": message, "type": "error", "param": null, "code": null } }),
    )
}

/// A server on a free loopback port.
pub struct FakeOpenAi {
    address: std::net::SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    replies: Arc<Mutex<VecDeque<Reply>>>,
    hang_ups: Arc<AtomicUsize>,
    in_flight: Arc<InFlight>,
    task: tokio::task::JoinHandle<()>,
}

/// Requests received and not yet answered: now, and the most at once.
#[derive(Default)]
struct InFlight {
    now: AtomicUsize,
    peak: AtomicUsize,
}

impl FakeOpenAi {
    /// Starts a server that answers the `replies` in order (a 500 when they run out).
    pub async fn start(replies: Vec<Reply>) -> FakeOpenAi {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let address = listener.local_addr().expect("local address");
        let received = Arc::new(Mutex::new(Vec::new()));
        let replies = Arc::new(Mutex::new(VecDeque::from(replies)));
        let hang_ups = Arc::new(AtomicUsize::new(0));
        let in_flight = Arc::new(InFlight::default());
        let task = tokio::spawn({
            let received = received.clone();
            let replies = replies.clone();
            let hang_ups = hang_ups.clone();
            let in_flight = in_flight.clone();
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let received = received.clone();
                    let replies = replies.clone();
                    let hang_ups = hang_ups.clone();
                    let in_flight = in_flight.clone();
                    tokio::spawn(async move {
                        let _ = serve(stream, received, replies, hang_ups, &in_flight).await;
                    });
                }
            }
        });
        FakeOpenAi {
            address,
            received,
            replies,
            hang_ups,
            in_flight,
            task,
        }
    }

    /// The most requests it was answering at once.
    pub fn peak_in_flight(&self) -> usize {
        self.in_flight.peak.load(Ordering::SeqCst)
    }

    /// How many clients closed a connection that was waiting on [`Reply::Hang`].
    pub fn hang_ups(&self) -> usize {
        self.hang_ups.load(Ordering::SeqCst)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// `http://127.0.0.1:<port>/v1`, an OpenAI base URL.
    pub fn base_url(&self) -> String {
        format!("{}/v1", self.url())
    }

    /// Every request so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// How many scripted replies are left.
    pub fn unused_replies(&self) -> usize {
        self.replies.lock().unwrap().len()
    }
}

impl Drop for FakeOpenAi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    mut stream: TcpStream,
    received: Arc<Mutex<Vec<Received>>>,
    replies: Arc<Mutex<VecDeque<Reply>>>,
    hang_ups: Arc<AtomicUsize>,
    in_flight: &InFlight,
) -> std::io::Result<()> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let at = std::time::Instant::now();
    let now = in_flight.now.fetch_add(1, Ordering::SeqCst) + 1;
    in_flight.peak.fetch_max(now, Ordering::SeqCst);
    let answered =
        answer_and_count(stream, buffer, head_end, at, received, replies, hang_ups).await;
    in_flight.now.fetch_sub(1, Ordering::SeqCst);
    answered
}

async fn answer_and_count(
    mut stream: TcpStream,
    mut buffer: Vec<u8>,
    head_end: usize,
    at: std::time::Instant,
    received: Arc<Mutex<Vec<Received>>>,
    replies: Arc<Mutex<VecDeque<Reply>>>,
    hang_ups: Arc<AtomicUsize>,
) -> std::io::Result<()> {
    let mut chunk = [0u8; 8192];
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    while buffer.len() < head_end + length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    let body = serde_json::from_slice(&buffer[head_end..]).unwrap_or(Value::Null);
    received.lock().unwrap().push(Received {
        path,
        headers,
        body,
        at,
    });
    let mut reply = replies
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| failure(500, vec![], "the test server has no more replies"));
    loop {
        match reply {
            Reply::After(delay, next) => {
                tokio::time::sleep(delay).await;
                reply = *next;
            }
            Reply::Hang => {
                // a read gives 0 (or fails) once the client has closed the connection
                while matches!(stream.read(&mut chunk).await, Ok(n) if n > 0) {}
                hang_ups.fetch_add(1, Ordering::SeqCst);
                return Ok(());
            }
            Reply::Stream(events) => {
                stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n")
                    .await?;
                stream.flush().await?;
                for (delay, event) in events {
                    tokio::time::sleep(delay).await;
                    stream.write_all(event.as_bytes()).await?;
                    stream.flush().await?;
                }
                return stream.shutdown().await;
            }
            Reply::Raw(bytes) => {
                stream.write_all(&bytes).await?;
                stream.flush().await?;
                return stream.shutdown().await;
            }
            Reply::Json(status, extra, body) => {
                let body = body.to_string();
                let mut response = format!(
                    "HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
                    reason(status),
                    body.len()
                );
                for (name, value) in extra {
                    response.push_str(&format!("{name}: {value}\r\n"));
                }
                response.push_str("\r\n");
                response.push_str(&body);
                stream.write_all(response.as_bytes()).await?;
                stream.flush().await?;
                return stream.shutdown().await;
            }
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        _ => "Status",
    }
}
