//! The one error type of the bus intake: what can go wrong setting it up and talking to
//! JetStream. A message's own faults are not errors of the intake but verdicts on the message
//! (see [`crate::verdict`]): they end in a dead letter, never in an `Err`.

use std::error::Error;

/// Why the intake could not take messages right now. Every variant but
/// [`IntakeError::Setting`] is transient: the intake logs it and tries again with back-off.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// A key of the `[intake]` table is out of range; the message names the key.
    #[error("intake.{key}: {reason}")]
    Setting { key: &'static str, reason: String },
    /// The NATS server could not be reached.
    #[error("cannot connect to NATS")]
    Connect {
        #[source]
        source: async_nats::ConnectError,
    },
    /// A stream could not be looked up or created.
    #[error("cannot {action} stream {stream}")]
    Stream {
        stream: String,
        action: &'static str,
        #[source]
        source: async_nats::Error,
    },
    /// The durable consumer could not be created or read.
    #[error("cannot set up consumer {durable} on stream {stream}")]
    Consumer {
        stream: String,
        durable: String,
        #[source]
        source: async_nats::Error,
    },
    /// Pulling messages from the consumer failed.
    #[error("pulling from consumer {durable} failed")]
    Pull {
        durable: String,
        #[source]
        source: async_nats::Error,
    },
    /// A dead letter could not be published.
    #[error("cannot publish the dead letter on {subject}")]
    DeadLetter {
        subject: String,
        #[source]
        source: async_nats::Error,
    },
}

/// Result of the intake's fallible steps.
pub type Result<T, E = IntakeError> = std::result::Result<T, E>;

/// `error` and its causes, joined by `": "`, for one log field: the useful part of a NATS
/// failure (timed out, no responders, the server's JetStream error) is a level or two down.
pub(crate) fn chain(error: &dyn Error) -> String {
    let causes = std::iter::successors(Some(error), |&cause| cause.source());
    causes.map(ToString::to_string).collect::<Vec<_>>().join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_setting_error_names_the_key_of_the_intake_table() {
        let error = IntakeError::Setting { key: "max_deliver", reason: "must be at least 2".into() };
        assert_eq!(error.to_string(), "intake.max_deliver: must be at least 2");
    }

    #[test]
    fn the_chain_names_every_cause() {
        let error = IntakeError::DeadLetter {
            subject: "orchestration.intake.dead_letter".into(),
            source: "timed out".into(),
        };
        assert_eq!(
            chain(&error),
            "cannot publish the dead letter on orchestration.intake.dead_letter: timed out"
        );
    }
}
