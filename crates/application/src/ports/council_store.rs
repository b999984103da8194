//! The port to durable storage of the agent registry, and to the records its agents earn.
//!
//! A port of its own rather than more methods on [`DeliberationStore`]: the registry is another
//! aggregate with other users (the council use cases, the seating of every deliberation, the
//! metrics), and the deliberation lifecycle contract stays as it is. Both ports are served by
//! the same database — a store adapter implements the two over one connection pool — so agent
//! records can be computed from the stored results of deliberations.
//!
//! [`DeliberationStore`]: super::DeliberationStore

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use orchestrator_domain::{AgentId, CouncilId, DomainError, Registry, TokenUsage};

use super::StoreError;

/// A change to the registry: applied to the registry as stored, it changes it or refuses.
pub type RegistryChange<'a> = dyn FnMut(&mut Registry) -> Result<(), DomainError> + Send + 'a;

/// What an agent of a standing council did, over the completed deliberations seated from a
/// standing council (ad-hoc deliberations do not count, even when an id coincides).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentRecord {
    /// Completed deliberations whose results rank its proposal.
    pub ranked: u64,
    /// Of those, how many it won (rank 1).
    pub wins: u64,
    /// Sum of the final scores of its ranked proposals.
    pub score_sum: f64,
    /// Completed deliberations it was dropped from.
    pub failures: u64,
    /// Tokens, calls and time waited of its ranked proposals (a dropped agent's calls are in
    /// its deliberation's total only).
    pub usage: TokenUsage,
}

impl AgentRecord {
    /// Deliberations taken part in: ranked or dropped.
    pub fn deliberations(&self) -> u64 {
        self.ranked + self.failures
    }

    /// Mean final score of its ranked proposals.
    pub fn mean_score(&self) -> Option<f64> {
        mean(self.score_sum, self.ranked)
    }

    /// Mean time a call of this agent took, in milliseconds.
    pub fn mean_response_ms(&self) -> Option<f64> {
        mean(self.usage.latency_ms as f64, self.usage.calls)
    }
}

/// What the deliberations seated from one standing council did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CouncilRecord {
    /// Deliberations that ended COMPLETED.
    pub completed: u64,
    /// Deliberations that ended FAILED or TIMEOUT (cancelled and interrupted ones are not the
    /// council's failures and are not counted).
    pub unsuccessful: u64,
    /// Sum of the winners' final scores.
    pub winner_score_sum: f64,
    /// Agents dropped from its completed deliberations.
    pub agent_failures: u64,
    /// Total usage of its completed deliberations.
    pub usage: TokenUsage,
}

impl CouncilRecord {
    /// Deliberations that ended, successfully or not.
    pub fn deliberations(&self) -> u64 {
        self.completed + self.unsuccessful
    }

    /// Completed over ended; `None` before any ended.
    pub fn success_rate(&self) -> Option<f64> {
        mean(self.completed as f64, self.deliberations())
    }

    /// Mean final score of the winners.
    pub fn mean_winner_score(&self) -> Option<f64> {
        mean(self.winner_score_sum, self.completed)
    }

    /// Mean time an agent call took, in milliseconds.
    pub fn mean_response_ms(&self) -> Option<f64> {
        mean(self.usage.latency_ms as f64, self.usage.calls)
    }
}

fn mean(sum: f64, count: u64) -> Option<f64> {
    (count > 0).then(|| sum / count as f64)
}

/// The records of every agent and council that took part in a deliberation seated from a
/// standing council, computed from stored results, so they survive restarts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RegistryRecords {
    pub agents: BTreeMap<AgentId, AgentRecord>,
    pub councils: BTreeMap<CouncilId, CouncilRecord>,
    /// Agents seated in a deliberation that is IN_PROGRESS right now (on any server sharing
    /// the database).
    pub busy: BTreeSet<AgentId>,
}

/// Durable storage of the agent registry.
///
/// Every method fails with [`StoreError::Unavailable`] when the database cannot be reached
/// or refuses, and [`StoreError::Corrupt`] when a stored row no longer decodes.
#[async_trait]
pub trait CouncilStore: Send + Sync + 'static {
    /// The registry as stored.
    async fn registry(&self) -> Result<Registry, StoreError>;

    /// Reads the registry, applies `change` and stores what it made, atomically: no other
    /// update interleaves, in this process or in another sharing the database, so the
    /// registry's rules hold service-wide. When `change` refuses, nothing is stored and its
    /// error is returned inside `Ok`; otherwise the registry as stored afterwards.
    async fn update(
        &self,
        change: &mut RegistryChange<'_>,
    ) -> Result<Result<Registry, DomainError>, StoreError>;

    /// The records of agents and councils over the deliberations seated from a standing
    /// council and created at or after `since_ms` (all of them for `None`); `busy` is the
    /// present whatever `since_ms` says.
    async fn records(&self, since_ms: Option<i64>) -> Result<RegistryRecords, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn means_are_absent_without_data_and_exact_with_it() {
        assert_eq!(AgentRecord::default().mean_score(), None);
        assert_eq!(CouncilRecord::default().success_rate(), None);
        let agent = AgentRecord {
            ranked: 4,
            wins: 1,
            score_sum: 2.0,
            failures: 1,
            usage: TokenUsage { calls: 8, latency_ms: 200, ..TokenUsage::default() },
        };
        assert_eq!(
            (agent.deliberations(), agent.mean_score(), agent.mean_response_ms()),
            (5, Some(0.5), Some(25.0))
        );
        let council = CouncilRecord {
            completed: 3,
            unsuccessful: 1,
            winner_score_sum: 2.4,
            ..CouncilRecord::default()
        };
        assert_eq!((council.deliberations(), council.success_rate()), (4, Some(0.75)));
        assert!((council.mean_winner_score().unwrap() - 0.8).abs() < 1e-12);
    }
}
