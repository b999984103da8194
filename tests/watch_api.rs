//! WatchDeliberation over gRPC against the real server: each agent's step as it lands, the
//! final state last, the caller rules of GetDeliberationResult, and a watcher that goes away
//! leaves the deliberation running.

#![allow(clippy::unwrap_used, reason = "test code: a failed step should fail the test loudly")]

use std::sync::Arc;
use std::time::Duration;

use orchestrator_api_grpc::pb;
use orchestrator_api_grpc::pb::orchestrator_service_client::OrchestratorServiceClient;
use orchestrator_server::Config;
use orchestrator_tests::{ScriptedBackend, TestApp, spawn_app, spawn_app_with, wait_until_done};
use tonic::Code;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// Long enough per call that the watch opens before the first proposal lands.
const CALL: Duration = Duration::from_millis(150);

fn request(task_id: &str, agents: i32) -> pb::DeliberateRequest {
    pb::DeliberateRequest {
        task_id: task_id.into(),
        task_description: "Design a rate limiter".into(),
        role: "DEV".into(),
        num_agents: Some(agents),
        rounds: Some(1),
        ..Default::default()
    }
}

fn watch_request(task_id: &str) -> pb::WatchDeliberationRequest {
    pb::WatchDeliberationRequest { task_id: task_id.into() }
}

/// Every update of a watch, until the server ends it.
async fn watch_to_end(
    client: &mut OrchestratorServiceClient<Channel>,
    task_id: &str,
) -> Vec<pb::DeliberationUpdate> {
    let mut stream = client.watch_deliberation(watch_request(task_id)).await.unwrap().into_inner();
    let mut updates = Vec::new();
    while let Some(update) =
        tokio::time::timeout(Duration::from_secs(20), stream.message()).await.unwrap().unwrap()
    {
        updates.push(update);
    }
    updates
}

#[tokio::test]
async fn a_watch_streams_each_agents_step_then_ends_with_the_completed_state() {
    let mut app = spawn_app(Some(Arc::new(ScriptedBackend::new().with_delay(CALL)))).await;
    app.client.submit_deliberation(request("watched", 3)).await.unwrap();

    let updates = watch_to_end(&mut app.client, "watched").await;

    let first = updates.first().unwrap().state.as_ref().unwrap();
    assert_eq!(first.task_id, "watched");
    let last = updates.last().unwrap().state.as_ref().unwrap();
    assert_eq!(last.status(), pb::DeliberationStatus::Completed, "{updates:?}");
    let steps: Vec<&pb::AgentStep> = updates.iter().filter_map(|u| u.agent_step.as_ref()).collect();
    let kinds: Vec<(&str, &str)> = steps.iter().map(|s| (s.phase.as_str(), s.kind.as_str())).collect();
    assert_eq!(
        kinds,
        [
            ("proposing", "proposed"),
            ("proposing", "proposed"),
            ("proposing", "proposed"),
            ("reviewing (round 1)", "reviewed"),
            ("reviewing (round 1)", "reviewed"),
            ("reviewing (round 1)", "reviewed"),
            ("revising (round 1)", "revised"),
            ("revising (round 1)", "revised"),
            ("revising (round 1)", "revised"),
        ],
        "every agent's step, phase by phase: {updates:?}"
    );
    let proposers: std::collections::BTreeSet<&str> =
        steps[..3].iter().map(|s| s.agent_id.as_str()).collect();
    assert_eq!(proposers.len(), 3, "one proposal per agent: {steps:?}");
    assert!(steps.iter().all(|s| s.tokens == 150), "each call's tokens: {steps:?}");
    assert!(steps[3..6].iter().all(|s| !s.target.is_empty() && s.target != s.agent_id), "{steps:?}");
    // The stored state after each phase comes between that phase's steps and the next's.
    let reviewing_state = updates
        .iter()
        .position(|u| {
            u.state.as_ref().is_some_and(|s| {
                s.metadata.as_ref().unwrap().tags.get("phase").map(String::as_str)
                    == Some("reviewing (round 1)")
            })
        })
        .unwrap();
    let first_review =
        updates.iter().position(|u| u.agent_step.as_ref().is_some_and(|s| s.kind == "reviewed")).unwrap();
    assert!(reviewing_state < first_review, "{updates:?}");

    // A finished deliberation: one update, its final state.
    let again = watch_to_end(&mut app.client, "watched").await;
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(again[0].state.as_ref().unwrap().status(), pb::DeliberationStatus::Completed);
    assert_eq!(again[0].status, "complete");
    app.stop().await;
}

#[tokio::test]
async fn dropping_a_watch_leaves_the_deliberation_running() {
    let mut app = spawn_app(Some(Arc::new(ScriptedBackend::new().with_delay(CALL)))).await;
    app.client.submit_deliberation(request("left-running", 2)).await.unwrap();
    let mut stream = app.client.watch_deliberation(watch_request("left-running")).await.unwrap().into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert!(first.state.is_some(), "{first:?}");
    // Wait for a step, so the watch is known to follow the live run, then go away.
    loop {
        let update = stream.message().await.unwrap().unwrap();
        if update.agent_step.is_some() {
            break;
        }
    }
    drop(stream);

    let done = wait_until_done(&mut app, "left-running").await;
    assert_eq!(done.status(), pb::DeliberationStatus::Completed, "{done:?}");
    app.stop().await;
}

#[tokio::test]
async fn unknown_ids_and_blank_ids_are_refused() {
    let mut app = spawn_app(Some(Arc::new(ScriptedBackend::new()))).await;
    let err = app.client.watch_deliberation(watch_request("nobody-submitted-this")).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = app.client.watch_deliberation(watch_request("")).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    app.stop().await;
}

const ALICE: &str = "alice-token-0123456789";
const BOB: &str = "bob-token-0123456789ab";
const OPS: &str = "ops-token-0123456789abc";

/// Sends `authorization: Bearer <token>` on every call.
#[derive(Clone)]
struct Bearer(String);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let value: MetadataValue<_> = format!("Bearer {}", self.0).parse().unwrap();
        request.metadata_mut().insert("authorization", value);
        Ok(request)
    }
}

async fn client(
    app: &TestApp,
    token: &str,
) -> OrchestratorServiceClient<InterceptedService<Channel, Bearer>> {
    OrchestratorServiceClient::with_interceptor(app.channel().await, Bearer(token.to_owned()))
}

#[tokio::test]
async fn another_principals_deliberation_is_not_found_to_watch_but_an_admin_may_watch_it() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("alice {ALICE}\nbob {BOB}\nops {OPS} admin\n")).unwrap();
    let app = spawn_app_with(
        move |c| Config { auth_tokens_file: Some(tokens), ..c },
        Some(Arc::new(ScriptedBackend::new().with_delay(CALL))),
    )
    .await;
    let mut alice = client(&app, ALICE).await;
    alice.submit_deliberation(request("owned-by-a", 2)).await.unwrap();

    let err = client(&app, BOB).await.watch_deliberation(watch_request("owned-by-a")).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(!err.message().contains("alice") && !err.message().contains(ALICE), "{err:?}");

    let mut ops = client(&app, OPS).await;
    let mut stream = ops.watch_deliberation(watch_request("owned-by-a")).await.unwrap().into_inner();
    let mut last = None;
    while let Some(update) =
        tokio::time::timeout(Duration::from_secs(20), stream.message()).await.unwrap().unwrap()
    {
        last = Some(update);
    }
    let last = last.unwrap().state.unwrap();
    assert_eq!(last.status(), pb::DeliberationStatus::Completed);
    app.stop().await;
}
