//! A job's life: it waits for a slot, runs its deliberation under the deadline, and stores
//! how it ended — once, even when a client cancel races its end, and only under this node's
//! lease (see [`crate::ports::Fence`]).

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use orchestrator_domain::{Deliberation, DeliberationOutcome, DeliberationStatus, Role, TaskId};
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use tracing::{Instrument, info, info_span, warn};

use super::admission::Admission;
use super::durable_writes::{NotWritten, PendingWrite, Write};
use super::progress::Persisting;
use super::submission::{CancelOnDrop, JobResult};
use super::watch::Broadcast;
use super::{Jobs, RunHandle, store_error};
use crate::error::ApplicationError;
use crate::ports::{EventKind, Fence, NewDeliberation, ProgressObserver, StoreError};

/// Where a job stands when it ends: its identity, its claim, and when it started (if it did).
struct Job<'a> {
    task_id: &'a TaskId,
    story_id: Option<&'a str>,
    role: Role,
    fence: &'a Fence,
    created_at_ms: i64,
    started_at_ms: Option<i64>,
}

/// The `duration_ms` stored with an end, so that every terminal status carries one: how long
/// it ran (finished − started) when it started, how long it existed (finished − created)
/// when it ended before starting (cancelled or interrupted while queued). At least 1 ms, so a
/// stored duration is never read as "none".
pub(super) fn end_duration_ms(created_at_ms: i64, started_at_ms: Option<i64>, finished_at_ms: i64) -> i64 {
    (finished_at_ms - started_at_ms.unwrap_or(created_at_ms)).max(1)
}

/// The state a run starts from, as stored.
#[derive(Debug)]
pub(super) enum StartFrom {
    /// PENDING: the run waits for a slot, then marks itself started.
    Pending,
    /// IN_PROGRESS since `started_at_ms` (resumed after a restart or a takeover): the run waits
    /// for a slot.
    Resumed { started_at_ms: i64 },
    /// Stored IN_PROGRESS at `started_at_ms` with `slot` already taken: it runs at once.
    Started { started_at_ms: i64, slot: OwnedSemaphorePermit },
}

impl Jobs {
    /// Registers `task_id` as run by this node before its row is created or claimed, so that
    /// neither a lease renewal nor a takeover of this node's own work races its start.
    pub(super) fn register(&self, task_id: &TaskId, story_id: Option<String>) -> Arc<RunHandle> {
        let handle = Arc::new(RunHandle::new(story_id));
        self.runs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(task_id.to_owned(), Arc::clone(&handle));
        handle
    }

    pub(super) fn unregister(&self, task_id: &TaskId) {
        self.runs.lock().unwrap_or_else(PoisonError::into_inner).remove(task_id);
    }

    /// The task ids this node runs, or holds a write for: never claimed again while here.
    pub(super) fn held_locally(&self) -> Vec<TaskId> {
        let mut ids: Vec<TaskId> =
            self.runs.lock().unwrap_or_else(PoisonError::into_inner).keys().cloned().collect();
        ids.extend(self.repair_ids());
        ids
    }

    /// Runs an admitted deliberation, submitted at `created_at_ms`, as a background task under
    /// `fence`, from the state `start` says it is stored in.
    #[allow(clippy::too_many_arguments, reason = "one call site per entry point, each field distinct")]
    pub(super) fn spawn(
        self: &Arc<Self>,
        admission: Admission,
        task_id: TaskId,
        handle: Arc<RunHandle>,
        fence: Fence,
        deliberation: Deliberation,
        observer: Option<Arc<dyn ProgressObserver>>,
        created_at_ms: i64,
        start: StartFrom,
    ) -> (oneshot::Receiver<JobResult>, CancelOnDrop) {
        handle.held_now();
        let (tx, rx) = oneshot::channel();
        let jobs = Arc::clone(self);
        let guard = CancelOnDrop::new(handle.cancel.clone());
        // The job outlives the request that started it; its span carries the task id to every
        // event of the run, down to each model call (a child of the caller's span, if any).
        let span = info_span!("job", task_id = %task_id);
        self.tasks.spawn(
            async move {
                let result = jobs
                    .execute(
                        &task_id,
                        admission.principal(),
                        deliberation,
                        &handle,
                        &fence,
                        observer.as_deref(),
                        created_at_ms,
                        start,
                    )
                    .await;
                jobs.unregister(&task_id);
                drop(admission);
                let _ = tx.send(result);
                jobs.take_shared_work().await;
            }
            .instrument(span),
        );
        (rx, guard)
    }

