//! Holding whichever runner the operator chose.

use crate::bubblewrap::Sandbox;
use crate::error::SandboxError;
use crate::limits::SandboxLimits;
use crate::spec::{RunOutput, RunSpec};
use crate::unsandboxed::Unsandboxed;

/// The runner for model-written code: a real [`Sandbox`], or the [`Unsandboxed`] runner the
/// operator opted into. There is no third way to run code, so a caller holding an `Isolation`
/// runs unsandboxed only when someone called [`Unsandboxed::opt_in`].
#[derive(Debug, Clone)]
pub enum Isolation {
    /// Runs in bubblewrap.
    Sandboxed(Sandbox),
    /// Runs directly (operator opt-in; warns on every run).
    Unsandboxed(Unsandboxed),
}

impl Isolation {
    /// Runs `spec` with the held runner; see [`Sandbox::run`] and [`Unsandboxed::run`].
    ///
    /// # Errors
    /// A [`SandboxError`] when the run could not be carried out.
    pub async fn run(&self, spec: RunSpec) -> Result<RunOutput, SandboxError> {
        match self {
            Self::Sandboxed(sandbox) => sandbox.run(spec).await,
            Self::Unsandboxed(runner) => runner.run(spec).await,
        }
    }

    /// Whether runs are isolated.
    pub fn is_sandboxed(&self) -> bool {
        matches!(self, Self::Sandboxed(_))
    }

    /// The limits of every run.
    pub fn limits(&self) -> &SandboxLimits {
        match self {
            Self::Sandboxed(sandbox) => sandbox.limits(),
            Self::Unsandboxed(runner) => runner.limits(),
        }
    }
}
