//! How a deliberation ends: every surviving proposal scored — its checks, its acceptance-test
//! history, its peers' last usable grades — and ranked.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{AgentFailure, Deliberation, Path, Phase};
use crate::agent::{Agent, AgentId};
use crate::checks::{CheckSuite, DryRunOutcome};
use crate::error::{DomainError, Result};
use crate::proposal::Proposal;
use crate::ranking::{RankKey, rank};
use crate::review::Review;
use crate::scoring::{Score, ScoringWeights, check_score, missing_peer_prior, peer_mean};
use crate::usage::TokenUsage;

/// A final proposal with everything that decided its rank.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankedProposal {
    pub rank: u32,
    pub agent: Agent,
    pub proposal: Proposal,
    pub checks: CheckSuite,
    pub check_score: Score,
    /// Mean 0–10 grade of the last round that graded this proposal.
    pub peer_score: Option<f64>,
    pub score: Score,
    /// Reviews this proposal received, all rounds, in order.
    pub reviews: Vec<Review>,
    pub usage: TokenUsage,
}

/// The result of a completed deliberation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliberationOutcome {
    /// Best first; never empty.
    pub results: Vec<RankedProposal>,
    pub failures: Vec<AgentFailure>,
    pub usage: TokenUsage,
    /// Backend calls an early stop spared (0 when every round ran).
    #[serde(default)]
    pub calls_saved: u64,
    /// Which way it went (a cascade's first answer alone, or the whole council).
    #[serde(default)]
    pub path: Path,
}

impl DeliberationOutcome {
    /// Reviews the ranked proposals received, and how many of them gave a usable grade: what
    /// the peer-review phase decided with.
    pub fn review_counts(&self) -> (usize, usize) {
        let reviews = self.results.iter().flat_map(|r| &r.reviews);
        reviews.fold((0, 0), |(all, graded), review| (all + 1, graded + usize::from(review.score.is_some())))
    }

    /// The rank-1 proposal.
    pub fn winner(&self) -> &RankedProposal {
        // A completed deliberation has at least one survivor: `finish` refuses otherwise.
        &self.results[0]
    }
}

impl Deliberation {
    /// Scores, ranks and completes the deliberation.
    ///
    /// `dry_runs` holds the dry-run outcome per surviving author; a missing entry counts as
    /// "not run".
    ///
    /// # Errors
    /// `WrongPhase` unless scoring; `NoSurvivors` when no proposal is left.
    pub fn finish(
        &mut self,
        mut dry_runs: BTreeMap<AgentId, DryRunOutcome>,
        weights: &ScoringWeights,
    ) -> Result<DeliberationOutcome> {
        self.expect_phase("finish", |p| matches!(p, Phase::Scoring))?;
        if self.state.proposals.is_empty() {
            return Err(DomainError::NoSurvivors);
        }
        let results = self.rank_proposals(&mut dry_runs, weights);
        self.state.phase = Phase::Completed;
        Ok(DeliberationOutcome {
            results,
            failures: self.state.failures.clone(),
            usage: self.total_usage(),
            calls_saved: self.state.calls_saved,
            path: self.path(),
        })
    }

    /// What a deliberation that ran out of time has to show: the proposals finished so far,
    /// scored (without dry runs) and ranked as they stand, with the failures and usage so far;
    /// `None` before any proposal was finished. The deliberation itself is left as it was.
    pub fn partial_outcome(&self, weights: &ScoringWeights) -> Option<DeliberationOutcome> {
        if self.state.proposals.is_empty() {
            return None;
        }
        let results = self.rank_proposals(&mut BTreeMap::new(), weights);
        Some(DeliberationOutcome {
            results,
            failures: self.state.failures.clone(),
            usage: self.total_usage(),
            calls_saved: self.state.calls_saved,
            path: self.path(),
        })
    }

    /// The surviving proposals scored and ranked, best first.
    pub(super) fn rank_proposals(
        &self,
        dry_runs: &mut BTreeMap<AgentId, DryRunOutcome>,
        weights: &ScoringWeights,
    ) -> Vec<RankedProposal> {
        let peer_scores: BTreeMap<AgentId, Option<f64>> = self
            .state
            .proposals
            .iter()
            .map(|p| (p.author().clone(), self.peer_score_of(p.author())))
            .collect();
        // A proposal nobody graded usably is scored as the worst graded one (at most neutral),
        // never on its checks alone: having no usable review must not pay.
        let prior = missing_peer_prior(peer_scores.values().flatten().copied());
        let mut scored = Vec::with_capacity(self.state.proposals.len());
        for proposal in &self.state.proposals {
            let author = proposal.author().clone();
            let Some(agent) = self.state.council.agent(&author).cloned() else {
                continue;
            };
            let dry_run = dry_runs
                .remove(&author)
                .unwrap_or_else(|| DryRunOutcome::NotRun { reason: "not run".to_owned() });
            let mut checks = CheckSuite::run(proposal.content(), &self.state.task, dry_run);
            if proposal.truncated() {
                checks.lint.flag_truncated();
            }
            let (tests, revision_tests) = self.test_history(proposal);
            checks.tests = tests;
            checks.revision_tests = revision_tests;
            let check_score = check_score(&checks);
            let reviews = self.reviews_of(&author, None);
            let peer_score = peer_scores.get(&author).copied().flatten();
            let score = weights.combine(check_score, peer_score.or(prior));
            let key = RankKey {
                score,
                failed_checks: checks.failed_count(),
                created_at_ms: proposal.created_at_ms(),
                agent: author.clone(),
            };
            let usage = self.state.usage.get(&author).copied().unwrap_or_default();
            scored.push((
                key,
                RankedProposal {
                    rank: 0,
                    agent,
                    proposal: proposal.clone(),
                    checks,
                    check_score,
                    peer_score,
                    score,
                    reviews,
                    usage,
                },
            ));
        }
        rank(scored, |(key, _)| key)
            .into_iter()
            .map(|(rank, (_, ranked))| RankedProposal { rank, ..ranked })
            .collect()
    }

    /// Mean grade of the last round that graded `author`'s proposal usably.
    pub(super) fn peer_score_of(&self, author: &AgentId) -> Option<f64> {
        let reviews = self.reviews_of(author, None);
        let last_graded_round = reviews.iter().filter(|r| r.score.is_some()).map(|r| r.round).max()?;
        peer_mean(reviews.iter().filter(|r| r.round == last_graded_round).filter_map(|r| r.score))
    }
}