    #[allow(clippy::too_many_arguments, reason = "the parts of one admitted run, each distinct")]
    async fn execute(
        &self,
        task_id: &TaskId,
        principal: &str,
        deliberation: Deliberation,
        handle: &RunHandle,
        fence: &Fence,
        observer: Option<&dyn ProgressObserver>,
        created_at_ms: i64,
        start: StartFrom,
    ) -> JobResult {
        let role = deliberation.council().role();
        let story_id = handle.story_id.as_deref();
        let (slot, resumed_from_ms) = match start {
            StartFrom::Pending => (None, None),
            StartFrom::Resumed { started_at_ms } => (None, Some(started_at_ms)),
            StartFrom::Started { started_at_ms, slot } => (Some(slot), Some(started_at_ms)),
        };
        let mut job = Job { task_id, story_id, role, fence, created_at_ms, started_at_ms: resumed_from_ms };
        let _slot = match slot {
            Some(slot) => slot,
            None => tokio::select! {
                slot = Arc::clone(&self.slots).acquire_owned() => slot.map_err(|_| self.stopping())?,
                () = handle.cancel.cancelled() => return self.end_cancelled(&job).await,
                () = self.shutdown.cancelled() => return self.end_at_shutdown(&job).await,
                () = handle.lease_lost.cancelled() => return Err(self.lease_lost(task_id)),
            },
        };
        let now = self.clock.now_ms();
        let started_at_ms = match resumed_from_ms {
            Some(started) => started,
            None => match self.mark_started(task_id, story_id, role, fence, now).await {
                Ok(true) => now,
                Ok(false) => return Err(ApplicationError::Cancelled { task_id: task_id.to_owned() }),
                // The row stays PENDING and this node's: the lease renewal keeps it, and the
                // takeover of this node's own unstarted work runs it once the store answers.
                Err(error) => return Err(store_error(error)),
            },
        };
        job.started_at_ms = Some(started_at_ms);
        // Watchers read the state it started in.
        let _ = handle.live.send(super::watch::LiveEvent::Stored);
        // A resumed deliberation keeps its original deadline: time already spent counts.
        let (timeout, deadline) = self.deliberate.deadline_for(&deliberation);
        let spent = Duration::from_millis(u64::try_from(now - started_at_ms).unwrap_or(0));
        if spent >= timeout {
            let error =
                ApplicationError::DeadlineExceeded { timeout, phase: deliberation.phase(), partial: None };
            return self.end(&job, DeliberationStatus::Timeout, error).await;
        }
        let deadline = deadline - spent;
        let _active = self.deliberate.counters().track_active(
            principal,
            deliberation.council().role(),
            deliberation.council().len(),
        );
        let persisting = Persisting {
            jobs: self,
            fence,
            lease_lost: &handle.lease_lost,
            live: Broadcast { live: &handle.live, phase_steps: &handle.phase_steps },
            story_id,
            next: observer,
        };
        let run = self.deliberate.run(task_id, principal, deliberation, timeout, deadline, &persisting);
        let result = tokio::select! {
            result = run => result,
            () = handle.cancel.cancelled() => return self.end_cancelled(&job).await,
            () = self.shutdown.cancelled() => return self.end_at_shutdown(&job).await,
            () = handle.lease_lost.cancelled() => return Err(self.lease_lost(task_id)),
        };
        match result {
            Ok(mut report) => {
                let finished = self.clock.now_ms();
                // Resumed work counts from its first start, not from the restart.
                report.duration_ms =
                    u64::try_from(finished - started_at_ms).unwrap_or(0).max(report.duration_ms).max(1);
                let duration_ms = i64::try_from(report.duration_ms).unwrap_or(i64::MAX);
                let completed = EventKind::completed(&report.outcome, report.duration_ms);
                let event = self.event(task_id, story_id, role, completed);
                let write = Write::Complete {
                    outcome: report.outcome.clone(),
                    finished_at_ms: finished,
                    duration_ms,
                };
                let pending = PendingWrite { fence: Some(fence.clone()), role, write, event };
                match self.write_durably(task_id, pending).await {
                    Ok(true) => Ok(report),
                    Ok(false) => {
                        warn!(task_id = %task_id, "deliberation finished after it was cancelled; result not stored");
                        Err(ApplicationError::Cancelled { task_id: task_id.to_owned() })
                    }
                    Err(not_written) => Err(self.not_stored(task_id, not_written)),
                }
            }
            Err(error @ ApplicationError::DeadlineExceeded { .. }) => {
                self.end(&job, DeliberationStatus::Timeout, error).await
            }
            Err(error) => self.end(&job, DeliberationStatus::Failed, error).await,
        }
    }

    pub(super) fn stopping(&self) -> ApplicationError {
        ApplicationError::ShuttingDown { resumable: self.settings.resume_unfinished }
    }

