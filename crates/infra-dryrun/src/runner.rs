//! Running the configured command on a proposal's code, inside the isolation layer.

use async_trait::async_trait;
use orchestrator_application::ports::DryRunner;
use orchestrator_domain::{DryRunOutcome, Task, excerpt};
use orchestrator_infra_sandbox::{
    Isolation, RunOutput, RunSpec, Sandbox, SandboxError, SandboxUnavailable, Termination, Unsandboxed,
    WORK_DIR_PLACEHOLDER,
};
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use crate::code_blocks::code_blocks;
use crate::config::{ConfigError, DryRunConfig, FILE_PLACEHOLDER};

/// Most characters of the command's output kept in the result.
pub const MAX_OUTPUT_CHARS: usize = 4000;

/// A [`DryRunner`] that writes a proposal's code blocks to a file in a fresh sandbox work dir
/// and runs the configured command on it there: exit 0 passes, anything else (a failure, a
/// limit, the timeout) fails. The sandbox (see `orchestrator-infra-sandbox`) has no network,
/// sees none of the host's files but a read-only system, runs as an unprivileged user with a
/// cleared environment and CPU, memory, process and file-size limits, and is killed with its
/// whole process tree at the timeout or when the deliberation is dropped.
///
/// Without a sandbox on the machine, and without the operator's `unsandboxed` opt-in, the code
/// is never run: every dry run reports "not run: no sandbox (why)". Problems of the runner
/// itself (the program is missing, the disk is full) also report "not run" rather than blame
/// the proposal.
#[derive(Debug)]
pub struct CommandDryRunner {
    config: DryRunConfig,
    /// The runner, or why there is none.
    isolation: Result<Isolation, SandboxUnavailable>,
    permits: Semaphore,
}

impl CommandDryRunner {
    /// Validates `config` and sets up the isolation it asks for: the sandbox, detected with a
    /// short probe run (this blocks for it, tens of milliseconds; call at start-up), or the
    /// unsandboxed runner when `config.unsandboxed` opts in. A machine without a sandbox is not
    /// an error here: the runner is made, logs why, and reports every dry run as not run.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the field at fault.
    pub fn new(config: DryRunConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let limits = config.sandbox_limits();
        let isolation = if config.unsandboxed {
            let runner = Unsandboxed::opt_in(limits)
                .map_err(|invalid| ConfigError { field: "limits", reason: invalid.to_string() })?;
            Ok(Isolation::Unsandboxed(runner))
        } else {
            Sandbox::detect(limits).map(Isolation::Sandboxed)
        };
        Self::with_isolation(config, isolation)
    }

    /// Like [`new`](Self::new) with the isolation given: a runner, or why there is none (then
    /// nothing is ever run). `config.unsandboxed` is not consulted: an
    /// [`Isolation::Unsandboxed`] can only exist through [`Unsandboxed::opt_in`].
    ///
    /// # Errors
    /// A [`ConfigError`] naming the field at fault.
    pub fn with_isolation(
        config: DryRunConfig,
        isolation: Result<Isolation, SandboxUnavailable>,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        match &isolation {
            Ok(isolation) if isolation.is_sandboxed() => info!("dry runs run in the sandbox"),
            Ok(_) => warn!("dry runs run UNSANDBOXED (operator opt-in)"),
            Err(why) => warn!(%why, "no sandbox: dry runs will report \"not run\" instead of running code"),
        }
        let permits = Semaphore::new(config.max_concurrency);
        Ok(Self { config, isolation, permits })
    }

    fn not_run(reason: impl Into<String>) -> DryRunOutcome {
        DryRunOutcome::NotRun { reason: reason.into() }
    }

    /// The verdict on a run that happened.
    fn verdict(&self, program: &str, output: &RunOutput) -> DryRunOutcome {
        let mut text = output.stdout.text().into_owned();
        text.push_str(&output.stderr.text());
        let mut text = excerpt(text.trim(), MAX_OUTPUT_CHARS);
        if output.stdout.truncated || output.stderr.truncated {
            text.push_str("\n[output truncated]");
        }
        let signal = output.signal.map_or_else(String::new, |signal| format!(" (signal {signal})"));
        let message = match output.termination {
            Termination::Exited if output.success() => format!("{program} passed"),
            Termination::Exited => format!("{program} exited with {}", output.exit_code.unwrap_or(-1)),
            Termination::TimedOut => {
                format!("{program} timed out after {}ms", self.config.timeout().as_millis())
            }
            Termination::CpuLimit => format!("{program} was stopped at its CPU time limit{signal}"),
            Termination::FileSizeLimit => format!("{program} was stopped at its file size limit{signal}"),
            Termination::OutputLimit => format!("{program} was stopped: too much output"),
            _ => format!("{program} was killed{signal}"),
        };
        DryRunOutcome::Ran {
            passed: output.success(),
            exit_code: output.exit_code.unwrap_or(-1),
            output: text,
            message,
        }
    }
}

#[async_trait]
impl DryRunner for CommandDryRunner {
    async fn dry_run(&self, _task: &Task, content: &str) -> DryRunOutcome {
        let blocks = code_blocks(content, &self.config.languages);
        if blocks.is_empty() {
            return Self::not_run(format!("not run: no {} code block", self.config.languages.join("/")));
        }
        let isolation = match &self.isolation {
            Ok(isolation) => isolation,
            Err(why) => return Self::not_run(format!("not run: no sandbox ({why})")),
        };
        let Ok(_permit) = self.permits.acquire().await else {
            return Self::not_run("not run: dry runner closed");
        };
        let name = match self.config.file_extension.as_str() {
            "" => "proposal".to_owned(),
            ext => format!("proposal.{ext}"),
        };
        let path = format!("{WORK_DIR_PLACEHOLDER}/{name}");
        let mut argv = self.config.command.iter().map(|arg| arg.replace(FILE_PLACEHOLDER, &path));
        let program = argv.next().unwrap_or_default();
        let spec = RunSpec {
            program: program.clone(),
            args: argv.collect(),
            files: vec![(name.into(), blocks.join("\n").into_bytes())],
            env: Vec::new(),
        };
        match isolation.run(spec).await {
            Ok(output) => {
                debug!(program, termination = ?output.termination, exit_code = ?output.exit_code, "dry run finished");
                self.verdict(&program, &output)
            }
            Err(SandboxError::ProgramNotFound { .. }) => {
                warn!(program, "dry run: the command's program is not there");
                Self::not_run(format!("not run: cannot start {program}: not found"))
            }
            Err(error) => {
                let cause = std::error::Error::source(&error).map_or_else(String::new, |s| format!(": {s}"));
                warn!(program, %error, cause, "dry run: the run could not be carried out");
                Self::not_run(format!("not run: {program}: {error}{cause}"))
            }
        }
    }
}
