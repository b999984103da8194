//! The aggregate's one list of fields, and how a stored one is taken back: a store saves
//! [`DeliberationParts`] (inside its own versioned snapshot) and [`Deliberation::restore`]
//! accepts them only while they still describe a deliberation.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{AgentFailure, Cascade, Deliberation, EarlyStop, Phase, Rounds};
use crate::agent::AgentId;
use crate::checks::TestOutcome;
use crate::council::Council;
use crate::error::{DomainError, Result};
use crate::proposal::Proposal;
use crate::review::Review;
use crate::task::Task;
use crate::usage::TokenUsage;

/// Every field of a [`Deliberation`], for storing one and restoring it: the one list of the
/// aggregate's fields. A store writes these (serde) inside its own versioned snapshot and
/// hands them back to [`Deliberation::restore`], which checks that they still describe a
/// deliberation before accepting them. Fields added after the first release default when
/// absent, so older snapshots still read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliberationParts {
    pub council: Council,
    pub task: Task,
    pub rounds: u32,
    pub phase: Phase,
    pub proposals: Vec<Proposal>,
    pub reviews: Vec<Review>,
    pub failures: Vec<AgentFailure>,
    pub dropped: BTreeSet<AgentId>,
    pub pending: BTreeSet<AgentId>,
    pub assignments: BTreeMap<AgentId, AgentId>,
    pub under_review: BTreeMap<AgentId, String>,
    pub usage: BTreeMap<AgentId, TokenUsage>,
    /// Acceptance-test outcomes per author, indexed by proposal version.
    #[serde(default)]
    pub tests: BTreeMap<AgentId, Vec<TestOutcome>>,
    /// Saved as a flag before modes existed; absent: off.
    #[serde(default = "off")]
    pub early_stop: EarlyStop,
    #[serde(default)]
    pub calls_saved: u64,
    #[serde(default)]
    pub cascade: Option<Cascade>,
}

/// What a deliberation saved before early stops existed did: run every round.
fn off() -> EarlyStop {
    EarlyStop::Off
}

impl Deliberation {
    /// Rebuilds a saved deliberation, refusing parts that no longer describe one: a round
    /// beyond the rounds it runs, or an agent (author, reviewer, pending, dropped, assigned)
    /// that is not in its council.
    ///
    /// # Errors
    /// `Invalid` on field `progress` naming what does not hold.
    pub fn restore(parts: DeliberationParts) -> Result<Self> {
        let invalid = |reason: String| Err(DomainError::invalid("progress", reason));
        let seated = |id: &AgentId| parts.council.agent(id).is_some();
        if parts.rounds > Rounds::MAX {
            return invalid(format!("rounds {} exceeds {}", parts.rounds, Rounds::MAX));
        }
        if parts.phase.round() > parts.rounds {
            return invalid(format!("phase {} is beyond its {} rounds", parts.phase, parts.rounds));
        }
        let agents = parts
            .proposals
            .iter()
            .map(Proposal::author)
            .chain(parts.reviews.iter().flat_map(|r| [&r.reviewer, &r.target]))
            .chain(parts.dropped.iter())
            .chain(parts.pending.iter())
            .chain(parts.assignments.iter().flat_map(|(reviewer, target)| [reviewer, target]))
            .chain(parts.under_review.keys())
            .chain(parts.usage.keys())
            .chain(parts.tests.keys());
        for agent in agents {
            if !seated(agent) {
                return invalid(format!("agent {agent} is not in the council"));
            }
        }
        Ok(Self { state: parts })
    }

    /// Every field, for a store to save (see [`DeliberationParts`]), without copying them.
    pub fn parts(&self) -> &DeliberationParts {
        &self.state
    }

    /// Every field, as an owned copy (see [`Deliberation::parts`]).
    pub fn to_parts(&self) -> DeliberationParts {
        self.state.clone()
    }
}

/// Written as its parts, borrowed: saving progress after every phase copies nothing.
impl Serialize for Deliberation {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.state.serialize(serializer)
    }
}

impl TryFrom<DeliberationParts> for Deliberation {
    type Error = DomainError;

    fn try_from(parts: DeliberationParts) -> Result<Self> {
        Self::restore(parts)
    }
}
