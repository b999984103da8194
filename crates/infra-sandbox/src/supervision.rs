//! Watching a started run — output read as it comes and capped, the wall clock — and ending
//! it: the kill, the wait until its processes are gone, and only then the removal of its run
//! dir. That last sequence happens on every path, the dropped future's included.

use std::convert::Infallible;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Child;
use tokio::sync::oneshot;
use tracing::warn;

use crate::error::SandboxError;
use crate::limits::SandboxLimits;
use crate::process_tree;
use crate::spec::{CapturedOutput, RunOutput, Termination};
use crate::work_dir::RunDir;

/// How long a killed run may take to disappear before we stop waiting, say so, and leave its
/// run dir to the start-up sweep rather than touch it while something of it may still run.
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

/// How watching a run ended.
enum Ended {
    /// The child exited; for a sandbox that means its whole pid namespace is gone.
    ByItself(ExitStatus),
    /// The runner stopped it: wall timeout or output cap.
    Stopped(Termination),
    /// Reading the output or waiting failed.
    Lost(io::Error),
    /// The caller dropped the run's future (a deadline, a cancellation, a client gone).
    Abandoned,
}

/// Sets `command` up the way every run is started: no input, both outputs captured for
/// [`supervise`], and killed should its handle be dropped before it ends.
pub(crate) fn captured(command: &mut tokio::process::Command) -> &mut tokio::process::Command {
    command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
}

/// Reads `child`'s output until it closes (keeping at most `max_output_bytes` of each stream)
/// and waits for it, all within the wall timeout; then ends the run. When the output passes its
/// cap or the time is up, the process tree is killed as `teardown` says. On return nothing of
/// the run is left and `run_dir` is removed — or, when the tree could not be confirmed gone,
/// left (and logged) for the start-up sweep, never removed while something of the run may
/// still write to it.
///
/// The work is a task of its own, which the returned future only awaits: dropping the future
/// (the caller's deadline, a cancellation) tells the task, which kills the tree, waits for it
/// and removes the dir exactly as at the wall timeout, instead of abandoning them halfway.
pub(crate) async fn supervise(
    child: Child,
    mut run_dir: RunDir,
    limits: &SandboxLimits,
    teardown: Teardown,
) -> Result<Finished, SandboxError> {
    run_dir.mark_in_use();
    // Never sent: dropped with this future, which is how the task learns the caller is gone.
    let (_caller, caller_gone) = oneshot::channel::<Infallible>();
    let task = tokio::spawn(watch_and_end(child, run_dir, *limits, teardown, caller_gone));
    task.await.unwrap_or_else(|join| Err(SandboxError::Supervise { source: io::Error::other(join) }))
}

async fn watch_and_end(
    mut child: Child,
    run_dir: RunDir,
    limits: SandboxLimits,
    teardown: Teardown,
    mut caller_gone: oneshot::Receiver<Infallible>,
) -> Result<Finished, SandboxError> {
    let mut stdout = CapturedOutput::default();
    let mut stderr = CapturedOutput::default();
    let out_pipe = child.stdout.take();
    let err_pipe = child.stderr.take();
    let cap = limits.max_output_bytes;
    let ended = {
        let run = async {
            tokio::try_join!(capture(out_pipe, cap, &mut stdout), capture(err_pipe, cap, &mut stderr))?;
            child.wait().await.map_err(Stop::Io)
        };
        tokio::select! {
            biased;
            _ = &mut caller_gone => Ended::Abandoned,
            ended = tokio::time::timeout(limits.wall_timeout, run) => match ended {
                Ok(Ok(status)) => Ended::ByItself(status),
                Ok(Err(Stop::OutputLimit)) => Ended::Stopped(Termination::OutputLimit),
                Ok(Err(Stop::Io(source))) => Ended::Lost(source),
                Err(_elapsed) => Ended::Stopped(Termination::TimedOut),
            },
        }
    };
    let gone = matches!(ended, Ended::ByItself(_)) || kill(&mut child, teardown).await;
    if gone {
        run_dir.remove().await;
    } else {
        run_dir.leave();
    }
    match ended {
        Ended::ByItself(status) => Ok(Finished { status: Some(status), stopped: None, stdout, stderr }),
        Ended::Stopped(stopped) => Ok(Finished { status: None, stopped: Some(stopped), stdout, stderr }),
        Ended::Lost(source) => Err(SandboxError::Supervise { source }),
        Ended::Abandoned => Err(SandboxError::Supervise { source: io::Error::other("the caller is gone") }),
    }
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

/// Kills the run's process tree and waits, at most [`TEARDOWN_BOUND`] for each step, until it
/// is gone. Whether it is: only then may the run dir be touched.
async fn kill(child: &mut Child, teardown: Teardown) -> bool {
    // The sandbox's init must be noted while it is still the child's child.
    let inner = match (teardown, child.id()) {
        (Teardown::PidNamespace, Some(pid)) => process_tree::children_of(pid),
        _ => Vec::new(),
    };
    if let Err(error) = child.start_kill() {
        warn!(%error, "cannot kill the run (already gone?)");
    }
    match tokio::time::timeout(TEARDOWN_BOUND, child.wait()).await {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => {
            warn!(%error, "cannot reap the killed run; its run dir is left");
            return false;
        }
        Err(_elapsed) => {
            warn!(bound_ms = TEARDOWN_BOUND.as_millis(), "the killed run has not ended; its run dir is left");
            return false;
        }
    }
    if process_tree::wait_gone(&inner, TEARDOWN_BOUND).await {
        return true;
    }
    warn!(
        bound_ms = TEARDOWN_BOUND.as_millis(),
        "the killed sandbox is still winding down; its run dir is left"
    );
    false
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
