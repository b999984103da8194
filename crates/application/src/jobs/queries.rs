//! Reading stored deliberations back, and cancelling one.

use std::sync::PoisonError;

use orchestrator_domain::DeliberationStatus;
use tracing::info;

use super::{Jobs, store_error};
use crate::error::{ApplicationError, Result};
use crate::ports::{DeliberationRecord, ListQuery, Page};

impl Jobs {
    /// Reads a stored deliberation.
    ///
    /// # Errors
    /// `NotFound` for an unknown id; `Store` on database failures.
    pub async fn get(&self, task_id: &str) -> Result<DeliberationRecord> {
        self.store
            .get(task_id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| ApplicationError::NotFound { task_id: task_id.to_owned() })
    }

    /// Pages through stored deliberations, newest first.
    ///
    /// # Errors
    /// `InvalidArgument` on a bad page token; `Store` on database failures.
    pub async fn list(&self, query: &ListQuery) -> Result<Page> {
        self.store.list(query).await.map_err(store_error)
    }

    /// Cancels a pending or running deliberation and answers its new status.
    ///
    /// # Errors
    /// `NotFound` for an unknown id; `FailedPrecondition` when it already ended.
    pub async fn cancel(&self, task_id: &str) -> Result<DeliberationStatus> {
        let record = self.get(task_id).await?;
        if record.status.is_terminal() {
            return Err(ApplicationError::FailedPrecondition(format!(
                "deliberation {task_id} already ended as {}",
                record.status
            )));
        }
        let changed = self
            .record_end(task_id, record.request.role, DeliberationStatus::Cancelled, "cancelled by a client")
            .await
            .map_err(store_error)?;
        if let Some(token) = self.cancels.lock().unwrap_or_else(PoisonError::into_inner).get(task_id) {
            token.cancel();
        }
        if changed {
            info!(task_id, "deliberation cancelled");
            Ok(DeliberationStatus::Cancelled)
        } else {
            Ok(self.get(task_id).await?.status)
        }
    }
}
