//! The writes that end or save a deliberation, made to land.
//!
//! A deliberation's end (COMPLETED with its results, or FAILED/TIMEOUT/CANCELLED/INTERRUPTED)
//! and its saved phases are retried with exponential back-off while the store answers
//! `Unavailable`, for up to [`super::JobSettings::write_retry`]. A write that still has not
//! landed is kept in memory for repair: the store probe ([`super::health`]) applies it once the
//! store answers again, and shutdown tries once more. Meanwhile the row stays this node's
//! (its lease is renewed like any running deliberation's), so no other node re-runs it, and
//! the caller is told UNAVAILABLE — never OK for a result that is not stored.

use std::sync::PoisonError;
use std::time::Duration;

use orchestrator_domain::{Deliberation, DeliberationOutcome, DeliberationStatus, Role, TaskId};
use tokio::time::Instant;
use tracing::{info, warn};

use super::Jobs;
use crate::observability;
use crate::ports::{DeliberationEvent, Fence, StoreError, UnsuccessfulEnd};

/// First pause between attempts; doubled after each, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// What to write.
#[derive(Debug, Clone)]
pub(super) enum Write {
    /// IN_PROGRESS → COMPLETED with the ranked outcome.
    Complete { outcome: DeliberationOutcome, finished_at_ms: i64, duration_ms: i64 },
    /// An unsuccessful end, with the results a TIMEOUT had.
    End {
        status: DeliberationStatus,
        message: String,
        finished_at_ms: i64,
        duration_ms: Option<i64>,
        partial: Option<DeliberationOutcome>,
    },
    /// The deliberation as it stands after a phase.
    Progress(Box<Deliberation>),
}

impl Write {
    fn is_final(&self) -> bool {
        !matches!(self, Write::Progress(_))
    }
}

/// A write with what it needs to be made (and announced) later.
#[derive(Debug, Clone)]
pub(super) struct PendingWrite {
    pub(super) fence: Option<Fence>,
    pub(super) role: Role,
    pub(super) write: Write,
    /// The event announcing it, stored with it (when events are announced).
    pub(super) event: Option<DeliberationEvent>,
}

/// Why a write did not land.
#[derive(Debug)]
pub(super) enum NotWritten {
    /// Retried for the whole budget; kept for repair.
    KeptForRepair(StoreError),
    /// Refused for good (lease lost, corrupt row): retrying does not help.
    Refused(StoreError),
}

impl Jobs {
    /// One attempt at `pending`, its event stored with it; `Ok(false)` when the lifecycle
    /// refused it (another end came first), and then its event is not stored either.
    async fn apply(&self, task_id: &TaskId, pending: &PendingWrite) -> Result<bool, StoreError> {
        let applied = self.apply_write(task_id, pending).await?;
        if applied {
            self.announced(pending.event.as_ref());
        }
        Ok(applied)
    }

    async fn apply_write(&self, task_id: &TaskId, pending: &PendingWrite) -> Result<bool, StoreError> {
        let fence = pending.fence.as_ref();
        let event = pending.event.as_ref();
        match &pending.write {
            Write::Progress(deliberation) => match fence {
                Some(fence) => self.store.save_progress(task_id, fence, deliberation, event).await,
                None => Ok(false),
            },
            Write::Complete { outcome, finished_at_ms, duration_ms } => {
                let Some(fence) = fence else { return Ok(false) };
                let applied = self
                    .store
                    .complete(task_id, fence, outcome, *finished_at_ms, *duration_ms, event)
                    .await?;
                if applied {
                    observability::deliberation_ended(pending.role, DeliberationStatus::Completed);
                }
                Ok(applied)
            }
            Write::End { status, message, finished_at_ms, duration_ms, partial } => {
                let end = UnsuccessfulEnd {
                    status: *status,
                    error: message,
                    finished_at_ms: *finished_at_ms,
                    duration_ms: *duration_ms,
                    partial: partial.as_ref(),
                };
                let applied = self.store.finish_unsuccessfully(task_id, fence, &end, event).await?;
                if applied {
                    observability::deliberation_ended(pending.role, *status);
                }
                Ok(applied)
            }
        }
    }

    /// Makes `pending` land: retried with back-off while the store is unavailable, for up to
    /// `write_retry`; then kept for repair.
    pub(super) async fn write_durably(
        &self,
        task_id: &TaskId,
        pending: PendingWrite,
    ) -> Result<bool, NotWritten> {
        let give_up_at = Instant::now() + self.settings.write_retry;
        let mut backoff = FIRST_BACKOFF;
        let mut attempts = 0_u32;
        loop {
            attempts += 1;
            match self.apply(task_id, &pending).await {
                Ok(applied) => {
                    if attempts > 1 {
                        info!(task_id = %task_id, attempts, "stored after retrying");
                    }
                    return Ok(applied);
                }
                Err(error @ StoreError::Unavailable { .. }) => {
                    let now = Instant::now();
                    if now >= give_up_at || (self.shutdown.is_cancelled() && attempts > 1) {
                        warn!(
                            task_id = %task_id,
                            attempts,
                            error = &error as &dyn std::error::Error,
                            "could not store; kept to store when storage returns"
                        );
                        self.keep_for_repair(task_id, pending);
                        return Err(NotWritten::KeptForRepair(error));
                    }
                    warn!(task_id = %task_id, attempts, retry_in_ms = backoff.as_millis() as u64, %error, "store unavailable; retrying");
                    tokio::time::sleep(backoff.min(give_up_at - now)).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(error) => {
                    warn!(task_id = %task_id, error = &error as &dyn std::error::Error, "write refused");
                    return Err(NotWritten::Refused(error));
                }
            }
        }
    }

    /// Keeps `pending` for the next repair; an end replaces a saved phase, never the reverse.
    fn keep_for_repair(&self, task_id: &TaskId, pending: PendingWrite) {
        let mut repairs = self.repairs.lock().unwrap_or_else(PoisonError::into_inner);
        let keep = repairs.get(task_id).is_none_or(|kept| pending.write.is_final() || !kept.write.is_final());
        if keep {
            repairs.insert(task_id.to_owned(), pending);
        }
    }

    /// The task ids with a write kept for repair.
    pub(super) fn repair_ids(&self) -> Vec<TaskId> {
        self.repairs.lock().unwrap_or_else(PoisonError::into_inner).keys().cloned().collect()
    }

    /// Tries every write kept for repair once; returns how many are still pending.
    pub(super) async fn repair(&self) -> usize {
        let pending: Vec<(TaskId, PendingWrite)> =
            self.repairs.lock().unwrap_or_else(PoisonError::into_inner).drain().collect();
        let mut left = 0;
        for (task_id, write) in pending {
            match self.apply(&task_id, &write).await {
                Ok(applied) => {
                    info!(task_id = %task_id, applied, "repaired: the kept write reached the store")
                }
                Err(error @ StoreError::Unavailable { .. }) => {
                    warn!(task_id = %task_id, %error, "repair failed; kept for the next attempt");
                    self.keep_for_repair(&task_id, write);
                    left += 1;
                }
                Err(error) => {
                    warn!(task_id = %task_id, error = &error as &dyn std::error::Error, "repair refused; dropped")
                }
            }
        }
        left
    }
}
