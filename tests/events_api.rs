//! Deliberation events on JetStream from the real server, through the outbox: each step in
//! order on `<prefix>.deliberation.<event>` with its dedup id, and the ends stored at shutdown
//! published before the server stops. Each test runs a `nats-server -js` of its own (the
//! Debian package; without it the test says SKIPPED, and fails with `CI=true`).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use orchestrator_api_grpc::pb;
use orchestrator_test_support::nats_server::NatsServer;
use orchestrator_tests::{ScriptedBackend, spawn_app_with};

/// Every message of the events stream so far: (subject, Nats-Msg-Id, body), in stream order;
/// waits (bounded) until there are at least `at_least`.
async fn stream_messages(url: &str, at_least: usize) -> Vec<(String, String, serde_json::Value)> {
    let client = async_nats::connect(url).await.unwrap();
    let js = jetstream::new(client);
    let what = format!("{at_least} events in the stream");
    orchestrator_test_support::eventually(&what, Duration::from_secs(20), async || {
        let mut stream = js.get_stream("ORCHESTRATOR_EVENTS").await.ok()?;
        let count = stream.info().await.unwrap().state.messages;
        let mut read = Vec::new();
        for seq in 1..=count {
            let message = stream.get_raw_message(seq).await.unwrap();
            let id = message.headers.get("Nats-Msg-Id").map(|v| v.to_string()).unwrap_or_default();
            let body = serde_json::from_slice(&message.payload).unwrap();
            read.push((message.subject.to_string(), id, body));
        }
        (read.len() >= at_least).then_some(read)
    })
    .await
}

#[tokio::test]
async fn the_server_publishes_each_step_of_a_deliberation_once_in_order() {
    let Some(nats) = NatsServer::start() else { return };
    let nats_url = nats.url();
    let mut app = spawn_app_with(
        move |c| orchestrator_server::Config { nats_url: Some(nats_url), ..c },
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

    let messages = stream_messages(&nats.url(), 6).await;
    let mut seen = Vec::new();
    for (seq, (subject, id, body)) in messages.iter().enumerate() {
        let event = body["event"].as_str().unwrap();
        assert_eq!(body["task_id"], "announced");
        assert_eq!(body["role"], "QA");
        assert_eq!(body["event_type"], format!("orchestration.deliberation.{event}"));
        assert_eq!(subject, &format!("orchestration.deliberation.{event}"));
        assert_eq!(id, &format!("announced:{event}:{}", seq + 1), "the dedup id numbers the events");
        if event == "completed" {
            assert_eq!(body["winner_id"], response.winner_id.as_str());
            assert_eq!(body["results"], 2);
            let decisions = body["decisions"].as_array().unwrap();
            assert_eq!(decisions.len(), 2);
            assert_eq!(decisions[0]["author"], response.winner_id.as_str());
            assert_eq!(decisions[0]["winner"], true);
            assert!(body["timestamp"].as_i64().unwrap() > 1_700_000_000, "seconds since the epoch");
        }
        seen.push(event.to_owned());
    }
    assert_eq!(
        seen,
        ["submitted", "started", "phase_completed", "phase_completed", "phase_completed", "completed"]
    );
    let status = app.client.get_status(pb::GetStatusRequest::default()).await.unwrap().into_inner();
    let events = status.events.unwrap();
    assert!(events.connected, "{events:?}");
}

#[tokio::test]
async fn the_ends_stored_at_shutdown_are_published_before_the_server_stops() {
    let Some(nats) = NatsServer::start() else { return };
    let nats_url = nats.url();
    let mut app = spawn_app_with(
        move |c| orchestrator_server::Config {
            nats_url: Some(nats_url),
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
    stream_messages(&nats.url(), 2).await; // submitted and started are out
    // Once the server has stopped, the INTERRUPTED end it stored is in the stream.
    app.stop().await;
    let messages = stream_messages(&nats.url(), 3).await;
    let (_, _, ended) = messages.last().unwrap();
    assert_eq!(
        (ended["task_id"].as_str(), ended["status"].as_str()),
        (Some("cut-short"), Some("INTERRUPTED"))
    );
}
