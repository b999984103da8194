//! Rows as both databases store them, and their conversion to and from the domain.
//!
//! Both adapters read and write exactly these shapes, so the mapping between SQL columns and
//! domain values — and every check that a stored value is still valid — lives here once.
//! Integers are `i64` (SQLite `INTEGER`, PostgreSQL `BIGINT`), reals `f64`, JSON is text.

use std::collections::BTreeMap;

use orchestrator_application::ports::{DeliberationRecord, NewDeliberation, StoreError, StoredSelection};
use orchestrator_domain::{
    Agent, AgentFailure, AgentId, CheckSuite, DeliberationOutcome, DeliberationStatus, DomainError, Path,
    PeerScore, Phase, ProfileName, Proposal, RankedProposal, Review, Role, Score, TokenUsage,
};
use serde::de::DeserializeOwned;

use crate::error::{Fault, corrupt};
use crate::snapshot::{self, Restored};
use crate::text::{storable, to_json};

/// The columns of `deliberations` a [`DeliberationRow`] reads, except `progress` (which only
/// `get` and claiming add: listing leaves it out to stay cheap).
pub(crate) const DELIBERATION_COLUMNS: &str = "task_id, status, request, started_at_ms, finished_at_ms, \
     duration_ms, winner_id, error, prompt_tokens, completion_tokens, calls, latency_ms, lease_epoch, selection, \
     calls_saved, path";

/// The columns of `proposals` besides `task_id`, in the order of [`ProposalRow`].
pub(crate) const PROPOSAL_COLUMNS: &str = "ordinal, rank, agent_id, agent_role, profile, seat, author, \
     content, revisions, created_at_ms, checks, check_score, peer_score, score, prompt_tokens, \
     completion_tokens, calls, latency_ms";

/// The columns of `reviews` besides `task_id`, in the order of [`ReviewRow`].
pub(crate) const REVIEW_COLUMNS: &str =
    "proposal_agent_id, ordinal, reviewer, target, round, score, critique, issues";

/// The columns of `agent_failures` besides `task_id`, in the order of [`FailureRow`].
pub(crate) const FAILURE_COLUMNS: &str = "ordinal, agent_id, phase, round, reason";

/// One row of `deliberations`, as read back.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct DeliberationRow {
    pub(crate) task_id: String,
    pub(crate) status: String,
    /// The [`NewDeliberation`] as JSON: the authority for the request fields.
    pub(crate) request: String,
    pub(crate) started_at_ms: Option<i64>,
    pub(crate) finished_at_ms: Option<i64>,
    pub(crate) duration_ms: Option<i64>,
    pub(crate) winner_id: Option<String>,
    pub(crate) error: Option<String>,
    /// The versioned progress snapshot (see `snapshot.rs`) as JSON; `None` too when the query did not select it.
    #[sqlx(default)]
    pub(crate) progress: Option<String>,
    /// Total usage, set together on completion.
    pub(crate) prompt_tokens: Option<i64>,
    pub(crate) completion_tokens: Option<i64>,
    pub(crate) calls: Option<i64>,
    pub(crate) latency_ms: Option<i64>,
    /// The epoch of the last claim (see `Fence`).
    pub(crate) lease_epoch: i64,
    /// The `StoredSelection` of Orchestrate as JSON, once chosen.
    pub(crate) selection: Option<String>,
    /// Backend calls the early stop spared, set on completion.
    pub(crate) calls_saved: i64,
    /// Which way it went (`Path::as_str`), set on completion.
    pub(crate) path: String,
}

/// [`TokenUsage`] as four integer columns, so totals can be summed in SQL.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, sqlx::FromRow)]
pub(crate) struct UsageColumns {
    pub(crate) prompt_tokens: i64,
    pub(crate) completion_tokens: i64,
    pub(crate) calls: i64,
    pub(crate) latency_ms: i64,
}

