//! The deliberation aggregate: a state machine the application layer drives.
//!
//! ```text
//! Proposing ─▶ Reviewing{1} ─▶ Revising{1} ─▶ … ─▶ Reviewing{R} ─▶ Revising{R} ─▶ Scoring ─▶ Completed
//!     └──────────────(R = 0, or fewer than 2 agents left)─────────────────────────▶ Scoring
//! ```
//!
//! In each phase the aggregate says who owes a reply (`proposal_requests`, `review_assignments`,
//! `revision_requests`); the driver calls the agents — concurrently, however it likes — and
//! records each reply or failure, then calls [`Deliberation::advance`]. A failed agent is
//! dropped with its proposal and reported; nothing is ever invented in its place.
//!
//! Review assignment is a ring over the surviving agents in seat order ([`ring_assignment`]):
//! round 1 reviews the next peer, round 2 the one after, and nobody ever reviews itself.
//!
//! When the task carries acceptance tests, every proposal version is to be run against them
//! (`test_requests`, then `record_tests`); reviewers and authors are handed the outcome of the
//! version they look at, and scoring uses the final version's. The early stop ([`EarlyStop`])
//! ends the rounds once some version passes every test (`tests`), or once a review round agreed
//! on such a version (`tests_and_reviews`: every review of it graded it at least
//! [`AGREEMENT_SCORE`](crate::scoring::AGREEMENT_SCORE)); a cascade ([`Strategy::Cascade`]) asks one agent first and the rest only
//! when its answer fails. The calls skipped are counted.
//!
//! One idea a file: this one is the state machine (phases, who owes what, recording replies);
//! `parts.rs` is how it is stored and restored; `outcome.rs` scores and ranks the survivors; `tested_versions.rs` keeps each proposal version's
//! acceptance-test outcome; `stopping.rs` decides when fewer calls than the rounds allow are made.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use crate::agent::{Agent, AgentId};
use crate::checks::TestOutcome;
use crate::council::Council;
use crate::error::{DomainError, Result};
use crate::proposal::Proposal;
use crate::review::Review;
use crate::ring::ring_assignment;
use crate::task::Task;
use crate::usage::TokenUsage;

mod agent_failure;
mod outcome;
mod parts;
mod phase;
mod rounds;
mod stopping;
mod tested_versions;

pub use agent_failure::AgentFailure;
pub use outcome::{DeliberationOutcome, RankedProposal};
pub use parts::DeliberationParts;
pub use phase::{Phase, serialize_displayed};
pub use rounds::Rounds;
pub use stopping::{Cascade, EarlyStop, Escalation, Path, Strategy};
pub use tested_versions::{KeptVersion, TestRequest};

/// One review to ask for: `reviewer` grades the proposal of `target` (shown without its author).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewAssignment {
    pub reviewer: Agent,
    pub target: AgentId,
    pub proposal: String,
    pub round: u32,
    /// How the proposal fared against the task's acceptance tests (`NotRun` when the task has
    /// none).
    pub tests: TestOutcome,
}

/// One revision to ask for: `author` revises `current` in the light of `reviews`.
#[derive(Debug, Clone, PartialEq)]
pub struct RevisionRequest {
    pub author: Agent,
    pub current: String,
    pub reviews: Vec<Review>,
    pub round: u32,
    /// How `current` fared against the task's acceptance tests (`NotRun` when the task has
    /// none).
    pub tests: TestOutcome,
}

/// The deliberation aggregate (see the module docs).
///
/// Its state is the one list of fields in [`DeliberationParts`], kept private here so that
/// only the aggregate's rules change it. It serialises as those parts and deserialises
/// through [`Deliberation::restore`], so every store — the databases' versioned snapshot and
/// the in-memory fake alike — writes the same format and reads it back under the same checks.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "DeliberationParts")]
pub struct Deliberation {
    state: DeliberationParts,
}

