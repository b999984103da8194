//! Following processes that are not our children, through `/proc`.
//!
//! When the runner kills the outer `bwrap`, the sandbox's init process (its child, pid 1 of the
//! sandbox's pid namespace) dies of its parent-death signal and the kernel then kills every
//! other process of the namespace. That happens after our `wait` for the outer `bwrap`
//! returned, and nothing signals its end to us: so the runner notes the init process before the
//! kill and waits here until it is gone — on its pidfd, the kernel's event for a process's end.
//! The kernel lets a namespace's init finish dying only once every other process of the
//! namespace has, so "init gone" means "all gone".

use std::fs;
use std::os::fd::OwnedFd;
use std::time::Duration;

use rustix::process::{Pid, PidfdFlags, pidfd_open};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::time::Instant;

/// A process, told apart from a later one with the same pid by its start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcessId {
    pid: u32,
    start_time: u64,
}

/// `(parent pid, start time, state)` from `/proc/<pid>/stat`.
fn stat(pid: u32) -> Option<(u32, u64, char)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain anything; the fields after
    // the last ')' are plain: state (3), ppid (4), ..., starttime (22).
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let parent = fields.get(1)?.parse().ok()?;
    let start_time = fields.get(19)?.parse().ok()?;
    Some((parent, start_time, state))
}

/// The current children of `parent`.
pub(crate) fn children_of(parent: u32) -> Vec<ProcessId> {
    let Ok(entries) = fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| match stat(pid) {
            Some((ppid, start_time, _)) if ppid == parent => Some(ProcessId { pid, start_time }),
            _ => None,
        })
        .collect()
}

/// Gone: no such process any more, a different one under its pid, or dead and only waiting
/// to be reaped (a zombie, which holds no resources and runs nothing).
fn is_gone(process: ProcessId) -> bool {
    match stat(process.pid) {
        None => true,
        Some((_, start_time, state)) => start_time != process.start_time || matches!(state, 'Z' | 'X' | 'x'),
    }
}

/// A handle that becomes readable when `process` exits (a pidfd): the kernel's event for the
/// end of a process that is not our child. `None` when it is gone already (or the kernel has
/// no pidfds, in which case [`wait_gone`] looks instead).
fn exit_event(process: ProcessId) -> Option<AsyncFd<OwnedFd>> {
    let pid = Pid::from_raw(i32::try_from(process.pid).ok()?)?;
    let pidfd = pidfd_open(pid, PidfdFlags::NONBLOCK).ok()?;
    // The pid may have been reused between the walk of /proc and the open: the handle is the
    // process's only if the start time still matches (and then stays its own).
    if is_gone(process) {
        return None;
    }
    // Deprecated for types that may close their descriptor while registered; an `OwnedFd` owns
    // it for as long as the `AsyncFd` holds it, which is the I/O safety asked for (the new
    // constructor is `unsafe`, which this crate forbids).
    #[allow(deprecated, reason = "an OwnedFd keeps its descriptor open while registered")]
    let event = AsyncFd::with_interest(pidfd, Interest::READABLE);
    event.ok()
}

/// Waits until every one of `processes` is gone, for at most `bound`; returns whether they all
/// went. Each is awaited on its exit event (a pidfd); where the kernel offers none, it is
/// looked at every few milliseconds instead.
pub(crate) async fn wait_gone(processes: &[ProcessId], bound: Duration) -> bool {
    let deadline = Instant::now() + bound;
    for process in processes {
        let gone = async {
            match exit_event(*process) {
                Some(event) => {
                    let _ = event.readable().await;
                }
                None => {
                    while !is_gone(*process) {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
            }
        };
        if tokio::time::timeout_at(deadline, gone).await.is_err() {
            return processes.iter().all(|p| is_gone(*p));
        }
    }
    true
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn a_child_is_found_and_seen_to_go() {
        let mut child = tokio::process::Command::new("sleep").arg("30").kill_on_drop(true).spawn().unwrap();
        let pid = child.id().unwrap();
        let children = children_of(std::process::id());
        let found: Vec<_> = children.iter().filter(|c| c.pid == pid).copied().collect();
        assert_eq!(found.len(), 1, "{children:?}");
        assert!(!is_gone(found[0]));
        child.start_kill().unwrap();
        // Killed but not yet reaped (a zombie) counts as gone too.
        assert!(wait_gone(&found, Duration::from_secs(10)).await);
        child.wait().await.unwrap();
    }
}
