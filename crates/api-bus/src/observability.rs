//! The metrics the intake records, named in one place.
//!
//! Recorded through the `metrics` facade, like the application's: a no-op without an
//! installed recorder, the Prometheus one in the server. Label values come from closed sets
//! (outcomes, reasons) and from the configured consumer names, never from a message, so the
//! number of series stays bounded.

use crate::verdict::Verdict;

/// Counter: messages the intake settled, by `consumer` (the durable name), `outcome` (`ack`,
/// `nak`, `term`) and `reason` — ack: `stored`, `duplicate`, `conflict`; nak:
/// `store_unavailable`, `queue_full`, `shutting_down`, `not_ready`, `dead_letter_unpublished`,
/// `error`; term: `not_json`, `missing_field`, `unknown_role`, `invalid_request`, `max_deliver`.
pub const MESSAGES: &str = "orchestrator_intake_messages_total";
/// Gauge: messages of the stream the consumer has not delivered yet (`num_pending` of its
/// consumer info), by `consumer`; refreshed every [`PENDING_REFRESH`](crate::consumer::PENDING_REFRESH).
pub const PENDING: &str = "orchestrator_intake_pending";

/// Counts one settled message.
pub fn settled(consumer: &str, verdict: &Verdict) {
    metrics::counter!(
        MESSAGES,
        "consumer" => consumer.to_owned(),
        "outcome" => verdict.outcome(),
        "reason" => verdict.reason(),
    )
    .increment(1);
}

/// Sets the pending gauge of `consumer`.
pub fn pending(consumer: &str, pending: u64) {
    metrics::gauge!(PENDING, "consumer" => consumer.to_owned()).set(pending as f64);
}

#[cfg(test)]
mod tests {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    use super::*;
    use crate::verdict::{AckReason, Poison};

    #[test]
    fn each_settled_message_is_counted_by_outcome_and_reason_and_pending_is_a_gauge() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            settled("orch-plans", &Verdict::Ack(AckReason::Stored));
            settled("orch-plans", &Verdict::Ack(AckReason::Stored));
            settled("orch-plans", &Verdict::Term(Poison::missing("plan_id", "is required")));
            pending("orch-plans", 7);
        });
        let mut seen = Vec::new();
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            let key = key.key();
            let mut labels: Vec<String> =
                key.labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
            labels.sort();
            seen.push((key.name().to_owned(), labels.join(","), value));
        }
        seen.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        assert_eq!(
            seen,
            vec![
                (
                    MESSAGES.to_owned(),
                    "consumer=orch-plans,outcome=ack,reason=stored".to_owned(),
                    DebugValue::Counter(2)
                ),
                (
                    MESSAGES.to_owned(),
                    "consumer=orch-plans,outcome=term,reason=missing_field".to_owned(),
                    DebugValue::Counter(1)
                ),
                (PENDING.to_owned(), "consumer=orch-plans".to_owned(), DebugValue::Gauge(7.0.into())),
            ]
        );
    }
}
