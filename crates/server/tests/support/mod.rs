//! Helpers of the tests that run the real `orchestrator` binary: a slow fake model, starting a
//! server on a port it picks itself (read from the line it prints), a port that refuses
//! connections, and polling a server over gRPC with a deadline.
#![allow(dead_code, reason = "each test binary uses part of the helpers")]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use orchestrator_api_grpc::pb;
use orchestrator_api_grpc::pb::orchestrator_service_client::OrchestratorServiceClient;
use tonic::transport::Channel;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

pub(crate) mod proxy;
pub(crate) mod raw_http2;

pub(crate) type Client = OrchestratorServiceClient<Channel>;

/// An OpenAI-compatible model that takes `delay` to answer every call with a graded review.
pub(crate) async fn slow_model(delay: Duration) -> MockServer {
    let server = MockServer::start().await;
    let body = serde_json::json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": "{\"score\": 7, \"critique\": \"Use a WAL and fsync before acknowledging.\"}"},
            "finish_reason": "stop"
        }],
        "usage": {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21}
    });
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(body).set_delay(delay))
        .mount(&server)
        .await;
    server
}

/// Makes `server` answer `GET /v1/models` with these model ids, as OpenAI-compatible servers do.
pub(crate) async fn serve_models(server: &MockServer, ids: &[&str]) {
    let data: Vec<serde_json::Value> =
        ids.iter().map(|id| serde_json::json!({"id": id, "object": "model"})).collect();
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"object": "list", "data": data})),
        )
        .mount(server)
        .await;
}

/// The chat completions `model` received — the model calls of deliberations, without the
/// servers' start-up probes of `/v1/models`.
pub(crate) async fn chat_calls(model: &MockServer) -> Vec<wiremock::Request> {
    let received = model.received_requests().await.unwrap_or_default();
    received.into_iter().filter(|r| r.url.path().ends_with("/chat/completions")).collect()
}

/// The `orchestrator` CLI with nothing inherited that would change what it does (a token, a
/// CA, a configuration file) and no input.
pub(crate) fn cli() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_orchestrator"));
    command
        .env_remove("ORCHESTRATOR_TOKEN")
        .env_remove("ORCHESTRATOR_CA")
        .env_remove("ORCHESTRATOR_CONFIG")
        .stdin(Stdio::null());
    command
}

/// How long a server may take to bind its port and say which.
const STARTUP: Duration = Duration::from_secs(10);

/// A loopback port on which connections are refused: bound, so nothing else takes it while
/// this lives, but never listening.
pub(crate) struct ClosedPort {
    _socket: tokio::net::TcpSocket,
    pub(crate) port: u16,
}

pub(crate) fn closed_port() -> ClosedPort {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let port = socket.local_addr().unwrap().port();
    ClosedPort { _socket: socket, port }
}

/// Starts `orchestrator serve` on a port of its choosing against `database_url` and the fake
/// model, with a 2 s shutdown grace and the extra environment given. Returns the process once
/// it has bound, with the port it announced.
pub(crate) fn start_server(database_url: &str, model_url: &str, env: &[(&str, &str)]) -> (Child, u16) {
    let mut command = serve_command(database_url, model_url);
    command.env("ORCHESTRATOR_SHUTDOWN_GRACE_SECS", "2").env("RUST_LOG", "warn").stderr(Stdio::inherit());
    spawn_announced(command, env)
}

/// Like [`start_server`] with the server's own shutdown grace, and its log (INFO and up) in
/// `log` for the test to read.
pub(crate) fn start_server_logged(
    database_url: &str,
    model_url: &str,
    env: &[(&str, &str)],
    log: &std::path::Path,
) -> (Child, u16) {
    let mut command = serve_command(database_url, model_url);
    command.env("RUST_LOG", "info").stderr(std::fs::File::create(log).unwrap());
    spawn_announced(command, env)
}

/// Like [`start_server_logged`], in a shell that first lowers the open-files limit (soft and
/// hard) to `open_files`.
pub(crate) fn start_server_logged_with_open_files(
    database_url: &str,
    model_url: &str,
    env: &[(&str, &str)],
    log: &std::path::Path,
    open_files: u32,
) -> (Child, u16) {
    let mut shell = Command::new("sh");
    shell
        .arg("-c")
        .arg(format!("ulimit -n {open_files} && exec \"$0\" serve"))
        .arg(env!("CARGO_BIN_EXE_orchestrator"));
    let mut command = with_serve_env(shell, database_url, model_url);
    command.env("RUST_LOG", "info").stderr(std::fs::File::create(log).unwrap());
    spawn_announced(command, env)
}

/// `orchestrator serve` on 127.0.0.1:0 against `database_url` and the fake model.
fn serve_command(database_url: &str, model_url: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_orchestrator"));
    command.arg("serve");
    with_serve_env(command, database_url, model_url)
}

