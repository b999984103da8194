//! Where a deliberation stands, and every way a phase is written: the one place its names live,
//! so the API, the events, the metrics and the CLI spell it alike.
//!
//! | phase | [`Phase::action`] (failures, metrics) | display (tags, steps, events, CLI) | [`Phase::status_word`] (StreamDeliberation) |
//! |---|---|---|---|
//! | Proposing | `propose` | `proposing` | `generating` |
//! | Reviewing{r} | `review` | `reviewing (round r)` | `reviewing` |
//! | Revising{r} | `revise` | `revising (round r)` | `reviewing` |
//! | Scoring | `score` | `scoring` | `scoring` |
//! | Completed | `complete` | `completed` | `complete` |

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where a deliberation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Phase {
    Proposing,
    Reviewing { round: u32 },
    Revising { round: u32 },
    Scoring,
    Completed,
}

impl Phase {
    /// The agent action of this phase, as failures and metrics name it.
    pub fn action(self) -> &'static str {
        match self {
            Phase::Proposing => "propose",
            Phase::Reviewing { .. } => "review",
            Phase::Revising { .. } => "revise",
            Phase::Scoring => "score",
            Phase::Completed => "complete",
        }
    }

    /// The phase of `action` (as [`Phase::action`] writes it) in review `round`.
    pub fn from_action(action: &str, round: u32) -> Option<Self> {
        Some(match action {
            "propose" => Phase::Proposing,
            "review" => Phase::Reviewing { round },
            "revise" => Phase::Revising { round },
            "score" => Phase::Scoring,
            "complete" => Phase::Completed,
            _ => return None,
        })
    }

    /// The review round of this phase, 0 outside review and revision.
    pub fn round(self) -> u32 {
        match self {
            Phase::Reviewing { round } | Phase::Revising { round } => round,
            _ => 0,
        }
    }

    /// Reads a phase as it is displayed (`reviewing (round 2)`), for clients of the API.
    pub fn parse(displayed: &str) -> Option<Self> {
        let round = |rest: &str| rest.strip_prefix(" (round ")?.strip_suffix(')')?.parse().ok();
        match displayed {
            "proposing" => Some(Phase::Proposing),
            "scoring" => Some(Phase::Scoring),
            "completed" => Some(Phase::Completed),
            _ => {
                if let Some(rest) = displayed.strip_prefix("reviewing") {
                    round(rest).map(|round| Phase::Reviewing { round })
                } else if let Some(rest) = displayed.strip_prefix("revising") {
                    round(rest).map(|round| Phase::Revising { round })
                } else {
                    None
                }
            }
        }
    }

    /// The status word of StreamDeliberation's updates (the contract's): `generating`,
    /// `reviewing`, `scoring`, `complete`.
    pub fn status_word(self) -> &'static str {
        match self {
            Phase::Proposing => "generating",
            Phase::Reviewing { .. } | Phase::Revising { .. } => "reviewing",
            Phase::Scoring => "scoring",
            Phase::Completed => "complete",
        }
    }

    /// What happens in it, for a person following along.
    pub fn describe(self) -> &'static str {
        match self {
            Phase::Proposing => "each agent writes a proposal",
            Phase::Reviewing { .. } => "agents review each other's proposals",
            Phase::Revising { .. } => "agents revise after the reviews",
            Phase::Scoring => "checks and ranking",
            Phase::Completed => "done",
        }
    }

    /// The phases a deliberation of `rounds` review rounds goes through, in order, up to
    /// scoring.
    pub fn plan(rounds: u32) -> Vec<Phase> {
        let rounds = (1..=rounds).flat_map(|round| [Phase::Reviewing { round }, Phase::Revising { round }]);
        std::iter::once(Phase::Proposing).chain(rounds).chain([Phase::Scoring]).collect()
    }

    /// How many phases of [`Phase::plan`] are done once this one starts.
    pub fn phases_done(self, rounds: u32) -> u32 {
        match self {
            Phase::Proposing => 0,
            Phase::Reviewing { round } => (2 * round).saturating_sub(1),
            Phase::Revising { round } => 2 * round,
            Phase::Scoring => 1 + 2 * rounds,
            Phase::Completed => 2 + 2 * rounds,
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Phase::Proposing => f.write_str("proposing"),
            Phase::Reviewing { round } => write!(f, "reviewing (round {round})"),
            Phase::Revising { round } => write!(f, "revising (round {round})"),
            Phase::Scoring => f.write_str("scoring"),
            Phase::Completed => f.write_str("completed"),
        }
    }
}

/// Serializes a phase as it is displayed (`"reviewing (round 1)"`): the events' and the API's
/// spelling.
pub fn serialize_displayed<S: serde::Serializer>(phase: &Phase, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(phase)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_phase_reads_back_from_each_of_its_spellings() {
        for phase in Phase::plan(3).into_iter().chain([Phase::Completed]) {
            assert_eq!(Phase::parse(&phase.to_string()), Some(phase), "{phase}");
            assert_eq!(Phase::from_action(phase.action(), phase.round()), Some(phase), "{phase}");
        }
        assert_eq!(Phase::parse("reviewing (round x)"), None);
        assert_eq!(Phase::parse("thinking"), None);
        assert_eq!(Phase::from_action("select", 0), None);
    }

    #[test]
    fn a_plan_counts_every_phase_once_in_order() {
        let plan = Phase::plan(2);
        assert_eq!(
            plan.iter().map(ToString::to_string).collect::<Vec<_>>(),
            [
                "proposing",
                "reviewing (round 1)",
                "revising (round 1)",
                "reviewing (round 2)",
                "revising (round 2)",
                "scoring"
            ]
        );
        for (done, phase) in plan.iter().enumerate() {
            assert_eq!(phase.phases_done(2), done as u32, "{phase}");
        }
        assert_eq!(Phase::Completed.phases_done(2), 6);
    }
}
