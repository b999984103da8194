//! Requests → validated commands, results → messages.
//!
//! Validation happens here, through the domain's fallible constructors, so a handler only
//! ever sees valid commands; every error names the request field.

use std::collections::{BTreeMap, HashMap};

use orchestrator_application::ports::{DeliberationRecord, ListQuery};
use orchestrator_application::{
    ApplicationError, CountersSnapshot, DeliberateCommand, DeliberationReport, OrchestrateCommand,
    OrchestrationReport, Overrides, StatusReport, Submission,
};
use orchestrator_domain::{
    AcceptanceTests, AgentFailure, Council, CouncilId, DeliberationStatus, DomainError, DryRunOutcome,
    EarlyStop, ProfileName, RankedProposal, Review, Role, Rounds, Strategy, Task, TaskConstraints,
    TestOutcome, TokenUsage, excerpt,
};

use orchestrator_domain::checks::RELEVANCE_WARNING;

use crate::pb;

pub mod councils;
pub mod watch;

/// Longest accepted client task id, in bytes.
pub const MAX_TASK_ID_LEN: usize = 128;

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ApplicationError {
    ApplicationError::InvalidArgument { field: field.into(), reason: reason.into() }
}

/// A client-chosen task id: empty means "generate one".
///
/// # Errors
/// Field `task_id` when longer than 128 bytes or outside `[A-Za-z0-9._:-]`.
pub fn task_id(raw: &str) -> Result<Option<String>, ApplicationError> {
    if raw.is_empty() {
        return Ok(None);
    }
    if raw.len() > MAX_TASK_ID_LEN {
        return Err(invalid(
            "task_id",
            format!("must be at most {MAX_TASK_ID_LEN} bytes, got {}", raw.len()),
        ));
    }
    if let Some(bad) =
        raw.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')))
    {
        return Err(invalid(
            "task_id",
            format!("invalid character {bad:?}; allowed are ASCII letters, digits, '-', '_', '.', ':'"),
        ));
    }
    Ok(Some(raw.to_owned()))
}

/// Required task id (for lookups).
///
/// # Errors
/// Field `task_id` when empty or malformed.
pub fn required_task_id(raw: &str) -> Result<String, ApplicationError> {
    task_id(raw)?.ok_or_else(|| invalid("task_id", "is required"))
}

/// An optional named choice of the constraints: empty means "the server's default"; an
/// unknown name is refused naming `constraints.<field>`.
fn choice<T>(
    raw: &str,
    field: &str,
    parse: impl Fn(&str) -> Result<T, DomainError>,
) -> Result<Option<T>, DomainError> {
    if raw.is_empty() {
        return Ok(None);
    }
    parse(raw).map(Some).map_err(|error| match error {
        DomainError::Invalid { reason, .. } => DomainError::invalid(format!("constraints.{field}"), reason),
        other => other,
    })
}

fn constraints(raw: Option<pb::TaskConstraints>) -> Result<TaskConstraints, DomainError> {
    let raw = raw.unwrap_or_default();
    let early_stop = choice(&raw.early_stop, "early_stop", EarlyStop::parse)?;
    let strategy = choice(&raw.strategy, "strategy", Strategy::parse)?;
    let constraints = TaskConstraints::new(
        raw.rubric,
        raw.requirements,
        raw.metadata.into_iter().collect(),
        i64::from(raw.timeout_seconds),
        i64::from(raw.max_iterations),
    )?
    .with_early_stop(early_stop)
    .with_strategy(strategy);
    match raw.acceptance_tests {
        None => Ok(constraints),
        Some(tests) => {
            Ok(constraints.with_acceptance_tests(AcceptanceTests::new(&tests.language, tests.code)?))
        }
    }
}

/// Unset or 0 means the default council size; the range itself is the domain's rule.
fn num_agents(raw: Option<i32>) -> Result<usize, ApplicationError> {
    match raw {
        None | Some(0) => Ok(Council::DEFAULT_AGENTS),
        Some(n) => Ok(Council::validate_size(i64::from(n))?),
    }
}

