//! A job's life: it waits for a slot, runs its deliberation under the deadline, and stores
//! how it ended — once, even when a client cancel races its end.

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use orchestrator_domain::{Deliberation, DeliberationStatus, Role};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};

use super::admission::Admission;
use super::progress::Persisting;
use super::submission::{CancelOnDrop, JobResult};
use super::{Jobs, store_error};
use crate::error::ApplicationError;
use crate::observability;
use crate::ports::{EventKind, ProgressObserver, StoreError};

impl Jobs {
    /// Runs an admitted deliberation as a background task. `started_at_ms` is set when it
    /// resumes one that was already IN_PROGRESS.
    pub(super) fn spawn(
        self: &Arc<Self>,
        admission: Admission,
        task_id: String,
        deliberation: Deliberation,
        observer: Option<Arc<dyn ProgressObserver>>,
        started_at_ms: Option<i64>,
    ) -> (oneshot::Receiver<JobResult>, CancelOnDrop) {
        let token = CancellationToken::new();
        self.cancels.lock().unwrap_or_else(PoisonError::into_inner).insert(task_id.clone(), token.clone());
        let (tx, rx) = oneshot::channel();
        let jobs = Arc::clone(self);
        let job_token = token.clone();
        // The job outlives the request that started it; its span carries the task id to every
        // event of the run, down to each model call (a child of the caller's span, if any).
        let span = info_span!("job", task_id = %task_id);
        self.tasks.spawn(
            async move {
                let result = jobs
                    .execute(&task_id, deliberation, &job_token, observer.as_deref(), started_at_ms)
                    .await;
                jobs.cancels.lock().unwrap_or_else(PoisonError::into_inner).remove(&task_id);
                drop(admission);
                let _ = tx.send(result);
            }
            .instrument(span),
        );
        (rx, CancelOnDrop::new(token))
    }

    async fn execute(
        &self,
        task_id: &str,
        deliberation: Deliberation,
        cancel: &CancellationToken,
        observer: Option<&dyn ProgressObserver>,
        resumed_from_ms: Option<i64>,
    ) -> JobResult {
        let role = deliberation.council().role();
        let _slot = tokio::select! {
            slot = Arc::clone(&self.slots).acquire_owned() => slot.map_err(|_| self.stopping())?,
            () = cancel.cancelled() => return self.end_cancelled(task_id, role).await,
            () = self.shutdown.cancelled() => return self.end_at_shutdown(task_id, role).await,
        };
        let now = self.clock.now_ms();
        let started_at_ms = match resumed_from_ms {
            Some(started) => started,
            None => match self.store.mark_started(task_id, now).await {
                Ok(true) => now,
                Ok(false) => return Err(ApplicationError::Cancelled { task_id: task_id.to_owned() }),
                Err(error) => return Err(store_error(error)),
            },
        };
        self.emit(task_id, role, EventKind::Started).await;
        // A resumed deliberation keeps its original deadline: time already spent counts.
        let (timeout, deadline) = self.deliberate.deadline_for(&deliberation);
        let spent = Duration::from_millis(u64::try_from(now - started_at_ms).unwrap_or(0));
        if spent >= timeout {
            let error =
                ApplicationError::DeadlineExceeded { timeout, phase: deliberation.phase().to_string() };
            return self.end(task_id, role, DeliberationStatus::Timeout, error).await;
        }
        let deadline = deadline - spent;
        let _active = self
            .deliberate
            .tracker()
            .track_active(deliberation.council().role(), deliberation.council().len());
        let persisting = Persisting { jobs: self, next: observer };
        let run = self.deliberate.run(task_id, deliberation, timeout, deadline, &persisting);
        let result = tokio::select! {
            result = run => result,
            () = cancel.cancelled() => return self.end_cancelled(task_id, role).await,
            () = self.shutdown.cancelled() => return self.end_at_shutdown(task_id, role).await,
        };
        match result {
            Ok(mut report) => {
                let finished = self.clock.now_ms();
                // Resumed work counts from its first start, not from the restart.
                report.duration_ms =
                    u64::try_from(finished - started_at_ms).unwrap_or(0).max(report.duration_ms);
                let duration = i64::try_from(report.duration_ms).unwrap_or(i64::MAX);
                match self.store.complete(task_id, &report.outcome, finished, duration).await {
                    Ok(true) => {
                        observability::deliberation_ended(role, DeliberationStatus::Completed);
                        let completed = EventKind::Completed {
                            winner_id: report.outcome.winner().agent.id.to_string(),
                            results: report.outcome.results.len(),
                            duration_ms: report.duration_ms,
                        };
                        self.emit(task_id, role, completed).await;
                    }
                    Ok(false) => {
                        warn!(task_id, "deliberation finished after it was cancelled; result not stored")
                    }
                    Err(error) => error!(task_id, %error, "could not store the completed deliberation"),
                }
                Ok(report)
            }
            Err(error @ ApplicationError::DeadlineExceeded { .. }) => {
                self.end(task_id, role, DeliberationStatus::Timeout, error).await
            }
            Err(error) => self.end(task_id, role, DeliberationStatus::Failed, error).await,
        }
    }

    pub(super) fn stopping(&self) -> ApplicationError {
        ApplicationError::ShuttingDown { resumable: self.settings.resume_unfinished }
    }

    /// At shutdown a deliberation is left as saved, to resume at the next start, or ends
    /// INTERRUPTED when resuming is off.
    async fn end_at_shutdown(&self, task_id: &str, role: Role) -> JobResult {
        if self.settings.resume_unfinished {
            info!(task_id, "deliberation left to resume after restart");
            Err(self.stopping())
        } else {
            self.end(task_id, role, DeliberationStatus::Interrupted, self.stopping()).await
        }
    }

    async fn end_cancelled(&self, task_id: &str, role: Role) -> JobResult {
        self.end(
            task_id,
            role,
            DeliberationStatus::Cancelled,
            ApplicationError::Cancelled { task_id: task_id.to_owned() },
        )
        .await
    }

    /// Ends a job with `error`: stored and announced unless another end came first.
    async fn end(
        &self,
        task_id: &str,
        role: Role,
        status: DeliberationStatus,
        error: ApplicationError,
    ) -> JobResult {
        if let Err(store) = self.record_end(task_id, role, status, &error.to_string()).await {
            error!(task_id, error = %store, "could not store the end of a deliberation");
        }
        Err(error)
    }

    /// Stores an unsuccessful end and announces it — only if it applied, so an end that came
    /// first (a client cancel racing a failure, say) is announced once. Returns whether it did.
    pub(super) async fn record_end(
        &self,
        task_id: &str,
        role: Role,
        status: DeliberationStatus,
        message: &str,
    ) -> std::result::Result<bool, StoreError> {
        let applied = self.store.finish_unsuccessfully(task_id, status, message, self.clock.now_ms()).await?;
        if applied {
            observability::deliberation_ended(role, status);
            let ended = EventKind::Ended { status: status.to_string(), error: message.to_owned() };
            self.emit(task_id, role, ended).await;
        }
        Ok(applied)
    }
}
