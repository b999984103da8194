//! Crash safety of the real binary: `kill -9` in the middle of a deliberation loses no finished
//! result; on restart the interrupted one resumes from its last saved phase (or is marked
//! INTERRUPTED when resuming is turned off); the SQLite file stays usable. SIGTERM leaves
//! running work to resume.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use orchestrator_api_grpc::pb;
use orchestrator_api_grpc::pb::DeliberationStatus as Status;
use wiremock::MockServer;

use support::{Client, connect, get, saved_a_phase, slow_model, wait_for};

fn sqlite(db: &Path) -> String {
    format!("sqlite:{}", db.display())
}

fn start_server(db: &Path, model_url: &str) -> (Child, u16) {
    start_server_resuming(db, model_url, true)
}

fn start_server_resuming(db: &Path, model_url: &str, resume: bool) -> (Child, u16) {
    let resume = resume.to_string();
    support::start_server(&sqlite(db), model_url, &[("ORCHESTRATOR_RESUME_UNFINISHED", resume.as_str())])
}

fn request(task_id: &str, rounds: i32) -> pb::DeliberateRequest {
    pb::DeliberateRequest {
        task_description: "Design a crash-safe write-ahead log".into(),
        role: "ARCHITECT".into(),
        task_id: task_id.into(),
        rounds: Some(rounds),
        num_agents: Some(2),
        ..Default::default()
    }
}

/// Finishes one deliberation, kills the server with SIGKILL while a second one is between
/// phases, and restarts it on the same file. Returns the client of the new server, the first
/// response, and how many model calls the first process made.
async fn crash_mid_deliberation(
    model: &MockServer,
    db: &Path,
    resume: bool,
) -> (Client, pb::DeliberateResponse, Child, usize) {
    let (mut server, port) = start_server_resuming(db, &model.uri(), resume);
    let mut client = connect(port).await;

    let finished = client.deliberate(request("finished", 1)).await.unwrap().into_inner();
    assert_eq!(finished.results.len(), 2);

    // Two review rounds: five phases of 400 ms. Kill it once a phase has been saved.
    client.submit_deliberation(request("in-flight", 2)).await.unwrap();
    wait_for(&mut client, "in-flight", saved_a_phase).await;
    server.kill().unwrap(); // SIGKILL: no shutdown hook runs
    server.wait().unwrap();
    let calls_before = support::chat_calls(model).await.len();

    let (server, port) = start_server_resuming(db, &model.uri(), resume);
    let client = connect(port).await;
    (client, finished, server, calls_before)
}

async fn assert_finished_one_survived(client: &mut Client, finished: &pb::DeliberateResponse) {
    let kept = get(client, "finished").await;
    assert_eq!(kept.status(), Status::Completed);
    assert_eq!(kept.results, finished.results, "every field of the finished deliberation survived");
    assert_eq!(kept.winner_id, finished.winner_id);
}