/// One row of `proposals`: a ranked final proposal.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct ProposalRow {
    /// Position in `DeliberationOutcome::results`.
    pub(crate) ordinal: i64,
    pub(crate) rank: i64,
    pub(crate) agent_id: String,
    pub(crate) agent_role: String,
    pub(crate) profile: String,
    pub(crate) seat: i64,
    pub(crate) author: String,
    pub(crate) content: String,
    /// Earlier versions, oldest first, as a JSON array of strings.
    pub(crate) revisions: String,
    pub(crate) created_at_ms: i64,
    /// The [`CheckSuite`] as JSON.
    pub(crate) checks: String,
    pub(crate) check_score: f64,
    pub(crate) peer_score: Option<f64>,
    pub(crate) score: f64,
    #[sqlx(flatten)]
    pub(crate) usage: UsageColumns,
}

/// One row of `reviews`: a review a ranked proposal received.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct ReviewRow {
    /// The ranked proposal (by agent id) whose `reviews` list holds this review.
    pub(crate) proposal_agent_id: String,
    /// Position in that list.
    pub(crate) ordinal: i64,
    pub(crate) reviewer: String,
    pub(crate) target: String,
    pub(crate) round: i64,
    pub(crate) score: Option<f64>,
    pub(crate) critique: String,
    /// JSON array of strings.
    pub(crate) issues: String,
}

/// One row of `agent_failures`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct FailureRow {
    pub(crate) ordinal: i64,
    pub(crate) agent_id: String,
    pub(crate) phase: String,
    pub(crate) round: i64,
    pub(crate) reason: String,
}

/// Everything a completed deliberation adds to the child tables and its own row.
#[derive(Debug, Clone)]
pub(crate) struct OutcomeRows {
    pub(crate) winner_id: Option<String>,
    pub(crate) usage: UsageColumns,
    /// Backend calls an early stop spared (0 when every round ran).
    pub(crate) calls_saved: i64,
    pub(crate) path: String,
    pub(crate) proposals: Vec<ProposalRow>,
    pub(crate) reviews: Vec<ReviewRow>,
    pub(crate) failures: Vec<FailureRow>,
}

fn from_json<T: DeserializeOwned>(task_id: &str, column: &'static str, json: &str) -> Result<T, StoreError> {
    serde_json::from_str(json).map_err(|source| corrupt(task_id, Fault::Json { column, source }))
}

fn to_i64<T: TryInto<i64>>(task_id: &str, field: &'static str, value: T) -> Result<i64, StoreError> {
    value.try_into().map_err(|_| corrupt(task_id, Fault::TooLarge { field }))
}

fn from_i64<T: TryFrom<i64>>(task_id: &str, field: &'static str, value: i64) -> Result<T, StoreError> {
    T::try_from(value).map_err(|_| corrupt(task_id, Fault::OutOfRange { field, value }))
}

/// A domain value that no longer validates.
fn invalid(task_id: &str, column: &'static str) -> impl FnOnce(DomainError) -> StoreError {
    move |source| corrupt(task_id, Fault::Invalid { column, source })
}

impl UsageColumns {
    /// # Errors
    /// [`StoreError::Corrupt`] for counts beyond `i64::MAX`.
    pub(crate) fn from_usage(task_id: &str, usage: &TokenUsage) -> Result<Self, StoreError> {
        Ok(Self {
            prompt_tokens: to_i64(task_id, "prompt_tokens", usage.prompt_tokens)?,
            completion_tokens: to_i64(task_id, "completion_tokens", usage.completion_tokens)?,
            calls: to_i64(task_id, "calls", usage.calls)?,
            latency_ms: to_i64(task_id, "latency_ms", usage.latency_ms)?,
        })
    }

    fn to_usage(self, task_id: &str) -> Result<TokenUsage, StoreError> {
        Ok(TokenUsage {
            prompt_tokens: from_i64(task_id, "prompt_tokens", self.prompt_tokens)?,
            completion_tokens: from_i64(task_id, "completion_tokens", self.completion_tokens)?,
            calls: from_i64(task_id, "calls", self.calls)?,
            latency_ms: from_i64(task_id, "latency_ms", self.latency_ms)?,
        })
    }
}

