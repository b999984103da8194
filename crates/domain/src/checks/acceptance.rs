//! The outcome of running a proposal's code against the task's acceptance tests.
//!
//! Execution happens outside the domain (in a sandbox); what comes back is data from untrusted
//! code, so every text in it is trimmed to a bound before it reaches a prompt or the wire.

use serde::{Deserialize, Serialize};

use crate::excerpt::excerpt;

/// Longest assertion message kept per test case, in characters.
pub const MAX_CASE_MESSAGE_CHARS: usize = 300;
/// Longest traceback kept per test case, in characters (its last lines are kept).
pub const MAX_TRACEBACK_CHARS: usize = 600;
/// Longest whole report (as shown to agents and clients), in characters.
pub const MAX_REPORT_CHARS: usize = 4000;
/// Most test cases kept in a report.
pub const MAX_CASES: usize = 200;

/// How one test ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CaseOutcome {
    Passed,
    /// An assertion did not hold.
    Failed,
    /// The test (or loading the solution) raised something other than an assertion error.
    Errored,
}

impl CaseOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Passed => "passed",
            Self::Failed => "failed",
            Self::Errored => "errored",
        }
    }
}

/// One test: a `test_*` function, a top-level assert, or loading the solution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestCase {
    pub name: String,
    pub outcome: CaseOutcome,
    /// The assertion or exception message (trimmed); empty when passed.
    pub message: String,
    /// The last lines of the traceback (trimmed); empty when passed.
    pub traceback: String,
}

impl TestCase {
    /// A case with its texts cut to their bounds.
    pub fn new(name: &str, outcome: CaseOutcome, message: &str, traceback: &str) -> Self {
        Self {
            name: excerpt(name.trim(), 120),
            outcome,
            message: excerpt(message.trim(), MAX_CASE_MESSAGE_CHARS),
            traceback: tail(traceback.trim_end(), MAX_TRACEBACK_CHARS),
        }
    }
}

/// What one run of the tests reported.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TestReport {
    pub passed: u32,
    pub failed: u32,
    pub errored: u32,
    /// Every case, in the order run (at most [`MAX_CASES`]).
    pub cases: Vec<TestCase>,
    /// Trimmed output the harness printed besides its report (stderr of a crash, prints).
    pub output: String,
}

impl TestReport {
    /// A report counting `cases` (kept up to [`MAX_CASES`]).
    pub fn from_cases(mut cases: Vec<TestCase>, output: &str) -> Self {
        let count = |o: CaseOutcome| {
            u32::try_from(cases.iter().filter(|c| c.outcome == o).count()).unwrap_or(u32::MAX)
        };
        let (passed, failed, errored) =
            (count(CaseOutcome::Passed), count(CaseOutcome::Failed), count(CaseOutcome::Errored));
        cases.truncate(MAX_CASES);
        Self { passed, failed, errored, cases, output: tail(output.trim_end(), MAX_TRACEBACK_CHARS) }
    }

    pub fn total(&self) -> u32 {
        self.passed.saturating_add(self.failed).saturating_add(self.errored)
    }

    /// Passed over all tests, `None` when nothing ran.
    pub fn pass_rate(&self) -> Option<f64> {
        (self.total() > 0).then(|| f64::from(self.passed) / f64::from(self.total()))
    }

    /// "3 passed, 1 failed, 0 errored".
    pub fn summary(&self) -> String {
        format!("{} passed, {} failed, {} errored", self.passed, self.failed, self.errored)
    }

    /// The cases that did not pass.
    pub fn failures(&self) -> impl Iterator<Item = &TestCase> {
        self.cases.iter().filter(|c| c.outcome != CaseOutcome::Passed)
    }

    /// The human-readable report: summary, then each failing case with its message and
    /// traceback, cut to [`MAX_REPORT_CHARS`].
    pub fn render(&self) -> String {
        let mut text = self.summary();
        for case in self.failures() {
            text.push_str(&format!("\n{} {}", case.outcome.as_str().to_uppercase(), case.name));
            if !case.message.is_empty() {
                text.push_str(&format!(": {}", case.message));
            }
            if !case.traceback.is_empty() {
                for line in case.traceback.lines() {
                    text.push_str("\n    ");
                    text.push_str(line);
                }
            }
        }
        if !self.output.is_empty() && self.failures().next().is_some() {
            text.push_str("\noutput:\n");
            text.push_str(&self.output);
        }
        excerpt(&text, MAX_REPORT_CHARS)
    }
}

