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
//! `outcome.rs` scores and ranks the survivors; `tested_versions.rs` keeps each proposal version's
//! acceptance-test outcome; `stopping.rs` decides when fewer calls than the rounds allow are made.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::agent::{Agent, AgentId};
use crate::checks::TestOutcome;
use crate::council::Council;
use crate::error::{DomainError, Result};
use crate::proposal::Proposal;
use crate::review::Review;
use crate::ring::ring_assignment;
use crate::task::Task;
use crate::usage::TokenUsage;

mod outcome;
mod phase;
mod stopping;
mod tested_versions;

pub use outcome::{DeliberationOutcome, RankedProposal};
pub use phase::{Phase, serialize_displayed};
pub use stopping::{Cascade, EarlyStop, Escalation, Path, Strategy};
pub use tested_versions::{KeptVersion, TestRequest};

/// Number of peer-review rounds, 0..=5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rounds(u32);

impl Rounds {
    pub const MAX: u32 = 5;
    pub const DEFAULT: Rounds = Rounds(1);

    /// # Errors
    /// Field `rounds` when negative or above 5.
    pub fn new(value: i64) -> Result<Self> {
        match u32::try_from(value) {
            Ok(v) if v <= Self::MAX => Ok(Self(v)),
            _ => {
                Err(DomainError::invalid("rounds", format!("must be within 0..={}, got {value}", Self::MAX)))
            }
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl Default for Rounds {
    fn default() -> Self {
        Self::DEFAULT
    }
}

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

/// The deliberation aggregate (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deliberation {
    council: Council,
    task: Task,
    rounds: u32,
    phase: Phase,
    /// Surviving proposals in seat order.
    proposals: Vec<Proposal>,
    reviews: Vec<Review>,
    failures: Vec<AgentFailure>,
    dropped: BTreeSet<AgentId>,
    pending: BTreeSet<AgentId>,
    /// Reviewer → target for the current review round.
    assignments: BTreeMap<AgentId, AgentId>,
    /// Proposal contents as they stood when the current review round began, so a review
    /// already assigned stays answerable even if its target drops out mid-round.
    under_review: BTreeMap<AgentId, String>,
    usage: BTreeMap<AgentId, TokenUsage>,
    /// Acceptance-test outcomes per author, indexed by proposal version (0: the first).
    #[serde(default)]
    tests: BTreeMap<AgentId, Vec<TestOutcome>>,
    /// When review rounds end early (see [`EarlyStop`]); saved as a flag before modes existed.
    #[serde(default = "off")]
    early_stop: EarlyStop,
    /// Backend calls the early stop (or a cascade) spared.
    #[serde(default)]
    calls_saved: u64,
    /// Where a cascade stands; `None` for a plain council.
    #[serde(default)]
    cascade: Option<Cascade>,
}

/// What a deliberation saved before early stops existed did: run every round.
fn off() -> EarlyStop {
    EarlyStop::Off
}

impl Deliberation {
    /// Starts a deliberation in the proposing phase with every agent owing a proposal.
    ///
    /// The rounds actually run are `rounds` capped by the task's `max_iterations`.
    pub fn new(council: Council, task: Task, rounds: Rounds) -> Self {
        let rounds = task.constraints().cap_rounds(rounds.get());
        let pending = council.agents().iter().map(|a| a.id.clone()).collect();
        Self {
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
        }
    }

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
        Ok(Self {
            council: parts.council,
            task: parts.task,
            rounds: parts.rounds,
            phase: parts.phase,
            proposals: parts.proposals,
            reviews: parts.reviews,
            failures: parts.failures,
            dropped: parts.dropped,
            pending: parts.pending,
            assignments: parts.assignments,
            under_review: parts.under_review,
            usage: parts.usage,
            tests: parts.tests,
            early_stop: parts.early_stop,
            calls_saved: parts.calls_saved,
            cascade: parts.cascade,
        })
    }

    /// Every field, for a store to save (see [`DeliberationParts`]).
    pub fn to_parts(&self) -> DeliberationParts {
        DeliberationParts {
            council: self.council.clone(),
            task: self.task.clone(),
            rounds: self.rounds,
            phase: self.phase,
            proposals: self.proposals.clone(),
            reviews: self.reviews.clone(),
            failures: self.failures.clone(),
            dropped: self.dropped.clone(),
            pending: self.pending.clone(),
            assignments: self.assignments.clone(),
            under_review: self.under_review.clone(),
            usage: self.usage.clone(),
            tests: self.tests.clone(),
            early_stop: self.early_stop,
            calls_saved: self.calls_saved,
            cascade: self.cascade.clone(),
        }
    }

    /// Marks an author's current proposal as cut off at the model's token limit.
    pub fn record_truncated(&mut self, author: &AgentId) {
        if let Some(proposal) = self.proposals.iter_mut().find(|p| p.author() == author) {
            proposal.mark_truncated();
        }
    }

    pub fn council(&self) -> &Council {
        &self.council
    }

    pub fn task(&self) -> &Task {
        &self.task
    }

    /// Review rounds this deliberation runs (after the `max_iterations` cap).
    pub fn rounds(&self) -> u32 {
        self.rounds
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Surviving proposals in seat order.
    pub fn proposals(&self) -> &[Proposal] {
        &self.proposals
    }

    /// Every review recorded so far.
    pub fn reviews(&self) -> &[Review] {
        &self.reviews
    }

    pub fn failures(&self) -> &[AgentFailure] {
        &self.failures
    }

    /// Agents that still owe a reply in this phase.
    pub fn pending(&self) -> &BTreeSet<AgentId> {
        &self.pending
    }

    /// Usage summed over every agent so far.
    pub fn total_usage(&self) -> TokenUsage {
        self.usage.values().fold(TokenUsage::default(), |acc, u| acc + *u)
    }

    /// Agents asked to propose (every agent, in seat order) while proposing.
    pub fn proposal_requests(&self) -> Vec<Agent> {
        match self.phase {
            Phase::Proposing => self.pending_agents(),
            _ => Vec::new(),
        }
    }

    /// This round's reviews to ask for, in reviewer seat order.
    pub fn review_assignments(&self) -> Vec<ReviewAssignment> {
        let Phase::Reviewing { round } = self.phase else {
            return Vec::new();
        };
        self.pending_agents()
            .into_iter()
            .filter_map(|reviewer| {
                let target = self.assignments.get(&reviewer.id)?;
                let proposal = self.under_review.get(target)?.clone();
                // Revisions happen after reviews, so a target still in the deliberation is at
                // the version under review.
                let tests = self.proposal(target).map_or_else(TestOutcome::no_tests, |p| self.shown_tests(p));
                Some(ReviewAssignment { reviewer, target: target.clone(), proposal, round, tests })
            })
            .collect()
    }

    /// This round's revisions to ask for: authors that received at least one review.
    pub fn revision_requests(&self) -> Vec<RevisionRequest> {
        let Phase::Revising { round } = self.phase else {
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
            self.proposals.push(Proposal::new(agent.clone(), content, created_at_ms));
            let council = &self.council;
            self.proposals.sort_by_key(|p| council.agent(p.author()).map_or(usize::MAX, |a| a.seat));
        }
        Ok(())
    }

    /// Records a review by a reviewer of its assigned target in the current round.
    ///
    /// # Errors
    /// `WrongPhase` outside reviewing; `NotPending` when the reviewer owes no review;
    /// `Invalid` (field `target`) when the review is not of the assigned proposal.
    pub fn record_review(&mut self, review: Review) -> Result<()> {
        let round = self.phase.round();
        self.expect_phase("record a review", |p| matches!(p, Phase::Reviewing { .. }))?;
        if self.assignments.get(&review.reviewer) != Some(&review.target) || review.round != round {
            return Err(DomainError::invalid(
                "target",
                format!(
                    "{} was not assigned to review {} in round {}",
                    review.reviewer, review.target, review.round
                ),
            ));
        }
        self.take_pending(&review.reviewer)?;
        self.reviews.push(review);
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
        } else if let Some(proposal) = self.proposals.iter_mut().find(|p| p.author() == agent) {
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
        if self.failures.is_empty() {
            return None;
        }
        self.failures.iter().map(|f| f.misconfigured_profile.clone()).collect()
    }

    /// Adds the cost of one backend call to an agent's usage (failed calls cost too).
    pub fn record_usage(&mut self, agent: &AgentId, usage: TokenUsage) {
        *self.usage.entry(agent.clone()).or_default() += usage;
    }

    /// Moves to the next phase once every pending reply is recorded, and returns it.
    ///
    /// # Errors
    /// `NoSurvivors` when every agent has failed; `WrongPhase` while replies are pending or
    /// when already scoring or completed.
    pub fn advance(&mut self) -> Result<Phase> {
        if !self.pending.is_empty() {
            return Err(DomainError::WrongPhase {
                action: "advance",
                actual: format!("{} with {} replies pending", self.phase, self.pending.len()),
            });
        }
        if let Some(Cascade::FirstAnswer { first }) = self.cascade.clone() {
            return Ok(self.after_first_answer(first));
        }
        if self.proposals.is_empty() {
            return Err(DomainError::NoSurvivors);
        }
        let stop_on_tests = self.early_stop == EarlyStop::Tests && self.some_version_passes();
        let next = match self.phase {
            Phase::Proposing if stop_on_tests => {
                self.calls_saved = self.calls_of_rounds_from(1);
                Phase::Scoring
            }
            Phase::Proposing => self.review_round_or_scoring(1),
            Phase::Reviewing { round }
                if self.early_stop == EarlyStop::TestsAndReviews
                    && self.agreed_on_a_passing_proposal(round) =>
            {
                self.calls_saved = self.calls_skipped_from(round);
                Phase::Scoring
            }
            Phase::Reviewing { round } => Phase::Revising { round },
            Phase::Revising { round } if stop_on_tests => {
                self.calls_saved = self.calls_of_rounds_from(round + 1);
                Phase::Scoring
            }
            Phase::Revising { round } => self.review_round_or_scoring(round + 1),
            Phase::Scoring | Phase::Completed => {
                return Err(DomainError::WrongPhase { action: "advance", actual: self.phase.to_string() });
            }
        };
        self.enter(next);
        Ok(next)
    }

    fn review_round_or_scoring(&self, round: u32) -> Phase {
        if round <= self.rounds && self.proposals.len() >= 2 {
            Phase::Reviewing { round }
        } else {
            Phase::Scoring
        }
    }

    fn enter(&mut self, phase: Phase) {
        self.phase = phase;
        self.assignments.clear();
        self.under_review.clear();
        let survivors: Vec<AgentId> = self.proposals.iter().map(|p| p.author().clone()).collect();
        self.pending = match phase {
            Phase::Reviewing { round } => {
                for (reviewer, target) in ring_assignment(survivors.len(), round).into_iter().enumerate() {
                    self.assignments.insert(survivors[reviewer].clone(), survivors[target].clone());
                }
                self.under_review =
                    self.proposals.iter().map(|p| (p.author().clone(), p.content().to_owned())).collect();
                survivors.into_iter().collect()
            }
            Phase::Revising { round } => survivors
                .into_iter()
                .filter(|author| self.reviews.iter().any(|r| r.round == round && &r.target == author))
                .collect(),
            _ => BTreeSet::new(),
        };
    }

    fn expect_phase(&self, action: &'static str, ok: impl Fn(Phase) -> bool) -> Result<()> {
        if ok(self.phase) {
            Ok(())
        } else {
            Err(DomainError::WrongPhase { action, actual: self.phase.to_string() })
        }
    }

    fn take_pending(&mut self, agent: &AgentId) -> Result<()> {
        if self.pending.remove(agent) {
            Ok(())
        } else {
            Err(DomainError::NotPending { agent: agent.to_string(), phase: self.phase.to_string() })
        }
    }

    fn drop_agent(&mut self, agent: &AgentId, reason: String, misconfigured_profile: Option<String>) {
        self.proposals.retain(|p| p.author() != agent);
        if self.dropped.insert(agent.clone()) {
            self.failures.push(AgentFailure {
                agent: agent.clone(),
                phase: self.phase,
                reason,
                misconfigured_profile,
            });
        }
    }

    fn pending_agents(&self) -> Vec<Agent> {
        self.council.agents().iter().filter(|a| self.pending.contains(&a.id)).cloned().collect()
    }

    fn proposal(&self, author: &AgentId) -> Option<&Proposal> {
        self.proposals.iter().find(|p| p.author() == author)
    }

    fn reviews_of(&self, target: &AgentId, round: Option<u32>) -> Vec<Review> {
        self.reviews
            .iter()
            .filter(|r| &r.target == target && round.is_none_or(|n| r.round == n))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests;
