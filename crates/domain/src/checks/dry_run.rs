//! The outcome of executing or validating a proposal's code.

use serde::{Deserialize, Serialize};

/// What a dry runner reported; `NotRun` is neither a pass nor a failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DryRunOutcome {
    /// Nothing was executed, and why (no runner configured, no code block, runner error…).
    NotRun { reason: String },
    /// The runner executed the proposal's code.
    Ran { passed: bool, exit_code: i32, output: String, message: String },
}

impl DryRunOutcome {
    /// The outcome when the server has no dry runner.
    pub fn not_configured() -> Self {
        Self::NotRun { reason: "not run: no dry-run executor configured".to_owned() }
    }

    /// `Some(passed)` when it ran, `None` when it did not.
    pub fn passed(&self) -> Option<bool> {
        match self {
            Self::NotRun { .. } => None,
            Self::Ran { passed, .. } => Some(*passed),
        }
    }
}