fn profiles(raw: Vec<String>) -> Result<Vec<ProfileName>, ApplicationError> {
    raw.into_iter()
        .enumerate()
        .map(|(i, name)| {
            ProfileName::new(name).map_err(|e| match e {
                DomainError::Invalid { reason, .. } => invalid(format!("agent_profiles[{i}]"), reason),
                other => other.into(),
            })
        })
        .collect()
}

struct Fields {
    task_id: String,
    description: String,
    role: String,
    constraints: Option<pb::TaskConstraints>,
    rounds: Option<i32>,
    num_agents: Option<i32>,
    profiles: Vec<String>,
}

fn command(f: Fields) -> Result<DeliberateCommand, ApplicationError> {
    let task = Task::new(f.description, constraints(f.constraints)?)?;
    let role = Role::parse(&f.role)?;
    let rounds = match f.rounds {
        None => Rounds::DEFAULT,
        Some(r) => Rounds::new(i64::from(r))?,
    };
    let overrides = Overrides {
        council: f.num_agents.is_some_and(|n| n != 0) || !f.profiles.is_empty(),
        rounds: f.rounds.is_some(),
    };
    Ok(DeliberateCommand {
        task_id: task_id(&f.task_id)?,
        role,
        task,
        rounds,
        num_agents: num_agents(f.num_agents)?,
        profiles: profiles(f.profiles)?,
        overrides,
        story_id: None,
    })
}

impl TryFrom<pb::DeliberateRequest> for DeliberateCommand {
    type Error = ApplicationError;

    fn try_from(r: pb::DeliberateRequest) -> Result<Self, Self::Error> {
        command(Fields {
            task_id: r.task_id,
            description: r.task_description,
            role: r.role,
            constraints: r.constraints,
            rounds: r.rounds,
            num_agents: r.num_agents,
            profiles: r.agent_profiles,
        })
    }
}

impl TryFrom<pb::OrchestrateRequest> for OrchestrateCommand {
    type Error = ApplicationError;

    /// Rounds come from `options.deliberation_rounds` when positive; when 0, peer review
    /// runs one round if `options.enable_peer_review` is set or no options were sent at all.
    fn try_from(r: pb::OrchestrateRequest) -> Result<Self, Self::Error> {
        let rounds = match &r.options {
            None => None,
            Some(o) if o.deliberation_rounds < 0 => {
                return Err(invalid(
                    "options.deliberation_rounds",
                    format!("must be within 0..={}, got {}", Rounds::MAX, o.deliberation_rounds),
                ));
            }
            Some(o) if o.deliberation_rounds > 0 => Some(o.deliberation_rounds),
            Some(o) => Some(i32::from(o.enable_peer_review)),
        };
        let architect_selection = r.options.as_ref().is_some_and(|o| o.enable_architect_selection);
        let deliberate = command(Fields {
            task_id: r.task_id,
            description: r.task_description,
            role: r.role,
            constraints: r.constraints,
            rounds,
            num_agents: r.num_agents,
            profiles: r.agent_profiles,
        })
        .map_err(|e| match e {
            ApplicationError::InvalidArgument { field, reason } if field == "rounds" => {
                invalid("options.deliberation_rounds", reason)
            }
            other => other,
        })?;
        Ok(OrchestrateCommand { deliberate, architect_selection })
    }
}

/// A counter as the wire's int64 (saturating; counters never reach it).
fn wide(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

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

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
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
            error_count: count(c.lint.errors.len()),
            warning_count: count(c.lint.warnings.len()),
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
        execution_id: report.task_id.clone(),
        tags,
    }
}

/// The `council_id` tag: the standing council the agents were seated from, or `ad-hoc`.
fn council_tag(id: Option<&CouncilId>) -> String {
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
        task_id: report.task_id.clone(),
        usage: Some(total_usage(&report.outcome.usage, report.outcome.calls_saved)),
        path: report.outcome.path.as_str().to_owned(),
        reviews: narrow(report.outcome.review_counts().0),
        graded_reviews: narrow(report.outcome.review_counts().1),
    }
}

