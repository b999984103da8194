//! Running a proposal's Python code against a task's acceptance tests, in the sandbox only.
//!
//! Each run gets a fresh sandbox work dir holding three files: `solution.py` (the proposal's
//! Python code blocks), `acceptance_tests.py` (the task's tests) and `harness.py`, a small
//! runner written by us ([`HARNESS`]) that imports the solution, runs the top-level asserts and
//! `test_*` functions one by one, catches what they raise and prints one JSON report after a
//! marker line. No pytest is needed.
//!
//! There is no unsandboxed mode: without a working sandbox every run reports
//! [`TestOutcome::no_sandbox`]. The report is produced in the same process as the code under
//! test, so code written to forge its own report could; the sandbox bounds what such code can
//! do, not what it claims.

use async_trait::async_trait;
use orchestrator_application::ports::TestRunner;
use orchestrator_domain::{AcceptanceTests, CaseOutcome, TestCase, TestLanguage, TestOutcome, TestReport};
use orchestrator_infra_sandbox::{
    RunOutput, RunSpec, Sandbox, SandboxError, SandboxLimits, SandboxUnavailable, Termination,
    WORK_DIR_PLACEHOLDER,
};
use serde::Deserialize;
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use crate::code_blocks::code_blocks;

/// The test runner script (see the module docs).
pub const HARNESS: &str = include_str!("python_harness.py");
/// The line prefix the harness prints its JSON report after.
pub const REPORT_MARKER: &str = "@@ORCHESTRATOR-TEST-REPORT@@";
/// Runs of one runner at once (the machine's CPUs are shared with everything else).
pub const DEFAULT_CONCURRENCY: usize = 2;

/// The sandbox limits of a test run: the sandbox defaults, with room for a long report.
pub fn test_limits() -> SandboxLimits {
    SandboxLimits { max_output_bytes: 1024 * 1024, ..SandboxLimits::default() }
}

/// The proposal's Python code: its ```python / ```py blocks joined; without any, its unlabelled
/// fenced blocks; without those, what follows a Python or unlabelled fence never closed (an
/// answer cut off at the model's token limit); without that, the whole answer (small models
/// often answer with bare code; prose then fails to import, which is the honest verdict).
pub fn solution_code(content: &str) -> String {
    let python = code_blocks(content, &["python".to_owned(), "py".to_owned(), "python3".to_owned()]);
    if !python.is_empty() {
        return python.join("\n");
    }
    let unlabelled = code_blocks(content, &[String::new()]);
    if !unlabelled.is_empty() {
        return unlabelled.join("\n");
    }
    unclosed_block(content).unwrap_or(content).to_owned()
}

/// What follows the first opening ```python, ```py or bare ``` line, when no block was closed.
fn unclosed_block(content: &str) -> Option<&str> {
    let mut offset = 0;
    for line in content.split_inclusive('\n') {
        offset += line.len();
        let fence = line.trim();
        if let Some(language) = fence.strip_prefix("```")
            && ["", "python", "py", "python3"].contains(&language.trim().to_ascii_lowercase().as_str())
        {
            return Some(&content[offset..]);
        }
    }
    None
}

/// A [`TestRunner`] for Python acceptance tests, executing only inside the bubblewrap sandbox.
#[derive(Debug)]
pub struct PythonTestRunner {
    sandbox: Result<Sandbox, SandboxUnavailable>,
    permits: Semaphore,
}

impl PythonTestRunner {
    /// Detects the sandbox with a short probe run (blocks for tens of milliseconds: call at
    /// start-up). The caller says whether tests will run ([`Self::sandbox_problem`] tells why
    /// not), once, where it also knows the settings that go with it.
    pub fn detect() -> Self {
        Self::with_sandbox(Sandbox::detect(test_limits()), DEFAULT_CONCURRENCY)
    }

    /// A runner over this sandbox, or over none (then every run reports "not run: no sandbox").
    pub fn with_sandbox(sandbox: Result<Sandbox, SandboxUnavailable>, concurrency: usize) -> Self {
        Self { sandbox, permits: Semaphore::new(concurrency.max(1)) }
    }

    /// Why tests cannot run here (bubblewrap missing, namespaces refused, …); `None` when the
    /// sandbox works.
    pub fn sandbox_problem(&self) -> Option<&SandboxUnavailable> {
        self.sandbox.as_ref().err()
    }

