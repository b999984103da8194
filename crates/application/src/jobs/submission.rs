//! The entry points: [`Jobs::submit`] starts a deliberation in the background, [`Jobs::run`]
//! starts one and waits for it. Both store it PENDING first, so it is never lost.

use std::sync::{Arc, PoisonError};

use orchestrator_domain::{DeliberationStatus, TaskId};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::admission::Share;
use super::execution::StartFrom;
use super::{Jobs, store_error};
use crate::caller::Caller;
use crate::deliberate::{DeliberateCommand, DeliberationReport};
use crate::error::{ApplicationError, Result};
use crate::ports::{EventKind, Fence, Lease, NewDeliberation, ProgressObserver};

/// What a submission did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    pub task_id: TaskId,
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
    pub(super) fn new(token: CancellationToken) -> Self {
        Self { token: Some(token) }
    }

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

/// What [`Jobs::start`] did with a command.
#[derive(Debug)]
enum Started {
    /// A new deliberation runs; its result arrives on `result`, and dropping `guard` cancels it.
    New { submission: Submission, result: oneshot::Receiver<JobResult>, guard: CancelOnDrop },
    /// The task id existed already; nothing was started.
    Existing(Submission),
    /// Stored for any server to take (this one had no free slot): announced by its
    /// `submitted` event, taken by whichever server has room (see [`Jobs::take`]).
    Shared(Submission),
}

/// What a request that reuses a stored task id gets: the stored status when it is the same
/// caller's same request; otherwise a conflict that says nothing of the stored deliberation
/// (another principal's id must not be an oracle, let alone an answer).
fn existing_submission(
    caller: &Caller,
    asked: &NewDeliberation,
    stored: NewDeliberation,
    status: DeliberationStatus,
) -> Result<Started> {
    if !caller.may_access(&stored.principal) {
        return Err(ApplicationError::AlreadyExists {
            task_id: asked.task_id.clone(),
            detail: "is already in use; choose another".to_owned(),
        });
    }
    if !stored.same_request_as(asked) {
        return Err(ApplicationError::AlreadyExists {
            task_id: asked.task_id.clone(),
            detail: "was already used for a different request; choose another task_id".to_owned(),
        });
    }
    Ok(Started::Existing(Submission { task_id: stored.task_id, status, created: false }))
}

/// Who learns of a submission, and when.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// Its caller is told it is stored ([`Jobs::submit`]); with `may_share`, a server without
    /// a free slot stores it for any server to take.
    Submitted { may_share: bool },
    /// Its caller waits for the result ([`Jobs::begin`]) and hears of nothing before it.
    Awaited,
}

impl Jobs {
    /// Starts a deliberation in the background and answers at once.
    ///
    /// The same `task_id` submitted again starts nothing and reports the stored status.
    ///
    /// # Errors
    /// Validation and configuration errors of [`crate::Deliberate::prepare`],
    /// `ResourceExhausted` when the queue is full, `Store` on database failures.
    pub async fn submit(self: &Arc<Self>, caller: &Caller, command: DeliberateCommand) -> Result<Submission> {
        let mode = Mode::Submitted { may_share: self.settings.share_submissions };
        match self.start(caller, command, None, mode).await?.0 {
            Started::New { submission, guard, .. } => {
                guard.disarm();
                Ok(submission)
            }
            Started::Existing(submission) | Started::Shared(submission) => Ok(submission),
        }
    }

    /// Runs a deliberation as a stored job and waits for it. Dropping the returned future
    /// cancels the deliberation.
    ///
    /// # Errors
    /// Everything [`Jobs::submit`] and [`crate::Deliberate::run`] fail with; `AlreadyExists`
    /// when the task id was used before by a deliberation that did not complete (a completed
    /// one is answered from storage, so retries are idempotent).
    pub async fn run(
        self: &Arc<Self>,
        caller: &Caller,
        command: DeliberateCommand,
        observer: Option<Arc<dyn ProgressObserver>>,
    ) -> Result<DeliberationReport> {
        self.begin(caller, command, observer).await?.outcome(caller).await
    }