#[tokio::test]
async fn kill_nine_mid_deliberation_loses_nothing_and_the_restart_resumes_from_the_saved_phase() {
    let model = slow_model(Duration::from_millis(400)).await;
    let dir = tempfile::tempdir().unwrap();
    let (mut client, finished, mut server, calls_before) =
        crash_mid_deliberation(&model, &dir.path().join("orchestrator.db"), true).await;

    assert_finished_one_survived(&mut client, &finished).await;
    let resumed = wait_for(&mut client, "in-flight", support::finished).await;
    assert_eq!(resumed.status(), Status::Completed, "{}", resumed.error_message);
    assert_eq!(resumed.results.len(), 2);
    for result in &resumed.results {
        assert_eq!(result.proposal.as_ref().unwrap().revisions.len(), 2, "both review rounds ran");
        assert_eq!(result.reviews.len(), 2);
    }
    // 2 agents × 2 rounds is 10 calls from scratch; the restart redid only unsaved phases.
    let calls_after = support::chat_calls(&model).await.len() - calls_before;
    assert!(calls_after < 10, "resumed with {calls_after} calls");

    // The file takes new work after the crash.
    let after = client.deliberate(request("after-restart", 0)).await.unwrap().into_inner();
    assert_eq!(after.results.len(), 2);
    let listed = client
        .list_deliberations(pb::ListDeliberationsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .deliberations;
    assert_eq!(listed.len(), 3);
    assert!(listed.iter().all(|d| d.status() == Status::Completed));

    server.kill().unwrap();
    server.wait().unwrap();
}

#[tokio::test]
async fn kill_nine_without_resuming_marks_the_unfinished_deliberation_interrupted() {
    let model = slow_model(Duration::from_millis(400)).await;
    let dir = tempfile::tempdir().unwrap();
    let (mut client, finished, mut server, _) =
        crash_mid_deliberation(&model, &dir.path().join("orchestrator.db"), false).await;

    assert_finished_one_survived(&mut client, &finished).await;
    let interrupted = get(&mut client, "in-flight").await;
    assert_eq!(interrupted.status(), Status::Interrupted);
    assert_eq!(interrupted.error_message, "the server stopped before this deliberation finished");
    assert!(interrupted.usage.unwrap().calls >= 2, "the saved phases are still readable");

    server.kill().unwrap();
    server.wait().unwrap();
}

async fn wait_for_exit(mut server: Child) -> std::process::ExitStatus {
    // Off the runtime's thread, so the test's client connection keeps being served meanwhile.
    tokio::task::spawn_blocking(move || server.wait().unwrap()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_leaves_running_work_to_resume_and_exits_cleanly() {
    let model = slow_model(Duration::from_millis(500)).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("o.db");
    let (server, port) = start_server(&db, &model.uri());
    let mut client = connect(port).await;
    client.submit_deliberation(request("submitted", 3)).await.unwrap();
    let waiting = {
        let mut client = client.clone();
        tokio::spawn(async move { client.deliberate(request("waiting", 3)).await })
    };
    // Terminated once both run and have saved their proposals.
    for task_id in ["submitted", "waiting"] {
        wait_for(&mut client, task_id, saved_a_phase).await;
    }

    let pid = server.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let exit = wait_for_exit(server).await;
    assert!(exit.success(), "exit status {exit:?}");
    let answered = waiting.await.unwrap().unwrap_err();
    assert_eq!(answered.code(), tonic::Code::Unavailable, "{answered:?}");
    assert!(answered.message().contains("resumes when it restarts"), "{}", answered.message());

    let (server, port) = start_server(&db, &model.uri());
    let mut client = connect(port).await;
    for task_id in ["submitted", "waiting"] {
        let r = wait_for(&mut client, task_id, support::finished).await;
        assert_eq!(r.status(), Status::Completed, "{task_id}: {}", r.error_message);
        assert!(r.results.iter().all(|x| x.reviews.len() == 3));
    }
    let pid = server.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    assert!(wait_for_exit(server).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_without_resuming_interrupts_running_work_after_the_grace_period() {
    let model = slow_model(Duration::from_secs(60)).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("o.db");
    let (server, port) = start_server_resuming(&db, &model.uri(), false);
    let mut client = connect(port).await;
    client.submit_deliberation(request("stuck", 0)).await.unwrap();
    let waiting = {
        let mut client = client.clone();
        tokio::spawn(async move { client.deliberate(request("waiting", 0)).await })
    };
    // Terminated once both are running (their model calls take a minute).
    for task_id in ["stuck", "waiting"] {
        wait_for(&mut client, task_id, |r| r.status() == Status::InProgress).await;
    }

    let pid = server.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    assert!(wait_for_exit(server).await.success());
    let answered = waiting.await.unwrap().unwrap_err();
    assert_eq!(
        (answered.code(), answered.message()),
        (tonic::Code::Unavailable, "the server is shutting down")
    );

    let (mut server, port) = start_server_resuming(&db, &model.uri(), false);
    let mut client = connect(port).await;
    for task_id in ["stuck", "waiting"] {
        let r = get(&mut client, task_id).await;
        assert_eq!(r.status(), Status::Interrupted, "{task_id}");
        assert_eq!(r.error_message, "the server is shutting down");
    }
    server.kill().unwrap();
    server.wait().unwrap();
}

/// Runs `orchestrator serve` on `db` and `listen` to its end (it must fail) and returns its
/// exit status and log.
async fn failed_second_start(db: &Path, model_url: &str, listen: &str) -> (std::process::ExitStatus, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_orchestrator"));
    command
        .arg("serve")
        .env("ORCHESTRATOR_LISTEN", listen)
        .env("ORCHESTRATOR_DATABASE_URL", sqlite(db))
        .env("ORCHESTRATOR_LLM_BASE_URL", format!("{model_url}/v1"))
        .env("ORCHESTRATOR_LLM_MODEL", "slow-model")
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let output = tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap();
    (output.status, String::from_utf8_lossy(&output.stderr).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_serve_on_the_same_database_leaves_the_running_servers_work_alone() {
    let model = slow_model(Duration::from_millis(400)).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("orchestrator.db");
    let log = dir.path().join("first.log");
    let (first, port) = support::start_server_logged(&sqlite(&db), &model.uri(), &[], &log);
    let mut client = connect(port).await;
    client.submit_deliberation(request("running", 2)).await.unwrap();
    wait_for(&mut client, "running", saved_a_phase).await;

    // Same port: refused at bind, before the database is opened.
    let (status, second_log) = failed_second_start(&db, &model.uri(), &format!("127.0.0.1:{port}")).await;
    assert!(!status.success(), "{second_log}");
    assert!(second_log.contains("Address already in use"), "{second_log}");
    // Another port: refused by the database file's lock, before anything is read or claimed.
    let (status, third_log) = failed_second_start(&db, &model.uri(), "127.0.0.1:0").await;
    assert!(!status.success(), "{third_log}");
    let holder = format!("in use by another orchestrator process (pid {})", first.id());
    assert!(third_log.contains(&holder), "{third_log}");
    for log in [&second_log, &third_log] {
        assert!(!log.contains("INTERRUPTED") && !log.contains("claimed"), "recovered nothing:\n{log}");
    }

    let done = wait_for(&mut client, "running", support::finished).await;
    assert_eq!(done.status(), Status::Completed, "{}", done.error_message);
    assert!(done.results.iter().all(|r| r.reviews.len() == 2), "both rounds ran here");
    let first_log = std::fs::read_to_string(&log).unwrap();
    for lost in ["lease lost", "lease not renewed", "write refused"] {
        assert!(!first_log.contains(lost), "the running server kept its leases:\n{first_log}");
    }
    let pid = first.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    assert!(wait_for_exit(first).await.success());
}
