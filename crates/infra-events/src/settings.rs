//! What the relay needs from the configuration, validated once: a value of [`EventsSettings`]
//! always names reachable-looking servers, a subject prefix NATS accepts and a stream name
//! JetStream accepts, so the relay never fails later on a typo.

use std::fmt;
use std::time::Duration;

use async_nats::ServerAddr;

use crate::error::{EventsError, Result};

/// The subject prefix events are published under unless configured: the fleet's
/// `orchestration.deliberation.<event>` subjects.
pub const DEFAULT_PREFIX: &str = "orchestration";
/// The stream that keeps the events unless configured.
pub const DEFAULT_STREAM: &str = "ORCHESTRATOR_EVENTS";

/// How the relay reaches NATS and paces itself.
///
/// Built with [`EventsSettings::new`] (the defaults for everything else) and adjusted with the
/// `with_*` methods, each of which refuses a value out of range naming its configuration key.
#[derive(Clone)]
pub struct EventsSettings {
    servers: Vec<ServerAddr>,
    prefix: String,
    stream: String,
    max_outbox: u64,
    poll_interval: Duration,
    publish_timeout: Duration,
    relay_lease: Duration,
    batch_size: usize,
}

impl EventsSettings {
    /// The default bound of the outbox (`events_max_outbox`).
    pub const DEFAULT_MAX_OUTBOX: u64 = 100_000;
    /// How often the relay looks for events other servers stored (`events_poll_interval_ms`):
    /// its own server wakes it at once.
    pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(500);
    /// How long a connect, a stream request or a publish's acknowledgement may take
    /// (`events_publish_timeout_ms`).
    pub const DEFAULT_PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);
    /// How long the relay lease lasts unless renewed (`lease_secs`, the same lease as tasks): another
    /// server takes over that long after the relaying one died.
    pub const DEFAULT_RELAY_LEASE: Duration = Duration::from_secs(10);
    /// How many events one pass publishes before marking them sent.
    pub const DEFAULT_BATCH_SIZE: usize = 256;

    /// Settings for the servers in `nats_url` (one URL or several, comma-separated) and the
    /// subject prefix `events_prefix`, with the defaults for the rest.
    ///
    /// # Errors
    /// [`EventsError::Config`] naming `nats_url` for an empty or malformed URL, `events_prefix`
    /// for a prefix that is not dot-separated tokens of `[A-Za-z0-9_-]`.
    pub fn new(nats_url: &str, events_prefix: &str) -> Result<Self> {
        let servers = nats_url
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(|url| {
                url.parse::<ServerAddr>().map_err(|error| EventsError::Config {
                    key: "nats_url",
                    reason: format!("not a NATS server URL ({})", error.kind()),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if servers.is_empty() {
            return Err(EventsError::Config { key: "nats_url", reason: "no server URL".to_owned() });
        }
        if !events_prefix.split('.').all(is_token) {
            return Err(EventsError::Config {
                key: "events_prefix",
                reason: format!(
                    "{events_prefix:?} must be dot-separated tokens of letters, digits, '_' and '-'"
                ),
            });
        }
        Ok(Self {
            servers,
            prefix: events_prefix.to_owned(),
            stream: DEFAULT_STREAM.to_owned(),
            max_outbox: Self::DEFAULT_MAX_OUTBOX,
            poll_interval: Self::DEFAULT_POLL_INTERVAL,
            publish_timeout: Self::DEFAULT_PUBLISH_TIMEOUT,
            relay_lease: Self::DEFAULT_RELAY_LEASE,
            batch_size: Self::DEFAULT_BATCH_SIZE,
        })
    }

    /// Keeps the events in stream `name` (`events_stream`), created when absent.
    ///
    /// # Errors
    /// [`EventsError::Config`] naming `events_stream` unless it is letters, digits, `_` and `-`.
    pub fn with_stream(mut self, name: &str) -> Result<Self> {
        if !is_token(name) {
            return Err(EventsError::Config {
                key: "events_stream",
                reason: format!("{name:?} must be letters, digits, '_' and '-'"),
            });
        }
        name.clone_into(&mut self.stream);
        Ok(self)
    }

    /// Bounds the outbox at `max` unsent events (`events_max_outbox`): beyond it the oldest are
    /// dropped, logged and counted, so a broker away for days cannot fill the database.
    ///
    /// # Errors
    /// [`EventsError::Config`] naming `events_max_outbox` for 0.
    pub fn with_max_outbox(mut self, max: u64) -> Result<Self> {
        if max == 0 {
            return Err(EventsError::Config {
                key: "events_max_outbox",
                reason: "must be at least 1".to_owned(),
            });
        }
        self.max_outbox = max;
        Ok(self)
    }

    /// Looks for events other servers stored every `interval` (`events_poll_interval_ms`).
    ///
    /// # Errors
    /// [`EventsError::Config`] naming `events_poll_interval_ms` for less than 1 ms.
    pub fn with_poll_interval(mut self, interval: Duration) -> Result<Self> {
        self.poll_interval = positive("events_poll_interval_ms", interval)?;
        Ok(self)
    }

    /// Waits at most `timeout` for a connect, a stream request or a publish's acknowledgement
    /// (`events_publish_timeout_ms`).
    ///
    /// # Errors
    /// [`EventsError::Config`] naming `events_publish_timeout_ms` for less than 1 ms.
    pub fn with_publish_timeout(mut self, timeout: Duration) -> Result<Self> {
        self.publish_timeout = positive("events_publish_timeout_ms", timeout)?;
        Ok(self)
    }

    /// Holds the relay lease for `lease` (`lease_secs`), renewed every third of it.
    ///
    /// # Errors
    /// [`EventsError::Config`] naming `lease_secs` for less than 3 ms (a third
    /// of it must be a time).
    pub fn with_relay_lease(mut self, lease: Duration) -> Result<Self> {
        if lease < Duration::from_millis(3) {
            return Err(EventsError::Config {
                key: "lease_secs",
                reason: "must be a positive time".to_owned(),
            });
        }
        self.relay_lease = lease;
        Ok(self)
    }

    /// Publishes at most `size` events in one pass.
    ///
    /// # Errors
    /// [`EventsError::Config`] naming `events_batch_size` for 0.
    pub fn with_batch_size(mut self, size: usize) -> Result<Self> {
        if size == 0 {
            return Err(EventsError::Config {
                key: "events_batch_size",
                reason: "must be at least 1".to_owned(),
            });
        }
        self.batch_size = size;
        Ok(self)
    }

    /// The NATS servers.
    pub fn servers(&self) -> &[ServerAddr] {
        &self.servers
    }

    /// The servers as logs may show them: scheme, host and port, never credentials.
    pub fn redacted_url(&self) -> String {
        self.servers
            .iter()
            .map(|server| format!("{}://{}:{}", server.scheme(), server.host(), server.port()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The subject prefix: events go to `<prefix>.deliberation.<event>`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The stream's name.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The most unsent events the outbox keeps.
    pub fn max_outbox(&self) -> u64 {
        self.max_outbox
    }

    /// How often the relay looks for events without being woken.
    pub fn poll_interval(&self) -> Duration {
        self.poll_interval
    }

    /// The longest wait for NATS in one step (connect, stream request, acknowledgement).
    pub fn publish_timeout(&self) -> Duration {
        self.publish_timeout
    }

    /// How long the relay lease lasts unless renewed.
    pub fn relay_lease(&self) -> Duration {
        self.relay_lease
    }

    /// The most events one pass publishes.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// The subject of events named `event`.
    pub fn subject(&self, event: &str) -> String {
        format!("{}.deliberation.{event}", self.prefix)
    }
}

/// Written by hand so that a URL's credentials never reach a log line.
impl fmt::Debug for EventsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventsSettings")
            .field("servers", &self.redacted_url())
            .field("prefix", &self.prefix)
            .field("stream", &self.stream)
            .field("max_outbox", &self.max_outbox)
            .field("poll_interval", &self.poll_interval)
            .field("publish_timeout", &self.publish_timeout)
            .field("relay_lease", &self.relay_lease)
            .field("batch_size", &self.batch_size)
            .finish()
    }
}

/// One subject token (or stream name): letters, digits, `_` and `-`, nothing NATS treats
/// specially (`.`, `*`, `>`, whitespace).
fn is_token(token: &str) -> bool {
    !token.is_empty() && token.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn positive(key: &'static str, duration: Duration) -> Result<Duration> {
    if duration < Duration::from_millis(1) {
        return Err(EventsError::Config { key, reason: "must be at least 1 ms".to_owned() });
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(result: Result<EventsSettings>) -> &'static str {
        match result {
            Err(EventsError::Config { key, .. }) => key,
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }

    #[test]
    fn defaults_publish_under_orchestration_to_the_orchestrator_stream() {
        let settings = EventsSettings::new("nats://127.0.0.1:4222", DEFAULT_PREFIX).unwrap();
        assert_eq!(settings.subject("completed"), "orchestration.deliberation.completed");
        assert_eq!(settings.stream(), "ORCHESTRATOR_EVENTS");
        assert_eq!(settings.max_outbox(), 100_000);
        assert_eq!(settings.relay_lease(), Duration::from_secs(10));
    }

    #[test]
    fn the_prefix_must_be_dot_separated_tokens() {
        for bad in ["", "a..b", "a.*", "a.>", "with space", ".lead", "trail."] {
            assert_eq!(key_of(EventsSettings::new("nats://h:4222", bad)), "events_prefix", "{bad:?}");
        }
        assert!(EventsSettings::new("nats://h:4222", "fleet-1.orchestration_x").is_ok());
    }

    #[test]
    fn a_url_must_name_at_least_one_nats_server() {
        for bad in ["", " , ", "http://[::1", "nats://host:notaport"] {
            assert_eq!(key_of(EventsSettings::new(bad, "p")), "nats_url", "{bad:?}");
        }
        let two = EventsSettings::new("nats://a:4222, nats://b:4223", "p").unwrap();
        assert_eq!(two.servers().len(), 2);
    }

    #[test]
    fn credentials_in_the_url_never_show() {
        let settings = EventsSettings::new("nats://relay:s3cret@broker:4222", "p").unwrap();
        assert_eq!(settings.redacted_url(), "nats://broker:4222");
        assert!(!format!("{settings:?}").contains("s3cret"));
    }

    #[test]
    fn tunables_out_of_range_name_their_key() {
        let base = || EventsSettings::new("nats://h:4222", "p").unwrap();
        assert_eq!(key_of(base().with_stream("a.b")), "events_stream");
        assert_eq!(key_of(base().with_max_outbox(0)), "events_max_outbox");
        assert_eq!(key_of(base().with_poll_interval(Duration::ZERO)), "events_poll_interval_ms");
        assert_eq!(key_of(base().with_publish_timeout(Duration::ZERO)), "events_publish_timeout_ms");
        assert_eq!(key_of(base().with_relay_lease(Duration::ZERO)), "lease_secs");
        assert_eq!(key_of(base().with_batch_size(0)), "events_batch_size");
    }
}
