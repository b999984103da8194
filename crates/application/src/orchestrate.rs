//! The Orchestrate use case: deliberate, then select a winner among the top candidates.

use std::sync::Arc;

use orchestrator_domain::{Agent, AgentId, ProfileName, Role, TokenUsage, excerpt};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::caller::Caller;
use crate::deliberate::{DeliberateCommand, DeliberationReport};
use crate::error::Result;
use crate::jobs::Jobs;
use crate::ports::{ProgressObserver, StoredSelection};

/// How many of the best-ranked proposals the selection chooses among.
pub const TOP_K: usize = 3;

/// A validated request to orchestrate.
#[derive(Debug, Clone, PartialEq)]
pub struct OrchestrateCommand {
    pub deliberate: DeliberateCommand,
    /// Let an ARCHITECT agent choose among the top candidates instead of taking rank 1.
    pub architect_selection: bool,
}

/// How the winner was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectionMethod {
    /// An ARCHITECT agent chose it.
    Architect,
    /// The highest final score (by request, or because the architect's answer was unusable).
    Score,
}

impl SelectionMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            SelectionMethod::Architect => "architect",
            SelectionMethod::Score => "score",
        }
    }

    /// The method a stored selection names; anything unknown reads as `Score`.
    pub fn parse(name: &str) -> Self {
        if name == "architect" { SelectionMethod::Architect } else { SelectionMethod::Score }
    }
}

/// The result of Orchestrate.
#[derive(Debug, Clone, PartialEq)]
pub struct OrchestrationReport {
    pub execution_id: String,
    pub deliberation: DeliberationReport,
    /// How many of the top results were candidates (≤ 3).
    pub candidates: usize,
    /// Index of the chosen winner in `deliberation.outcome.results` (< `candidates`).
    pub winner: usize,
    pub method: SelectionMethod,
    pub rationale: String,
    /// Cost of the selection call, if one was made.
    pub selection_usage: TokenUsage,
}

type Choice = (usize, SelectionMethod, String, TokenUsage);

/// Deliberates (as a stored job) and selects.
#[derive(Debug)]
pub struct Orchestrate {
    jobs: Arc<Jobs>,
}

impl Orchestrate {
    pub fn new(jobs: Arc<Jobs>) -> Self {
        Self { jobs }
    }

    /// Deliberates, then selects — once: the choice is stored with the deliberation, and a
    /// retry with the same task id (like GetDeliberationResult) answers the stored choice
    /// instead of asking the architect again.
    ///
    /// # Errors
    /// Everything a deliberation can fail with; `Store` when the choice cannot be stored (the
    /// caller never hears of a winner that is not stored). A failed selection is not an error:
    /// it falls back to the highest score and says so in the rationale.
    pub async fn execute(
        &self,
        caller: &Caller,
        command: OrchestrateCommand,
        observer: Option<Arc<dyn ProgressObserver>>,
    ) -> Result<OrchestrationReport> {
        let deliberate = self.jobs.deliberate();
        let started = Instant::now();
        let report = self.jobs.run(caller, command.deliberate, observer).await?;
        let top = report.outcome.results.len().min(TOP_K);
        // When the best proposal passed every acceptance test, the architect chooses only among
        // the leading proposals that did too: an opinion never overrules executed tests.
        let passing = report.outcome.results[..top]
            .iter()
            .take_while(|r| r.checks.tests.passed() == Some(true))
            .count();
        let candidates = if passing > 0 { passing } else { top };
        if let Some(stored) = self.jobs.get(caller, &report.task_id).await?.selection {
            info!(task_id = %report.task_id, method = stored.method, "answering the stored selection");
            return Ok(stored_report(report, candidates, &stored));
        }
        let timeout = report.task.constraints().timeout().unwrap_or(deliberate.settings().default_timeout);
        let deadline = started + timeout;
        let by_score = |rationale: String| (0, SelectionMethod::Score, rationale, TokenUsage::default());
        let (winner, method, rationale, selection_usage) = if !command.architect_selection {
            by_score("highest final score (architect selection not requested)".to_owned())
        } else if candidates < 2 && top >= 2 {
            by_score("only the best candidate passed every acceptance test; chose it".to_owned())
        } else if candidates < 2 {
            by_score("only one candidate survived; chose it".to_owned())
        } else {
            let profile = selection_profile(deliberate.settings().selection_profile.clone(), &report);
            self.select(&report, candidates, profile, deadline).await.unwrap_or_else(by_score)
        };
        let selection = StoredSelection {
            method: method.as_str().to_owned(),
            winner_id: report.outcome.results[winner].agent.id.to_string(),
            rationale: rationale.clone(),
        };
        if !self.jobs.save_selection(&report.task_id, &selection).await? {
            // A concurrent retry stored its choice first: answer that one.
            if let Some(stored) = self.jobs.get(caller, &report.task_id).await?.selection {
                return Ok(stored_report(report, candidates, &stored));
            }
        }
        deliberate.counters().record_orchestration(caller.principal(), started.elapsed());
        info!(task_id = %report.task_id, method = method.as_str(), winner, "orchestration completed");
        Ok(OrchestrationReport {
            execution_id: report.task_id.to_string(),
            deliberation: report,
            candidates,
            winner,
            method,
            rationale,
            selection_usage,
        })
    }

