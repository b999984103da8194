//! The one error type of the crate.

use async_nats::jetstream::context::{CreateStreamError, GetStreamError, PublishError};
use orchestrator_application::ports::StoreError;

/// Why the relay could not be set up, or why one of its attempts failed (then it is reported
/// in the relay's status and retried, never returned to a deliberation).
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    /// A setting is out of range; `key` is the configuration key that holds it.
    #[error("{key}: {reason}")]
    Config { key: &'static str, reason: String },
    /// The client to the NATS servers could not be made (their addresses were validated, so
    /// this is unexpected).
    #[error("cannot create the NATS client")]
    Client {
        #[source]
        source: async_nats::ConnectError,
    },
    /// The NATS connection is down: the client reconnects by itself.
    #[error("not connected to NATS")]
    Disconnected,
    /// The stream's information could not be read.
    #[error("cannot read stream {stream}")]
    StreamInfo {
        stream: String,
        #[source]
        source: GetStreamError,
    },
    /// The absent stream could not be created.
    #[error("cannot create stream {stream}")]
    CreateStream {
        stream: String,
        #[source]
        source: CreateStreamError,
    },
    /// The stream did not acknowledge an event (not stored, or the answer was lost).
    #[error("event {dedup_id} was not acknowledged by the stream")]
    Publish {
        dedup_id: String,
        #[source]
        source: PublishError,
    },
    /// The outbox could not be read or written.
    #[error("the outbox failed")]
    Outbox {
        #[source]
        source: StoreError,
    },
}

/// The crate's results.
pub type Result<T, E = EventsError> = std::result::Result<T, E>;

impl EventsError {
    /// The error with its causes, `: `-separated, for the status and the logs.
    pub(crate) fn described(&self) -> String {
        let causes =
            std::iter::successors(Some(self as &(dyn std::error::Error + 'static)), |&cause| cause.source());
        causes.map(ToString::to_string).collect::<Vec<_>>().join(": ")
    }

    /// The kind of failure, to log a change of state once rather than every attempt, and to
    /// label the failure metric.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Config { .. } | Self::Client { .. } => "client",
            Self::Disconnected => "disconnected",
            Self::StreamInfo { .. } | Self::CreateStream { .. } => "stream",
            Self::Publish { source, .. } => match source.kind() {
                async_nats::jetstream::context::PublishErrorKind::TimedOut => "timeout",
                async_nats::jetstream::context::PublishErrorKind::BrokenPipe => "disconnected",
                _ => "rejected",
            },
            Self::Outbox { .. } => "outbox",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_described_error_carries_its_causes() {
        let error = EventsError::Outbox { source: StoreError::unavailable("reading the outbox", "refused") };
        assert_eq!(error.kind(), "outbox");
        let text = error.described();
        assert!(
            text.starts_with("the outbox failed: database unavailable while reading the outbox"),
            "{text}"
        );
        assert!(text.ends_with("refused"), "{text}");
    }
}
