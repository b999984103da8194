//! Durable deliberations: submit, poll, list, cancel — bounded, persisted phase by phase.
//!
//! Every deliberation, synchronous or not, runs as a job: it is stored PENDING before anything
//! runs, waits for one of `max_running` slots (at most `queue_capacity` wait; beyond that
//! submissions are refused with `ResourceExhausted`), is saved after every phase, and ends
//! COMPLETED, FAILED, TIMEOUT, CANCELLED or INTERRUPTED. A crash loses at most the phase in
//! flight: on the next start [`Jobs::recover`] resumes what the dead process left unfinished
//! from its last saved phase, within what is left of its deadline (or marks it INTERRUPTED
//! when resuming is turned off or impossible).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use orchestrator_domain::{Deliberation, DeliberationStatus, Phase, Role, Rounds};
use tokio::sync::{Semaphore, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::deliberate::{Deliberate, DeliberateCommand, DeliberationReport};
use crate::error::{ApplicationError, Result};
use crate::ports::{
    Clock, DeliberationEvent, DeliberationRecord, DeliberationStore, EventKind, EventPublisher, Lease,
    ListQuery, NewDeliberation, Page, ProgressObserver, StoreError,
};

/// Limits on work in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSettings {
    /// Deliberations running at once.
    pub max_running: usize,
    /// Deliberations waiting for a slot before submissions are refused.
    pub queue_capacity: usize,
    /// Resume what a stopped process left unfinished from its last saved phase (and leave
    /// running work resumable on shutdown); when false, such work ends INTERRUPTED.
    pub resume_unfinished: bool,
    /// This server's name among the servers sharing a database; a restart under the same name
    /// takes back its unfinished work at once. Two live servers must not share one.
    pub node_id: String,
    /// How long this node's claim on its unfinished deliberations holds without renewal;
    /// another node takes them over once it runs out.
    pub lease: Duration,
}

impl Default for JobSettings {
    fn default() -> Self {
        Self {
            max_running: 8,
            queue_capacity: 256,
            resume_unfinished: true,
            node_id: "orchestrator".to_owned(),
            lease: Duration::from_secs(30),
        }
    }
}

/// What [`Jobs::recover`] did with the deliberations a stopped process left unfinished.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovery {
    pub resumed: u64,
    pub interrupted: u64,
}

/// Why a stored deliberation cannot be resumed here.
const STOPPED: &str = "the server stopped before this deliberation finished";

/// What a submission did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    pub task_id: String,
    pub status: DeliberationStatus,
    /// `false` when the task id existed and nothing new was started.
    pub created: bool,
}

/// A submitted job's result, for callers that wait for it.
pub type JobResult = Result<DeliberationReport>;

/// Cancels its job when dropped unless disarmed: a synchronous caller that goes away takes
/// its deliberation with it instead of leaving work nobody waits for.
#[derive(Debug)]
pub struct CancelOnDrop {
    token: Option<CancellationToken>,
}

impl CancelOnDrop {
    /// Keeps the job running after this guard is dropped.
    pub fn disarm(mut self) {
        self.token = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(token) = self.token.take() {
            token.cancel();
        }
    }
}

fn store_error(error: StoreError) -> ApplicationError {
    match error {
        StoreError::InvalidCursor => ApplicationError::InvalidArgument {
            field: "page_token".into(),
            reason: "invalid page token".into(),
        },
        StoreError::NotFound { task_id } => ApplicationError::NotFound { task_id },
        source => ApplicationError::Store { source },
    }
}

/// One admitted deliberation; dropping it gives the place back.
#[derive(Debug)]
struct Admission(Arc<AtomicUsize>);

impl Drop for Admission {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Saves each phase, announces it, then passes it on to the caller's observer.
struct Persisting<'a> {
    jobs: &'a Jobs,
    next: Option<&'a (dyn ProgressObserver + 'a)>,
}

#[async_trait]
impl ProgressObserver for Persisting<'_> {
    async fn phase_completed(&self, task_id: &str, deliberation: &Deliberation) {
        if let Err(error) = self.jobs.store.save_progress(task_id, deliberation).await {
            warn!(task_id, %error, "could not save deliberation progress");
        }
        let phase = EventKind::PhaseCompleted { phase: deliberation.phase().to_string() };
        self.jobs.emit(task_id, deliberation.council().role(), phase).await;
        if let Some(next) = self.next {
            next.phase_completed(task_id, deliberation).await;
        }
    }
}