/// Whether and how a proposal's code ran against the acceptance tests.
///
/// `NotRun` is neither a pass nor a failure: no tests, no sandbox, a runner error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TestOutcome {
    NotRun { reason: String },
    Ran(TestReport),
}

impl Default for TestOutcome {
    fn default() -> Self {
        Self::no_tests()
    }
}

impl TestOutcome {
    /// The task carries no acceptance tests.
    pub fn no_tests() -> Self {
        Self::NotRun { reason: "not run: the task has no acceptance tests".to_owned() }
    }

    /// The server has no working sandbox, so model-written code is never executed.
    pub fn no_sandbox() -> Self {
        Self::NotRun { reason: "not run: no sandbox".to_owned() }
    }

    pub fn report(&self) -> Option<&TestReport> {
        match self {
            Self::NotRun { .. } => None,
            Self::Ran(report) => Some(report),
        }
    }

    /// Passed share in [0, 1] when tests ran.
    pub fn pass_rate(&self) -> Option<f64> {
        self.report().and_then(TestReport::pass_rate)
    }

    /// `Some(true)` when every test ran and passed, `Some(false)` when any did not, `None` when
    /// nothing ran.
    pub fn passed(&self) -> Option<bool> {
        self.report().filter(|r| r.total() > 0).map(|r| r.failed == 0 && r.errored == 0)
    }

    /// One line: the counts, or why nothing ran.
    pub fn message(&self) -> String {
        match self {
            Self::NotRun { reason } => reason.clone(),
            Self::Ran(report) => report.summary(),
        }
    }

    /// The trimmed report (or the reason nothing ran), as shown to agents and clients.
    pub fn render(&self) -> String {
        match self {
            Self::NotRun { reason } => reason.clone(),
            Self::Ran(report) => report.render(),
        }
    }
}

/// The last `max_chars` characters of `text`, with `…` marking a cut: the end of a traceback
/// says where it failed.
fn tail(text: &str, max_chars: usize) -> String {
    let count = text.chars().count();
    if count <= max_chars {
        return text.to_owned();
    }
    let skip = count - max_chars;
    let cut = text.char_indices().nth(skip).map_or(text.len(), |(i, _)| i);
    format!("…{}", &text[cut..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_rate_and_render_follow_the_cases() {
        let report = TestReport::from_cases(
            vec![
                TestCase::new("test_add", CaseOutcome::Passed, "", ""),
                TestCase::new(
                    "test_neg",
                    CaseOutcome::Failed,
                    "assert add(-1, 1) == 0",
                    "File \"tests.py\", line 4\nAssertionError",
                ),
                TestCase::new("test_big", CaseOutcome::Errored, "NameError: name 'add' is not defined", ""),
            ],
            "",
        );
        assert_eq!((report.passed, report.failed, report.errored), (1, 1, 1));
        assert_eq!(report.pass_rate(), Some(1.0 / 3.0));
        let text = report.render();
        assert!(
            text.starts_with("1 passed, 1 failed, 1 errored\nFAILED test_neg: assert add(-1, 1) == 0"),
            "{text}"
        );
        assert!(text.contains("ERRORED test_big: NameError"), "{text}");
        let outcome = TestOutcome::Ran(report);
        assert_eq!(outcome.passed(), Some(false));
    }

    #[test]
    fn not_run_is_neither_pass_nor_failure() {
        assert_eq!(TestOutcome::no_sandbox().passed(), None);
        assert_eq!(TestOutcome::no_sandbox().pass_rate(), None);
        assert_eq!(TestOutcome::no_sandbox().message(), "not run: no sandbox");
        assert_eq!(TestOutcome::Ran(TestReport::default()).passed(), None, "zero tests prove nothing");
    }

    #[test]
    fn long_tracebacks_keep_their_end() {
        let trace = format!("{}\nAssertionError: the end", "x".repeat(2000));
        let case = TestCase::new("t", CaseOutcome::Failed, "", &trace);
        assert!(case.traceback.ends_with("AssertionError: the end"));
        assert!(case.traceback.chars().count() <= MAX_TRACEBACK_CHARS + 1);
    }
}
