//! The bus, when `nats_url` is set: the lifecycle events relayed from the outbox to JetStream,
//! and the intake of work from it (`[intake]`) — started after the store is taken, stopped in
//! order at shutdown: the intake first (no new work), the relay after the last state change
//! (it sends what it can within a bound; the rest waits in the outbox for the next start).
//!
//! NATS being away never holds anything up: both connect in the background, and stopping
//! either returns within a bound whether or not NATS answers.

use std::sync::Arc;
use std::time::Duration;

use orchestrator_api_bus::{BusIntake, IntakeHandle, IntakeSettings};
use orchestrator_application::Jobs;
use orchestrator_application::ports::{Clock, Outbox, RelayMonitor};
use orchestrator_infra_events::{EventsSettings, JetStreamRelay, RelayHandle, ensure_events_stream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Config;
use crate::error::{Result, ServerError};

/// How long stopping the intake may take (its messages in hand are acked or nak'd) before
/// shutdown goes on without it: unacked messages are redelivered anyway.
const INTAKE_STOP_BOUND: Duration = Duration::from_secs(5);
/// How long the intake waits between attempts to reach NATS before it starts.
const INTAKE_RETRY: Duration = Duration::from_secs(2);

/// The relay and the intake of a running server.
pub struct Bus {
    relay: RelayHandle,
    relay_stop: CancellationToken,
    intake: Option<IntakeTask>,
}

/// The intake as started in the background (it waits for NATS before it consumes).
#[derive(Debug)]
pub struct IntakeTask {
    task: JoinHandle<Option<IntakeHandle>>,
    stop: CancellationToken,
}

impl IntakeTask {
    /// Stops taking work from the bus; messages in hand are acked or nak'd (bounded).
    pub async fn stop(self) {
        self.stop.cancel();
        let task = self.task;
        let stopped = async {
            if let Ok(Some(intake)) = task.await {
                intake.stopped().await;
            }
        };
        match tokio::time::timeout(INTAKE_STOP_BOUND, stopped).await {
            Ok(()) => info!("shutdown: the bus intake stopped"),
            Err(_) => warn!(
                bound_secs = INTAKE_STOP_BOUND.as_secs(),
                "shutdown: the bus intake did not stop in time; its messages are redelivered"
            ),
        }
    }
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus").field("intake", &self.intake.is_some()).finish_non_exhaustive()
    }
}

/// The relay's settings from the configuration; `None` without `nats_url`.
///
/// # Errors
/// [`ServerError::Config`] naming the key at fault.
pub fn events_settings(config: &Config) -> Result<Option<EventsSettings>> {
    let Some(url) = &config.nats_url else { return Ok(None) };
    let named = |error: orchestrator_infra_events::EventsError| match error {
        orchestrator_infra_events::EventsError::Config { key, reason } => ServerError::config(key, reason),
        other => ServerError::config("nats_url", other.to_string()),
    };
    let settings = EventsSettings::new(url, &config.events_prefix)
        .and_then(|s| s.with_stream(&config.events_stream))
        .and_then(|s| s.with_max_outbox(config.events_max_outbox))
        // The relay lease runs like a deliberation's: another server relays once it ran out.
        .and_then(|s| s.with_relay_lease(Duration::from_secs(config.lease_secs)))
        .map_err(named)?;
    Ok(Some(settings))
}

impl Bus {
    /// Starts the relay (and the intake when `[intake] enabled`); returns at once.
    ///
    /// # Errors
    /// Invalid intake settings, named by their key.
    #[allow(clippy::too_many_arguments, reason = "the composition root hands each adapter what it needs")]
    pub fn start(
        config: &Config,
        settings: EventsSettings,
        outbox: Arc<dyn Outbox>,
        wakeup: Arc<Notify>,
        node_id: &str,
        clock: Arc<dyn Clock>,
        jobs: &Arc<Jobs>,
        authenticated: bool,
    ) -> Result<Self> {
        info!(
            nats = settings.redacted_url(),
            prefix = settings.prefix(),
            stream = settings.stream(),
            "publishing lifecycle events to JetStream from the outbox"
        );
        let relay_stop = CancellationToken::new();
        let relay = JetStreamRelay::start(
            settings.clone(),
            outbox,
            wakeup,
            node_id.to_owned(),
            clock,
            relay_stop.clone(),
        );
        let intake = if config.intake.enabled {
            config.intake.validate().map_err(|error| ServerError::config("intake", error.to_string()))?;
            let stop = CancellationToken::new();
            let task = tokio::spawn(start_intake(
                settings,
                config.intake.clone(),
                Arc::clone(jobs),
                authenticated,
                stop.clone(),
            ));
            Some(IntakeTask { task, stop })
        } else {
            None
        };
        Ok(Self { relay, relay_stop, intake })
    }

    /// How the relay fares, for GetStatus.
    pub fn monitor(&self) -> Arc<dyn RelayMonitor> {
        self.relay.monitor()
    }

    /// The intake, to stop first at shutdown (see [`IntakeTask::stop`]).
    pub fn take_intake(&mut self) -> Option<IntakeTask> {
        self.intake.take()
    }

    /// Stops the relay once the last state change is stored: what it cannot send within its
    /// bound waits in the outbox for the next start.
    pub async fn stop_relay(self) {
        self.relay_stop.cancel();
        self.relay.stopped().await;
        info!("shutdown: the events relay stopped");
    }
}

/// Connects to NATS (retrying until `stop`), makes sure the events stream exists when the
/// request subject lies under it — so the intake reads requests from it instead of creating a
/// stream of its own that would overlap it — and starts the intake.
async fn start_intake(
    events: EventsSettings,
    intake: IntakeSettings,
    jobs: Arc<Jobs>,
    authenticated: bool,
    stop: CancellationToken,
) -> Option<IntakeHandle> {
    let owner = intake.owner(authenticated);
    let under_events = intake.request_subject.starts_with(&format!("{}.", events.prefix()));
    let mut reported = false;
    loop {
        let attempt = async {
            let client = async_nats::ConnectOptions::new()
                .name("orchestrator-intake")
                .connection_timeout(INTAKE_RETRY)
                .connect(events.servers())
                .await
                .map_err(|e| e.to_string())?;
            if under_events {
                ensure_events_stream(&client, &events).await.map_err(|e| e.to_string())?;
            }
            Ok::<_, String>(client)
        };
        let reached = tokio::select! {
            () = stop.cancelled() => return None,
            reached = attempt => reached,
        };
        match reached {
            Ok(client) => {
                match BusIntake::start(client, intake.clone(), Arc::clone(&jobs), owner.clone(), stop.clone())
                {
                    Ok(handle) => {
                        info!(principal = owner.principal(), subject = intake.subject, "bus intake started");
                        return Some(handle);
                    }
                    Err(error) => {
                        warn!(error = &error as &dyn std::error::Error, "the bus intake cannot start");
                        return None;
                    }
                }
            }
            Err(error) => {
                if !reported {
                    warn!(%error, "the bus intake waits for NATS");
                    reported = true;
                }
                tokio::select! {
                    () = stop.cancelled() => return None,
                    () = tokio::time::sleep(INTAKE_RETRY) => {}
                }
            }
        }
    }
}
