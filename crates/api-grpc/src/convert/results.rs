//! A finished deliberation or orchestration as the wire's messages: results, checks, reviews,
//! failures, token usage and metadata.

use std::collections::HashMap;

use orchestrator_application::{DeliberationReport, OrchestrationReport};
use orchestrator_domain::checks::RELEVANCE_WARNING;
use orchestrator_domain::{
    AgentFailure, CouncilId, DryRunOutcome, RankedProposal, Review, TestOutcome, TokenUsage,
};

use super::{narrow, wide};
use crate::pb;

/// Token usage as sent on the wire.
pub fn usage(u: &TokenUsage) -> pb::TokenUsage {
    pb::TokenUsage {
        prompt_tokens: wide(u.prompt_tokens),
        completion_tokens: wide(u.completion_tokens),
        calls: wide(u.calls),
        latency_ms: wide(u.latency_ms),
        calls_saved: 0,
    }
}

/// A deliberation's total usage, with the calls an early stop spared.
pub fn total_usage(u: &TokenUsage, calls_saved: u64) -> pb::TokenUsage {
    pb::TokenUsage { calls_saved: wide(calls_saved), ..usage(u) }
}

/// One run of acceptance tests as sent on the wire.
pub fn test_report(outcome: &TestOutcome) -> pb::TestReport {
    match outcome {
        TestOutcome::NotRun { reason } => {
            pb::TestReport { ran: false, message: reason.clone(), ..Default::default() }
        }
        TestOutcome::Ran(report) => pb::TestReport {
            ran: true,
            passed: i32::try_from(report.passed).unwrap_or(i32::MAX),
            failed: i32::try_from(report.failed).unwrap_or(i32::MAX),
            errored: i32::try_from(report.errored).unwrap_or(i32::MAX),
            message: report.summary(),
            report: report.render(),
            cases: report
                .cases
                .iter()
                .map(|c| pb::TestCaseResult {
                    name: c.name.clone(),
                    outcome: c.outcome.as_str().to_owned(),
                    message: c.message.clone(),
                    traceback: c.traceback.clone(),
                })
                .collect(),
        },
    }
}

/// An agent failure as sent on the wire.
pub fn failure(f: &AgentFailure) -> pb::AgentFailure {
    pb::AgentFailure {
        agent_id: f.agent.to_string(),
        phase: f.phase.action().to_owned(),
        reason: f.reason.clone(),
        round: i32::try_from(f.phase.round()).unwrap_or(i32::MAX),
    }
}

fn review(r: &Review) -> pb::Review {
    pb::Review {
        reviewer_id: r.reviewer.to_string(),
        target_id: r.target.to_string(),
        round: i32::try_from(r.round).unwrap_or(i32::MAX),
        critique: r.critique.clone(),
        score: r.score.map(|s| s.value()),
        issues: r.issues.clone(),
    }
}

fn checks(r: &RankedProposal) -> pb::CheckSuite {
    let c = &r.checks;
    let dryrun = match &c.dry_run {
        DryRunOutcome::NotRun { reason } => pb::DryRunResult {
            passed: false,
            output: String::new(),
            exit_code: 0,
            message: reason.clone(),
            ran: false,
        },
        DryRunOutcome::Ran { passed, exit_code, output, message } => pb::DryRunResult {
            passed: *passed,
            output: output.clone(),
            exit_code: *exit_code,
            message: message.clone(),
            ran: true,
        },
    };
    let coverage = &c.lint.coverage;
    let requirements = pb::CheckResult {
        check_type: "requirements".into(),
        passed: coverage.missing.is_empty(),
        score: coverage.ratio().unwrap_or(1.0),
        message: format!("{}/{} requirements addressed", coverage.covered, coverage.total),
        details: HashMap::from([
            ("covered".to_owned(), coverage.covered.to_string()),
            ("total".to_owned(), coverage.total.to_string()),
            (
                "missing".to_owned(),
                coverage.missing.iter().map(|i| (i + 1).to_string()).collect::<Vec<_>>().join(","),
            ),
        ]),
    };
    let relevance = c.lint.relevance.map(|share| pb::CheckResult {
        check_type: "relevance".into(),
        passed: share >= RELEVANCE_WARNING,
        score: share,
        message: format!("mentions {:.0}% of the task's key terms", share * 100.0),
        details: HashMap::new(),
    });
    pb::CheckSuite {
        policy: Some(pb::PolicyResult {
            passed: c.policy.passed(),
            violations: c.policy.violations.clone(),
            message: c.policy.message(),
        }),
        lint: Some(pb::LintResult {
            passed: c.lint.passed(),
            error_count: narrow(c.lint.errors.len()),
            warning_count: narrow(c.lint.warnings.len()),
            errors: c.lint.errors.clone(),
            warnings: c.lint.warnings.clone(),
        }),
        dryrun: Some(dryrun),
        additional_checks: [Some(requirements), relevance].into_iter().flatten().collect(),
        all_passed: c.all_passed(),
    }
}

