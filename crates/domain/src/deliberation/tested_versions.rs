//! Proposal versions against the task's acceptance tests: which versions still have to run,
//! their recorded outcomes, what prompts show of them, and keeping the best-tested version of
//! each author (a revision never loses tests its author already passed).

use super::{Deliberation, Phase};
use crate::agent::AgentId;
use crate::checks::TestOutcome;
use crate::error::Result;
use crate::proposal::Proposal;

/// A proposal version that still has to be run against the acceptance tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRequest {
    pub author: AgentId,
    pub content: String,
}

/// An author whose last version passed fewer acceptance tests than an earlier one, which
/// the deliberation therefore kept (see [`Deliberation::keep_best_tested_versions`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptVersion {
    pub author: AgentId,
    /// The version kept (0 is the first proposal); its content is now the final version.
    pub kept: usize,
    pub kept_passed: u32,
    /// The version it replaces, which stays in the proposal's history.
    pub regressed: usize,
    pub regressed_passed: u32,
}

impl Deliberation {
    /// Proposal versions not yet run against the acceptance tests, in seat order; empty when
    /// the task has no tests.
    pub fn test_requests(&self) -> Vec<TestRequest> {
        if self.state.task.constraints().acceptance_tests().is_none() {
            return Vec::new();
        }
        self.state
            .proposals
            .iter()
            .filter(|p| self.tests_of(p).is_none())
            .map(|p| TestRequest { author: p.author().clone(), content: p.content().to_owned() })
            .collect()
    }

    /// Records how an author's current proposal version fared against the acceptance tests.
    /// An author no longer in the deliberation is ignored (it dropped out meanwhile).
    pub fn record_tests(&mut self, author: &AgentId, outcome: TestOutcome) {
        let Some(version) = self.proposal(author).map(Proposal::version) else {
            return;
        };
        let outcomes = self.state.tests.entry(author.clone()).or_default();
        if outcomes.len() <= version {
            outcomes.resize(version + 1, TestOutcome::NotRun { reason: "not run".to_owned() });
        }
        outcomes[version] = outcome;
    }

    /// Before scoring: an author whose final version passes fewer acceptance tests than an
    /// earlier version of its own gets that earlier version back, as a new final version whose
    /// test outcome is the one that code had (same code, same tests). The regressed version
    /// stays in the history with its report, so nothing is hidden; a revision simply cannot
    /// lose tests its author already passed. Only versions that ran count; the most tests
    /// passed wins and a tie keeps the later version. (The kept version's truncation mark is
    /// not restored: only the current version carries one.)
    ///
    /// # Errors
    /// `WrongPhase` unless scoring.
    pub fn keep_best_tested_versions(&mut self) -> Result<Vec<KeptVersion>> {
        self.expect_phase("keep the best-tested versions", |p| matches!(p, Phase::Scoring))?;
        let mut kept = Vec::new();
        if self.state.task.constraints().acceptance_tests().is_none() {
            return Ok(kept);
        }
        for proposal in &mut self.state.proposals {
            let Some(outcomes) = self.state.tests.get_mut(proposal.author()) else {
                continue;
            };
            let version = proposal.version();
            let passed_at = |v: usize| outcomes.get(v).and_then(TestOutcome::report).map(|r| r.passed);
            let Some(final_passed) = passed_at(version) else {
                continue;
            };
            let best = (0..version).filter_map(|v| passed_at(v).map(|p| (p, v))).max();
            let Some((best_passed, best_version)) = best.filter(|&(p, _)| p > final_passed) else {
                continue;
            };
            let Some(content) = proposal.revisions().get(best_version).cloned() else {
                continue;
            };
            let outcome = outcomes[best_version].clone();
            proposal.revise(content);
            outcomes.truncate(version + 1);
            outcomes.push(outcome);
            kept.push(KeptVersion {
                author: proposal.author().clone(),
                kept: best_version,
                kept_passed: best_passed,
                regressed: version,
                regressed_passed: final_passed,
            });
        }
        Ok(kept)
    }

    /// The recorded test outcome of a proposal's current version.
    pub(super) fn tests_of(&self, proposal: &Proposal) -> Option<&TestOutcome> {
        self.state.tests.get(proposal.author()).and_then(|outcomes| outcomes.get(proposal.version()))
    }

    /// What a prompt shows about a proposal's tests.
    pub(super) fn shown_tests(&self, proposal: &Proposal) -> TestOutcome {
        if self.state.task.constraints().acceptance_tests().is_none() {
            return TestOutcome::no_tests();
        }
        self.tests_of(proposal)
            .cloned()
            .unwrap_or_else(|| TestOutcome::NotRun { reason: "not run".to_owned() })
    }

    /// The test outcome of a proposal's final version and of each earlier one, oldest first.
    pub(super) fn test_history(&self, proposal: &Proposal) -> (TestOutcome, Vec<TestOutcome>) {
        if self.state.task.constraints().acceptance_tests().is_none() {
            return (TestOutcome::no_tests(), vec![TestOutcome::no_tests(); proposal.version()]);
        }
        let recorded = self.state.tests.get(proposal.author()).map_or(&[][..], Vec::as_slice);
        let at = |version: usize| {
            recorded
                .get(version)
                .cloned()
                .unwrap_or_else(|| TestOutcome::NotRun { reason: "not run".to_owned() })
        };
        (at(proposal.version()), (0..proposal.version()).map(at).collect())
    }
}