    /// [`Jobs::run`] in two steps, for callers that answer something between them (a stream's
    /// first update): validates, prepares and stores the deliberation once, and starts it;
    /// [`Begun::outcome`] then waits for it. Dropping the [`Begun`] cancels the deliberation.
    ///
    /// # Errors
    /// As [`Jobs::run`], for what happens before the deliberation runs.
    pub async fn begin(
        self: &Arc<Self>,
        caller: &Caller,
        command: DeliberateCommand,
        observer: Option<Arc<dyn ProgressObserver>>,
    ) -> Result<Begun> {
        let (started, rounds) = self.start(caller, command, observer, Mode::Awaited).await?;
        Ok(Begun { jobs: Arc::clone(self), started, rounds })
    }

    /// Stores `command` and runs it here — or, when `mode` may share and this server has no free
    /// slot, stores it for any server to take. Also answers the review rounds it runs.
    async fn start(
        self: &Arc<Self>,
        caller: &Caller,
        command: DeliberateCommand,
        observer: Option<Arc<dyn ProgressObserver>>,
        mode: Mode,
    ) -> Result<(Started, u32)> {
        let may_share = matches!(mode, Mode::Submitted { may_share: true });
        let requested_rounds = command.rounds.get();
        let num_agents = u32::try_from(command.num_agents).unwrap_or(u32::MAX);
        let profiles = command.profiles.clone();
        let story_id = command.story_id.clone();
        let (task_id, deliberation) = self.deliberate.prepare(command).await?;
        let rounds = deliberation.rounds();
        let new = NewDeliberation {
            task_id: task_id.clone(),
            role: deliberation.council().role(),
            task: deliberation.task().clone(),
            rounds: requested_rounds,
            num_agents,
            profiles,
            created_at_ms: self.clock.now_ms(),
            principal: caller.principal().to_owned(),
            seats: None,
            story_id,
        }
        .with_seats(&deliberation);

        if self.is_draining() {
            return Err(self.stopping());
        }
        // A new id — the common case — is stored without being looked up first: the insert
        // itself finds a stored one (and it is read then). A retry of a stored id is still
        // answered from storage where admission or a run in progress would refuse it.
        let admission = match self.admit(caller, Share::Enforced) {
            Ok(admission) => admission,
            Err(refused) => return self.stored_or(caller, &new, rounds, refused).await,
        };
        if may_share && self.admitted.total() > self.settings.max_running {
            // It would wait here for a slot: leave it to a server with one.
            drop(admission);
            return Ok((self.share(caller, new).await?, rounds));
        }
        if self.runs.lock().unwrap_or_else(PoisonError::into_inner).contains_key(&task_id) {
            drop(admission);
            // Running here, or being submitted at this moment (the store decides which wins).
            let racing = ApplicationError::AlreadyExists {
                task_id,
                detail: "is being submitted right now; retry to read its status".to_owned(),
            };
            return self.stored_or(caller, &new, rounds, racing).await;
        }
        let handle = self.register(&task_id, new.story_id.clone());
        let event = self.event(&task_id, new.story_id.as_deref(), new.role, EventKind::Submitted);
        let lease = self.lease(new.created_at_ms);
        let unannounced = matches!((mode, &event), (Mode::Awaited, None));
        // With a slot free now, a deliberation nobody has been told of is stored as started:
        // one write instead of a submission and a start.
        let started = unannounced
            .then(|| Arc::clone(&self.slots).try_acquire_owned().ok())
            .flatten()
            .map(|slot| (self.clock.now_ms(), slot));
        let created = if unannounced {
            self.store.create_awaited(&new, &lease, started.as_ref().map(|(at_ms, _)| *at_ms)).await
        } else {
            self.store.create(&new, &lease, event.as_ref()).await
        };
        let created = match created {
            Ok(created) => created,
            Err(error) => {
                self.unregister(&task_id);
                return Err(store_error(error));
            }
        };
        if !created {
            self.unregister(&task_id);
            // Another submission of the same id won the race.
            let Some(existing) = self.store.get(&task_id).await.map_err(store_error)? else {
                return Err(ApplicationError::Internal(format!(
                    "task_id {task_id} vanished after a conflict"
                )));
            };
            return Ok((existing_submission(caller, &new, existing.request, existing.status)?, rounds));
        }

        self.announced(event.as_ref());
        let (start, status) = match started {
            Some((started_at_ms, slot)) => {
                (StartFrom::Started { started_at_ms, slot }, DeliberationStatus::InProgress)
            }
            None => (StartFrom::Pending, DeliberationStatus::Pending),
        };
        let fence = Fence::created_by(self.settings.node_id.clone());
        let (result, guard) = self.spawn(
            admission,
            task_id.clone(),
            handle,
            fence,
            deliberation,
            observer,
            new.created_at_ms,
            start,
        );
        info!(task_id = %task_id, "deliberation submitted");
        let submission = Submission { task_id, status, created: true };
        Ok((Started::New { submission, result, guard }, rounds))
    }

