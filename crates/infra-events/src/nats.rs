//! The NATS publisher.

use std::time::Duration;

use async_nats::{Client, ConnectOptions, HeaderMap};
use orchestrator_application::ports::DeliberationEvent;
use tracing::{debug, warn};

/// How long connecting at startup may take before the configuration is called wrong.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the publisher could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("cannot connect to NATS at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("events subject prefix {prefix:?}: {reason}")]
    Prefix { prefix: String, reason: &'static str },
}

/// Publishes deliberation events to NATS subjects under a prefix.
#[derive(Debug, Clone)]
pub struct NatsPublisher {
    client: Client,
    prefix: String,
}

impl NatsPublisher {
    /// Connects to `url` (e.g. `nats://127.0.0.1:4222`) and publishes under `prefix`.
    ///
    /// # Errors
    /// [`EventsError::Prefix`] for a prefix that is not dot-separated tokens of
    /// `[A-Za-z0-9_-]`; [`EventsError::Connect`] when the server does not answer in time.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, EventsError> {
        let valid_token =
            |t: &str| !t.is_empty() && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !prefix.split('.').all(valid_token) {
            return Err(EventsError::Prefix {
                prefix: prefix.to_owned(),
                reason: "must be dot-separated tokens of letters, digits, '_' and '-'",
            });
        }
        let connect =
            ConnectOptions::new().name("orchestrator").connection_timeout(CONNECT_TIMEOUT).connect(url);
        let client = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(Ok(client)) => client,
            Ok(Err(error)) => {
                return Err(EventsError::Connect { url: url.to_owned(), reason: error.to_string() });
            }
            Err(_) => {
                return Err(EventsError::Connect { url: url.to_owned(), reason: "timed out".to_owned() });
            }
        };
        Ok(Self { client, prefix: prefix.to_owned() })
    }

    /// The subject an event of this kind goes to.
    pub fn subject(&self, event: &DeliberationEvent) -> String {
        format!("{}.deliberation.{}", self.prefix, event.kind.name())
    }

    /// Waits until everything published so far is written to the server's connection (for
    /// shutdown: the kernel still delivers it after the process exits). It does not wait for the
    /// server to route it: NATS has no acknowledgement for plain publishes.
    pub async fn flush(&self) {
        if let Err(error) = self.client.flush().await {
            warn!(%error, "could not flush deliberation events");
        }
    }
}

impl NatsPublisher {
    /// Publishes `event` on core NATS, best effort.
    pub async fn publish(&self, event: &DeliberationEvent) {
        let payload = match serde_json::to_vec(event) {
            Ok(payload) => payload,
            Err(error) => {
                warn!(task_id = event.task_id, %error, "cannot encode deliberation event");
                return;
            }
        };
        let mut headers = HeaderMap::new();
        headers.insert("Orchestrator-Task-Id", event.task_id.as_str());
        let subject = self.subject(event);
        match self.client.publish_with_headers(subject.clone(), headers, payload.into()).await {
            Ok(()) => debug!(subject, task_id = event.task_id, "event published"),
            Err(error) => {
                warn!(subject, task_id = event.task_id, %error, "could not publish deliberation event")
            }
        }
    }
}
