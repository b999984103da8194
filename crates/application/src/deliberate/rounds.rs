//! The phases of a running deliberation: who is called in each, how their replies are
//! recorded, and when the acceptance tests and dry runs run between them.

use std::collections::BTreeMap;

use futures::future::join_all;
use futures::stream::{self, StreamExt};
use orchestrator_domain::{
    Deliberation, DeliberationOutcome, DomainError, DryRunOutcome, Phase, Review, ReviewAssignment,
    RevisionRequest, Task, TaskId, TestOutcome,
};
use tokio::time::Instant;
use tracing::{debug, info};

use super::Deliberate;
use super::replies::{Report, gather, record_replies, timed};
use crate::error::{ApplicationError, Result};
use crate::observability;
use crate::ports::{AgentBackend, AgentStep, ProgressObserver, StepKind};

/// What every phase of one running deliberation calls and reports to.
#[derive(Clone, Copy)]
struct Turn<'a> {
    backend: &'a dyn AgentBackend,
    task: &'a Task,
    report: Report<'a>,
}

impl Deliberate {
    /// Drives the deliberation from whatever phase it is in (a new one proposes first; one
    /// restored from storage continues where its last saved phase left it).
    pub(super) async fn drive(
        &self,
        backend: &dyn AgentBackend,
        task_id: &TaskId,
        d: &mut Deliberation,
        observer: &dyn ProgressObserver,
    ) -> Result<DeliberationOutcome> {
        let task = d.task().clone();
        let turn = Turn { backend, task: &task, report: (task_id, observer) };
        let role = d.council().role();
        loop {
            let started = Instant::now();
            let phase = d.phase();
            match phase {
                Phase::Proposing => {
                    self.proposal_round(turn, d).await?;
                    // The early stop and a cascade decide on the proposals' test results.
                    self.test_round(turn, d).await;
                }
                Phase::Reviewing { .. } => {
                    // Reviewers see each proposal's test report, and the early stop needs it.
                    self.test_round(turn, d).await;
                    self.review_round(turn, d).await?;
                }
                Phase::Revising { .. } => {
                    self.revision_round(turn, d).await?;
                    self.test_round(turn, d).await;
                }
                Phase::Scoring => break,
                Phase::Completed => {
                    return Err(ApplicationError::Internal("deliberation is already completed".into()));
                }
            };
            observability::phase_ran(role, phase, started.elapsed());
            advance(d)?;
            observer.phase_completed(task_id, d).await;
        }
        let started = Instant::now();
        self.test_round(turn, d).await;
        for kept in d.keep_best_tested_versions()? {
            info!(
                task_id = %task_id,
                agent = %kept.author,
                kept_version = kept.kept,
                kept_passed = kept.kept_passed,
                regressed_version = kept.regressed,
                regressed_passed = kept.regressed_passed,
                "a revision lost acceptance tests: its author's earlier version is kept"
            );
        }
        let dry_runs = self.dry_runs(&task, d).await;
        let outcome = d.finish(dry_runs, &self.settings.weights)?;
        observability::phase_ran(role, Phase::Scoring, started.elapsed());
        observer.phase_completed(task_id, d).await;
        Ok(outcome)
    }

    async fn proposal_round(&self, turn: Turn<'_>, d: &mut Deliberation) -> Result<()> {
        let Turn { backend, task, report } = turn;
        let escalation = d.escalation();
        let escalation = escalation.as_ref();
        let calls = d.proposal_requests().into_iter().map(|agent| async move {
            let call = async {
                match escalation {
                    Some(escalation) => backend.propose_after(&agent, task, escalation).await,
                    None => backend.propose(&agent, task).await,
                }
            };
            let (result, usage) = timed(call, |c| c.usage).await;
            (agent, result, usage)
        });
        let replies = gather(calls, d.phase(), report, |_| StepKind::Proposed).await;
        record_replies(d, replies, |d, agent, completion| {
            d.record_proposal(&agent.id, completion.text, self.clock.now_ms())?;
            if completion.truncated {
                d.record_truncated(&agent.id);
            }
            Ok(())
        })
    }

