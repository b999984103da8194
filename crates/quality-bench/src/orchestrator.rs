//! The orchestrator the benchmark talks to: one already running (`--server`), or the real
//! server started in this process on a free loopback port against an OpenAI-compatible
//! endpoint. Either way every problem goes through the public gRPC API.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use orchestrator_api_grpc::pb::orchestrator_service_client::OrchestratorServiceClient;
use orchestrator_infra_llm::LlmProfile;
use orchestrator_server::{Application, Config};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tracing::{info, warn};

use crate::error::{QualityError, Result};

/// The model settings of an in-process server.
#[derive(Debug, Clone)]
pub struct ModelSettings {
    /// Base URL of the OpenAI-compatible API (`…/v1`).
    pub url: String,
    pub model: String,
    pub max_tokens: u32,
    /// `None`: the profile's default.
    pub temperature: Option<f64>,
    /// Bound on one call, all retries included.
    pub call_timeout: Duration,
    /// Bound on one deliberation.
    pub deliberation_timeout: Duration,
}

/// A server this process started.
#[derive(Debug)]
struct InProcess {
    shutdown: oneshot::Sender<()>,
    server: JoinHandle<std::result::Result<(), orchestrator_server::ServerError>>,
    /// Holds the server's SQLite file; removed at the end.
    _data_dir: tempfile::TempDir,
}

/// A client, and the server behind it when this process started one.
#[derive(Debug)]
pub struct Orchestrator {
    pub client: OrchestratorServiceClient<Channel>,
    /// Where the client connects (for the report).
    pub endpoint: String,
    in_process: Option<InProcess>,
}

impl Orchestrator {
    /// Connects to a running orchestrator.
    ///
    /// # Errors
    /// [`QualityError::Connect`] when it cannot be reached.
    pub async fn connect(url: &str) -> Result<Self> {
        let client = OrchestratorServiceClient::connect(url.to_owned())
            .await
            .map_err(|source| QualityError::Connect { url: url.to_owned(), source })?;
        Ok(Self { client: big_messages(client), endpoint: url.to_owned(), in_process: None })
    }

    /// Starts the real server in this process with one `default` profile on `settings`,
    /// SQLite in a temporary directory, listening on a free loopback port.
    ///
    /// # Errors
    /// [`QualityError::Server`] when it does not start, [`QualityError::Connect`] when the
    /// client cannot reach it.
    pub async fn start(settings: &ModelSettings) -> Result<Self> {
        let data_dir = tempfile::tempdir()
            .map_err(|source| QualityError::Output { path: std::env::temp_dir(), source })?;
        let mut profile = LlmProfile::new(settings.url.clone(), settings.model.clone());
        profile.max_tokens = settings.max_tokens;
        if let Some(temperature) = settings.temperature {
            profile.temperature = temperature;
        }
        profile.timeout = settings.call_timeout;
        profile.total_timeout = settings.call_timeout;
        let config = Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            database_url: format!("sqlite:{}", data_dir.path().join("quality.db").display()),
            default_timeout_secs: settings.deliberation_timeout.as_secs(),
            shutdown_grace_secs: 5,
            profiles: BTreeMap::from([("default".to_owned(), profile)]),
            ..Config::default()
        };
        let app = Application::build(config).await.map_err(|source| QualityError::Server { source })?;
        let addr = app.local_addr();
        let (shutdown, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until(async move {
            let _ = stopped.await;
        }));
        let endpoint = format!("http://{addr}");
        info!(%endpoint, model = settings.model, llm = settings.url, "orchestrator started in process");
        let client = OrchestratorServiceClient::connect(endpoint.clone())
            .await
            .map_err(|source| QualityError::Connect { url: endpoint.clone(), source })?;
        Ok(Self {
            client: big_messages(client),
            endpoint,
            in_process: Some(InProcess { shutdown, server, _data_dir: data_dir }),
        })
    }

    /// Stops the in-process server, if any, and waits for it.
    pub async fn stop(self) {
        if let Some(running) = self.in_process {
            let _ = running.shutdown.send(());
            match running.server.await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => warn!(%error, "the in-process orchestrator stopped with an error"),
                Err(error) => warn!(%error, "the in-process orchestrator task failed"),
            }
        }
    }
}

/// Deliberation responses carry every proposal and review; allow more than tonic's 4 MiB.
fn big_messages(client: OrchestratorServiceClient<Channel>) -> OrchestratorServiceClient<Channel> {
    client.max_decoding_message_size(64 * 1024 * 1024)
}
