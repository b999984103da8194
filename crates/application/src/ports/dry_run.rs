//! The port to something that can execute or validate a proposal's code.

use async_trait::async_trait;
use orchestrator_domain::{DryRunOutcome, Task};

/// Executes or validates the code in a proposal (a sandbox, a compiler, a linter).
///
/// With none configured, proposals get [`DryRunOutcome::not_configured`]: neither a pass nor
/// a failure, never a fake pass.
#[async_trait]
pub trait DryRunner: Send + Sync + 'static {
    /// Runs the proposal; problems running it are reported as `NotRun` with the reason.
    async fn dry_run(&self, task: &Task, content: &str) -> DryRunOutcome;
}