/// `command` (which runs `orchestrator serve`) on 127.0.0.1:0 against `database_url` and the
/// fake model.
fn with_serve_env(mut command: Command, database_url: &str, model_url: &str) -> Command {
    command
        .env("ORCHESTRATOR_LISTEN", "127.0.0.1:0")
        .env("ORCHESTRATOR_DATABASE_URL", database_url)
        .env("ORCHESTRATOR_LLM_BASE_URL", format!("{model_url}/v1"))
        .env("ORCHESTRATOR_LLM_MODEL", "slow-model")
        .stdout(Stdio::piped());
    command
}

/// Spawns `command` with the extra environment and waits for the port it announces.
fn spawn_announced(mut command: Command, env: &[(&str, &str)]) -> (Child, u16) {
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().unwrap();
    let port = announced_port(&mut child);
    (child, port)
}

/// The port of the `listening on ADDR` line the server prints once bound. A thread reads the
/// server's stdout to its end, so the server never blocks on a full pipe.
fn announced_port(child: &mut Child) -> u16 {
    let stdout = child.stdout.take().unwrap();
    let (announced, announcement) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if let Some(addr) = line.strip_prefix("listening on ") {
                let _ = announced.send(addr.parse::<SocketAddr>().unwrap().port());
            }
        }
    });
    match announcement.recv_timeout(STARTUP) {
        Ok(port) => port,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            let _ = child.kill();
            panic!("the server did not say where it listens within {STARTUP:?}");
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            panic!("the server exited before listening: {:?}", child.wait())
        }
    }
}

/// Tries `attempt` every 50 ms until it gives a value; panics with `what` after `within`.
pub(crate) async fn poll<T>(what: &str, within: Duration, attempt: impl AsyncFnMut() -> Option<T>) -> T {
    orchestrator_test_support::eventually(what, within, attempt).await
}

/// A client once the server answers GetStatus (bounded: 10 s).
pub(crate) async fn connect(port: u16) -> Client {
    poll(&format!("server on port {port} did not come up"), Duration::from_secs(10), async || {
        let mut client = OrchestratorServiceClient::connect(format!("http://127.0.0.1:{port}")).await.ok()?;
        client.get_status(pb::GetStatusRequest::default()).await.ok()?;
        Some(client)
    })
    .await
}

pub(crate) async fn get(client: &mut Client, task_id: &str) -> pb::GetDeliberationResultResponse {
    client
        .get_deliberation_result(pb::GetDeliberationResultRequest { task_id: task_id.into() })
        .await
        .unwrap()
        .into_inner()
}

/// Polls until the server knows `task_id` and `done` holds (bounded: 20 s).
pub(crate) async fn wait_for(
    client: &mut Client,
    task_id: &str,
    done: impl Fn(&pb::GetDeliberationResultResponse) -> bool,
) -> pb::GetDeliberationResultResponse {
    poll(&format!("{task_id} never reached the expected state"), Duration::from_secs(20), async || {
        let request = pb::GetDeliberationResultRequest { task_id: task_id.into() };
        match client.get_deliberation_result(request).await {
            Ok(r) => Some(r.into_inner()).filter(|r| done(r)),
            Err(status) if status.code() == tonic::Code::NotFound => None,
            Err(status) => panic!("GetDeliberationResult {task_id}: {status:?}"),
        }
    })
    .await
}

/// True once a deliberation left PENDING and IN_PROGRESS.
pub(crate) fn finished(r: &pb::GetDeliberationResultResponse) -> bool {
    !matches!(r.status(), pb::DeliberationStatus::Pending | pb::DeliberationStatus::InProgress)
}

/// True once a running deliberation has saved a phase.
pub(crate) fn saved_a_phase(r: &pb::GetDeliberationResultResponse) -> bool {
    r.status() == pb::DeliberationStatus::InProgress
        && r.metadata.as_ref().is_some_and(|m| m.tags.contains_key("phase"))
}

/// A fresh schema on the test PostgreSQL and the URL that puts every connection in it; `None`
/// (after [`orchestrator_test_support::skip`] says SKIPPED on the real stderr) when PostgreSQL
/// is unreachable — a failure when `CI=true`.
pub(crate) async fn fresh_pg_schema(prefix: &str) -> Option<(String, String)> {
    use sqlx::Connection;
    let base = orchestrator_test_support::services::pg_url();
    let mut connection = match sqlx::PgConnection::connect(&base).await {
        Ok(connection) => connection,
        Err(error) => {
            orchestrator_test_support::skip("PostgreSQL", "set ORCHESTRATOR_TEST_PG_URL", error);
            return None;
        }
    };
    let schema = format!("{prefix}_{}", uuid::Uuid::now_v7().simple());
    sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&mut connection).await.unwrap();
    let separator = if base.contains('?') { '&' } else { '?' };
    Some((format!("{base}{separator}options=-c%20search_path%3D{schema}"), schema))
}