    /// Asks an ARCHITECT agent to choose; `Err(rationale)` explains a fallback to the score.
    async fn select(
        &self,
        report: &DeliberationReport,
        candidates: usize,
        profile: ProfileName,
        deadline: Instant,
    ) -> std::result::Result<Choice, String> {
        let backend = self.jobs.deliberate().backend().map_err(|e| e.to_string())?;
        let architect = Agent {
            id: AgentId::new("architect-selector").map_err(|e| e.to_string())?,
            role: Role::Architect,
            profile,
            seat: 0,
            persona: None,
        };
        let texts: Vec<String> =
            report.outcome.results[..candidates].iter().map(|r| r.proposal.content().to_owned()).collect();
        let call = backend.select(&architect, &report.task, &texts);
        match tokio::time::timeout_at(deadline, call).await {
            Ok(Ok(selection)) => match selection.choice {
                Some(index) if index < candidates => Ok((
                    index,
                    SelectionMethod::Architect,
                    selection.rationale,
                    TokenUsage { calls: 1, ..selection.usage },
                )),
                other => {
                    warn!(task_id = %report.task_id, choice = ?other, "architect answer unusable");
                    Err(format!(
                        "highest final score: the architect's answer named no valid candidate ({})",
                        excerpt(&selection.rationale, 200)
                    ))
                }
            },
            Ok(Err(error)) => {
                warn!(task_id = %report.task_id, %error, "architect selection failed");
                Err(format!("highest final score: architect selection failed ({error})"))
            }
            Err(_) => Err("highest final score: architect selection ran out of time".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests;

/// The profile of the ARCHITECT that selects: the configured `selection_profile`, else the
/// profile of the first seated agent among the results, else `default`.
fn selection_profile(configured: Option<ProfileName>, report: &DeliberationReport) -> ProfileName {
    configured
        .or_else(|| {
            report.outcome.results.iter().min_by_key(|r| r.agent.seat).map(|r| r.agent.profile.clone())
        })
        .unwrap_or_else(ProfileName::default_profile)
}

/// The report of a selection stored earlier.
fn stored_report(
    report: DeliberationReport,
    candidates: usize,
    stored: &StoredSelection,
) -> OrchestrationReport {
    let winner =
        report.outcome.results.iter().position(|r| r.agent.id.as_str() == stored.winner_id).unwrap_or(0);
    OrchestrationReport {
        execution_id: report.task_id.to_string(),
        deliberation: report,
        candidates: candidates.max(winner + 1),
        winner,
        method: SelectionMethod::parse(&stored.method),
        rationale: stored.rationale.clone(),
        selection_usage: TokenUsage::default(),
    }
}