impl Deliberation {
    /// Starts a deliberation in the proposing phase with every agent owing a proposal.
    ///
    /// The rounds actually run are `rounds` capped by the task's `max_iterations`.
    pub fn new(council: Council, task: Task, rounds: Rounds) -> Self {
        let rounds = task.constraints().cap_rounds(rounds.get());
        let pending = council.agents().iter().map(|a| a.id.clone()).collect();
        let state = DeliberationParts {
            council,
            task,
            rounds,
            phase: Phase::Proposing,
            proposals: Vec::new(),
            reviews: Vec::new(),
            failures: Vec::new(),
            dropped: BTreeSet::new(),
            pending,
            assignments: BTreeMap::new(),
            under_review: BTreeMap::new(),
            usage: BTreeMap::new(),
            tests: BTreeMap::new(),
            early_stop: EarlyStop::Off,
            calls_saved: 0,
            cascade: None,
        };
        Self { state }
    }

    /// Marks an author's current proposal as cut off at the model's token limit.
    pub fn record_truncated(&mut self, author: &AgentId) {
        if let Some(proposal) = self.state.proposals.iter_mut().find(|p| p.author() == author) {
            proposal.mark_truncated();
        }
    }

    pub fn council(&self) -> &Council {
        &self.state.council
    }

    pub fn task(&self) -> &Task {
        &self.state.task
    }

    /// Review rounds this deliberation runs (after the `max_iterations` cap).
    pub fn rounds(&self) -> u32 {
        self.state.rounds
    }

    pub fn phase(&self) -> Phase {
        self.state.phase
    }

    /// Surviving proposals in seat order.
    pub fn proposals(&self) -> &[Proposal] {
        &self.state.proposals
    }

    /// Every review recorded so far.
    pub fn reviews(&self) -> &[Review] {
        &self.state.reviews
    }

    pub fn failures(&self) -> &[AgentFailure] {
        &self.state.failures
    }

    /// Agents that still owe a reply in this phase.
    pub fn pending(&self) -> &BTreeSet<AgentId> {
        &self.state.pending
    }

    /// Usage summed over every agent so far.
    pub fn total_usage(&self) -> TokenUsage {
        self.state.usage.values().fold(TokenUsage::default(), |acc, u| acc + *u)
    }

    /// Agents asked to propose (every agent, in seat order) while proposing.
    pub fn proposal_requests(&self) -> Vec<Agent> {
        match self.state.phase {
            Phase::Proposing => self.pending_agents(),
            _ => Vec::new(),
        }
    }

    /// This round's reviews to ask for, in reviewer seat order.
    pub fn review_assignments(&self) -> Vec<ReviewAssignment> {
        let Phase::Reviewing { round } = self.state.phase else {
            return Vec::new();
        };
        self.pending_agents()
            .into_iter()
            .filter_map(|reviewer| {
                let target = self.state.assignments.get(&reviewer.id)?;
                let proposal = self.state.under_review.get(target)?.clone();
                // Revisions happen after reviews, so a target still in the deliberation is at
                // the version under review.
                let tests = self.proposal(target).map_or_else(TestOutcome::no_tests, |p| self.shown_tests(p));
                Some(ReviewAssignment { reviewer, target: target.clone(), proposal, round, tests })
            })
            .collect()
    }

    /// This round's revisions to ask for: authors that received at least one review.
    pub fn revision_requests(&self) -> Vec<RevisionRequest> {
        let Phase::Revising { round } = self.state.phase else {
            return Vec::new();
        };
        self.pending_agents()
            .into_iter()
            .filter_map(|author| {
                let proposal = self.proposal(&author.id)?;
                let current = proposal.content().to_owned();
                let tests = self.shown_tests(proposal);
                let reviews = self.reviews_of(&author.id, Some(round));
                Some(RevisionRequest { author, current, reviews, round, tests })
            })
            .collect()
    }

