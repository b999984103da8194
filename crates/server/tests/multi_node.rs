//! Two real servers on one PostgreSQL database: a live node's deliberation is never run by the
//! other, and a node killed with SIGKILL has its work taken over once its lease runs out.
//! Uses `ORCHESTRATOR_TEST_PG_URL` (default the machine's server); with `CI=true` a missing
//! PostgreSQL fails, elsewhere the test skips.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use orchestrator_api_grpc::pb;
use orchestrator_api_grpc::pb::DeliberationStatus as Status;
use sqlx::Connection;

use support::{connect, finished, free_port, saved_a_phase, slow_model, start_server, wait_for};

fn start_node(node: &str, port: u16, database_url: &str, model_url: &str) -> std::process::Child {
    start_server(
        port,
        database_url,
        model_url,
        &[("ORCHESTRATOR_NODE_ID", node), ("ORCHESTRATOR_LEASE_SECS", "3")],
    )
}

/// A fresh schema on the test database, and the URL that puts every connection in it.
async fn fresh_schema() -> Option<(String, String)> {
    let base = std::env::var("ORCHESTRATOR_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let mut connection = match sqlx::PgConnection::connect(&base).await {
        Ok(connection) => connection,
        Err(error) => {
            orchestrator_test_support::skip("PostgreSQL", "set ORCHESTRATOR_TEST_PG_URL", error);
            return None;
        }
    };
    let schema = format!("multinode_{}", uuid::Uuid::now_v7().simple());
    sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&mut connection).await.unwrap();
    let separator = if base.contains('?') { '&' } else { '?' };
    Some((format!("{base}{separator}options=-c%20search_path%3D{schema}"), schema))
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_share_a_database_without_running_anything_twice() {
    let Some((database_url, schema)) = fresh_schema().await else { return };
    let model = slow_model(Duration::from_millis(300)).await;

    let port_a = free_port();
    let mut node_a = start_node("node-a", port_a, &database_url, &model.uri());
    let mut a = connect(port_a).await;

    // node-a runs "first"; node-b starts meanwhile and must leave it alone.
    a.submit_deliberation(request("first")).await.unwrap();
    wait_for(&mut a, "first", saved_a_phase).await;
    let port_b = free_port();
    let mut node_b = start_node("node-b", port_b, &database_url, &model.uri());
    let mut b = connect(port_b).await;
    let first = wait_for(&mut b, "first", |r| r.status() == Status::Completed).await;
    assert_eq!(first.results.len(), 2);
    tokio::time::sleep(Duration::from_secs(2)).await;
    // 2 agents × (1 proposal + 2 × (review + revision)) = 10 calls: nobody ran it twice.
    assert_eq!(support::chat_calls(&model).await.len(), 10);

    // node-a dies mid-way through "second"; node-b takes it over after the lease (3 s).
    a.submit_deliberation(request("second")).await.unwrap();
    wait_for(&mut b, "second", saved_a_phase).await;
    node_a.kill().unwrap();
    node_a.wait().unwrap();
    let second = wait_for(&mut b, "second", finished).await;
    assert_eq!(second.status(), Status::Completed, "{}", second.error_message);
    assert!(second.results.iter().all(|r| r.reviews.len() == 2));

    node_b.kill().unwrap();
    node_b.wait().unwrap();
    let base = std::env::var("ORCHESTRATOR_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let mut connection = sqlx::PgConnection::connect(&base).await.unwrap();
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE")).execute(&mut connection).await.unwrap();
}
