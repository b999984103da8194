//! Building and running the server: adapters (see [`crate::adapters`]) into use cases, the
//! listener, graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use orchestrator_api_grpc::{Authentication, OrchestratorApi};
use orchestrator_application::ports::{AgentBackend, BackendProber, DeliberationStore};
use orchestrator_application::{Councils, Counters, Deliberate, GetStatus, Jobs, Orchestrate};
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::adapters::{self, Stores};
pub use crate::adapters::{Dependencies, llm_backend, openai_backend};
use crate::backend_check;
use crate::bus::{self, Bus};
use crate::config::Config;
use crate::error::{Result, ServerError};
use crate::prometheus::MetricsEndpoint;
use crate::security;
pub use crate::signals::{shutdown_signal, shutdown_signals};
use crate::system::process_node_id;
use crate::tls::ServerTls;

/// The grpc.health service name that answers SERVING while the process runs, whatever the
/// store's state: for liveness probes, which must not restart a server whose database is down
/// (readiness uses `""`, which follows the store).
pub const LIVENESS_SERVICE: &str = "liveness";

/// A bound, ready-to-serve orchestrator.
pub struct Application {
    listener: TcpListener,
    local_addr: SocketAddr,
    /// See [`process_node_id`].
    node_id: String,
    api: OrchestratorApi,
    jobs: Arc<Jobs>,
    /// Closed at the end of shutdown, after the last write.
    store: Arc<dyn DeliberationStore>,
    authentication: Authentication,
    tls: Option<Arc<ServerTls>>,
    config: Config,
    /// `/metrics`, when `metrics_listen` is set.
    metrics: Option<MetricsEndpoint>,
    /// The events relay and the bus intake, when `nats_url` is set.
    bus: Option<Bus>,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("local_addr", &self.local_addr)
            .field("jobs", &self.jobs)
            .finish_non_exhaustive()
    }
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
        security::exposure_warnings(&config, &authentication);
        let tls = ServerTls::load(&config)?;
        // The safe order: bind, then take the store, and only then recover. A second server
        // started by mistake (port in use, database file in use) stops here, before it reads
        // or claims anything of the running one's.
        let listener = bind(config.listen)
            .map_err(|source| ServerError::Bind { addr: config.listen.to_string(), source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| ServerError::Bind { addr: config.listen.to_string(), source })?;
        let metrics = match config.metrics_listen {
            Some(addr) => Some(MetricsEndpoint::bind(addr).await?),
            None => None,
        };
        let events = bus::events_settings(&config)?;
        let Stores { deliberations: store, councils: council_store, outbox } =
            Stores::open(&config, &mut deps).await?;
        sweep_sandbox_leftovers().await;
        let node_id = process_node_id(&config.node_id);
        info!(node_id, exclusive = store.held_exclusively(), "this process's node id");
        deps.dry_runner = adapters::dry_runner(&config, deps.dry_runner.take())?;
        // Lifecycle events go to the outbox with each state change once NATS is configured;
        // the relay that publishes them starts below.
        let events = match (events, outbox) {
            (Some(events), Some(outbox)) => Some((events, outbox, Arc::new(tokio::sync::Notify::new()))),
            (Some(_), None) => {
                warn!("nats_url is set but the store given has no outbox: no events are published");
                None
            }
            (None, _) => None,
        };
        let counters = Arc::new(Counters::new(deps.clock.now_ms()));
        let llm_configured = deps.backend.is_some();
        if !llm_configured {
            warn!("no LLM backend configured: Deliberate and Orchestrate will answer FAILED_PRECONDITION");
        }
        let settings = adapters::deliberation_settings(&config)?;
        let test_runner = adapters::test_runner(&config, deps.test_runner.take());
        let councils_use_case = council_store.as_ref().map(|store| {
            Arc::new(Councils::new(
                Arc::clone(store),
                deps.backend.clone(),
                Arc::clone(&deps.clock),
                Arc::clone(&deps.ids),
            ))
        });
        if let Some(councils_use_case) = &councils_use_case {
            adapters::declare_councils(&config, councils_use_case).await?;
        }
        let mut deliberate =
            Deliberate::new(deps.backend, Arc::clone(&deps.clock), deps.ids, Arc::clone(&counters), settings);
        if let Some(dry_runner) = deps.dry_runner {
            deliberate = deliberate.with_dry_runner(dry_runner);
        }
        if let Some(council_store) = council_store {
            deliberate = deliberate.with_councils(council_store);
        }
        deliberate = deliberate.with_test_runner(test_runner);
        let deliberate = Arc::new(deliberate);
        let job_settings = adapters::job_settings(&config, &node_id, store.held_exclusively());
        let mut jobs = Jobs::new(deliberate, Arc::clone(&store), Arc::clone(&deps.clock), job_settings);
        if let Some((_, _, wakeup)) = &events {
            jobs = jobs.with_events(Arc::clone(wakeup));
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
        let bus = match events {
            Some((settings, outbox, wakeup)) => Some(Bus::start(
                &config,
                settings,
                outbox,
                wakeup,
                &node_id,
                Arc::clone(&deps.clock),
                &jobs,
                !matches!(authentication, Authentication::None),
            )?),
            None => None,
        };
        let mut status = GetStatus::new(Arc::clone(&counters), Arc::clone(&deps.clock), llm_configured)
            .with_store_state(jobs.store_state())
            .with_prober(deps.prober);
        if let Some(bus) = &bus {
            status = status.with_relay(bus.monitor());
        }
        let status = Arc::new(status);
        let mut api = OrchestratorApi::new(Arc::clone(&jobs), orchestrate, status, deps.clock);
        if let Some(councils_use_case) = councils_use_case {
            api = api.with_councils(councils_use_case);
        }

        Ok(Self {
            listener,
            local_addr,
            node_id,
            api,
            jobs,
            store,
            bus,
            authentication,
            tls,
            config,
            metrics,
        })
    }

    /// This process's node id: the configured `node_id` with its pid and a random suffix.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address `/metrics` is served on, when `metrics_listen` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(MetricsEndpoint::local_addr)
    }
}

/// Connections the kernel queues while the server is at `max_connections` (or busy): beyond
/// the default of 128, so a burst of clients waits for a slot instead of being refused.
const LISTEN_BACKLOG: u32 = 1024;

/// The gRPC listener on `addr`, with a [`LISTEN_BACKLOG`]-deep accept queue.
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket =
        if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    // A restarted server rebinds at once while the old connections sit in TIME_WAIT; a port
    // another process listens on is still refused.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Removes the sandbox work dirs a crashed process left in the temp dir (a live process's
/// are locked and left alone), before this one runs anything.
async fn sweep_sandbox_leftovers() {
    match tokio::task::spawn_blocking(orchestrator_infra_sandbox::sweep_leftover_work_dirs).await {
        Ok(Ok(0)) => {}
        Ok(Ok(removed)) => info!(removed, "removed sandbox work dirs a stopped process left behind"),
        Ok(Err(error)) => {
            warn!(error = &error as &dyn std::error::Error, "cannot sweep leftover sandbox work dirs")
        }
        Err(error) => warn!(%error, "the sweep of leftover sandbox work dirs failed"),
    }
}

mod run;
