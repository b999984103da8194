//! Two real servers on one PostgreSQL database: a live node's deliberation is never run by the
//! other, and a node killed with SIGKILL has its work taken over once its lease runs out.
//! Uses `ORCHESTRATOR_TEST_PG_URL` (default the machine's server); with `CI=true` a missing
//! PostgreSQL fails, elsewhere the test skips.
#![allow(clippy::unwrap_used)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use orchestrator_api_grpc::pb;
use orchestrator_api_grpc::pb::DeliberationStatus as Status;
use orchestrator_api_grpc::pb::orchestrator_service_client::OrchestratorServiceClient;
use sqlx::Connection;
use tonic::transport::Channel;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

async fn slow_model(delay: Duration) -> MockServer {
    let server = MockServer::start().await;
    let body = serde_json::json!({
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "{\"score\": 6, \"critique\": \"Add retries.\"}"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5}
    });
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(body).set_delay(delay))
        .mount(&server)
        .await;
    server
}

/// A fresh schema on the test database, and the URL that puts every connection in it.
async fn fresh_schema() -> Option<(String, String)> {
    let base = std::env::var("ORCHESTRATOR_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let mut connection = match sqlx::PgConnection::connect(&base).await {
        Ok(connection) => connection,
        Err(error) => {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "PostgreSQL is required in CI: {error}");
            eprintln!("skipping: no PostgreSQL at {base}");
            return None;
        }
    };
    let schema = format!("multinode_{}", uuid::Uuid::now_v7().simple());
    sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&mut connection).await.unwrap();
    let separator = if base.contains('?') { '&' } else { '?' };
    Some((format!("{base}{separator}options=-c%20search_path%3D{schema}"), schema))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start_node(node: &str, port: u16, database_url: &str, model_url: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_orchestrator"))
        .arg("serve")
        .env("ORCHESTRATOR_LISTEN", format!("127.0.0.1:{port}"))
        .env("ORCHESTRATOR_DATABASE_URL", database_url)
        .env("ORCHESTRATOR_NODE_ID", node)
        .env("ORCHESTRATOR_LEASE_SECS", "3")
        .env("ORCHESTRATOR_LLM_BASE_URL", format!("{model_url}/v1"))
        .env("ORCHESTRATOR_LLM_MODEL", "slow-model")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

async fn connect(port: u16) -> OrchestratorServiceClient<Channel> {
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

fn request(task_id: &str) -> pb::DeliberateRequest {
    pb::DeliberateRequest {
        task_description: "Design a retry policy for webhooks".into(),
        role: "DEV".into(),
        task_id: task_id.into(),
        rounds: Some(2),
        num_agents: Some(2),
        ..Default::default()
    }
}

async fn status(
    client: &mut OrchestratorServiceClient<Channel>,
    task_id: &str,
) -> pb::GetDeliberationResultResponse {
    client
        .get_deliberation_result(pb::GetDeliberationResultRequest { task_id: task_id.into() })
        .await
        .unwrap()
        .into_inner()
}

async fn wait_for(
    client: &mut OrchestratorServiceClient<Channel>,
    task_id: &str,
    done: impl Fn(&pb::GetDeliberationResultResponse) -> bool,
) -> pb::GetDeliberationResultResponse {
    for _ in 0..400 {
        let r = status(client, task_id).await;
        if done(&r) {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{task_id} never reached the expected state");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_share_a_database_without_running_anything_twice() {
    let Some((database_url, schema)) = fresh_schema().await else { return };
    let model = slow_model(Duration::from_millis(300)).await;

    let port_a = free_port();
    let mut node_a = start_node("node-a", port_a, &database_url, &model.uri());
    let mut a = connect(port_a).await;

    // node-a runs "first"; node-b starts meanwhile and must leave it alone.
    a.submit_deliberation(request("first")).await.unwrap();
    wait_for(&mut a, "first", |r| r.metadata.as_ref().is_some_and(|m| m.tags.contains_key("phase"))).await;
    let port_b = free_port();
    let mut node_b = start_node("node-b", port_b, &database_url, &model.uri());
    let mut b = connect(port_b).await;
    let first = wait_for(&mut b, "first", |r| r.status() == Status::Completed).await;
    assert_eq!(first.results.len(), 2);
    tokio::time::sleep(Duration::from_secs(2)).await;
    // 2 agents × (1 proposal + 2 × (review + revision)) = 10 calls: nobody ran it twice.
    assert_eq!(model.received_requests().await.unwrap().len(), 10);

    // node-a dies mid-way through "second"; node-b takes it over after the lease (3 s).
    a.submit_deliberation(request("second")).await.unwrap();
    wait_for(&mut b, "second", |r| r.metadata.as_ref().is_some_and(|m| m.tags.contains_key("phase"))).await;
    node_a.kill().unwrap();
    node_a.wait().unwrap();
    let second =
        wait_for(&mut b, "second", |r| r.status() != Status::Pending && r.status() != Status::InProgress)
            .await;
    assert_eq!(second.status(), Status::Completed, "{}", second.error_message);
    assert!(second.results.iter().all(|r| r.reviews.len() == 2));

    node_b.kill().unwrap();
    node_b.wait().unwrap();
    let base = std::env::var("ORCHESTRATOR_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let mut connection = sqlx::PgConnection::connect(&base).await.unwrap();
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE")).execute(&mut connection).await.unwrap();
}