    /// The stored deliberation of `new`'s id as a submission, or `refusal` when none is stored.
    async fn stored_or(
        &self,
        caller: &Caller,
        new: &NewDeliberation,
        rounds: u32,
        refusal: ApplicationError,
    ) -> Result<(Started, u32)> {
        match self.store.get(&new.task_id).await.map_err(store_error)? {
            Some(existing) => {
                Ok((existing_submission(caller, new, existing.request, existing.status)?, rounds))
            }
            None => Err(refusal),
        }
    }

    /// Stores `new` unclaimed — its lease already ended — with its `submitted` event: the
    /// relay announces it, and a server with a free slot takes it ([`Jobs::take`]); without
    /// the bus, [`Jobs::maintain`] on any server takes it at its next round.
    async fn share(self: &Arc<Self>, caller: &Caller, new: NewDeliberation) -> Result<Started> {
        let task_id = new.task_id.clone();
        let event = self.event(&task_id, new.story_id.as_deref(), new.role, EventKind::Submitted);
        let unclaimed = Lease { owner: self.settings.node_id.clone(), until_ms: 0 };
        if !self.store.create(&new, &unclaimed, event.as_ref()).await.map_err(store_error)? {
            let Some(existing) = self.store.get(&task_id).await.map_err(store_error)? else {
                return Err(ApplicationError::Internal(format!(
                    "task_id {task_id} vanished after a conflict"
                )));
            };
            return existing_submission(caller, &new, existing.request, existing.status);
        }
        self.announced(event.as_ref());
        info!(task_id = %task_id, "deliberation submitted for any server to take (no free slot here)");
        Ok(Started::Shared(Submission { task_id, status: DeliberationStatus::Pending, created: true }))
    }
}

/// A deliberation [`Jobs::begin`] stored and started (or found stored and completed).
#[derive(Debug)]
pub struct Begun {
    jobs: Arc<Jobs>,
    started: Started,
    rounds: u32,
}

impl Begun {
    /// The review rounds it runs.
    pub fn rounds(&self) -> u32 {
        self.rounds
    }

    /// Waits for the deliberation to end: its report, or how it failed. A retried request of a
    /// completed deliberation is answered from storage.
    ///
    /// # Errors
    /// How the deliberation ended when it did not complete; `AlreadyExists` when the task id
    /// was used before by a deliberation that did not complete.
    pub async fn outcome(self, caller: &Caller) -> Result<DeliberationReport> {
        match self.started {
            Started::Shared(_) => {
                Err(ApplicationError::Internal("a waited-for deliberation was shared".into()))
            }
            Started::New { result, guard: _guard, .. } => result
                .await
                .map_err(|_| ApplicationError::Internal("deliberation job ended without a result".into()))?,
            Started::Existing(submission) => {
                // A retried request gets the stored result of the completed deliberation.
                if let Some(report) =
                    DeliberationReport::from_record(&self.jobs.get(caller, &submission.task_id).await?)
                {
                    return Ok(report);
                }
                Err(ApplicationError::AlreadyExists {
                    detail: format!(
                        "already exists with status {}; read it with GetDeliberationResult",
                        submission.status
                    ),
                    task_id: submission.task_id,
                })
            }
        }
    }
}