    async fn review_round(&self, turn: Turn<'_>, d: &mut Deliberation) -> Result<()> {
        let Turn { backend, task, report } = turn;
        let calls = d.review_assignments().into_iter().map(|assignment| async move {
            let ReviewAssignment { reviewer, target, proposal, round, tests } = assignment;
            let (result, usage) =
                timed(backend.review(&reviewer, task, &proposal, &tests), |r| r.usage).await;
            let result = result.map(|reply| Review {
                reviewer: reviewer.id.clone(),
                target,
                round,
                critique: reply.critique,
                score: reply.score,
                issues: reply.issues,
            });
            (reviewer, result, usage)
        });
        let replies = gather(calls, d.phase(), report, |review: &Review| StepKind::Reviewed {
            target: review.target.clone(),
            score: review.score.map(orchestrator_domain::PeerScore::value),
        })
        .await;
        record_replies(d, replies, |d, _reviewer, review| d.record_review(review))
    }

    async fn revision_round(&self, turn: Turn<'_>, d: &mut Deliberation) -> Result<()> {
        let Turn { backend, task, report } = turn;
        let calls = d.revision_requests().into_iter().map(|request| async move {
            let RevisionRequest { author, current, reviews, tests, .. } = request;
            let (result, usage) =
                timed(backend.revise(&author, task, &current, &tests, &reviews), |c| c.usage).await;
            (author, result, usage)
        });
        let replies = gather(calls, d.phase(), report, |_| StepKind::Revised).await;
        record_replies(d, replies, |d, author, completion| {
            d.record_revision(&author.id, completion.text)?;
            if completion.truncated {
                d.record_truncated(&author.id);
            }
            Ok(())
        })
    }

    /// Runs every proposal version not yet tested against the task's acceptance tests, at
    /// most [`DeliberationSettings::test_concurrency`] at once, and records the outcomes.
    async fn test_round(&self, turn: Turn<'_>, d: &mut Deliberation) {
        let Turn { task, report: (task_id, observer), .. } = turn;
        let requests = d.test_requests();
        let Some(tests) = task.constraints().acceptance_tests() else {
            return;
        };
        if requests.is_empty() {
            return;
        }
        let outcomes: Vec<_> = match self.test_runner.as_deref() {
            Some(runner) if runner.supports(tests.language()) => {
                let phase = d.phase();
                let mut runs = stream::iter(requests)
                    .map(|request| async move {
                        let outcome = runner.run(tests, &request.content).await;
                        (request.author, outcome)
                    })
                    .buffered(self.settings.test_concurrency.max(1));
                let mut outcomes = Vec::new();
                while let Some((author, outcome)) = runs.next().await {
                    if let Some(report) = outcome.report() {
                        let kind = StepKind::TestsRan {
                            passed: report.passed,
                            failed: report.failed,
                            errored: report.errored,
                        };
                        let step = AgentStep { agent_id: author.clone(), phase, kind, tokens: 0 };
                        observer.agent_step(task_id, &step).await;
                    }
                    outcomes.push((author, outcome));
                }
                outcomes
            }
            Some(_) => {
                let reason = format!("not run: no test runner for {}", tests.language());
                requests
                    .into_iter()
                    .map(|r| (r.author, TestOutcome::NotRun { reason: reason.clone() }))
                    .collect()
            }
            None => requests.into_iter().map(|r| (r.author, TestOutcome::no_sandbox())).collect(),
        };
        for (author, outcome) in outcomes {
            debug!(agent = %author, tests = %outcome.message(), "acceptance tests");
            d.record_tests(&author, outcome);
        }
    }

    async fn dry_runs(
        &self,
        task: &Task,
        d: &Deliberation,
    ) -> BTreeMap<orchestrator_domain::AgentId, DryRunOutcome> {
        let Some(runner) = self.dry_runner.as_deref() else {
            return d
                .proposals()
                .iter()
                .map(|p| (p.author().clone(), DryRunOutcome::not_configured()))
                .collect();
        };
        let runs = d
            .proposals()
            .iter()
            .map(|p| async move { (p.author().clone(), runner.dry_run(task, p.content()).await) });
        join_all(runs).await.into_iter().collect()
    }
}

fn advance(d: &mut Deliberation) -> Result<Phase> {
    d.advance().map_err(|error| match error {
        DomainError::NoSurvivors => match d.misconfigured_profiles() {
            Some(profiles) => ApplicationError::BackendMisconfigured {
                profiles: profiles.into_iter().collect(),
                failures: d.failures().to_vec(),
            },
            None => ApplicationError::AllAgentsFailed { failures: d.failures().to_vec() },
        },
        other => other.into(),
    })
}
