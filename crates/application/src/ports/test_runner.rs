//! The port to something that runs a proposal's code against a task's acceptance tests.

use async_trait::async_trait;
use orchestrator_domain::{AcceptanceTests, TestLanguage, TestOutcome};

/// Runs acceptance tests on a proposal's code, one adapter per set of languages (Python in
/// `orchestrator-infra-dryrun`, inside the sandbox).
///
/// Implementations never run model-written code outside a sandbox: without one, every run
/// reports [`TestOutcome::no_sandbox`]. Problems of the runner itself (the interpreter is
/// missing, the disk is full) are `NotRun` with the reason, never blamed on the proposal.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait TestRunner: Send + Sync + 'static {
    /// Whether this runner executes tests written in `language`.
    fn supports(&self, language: TestLanguage) -> bool;

    /// Whether runs really execute (a working sandbox); `false` means every run reports
    /// "not run" and why.
    fn can_run(&self) -> bool;

    /// Runs `tests` against the code of a proposal (`content`, the proposal's full text).
    async fn run(&self, tests: &AcceptanceTests, content: &str) -> TestOutcome;
}