/// One ranked proposal as sent on the wire.
pub fn result(r: &RankedProposal) -> pb::DeliberationResult {
    pb::DeliberationResult {
        proposal: Some(pb::Proposal {
            author_id: r.agent.id.to_string(),
            author_role: r.agent.role.to_string(),
            content: r.proposal.content().to_owned(),
            created_at_ms: r.proposal.created_at_ms(),
            revisions: r.proposal.revisions().to_vec(),
            model_profile: r.agent.profile.to_string(),
        }),
        checks: Some(checks(r)),
        score: r.score.value(),
        rank: i32::try_from(r.rank).unwrap_or(i32::MAX),
        reviews: r.reviews.iter().map(review).collect(),
        check_score: r.check_score.value(),
        peer_score: r.peer_score,
        usage: Some(usage(&r.usage)),
        tests: Some(test_report(&r.checks.tests)),
        revision_tests: r.checks.revision_tests.iter().map(test_report).collect(),
    }
}

/// Response metadata; `tags` carry the numbers clients most often want in logs.
pub fn metadata(report: &DeliberationReport, now_ms: i64) -> pb::OrchestratorMetadata {
    let u = &report.outcome.usage;
    let tags = HashMap::from([
        ("role".to_owned(), report.role.to_string()),
        ("rounds".to_owned(), report.rounds.to_string()),
        ("agents".to_owned(), (report.outcome.results.len() + report.outcome.failures.len()).to_string()),
        ("failed_agents".to_owned(), report.outcome.failures.len().to_string()),
        ("prompt_tokens".to_owned(), u.prompt_tokens.to_string()),
        ("completion_tokens".to_owned(), u.completion_tokens.to_string()),
        ("llm_calls".to_owned(), u.calls.to_string()),
        ("llm_latency_ms".to_owned(), u.latency_ms.to_string()),
        ("calls_saved".to_owned(), report.outcome.calls_saved.to_string()),
        ("council_id".to_owned(), council_tag(report.council_id.as_ref())),
    ]);
    pb::OrchestratorMetadata {
        orchestrator_version: env!("CARGO_PKG_VERSION").to_owned(),
        timestamp_ms: now_ms,
        execution_id: report.task_id.to_string(),
        tags,
    }
}

/// The `council_id` tag: the standing council the agents were seated from, or `ad-hoc`.
pub(super) fn council_tag(id: Option<&CouncilId>) -> String {
    id.map_or_else(|| "ad-hoc".to_owned(), ToString::to_string)
}

/// A completed deliberation as a Deliberate response.
pub fn deliberate_response(report: &DeliberationReport, now_ms: i64) -> pb::DeliberateResponse {
    pb::DeliberateResponse {
        results: report.outcome.results.iter().map(result).collect(),
        winner_id: report.outcome.winner().agent.id.to_string(),
        duration_ms: wide(report.duration_ms),
        metadata: Some(metadata(report, now_ms)),
        failures: report.outcome.failures.iter().map(failure).collect(),
        task_id: report.task_id.to_string(),
        usage: Some(total_usage(&report.outcome.usage, report.outcome.calls_saved)),
        path: report.outcome.path.as_str().to_owned(),
        reviews: narrow(report.outcome.review_counts().0),
        graded_reviews: narrow(report.outcome.review_counts().1),
    }
}

/// A completed orchestration as an Orchestrate response.
pub fn orchestrate_response(report: &OrchestrationReport, now_ms: i64) -> pb::OrchestrateResponse {
    let d = &report.deliberation;
    let candidates: Vec<_> = d.outcome.results[..report.candidates].iter().map(result).collect();
    let mut metadata = metadata(d, now_ms);
    metadata.execution_id = report.execution_id.clone();
    metadata.tags.insert("selection_method".into(), report.method.as_str().into());
    pb::OrchestrateResponse {
        winner: candidates.get(report.winner).cloned(),
        candidates,
        execution_id: report.execution_id.clone(),
        duration_ms: wide(d.duration_ms),
        metadata: Some(metadata),
        selection_rationale: report.rationale.clone(),
        selection_method: report.method.as_str().to_owned(),
        failures: d.outcome.failures.iter().map(failure).collect(),
        usage: Some(total_usage(&(d.outcome.usage + report.selection_usage), d.outcome.calls_saved)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_reports_carry_counts_and_the_trimmed_report() {
        use orchestrator_domain::{CaseOutcome, TestCase, TestReport};
        let not_run = test_report(&TestOutcome::no_sandbox());
        assert!(!not_run.ran);
        assert_eq!(not_run.message, "not run: no sandbox");
        let ran = test_report(&TestOutcome::Ran(TestReport::from_cases(
            vec![
                TestCase::new("test_a", CaseOutcome::Passed, "", ""),
                TestCase::new("test_b", CaseOutcome::Failed, "assert 1 == 2", "line 3"),
            ],
            "",
        )));
        assert!(ran.ran);
        assert_eq!((ran.passed, ran.failed, ran.errored), (1, 1, 0));
        assert_eq!(ran.message, "1 passed, 1 failed, 0 errored");
        assert!(ran.report.contains("FAILED test_b: assert 1 == 2"), "{}", ran.report);
        assert_eq!(ran.cases[1].outcome, "failed");
        assert_eq!(total_usage(&TokenUsage::default(), 4).calls_saved, 4);
    }
}