    /// Records an agent's proposal. Blank content counts as a failure of that agent.
    ///
    /// # Errors
    /// `WrongPhase` outside proposing; `NotPending` when the agent owes no proposal.
    pub fn record_proposal(&mut self, agent: &AgentId, content: String, created_at_ms: i64) -> Result<()> {
        self.expect_phase("record a proposal", |p| matches!(p, Phase::Proposing))?;
        self.take_pending(agent)?;
        if content.trim().is_empty() {
            self.drop_agent(agent, "returned an empty proposal".to_owned(), None);
        } else {
            self.state.proposals.push(Proposal::new(agent.clone(), content, created_at_ms));
            let council = &self.state.council;
            self.state.proposals.sort_by_key(|p| council.agent(p.author()).map_or(usize::MAX, |a| a.seat));
        }
        Ok(())
    }

    /// Records a review by a reviewer of its assigned target in the current round.
    ///
    /// # Errors
    /// `WrongPhase` outside reviewing; `NotPending` when the reviewer owes no review;
    /// `Invalid` (field `target`) when the review is not of the assigned proposal.
    pub fn record_review(&mut self, review: Review) -> Result<()> {
        let round = self.state.phase.round();
        self.expect_phase("record a review", |p| matches!(p, Phase::Reviewing { .. }))?;
        if self.state.assignments.get(&review.reviewer) != Some(&review.target) || review.round != round {
            return Err(DomainError::invalid(
                "target",
                format!(
                    "{} was not assigned to review {} in round {}",
                    review.reviewer, review.target, review.round
                ),
            ));
        }
        self.take_pending(&review.reviewer)?;
        self.state.reviews.push(review);
        Ok(())
    }

    /// Records an author's revised proposal. Blank content counts as a failure of that agent.
    ///
    /// # Errors
    /// `WrongPhase` outside revising; `NotPending` when the author owes no revision.
    pub fn record_revision(&mut self, agent: &AgentId, content: String) -> Result<()> {
        self.expect_phase("record a revision", |p| matches!(p, Phase::Revising { .. }))?;
        self.take_pending(agent)?;
        if content.trim().is_empty() {
            self.drop_agent(agent, "returned an empty revision".to_owned(), None);
        } else if let Some(proposal) = self.state.proposals.iter_mut().find(|p| p.author() == agent) {
            proposal.revise(content);
        }
        Ok(())
    }

    /// Drops an agent that failed in the current phase; its proposal leaves the deliberation.
    ///
    /// # Errors
    /// `NotPending` when the agent owes nothing in this phase.
    pub fn record_failure(&mut self, agent: &AgentId, reason: impl Into<String>) -> Result<()> {
        self.take_pending(agent)?;
        self.drop_agent(agent, reason.into(), None);
        Ok(())
    }

    /// Like [`record_failure`](Self::record_failure), for a failure caused by the configuration
    /// of the agent's model profile (credentials refused): the failure names the profile, so a
    /// deliberation that loses every agent this way can say what to fix.
    ///
    /// # Errors
    /// `NotPending` when the agent owes no reply in this phase.
    pub fn record_misconfiguration(
        &mut self,
        agent: &AgentId,
        profile: &str,
        reason: impl Into<String>,
    ) -> Result<()> {
        self.take_pending(agent)?;
        self.drop_agent(agent, reason.into(), Some(profile.to_owned()));
        Ok(())
    }

    /// The profiles to fix when every failure so far was a configuration fault; `None` when
    /// there were no failures or any had another cause.
    pub fn misconfigured_profiles(&self) -> Option<BTreeSet<String>> {
        if self.state.failures.is_empty() {
            return None;
        }
        self.state.failures.iter().map(|f| f.misconfigured_profile.clone()).collect()
    }

    /// Adds the cost of one backend call to an agent's usage (failed calls cost too).
    pub fn record_usage(&mut self, agent: &AgentId, usage: TokenUsage) {
        *self.state.usage.entry(agent.clone()).or_default() += usage;
    }

