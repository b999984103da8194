//! Starting and stopping the intake: connect in the background (never blocking or failing
//! start-up while NATS is down), run one consumer for plans and one for bus requests, and
//! wind down when told to.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use orchestrator_application::{Caller, Jobs};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::consumer::{Lane, Source};
use crate::error::{Result, chain};
use crate::plan::TaskTemplate;
use crate::settings::IntakeSettings;
use crate::verdict;

/// Longest wait between two attempts to connect.
const CONNECT_RETRY_MAX: Duration = Duration::from_secs(30);

/// How the intake reaches NATS: a client the server already holds (shared with the event
/// relay, with its credentials and TLS), or a URL it connects to itself.
#[derive(Debug, Clone)]
pub enum NatsConnection {
    Client(async_nats::Client),
    /// A `nats://` URL; it may carry credentials, so it is never logged.
    Url(String),
}

impl From<async_nats::Client> for NatsConnection {
    fn from(client: async_nats::Client) -> Self {
        Self::Client(client)
    }
}

impl From<String> for NatsConnection {
    fn from(url: String) -> Self {
        Self::Url(url)
    }
}

impl From<&str> for NatsConnection {
    fn from(url: &str) -> Self {
        Self::Url(url.to_owned())
    }
}

/// The bus intake: a driving adapter, like the gRPC service, that turns approved plans and
/// proto3-JSON requests from JetStream into the same `DeliberateCommand`s and hands them to
/// the same [`Jobs::submit`].
#[derive(Debug)]
pub struct BusIntake;

/// The running intake; see [`IntakeHandle::stopped`].
#[derive(Debug)]
pub struct IntakeHandle {
    tasks: TaskTracker,
}

impl IntakeHandle {
    /// Resolves once the intake has stopped: after `stop` was cancelled, no message is taken
    /// any more, and every message in hand has been settled — acked when its deliberations
    /// were stored, nak'd when the use case refused them (`ShuttingDown` once the jobs drain).
    /// Messages pulled but not yet started are left to JetStream, which delivers them again
    /// after the ack wait. Bound the wait with the shutdown grace.
    pub async fn stopped(self) {
        self.tasks.wait().await;
    }
}

impl BusIntake {
    /// Starts the intake on the current Tokio runtime and returns at once; with
    /// `settings.enabled` false it starts nothing. Work taken from the bus belongs to `owner`
    /// (see [`IntakeSettings::owner`]). Connecting, creating the streams and consumers
    /// happen in the background and are retried with back-off until they succeed or `stop`
    /// is cancelled; every failure is logged.
    ///
    /// # Errors
    /// [`crate::IntakeError::Setting`] when a setting is out of range — the only way it fails:
    /// NATS being down never does.
    pub fn start(
        nats: impl Into<NatsConnection>,
        settings: IntakeSettings,
        jobs: Arc<Jobs>,
        owner: Caller,
        stop: CancellationToken,
    ) -> Result<IntakeHandle> {
        settings.validate()?;
        let tasks = TaskTracker::new();
        if settings.enabled {
            let lanes = lanes(&settings, &jobs, &owner)?;
            info!(
                stream = %settings.stream,
                subject = %settings.subject,
                request_subject = %settings.request_subject,
                principal = %owner,
                "bus intake starting"
            );
            tasks.spawn(run(nats.into(), lanes, stop, tasks.clone()));
        } else {
            info!("bus intake off (intake.enabled = false)");
        }
        tasks.close();
        Ok(IntakeHandle { tasks })
    }
}

/// The consumers `settings` ask for.
fn lanes(settings: &IntakeSettings, jobs: &Arc<Jobs>, owner: &Caller) -> Result<Vec<Arc<Lane>>> {
    let template = TaskTemplate::parse(&settings.task_template)
        .map_err(|reason| crate::IntakeError::Setting { key: "task_template", reason })?;
    let lane = |source, subject: &str, durable: &str| {
        Arc::new(Lane {
            source,
            subject: subject.to_owned(),
            durable: durable.to_owned(),
            dead_letter_subject: settings.dead_letter_subject.clone(),
            jobs: Arc::clone(jobs),
            owner: owner.clone(),
            ack_wait: settings.ack_wait(),
            max_deliver: settings.max_deliver,
        })
    };
    let mut lanes = vec![lane(
        Source::Plans { stream: settings.stream.clone(), template },
        &settings.subject,
        &settings.durable,
    )];
    if settings.takes_requests() {
        lanes.push(lane(Source::Requests, &settings.request_subject, &settings.request_durable));
    }
    Ok(lanes)
}

/// Connects (unless given a client), then runs every lane on `tasks`.
async fn run(nats: NatsConnection, lanes: Vec<Arc<Lane>>, stop: CancellationToken, tasks: TaskTracker) {
    let client = match nats {
        NatsConnection::Client(client) => client,
        NatsConnection::Url(url) => match connect(&url, &stop).await {
            Some(client) => client,
            None => return,
        },
    };
    let jetstream = jetstream::new(client);
    for lane in lanes {
        tasks.spawn(lane.run(jetstream.clone(), stop.clone(), tasks.clone()));
    }
}

/// Connects to `url`, trying again with back-off; `None` once `stop` is cancelled. Once
/// connected, the client reconnects by itself.
async fn connect(url: &str, stop: &CancellationToken) -> Option<async_nats::Client> {
    let mut attempts = 0_u64;
    loop {
        attempts += 1;
        let connecting = async_nats::ConnectOptions::new().name("orchestrator-intake").connect(url);
        let connected = tokio::select! {
            () = stop.cancelled() => return None,
            connected = connecting => connected,
        };
        match connected {
            Ok(client) => {
                info!(attempts, "bus intake connected to NATS");
                return Some(client);
            }
            Err(error) => {
                let delay = verdict::backoff(attempts).min(CONNECT_RETRY_MAX);
                warn!(error = %chain(&error), retry_in = ?delay, "bus intake cannot connect to NATS; trying again");
                tokio::select! {
                    () = stop.cancelled() => return None,
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}
