//! Shared helpers of the integration tests: start the real server on 127.0.0.1:0 with a
//! scripted agent backend (test code only) and talk to it through the generated client.
#![forbid(unsafe_code)]
#![allow(unreachable_pub, missing_debug_implementations)]

pub mod scripted;

use std::net::SocketAddr;
use std::sync::Arc;

use orchestrator_api_grpc::pb;
use orchestrator_api_grpc::pb::orchestrator_service_client::OrchestratorServiceClient;
use orchestrator_application::ports::AgentBackend;
use orchestrator_server::{Application, Config, Dependencies};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

pub use scripted::ScriptedBackend;

/// A running server and a client connected to it. Dropping it stops the server.
pub struct TestApp {
    pub addr: SocketAddr,
    /// Holds the SQLite file of this server; removed when the app is dropped.
    pub data_dir: tempfile::TempDir,
    pub client: OrchestratorServiceClient<Channel>,
    shutdown: Option<oneshot::Sender<()>>,
    pub server: Option<JoinHandle<Result<(), orchestrator_server::ServerError>>>,
}

impl TestApp {
    /// A channel to the server, for other clients (health, reflection).
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .expect("valid uri")
            .connect()
            .await
            .expect("server accepts connections")
    }

    /// Asks the server to stop and waits until it has.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("server stopped cleanly");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The test configuration: any free loopback port, short grace period, SQLite in `data_dir`.
pub fn test_config(data_dir: &tempfile::TempDir) -> Config {
    Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        shutdown_grace_secs: 5,
        database_url: format!("sqlite:{}", data_dir.path().join("orchestrator.db").display()),
        ..Config::default()
    }
}

/// Starts the server with `backend` (or none) and connects a client.
pub async fn spawn_app(backend: Option<Arc<dyn AgentBackend>>) -> TestApp {
    spawn_app_with(|config| config, backend).await
}

/// Starts the server with the test configuration adjusted by `configure`.
pub async fn spawn_app_with(
    configure: impl FnOnce(Config) -> Config,
    backend: Option<Arc<dyn AgentBackend>>,
) -> TestApp {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let config = configure(test_config(&data_dir));
    let deps = Dependencies { backend, ..Dependencies::system() };
    let app = Application::build_with(config, deps).await.expect("server builds");
    let addr = app.local_addr();
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));
    let client = OrchestratorServiceClient::connect(format!("http://{addr}")).await.expect("client connects");
    TestApp { addr, data_dir, client, shutdown: Some(tx), server: Some(server) }
}

/// Waits for the deliberation to end, on its WatchDeliberation stream (which ends when the
/// deliberation does), and returns it as stored (bounded: 20 s).
pub async fn wait_until_done(app: &mut TestApp, task_id: &str) -> pb::GetDeliberationResultResponse {
    let watch = async {
        let mut updates = app
            .client
            .watch_deliberation(pb::WatchDeliberationRequest { task_id: task_id.into() })
            .await
            .expect("WatchDeliberation")
            .into_inner();
        while updates.message().await.expect("the watch stream").is_some() {}
    };
    tokio::time::timeout(std::time::Duration::from_secs(20), watch)
        .await
        .unwrap_or_else(|_| panic!("deliberation {task_id} did not finish within 20 s"));
    let stored = app
        .client
        .get_deliberation_result(pb::GetDeliberationResultRequest { task_id: task_id.into() })
        .await
        .expect("GetDeliberationResult")
        .into_inner();
    assert!(
        !matches!(stored.status(), pb::DeliberationStatus::Pending | pb::DeliberationStatus::InProgress),
        "the watch of {task_id} ended while it was still {:?}",
        stored.status()
    );
    stored
}