/// The job runner and the queries over stored deliberations.
pub struct Jobs {
    deliberate: Arc<Deliberate>,
    store: Arc<dyn DeliberationStore>,
    clock: Arc<dyn Clock>,
    events: Option<Arc<dyn EventPublisher>>,
    settings: JobSettings,
    slots: Arc<Semaphore>,
    /// Deliberations admitted and not yet ended (running or waiting for a slot).
    admitted: Arc<AtomicUsize>,
    cancels: Mutex<HashMap<String, CancellationToken>>,
    shutdown: CancellationToken,
    /// Ends [`Jobs::maintain`] once shutdown has finished.
    stopped: CancellationToken,
    tasks: TaskTracker,
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jobs")
            .field("settings", &self.settings)
            .field("admitted", &self.admitted.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Jobs {
    pub fn new(
        deliberate: Arc<Deliberate>,
        store: Arc<dyn DeliberationStore>,
        clock: Arc<dyn Clock>,
        settings: JobSettings,
    ) -> Self {
        let settings = JobSettings {
            max_running: settings.max_running.max(1),
            lease: settings.lease.max(Duration::from_millis(30)),
            ..settings
        };
        Self {
            deliberate,
            store,
            clock,
            events: None,
            slots: Arc::new(Semaphore::new(settings.max_running)),
            settings,
            admitted: Arc::new(AtomicUsize::new(0)),
            cancels: Mutex::new(HashMap::new()),
            shutdown: CancellationToken::new(),
            stopped: CancellationToken::new(),
            tasks: TaskTracker::new(),
        }
    }

    /// Publishes lifecycle events (submitted, started, each phase, completed, ended) here.
    #[must_use]
    pub fn with_events(mut self, events: Arc<dyn EventPublisher>) -> Self {
        self.events = Some(events);
        self
    }

    async fn emit(&self, task_id: &str, role: Role, kind: EventKind) {
        if let Some(events) = &self.events {
            let event =
                DeliberationEvent { task_id: task_id.to_owned(), role, at_ms: self.clock.now_ms(), kind };
            events.publish(&event).await;
        }
    }

    pub fn deliberate(&self) -> &Arc<Deliberate> {
        &self.deliberate
    }

    /// Deals with deliberations a stopped process left PENDING or IN_PROGRESS: resumes each
    /// from its last saved phase (a PENDING one, or one that saved no phase, starts over),
    /// or marks it INTERRUPTED when resuming is off, no backend is configured, or its model
    /// profiles are gone.
    ///
    /// # Errors
    /// `Store` when the database fails.
    pub async fn recover(self: &Arc<Self>) -> Result<Recovery> {
        self.take_over(true).await
    }

    /// Claims what is unclaimed or whose owner's lease ran out — with `include_own`, also what
    /// this node held before a restart — and resumes it (or ends it INTERRUPTED).
    async fn take_over(self: &Arc<Self>, include_own: bool) -> Result<Recovery> {
        let now = self.clock.now_ms();
        let claimed =
            self.store.claim_unfinished(&self.lease(now), now, include_own).await.map_err(store_error)?;
        let mut recovery = Recovery::default();
        for record in claimed {
            let task_id = record.request.task_id.clone();
            let restored = if !self.settings.resume_unfinished {
                Err(None)
            } else if !self.deliberate.backend_configured() {
                Err(Some("no LLM backend is configured".to_owned()))
            } else {
                self.restore(&record).map_err(|e| Some(e.to_string()))
            };
            match restored {
                Ok(deliberation) => {
                    let started_at_ms = match record.status {
                        DeliberationStatus::InProgress => record.started_at_ms.or(Some(now)),
                        _ => None,
                    };
                    info!(task_id, phase = %deliberation.phase(), "resuming deliberation");
                    let (admission, _) = self.admit();
                    let (_result, guard) = self.spawn(admission, task_id, deliberation, None, started_at_ms);
                    guard.disarm();
                    recovery.resumed += 1;
                }
                Err(reason) => {
                    let message = match reason {
                        None => STOPPED.to_owned(),
                        Some(reason) => {
                            warn!(task_id, %reason, "cannot resume deliberation");
                            format!("{STOPPED}; not resumed: {reason}")
                        }
                    };
                    let interrupted = self
                        .record_end(&task_id, record.request.role, DeliberationStatus::Interrupted, &message)
                        .await
                        .map_err(store_error)?;
                    if interrupted {
                        recovery.interrupted += 1;
                    }
                }
            }
        }
        if recovery.interrupted > 0 {
            warn!(interrupted = recovery.interrupted, "marked unfinished deliberations INTERRUPTED");
        }
        Ok(recovery)
    }

    /// This node's lease, as renewed at `now_ms`.
    fn lease(&self, now_ms: i64) -> Lease {
        let ms = i64::try_from(self.settings.lease.as_millis()).unwrap_or(i64::MAX);
        Lease { owner: self.settings.node_id.clone(), until_ms: now_ms.saturating_add(ms) }
    }

    /// Keeps this node's leases alive and takes over what other nodes left when their lease
    /// ran out, every third of a lease, until [`Jobs::shutdown`] has finished. Run it as a
    /// background task beside the server.
    pub async fn maintain(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.settings.lease / 3);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = self.stopped.cancelled() => return,
            }
            let now = self.clock.now_ms();
            if let Err(error) = self.store.renew_leases(&self.lease(now)).await {
                warn!(%error, "could not renew deliberation leases");
            }
            if !self.tasks.is_closed()
                && let Err(error) = self.take_over(false).await
            {
                warn!(%error, "could not take over deliberations of other nodes");
            }
        }
    }

    /// The deliberation to continue: the saved one, or a new one from the stored request.
    fn restore(&self, record: &DeliberationRecord) -> Result<Deliberation> {
        if let Some(saved) = record.progress.as_ref().filter(|d| d.phase() != Phase::Completed) {
            let backend = self.deliberate.backend()?;
            if let Some(agent) = saved.council().agents().iter().find(|a| !backend.has_profile(&a.profile)) {
                return Err(ApplicationError::FailedPrecondition(format!(
                    "model profile \"{}\" is no longer configured",
                    agent.profile
                )));
            }
            return Ok(saved.clone());
        }
        let request = &record.request;
        let command = DeliberateCommand {
            task_id: Some(request.task_id.clone()),
            role: request.role,
            task: request.task.clone(),
            rounds: Rounds::new(i64::from(request.rounds))?,
            num_agents: usize::try_from(request.num_agents).unwrap_or(usize::MAX),
            profiles: request.profiles.clone(),
        };
        Ok(self.deliberate.prepare(command)?.1)
    }

    /// Starts a deliberation in the background and answers at once.
    ///
    /// The same `task_id` submitted again starts nothing and reports the stored status.
    ///
    /// # Errors
    /// Validation and configuration errors of [`Deliberate::prepare`], `ResourceExhausted`
    /// when the queue is full, `Store` on database failures.
    pub async fn submit(self: &Arc<Self>, command: DeliberateCommand) -> Result<Submission> {
        let (submission, _result, guard) = self.start(command, None).await?;
        if let Some(guard) = guard {
            guard.disarm();
        }
        Ok(submission)
    }

    /// Runs a deliberation as a stored job and waits for it. Dropping the returned future
    /// cancels the deliberation.
    ///
    /// # Errors
    /// Everything [`Jobs::submit`] and [`Deliberate::run`] fail with; `AlreadyExists` when
    /// the task id was used before by a deliberation that did not complete (a completed one
    /// is answered from storage, so retries are idempotent).
    pub async fn run(
        self: &Arc<Self>,
        command: DeliberateCommand,
        observer: Option<Arc<dyn ProgressObserver>>,
    ) -> Result<DeliberationReport> {
        let (submission, result, guard) = self.start(command, observer).await?;
        let (Some(result), Some(_guard)) = (result, guard) else {
            // A retried request gets the stored result of the completed deliberation.
            if let Some(report) = DeliberationReport::from_record(&self.get(&submission.task_id).await?) {
                return Ok(report);
            }
            return Err(ApplicationError::AlreadyExists {
                task_id: submission.task_id,
                status: submission.status.to_string(),
            });
        };
        result
            .await
            .map_err(|_| ApplicationError::Internal("deliberation job ended without a result".into()))?
    }

    async fn start(
        self: &Arc<Self>,
        command: DeliberateCommand,
        observer: Option<Arc<dyn ProgressObserver>>,
    ) -> Result<(Submission, Option<oneshot::Receiver<JobResult>>, Option<CancelOnDrop>)> {
        let requested_rounds = command.rounds.get();
        let num_agents = u32::try_from(command.num_agents).unwrap_or(u32::MAX);
        let profiles = command.profiles.clone();
        let (task_id, deliberation) = self.deliberate.prepare(command)?;

        if let Some(existing) = self.store.get(&task_id).await.map_err(store_error)? {
            return Ok((Submission { task_id, status: existing.status, created: false }, None, None));
        }
        let capacity = self.settings.max_running + self.settings.queue_capacity;
        let (admission, already_in) = self.admit();
        if already_in >= capacity {
            return Err(ApplicationError::ResourceExhausted(format!(
                "{capacity} deliberations are already running or queued; retry later"
            )));
        }
        let new = NewDeliberation {
            task_id: task_id.clone(),
            role: deliberation.council().role(),
            task: deliberation.task().clone(),
            rounds: requested_rounds,
            num_agents,
            profiles,
            created_at_ms: self.clock.now_ms(),
        };
        let created = self.store.create(&new, &self.lease(new.created_at_ms)).await.map_err(store_error)?;
        if !created {
            // Another submission of the same id won the race.
            let status = self
                .store
                .get(&task_id)
                .await
                .map_err(store_error)?
                .map_or(DeliberationStatus::Pending, |r| r.status);
            return Ok((Submission { task_id, status, created: false }, None, None));
        }

        self.emit(&task_id, new.role, EventKind::Submitted).await;
        let (result, guard) = self.spawn(admission, task_id.clone(), deliberation, observer, None);
        info!(task_id, "deliberation submitted");
        let submission = Submission { task_id, status: DeliberationStatus::Pending, created: true };
        Ok((submission, Some(result), Some(guard)))
    }

    /// Counts one more deliberation in and says how many were in before it. The count goes
    /// down when the returned admission is dropped, on every path.
    fn admit(&self) -> (Admission, usize) {
        let before = self.admitted.fetch_add(1, Ordering::SeqCst);
        (Admission(Arc::clone(&self.admitted)), before)
    }

    /// Runs an admitted deliberation as a background task. `started_at_ms` is set when it
    /// resumes one that was already IN_PROGRESS.
    fn spawn(
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
        self.tasks.spawn(async move {
            let result =
                jobs.execute(&task_id, deliberation, &job_token, observer.as_deref(), started_at_ms).await;
            jobs.cancels.lock().unwrap_or_else(PoisonError::into_inner).remove(&task_id);
            drop(admission);
            let _ = tx.send(result);
        });
        (rx, CancelOnDrop { token: Some(token) })
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

    fn stopping(&self) -> ApplicationError {
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
    async fn record_end(
        &self,
        task_id: &str,
        role: Role,
        status: DeliberationStatus,
        message: &str,
    ) -> std::result::Result<bool, StoreError> {
        let applied = self.store.finish_unsuccessfully(task_id, status, message, self.clock.now_ms()).await?;
        if applied {
            let ended = EventKind::Ended { status: status.to_string(), error: message.to_owned() };
            self.emit(task_id, role, ended).await;
        }
        Ok(applied)
    }

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

    /// Stops taking work, lets running deliberations finish for up to `grace`, then stops the
    /// rest: left as saved to resume at the next start, or INTERRUPTED when resuming is off.
    pub async fn shutdown(&self, grace: Duration) {
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait()).await.is_err() {
            if self.settings.resume_unfinished {
                warn!(
                    grace_secs = grace.as_secs(),
                    "stopping deliberations still running; they resume at the next start"
                );
            } else {
                warn!(grace_secs = grace.as_secs(), "interrupting deliberations still running");
            }
            self.shutdown.cancel();
            self.tasks.wait().await;
        }
        self.stopped.cancel();
    }
}

#[cfg(test)]
mod tests;
