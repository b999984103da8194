//! What a run is given and what it gives back.

use std::borrow::Cow;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use crate::error::SandboxError;

/// Placeholder in [`RunSpec::args`] replaced by the work dir's path as the program sees it
/// (`/work` in the sandbox, the temp dir's host path unsandboxed), so a caller can name a file
/// it put there without knowing which runner it holds.
pub const WORK_DIR_PLACEHOLDER: &str = "{workdir}";

/// One program to run on model-written files.
///
/// The files are written into a fresh, empty work dir, which is the program's working
/// directory and (sandboxed) the only writable place; it is deleted after the run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunSpec {
    /// The program: a name looked up in `/usr/bin:/bin` (sandboxed), or a path.
    pub program: String,
    /// Its arguments; [`WORK_DIR_PLACEHOLDER`] is replaced in each.
    pub args: Vec<String>,
    /// Files to put in the work dir: a relative path (no `..`, sub-directories allowed) and
    /// the bytes.
    pub files: Vec<(PathBuf, Vec<u8>)>,
    /// Environment variables on top of the cleared environment (`PATH`, `HOME`, `LANG`);
    /// these win over the defaults.
    pub env: Vec<(String, String)>,
}

impl RunSpec {
    /// Rejects what no runner can honour, before anything is created.
    pub(crate) fn validate(&self) -> Result<(), SandboxError> {
        let invalid = |reason: String| Err(SandboxError::InvalidSpec { reason });
        if self.program.trim().is_empty() {
            return invalid("the program is empty".to_owned());
        }
        for (path, _) in &self.files {
            if !is_plain_relative(path) {
                return invalid(format!("file {} must be a relative path without `..`", path.display()));
            }
        }
        for (key, _) in &self.env {
            if key.is_empty() || key.contains(['=', '\0']) {
                return invalid(format!("environment variable name {key:?} is not valid"));
            }
        }
        Ok(())
    }

    /// The arguments with the work dir placeholder replaced by `work_dir`.
    pub(crate) fn args_in(&self, work_dir: &str) -> Vec<String> {
        self.args.iter().map(|arg| arg.replace(WORK_DIR_PLACEHOLDER, work_dir)).collect()
    }

    /// Whether the spec overrides `PATH` (then the program is looked up the way it says).
    pub(crate) fn sets_path(&self) -> bool {
        self.env.iter().any(|(key, _)| key == "PATH")
    }
}

fn is_plain_relative(path: &Path) -> bool {
    path.components().any(|c| matches!(c, Component::Normal(_)))
        && path.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// Standard output or standard error of a run, cut at
/// [`max_output_bytes`](crate::SandboxLimits::max_output_bytes) while it was read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapturedOutput {
    /// The first bytes the program wrote.
    pub bytes: Vec<u8>,
    /// The program wrote more than was kept.
    pub truncated: bool,
}

impl CapturedOutput {
    /// The bytes as text, invalid UTF-8 replaced.
    pub fn text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.bytes)
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Termination {
    /// The program exited by itself; [`RunOutput::exit_code`] says how.
    Exited,
    /// The program was killed by a signal ([`RunOutput::signal`]) other than the limits below.
    Signaled,
    /// The program used up its CPU time (`SIGXCPU`).
    CpuLimit,
    /// The program wrote a file past its size limit and did not survive it (`SIGXFSZ`).
    /// (Programs that ignore the signal, like Python, get an `EFBIG` error instead and exit.)
    FileSizeLimit,
    /// The wall timeout passed; the whole process tree was killed.
    TimedOut,
    /// The program wrote more output than is kept; the whole process tree was killed.
    OutputLimit,
}

impl Termination {
    /// What a death by `signal` means: `SIGXCPU` (24) and `SIGXFSZ` (25) come from the limits
    /// (the Linux numbers on every architecture this crate runs on).
    pub(crate) fn from_signal(signal: i32) -> Self {
        match signal {
            24 => Self::CpuLimit,
            25 => Self::FileSizeLimit,
            _ => Self::Signaled,
        }
    }
}

/// What a run gave back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutput {
    /// The exit code, when the program exited by itself.
    pub exit_code: Option<i32>,
    /// The signal that killed the program, when one did (not set when the runner killed it for
    /// the wall timeout or the output limit).
    pub signal: Option<i32>,
    /// Standard output, capped.
    pub stdout: CapturedOutput,
    /// Standard error, capped.
    pub stderr: CapturedOutput,
    /// How the run ended.
    pub termination: Termination,
    /// From start-up (work dir included) to the last process gone.
    pub duration: Duration,
}

impl RunOutput {
    /// The program exited by itself with 0.
    pub fn success(&self) -> bool {
        self.termination == Termination::Exited && self.exit_code == Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> RunSpec {
        RunSpec { program: "python3".into(), ..RunSpec::default() }
    }

    #[test]
    fn file_paths_must_stay_inside_the_work_dir() {
        for bad in ["../x.py", "/etc/passwd", "", "a/../../b", "."] {
            let spec = RunSpec { files: vec![(bad.into(), vec![])], ..spec() };
            let error = spec.validate().unwrap_err().to_string();
            assert!(error.contains("must be a relative path"), "{bad}: {error}");
        }
        for good in ["pkg/mod.py", "./main.py"] {
            assert!(RunSpec { files: vec![(good.into(), vec![])], ..spec() }.validate().is_ok(), "{good}");
        }
    }

    #[test]
    fn an_empty_program_and_odd_variable_names_are_rejected() {
        assert!(RunSpec { program: " ".into(), ..spec() }.validate().is_err());
        for key in ["", "A=B", "A\0"] {
            let spec = RunSpec { env: vec![(key.into(), "1".into())], ..spec() };
            assert!(spec.validate().is_err(), "{key:?}");
        }
    }

    #[test]
    fn the_work_dir_placeholder_is_replaced_in_every_argument() {
        let spec = RunSpec { args: vec!["{workdir}/a.py".into(), "-q".into()], ..spec() };
        assert_eq!(spec.args_in("/work"), ["/work/a.py", "-q"]);
    }

    #[test]
    fn limit_signals_are_told_apart() {
        assert_eq!(Termination::from_signal(24), Termination::CpuLimit);
        assert_eq!(Termination::from_signal(25), Termination::FileSizeLimit);
        assert_eq!(Termination::from_signal(9), Termination::Signaled);
    }
}
