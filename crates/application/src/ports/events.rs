//! What other services learn about deliberations: the lifecycle events, written to the outbox
//! with the state change they report (see [`crate::ports::Outbox`]) and relayed from there.

use orchestrator_domain::{DeliberationOutcome, Phase, Role};
use serde::Serialize;

/// The name every event type carries in `event_type`: `orchestration.deliberation.<event>`,
/// the upstream fleet's names, whatever subject prefix the events are published under.
pub const EVENT_TYPE_PREFIX: &str = "orchestration.deliberation";

/// Something that happened to a deliberation, published for the rest of the fleet.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliberationEvent {
    /// `orchestration.deliberation.<event>`.
    pub event_type: String,
    pub task_id: String,
    /// The planning service's story this deliberation serves, when it came from a plan.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub story_id: Option<String>,
    pub role: Role,
    /// When it happened, milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// The same instant in whole seconds, as the fleet's other events carry it.
    pub timestamp: i64,
    #[serde(flatten)]
    pub kind: EventKind,
}

impl DeliberationEvent {
    pub fn new(task_id: &str, story_id: Option<&str>, role: Role, at_ms: i64, kind: EventKind) -> Self {
        Self {
            event_type: format!("{EVENT_TYPE_PREFIX}.{}", kind.name()),
            task_id: task_id.to_owned(),
            story_id: story_id.map(str::to_owned),
            role,
            at_ms,
            timestamp: at_ms.div_euclid(1000),
            kind,
        }
    }
}

/// One ranked proposal in a `completed` event: who wrote it, where it ranked, its score —
/// not its text (that is read with GetDeliberationResult).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub author: String,
    pub rank: u32,
    pub score: f64,
    pub winner: bool,
}

/// What happened. Serialized with an `event` tag: `{"event": "phase_completed", "phase": …}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    /// Stored, waiting for a slot.
    Submitted,
    /// Running (or resumed after a restart).
    Started,
    /// A phase finished and was saved; `phase` is the one now starting (written as displayed:
    /// `"reviewing (round 1)"`).
    PhaseCompleted {
        #[serde(serialize_with = "orchestrator_domain::serialize_displayed")]
        phase: Phase,
    },
    /// Ranked; the winner is known.
    Completed { winner_id: String, results: usize, duration_ms: u64, decisions: Vec<Decision> },
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

    /// The `completed` event of `outcome`, `duration_ms` after it started.
    pub fn completed(outcome: &DeliberationOutcome, duration_ms: u64) -> Self {
        let winner = &outcome.winner().agent.id;
        let decisions = outcome
            .results
            .iter()
            .map(|result| Decision {
                author: result.agent.id.to_string(),
                rank: result.rank,
                score: result.score.value(),
                winner: &result.agent.id == winner,
            })
            .collect();
        EventKind::Completed {
            winner_id: winner.to_string(),
            results: outcome.results.len(),
            duration_ms,
            decisions,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialize_with_an_event_tag_and_the_fleets_names() {
        let event = DeliberationEvent::new(
            "t-1",
            Some("story-9"),
            Role::Qa,
            7_250,
            EventKind::PhaseCompleted { phase: Phase::Reviewing { round: 1 } },
        );
        let json = serde_json::to_string(&event).unwrap();
        assert_eq!(
            json,
            r#"{"event_type":"orchestration.deliberation.phase_completed","task_id":"t-1","story_id":"story-9","role":"QA","at_ms":7250,"timestamp":7,"event":"phase_completed","phase":"reviewing (round 1)"}"#
        );
        assert_eq!(event.kind.name(), "phase_completed");
        let without_story = DeliberationEvent::new("t-2", None, Role::Dev, 1, EventKind::Started);
        assert!(!serde_json::to_string(&without_story).unwrap().contains("story_id"));
    }
}
