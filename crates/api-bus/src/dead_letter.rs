//! Dead letters: a copy of every message the intake gives up on, with the reason, published
//! before the message is terminated, so poison is seen and can be replayed by hand instead of
//! vanishing.
//!
//! The copy of the payload is bounded (the first [`MAX_PAYLOAD_COPY`] bytes, as lossy UTF-8)
//! — a dead letter must never be larger than what a subscriber or a stream accepts.

use async_nats::header::{HeaderMap, NATS_MESSAGE_ID};
use async_nats::jetstream;
use serde::{Deserialize, Serialize};

use crate::error::{IntakeError, Result};

/// Bytes of the original payload a dead letter copies.
pub const MAX_PAYLOAD_COPY: usize = 4096;

/// The JSON document published on `intake.dead_letter_subject`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Why the message was given up, naming the field where there is one.
    pub reason: String,
    /// The subject the message was published on.
    pub subject: String,
    /// The stream that held it, and where: with both it can be read back in full.
    pub stream: String,
    pub stream_sequence: u64,
    /// How often it was delivered, this time included.
    pub deliveries: u64,
    /// The first [`MAX_PAYLOAD_COPY`] bytes of the payload, invalid UTF-8 replaced by U+FFFD.
    pub payload: String,
    /// The whole payload's size in bytes.
    pub payload_bytes: usize,
}

impl DeadLetter {
    /// The dead letter of a message on `subject`, held at `stream_sequence` of `stream`.
    pub fn new(
        reason: &str,
        subject: &str,
        stream: &str,
        stream_sequence: u64,
        deliveries: u64,
        payload: &[u8],
    ) -> Self {
        let copied = &payload[..payload.len().min(MAX_PAYLOAD_COPY)];
        Self {
            reason: reason.to_owned(),
            subject: subject.to_owned(),
            stream: stream.to_owned(),
            stream_sequence,
            deliveries,
            payload: String::from_utf8_lossy(copied).into_owned(),
            payload_bytes: payload.len(),
        }
    }

    /// The id JetStream deduplicates it by: one dead letter per stored message, however often
    /// it is dead-lettered (a term that was lost, then the message dead-lettered again).
    fn message_id(&self) -> String {
        format!("intake-dead-letter:{}:{}", self.stream, self.stream_sequence)
    }
}

/// Where dead letters go: through JetStream (waiting for the stream's ack) when a stream holds
/// the subject, otherwise plain NATS to whoever subscribes — a JetStream publish nobody
/// stores would wait for an ack that never comes.
#[derive(Debug, Clone)]
pub(crate) struct DeadLetters {
    subject: String,
    route: Route,
}

#[derive(Debug, Clone)]
enum Route {
    Stream(jetstream::Context),
    Plain(async_nats::Client),
}

impl DeadLetters {
    /// Dead letters on `subject`, stored when `stored` (a stream holds the subject).
    pub(crate) fn new(subject: &str, jetstream: &jetstream::Context, stored: bool) -> Self {
        let route = if stored { Route::Stream(jetstream.clone()) } else { Route::Plain(jetstream.client()) };
        Self { subject: subject.to_owned(), route }
    }

    /// Publishes `letter` and returns once the stream stored it (or, without a stream, once it
    /// is written to the server).
    ///
    /// # Errors
    /// [`IntakeError::DeadLetter`] when it could not be published or the stream did not ack.
    pub(crate) async fn publish(&self, letter: &DeadLetter) -> Result<()> {
        let failed =
            |source: async_nats::Error| IntakeError::DeadLetter { subject: self.subject.clone(), source };
        let body = serde_json::to_vec(letter).map_err(|e| failed(e.into()))?;
        let mut headers = HeaderMap::new();
        headers.insert(NATS_MESSAGE_ID, letter.message_id().as_str());
        match &self.route {
            Route::Stream(jetstream) => {
                jetstream
                    .publish_with_headers(self.subject.clone(), headers, body.into())
                    .await
                    .map_err(|e| failed(e.into()))?
                    .await
                    .map_err(|e| failed(e.into()))?;
            }
            Route::Plain(client) => {
                client
                    .publish_with_headers(self.subject.clone(), headers, body.into())
                    .await
                    .map_err(|e| failed(e.into()))?;
                client.flush().await.map_err(|e| failed(e.into()))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_letter_copies_a_bounded_lossy_payload_and_its_size() {
        let mut payload = vec![b'a'; MAX_PAYLOAD_COPY + 100];
        payload[0] = 0xff;
        let letter = DeadLetter::new(
            "plan_id: is required",
            "planning.plan.approved",
            "PLANNING_EVENTS",
            9,
            2,
            &payload,
        );
        assert_eq!(letter.payload_bytes, MAX_PAYLOAD_COPY + 100);
        assert!(letter.payload.starts_with('\u{FFFD}'));
        assert_eq!(letter.payload.chars().count(), MAX_PAYLOAD_COPY);
        assert_eq!(letter.message_id(), "intake-dead-letter:PLANNING_EVENTS:9");
        let json: serde_json::Value = serde_json::to_value(&letter).unwrap();
        for field in
            ["reason", "subject", "stream", "stream_sequence", "deliveries", "payload", "payload_bytes"]
        {
            assert!(json.get(field).is_some(), "{field}");
        }
    }

    #[test]
    fn a_small_payload_is_copied_whole() {
        let letter = DeadLetter::new("not JSON", "s", "S", 1, 1, b"{oops");
        assert_eq!((letter.payload.as_str(), letter.payload_bytes), ("{oops", 5));
    }
}
