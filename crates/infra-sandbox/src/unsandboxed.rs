//! The operator's explicit opt-out: running model-written code without the sandbox.

use std::io;
use std::time::Instant;

use tokio::process::Command;
use tracing::warn;

use crate::error::{InvalidLimit, SandboxError};
use crate::limits::SandboxLimits;
use crate::spec::{RunOutput, RunSpec};
use crate::supervision::{StatusConvention, Teardown, captured, supervise};
use crate::work_dir::RunDir;

/// Runs programs directly, as the orchestrator's own user, with its files and its network.
/// Only the fresh work dir (the working directory, `HOME`), a cleared environment (the
/// orchestrator's `PATH`, `LANG=C.UTF-8` and the run's variables), the wall timeout and the
/// output cap apply; the CPU, memory, process and file limits do not, and processes the program
/// detaches survive the run.
///
/// It exists for operators who isolate the whole orchestrator some other way (a throw-away VM)
/// or whose machine cannot run bubblewrap and who accept the risk. It can only be made with
/// [`Unsandboxed::opt_in`], and it logs a warning when made and on every run.
#[derive(Debug, Clone)]
pub struct Unsandboxed {
    limits: SandboxLimits,
}

impl Unsandboxed {
    /// The operator's decision to run model-written code without isolation. Logs a warning.
    ///
    /// # Errors
    /// An [`InvalidLimit`] naming the field at fault (the wall timeout and the output cap are
    /// used).
    pub fn opt_in(limits: SandboxLimits) -> Result<Self, InvalidLimit> {
        limits.validate()?;
        warn!(
            "UNSANDBOXED by operator opt-in: model-written code will run as this process's user, \
             with its files and its network; only a wall timeout and an output cap apply"
        );
        Ok(Self { limits })
    }

    /// The limits in force (only the wall timeout and the output cap are enforced).
    pub fn limits(&self) -> &SandboxLimits {
        &self.limits
    }

    /// Runs `spec.program` directly in a fresh work dir; [`WORK_DIR_PLACEHOLDER`] becomes the
    /// work dir's host path. Logs a warning. Dropping the future kills the program (and, once
    /// it is reaped, deletes the work dir) in the background.
    ///
    /// [`WORK_DIR_PLACEHOLDER`]: crate::WORK_DIR_PLACEHOLDER
    ///
    /// # Errors
    /// A [`SandboxError`] when the run could not be carried out (a malformed spec, a missing
    /// program, no work dir); whatever the program does is a [`RunOutput`].
    pub async fn run(&self, mut spec: RunSpec) -> Result<RunOutput, SandboxError> {
        warn!(program = spec.program, "running model-written code UNSANDBOXED (operator opt-in)");
        spec.validate()?;
        let started = Instant::now();
        let run_dir = RunDir::prepare(None, std::mem::take(&mut spec.files)).await?;
        let work = run_dir.work();
        let mut command = Command::new(&spec.program);
        command.args(spec.args_in(&work.to_string_lossy())).env_clear();
        if let Some(search_path) = std::env::var_os("PATH") {
            command.env("PATH", search_path);
        }
        command
            .env("HOME", &work)
            .env("LANG", "C.UTF-8")
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&work);
        let child = match captured(&mut command).spawn() {
            Ok(child) => child,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                run_dir.remove().await;
                return Err(SandboxError::ProgramNotFound { program: spec.program });
            }
            Err(source) => {
                run_dir.remove().await;
                return Err(SandboxError::Spawn { program: spec.program, source });
            }
        };
        let finished = supervise(child, run_dir, &self.limits, Teardown::ChildOnly).await;
        Ok(finished?.into_output(StatusConvention::Direct, started.elapsed()))
    }
}