    fn lease_lost(&self, task_id: &TaskId) -> ApplicationError {
        warn!(task_id = %task_id, "lease lost: another node holds this deliberation; stopped the local run");
        ApplicationError::LeaseLost { task_id: task_id.to_owned() }
    }

    /// PENDING → IN_PROGRESS under `fence`, with its `started` event.
    async fn mark_started(
        &self,
        task_id: &TaskId,
        story_id: Option<&str>,
        role: Role,
        fence: &Fence,
        now: i64,
    ) -> std::result::Result<bool, StoreError> {
        let event = self.event(task_id, story_id, role, EventKind::Started);
        let started = self.store.mark_started(task_id, fence, now, event.as_ref()).await?;
        if started {
            self.announced(event.as_ref());
        }
        Ok(started)
    }

    /// What the caller hears when a write did not land.
    fn not_stored(&self, task_id: &TaskId, not_written: NotWritten) -> ApplicationError {
        match not_written {
            NotWritten::KeptForRepair(_) => ApplicationError::ResultNotStored { task_id: task_id.to_owned() },
            NotWritten::Refused(StoreError::LeaseLost { .. }) => self.lease_lost(task_id),
            NotWritten::Refused(error) => store_error(error),
        }
    }

    /// At shutdown a deliberation is left as saved, to resume at the next start, or ends
    /// INTERRUPTED when resuming is off.
    async fn end_at_shutdown(&self, job: &Job<'_>) -> JobResult {
        if self.settings.resume_unfinished {
            info!(task_id = %job.task_id, "deliberation left to resume after restart");
            self.shutdown_counts.left_resumable();
            Err(self.stopping())
        } else {
            let ended = self.end(job, DeliberationStatus::Interrupted, self.stopping()).await;
            self.shutdown_counts.interrupted();
            ended
        }
    }

    async fn end_cancelled(&self, job: &Job<'_>) -> JobResult {
        let cancelled = ApplicationError::Cancelled { task_id: job.task_id.clone() };
        self.end(job, DeliberationStatus::Cancelled, cancelled).await
    }

    /// Ends a job with `error`: stored (retried, or kept for repair) and announced unless
    /// another end came first. A TIMEOUT keeps the partial results the error carries.
    async fn end(&self, job: &Job<'_>, status: DeliberationStatus, error: ApplicationError) -> JobResult {
        let finished_at_ms = self.clock.now_ms();
        let partial = match &error {
            ApplicationError::DeadlineExceeded { partial, .. } => partial.as_deref().cloned(),
            _ => None,
        };
        let message = error.to_string();
        let ended = EventKind::Ended { status: status.to_string(), error: message.clone() };
        let event = self.event(job.task_id, job.story_id, job.role, ended);
        let write = Write::End {
            status,
            message,
            finished_at_ms,
            duration_ms: Some(end_duration_ms(job.created_at_ms, job.started_at_ms, finished_at_ms)),
            partial,
        };
        let pending = PendingWrite { fence: Some(job.fence.clone()), role: job.role, write, event };
        match self.write_durably(job.task_id, pending).await {
            Ok(_) => Err(error),
            Err(NotWritten::Refused(StoreError::LeaseLost { .. })) => Err(self.lease_lost(job.task_id)),
            Err(_) => Err(error),
        }
    }

    /// Stores an unsuccessful end and announces it — only if it applied, so an end that came
    /// first (a client cancel racing a failure, say) is announced once. Returns whether it did.
    /// `fence`: `None` for a client's cancel, which any node may store. `started_at_ms`: when
    /// it started, if it did (see [`end_duration_ms`]).
    pub(super) async fn record_end(
        &self,
        request: &NewDeliberation,
        started_at_ms: Option<i64>,
        fence: Option<&Fence>,
        status: DeliberationStatus,
        message: &str,
    ) -> std::result::Result<bool, StoreError> {
        let (task_id, role) = (&request.task_id, request.role);
        let ended = EventKind::Ended { status: status.to_string(), error: message.to_owned() };
        let event = self.event(task_id, request.story_id.as_deref(), role, ended);
        let finished_at_ms = self.clock.now_ms();
        let write = Write::End {
            status,
            message: message.to_owned(),
            finished_at_ms,
            duration_ms: Some(end_duration_ms(request.created_at_ms, started_at_ms, finished_at_ms)),
            partial: None::<DeliberationOutcome>,
        };
        let pending = PendingWrite { fence: fence.cloned(), role, write, event };
        match self.write_durably(task_id, pending).await {
            Ok(applied) => Ok(applied),
            Err(NotWritten::KeptForRepair(error) | NotWritten::Refused(error)) => Err(error),
        }
    }
}
