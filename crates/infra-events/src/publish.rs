//! Publishing one batch of outbox events, each acknowledged by the stream, in order per
//! deliberation.
//!
//! A deliberation's events go one at a time: the next is sent only once the stream
//! acknowledged the one before it. A request that was still queued in the client when the
//! connection dropped may reach the broker after the reconnect, later than expected — were a
//! deliberation's later event already on its way, the stream could keep them out of order.
//! One in flight per deliberation rules that out; different deliberations go concurrently, so
//! a backlog after an outage still drains quickly. A deliberation's first failure ends its
//! part of the batch; every acknowledged event counts as sent, the rest are published again
//! later — an event stored twice this way carries the same `Nats-Msg-Id`, and the stream
//! keeps one.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, context::PublishErrorKind};
use futures::future::join_all;
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
    /// The events done with: acknowledged, or dropped as too large. They are to be marked sent.
    pub(crate) done: Vec<i64>,
    /// The acknowledged ones.
    pub(crate) acknowledged: Vec<Acknowledged>,
    /// Why some deliberation's events stopped short, when one did (the first such failure).
    pub(crate) failure: Option<EventsError>,
}

/// Publishes `messages` (in outbox order): each deliberation's in order, one at a time,
/// different deliberations concurrently.
pub(crate) async fn publish_in_order(
    js: &jetstream::Context,
    settings: &EventsSettings,
    messages: &[OutboxMessage],
    clock: &dyn Clock,
) -> BatchOutcome {
    let parts = join_all(
        per_deliberation(messages).into_iter().map(|queue| publish_one_by_one(js, settings, queue, clock)),
    )
    .await;
    let mut outcome = BatchOutcome::default();
    for part in parts {
        outcome.done.extend(part.done);
        outcome.acknowledged.extend(part.acknowledged);
        if outcome.failure.is_none() {
            outcome.failure = part.failure;
        }
    }
    outcome
}

/// `messages` split per deliberation, each part in outbox order.
fn per_deliberation(messages: &[OutboxMessage]) -> Vec<Vec<&OutboxMessage>> {
    let mut queues: Vec<Vec<&OutboxMessage>> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for message in messages {
        let queue = *index.entry(message.task_id.as_str()).or_insert_with(|| {
            queues.push(Vec::new());
            queues.len() - 1
        });
        queues[queue].push(message);
    }
    queues
}

/// Publishes one deliberation's events, each after the previous one's acknowledgement.
async fn publish_one_by_one(
    js: &jetstream::Context,
    settings: &EventsSettings,
    queue: Vec<&OutboxMessage>,
    clock: &dyn Clock,
) -> BatchOutcome {
    let mut outcome = BatchOutcome::default();
    for message in queue {
        let payload = message.payload.clone().into();
        let sent = js.publish_with_headers(settings.subject(&message.event), headers(message), payload).await;
        let acknowledged = match sent {
            Ok(ack) => ack.await,
            Err(error) => Err(error),
        };
        match acknowledged {
            Ok(ack) => {
                let latency = Duration::from_millis(
                    u64::try_from(clock.now_ms().saturating_sub(message.created_at_ms)).unwrap_or(0),
                );
                observability::event_published(&message.event, latency);
                debug!(
                    dedup_id = %message.dedup_id(),
                    sequence = ack.sequence,
                    duplicate = ack.duplicate,
                    "event acknowledged"
                );
                outcome.done.push(message.id);
                outcome.acknowledged.push(Acknowledged {
                    dedup_id: message.dedup_id(),
                    stream_sequence: ack.sequence,
                    duplicate: ack.duplicate,
                    latency,
                });
            }
            // An event over the server's maximum payload can never be published: it would
            // hold up its deliberation's later events for good. It is dropped, loudly.
            Err(source) if source.kind() == PublishErrorKind::MaxPayloadExceeded => {
                error!(
                    dedup_id = %message.dedup_id(),
                    bytes = message.payload.len(),
                    %source,
                    "event larger than the NATS server accepts: dropped, it will never be published"
                );
                observability::events_dropped("too_large", 1);
                outcome.done.push(message.id);
            }
            Err(source) => {
                outcome.failure = Some(EventsError::Publish { dedup_id: message.dedup_id(), source });
                break;
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: i64, task_id: &str, seq: i64) -> OutboxMessage {
        OutboxMessage {
            id,
            task_id: task_id.to_owned(),
            seq,
            event: "started".to_owned(),
            payload: "{}".to_owned(),
            created_at_ms: 0,
        }
    }

    #[test]
    fn a_batch_splits_per_deliberation_keeping_each_ones_order() {
        let batch = [
            message(1, "a", 1),
            message(2, "b", 1),
            message(3, "a", 2),
            message(4, "c", 1),
            message(5, "b", 2),
        ];
        let ids: Vec<Vec<i64>> =
            per_deliberation(&batch).iter().map(|queue| queue.iter().map(|m| m.id).collect()).collect();
        assert_eq!(ids, [vec![1, 3], vec![2, 5], vec![4]]);
    }

    #[test]
    fn every_message_names_its_dedup_id_and_deliberation() {
        let headers = headers(&message(1, "plan-7", 3));
        assert_eq!(headers.get("Nats-Msg-Id").map(|v| v.as_str()), Some("plan-7:started:3"));
        assert_eq!(headers.get(TASK_ID_HEADER).map(|v| v.as_str()), Some("plan-7"));
    }
}
