//! Stopping: no new work, the whole grace period for running work (cut short on request: a
//! second Ctrl-C), then the rest left resumable (its lease released so another node may take it
//! at once) or ended INTERRUPTED, and the writes kept for repair tried a last time — every step
//! logged.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tracing::{info, warn};

use super::Jobs;

/// How running deliberations ended at shutdown.
#[derive(Debug, Default)]
pub(super) struct Counts {
    resumable: AtomicU64,
    interrupted: AtomicU64,
}

impl Counts {
    pub(super) fn left_resumable(&self) {
        self.resumable.fetch_add(1, Ordering::SeqCst);
    }

    pub(super) fn interrupted(&self) {
        self.interrupted.fetch_add(1, Ordering::SeqCst);
    }
}

/// What [`Jobs::shutdown`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Whether every deliberation finished within the grace period.
    pub drained: bool,
    /// Deliberations stopped at the end of the grace period and left to resume.
    pub left_resumable: u64,
    /// Deliberations stopped at the end of the grace period and stored INTERRUPTED.
    pub interrupted: u64,
    /// Writes that still could not reach the store (their rows resume at the next start).
    pub unrepaired: usize,
}

impl ShutdownReport {
    /// What the shutdown did, in words that match its numbers (for the last log line).
    pub fn summary(&self) -> String {
        if self.drained {
            return "every deliberation finished within the grace period".to_owned();
        }
        let mut stopped = Vec::new();
        if self.left_resumable > 0 {
            stopped.push(format!("{} left to resume at the next start", self.left_resumable));
        }
        if self.interrupted > 0 {
            stopped.push(format!("{} stored INTERRUPTED", self.interrupted));
        }
        if stopped.is_empty() {
            stopped.push("none was running".to_owned());
        }
        let mut summary = format!("deliberations stopped before they finished: {}", stopped.join(", "));
        if self.unrepaired > 0 {
            summary
                .push_str(&format!("; {} write(s) not stored, resumed at the next start", self.unrepaired));
        }
        summary
    }
}

/// Why running deliberations were stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waited {
    /// Every one finished within the grace period.
    Drained,
    /// The grace period ran out.
    GraceOver,
    /// Stopping at once was asked for before it ran out.
    CutShort,
}

impl Jobs {
    /// Stops taking work, lets running deliberations finish for up to `grace`, then stops the
    /// rest: left as saved to resume at the next start (leases released), or INTERRUPTED when
    /// resuming is off. Returns once every deliberation task has ended and its end is stored.
    pub async fn shutdown(&self, grace: Duration) -> ShutdownReport {
        self.shutdown_unless_sooner(grace, std::future::pending()).await
    }

    /// [`Jobs::shutdown`], with the grace period cut short when `now` resolves first (a
    /// second Ctrl-C or SIGTERM): running deliberations stop at once, as at the end of the
    /// grace period.
    pub async fn shutdown_unless_sooner(
        &self,
        grace: Duration,
        now: impl Future<Output = ()>,
    ) -> ShutdownReport {
        self.draining.cancel();
        self.tasks.close();
        let running = self.admitted.total();
        info!(
            running,
            grace_secs = grace.as_secs(),
            "shutdown: refusing new deliberations; waiting for running ones"
        );
        let waited = tokio::select! {
            finished = tokio::time::timeout(grace, self.tasks.wait()) => {
                if finished.is_ok() { Waited::Drained } else { Waited::GraceOver }
            }
            () = now => Waited::CutShort,
        };
        let drained = waited == Waited::Drained;
        if drained {
            info!("shutdown: every deliberation finished within the grace period");
        } else {
            let left = self.admitted.total();
            let why = match waited {
                Waited::CutShort => "asked to stop at once",
                _ => "grace period over",
            };
            if self.settings.resume_unfinished {
                warn!(
                    left,
                    grace_secs = grace.as_secs(),
                    "shutdown: {why}; stopping deliberations to resume at the next start"
                );
            } else {
                warn!(left, grace_secs = grace.as_secs(), "shutdown: {why}; interrupting deliberations");
            }
            self.shutdown.cancel();
            self.tasks.wait().await;
        }
        let unrepaired = self.repair().await;
        if unrepaired > 0 {
            warn!(
                unrepaired,
                "shutdown: writes still not stored; their deliberations resume at the next start"
            );
        }
        if self.settings.resume_unfinished {
            self.release_leases().await;
        }
        let report = ShutdownReport {
            drained,
            left_resumable: self.shutdown_counts.resumable.load(Ordering::SeqCst),
            interrupted: self.shutdown_counts.interrupted.load(Ordering::SeqCst),
            unrepaired,
        };
        info!(?report, "shutdown: deliberations stopped");
        self.stopped.cancel();
        report
    }

    /// Waits until every deliberation task has ended (tests synchronise on this event).
    #[cfg(test)]
    pub(super) async fn until_idle(&self) {
        self.tasks.close();
        self.tasks.wait().await;
        self.tasks.reopen();
    }

    /// Whether shutdown has begun (new deliberations are refused).
    pub fn is_draining(&self) -> bool {
        self.draining.is_cancelled()
    }
}
