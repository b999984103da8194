//! Building and running the server: adapters into use cases, the listener, graceful shutdown.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use orchestrator_api_grpc::pb::orchestrator_service_server::OrchestratorServiceServer;
use orchestrator_api_grpc::router::MAX_REQUEST_BYTES;
use orchestrator_api_grpc::{AuthLayer, Authentication, OrchestratorApi, RequestErrorsLayer, grpc_router};
use orchestrator_application::ports::{
    AgentBackend, BackendProber, Clock, CouncilStore, DeliberationStore, DryRunner, EventPublisher,
    IdGenerator,
};
use orchestrator_application::{
    Councils, Counters, Deliberate, DeliberationSettings, GetStatus, JobSettings, Jobs, Orchestrate,
};
use orchestrator_domain::ProfileName;
use orchestrator_infra_dryrun::CommandDryRunner;
use orchestrator_infra_events::NatsPublisher;
use orchestrator_infra_llm::OpenAiBackend;
use tokio::net::TcpListener;
use tonic::transport::ServerTlsConfig;
use tonic::transport::server::TcpIncoming;
use tracing::{info, warn};

use crate::backend_check;
use crate::config::Config;
use crate::error::{Result, ServerError};
use crate::prometheus::MetricsEndpoint;
use crate::security;
use crate::system::{SystemClock, UuidV7Ids};

/// The adapters a server runs with. [`Application::build`] makes them from the
/// configuration; tests pass their own (a scripted backend, say) to [`Application::build_with`].
pub struct Dependencies {
    pub backend: Option<Arc<dyn AgentBackend>>,
    /// `None`: open the store named by `database_url`.
    pub store: Option<Arc<dyn DeliberationStore>>,
    /// The council registry; `None`: the registry of the store opened from `database_url`
    /// (a `store` given without a registry leaves the server without standing councils).
    pub councils: Option<Arc<dyn CouncilStore>>,
    pub dry_runner: Option<Arc<dyn DryRunner>>,
    /// `None`: publish to `nats_url` when one is configured.
    pub events: Option<Arc<dyn EventPublisher>>,
    pub clock: Arc<dyn Clock>,
    pub ids: Arc<dyn IdGenerator>,
    /// Checks the model servers at startup and in GetStatus; `None`: no check.
    pub prober: Option<Arc<dyn BackendProber>>,
}

impl std::fmt::Debug for Dependencies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dependencies").field("backend", &self.backend.is_some()).finish_non_exhaustive()
    }
}

impl Dependencies {
    /// System clock and ids, no backend, no dry runner.
    pub fn system() -> Self {
        Self {
            backend: None,
            store: None,
            councils: None,
            dry_runner: None,
            events: None,
            clock: Arc::new(SystemClock),
            ids: Arc::new(UuidV7Ids),
            prober: None,
        }
    }
}

/// Time allowed after the grace period for interrupted work to be recorded and answered.
const DRAIN_MARGIN: Duration = Duration::from_secs(5);

/// A bound, ready-to-serve orchestrator.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    local_addr: SocketAddr,
    api: OrchestratorApi,
    jobs: Arc<Jobs>,
    authentication: Authentication,
    tls: Option<ServerTlsConfig>,
    config: Config,
    /// `/metrics`, when `metrics_listen` is set.
    metrics: Option<MetricsEndpoint>,
}

impl Application {
    /// Builds every adapter from the configuration and binds the listener.
    ///
    /// # Errors
    /// Configuration, adapter or bind failures.
    pub async fn build(config: Config) -> Result<Self> {
        let mut deps = Dependencies::system();
        let backend = openai_backend(&config)?;
        deps.prober = backend.clone().map(|backend| backend as Arc<dyn BackendProber>);
        deps.backend = backend.map(|backend| backend as Arc<dyn AgentBackend>);
        Self::build_with(config, deps).await
    }

