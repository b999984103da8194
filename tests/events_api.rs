//! Deliberation events on NATS from the real server (`ORCHESTRATOR_TEST_NATS_URL`, default
//! `nats://127.0.0.1:4222`; with `CI=true` a missing server fails, elsewhere the test skips).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use orchestrator_api_grpc::pb;
use orchestrator_tests::{ScriptedBackend, spawn_app_with};

#[tokio::test]
async fn the_server_announces_each_step_of_a_deliberation_on_nats() {
    let url =
        std::env::var("ORCHESTRATOR_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    let listener = match async_nats::connect(&url).await {
        Ok(client) => client,
        Err(error) => {
            orchestrator_test_support::skip("NATS", "set ORCHESTRATOR_TEST_NATS_URL", error);
            return;
        }
    };
    let prefix = format!("it{}", uuid::Uuid::now_v7().simple());
    let mut events = orchestrator_test_support::nats::subscribe_confirmed(
        &listener,
        &format!("{prefix}.deliberation.>"),
        &format!("{prefix}.deliberation.probe"),
    )
    .await;

    let (nats_url, events_prefix) = (url.clone(), prefix.clone());
    let mut app = spawn_app_with(
        move |c| orchestrator_server::Config { nats_url: Some(nats_url), events_prefix, ..c },
        Some(Arc::new(ScriptedBackend::new())),
    )
    .await;
    let response = app
        .client
        .deliberate(pb::DeliberateRequest {
            task_description: "Announce me".into(),
            role: "QA".into(),
            task_id: "announced".into(),
            num_agents: Some(2),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();

    let mut seen = Vec::new();
    while seen.last().map(String::as_str) != Some("completed") {
        let message = tokio::time::timeout(Duration::from_secs(10), events.next()).await.unwrap().unwrap();
        let body: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
        assert_eq!(body["task_id"], "announced");
        assert_eq!(body["role"], "QA");
        assert_eq!(
            message.subject.as_str(),
            format!("{prefix}.deliberation.{}", body["event"].as_str().unwrap())
        );
        if body["event"] == "completed" {
            assert_eq!(body["winner_id"], response.winner_id.as_str());
            assert_eq!(body["results"], 2);
        }
        seen.push(body["event"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        seen,
        [
            "submitted",
            "started",
            "phase_completed",
            "phase_completed",
            "phase_completed",
            "phase_completed",
            "completed"
        ]
    );
}

#[tokio::test]
async fn the_ends_stored_at_shutdown_are_announced_before_the_server_stops() {
    let url =
        std::env::var("ORCHESTRATOR_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    let listener = match async_nats::connect(&url).await {
        Ok(client) => client,
        Err(error) => {
            orchestrator_test_support::skip("NATS", "set ORCHESTRATOR_TEST_NATS_URL", error);
            return;
        }
    };
    let prefix = format!("it{}", uuid::Uuid::now_v7().simple());
    let subject = format!("{prefix}.deliberation.ended");
    let mut ended = orchestrator_test_support::nats::subscribe_confirmed(&listener, &subject, &subject).await;

    let (nats_url, events_prefix) = (url.clone(), prefix.clone());
    let mut app = spawn_app_with(
        move |c| orchestrator_server::Config {
            nats_url: Some(nats_url),
            events_prefix,
            shutdown_grace_secs: 1,
            resume_unfinished: false,
            ..c
        },
        Some(Arc::new(ScriptedBackend::new().with_delay(Duration::from_secs(60)))),
    )
    .await;
    app.client
        .submit_deliberation(pb::DeliberateRequest {
            task_description: "Outlive the grace period".into(),
            role: "QA".into(),
            task_id: "cut-short".into(),
            num_agents: Some(2),
            ..Default::default()
        })
        .await
        .unwrap();
    // Once the server has stopped, the INTERRUPTED end it stored has been flushed to NATS.
    app.stop().await;
    let message = tokio::time::timeout(Duration::from_secs(10), ended.next()).await.unwrap().unwrap();
    let body: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
    assert_eq!((body["task_id"].as_str(), body["status"].as_str()), (Some("cut-short"), Some("INTERRUPTED")));
}
