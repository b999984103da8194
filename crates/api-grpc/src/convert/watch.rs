//! WatchDeliberation's updates: the stored state (as GetDeliberationResult answers it) and
//! each agent's step, with the legacy `status`/`current_step`/`current_agent` fields filled
//! for clients that only read those.

use orchestrator_application::WatchUpdate;
use orchestrator_application::ports::{AgentStep, DeliberationRecord, StepKind};
use orchestrator_domain::{DeliberationStatus, Phase};

use crate::pb;

/// One update of a watch.
pub fn watch_update(update: &WatchUpdate, now_ms: i64) -> pb::DeliberationUpdate {
    match update {
        WatchUpdate::State(record) => state_update(record, now_ms),
        WatchUpdate::Step(step) => step_update(step),
    }
}

fn state_update(record: &DeliberationRecord, now_ms: i64) -> pb::DeliberationUpdate {
    let phase = record.progress.as_ref().map(|d| (d.phase(), d.rounds()));
    let (status, percent) = match (record.status, phase) {
        (DeliberationStatus::Completed, _) => (Phase::Completed.status_word().to_owned(), 100),
        (DeliberationStatus::InProgress, Some((phase, rounds))) => {
            (phase.status_word().to_owned(), percent_done(phase, rounds))
        }
        (DeliberationStatus::InProgress, None) => (Phase::Proposing.status_word().to_owned(), 0),
        (other, _) => (other.to_string().to_ascii_lowercase(), 0),
    };
    pb::DeliberationUpdate {
        status,
        progress_percent: percent,
        current_step: match record.status {
            DeliberationStatus::Completed => Phase::Completed.to_string(),
            _ => phase.map_or_else(|| record.status.to_string(), |(p, _)| p.to_string()),
        },
        current_agent: String::new(),
        partial_result: None,
        state: Some(super::record_response(record, now_ms)),
        agent_step: None,
    }
}

fn step_update(step: &AgentStep) -> pb::DeliberationUpdate {
    let mut wire = pb::AgentStep {
        agent_id: step.agent_id.to_string(),
        phase: step.phase.to_string(),
        tokens: step.tokens,
        ..Default::default()
    };
    let what = match &step.kind {
        StepKind::Proposed => {
            wire.kind = "proposed".into();
            "proposed".to_owned()
        }
        StepKind::Reviewed { target, score } => {
            wire.kind = "reviewed".into();
            wire.target = target.to_string();
            if let Some(score) = score {
                wire.score = *score;
                wire.has_score = true;
            }
            format!("reviewed {target}")
        }
        StepKind::Revised => {
            wire.kind = "revised".into();
            "revised".to_owned()
        }
        StepKind::TestsRan { passed, failed, errored } => {
            wire.kind = "tests".into();
            (wire.tests_passed, wire.tests_failed, wire.tests_errored) = (*passed, *failed, *errored);
            format!("tests: {passed} passed, {failed} failed, {errored} errored")
        }
        StepKind::Dropped { reason } => {
            wire.kind = "dropped".into();
            wire.reason = reason.clone();
            "dropped".to_owned()
        }
    };
    pb::DeliberationUpdate {
        status: step.phase.to_string(),
        progress_percent: 0,
        current_step: what,
        current_agent: step.agent_id.to_string(),
        partial_result: None,
        state: None,
        agent_step: Some(wire),
    }
}

/// The update StreamDeliberation sends when a phase completes: the phase's legacy words and
/// how far the deliberation has come.
pub fn phase_update(phase: Phase, rounds: u32) -> pb::DeliberationUpdate {
    pb::DeliberationUpdate {
        status: phase.status_word().to_owned(),
        progress_percent: percent_done(phase, rounds),
        current_step: phase.to_string(),
        current_agent: String::new(),
        partial_result: None,
        state: None,
        agent_step: None,
    }
}

/// Phases done out of propose, review + revise per round, and scoring, in percent.
fn percent_done(phase: Phase, rounds: u32) -> i32 {
    let total = Phase::Completed.phases_done(rounds);
    i32::try_from(phase.phases_done(rounds) * 100 / total).unwrap_or(100)
}
