//! Helpers of the tests that run the real `orchestrator` binary: a slow fake model, free ports,
//! starting a server with extra environment, and polling it over gRPC.
#![allow(dead_code, reason = "each test binary uses part of the helpers")]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use orchestrator_api_grpc::pb;
use orchestrator_api_grpc::pb::orchestrator_service_client::OrchestratorServiceClient;
use tonic::transport::Channel;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

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

/// The chat completions `model` received — the model calls of deliberations, without the
/// servers' start-up probes of `/v1/models`.
pub(crate) async fn chat_calls(model: &MockServer) -> Vec<wiremock::Request> {
    let received = model.received_requests().await.unwrap_or_default();
    received.into_iter().filter(|r| r.url.path().ends_with("/chat/completions")).collect()
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts `orchestrator serve` on `port` against `database_url` and the fake model, with a
/// 2 s shutdown grace and the extra environment given.
pub(crate) fn start_server(port: u16, database_url: &str, model_url: &str, env: &[(&str, &str)]) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_orchestrator"));
    command
        .arg("serve")
        .env("ORCHESTRATOR_LISTEN", format!("127.0.0.1:{port}"))
        .env("ORCHESTRATOR_DATABASE_URL", database_url)
        .env("ORCHESTRATOR_LLM_BASE_URL", format!("{model_url}/v1"))
        .env("ORCHESTRATOR_LLM_MODEL", "slow-model")
        .env("ORCHESTRATOR_SHUTDOWN_GRACE_SECS", "2")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (key, value) in env {
        command.env(key, value);
    }
    command.spawn().unwrap()
}

/// A client once the server answers GetStatus (bounded: 10 s).
pub(crate) async fn connect(port: u16) -> Client {
    for _ in 0..200 {
        if let Ok(mut client) = OrchestratorServiceClient::connect(format!("http://127.0.0.1:{port}")).await
            && client.get_status(pb::GetStatusRequest::default()).await.is_ok()
        {
            return client;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server on port {port} did not come up");
}

pub(crate) async fn get(client: &mut Client, task_id: &str) -> pb::GetDeliberationResultResponse {
    client
        .get_deliberation_result(pb::GetDeliberationResultRequest { task_id: task_id.into() })
        .await
        .unwrap()
        .into_inner()
}

/// Polls until `done` holds (bounded: 20 s).
pub(crate) async fn wait_for(
    client: &mut Client,
    task_id: &str,
    done: impl Fn(&pb::GetDeliberationResultResponse) -> bool,
) -> pb::GetDeliberationResultResponse {
    for _ in 0..400 {
        let r = get(client, task_id).await;
        if done(&r) {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{task_id} never reached the expected state");
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
