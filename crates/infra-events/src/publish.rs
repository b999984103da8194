//! Publishing one batch of outbox events, in order, each acknowledged by the stream.
//!
//! The batch is pipelined — every event is sent before the first acknowledgement is awaited —
//! and the acknowledgements are taken in outbox order; the first failure ends the batch and
//! only the acknowledged events before it count as sent. The rest are published again later:
//! an event stored twice this way carries the same `Nats-Msg-Id`, and the stream keeps one.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, context::PublishErrorKind};
use orchestrator_application::ports::{Clock, OutboxMessage};
use tracing::{debug, error};

use crate::error::EventsError;
use crate::handle::Acknowledged;
use crate::observability;
use crate::settings::EventsSettings;

/// The header that names the deliberation, for subscribers that route on headers.
const TASK_ID_HEADER: &str = "Orchestrator-Task-Id";

/// What became of a batch.
#[derive(Debug, Default)]
pub(crate) struct BatchOutcome {
    /// The events done with, in outbox order: acknowledged, or dropped as too large. They are
    /// to be marked sent.
    pub(crate) done: Vec<i64>,
    /// The acknowledged ones.
    pub(crate) acknowledged: Vec<Acknowledged>,
    /// Why the batch ended before its last event, when it did.
    pub(crate) failure: Option<EventsError>,
}

/// Publishes `messages` (oldest first) and awaits their acknowledgements in order.
pub(crate) async fn publish_in_order(
    js: &jetstream::Context,
    settings: &EventsSettings,
    messages: &[OutboxMessage],
    clock: &dyn Clock,
) -> BatchOutcome {
    let mut pending = Vec::with_capacity(messages.len());
    let mut send_failure = None;
    for message in messages {
        match js
            .publish_with_headers(
                settings.subject(&message.event),
                headers(message),
                message.payload.clone().into(),
            )
            .await
        {
            Ok(ack) => pending.push((message, ack)),
            Err(source) => {
                send_failure = Some((message, source));
                break;
            }
        }
    }
    let mut outcome = BatchOutcome::default();
    for (message, ack) in pending {
        match ack.await {
            Ok(ack) => {
                let latency = Duration::from_millis(
                    u64::try_from(clock.now_ms().saturating_sub(message.created_at_ms)).unwrap_or(0),
                );
                observability::event_published(&message.event, latency);
                debug!(dedup_id = %message.dedup_id(), sequence = ack.sequence, duplicate = ack.duplicate, "event acknowledged");
                outcome.done.push(message.id);
                outcome.acknowledged.push(Acknowledged {
                    dedup_id: message.dedup_id(),
                    stream_sequence: ack.sequence,
                    duplicate: ack.duplicate,
                    latency,
                });
            }
            Err(source) => {
                outcome.failure = Some(EventsError::Publish { dedup_id: message.dedup_id(), source });
                return outcome;
            }
        }
    }
    match send_failure {
        // An event over the server's maximum payload can never be published: it would hold up
        // every event after it for good. It is dropped, loudly, once the ones before it are in.
        Some((message, source)) if source.kind() == PublishErrorKind::MaxPayloadExceeded => {
            error!(
                dedup_id = %message.dedup_id(),
                bytes = message.payload.len(),
                %source,
                "event larger than the NATS server accepts: dropped, it will never be published"
            );
            observability::events_dropped("too_large", 1);
            outcome.done.push(message.id);
        }
        Some((message, source)) => {
            outcome.failure = Some(EventsError::Publish { dedup_id: message.dedup_id(), source });
        }
        None => {}
    }
    outcome
}

/// `Nats-Msg-Id` (the stream's deduplication) and the task id.
fn headers(message: &OutboxMessage) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(async_nats::header::NATS_MESSAGE_ID, message.dedup_id().as_str());
    headers.insert(TASK_ID_HEADER, message.task_id.as_str());
    headers
}