    /// Builds with the given adapters and binds the listener (port 0 picks a free port).
    /// Adapters left `None` (store, dry runner) are made from the configuration.
    ///
    /// # Errors
    /// Configuration, storage or bind failures.
    pub async fn build_with(config: Config, mut deps: Dependencies) -> Result<Self> {
        let authentication = security::authentication(&config)?;
        let tls = security::server_tls(&config)?;
        if deps.dry_runner.is_none()
            && let Some(dry_run) = &config.dry_run
        {
            let runner = CommandDryRunner::new(dry_run.clone())
                .map_err(|e| ServerError::config(format!("dry_run.{}", e.field), e.reason))?;
            info!(command = ?dry_run.command, "dry-run check configured");
            deps.dry_runner = Some(Arc::new(runner));
        }
        if deps.events.is_none()
            && let Some(url) = &config.nats_url
        {
            let publisher = NatsPublisher::connect(url, &config.events_prefix)
                .await
                .map_err(|e| ServerError::config("nats_url", e.to_string()))?;
            info!(url, prefix = config.events_prefix, "publishing deliberation events to NATS");
            deps.events = Some(Arc::new(publisher));
        }
        let (store, councils) = match deps.store {
            Some(store) => (store, deps.councils),
            None => {
                info!(database = %orchestrator_infra_store::redact_url(&config.database_url), "opening deliberation store");
                let stores = orchestrator_infra_store::connect_stores(
                    &config.database_url,
                    &orchestrator_infra_store::StoreOptions::default(),
                )
                .await?;
                (stores.deliberations, Some(deps.councils.unwrap_or(stores.councils)))
            }
        };
        let tracker = Arc::new(Counters::new(deps.clock.now_ms()));
        let llm_configured = deps.backend.is_some();
        if !llm_configured {
            warn!("no LLM backend configured: Deliberate and Orchestrate will answer FAILED_PRECONDITION");
        }
        let settings =
            DeliberationSettings { default_timeout: config.default_timeout(), ..Default::default() };
        let registry = councils.as_ref().map(|store| {
            Arc::new(Councils::new(
                Arc::clone(store),
                deps.backend.clone(),
                Arc::clone(&deps.clock),
                Arc::clone(&deps.ids),
            ))
        });
        if let Some(registry) = &registry {
            let created =
                registry.declare(&config.declared_councils()?).await.map_err(|error| match error {
                    orchestrator_application::ApplicationError::Store { source } => {
                        ServerError::Store(source)
                    }
                    refused => ServerError::config("councils", refused.to_string()),
                })?;
            if !created.is_empty() {
                info!(roles = ?created, "created the standing councils the configuration declares");
            }
        }
        let mut deliberate = Deliberate::new(
            deps.backend,
            deps.dry_runner,
            Arc::clone(&deps.clock),
            deps.ids,
            Arc::clone(&tracker),
            settings,
        );
        if let Some(councils) = councils {
            deliberate = deliberate.with_councils(councils);
        }
        let deliberate = Arc::new(deliberate);
        let job_settings = JobSettings {
            max_running: config.max_running,
            queue_capacity: config.queue_capacity,
            resume_unfinished: config.resume_unfinished,
            node_id: config.node_id.clone(),
            lease: Duration::from_secs(config.lease_secs),
        };
        let mut jobs = Jobs::new(deliberate, store, Arc::clone(&deps.clock), job_settings);
        if let Some(events) = deps.events {
            jobs = jobs.with_events(events);
        }
        let jobs = Arc::new(jobs);
        let recovery = jobs.recover().await?;
        if recovery.resumed + recovery.interrupted > 0 {
            info!(
                resumed = recovery.resumed,
                interrupted = recovery.interrupted,
                "recovered unfinished deliberations"
            );
        }
        let orchestrate = Arc::new(Orchestrate::new(Arc::clone(&jobs)));
        if let Some(prober) = &deps.prober {
            backend_check::spawn_startup_probe(Arc::clone(prober));
        }
        let status = Arc::new(
            GetStatus::new(Arc::clone(&tracker), Arc::clone(&deps.clock), llm_configured)
                .with_prober(deps.prober),
        );
        let mut api = OrchestratorApi::new(Arc::clone(&jobs), orchestrate, status, tracker, deps.clock);
        if let Some(registry) = registry {
            api = api.with_councils(registry);
        }

        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| ServerError::Bind { addr: config.listen.to_string(), source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| ServerError::Bind { addr: config.listen.to_string(), source })?;
        let metrics = match config.metrics_listen {
            Some(addr) => Some(MetricsEndpoint::bind(addr, Arc::clone(&jobs)).await?),
            None => None,
        };
        Ok(Self { listener, local_addr, api, jobs, authentication, tls, config, metrics })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address `/metrics` is served on, when `metrics_listen` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(MetricsEndpoint::local_addr)
    }

