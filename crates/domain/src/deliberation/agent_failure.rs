//! An agent dropped from a deliberation, and the shape its failure has been stored in since
//! failures were first saved.

use serde::{Deserialize, Serialize};

use super::Phase;
use crate::agent::AgentId;
use crate::error::{DomainError, Result};

/// An agent dropped from the deliberation, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "StoredFailure", try_from = "StoredFailure")]
pub struct AgentFailure {
    pub agent: AgentId,
    /// The phase it failed in (proposing, or a review or revision round).
    pub phase: Phase,
    pub reason: String,
    /// Set when the cause was the configuration of this model profile (its server refused the
    /// credentials): retrying, or another agent on the same profile, cannot succeed.
    pub misconfigured_profile: Option<String>,
}

/// How a failure is written: the phase as its action and round (`"review"`, 1), the shape
/// stored since failures were first saved.
#[derive(Serialize, Deserialize)]
struct StoredFailure {
    agent: AgentId,
    phase: String,
    round: u32,
    reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    misconfigured_profile: Option<String>,
}

impl From<AgentFailure> for StoredFailure {
    fn from(f: AgentFailure) -> Self {
        Self {
            agent: f.agent,
            phase: f.phase.action().to_owned(),
            round: f.phase.round(),
            reason: f.reason,
            misconfigured_profile: f.misconfigured_profile,
        }
    }
}

impl TryFrom<StoredFailure> for AgentFailure {
    type Error = DomainError;

    fn try_from(f: StoredFailure) -> Result<Self> {
        let phase = Phase::from_action(&f.phase, f.round)
            .ok_or_else(|| DomainError::invalid("failures.phase", format!("unknown phase {:?}", f.phase)))?;
        Ok(Self { agent: f.agent, phase, reason: f.reason, misconfigured_profile: f.misconfigured_profile })
    }
}
