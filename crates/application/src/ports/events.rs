//! The port through which other services learn what happens to deliberations.

use async_trait::async_trait;
use orchestrator_domain::Role;
use serde::Serialize;

/// Something that happened to a deliberation, published for the rest of the fleet.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliberationEvent {
    pub task_id: String,
    pub role: Role,
    /// When it happened, milliseconds since the Unix epoch.
    pub at_ms: i64,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened. Serialized with an `event` tag: `{"event": "phase_completed", "phase": …}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    /// Stored, waiting for a slot.
    Submitted,
    /// Running (or resumed after a restart).
    Started,
    /// A phase finished and was saved; `phase` is the one now starting.
    PhaseCompleted { phase: String },
    /// Ranked; the winner is known.
    Completed { winner_id: String, results: usize, duration_ms: u64 },
    /// Ended without a ranking: FAILED, TIMEOUT, CANCELLED or INTERRUPTED, with the reason.
    Ended { status: String, error: String },
}

impl EventKind {
    /// The event's name, as in its `event` tag.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Submitted => "submitted",
            EventKind::Started => "started",
            EventKind::PhaseCompleted { .. } => "phase_completed",
            EventKind::Completed { .. } => "completed",
            EventKind::Ended { .. } => "ended",
        }
    }
}

/// Publishes deliberation events. Best effort: a publisher logs its own failures and never
/// fails or slows a deliberation for them.
#[async_trait]
pub trait EventPublisher: Send + Sync + 'static {
    async fn publish(&self, event: &DeliberationEvent);

    /// Waits until everything published so far has left the process; called once at shutdown
    /// so the last events (INTERRUPTED ends, say) are not lost with it.
    async fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialize_with_an_event_tag() {
        let event = DeliberationEvent {
            task_id: "t-1".into(),
            role: Role::Qa,
            at_ms: 7,
            kind: EventKind::PhaseCompleted { phase: "reviewing (round 1)".into() },
        };
        let json = serde_json::to_string(&event).unwrap();
        assert_eq!(
            json,
            r#"{"task_id":"t-1","role":"QA","at_ms":7,"event":"phase_completed","phase":"reviewing (round 1)"}"#
        );
        assert_eq!(event.kind.name(), "phase_completed");
    }
}
