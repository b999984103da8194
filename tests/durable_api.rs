//! Durable deliberations over gRPC: submit, poll, list, cancel, idempotency, bounded work.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns panic on purpose

use std::sync::Arc;
use std::time::Duration;

use orchestrator_api_grpc::pb;
use orchestrator_api_grpc::pb::DeliberationStatus as Status;
use orchestrator_tests::{ScriptedBackend, TestApp, spawn_app, spawn_app_with, wait_until_done};
use tonic::Code;

fn request(task_id: &str) -> pb::DeliberateRequest {
    pb::DeliberateRequest {
        task_description: "Make the nightly export resumable".into(),
        role: "DATA".into(),
        task_id: task_id.into(),
        num_agents: Some(2),
        ..Default::default()
    }
}

async fn result(app: &mut TestApp, task_id: &str) -> pb::GetDeliberationResultResponse {
    app.client
        .get_deliberation_result(pb::GetDeliberationResultRequest { task_id: task_id.into() })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn submit_answers_at_once_and_the_result_can_be_polled() {
    let backend = ScriptedBackend::new().with_delay(Duration::from_millis(100));
    let mut app = spawn_app(Some(Arc::new(backend))).await;

    let submitted = app.client.submit_deliberation(request("export-1")).await.unwrap().into_inner();
    assert_eq!(submitted.task_id, "export-1");
    assert!(submitted.created);
    assert_eq!(submitted.status(), Status::Pending);

    let done = wait_until_done(&mut app, "export-1").await;
    assert_eq!(done.status(), Status::Completed);
    assert_eq!(done.results.len(), 2);
    assert_eq!(done.winner_id, done.results[0].proposal.as_ref().unwrap().author_id);
    assert!(done.duration_ms > 0);
    assert_eq!(done.role, "DATA");
    assert!(done.created_at_ms > 0);
    assert!(done.usage.unwrap().calls >= 6);
    assert_eq!(done.results[0].proposal.as_ref().unwrap().revisions.len(), 1);
}

#[tokio::test]
async fn a_synchronous_deliberation_is_stored_and_a_retry_is_answered_from_storage() {
    let backend = Arc::new(ScriptedBackend::new());
    let mut app = spawn_app(Some(backend.clone())).await;
    let first = app.client.deliberate(request("sync-1")).await.unwrap().into_inner();
    let calls = backend.calls.load(std::sync::atomic::Ordering::SeqCst);

    let retry = app.client.deliberate(request("sync-1")).await.unwrap().into_inner();
    assert_eq!(retry.results, first.results);
    assert_eq!(retry.winner_id, first.winner_id);
    assert_eq!(backend.calls.load(std::sync::atomic::Ordering::SeqCst), calls, "no new agent call");

    let stored = result(&mut app, "sync-1").await;
    assert_eq!(stored.status(), Status::Completed);
    assert_eq!(stored.results, first.results);

    let again = app.client.submit_deliberation(request("sync-1")).await.unwrap().into_inner();
    assert!(!again.created);
    assert_eq!(again.status(), Status::Completed);
}

#[tokio::test]
async fn unknown_and_malformed_ids_are_not_found_and_invalid() {
    let mut app = spawn_app(Some(Arc::new(ScriptedBackend::new()))).await;
    let status = app
        .client
        .get_deliberation_result(pb::GetDeliberationResultRequest { task_id: "nope".into() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(status.message(), "no deliberation with task_id \"nope\"");
    let status =
        app.client.get_deliberation_result(pb::GetDeliberationResultRequest::default()).await.unwrap_err();
    assert_eq!((status.code(), status.message()), (Code::InvalidArgument, "task_id: is required"));
    let status = app
        .client
        .cancel_deliberation(pb::CancelDeliberationRequest { task_id: "nope".into() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

#[tokio::test]
async fn cancel_stops_a_running_deliberation_and_refuses_a_finished_one() {
    let backend = ScriptedBackend::new().with_delay(Duration::from_secs(30));
    let mut app = spawn_app(Some(Arc::new(backend))).await;
    app.client.submit_deliberation(request("long")).await.unwrap();
    let cancelled = app
        .client
        .cancel_deliberation(pb::CancelDeliberationRequest { task_id: "long".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cancelled.status(), Status::Cancelled);
    let stored = result(&mut app, "long").await;
    assert_eq!(stored.status(), Status::Cancelled);
    assert_eq!(stored.error_message, "cancelled by a client");
    let status = app
        .client
        .cancel_deliberation(pb::CancelDeliberationRequest { task_id: "long".into() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(status.message(), "deliberation long already ended as CANCELLED");
}

#[tokio::test]
async fn failed_and_timed_out_deliberations_are_stored_with_their_reason() {
    let backend = ScriptedBackend::new().failing(&["data-1", "data-2"]);
    let mut app = spawn_app(Some(Arc::new(backend))).await;
    app.client.submit_deliberation(request("doomed")).await.unwrap();
    let done = wait_until_done(&mut app, "doomed").await;
    assert_eq!(done.status(), Status::Failed);
    assert!(done.error_message.starts_with("every agent failed: data-1 (propose)"), "{}", done.error_message);

    let mut app = spawn_app(Some(Arc::new(ScriptedBackend::new().with_delay(Duration::from_secs(5))))).await;
    let mut slow = request("slow");
    slow.constraints = Some(pb::TaskConstraints { timeout_seconds: 1, ..Default::default() });
    app.client.submit_deliberation(slow).await.unwrap();
    let done = wait_until_done(&mut app, "slow").await;
    assert_eq!(done.status(), Status::Timeout);
    assert_eq!(done.error_message, "deliberation exceeded its 1s deadline while proposing");
}

#[tokio::test]
async fn beyond_the_queue_submissions_are_resource_exhausted() {
    let backend = ScriptedBackend::new().with_delay(Duration::from_secs(30));
    let mut app = spawn_app_with(
        |config| orchestrator_server::Config { max_running: 1, queue_capacity: 1, ..config },
        Some(Arc::new(backend)),
    )
    .await;
    app.client.submit_deliberation(request("q-1")).await.unwrap();
    app.client.submit_deliberation(request("q-2")).await.unwrap();
    let status = app.client.submit_deliberation(request("q-3")).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(result(&mut app, "q-2").await.status(), Status::Pending);
    let missing =
        app.client.get_deliberation_result(pb::GetDeliberationResultRequest { task_id: "q-3".into() }).await;
    assert_eq!(missing.unwrap_err().code(), Code::NotFound, "a refused submission stores nothing");
}

#[tokio::test]
async fn two_hundred_concurrent_submissions_all_complete_and_are_all_listed() {
    let backend = ScriptedBackend::new().with_delay(Duration::from_millis(20));
    let app = spawn_app_with(
        |config| orchestrator_server::Config { max_running: 32, queue_capacity: 256, ..config },
        Some(Arc::new(backend)),
    )
    .await;
    let submissions =
        (0..200).map(|i| {
            let mut client = app.client.clone();
            async move {
                client.submit_deliberation(request(&format!("bulk-{i:03}"))).await.map(|r| r.into_inner())
            }
        });
    let submitted = futures::future::join_all(submissions).await;
    assert!(submitted.iter().all(|s| s.as_ref().is_ok_and(|s| s.created)), "every submission accepted");

    let mut app = app;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..600 {
        seen.clear();
        let mut token = String::new();
        loop {
            let page = app
                .client
                .list_deliberations(pb::ListDeliberationsRequest {
                    page_size: 50,
                    page_token: token.clone(),
                    status_filter: Status::Completed.into(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            assert!(page.deliberations.len() <= 50);
            for d in &page.deliberations {
                assert!(seen.insert(d.task_id.clone()), "listed twice: {}", d.task_id);
                assert_eq!(d.status(), Status::Completed);
                assert!(!d.winner_id.is_empty());
            }
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        if seen.len() == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen.len(), 200);
}

#[tokio::test]
async fn list_filters_by_role_and_rejects_bad_tokens() {
    let mut app = spawn_app(Some(Arc::new(ScriptedBackend::new()))).await;
    app.client.deliberate(request("data-a")).await.unwrap();
    app.client.deliberate(pb::DeliberateRequest { role: "QA".into(), ..request("qa-a") }).await.unwrap();
    let page = app
        .client
        .list_deliberations(pb::ListDeliberationsRequest { role_filter: "qa".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<_> = page.deliberations.iter().map(|d| d.task_id.as_str()).collect();
    assert_eq!(ids, ["qa-a"]);
    let status = app
        .client
        .list_deliberations(pb::ListDeliberationsRequest {
            page_token: "garbage".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().starts_with("page_token"), "{}", status.message());
}

#[tokio::test]
async fn deliberations_survive_a_server_restart_on_the_same_database() {
    let data_dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", data_dir.path().join("keep.db").display());
    let configure = |url: String| move |config| orchestrator_server::Config { database_url: url, ..config };

    let mut app = spawn_app_with(configure(url.clone()), Some(Arc::new(ScriptedBackend::new()))).await;
    let first = app.client.deliberate(request("kept")).await.unwrap().into_inner();
    app.stop().await;

    let mut app = spawn_app_with(configure(url), Some(Arc::new(ScriptedBackend::new()))).await;
    let stored = result(&mut app, "kept").await;
    assert_eq!(stored.status(), Status::Completed);
    assert_eq!(stored.results, first.results);
    assert_eq!(stored.winner_id, first.winner_id);
}

#[tokio::test]
async fn postgres_stores_deliberations_too() {
    let url = orchestrator_test_support::services::pg_url();
    if let Err(error) =
        orchestrator_infra_store::connect(&url, &orchestrator_infra_store::StoreOptions::default()).await
    {
        let why = orchestrator_test_support::chain(&error);
        orchestrator_test_support::skip("PostgreSQL", "set ORCHESTRATOR_TEST_PG_URL", why);
        return;
    }
    let mut app = spawn_app_with(
        move |config| orchestrator_server::Config { database_url: url, ..config },
        Some(Arc::new(ScriptedBackend::new())),
    )
    .await;
    let task_id = format!("pg-{}", uuid::Uuid::now_v7());
    let first = app.client.deliberate(request(&task_id)).await.unwrap().into_inner();
    let stored = result(&mut app, &task_id).await;
    assert_eq!(stored.status(), Status::Completed);
    assert_eq!(stored.results, first.results);
}