impl OutcomeRows {
    /// Flattens an outcome into rows.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when a number does not fit its column.
    pub(crate) fn from_outcome(task_id: &str, outcome: &DeliberationOutcome) -> Result<Self, StoreError> {
        let mut proposals = Vec::with_capacity(outcome.results.len());
        let mut reviews = Vec::new();
        for (ordinal, ranked) in outcome.results.iter().enumerate() {
            proposals.push(ProposalRow {
                ordinal: to_i64(task_id, "ordinal", ordinal)?,
                rank: i64::from(ranked.rank),
                agent_id: storable(ranked.agent.id.as_str()),
                agent_role: ranked.agent.role.as_str().to_owned(),
                profile: storable(ranked.agent.profile.as_str()),
                seat: to_i64(task_id, "seat", ranked.agent.seat)?,
                author: storable(ranked.proposal.author().as_str()),
                content: storable(ranked.proposal.content()),
                revisions: to_json(task_id, "revisions", &ranked.proposal.revisions())?,
                created_at_ms: ranked.proposal.created_at_ms(),
                checks: to_json(task_id, "checks", &ranked.checks)?,
                check_score: ranked.check_score.value(),
                peer_score: ranked.peer_score,
                score: ranked.score.value(),
                usage: UsageColumns::from_usage(task_id, &ranked.usage)?,
            });
            for (ordinal, review) in ranked.reviews.iter().enumerate() {
                reviews.push(ReviewRow {
                    proposal_agent_id: storable(ranked.agent.id.as_str()),
                    ordinal: to_i64(task_id, "ordinal", ordinal)?,
                    reviewer: storable(review.reviewer.as_str()),
                    target: storable(review.target.as_str()),
                    round: i64::from(review.round),
                    score: review.score.map(PeerScore::value),
                    critique: storable(&review.critique),
                    issues: to_json(task_id, "issues", &review.issues)?,
                });
            }
        }
        let failures = outcome
            .failures
            .iter()
            .enumerate()
            .map(|(ordinal, failure)| {
                Ok(FailureRow {
                    ordinal: to_i64(task_id, "ordinal", ordinal)?,
                    agent_id: storable(failure.agent.as_str()),
                    phase: storable(failure.phase.action()),
                    round: i64::from(failure.phase.round()),
                    reason: storable(&failure.reason),
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(Self {
            winner_id: outcome.results.first().map(|winner| storable(winner.agent.id.as_str())),
            usage: UsageColumns::from_usage(task_id, &outcome.usage)?,
            calls_saved: to_i64(task_id, "calls_saved", outcome.calls_saved)?,
            path: outcome.path.as_str().to_owned(),
            proposals,
            reviews,
            failures,
        })
    }

    /// Rebuilds the outcome; rows may come in any order.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when a stored value is no longer valid in the domain.
    pub(crate) fn into_outcome(mut self, task_id: &str) -> Result<DeliberationOutcome, StoreError> {
        self.proposals.sort_by_key(|p| p.ordinal);
        self.reviews.sort_by_key(|r| r.ordinal);
        self.failures.sort_by_key(|f| f.ordinal);
        let mut reviews_by_proposal: BTreeMap<String, Vec<Review>> = BTreeMap::new();
        for row in self.reviews {
            let review = Review {
                reviewer: agent_id(task_id, "reviewer", row.reviewer)?,
                target: agent_id(task_id, "target", row.target)?,
                round: from_i64(task_id, "round", row.round)?,
                critique: row.critique,
                score: row.score.map(PeerScore::new).transpose().map_err(invalid(task_id, "score"))?,
                issues: from_json(task_id, "issues", &row.issues)?,
            };
            reviews_by_proposal.entry(row.proposal_agent_id).or_default().push(review);
        }
        let results = self
            .proposals
            .into_iter()
            .map(|row| {
                let reviews = reviews_by_proposal.remove(&row.agent_id).unwrap_or_default();
                let agent = Agent {
                    id: agent_id(task_id, "agent_id", row.agent_id)?,
                    role: Role::parse(&row.agent_role).map_err(invalid(task_id, "agent_role"))?,
                    profile: ProfileName::new(row.profile).map_err(invalid(task_id, "profile"))?,
                    seat: from_i64(task_id, "seat", row.seat)?,
                    // Personas are not kept with results: they live with the standing council
                    // and in the saved progress of the deliberation.
                    persona: None,
                };
                let proposal = Proposal::restore(
                    agent_id(task_id, "author", row.author)?,
                    row.content,
                    row.created_at_ms,
                    from_json(task_id, "revisions", &row.revisions)?,
                );
                Ok(RankedProposal {
                    rank: from_i64(task_id, "rank", row.rank)?,
                    agent,
                    proposal,
                    checks: from_json::<CheckSuite>(task_id, "checks", &row.checks)?,
                    check_score: score(task_id, "check_score", row.check_score)?,
                    peer_score: row.peer_score,
                    score: score(task_id, "score", row.score)?,
                    reviews,
                    usage: row.usage.to_usage(task_id)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let failures = self
            .failures
            .into_iter()
            .map(|row| {
                Ok(AgentFailure {
                    agent: agent_id(task_id, "agent_id", row.agent_id)?,
                    phase: Phase::from_action(&row.phase, from_i64(task_id, "round", row.round)?)
                        .ok_or_else(|| {
                            DomainError::invalid("phase", format!("unknown agent action {:?}", row.phase))
                        })
                        .map_err(invalid(task_id, "phase"))?,
                    reason: row.reason,
                    misconfigured_profile: None,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(DeliberationOutcome {
            results,
            failures,
            usage: self.usage.to_usage(task_id)?,
            calls_saved: from_i64(task_id, "calls_saved", self.calls_saved)?,
            path: Path::parse(&self.path).map_err(invalid(task_id, "path"))?,
        })
    }
}

fn agent_id(task_id: &str, column: &'static str, value: String) -> Result<AgentId, StoreError> {
    AgentId::new(value).map_err(invalid(task_id, column))
}

fn score(task_id: &str, column: &'static str, value: f64) -> Result<Score, StoreError> {
    Score::new(value).map_err(invalid(task_id, column))
}

impl DeliberationRow {
    /// The total usage, present once completed.
    fn usage(&self) -> Option<UsageColumns> {
        Some(UsageColumns {
            prompt_tokens: self.prompt_tokens?,
            completion_tokens: self.completion_tokens?,
            calls: self.calls?,
            latency_ms: self.latency_ms?,
        })
    }

    /// The stored status.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] for an unknown status name.
    pub(crate) fn status(&self) -> Result<DeliberationStatus, StoreError> {
        DeliberationStatus::parse(&self.status).map_err(invalid(&self.task_id, "status"))
    }

    /// Rebuilds the record; `outcome` holds the child rows when they were read.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when a stored value is no longer valid in the domain.
    pub(crate) fn into_record(self, outcome: Option<OutcomeRows>) -> Result<DeliberationRecord, StoreError> {
        let task_id = self.task_id.as_str();
        let status = self.status()?;
        let request: NewDeliberation = from_json(task_id, "request", &self.request)?;
        let (progress, unreadable_progress) = match self.progress.as_deref().map(snapshot::restore) {
            None => (None, None),
            Some(Restored::Deliberation(deliberation)) => (Some(*deliberation), None),
            Some(Restored::Unreadable(reason)) => {
                tracing::warn!(task_id, %reason, "saved progress cannot be restored");
                (None, Some(reason))
            }
        };
        // A TIMEOUT keeps its partial results only when it had some.
        let outcome = outcome
            .filter(|rows| status == DeliberationStatus::Completed || !rows.proposals.is_empty())
            .map(|mut rows| {
                rows.usage = self.usage().ok_or_else(|| corrupt(task_id, Fault::MissingUsage))?;
                rows.calls_saved = self.calls_saved;
                rows.path = self.path.clone();
                rows.into_outcome(task_id)
            })
            .transpose()?;
        let selection = self
            .selection
            .as_deref()
            .map(|json| from_json::<StoredSelection>(task_id, "selection", json))
            .transpose()?;
        Ok(DeliberationRecord {
            request,
            status,
            started_at_ms: self.started_at_ms,
            finished_at_ms: self.finished_at_ms,
            duration_ms: self.duration_ms,
            winner_id: self.winner_id,
            error: self.error,
            progress,
            unreadable_progress,
            outcome,
            lease_epoch: self.lease_epoch,
            selection,
        })
    }
}