/// A count as an `int32` field (saturating; counts here are small).
fn narrow(count: usize) -> i32 {
    i32::try_from(count).unwrap_or(i32::MAX)
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

fn per_role(counts: &BTreeMap<Role, u64>) -> HashMap<String, i64> {
    counts.iter().map(|(role, n)| (role.to_string(), wide(*n))).collect()
}

/// GetStatus as sent on the wire; `stats` only when they were asked for.
pub fn status_response(report: &StatusReport) -> pb::GetStatusResponse {
    let stats = report.stats.as_ref().map(|s| pb::OrchestratorStats {
        total_deliberations: wide(s.total_deliberations),
        total_orchestrations: wide(s.total_orchestrations),
        avg_deliberation_time_ms: s.avg_deliberation_ms,
        active_councils: wide(s.active),
        role_counts: per_role(&s.per_role),
        failed_deliberations: wide(s.failed_deliberations),
    });
    pb::GetStatusResponse {
        status: if report.degraded.is_some() { "DEGRADED" } else { "SERVING" }.to_owned(),
        uptime_seconds: wide(report.uptime.as_secs()),
        stats,
        llm_configured: report.llm_configured,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        degraded_reason: report.degraded.clone().unwrap_or_default(),
        backends: report
            .backends
            .iter()
            .map(|probe| pb::BackendProbe {
                profile: probe.profile.clone(),
                reachable: probe.reachable,
                model_listed: probe.model_listed,
                ok: probe.ok,
                message: probe.message.clone(),
            })
            .collect(),
        events: report.events.as_ref().map(|events| pb::EventsStatus {
            connected: events.connected,
            outbox_depth: wide(events.outbox_depth),
            problem: events.problem.clone().unwrap_or_default(),
        }),
    }
}

/// GetMetrics as sent on the wire, from this process's counters; the standing councils'
/// records and health are added by [`councils::add_registry`].
pub fn metrics_response(s: &CountersSnapshot) -> pb::GetMetricsResponse {
    let (p50, p95, p99) = s.latency_percentiles_ms;
    pb::GetMetricsResponse {
        performance: Some(pb::PerformanceMetrics {
            avg_deliberation_ms: s.avg_deliberation_ms,
            avg_orchestration_ms: s.avg_orchestration_ms,
            p50_latency_ms: p50,
            p95_latency_ms: p95,
            p99_latency_ms: p99,
        }),
        agents: Some(pb::AgentMetrics {
            total_agents: wide(s.agents_seated),
            active_agents: wide(s.active_agents),
            agents_per_role: per_role(&s.agents_per_role),
            avg_agent_response_time_ms: s.avg_agent_call_ms,
            per_agent: Vec::new(),
        }),
        councils: Some(pb::CouncilMetrics {
            total_councils: wide(s.councils_seated),
            active_councils: wide(s.active),
            health_per_council: HashMap::new(),
        }),
    }
}

/// Page of ListDeliberations when the request sets none; the largest is the store's
/// [`ListQuery::MAX_LIMIT`].
pub const DEFAULT_PAGE_SIZE: u32 = 20;

/// Status on the wire.
pub fn wire_status(s: DeliberationStatus) -> pb::DeliberationStatus {
    match s {
        DeliberationStatus::Pending => pb::DeliberationStatus::Pending,
        DeliberationStatus::InProgress => pb::DeliberationStatus::InProgress,
        DeliberationStatus::Completed => pb::DeliberationStatus::Completed,
        DeliberationStatus::Failed => pb::DeliberationStatus::Failed,
        DeliberationStatus::Timeout => pb::DeliberationStatus::Timeout,
        DeliberationStatus::Cancelled => pb::DeliberationStatus::Cancelled,
        DeliberationStatus::Interrupted => pb::DeliberationStatus::Interrupted,
    }
}

fn status_filter(raw: i32) -> Result<Option<DeliberationStatus>, ApplicationError> {
    let wire = pb::DeliberationStatus::try_from(raw)
        .map_err(|_| invalid("status_filter", format!("unknown status value {raw}")))?;
    Ok(DeliberationStatus::ALL.into_iter().find(|s| wire_status(*s) == wire))
}

/// ListDeliberations paging and filters.
///
/// # Errors
/// Field `page_size`, `role_filter` or `status_filter` when invalid.
pub fn list_query(r: pb::ListDeliberationsRequest) -> Result<ListQuery, ApplicationError> {
    let limit = match r.page_size {
        0 => DEFAULT_PAGE_SIZE,
        n if n < 0 => return Err(invalid("page_size", format!("must not be negative, got {n}"))),
        n => (n as u32).min(ListQuery::MAX_LIMIT),
    };
    let role = match r.role_filter.trim() {
        "" => None,
        raw => Some(Role::parse(raw).map_err(|e| match e {
            DomainError::Invalid { reason, .. } => invalid("role_filter", reason),
            other => other.into(),
        })?),
    };
    let bound = |v: i64| (v > 0).then_some(v);
    Ok(ListQuery {
        role,
        status: status_filter(r.status_filter)?,
        created_after_ms: bound(r.created_after_ms),
        created_before_ms: bound(r.created_before_ms),
        principal: None,
        limit,
        cursor: (!r.page_token.is_empty()).then_some(r.page_token),
    })
}

/// A stored deliberation as a GetDeliberationResult response.
pub fn record_response(record: &DeliberationRecord, now_ms: i64) -> pb::GetDeliberationResultResponse {
    let (results, failures, usage_total, calls_saved) = match (&record.outcome, &record.progress) {
        (Some(outcome), _) => (
            outcome.results.iter().map(result).collect(),
            outcome.failures.clone(),
            outcome.usage,
            outcome.calls_saved,
        ),
        (None, Some(progress)) => (Vec::new(), progress.failures().to_vec(), progress.total_usage(), 0),
        (None, None) => (Vec::new(), Vec::new(), TokenUsage::default(), 0),
    };
    let mut tags = HashMap::from([
        ("role".to_owned(), record.request.role.to_string()),
        ("num_agents".to_owned(), record.request.num_agents.to_string()),
        ("rounds".to_owned(), record.request.rounds.to_string()),
        ("council_id".to_owned(), council_tag(record.council_id())),
    ]);
    // A completed deliberation's last saved phase is the one before its completion (which
    // stores the outcome, not the finished aggregate).
    let phase = match (record.status, &record.progress) {
        (DeliberationStatus::Completed, _) => Some(orchestrator_domain::Phase::Completed),
        (_, progress) => progress.as_ref().map(orchestrator_domain::Deliberation::phase),
    };
    if let Some(phase) = phase {
        tags.insert("phase".to_owned(), phase.to_string());
    }
    pb::GetDeliberationResultResponse {
        task_id: record.request.task_id.clone(),
        status: wire_status(record.status).into(),
        results,
        winner_id: record.winner_id.clone().unwrap_or_default(),
        duration_ms: record.duration_ms.unwrap_or_default(),
        error_message: record.error.clone().unwrap_or_default(),
        metadata: Some(pb::OrchestratorMetadata {
            orchestrator_version: env!("CARGO_PKG_VERSION").to_owned(),
            timestamp_ms: now_ms,
            execution_id: record.request.task_id.clone(),
            tags,
        }),
        failures: failures.iter().map(failure).collect(),
        usage: Some(total_usage(&usage_total, calls_saved)),
        role: record.request.role.to_string(),
        created_at_ms: record.request.created_at_ms,
        partial: record.status == DeliberationStatus::Timeout && record.outcome.is_some(),
        selection_method: record.selection.as_ref().map(|s| s.method.clone()).unwrap_or_default(),
        selection_rationale: record.selection.as_ref().map(|s| s.rationale.clone()).unwrap_or_default(),
        path: record.outcome.as_ref().map(|o| o.path.as_str().to_owned()).unwrap_or_default(),
        reviews: narrow(record.outcome.as_ref().map_or(0, |o| o.review_counts().0)),
        graded_reviews: narrow(record.outcome.as_ref().map_or(0, |o| o.review_counts().1)),
    }
}

/// One line of ListDeliberations.
pub fn summary(record: &DeliberationRecord) -> pb::DeliberationSummary {
    pb::DeliberationSummary {
        task_id: record.request.task_id.clone(),
        role: record.request.role.to_string(),
        status: wire_status(record.status).into(),
        created_at_ms: record.request.created_at_ms,
        duration_ms: record.duration_ms.unwrap_or_default(),
        winner_id: record.winner_id.clone().unwrap_or_default(),
        task_description: excerpt(record.request.task.description(), 200),
        error_message: record.error.clone().unwrap_or_default(),
    }
}

/// A submission as a SubmitDeliberation response.
pub fn submission(s: &Submission) -> pb::SubmitDeliberationResponse {
    pb::SubmitDeliberationResponse {
        task_id: s.task_id.clone(),
        status: wire_status(s.status).into(),
        created: s.created,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> pb::DeliberateRequest {
        pb::DeliberateRequest {
            task_description: "Write a parser".into(),
            role: "dev".into(),
            ..Default::default()
        }
    }

    fn error(r: pb::DeliberateRequest) -> String {
        DeliberateCommand::try_from(r).unwrap_err().to_string()
    }

    #[test]
    fn defaults_apply_when_fields_are_unset() {
        let c = DeliberateCommand::try_from(request()).unwrap();
        assert_eq!(c.role, Role::Dev);
        assert_eq!(c.num_agents, 3);
        assert_eq!(c.rounds, Rounds::DEFAULT);
        assert_eq!(c.task_id, None);
        assert!(c.profiles.is_empty());
    }

    #[test]
    fn explicit_zero_rounds_differs_from_unset() {
        let c = DeliberateCommand::try_from(pb::DeliberateRequest { rounds: Some(0), ..request() }).unwrap();
        assert_eq!(c.rounds.get(), 0);
        let c =
            DeliberateCommand::try_from(pb::DeliberateRequest { num_agents: Some(0), ..request() }).unwrap();
        assert_eq!(c.num_agents, 3);
    }

    #[test]
    fn each_bad_field_is_named() {
        assert_eq!(
            error(pb::DeliberateRequest { role: "FOO".into(), ..request() }),
            "role: unknown role \"FOO\"; expected one of DEV, QA, ARCHITECT, DEVOPS, DATA"
        );
        assert_eq!(
            error(pb::DeliberateRequest { task_description: " ".into(), ..request() }),
            "task_description: must not be empty"
        );
        assert_eq!(
            error(pb::DeliberateRequest { num_agents: Some(17), ..request() }),
            "num_agents: must be within 1..=16, got 17"
        );
        assert_eq!(
            error(pb::DeliberateRequest { num_agents: Some(-1), ..request() }),
            "num_agents: must be within 1..=16, got -1"
        );
        assert_eq!(
            error(pb::DeliberateRequest { rounds: Some(6), ..request() }),
            "rounds: must be within 0..=5, got 6"
        );
        assert_eq!(
            error(pb::DeliberateRequest { rounds: Some(-1), ..request() }),
            "rounds: must be within 0..=5, got -1"
        );
        assert!(
            error(pb::DeliberateRequest { task_id: "a b".into(), ..request() })
                .starts_with("task_id: invalid character ' '")
        );
        assert!(
            error(pb::DeliberateRequest { agent_profiles: vec!["ok".into(), "".into()], ..request() })
                .starts_with("agent_profiles[1]: must not be empty")
        );
        let constraints = pb::TaskConstraints { timeout_seconds: -5, ..Default::default() };
        assert_eq!(
            error(pb::DeliberateRequest { constraints: Some(constraints), ..request() }),
            "constraints.timeout_seconds: must not be negative, got -5"
        );
    }

    #[test]
    fn acceptance_tests_reach_the_task_and_bad_ones_name_their_field() {
        let with = |language: &str, code: &str| pb::DeliberateRequest {
            constraints: Some(pb::TaskConstraints {
                acceptance_tests: Some(pb::AcceptanceTests { language: language.into(), code: code.into() }),
                ..Default::default()
            }),
            ..request()
        };
        let c =
            DeliberateCommand::try_from(with("python", "from solution import f\nassert f() == 1\n")).unwrap();
        let tests = c.task.constraints().acceptance_tests().unwrap();
        assert_eq!(tests.language(), orchestrator_domain::TestLanguage::Python);
        assert_eq!(tests.count(), 1);
        assert!(
            DeliberateCommand::try_from(request()).unwrap().task.constraints().acceptance_tests().is_none()
        );
        assert!(
            error(with("", "assert True")).starts_with("constraints.acceptance_tests.language: unsupported"),
            "an empty language is not python"
        );
        assert_eq!(error(with("python", "")), "constraints.acceptance_tests.code: must not be blank");
        assert!(
            error(with("python", &"assert True\n".repeat(10_000)))
                .starts_with("constraints.acceptance_tests.code: must be at most 65536 bytes")
        );
    }

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

    #[test]
    fn list_query_defaults_clamps_and_validates() {
        let q = list_query(pb::ListDeliberationsRequest::default()).unwrap();
        assert_eq!((q.limit, q.role, q.status, q.cursor), (20, None, None, None));
        let q = list_query(pb::ListDeliberationsRequest {
            page_size: 500,
            role_filter: "qa".into(),
            status_filter: pb::DeliberationStatus::Completed.into(),
            created_after_ms: 10,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            (q.limit, q.role, q.status, q.created_after_ms),
            (100, Some(Role::Qa), Some(DeliberationStatus::Completed), Some(10))
        );
        let err =
            list_query(pb::ListDeliberationsRequest { page_size: -1, ..Default::default() }).unwrap_err();
        assert_eq!(err.to_string(), "page_size: must not be negative, got -1");
        let err =
            list_query(pb::ListDeliberationsRequest { role_filter: "CEO".into(), ..Default::default() })
                .unwrap_err();
        assert!(err.to_string().starts_with("role_filter: unknown role \"CEO\""), "{err}");
        let err =
            list_query(pb::ListDeliberationsRequest { status_filter: 42, ..Default::default() }).unwrap_err();
        assert_eq!(err.to_string(), "status_filter: unknown status value 42");
    }

    #[test]
    fn every_status_has_its_own_wire_value() {
        let wire: std::collections::BTreeSet<i32> =
            DeliberationStatus::ALL.iter().map(|s| wire_status(*s) as i32).collect();
        assert_eq!(wire.len(), DeliberationStatus::ALL.len());
        assert!(!wire.contains(&0), "UNKNOWN is never sent");
    }

    #[test]
    fn orchestrate_rounds_follow_the_options() {
        let base =
            pb::OrchestrateRequest { task_description: "x".into(), role: "QA".into(), ..Default::default() };
        let rounds = |options: Option<pb::OrchestratorOptions>| {
            OrchestrateCommand::try_from(pb::OrchestrateRequest { options, ..base.clone() })
                .map(|c| c.deliberate.rounds.get())
        };
        assert_eq!(rounds(None).unwrap(), 1);
        assert_eq!(
            rounds(Some(pb::OrchestratorOptions { enable_peer_review: true, ..Default::default() })).unwrap(),
            1
        );
        assert_eq!(rounds(Some(pb::OrchestratorOptions::default())).unwrap(), 0);
        assert_eq!(
            rounds(Some(pb::OrchestratorOptions { deliberation_rounds: 3, ..Default::default() })).unwrap(),
            3
        );
        assert_eq!(
            rounds(Some(pb::OrchestratorOptions { deliberation_rounds: 9, ..Default::default() }))
                .unwrap_err()
                .to_string(),
            "options.deliberation_rounds: must be within 0..=5, got 9"
        );
    }
}
