//! Against the NATS server of this machine (`ORCHESTRATOR_TEST_NATS_URL`, default
//! `nats://127.0.0.1:4222`). With `CI=true` a missing server fails; elsewhere the tests skip.
#![allow(clippy::unwrap_used)]

use futures::StreamExt;
use orchestrator_application::ports::{DeliberationEvent, EventKind, EventPublisher};
use orchestrator_domain::Role;
use orchestrator_infra_events::{EventsError, NatsPublisher};

fn url() -> String {
    std::env::var("ORCHESTRATOR_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

async fn publisher(prefix: &str) -> Option<NatsPublisher> {
    match NatsPublisher::connect(&url(), prefix).await {
        Ok(publisher) => Some(publisher),
        Err(error) => {
            orchestrator_test_support::skip("NATS", "set ORCHESTRATOR_TEST_NATS_URL", error);
            None
        }
    }
}

#[tokio::test]
async fn events_arrive_as_json_on_their_subject_with_the_task_header() {
    let prefix = format!("test{}", uuid::Uuid::now_v7().simple());
    let Some(publisher) = publisher(&prefix).await else { return };
    let listener = async_nats::connect(url()).await.unwrap();
    let mut all = orchestrator_test_support::nats::subscribe_confirmed(
        &listener,
        &format!("{prefix}.deliberation.>"),
        &format!("{prefix}.deliberation.probe"),
    )
    .await;

    let event = DeliberationEvent {
        task_id: "t-42".into(),
        role: Role::Devops,
        at_ms: 1_700_000_000_000,
        kind: EventKind::Completed { winner_id: "devops-2".into(), results: 3, duration_ms: 1234 },
    };
    publisher.publish(&event).await;
    publisher.flush().await;

    let message = tokio::time::timeout(std::time::Duration::from_secs(5), all.next()).await.unwrap().unwrap();
    assert_eq!(message.subject.as_str(), format!("{prefix}.deliberation.completed"));
    assert_eq!(message.headers.unwrap().get("Orchestrator-Task-Id").unwrap().as_str(), "t-42");
    let body: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
    assert_eq!(
        body,
        serde_json::json!({
            "task_id": "t-42", "role": "DEVOPS", "at_ms": 1_700_000_000_000_i64,
            "event": "completed", "winner_id": "devops-2", "results": 3, "duration_ms": 1234
        })
    );
}

#[tokio::test]
async fn a_bad_prefix_or_an_unreachable_server_is_a_clear_error() {
    let err = NatsPublisher::connect(&url(), "has space").await.unwrap_err();
    assert!(matches!(err, EventsError::Prefix { .. }), "{err}");
    assert!(NatsPublisher::connect(&url(), "a..b").await.is_err());
    let err = NatsPublisher::connect("nats://127.0.0.1:1", "orchestrator").await.unwrap_err();
    assert!(err.to_string().starts_with("cannot connect to NATS at nats://127.0.0.1:1"), "{err}");
}
