//! The arguments of the deliberation subcommands and the requests they make.
//!
//! Ranges are checked by clap, so `--agents -1` is refused before any connection, with the flag
//! and the allowed range named (negative numbers are values of these flags, never flags
//! themselves: `allow_negative_numbers` on each).

use std::collections::HashMap;

use clap::{Args, ValueEnum};
use orchestrator_api_grpc::pb;

/// What `deliberate` and `submit` send.
#[derive(Debug, Args)]
pub(crate) struct TaskArgs {
    /// The task for the council.
    pub(crate) task: String,
    /// DEV, QA, ARCHITECT, DEVOPS or DATA.
    #[arg(long, default_value = "DEV")]
    pub(crate) role: String,
    /// Agents in the council (1..=16; default 3).
    #[arg(long, allow_negative_numbers = true, value_parser = clap::value_parser!(i32).range(1..=16))]
    pub(crate) agents: Option<i32>,
    /// Peer-review rounds (0..=5; default 1).
    #[arg(long, allow_negative_numbers = true, value_parser = clap::value_parser!(i32).range(0..=5))]
    pub(crate) rounds: Option<i32>,
    /// A requirement every proposal must address (repeatable).
    #[arg(long = "requirement")]
    pub(crate) requirements: Vec<String>,
    /// How proposals are judged.
    #[arg(long, default_value = "")]
    pub(crate) rubric: String,
    /// Deadline in seconds (0: the server's default).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true, value_parser = clap::value_parser!(i32).range(0..=21600))]
    pub(crate) timeout: i32,
    /// Model profile per agent (repeatable; cycled over agents).
    #[arg(long = "profile")]
    pub(crate) profiles: Vec<String>,
    /// Client-chosen id (makes retries idempotent). Default: a new UUIDv7.
    #[arg(long)]
    pub(crate) task_id: Option<String>,
    /// Python acceptance tests every proposal's code is run against, in the server's sandbox
    /// (plain asserts and/or `test_*` functions, run after the proposal's code).
    #[arg(long = "tests", value_name = "FILE")]
    pub(crate) tests: Option<std::path::PathBuf>,
    /// When review rounds end early: off, tests (once a proposal passes every test: no more
    /// calls) or tests_and_reviews. Default: the server's.
    #[arg(long, value_parser = ["off", "tests", "tests_and_reviews"])]
    pub(crate) early_stop: Option<String>,
    /// council, or cascade (one agent first; the rest only if its answer fails the tests).
    /// Default: the server's.
    #[arg(long, value_parser = ["council", "cascade"])]
    pub(crate) strategy: Option<String>,
    /// No progress on stderr, only the task id and the result.
    #[arg(long, short)]
    pub(crate) quiet: bool,
    #[command(flatten)]
    pub(crate) show: ShowArgs,
}

impl TaskArgs {
    /// The task id to send: the user's, or a new time-ordered UUID, chosen here so it can be
    /// printed before the server answers.
    pub(crate) fn task_id(&self) -> String {
        self.task_id.clone().unwrap_or_else(|| uuid::Uuid::now_v7().to_string())
    }

    /// The request under `task_id`; reads the `--tests` file.
    ///
    /// # Errors
    /// The `--tests` file cannot be read.
    pub(crate) fn request(&self, task_id: String) -> anyhow::Result<pb::DeliberateRequest> {
        let acceptance_tests = match &self.tests {
            None => None,
            Some(path) => Some(pb::AcceptanceTests {
                language: "python".to_owned(),
                code: std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("cannot read --tests {}: {e}", path.display()))?,
            }),
        };
        Ok(pb::DeliberateRequest {
            task_description: self.task.clone(),
            role: self.role.clone(),
            constraints: Some(pb::TaskConstraints {
                rubric: self.rubric.clone(),
                requirements: self.requirements.clone(),
                metadata: HashMap::new(),
                max_iterations: 0,
                timeout_seconds: self.timeout,
                acceptance_tests,
                early_stop: self.early_stop.clone().unwrap_or_default(),
                strategy: self.strategy.clone().unwrap_or_default(),
            }),
            rounds: self.rounds,
            num_agents: self.agents,
            task_id,
            agent_profiles: self.profiles.clone(),
        })
    }
}

