//! The metrics the relay records, named in one place.
//!
//! Recorded through the `metrics` facade: a no-op until the server installs its Prometheus
//! recorder. Label values come from closed sets (the five event names, the failure kinds),
//! never from an event's content, so the number of series stays bounded.

use std::time::Duration;

/// Gauge: events in the outbox waiting to be published, as last counted.
pub const OUTBOX_DEPTH: &str = "orchestrator_outbox_depth";
/// Counter: events the stream acknowledged, by `event` (`submitted`, `started`,
/// `phase_completed`, `completed`, `ended`).
pub const EVENTS_PUBLISHED: &str = "orchestrator_events_published_total";
/// Counter: relay attempts that failed, by `reason`: `disconnected` (no connection to NATS),
/// `timeout` (no acknowledgement in time), `rejected` (the stream refused or no stream takes
/// the subject), `stream` (the stream could not be read or created), `outbox` (the store
/// failed), `client`.
pub const PUBLISH_FAILURES: &str = "orchestrator_events_publish_failures_total";
/// Counter: events that will never be published, by `reason`: `outbox_full` (the oldest,
/// dropped beyond `events_max_outbox`) or `too_large` (over the server's maximum payload).
pub const EVENTS_DROPPED: &str = "orchestrator_events_dropped_total";
/// Histogram: seconds from the state change an event reports (stored with it) to the stream's
/// acknowledgement of the event.
pub const PUBLISH_LATENCY: &str = "orchestrator_event_publish_seconds";

/// Sets the outbox gauge.
pub(crate) fn outbox_depth(depth: u64) {
    metrics::gauge!(OUTBOX_DEPTH).set(depth as f64);
}

/// Counts one event acknowledged `latency` after its state change.
pub(crate) fn event_published(event: &str, latency: Duration) {
    let event = event_label(event);
    metrics::counter!(EVENTS_PUBLISHED, "event" => event).increment(1);
    metrics::histogram!(PUBLISH_LATENCY).record(latency.as_secs_f64());
}

/// Counts one failed attempt of kind `reason`.
pub(crate) fn publish_failed(reason: &'static str) {
    metrics::counter!(PUBLISH_FAILURES, "reason" => reason).increment(1);
}

/// Counts `count` events dropped for `reason`.
pub(crate) fn events_dropped(reason: &'static str, count: u64) {
    metrics::counter!(EVENTS_DROPPED, "reason" => reason).increment(count);
}

/// The event's name as a label: one of the five, or `other` (the label set stays closed
/// whatever a store holds).
fn event_label(event: &str) -> &'static str {
    match event {
        "submitted" => "submitted",
        "started" => "started",
        "phase_completed" => "phase_completed",
        "completed" => "completed",
        "ended" => "ended",
        _ => "other",
    }
}
