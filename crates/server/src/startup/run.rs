//! Running a built server, and its orderly stop: NOT_SERVING first, running work given its
//! grace, waiting RPCs answered, the store closed, the events flushed.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use orchestrator_api_grpc::pb::orchestrator_service_server::OrchestratorServiceServer;
use orchestrator_api_grpc::router::MAX_REQUEST_BYTES;
use orchestrator_api_grpc::{AuthLayer, OrchestratorApi, RequestErrorsLayer, grpc_router};
use orchestrator_application::StoreState;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tracing::{info, warn};

use crate::bus::Bus;
use crate::error::Result;
use crate::serving::{self, ConnectionSettings};

use super::{Application, LIVENESS_SERVICE};

/// Once every deliberation has ended (and its end is stored), how long RPCs that waited for
/// them have to be answered before connections a client keeps open are dropped.
const ANSWER_MARGIN: Duration = Duration::from_secs(2);

impl Application {
    /// Serves until `shutdown` resolves, then shuts down in order, logging each step:
    /// 1. reports NOT_SERVING and stops accepting connections and new deliberations;
    /// 2. lets running deliberations — submitted ones included — finish for the whole
    ///    `shutdown_grace_secs`, then stops the rest: left resumable (leases released) or
    ///    stored INTERRUPTED, per `resume_unfinished`;
    /// 3. gives the RPCs that waited for them a moment to be answered;
    /// 4. closes the store and flushes the events.
    ///
    /// Connections are served by [`serving::serve`], with the limits of `max_connections`,
    /// `idle_connection_secs` and the HTTP/2 keepalive.
    ///
    /// # Errors
    /// When the gRPC services cannot be built (their embedded descriptors do not load).
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        self.run_until_or_sooner(shutdown, std::future::pending()).await
    }

    /// [`Application::run_until`], with the grace period of step 2 cut short when `now`
    /// resolves (a second Ctrl-C or SIGTERM, see [`shutdown_signals`](crate::signals::shutdown_signals)): running deliberations
    /// stop at once, left resumable or stored INTERRUPTED as at the end of the grace period.
    ///
    /// # Errors
    /// See [`Application::run_until`].
    pub async fn run_until_or_sooner(
        mut self,
        shutdown: impl Future<Output = ()> + Send + 'static,
        now: impl Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        let services = grpc_router(self.api).await?;
        let health = services.health.clone();
        let grace = self.config.shutdown_grace();
        let requested = CancellationToken::new();
        health.set_service_status(LIVENESS_SERVICE, tonic_health::ServingStatus::Serving).await;
        // Health follows the store until shutdown begins; NOT_SERVING from then on.
        tokio::spawn(follow_store_health(health.clone(), self.jobs.store_state(), requested.clone()));
        let signal = {
            let requested = requested.clone();
            async move {
                tokio::select! {
                    () = shutdown => {}
                    () = requested.cancelled() => {}
                }
                info!(
                    grace_secs = grace.as_secs(),
                    "shutdown requested: reporting NOT_SERVING, refusing new work"
                );
                requested.cancel();
                health.set_not_serving::<OrchestratorServiceServer<OrchestratorApi>>().await;
                health.set_service_status("", tonic_health::ServingStatus::NotServing).await;
            }
        };
        // Stops every deliberation within the grace period once shutdown is requested.
        let intake = self.bus.as_mut().and_then(Bus::take_intake);
        let drained = {
            let jobs = Arc::clone(&self.jobs);
            let requested = requested.clone();
            tokio::spawn(async move {
                requested.cancelled().await;
                // No new work from the bus while the running work drains.
                if let Some(intake) = intake {
                    intake.stop().await;
                }
                jobs.shutdown_unless_sooner(grace, now).await
            })
        };
        // Renews this node's leases and takes over work other nodes left; probes the store.
        // Both end once shutdown has finished.
        tokio::spawn(Arc::clone(&self.jobs).maintain());
        tokio::spawn(Arc::clone(&self.jobs).probe_store());
        let metrics = self.metrics.map(|endpoint| tokio::spawn(endpoint.serve(Arc::clone(&self.jobs))));
        info!(addr = %self.local_addr, node_id = self.node_id, "orchestrator listening");
        // SIGHUP reloads the TLS files. Registered here, before serving, so that from the first
        // connection on a SIGHUP never meets its default action (termination).
        let hangups = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(hangups) => Some(hangups),
            Err(error) => {
                warn!(%error, "cannot listen for SIGHUP: TLS files (if any) are reloaded on the interval only");
                None
            }
        };
        match &self.tls {
            Some(tls) => {
                let interval = self.config.tls_reload_interval();
                tokio::spawn(Arc::clone(tls).watch(interval, hangups, requested.clone()));
            }
            None => {
                if let Some(hangups) = hangups {
                    tokio::spawn(crate::tls::ignore_hangups(hangups, requested.clone()));
                }
            }
        }
        let service = ServiceBuilder::new()
            .layer(RequestErrorsLayer::new(MAX_REQUEST_BYTES))
            .layer(AuthLayer::new(self.authentication, self.config.reflection_open))
            .service(services.routes);
        let settings = ConnectionSettings::from_config(&self.config);
        let mut serve = Box::pin(serving::serve(self.listener, self.tls, service, settings, signal));
        tokio::pin!(drained);
        let mut served = false;
        let report = tokio::select! {
            () = &mut serve => {
                // No connection left open: the deliberations still get their grace period.
                requested.cancel();
                served = true;
                (&mut drained).await
            }
            report = &mut drained => report,
        };
        match report {
            Ok(report) => info!(?report, "shutdown: {}", report.summary()),
            Err(error) => warn!(%error, "shutdown: the drain task failed"),
        }
        if !served && tokio::time::timeout(ANSWER_MARGIN, &mut serve).await.is_err() {
            warn!("shutdown: connections still open after the answers were sent; closing them");
        }
        // Closes the connections still open, if any.
        drop(serve);
        // Every state change is stored: the relay sends what it can within its bound; the rest
        // waits in the outbox for the next start.
        if let Some(bus) = self.bus {
            bus.stop_relay().await;
        }
        self.store.close().await;
        if let Some(metrics) = metrics {
            metrics.abort();
        }
        info!("orchestrator stopped");
        Ok(())
    }
}

/// Reports the store's health on the gRPC health service (the whole server and the
/// orchestrator service) until shutdown begins.
async fn follow_store_health(
    health: tonic_health::server::HealthReporter,
    mut store_state: tokio::sync::watch::Receiver<StoreState>,
    requested: CancellationToken,
) {
    loop {
        let state = store_state.borrow_and_update().clone();
        if requested.is_cancelled() {
            return;
        }
        let status = if state.is_serving() {
            tonic_health::ServingStatus::Serving
        } else {
            tonic_health::ServingStatus::NotServing
        };
        health.set_service_status("", status).await;
        health
            .set_service_status(
                <OrchestratorServiceServer<OrchestratorApi> as tonic::server::NamedService>::NAME,
                status,
            )
            .await;
        tokio::select! {
            changed = store_state.changed() => if changed.is_err() { return },
            () = requested.cancelled() => return,
        }
    }
}
