//! Requests → validated commands, results → messages.
//!
//! Validation happens here, through the domain's fallible constructors, so a handler only
//! ever sees valid commands; every error names the request field.

use std::collections::HashMap;

use orchestrator_application::{
    ApplicationError, DeliberateCommand, DeliberationReport, OrchestrateCommand, OrchestrationReport,
};
use orchestrator_domain::{
    AgentFailure, Council, DomainError, DryRunOutcome, ProfileName, RankedProposal, Review, Role, Rounds,
    Task, TaskConstraints, TokenUsage,
};

use crate::pb;

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

fn constraints(raw: Option<pb::TaskConstraints>) -> Result<TaskConstraints, DomainError> {
    let raw = raw.unwrap_or_default();
    TaskConstraints::new(
        raw.rubric,
        raw.requirements,
        raw.metadata.into_iter().collect(),
        i64::from(raw.timeout_seconds),
        i64::from(raw.max_iterations),
    )
}

fn num_agents(raw: Option<i32>) -> Result<usize, ApplicationError> {
    match raw {
        None | Some(0) => Ok(Council::DEFAULT_AGENTS),
        Some(n) if n < 0 || n as usize > Council::MAX_AGENTS => Err(invalid(
            "num_agents",
            format!("must be within 1..={} (0 = default 3), got {n}", Council::MAX_AGENTS),
        )),
        Some(n) => Ok(n as usize),
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
    Ok(DeliberateCommand {
        task_id: task_id(&f.task_id)?,
        role,
        task,
        rounds,
        num_agents: num_agents(f.num_agents)?,
        profiles: profiles(f.profiles)?,
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

/// Token usage as sent on the wire.
pub fn usage(u: &TokenUsage) -> pb::TokenUsage {
    let i = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    pb::TokenUsage {
        prompt_tokens: i(u.prompt_tokens),
        completion_tokens: i(u.completion_tokens),
        calls: i(u.calls),
        latency_ms: i(u.latency_ms),
    }
}

/// An agent failure as sent on the wire.
pub fn failure(f: &AgentFailure) -> pb::AgentFailure {
    pb::AgentFailure {
        agent_id: f.agent.to_string(),
        phase: f.phase.clone(),
        reason: f.reason.clone(),
        round: i32::try_from(f.round).unwrap_or(i32::MAX),
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
        additional_checks: vec![requirements],
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
    ]);
    pb::OrchestratorMetadata {
        orchestrator_version: env!("CARGO_PKG_VERSION").to_owned(),
        timestamp_ms: now_ms,
        execution_id: report.task_id.clone(),
        tags,
    }
}

fn millis(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// A completed deliberation as a Deliberate response.
pub fn deliberate_response(report: &DeliberationReport, now_ms: i64) -> pb::DeliberateResponse {
    pb::DeliberateResponse {
        results: report.outcome.results.iter().map(result).collect(),
        winner_id: report.outcome.winner().agent.id.to_string(),
        duration_ms: millis(report.duration_ms),
        metadata: Some(metadata(report, now_ms)),
        failures: report.outcome.failures.iter().map(failure).collect(),
        task_id: report.task_id.clone(),
        usage: Some(usage(&report.outcome.usage)),
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
        duration_ms: millis(d.duration_ms),
        metadata: Some(metadata),
        selection_rationale: report.rationale.clone(),
        selection_method: report.method.as_str().to_owned(),
        failures: d.outcome.failures.iter().map(failure).collect(),
        usage: Some(usage(&(d.outcome.usage + report.selection_usage))),
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
            "num_agents: must be within 1..=16 (0 = default 3), got 17"
        );
        assert_eq!(
            error(pb::DeliberateRequest { num_agents: Some(-1), ..request() }),
            "num_agents: must be within 1..=16 (0 = default 3), got -1"
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