    /// Moves to the next phase once every pending reply is recorded, and returns it.
    ///
    /// # Errors
    /// `NoSurvivors` when every agent has failed; `WrongPhase` while replies are pending or
    /// when already scoring or completed.
    pub fn advance(&mut self) -> Result<Phase> {
        if !self.state.pending.is_empty() {
            return Err(DomainError::RepliesPending {
                phase: self.state.phase,
                pending: self.state.pending.len(),
            });
        }
        if let Some(Cascade::FirstAnswer { first }) = self.state.cascade.clone() {
            return Ok(self.after_first_answer(first));
        }
        if self.state.proposals.is_empty() {
            return Err(DomainError::NoSurvivors);
        }
        let stop_on_tests = self.state.early_stop == EarlyStop::Tests && self.some_version_passes();
        let next = match self.state.phase {
            Phase::Proposing if stop_on_tests => {
                self.state.calls_saved = self.calls_of_rounds_from(1);
                Phase::Scoring
            }
            Phase::Proposing => self.review_round_or_scoring(1),
            Phase::Reviewing { round }
                if self.state.early_stop == EarlyStop::TestsAndReviews
                    && self.agreed_on_a_passing_proposal(round) =>
            {
                self.state.calls_saved = self.calls_skipped_from(round);
                Phase::Scoring
            }
            Phase::Reviewing { round } => Phase::Revising { round },
            Phase::Revising { round } if stop_on_tests => {
                self.state.calls_saved = self.calls_of_rounds_from(round + 1);
                Phase::Scoring
            }
            Phase::Revising { round } => self.review_round_or_scoring(round + 1),
            Phase::Scoring | Phase::Completed => {
                return Err(DomainError::WrongPhase { action: "advance", actual: self.state.phase });
            }
        };
        self.enter(next);
        Ok(next)
    }

    fn review_round_or_scoring(&self, round: u32) -> Phase {
        if round <= self.state.rounds && self.state.proposals.len() >= 2 {
            Phase::Reviewing { round }
        } else {
            Phase::Scoring
        }
    }

    fn enter(&mut self, phase: Phase) {
        self.state.phase = phase;
        self.state.assignments.clear();
        self.state.under_review.clear();
        let survivors: Vec<AgentId> = self.state.proposals.iter().map(|p| p.author().clone()).collect();
        self.state.pending = match phase {
            Phase::Reviewing { round } => {
                for (reviewer, target) in ring_assignment(survivors.len(), round).into_iter().enumerate() {
                    self.state.assignments.insert(survivors[reviewer].clone(), survivors[target].clone());
                }
                self.state.under_review = self
                    .state
                    .proposals
                    .iter()
                    .map(|p| (p.author().clone(), p.content().to_owned()))
                    .collect();
                survivors.into_iter().collect()
            }
            Phase::Revising { round } => survivors
                .into_iter()
                .filter(|author| self.state.reviews.iter().any(|r| r.round == round && &r.target == author))
                .collect(),
            _ => BTreeSet::new(),
        };
    }

    fn expect_phase(&self, action: &'static str, ok: impl Fn(Phase) -> bool) -> Result<()> {
        if ok(self.state.phase) {
            Ok(())
        } else {
            Err(DomainError::WrongPhase { action, actual: self.state.phase })
        }
    }

    fn take_pending(&mut self, agent: &AgentId) -> Result<()> {
        if self.state.pending.remove(agent) {
            Ok(())
        } else {
            Err(DomainError::NotPending { agent: agent.to_string(), phase: self.state.phase })
        }
    }

    fn drop_agent(&mut self, agent: &AgentId, reason: String, misconfigured_profile: Option<String>) {
        self.state.proposals.retain(|p| p.author() != agent);
        if self.state.dropped.insert(agent.clone()) {
            self.state.failures.push(AgentFailure {
                agent: agent.clone(),
                phase: self.state.phase,
                reason,
                misconfigured_profile,
            });
        }
    }

    fn pending_agents(&self) -> Vec<Agent> {
        self.state.council.agents().iter().filter(|a| self.state.pending.contains(&a.id)).cloned().collect()
    }

    fn proposal(&self, author: &AgentId) -> Option<&Proposal> {
        self.state.proposals.iter().find(|p| p.author() == author)
    }

    fn reviews_of(&self, target: &AgentId, round: Option<u32>) -> Vec<Review> {
        self.state
            .reviews
            .iter()
            .filter(|r| &r.target == target && round.is_none_or(|n| r.round == n))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests;
