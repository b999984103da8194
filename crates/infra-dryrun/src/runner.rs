//! Running the configured command on a proposal's code.

use std::process::Stdio;

use async_trait::async_trait;
use orchestrator_application::ports::DryRunner;
use orchestrator_domain::{DryRunOutcome, Task, excerpt};
use tokio::process::Command;
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use crate::code_blocks::code_blocks;
use crate::config::{ConfigError, DryRunConfig, FILE_PLACEHOLDER};

/// Most characters of the command's output kept in the result.
pub const MAX_OUTPUT_CHARS: usize = 4000;

/// A [`DryRunner`] that writes a proposal's code blocks to a temp file and runs the configured
/// command on it: exit 0 passes, anything else (or the timeout) fails. The command runs in the
/// temp directory with a cleared environment (only `PATH`), no stdin, and is killed when it
/// times out or the deliberation is dropped. Problems of the runner itself (the program is
/// missing, the disk is full) report "not run" rather than blame the proposal.
#[derive(Debug)]
pub struct CommandDryRunner {
    config: DryRunConfig,
    permits: Semaphore,
}

impl CommandDryRunner {
    /// # Errors
    /// A [`ConfigError`] naming the field at fault.
    pub fn new(config: DryRunConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let permits = Semaphore::new(config.max_concurrency);
        Ok(Self { config, permits })
    }

    fn not_run(reason: impl Into<String>) -> DryRunOutcome {
        DryRunOutcome::NotRun { reason: reason.into() }
    }
}

#[async_trait]
impl DryRunner for CommandDryRunner {
    async fn dry_run(&self, _task: &Task, content: &str) -> DryRunOutcome {
        let blocks = code_blocks(content, &self.config.languages);
        if blocks.is_empty() {
            return Self::not_run(format!("not run: no {} code block", self.config.languages.join("/")));
        }
        let Ok(_permit) = self.permits.acquire().await else {
            return Self::not_run("not run: dry runner closed");
        };
        let dir = match tempfile::tempdir() {
            Ok(dir) => dir,
            Err(error) => {
                warn!(%error, "dry run: no temp dir");
                return Self::not_run(format!("not run: cannot create a temp dir: {error}"));
            }
        };
        let name = match self.config.file_extension.as_str() {
            "" => "proposal".to_owned(),
            ext => format!("proposal.{ext}"),
        };
        let file = dir.path().join(name);
        if let Err(error) = tokio::fs::write(&file, blocks.join("\n")).await {
            return Self::not_run(format!("not run: cannot write the code: {error}"));
        }
        let path = file.to_string_lossy();
        let mut argv = self.config.command.iter().map(|arg| arg.replace(FILE_PLACEHOLDER, &path));
        let program = argv.next().unwrap_or_default();
        let mut command = Command::new(&program);
        command
            .args(argv)
            .current_dir(dir.path())
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(search_path) = std::env::var_os("PATH") {
            command.env("PATH", search_path);
        }
        let child = match command.spawn() {
            Ok(child) => child,
            Err(error) => {
                warn!(program, %error, "dry run: cannot start the command");
                return Self::not_run(format!("not run: cannot start {program}: {error}"));
            }
        };
        let timeout = self.config.timeout();
        // On timeout the child is dropped with the future, and kill_on_drop ends it.
        match tokio::time::timeout(timeout, child.wait_with_output()).await {
            Err(_) => DryRunOutcome::Ran {
                passed: false,
                exit_code: -1,
                output: String::new(),
                message: format!("{program} timed out after {}ms", timeout.as_millis()),
            },
            Ok(Err(error)) => Self::not_run(format!("not run: {program} failed to run: {error}")),
            Ok(Ok(output)) => {
                let exit_code = output.status.code().unwrap_or(-1);
                let passed = output.status.success();
                let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
                text.push_str(&String::from_utf8_lossy(&output.stderr));
                debug!(program, exit_code, "dry run finished");
                DryRunOutcome::Ran {
                    passed,
                    exit_code,
                    output: excerpt(text.trim(), MAX_OUTPUT_CHARS),
                    message: if passed {
                        format!("{program} passed")
                    } else {
                        format!("{program} exited with {exit_code}")
                    },
                }
            }
        }
    }
}
