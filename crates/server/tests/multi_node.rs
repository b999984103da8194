//! Two real servers on one PostgreSQL database, configured with the same `node_id` (two
//! processes on one host): a live node's deliberation is never run by the other, and a node
//! killed with SIGKILL has its work taken over once its lease runs out.
//! Uses `ORCHESTRATOR_TEST_PG_URL` (default the machine's server); with `CI=true` a missing
//! PostgreSQL fails, elsewhere the test skips.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use orchestrator_api_grpc::pb;
use orchestrator_api_grpc::pb::DeliberationStatus as Status;
use sqlx::Connection;

use support::{connect, finished, fresh_pg_schema, saved_a_phase, slow_model, start_server, wait_for};

/// A server named like every other one here: each process still gets its own node id.
fn start_node(database_url: &str, model_url: &str) -> (std::process::Child, u16) {
    start_server(
        database_url,
        model_url,
        &[("ORCHESTRATOR_NODE_ID", "same-host"), ("ORCHESTRATOR_LEASE_SECS", "3")],
    )
}

/// How many of the model's calls were for the deliberation `task_id`.
async fn calls_for(model: &wiremock::MockServer, task_id: &str) -> usize {
    let marker = format!("({task_id})");
    model
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| String::from_utf8_lossy(&r.body).contains(&marker))
        .count()
}

fn request(task_id: &str) -> pb::DeliberateRequest {
    pb::DeliberateRequest {
        // The task id in the prompt tells the model's calls for each deliberation apart.
        task_description: format!("Design a retry policy for webhooks ({task_id})"),
        role: "DEV".into(),
        task_id: task_id.into(),
        rounds: Some(2),
        num_agents: Some(2),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_share_a_database_without_running_anything_twice() {
    let Some((database_url, schema)) = fresh_pg_schema("multinode").await else { return };
    let model = slow_model(Duration::from_millis(300)).await;

    let (mut node_a, port_a) = start_node(&database_url, &model.uri());
    let mut a = connect(port_a).await;

    // node-a runs "first"; node-b starts meanwhile and must leave it alone.
    a.submit_deliberation(request("first")).await.unwrap();
    wait_for(&mut a, "first", saved_a_phase).await;
    let (mut node_b, port_b) = start_node(&database_url, &model.uri());
    let mut b = connect(port_b).await;
    let first = wait_for(&mut b, "first", |r| r.status() == Status::Completed).await;
    assert_eq!(first.results.len(), 2);

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
    // Both nodes are gone, so no call is still to come: 2 agents × (1 proposal + 2 × (review +
    // revision)) = 10 calls for "first", so nobody ran it twice, even after node-b saw it end.
    assert_eq!(calls_for(&model, "first").await, 10);
    let base = orchestrator_test_support::services::pg_url();
    let mut connection = sqlx::PgConnection::connect(&base).await.unwrap();
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE")).execute(&mut connection).await.unwrap();
}
