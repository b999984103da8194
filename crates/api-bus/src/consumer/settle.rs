//! Settling a handled message with JetStream: ack, nak (at once or with back-off), or term
//! after its dead letter is published — and what each is logged and counted as.

use async_nats::jetstream::{self, AckKind};
use tracing::{debug, error, info, warn};

use super::{Delivery, Lane};
use crate::dead_letter::{DeadLetter, DeadLetters};
use crate::error::chain;
use crate::observability;
use crate::verdict::{self, Delay, NakReason, Verdict};

impl Lane {
    /// Acks, naks or terminates the message; poison is dead-lettered first, and stays
    /// (nak'd with back-off) when that fails, unless this was its last delivery.
    pub(super) async fn settle(
        &self,
        message: &jetstream::Message,
        verdict: Verdict,
        at: &Delivery,
        dead_letters: &DeadLetters,
    ) {
        let verdict = match verdict {
            Verdict::Term(poison) => {
                let letter = DeadLetter::new(
                    &poison.reason,
                    &at.subject,
                    &at.stream,
                    at.sequence,
                    at.deliveries,
                    &message.payload,
                );
                match dead_letters.publish(&letter).await {
                    Ok(()) => Verdict::Term(poison),
                    Err(failure) if at.deliveries >= u64::from(self.max_deliver) => {
                        error!(
                            stream_sequence = at.sequence,
                            reason = %poison.reason,
                            error = %chain(&failure),
                            "the dead letter could not be published on the last delivery; the message is terminated without one"
                        );
                        Verdict::Term(poison)
                    }
                    Err(failure) => {
                        warn!(stream_sequence = at.sequence, error = %chain(&failure), "the dead letter could not be published; the message stays");
                        Verdict::Nak {
                            reason: NakReason::DeadLetterUnpublished,
                            delay: Delay::Backoff,
                            detail: failure.to_string(),
                        }
                    }
                }
            }
            other => other,
        };
        let kind = match &verdict {
            Verdict::Ack(_) => AckKind::Ack,
            Verdict::Nak { delay: Delay::None, .. } => AckKind::Nak(None),
            Verdict::Nak { delay: Delay::Backoff, .. } => AckKind::Nak(Some(verdict::backoff(at.deliveries))),
            Verdict::Term(_) => AckKind::Term,
        };
        match &verdict {
            Verdict::Ack(reason) => {
                debug!(stream_sequence = at.sequence, reason = reason.as_str(), "acked");
            }
            Verdict::Nak { reason, detail, .. } => info!(
                stream_sequence = at.sequence,
                deliveries = at.deliveries,
                reason = reason.as_str(),
                detail = %detail,
                delay = ?match kind { AckKind::Nak(delay) => delay, _ => None },
                "nak'd; JetStream delivers it again"
            ),
            Verdict::Term(poison) => warn!(
                stream_sequence = at.sequence,
                subject = %at.subject,
                deliveries = at.deliveries,
                kind = poison.kind.as_str(),
                reason = %poison.reason,
                "poison: dead-lettered and terminated"
            ),
        }
        if let Err(error) = message.ack_with(kind).await {
            warn!(
                stream_sequence = at.sequence,
                error = %chain(&*error),
                "could not settle the message; JetStream delivers it again after the ack wait"
            );
        }
        observability::settled(&self.durable, &verdict);
    }
}
