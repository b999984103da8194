//! Watching a started run: output read as it comes and capped, the wall clock, and the kill.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Child;
use tracing::warn;

use crate::error::SandboxError;
use crate::limits::SandboxLimits;
use crate::process_tree;
use crate::spec::{CapturedOutput, RunOutput, Termination};

/// How long a killed sandbox may take to disappear before we stop waiting (and say so).
const TEARDOWN_BOUND: Duration = Duration::from_secs(5);

/// How the whole process tree is ended when the runner stops a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Teardown {
    /// The child is the outer `bwrap`: kill it, then wait for the sandbox's pid namespace
    /// (its init is the child's child) to be gone.
    PidNamespace,
    /// The child is the program itself: kill it. Processes it detached survive (there is no
    /// namespace to take them down), which is one of the reasons to sandbox.
    ChildOnly,
}

/// A run that is over: how it ended from the runner's view, and its capped output.
#[derive(Debug)]
pub(crate) struct Finished {
    /// The child's exit status when it ended by itself.
    pub(crate) status: Option<ExitStatus>,
    /// Set when the runner stopped the run.
    pub(crate) stopped: Option<Termination>,
    pub(crate) stdout: CapturedOutput,
    pub(crate) stderr: CapturedOutput,
}

/// How the child's exit status reports the program's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StatusConvention {
    /// The child is the outer `bwrap`, which exits with the program's code, or with 128 + n
    /// when the program died of signal n (like a shell does). A program that itself exits with
    /// 129..=192 is therefore reported as killed by a signal.
    Bwrap,
    /// The child is the program.
    Direct,
}

impl Finished {
    /// What the caller gets: the runner's reason to stop when it stopped the run, otherwise
    /// the decoded exit status.
    pub(crate) fn into_output(self, convention: StatusConvention, duration: Duration) -> RunOutput {
        let Self { status, stopped, stdout, stderr } = self;
        let (termination, exit_code, signal) = match (stopped, status) {
            (Some(stopped), _) => (stopped, None, None),
            (None, Some(status)) => decode(status, convention),
            (None, None) => (Termination::Signaled, None, None),
        };
        RunOutput { exit_code, signal, stdout, stderr, termination, duration }
    }
}

fn decode(status: ExitStatus, convention: StatusConvention) -> (Termination, Option<i32>, Option<i32>) {
    match (status.code(), status.signal()) {
        (Some(code), _) if convention == StatusConvention::Bwrap && (129..=192).contains(&code) => {
            (Termination::from_signal(code - 128), None, Some(code - 128))
        }
        (Some(code), _) => (Termination::Exited, Some(code), None),
        (None, signal) => (signal.map_or(Termination::Signaled, Termination::from_signal), None, signal),
    }
}

/// Why reading stopped before the end of the output.
enum Stop {
    OutputLimit,
    Io(io::Error),
}

/// Reads `child`'s output until it closes (keeping at most `max_output_bytes` of each stream)
/// and waits for it, all within the wall timeout. When the output passes its cap or the time
/// is up, the process tree is killed as `teardown` says; on return nothing of the run is left.
pub(crate) async fn supervise(
    mut child: Child,
    limits: &SandboxLimits,
    teardown: Teardown,
) -> Result<Finished, SandboxError> {
    let mut stdout = CapturedOutput::default();
    let mut stderr = CapturedOutput::default();
    let out_pipe = child.stdout.take();
    let err_pipe = child.stderr.take();
    let cap = limits.max_output_bytes;
    let run = async {
        tokio::try_join!(capture(out_pipe, cap, &mut stdout), capture(err_pipe, cap, &mut stderr))?;
        child.wait().await.map_err(Stop::Io)
    };
    let ended = tokio::time::timeout(limits.wall_timeout, run).await;
    let (status, stopped) = match ended {
        Ok(Ok(status)) => (Some(status), None),
        Ok(Err(Stop::OutputLimit)) => (None, Some(Termination::OutputLimit)),
        Err(_elapsed) => (None, Some(Termination::TimedOut)),
        Ok(Err(Stop::Io(source))) => {
            kill(&mut child, teardown).await;
            return Err(SandboxError::Supervise { source });
        }
    };
    if stopped.is_some() {
        kill(&mut child, teardown).await;
    }
    Ok(Finished { status, stopped, stdout, stderr })
}

async fn capture<R: AsyncRead + Unpin>(
    pipe: Option<R>,
    cap: usize,
    into: &mut CapturedOutput,
) -> Result<(), Stop> {
    let Some(mut pipe) = pipe else { return Ok(()) };
    let mut chunk = vec![0_u8; 16 * 1024];
    loop {
        let read = pipe.read(&mut chunk).await.map_err(Stop::Io)?;
        if read == 0 {
            return Ok(());
        }
        let room = cap.saturating_sub(into.bytes.len());
        if read > room {
            into.bytes.extend_from_slice(&chunk[..room]);
            into.truncated = true;
            return Err(Stop::OutputLimit);
        }
        into.bytes.extend_from_slice(&chunk[..read]);
    }
}

/// Kills the run's process tree and waits until it is gone.
async fn kill(child: &mut Child, teardown: Teardown) {
    // The sandbox's init must be noted while it is still the child's child.
    let inner = match (teardown, child.id()) {
        (Teardown::PidNamespace, Some(pid)) => process_tree::children_of(pid),
        _ => Vec::new(),
    };
    if let Err(error) = child.start_kill() {
        warn!(%error, "cannot kill the run (already gone?)");
    }
    if let Err(error) = child.wait().await {
        warn!(%error, "cannot reap the killed run");
    }
    if !process_tree::wait_gone(&inner, TEARDOWN_BOUND).await {
        warn!(bound_ms = TEARDOWN_BOUND.as_millis(), "the killed sandbox is still winding down");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exited(code: i32) -> ExitStatus {
        ExitStatus::from_raw(code << 8)
    }

    #[test]
    fn bwraps_exit_code_is_decoded_like_a_shells() {
        let decode = |status| decode(status, StatusConvention::Bwrap);
        assert_eq!(decode(exited(0)), (Termination::Exited, Some(0), None));
        assert_eq!(decode(exited(3)), (Termination::Exited, Some(3), None));
        assert_eq!(decode(exited(128 + 9)), (Termination::Signaled, None, Some(9)));
        assert_eq!(decode(exited(128 + 24)), (Termination::CpuLimit, None, Some(24)));
        assert_eq!(decode(exited(128 + 25)), (Termination::FileSizeLimit, None, Some(25)));
        assert_eq!(decode(ExitStatus::from_raw(9)), (Termination::Signaled, None, Some(9)));
    }

    #[test]
    fn a_direct_childs_status_is_taken_as_it_is() {
        let decode = |status| decode(status, StatusConvention::Direct);
        assert_eq!(decode(exited(137)), (Termination::Exited, Some(137), None));
        assert_eq!(decode(ExitStatus::from_raw(24)), (Termination::CpuLimit, None, Some(24)));
    }
}
