//! Requests → validated commands: every error names the request field, and validation goes
//! through the domain's fallible constructors, so a handler only ever sees a valid command.

use orchestrator_application::{ApplicationError, DeliberateCommand, OrchestrateCommand, Overrides};
use orchestrator_domain::{
    AcceptanceTests, Council, DomainError, EarlyStop, ProfileName, Role, Rounds, Strategy, Task,
    TaskConstraints, TaskId,
};

use super::invalid;
use crate::pb;

/// A client-chosen task id: empty means "generate one".
///
/// # Errors
/// Field `task_id` when it breaks [`TaskId`]'s rule (too long, a character outside
/// `[A-Za-z0-9._:-]`).
pub fn task_id(raw: &str) -> Result<Option<TaskId>, ApplicationError> {
    if raw.is_empty() {
        return Ok(None);
    }
    Ok(Some(TaskId::new(raw)?))
}

/// Required task id (for lookups).
///
/// # Errors
/// Field `task_id` when empty or malformed.
pub fn required_task_id(raw: &str) -> Result<TaskId, ApplicationError> {
    Ok(TaskId::new(raw)?)
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

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator_domain::{Role, Rounds};

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
