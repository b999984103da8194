//! Shared fixtures of the backend tests: profiles, agents, tasks, canned bodies, and tiny raw
//! HTTP servers for what wiremock cannot fake (a body that drips, counting requests in flight,
//! noticing a client hang up).
// Each test crate uses its own part of the fixtures.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use orchestrator_domain::{Agent, AgentId, ProfileName, Role, Task, TaskConstraints};
use orchestrator_infra_llm::{LlmProfile, OpenAiBackend};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

pub(crate) const RUBRIC: &str = "Correctness first, then readability";
pub(crate) const REQUIREMENTS: [&str; 3] =
    ["Handle empty strings", "Keep grapheme clusters intact", "Ship unit tests"];

/// A profile on `base_url` with fast failure settings; `tweak` adjusts it.
pub(crate) fn profile(base_url: &str, tweak: impl FnOnce(&mut LlmProfile)) -> LlmProfile {
    let mut profile = LlmProfile::new(base_url, "test-model");
    profile.timeout = Duration::from_secs(10);
    profile.max_retries = 0;
    tweak(&mut profile);
    profile
}

/// A backend with one `default` profile.
pub(crate) fn backend(profile: LlmProfile) -> OpenAiBackend {
    OpenAiBackend::new(BTreeMap::from([(ProfileName::default_profile(), profile)]))
        .expect("valid test profile")
}

pub(crate) fn agent(seat: usize) -> Agent {
    Agent {
        id: AgentId::new(format!("dev-{seat}")).expect("valid id"),
        role: Role::Dev,
        profile: ProfileName::default_profile(),
        seat,
        persona: None,
    }
}

pub(crate) fn task() -> Task {
    let constraints = TaskConstraints::new(
        RUBRIC.into(),
        REQUIREMENTS.iter().map(|r| (*r).to_owned()).collect(),
        BTreeMap::new(),
        0,
        0,
    )
    .expect("valid constraints");
    Task::new("Write a Rust function that reverses a string", constraints).expect("valid task")
}

/// A chat completion body whose first choice says `text`, with `usage` when given.
pub(crate) fn completion(text: &str, usage: Option<(u64, u64)>) -> Value {
    let mut body = json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
    });
    if let Some((prompt, completion)) = usage {
        body["usage"] = json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion});
    }
    body
}

/// A base URL on which connections are refused, while the socket returned lives: its port is
/// bound (so nothing else takes it) but never listening.
pub(crate) fn refused_base_url() -> (tokio::net::TcpSocket, String) {
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket.bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind a local port");
    let url = format!("http://{}/v1", socket.local_addr().expect("bound address"));
    (socket, url)
}

/// Reads one HTTP/1.1 request (head and `Content-Length` body); `None` when the peer closed.
async fn read_request(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<Vec<u8>> {
    loop {
        if let Some(head_end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            let total = head_end + 4 + length;
            if buffer.len() >= total {
                let request = buffer[..total].to_vec();
                buffer.drain(..total);
                return Some(request);
            }
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    }
}

fn response_head(body_len: usize) -> String {
    format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {body_len}\r\n\r\n")
}

async fn listen() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a local port");
    let url = format!("http://{}/v1", listener.local_addr().expect("bound address"));
    (listener, url)
}

/// A server that sends its headers at once, then `body` one byte every `pace`.
pub(crate) async fn drip_server(body: String, pace: Duration) -> String {
    let (listener, url) = listen().await;
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                if read_request(&mut stream, &mut buffer).await.is_none() {
                    return;
                }
                if stream.write_all(response_head(body.len()).as_bytes()).await.is_err() {
                    return;
                }
                for byte in body.bytes() {
                    tokio::time::sleep(pace).await;
                    if stream.write_all(&[byte]).await.is_err() || stream.flush().await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    url
}

/// What the counting server saw.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    pub(crate) current: AtomicUsize,
    pub(crate) max: AtomicUsize,
    pub(crate) served: AtomicUsize,
}

/// A server that holds each request for `hold` before answering `body`, recording how many
/// requests it held at once.
pub(crate) async fn counting_server(body: Value, hold: Duration) -> (String, Arc<InFlight>) {
    let (listener, url) = listen().await;
    let stats = Arc::new(InFlight::default());
    let body = body.to_string();
    let shared = Arc::clone(&stats);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let stats = Arc::clone(&shared);
            let body = body.clone();
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                while read_request(&mut stream, &mut buffer).await.is_some() {
                    let now = stats.current.fetch_add(1, Ordering::SeqCst) + 1;
                    stats.max.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(hold).await;
                    stats.current.fetch_sub(1, Ordering::SeqCst);
                    stats.served.fetch_add(1, Ordering::SeqCst);
                    let response = format!("{}{body}", response_head(body.len()));
                    if stream.write_all(response.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, stats)
}

/// A server that reads requests and never answers; it reports each request it receives and
/// each connection the client closes.
pub(crate) async fn silent_server() -> (String, mpsc::UnboundedReceiver<&'static str>) {
    let (listener, url) = listen().await;
    let (events, receiver) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let events = events.clone();
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                while read_request(&mut stream, &mut buffer).await.is_some() {
                    let _ = events.send("request");
                }
                let _ = events.send("closed");
            });
        }
    });
    (url, receiver)
}