    /// Runs `tests` on `content`'s code and reads the report.
    async fn run_python(&self, sandbox: &Sandbox, tests: &AcceptanceTests, content: &str) -> TestOutcome {
        let Ok(_permit) = self.permits.acquire().await else {
            return TestOutcome::NotRun { reason: "not run: test runner closed".to_owned() };
        };
        let spec = RunSpec {
            program: "python3".to_owned(),
            // -I: ignore the environment and user site; -B: write no bytecode.
            args: vec!["-I".into(), "-B".into(), format!("{WORK_DIR_PLACEHOLDER}/harness.py")],
            files: vec![
                ("solution.py".into(), solution_code(content).into_bytes()),
                ("acceptance_tests.py".into(), tests.code().as_bytes().to_vec()),
                ("harness.py".into(), HARNESS.as_bytes().to_vec()),
            ],
            env: Vec::new(),
        };
        match sandbox.run(spec).await {
            Ok(output) => {
                let outcome = verdict(&output, sandbox.limits());
                debug!(termination = ?output.termination, tests = %outcome.message(), "acceptance tests ran");
                outcome
            }
            Err(SandboxError::ProgramNotFound { .. }) => {
                warn!("acceptance tests: python3 is not in the sandbox");
                TestOutcome::NotRun { reason: "not run: python3 not found in the sandbox".to_owned() }
            }
            Err(error) => {
                let cause = std::error::Error::source(&error).map_or_else(String::new, |s| format!(": {s}"));
                warn!(%error, cause, "acceptance tests: the run could not be carried out");
                TestOutcome::NotRun { reason: format!("not run: {error}{cause}") }
            }
        }
    }
}

#[async_trait]
impl TestRunner for PythonTestRunner {
    fn supports(&self, language: TestLanguage) -> bool {
        language == TestLanguage::Python
    }

    fn can_run(&self) -> bool {
        self.sandbox.is_ok()
    }

    async fn run(&self, tests: &AcceptanceTests, content: &str) -> TestOutcome {
        if tests.language() != TestLanguage::Python {
            return TestOutcome::NotRun {
                reason: format!("not run: no test runner for {}", tests.language()),
            };
        }
        match &self.sandbox {
            Ok(sandbox) => self.run_python(sandbox, tests, content).await,
            Err(_) => TestOutcome::no_sandbox(),
        }
    }
}

#[derive(Deserialize)]
struct WireReport {
    cases: Vec<WireCase>,
    #[serde(default)]
    output: String,
}

#[derive(Deserialize)]
struct WireCase {
    name: String,
    outcome: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    traceback: String,
}

/// The report the harness printed, or — when the code under test ended the run before it could
/// (a timeout, a limit, `os._exit`) — one errored case saying how the run ended.
pub fn verdict(output: &RunOutput, limits: &SandboxLimits) -> TestOutcome {
    let stdout = output.stdout.text();
    let report = stdout
        .lines()
        .rev()
        .find_map(|line| line.strip_prefix(REPORT_MARKER))
        .and_then(|json| serde_json::from_str::<WireReport>(json).ok());
    if let Some(report) = report.filter(|_| output.termination == Termination::Exited) {
        let cases = report
            .cases
            .iter()
            .map(|c| {
                let outcome = match c.outcome.as_str() {
                    "passed" => CaseOutcome::Passed,
                    "failed" => CaseOutcome::Failed,
                    _ => CaseOutcome::Errored,
                };
                TestCase::new(&c.name, outcome, &c.message, &c.traceback)
            })
            .collect();
        return TestOutcome::Ran(TestReport::from_cases(cases, &report.output));
    }
    let how = match output.termination {
        Termination::TimedOut => format!("timed out after {}s", limits.wall_timeout.as_secs()),
        Termination::CpuLimit => format!("stopped at the CPU time limit of {}s", limits.cpu_time.as_secs()),
        Termination::FileSizeLimit => "stopped at the file size limit".to_owned(),
        Termination::OutputLimit => "stopped: too much output".to_owned(),
        Termination::Exited => {
            format!("the run ended without a test report (exit code {})", output.exit_code.unwrap_or(-1))
        }
        _ => format!("killed (signal {})", output.signal.unwrap_or(-1)),
    };
    let stderr = output.stderr.text();
    TestOutcome::Ran(TestReport::from_cases(
        vec![TestCase::new("run", CaseOutcome::Errored, &how, &stderr)],
        "",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_blocks_win_then_unlabelled_blocks_then_the_whole_answer() {
        let answer = "Intro\n```python\ndef f():\n    return 1\n```\n```\nignored\n```\n";
        assert_eq!(solution_code(answer), "def f():\n    return 1\n");
        assert_eq!(solution_code("Here:\n```\nx = 1\n```\n"), "x = 1\n");
        assert_eq!(solution_code("def f(): return 1"), "def f(): return 1");
    }

    #[test]
    fn an_answer_cut_inside_its_code_block_keeps_the_code_without_the_fence() {
        // Captured from SmolLM2-135M at max_tokens = 256.
        let cut = "```python\ndef add(a, b):\n    \"\"\"Returns the sum of two numbers\"\"\"\n    return a +";
        assert_eq!(
            solution_code(cut),
            "def add(a, b):\n    \"\"\"Returns the sum of two numbers\"\"\"\n    return a +"
        );
        assert_eq!(solution_code("Sure:\n```\nx = 1\n"), "x = 1\n");
    }
}