/// How much of a result to print.
#[derive(Debug, Clone, Copy, Args)]
pub(crate) struct ShowArgs {
    /// `winner`: the ranking and the winner in full; `all`: every proposal in full.
    #[arg(long, value_enum, default_value_t = Show::Winner)]
    pub(crate) show: Show,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Show {
    Winner,
    All,
}

/// `list`'s filters and paging.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Deliberations per page (1..=100).
    #[arg(long, default_value_t = 20, allow_negative_numbers = true, value_parser = clap::value_parser!(i32).range(1..=100))]
    pub(crate) limit: i32,
    /// Continue after a previous page (printed at its end).
    #[arg(long, default_value = "")]
    pub(crate) page_token: String,
    /// Only this role.
    #[arg(long)]
    pub(crate) role: Option<String>,
    /// Only this status.
    #[arg(long, value_enum)]
    pub(crate) status: Option<StatusFilter>,
}

/// The statuses `list --status` takes, as people write them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum StatusFilter {
    Pending,
    #[value(name = "in-progress", alias = "in_progress", alias = "running")]
    InProgress,
    Completed,
    Failed,
    #[value(alias = "timed-out")]
    Timeout,
    #[value(alias = "canceled")]
    Cancelled,
    Interrupted,
}

impl StatusFilter {
    pub(crate) fn wire(self) -> pb::DeliberationStatus {
        match self {
            Self::Pending => pb::DeliberationStatus::Pending,
            Self::InProgress => pb::DeliberationStatus::InProgress,
            Self::Completed => pb::DeliberationStatus::Completed,
            Self::Failed => pb::DeliberationStatus::Failed,
            Self::Timeout => pb::DeliberationStatus::Timeout,
            Self::Cancelled => pb::DeliberationStatus::Cancelled,
            Self::Interrupted => pb::DeliberationStatus::Interrupted,
        }
    }
}

impl ListArgs {
    pub(crate) fn request(&self) -> pb::ListDeliberationsRequest {
        pb::ListDeliberationsRequest {
            page_size: self.limit,
            page_token: self.page_token.clone(),
            role_filter: self.role.clone().unwrap_or_default(),
            status_filter: self.status.map_or(pb::DeliberationStatus::Unknown, StatusFilter::wire).into(),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base_args() -> TaskArgs {
        TaskArgs {
            task: "t".into(),
            role: "DEV".into(),
            agents: None,
            rounds: None,
            requirements: vec![],
            rubric: String::new(),
            timeout: 0,
            profiles: vec![],
            task_id: None,
            tests: None,
            early_stop: None,
            strategy: None,
            quiet: false,
            show: ShowArgs { show: Show::Winner },
        }
    }

    #[test]
    fn generated_task_ids_are_uuid_v7_and_a_given_one_is_kept() {
        let args = base_args();
        let id = uuid::Uuid::parse_str(&args.task_id()).unwrap();
        assert_eq!(id.get_version_num(), 7);
        let given = TaskArgs { task_id: Some("pg16".into()), ..args };
        assert_eq!(given.request(given.task_id()).unwrap().task_id, "pg16");
    }

    #[test]
    fn the_tests_flag_sends_the_file_as_python_acceptance_tests() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tests.py");
        std::fs::write(&path, "assert add(1, 2) == 3\n").unwrap();
        let args = TaskArgs { tests: Some(path), ..base_args() };
        let tests = args.request("t".into()).unwrap().constraints.unwrap().acceptance_tests.unwrap();
        assert_eq!((tests.language.as_str(), tests.code.as_str()), ("python", "assert add(1, 2) == 3\n"));

        let missing = TaskArgs { tests: Some("/no/such/tests.py".into()), ..base_args() };
        assert!(
            missing
                .request("t".into())
                .unwrap_err()
                .to_string()
                .starts_with("cannot read --tests /no/such/tests.py")
        );
    }
}
