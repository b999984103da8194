//! Reading stored deliberations back, and cancelling one.

use std::sync::PoisonError;

use orchestrator_domain::{DeliberationStatus, TaskId};
use tracing::info;

use super::{Jobs, store_error};
use crate::caller::Caller;
use crate::error::{ApplicationError, Result};
use crate::ports::{DeliberationRecord, ListQuery, Page, StoredSelection};

impl Jobs {
    /// Reads a stored deliberation of the caller's (any, for an admin).
    ///
    /// # Errors
    /// `NotFound` for an unknown id and for another principal's — the same answer, so ids
    /// cannot be probed; `Store` on database failures.
    pub async fn get(&self, caller: &Caller, task_id: &TaskId) -> Result<DeliberationRecord> {
        self.store
            .get(task_id)
            .await
            .map_err(store_error)?
            .filter(|record| caller.may_access(&record.request.principal))
            .ok_or_else(|| ApplicationError::NotFound { task_id: task_id.to_owned() })
    }

    /// Pages through the caller's stored deliberations (everyone's, for an admin), newest first.
    ///
    /// # Errors
    /// `InvalidArgument` on a bad page token; `Store` on database failures.
    pub async fn list(&self, caller: &Caller, query: &ListQuery) -> Result<Page> {
        let mut query = query.clone();
        if !caller.is_admin() {
            query.principal = Some(caller.principal().to_owned());
        }
        self.store.list(&query).await.map_err(store_error)
    }

    /// Cancels a pending or running deliberation of the caller's and answers its new status.
    ///
    /// # Errors
    /// `NotFound` for an unknown id or another principal's; `FailedPrecondition` when it
    /// already ended.
    pub async fn cancel(&self, caller: &Caller, task_id: &TaskId) -> Result<DeliberationStatus> {
        let record = self.get(caller, task_id).await?;
        if record.status.is_terminal() {
            return Err(ApplicationError::FailedPrecondition(format!(
                "deliberation {task_id} already ended as {}",
                record.status
            )));
        }
        let changed = self
            .record_end(
                &record.request,
                record.started_at_ms,
                None,
                DeliberationStatus::Cancelled,
                "cancelled by a client",
            )
            .await
            .map_err(store_error)?;
        if let Some(run) = self.runs.lock().unwrap_or_else(PoisonError::into_inner).get(task_id) {
            run.cancel.cancel();
        }
        if changed {
            info!(task_id = %task_id, "deliberation cancelled");
            Ok(DeliberationStatus::Cancelled)
        } else {
            Ok(self.get(caller, task_id).await?.status)
        }
    }

    /// Stores how Orchestrate chose the winner of a completed deliberation; `false` when a
    /// choice was stored already (the first one stays).
    ///
    /// # Errors
    /// `Store` on database failures.
    pub async fn save_selection(&self, task_id: &TaskId, selection: &StoredSelection) -> Result<bool> {
        self.store.save_selection(task_id, selection).await.map_err(store_error)
    }
}