    /// Serves until `shutdown` resolves, then reports NOT_SERVING, stops accepting, lets
    /// running deliberations finish for up to the grace period and ends the rest INTERRUPTED.
    ///
    /// # Errors
    /// Transport failures.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        let services = grpc_router(self.api).await?;
        let health = services.health.clone();
        let grace = self.config.shutdown_grace();
        let jobs = Arc::clone(&self.jobs);
        let (drained_tx, drained_rx) = tokio::sync::oneshot::channel::<()>();
        let (signalled_tx, signalled_rx) = tokio::sync::oneshot::channel::<()>();
        let signal = async move {
            shutdown.await;
            info!(grace_secs = grace.as_secs(), "shutdown requested; draining");
            health.set_not_serving::<OrchestratorServiceServer<OrchestratorApi>>().await;
            health.set_service_status("", tonic_health::ServingStatus::NotServing).await;
            let _ = signalled_tx.send(());
            // Runs beside the server: waiting RPCs finish once their deliberations end.
            tokio::spawn(async move {
                jobs.shutdown(grace).await;
                let _ = drained_tx.send(());
            });
        };
        // Renews this node's leases and takes over work other nodes left; ends after shutdown.
        tokio::spawn(Arc::clone(&self.jobs).maintain());
        let metrics = self.metrics.map(|endpoint| tokio::spawn(endpoint.serve()));
        info!(addr = %self.local_addr, node_id = self.config.node_id, "orchestrator listening");
        // Small unary replies must not wait for Nagle's algorithm (40 ms with delayed ACKs).
        let incoming = TcpIncoming::from(self.listener)
            .with_nodelay(Some(true))
            .with_keepalive(Some(Duration::from_secs(60)));
        let mut server = tonic::transport::Server::builder();
        if let Some(tls) = self.tls {
            server = server.tls_config(tls)?;
        }
        let serve = server
            .layer(RequestErrorsLayer::new(MAX_REQUEST_BYTES))
            .layer(AuthLayer::new(self.authentication, self.config.reflection_open))
            .add_routes(services.routes)
            .serve_with_incoming_shutdown(incoming, signal);
        // Deliberations are interrupted at the grace period; connections a client keeps open
        // past it (plus a margin for the interrupted RPCs to answer) do not hold the exit.
        let give_up = async {
            match signalled_rx.await {
                Ok(()) => tokio::time::sleep(grace + DRAIN_MARGIN).await,
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            served = serve => served?,
            () = give_up => warn!("connections still open after the grace period; exiting"),
        }
        // Background (submitted) deliberations are not RPCs: wait for their drain too.
        let _ = tokio::time::timeout(DRAIN_MARGIN, drained_rx).await;
        if let Some(metrics) = metrics {
            metrics.abort();
        }
        info!("orchestrator stopped");
        Ok(())
    }
}

/// The OpenAI-compatible backend of the configured profiles, or `None` when there is none.
///
/// # Errors
/// A profile that is invalid, named by its key (`profiles.<name>.<field>`).
pub fn llm_backend(config: &Config) -> Result<Option<Arc<dyn AgentBackend>>> {
    Ok(openai_backend(config)?.map(|backend| backend as Arc<dyn AgentBackend>))
}

/// [`llm_backend`] as its concrete type, which also probes the model servers.
///
/// # Errors
/// See [`llm_backend`].
pub fn openai_backend(config: &Config) -> Result<Option<Arc<OpenAiBackend>>> {
    if !config.llm_configured() {
        return Ok(None);
    }
    let profiles = config
        .profiles
        .iter()
        .map(|(name, profile)| {
            let name = ProfileName::new(name.as_str())
                .map_err(|e| ServerError::config(format!("profiles.{name}"), e.to_string()))?;
            Ok((name, profile.clone()))
        })
        .collect::<Result<BTreeMap<_, _>>>()?;
    let backend = OpenAiBackend::new(profiles).map_err(|e| ServerError::config("profiles", e.to_string()))?;
    let names: Vec<&str> = backend.profile_names().map(ProfileName::as_str).collect();
    info!(profiles = ?names, "LLM backend configured");
    Ok(Some(Arc::new(backend)))
}

/// Resolves on SIGTERM or ctrl-c.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            warn!(%error, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(error) => {
                warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
