//! The port to durable storage of deliberations.

use async_trait::async_trait;
use orchestrator_domain::{
    Council, CouncilId, Deliberation, DeliberationOutcome, DeliberationStatus, ProfileName, Role, Rounds,
    Task, TaskId,
};
use serde::{Deserialize, Serialize};

use crate::ports::DeliberationEvent;

mod cursor;
mod error;
mod lease;

pub use cursor::PageCursor;
pub use error::{StoreCause, StoreError};
pub use lease::{Claim, ClaimScope, Fence, Lease};

/// What a client asked for, stored before anything runs so a deliberation is never lost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewDeliberation {
    pub task_id: TaskId,
    pub role: Role,
    pub task: Task,
    /// Review rounds requested (before the `max_iterations` cap).
    pub rounds: u32,
    pub num_agents: u32,
    pub profiles: Vec<ProfileName>,
    pub created_at_ms: i64,
    /// Who asked: only this principal (or an admin) may read, list or cancel it. Requests
    /// stored before principals existed belong to the anonymous principal.
    #[serde(default = "anonymous")]
    pub principal: String,
    /// The seats taken from a standing council, so the deliberation runs with them even if it
    /// starts (or restarts) after the council changed; `None` for an ad-hoc council, which the
    /// fields above rebuild. Absent from requests stored before standing councils existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seats: Option<Seats>,
    /// The planning service's story this deliberation serves (bus intake); carried in its
    /// events. Not part of the request's fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub story_id: Option<String>,
}

/// The council a deliberation was seated with from a standing council, and the review rounds
/// it runs (the council's default, or the request's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seats {
    pub council: Council,
    pub rounds: u32,
}

fn anonymous() -> String {
    crate::caller::Caller::ANONYMOUS.to_owned()
}

impl NewDeliberation {
    /// Whether `other` asks for the same deliberation: the same role, task (description and
    /// every constraint), rounds, council size and profiles. Id, time and principal aside, this
    /// is the request's fingerprint: a reused task id with another fingerprint is a conflict,
    /// never an answer with someone else's result. The seats a standing council gave are not
    /// part of it: a retry is the same request even if the council changed since.
    pub fn same_request_as(&self, other: &NewDeliberation) -> bool {
        (self.role, &self.task, self.rounds, self.num_agents, &self.profiles)
            == (other.role, &other.task, other.rounds, other.num_agents, &other.profiles)
    }

    /// Records the seats of `deliberation` when they came from a standing council — what
    /// [`NewDeliberation::seated`] restores. The fields the client sent stay as they were.
    #[must_use]
    pub fn with_seats(self, deliberation: &Deliberation) -> Self {
        let council = deliberation.council();
        if council.id().is_none() {
            return self;
        }
        Self { seats: Some(Seats { council: council.clone(), rounds: deliberation.rounds() }), ..self }
    }

    /// The deliberation of a request seated from a standing council, as it was prepared;
    /// `None` for an ad-hoc council (prepare it again from the request).
    pub fn seated(&self) -> Option<Deliberation> {
        let seats = self.seats.clone()?;
        let rounds = Rounds::new(i64::from(seats.rounds)).ok()?;
        Some(Deliberation::new(seats.council, self.task.clone(), rounds))
    }

    /// The standing council the deliberation was seated from; `None` for an ad-hoc council.
    pub fn council_id(&self) -> Option<&CouncilId> {
        self.seats.as_ref().and_then(|s| s.council.id())
    }
}

/// A stored deliberation.
///
/// `progress` is the last saved phase (proposals, reviews and failures so far); `outcome` is
/// the ranked result once completed. [`DeliberationStore::list`] leaves both `None` to stay
/// cheap; [`DeliberationStore::get`] fills them.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliberationRecord {
    pub request: NewDeliberation,
    pub status: DeliberationStatus,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    pub duration_ms: Option<i64>,
    pub winner_id: Option<String>,
    pub error: Option<String>,
    pub progress: Option<Deliberation>,
    /// Why the saved progress could not be restored (a snapshot of an unknown version, say);
    /// the deliberation then cannot resume and ends INTERRUPTED with this reason.
    pub unreadable_progress: Option<String>,
    pub outcome: Option<DeliberationOutcome>,
    /// The claim under which the row was last taken (see [`Fence`]); 0 until first claimed.
    pub lease_epoch: i64,
    /// The winner an Orchestrate call chose among the results, once chosen.
    pub selection: Option<StoredSelection>,
}

/// How Orchestrate chose its winner, kept with the deliberation so that a retry and
/// GetDeliberationResult answer the same choice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSelection {
    /// `architect` or `score`.
    pub method: String,
    /// The agent id of the chosen proposal.
    pub winner_id: String,
    pub rationale: String,
}

impl DeliberationRecord {
    /// The standing council the deliberation was seated from; `None` for an ad-hoc council.
    pub fn council_id(&self) -> Option<&CouncilId> {
        self.request.council_id().or_else(|| self.progress.as_ref().and_then(|d| d.council().id()))
    }
}

/// An unsuccessful end to store: the status (FAILED, TIMEOUT, CANCELLED or INTERRUPTED), why,
/// when, how long it ran, and for a TIMEOUT the partial results it had.
#[derive(Debug, Clone, Copy)]
pub struct UnsuccessfulEnd<'a> {
    pub status: DeliberationStatus,
    pub error: &'a str,
    pub finished_at_ms: i64,
    /// Milliseconds from start to end; `None` when it never started.
    pub duration_ms: Option<i64>,
    pub partial: Option<&'a DeliberationOutcome>,
}

/// Filters and paging for [`DeliberationStore::list`]; newest first, ordered by
/// `(created_at_ms, task_id)` descending.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListQuery {
    pub role: Option<Role>,
    pub status: Option<DeliberationStatus>,
    /// Inclusive lower bound on `created_at_ms`.
    pub created_after_ms: Option<i64>,
    /// Exclusive upper bound on `created_at_ms`.
    pub created_before_ms: Option<i64>,
    /// Only this principal's deliberations; `None`: everyone's (for admins).
    pub principal: Option<String>,
    /// Page size; stores serve [`ListQuery::page_size`] records.
    pub limit: u32,
    /// Opaque cursor from a previous [`Page::next_cursor`].
    pub cursor: Option<String>,
}

impl ListQuery {
    /// Largest page a store serves.
    pub const MAX_LIMIT: u32 = 100;

    /// The page size stores serve: `limit` brought into `1..=MAX_LIMIT`, so a zero asks for
    /// one record and anything larger than the maximum for the maximum.
    #[must_use]
    pub fn page_size(&self) -> u32 {
        self.limit.clamp(1, Self::MAX_LIMIT)
    }
}

/// One page of records (without `progress`/`outcome`), newest first.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Page {
    pub items: Vec<DeliberationRecord>,
    /// Present when more records match.
    pub next_cursor: Option<String>,
}

/// Durable storage of deliberations. Status changes obey the lifecycle of
/// [`DeliberationStatus`]: a change the lifecycle forbids (e.g. completing a cancelled
/// deliberation) is not applied and the method answers `Ok(false)`.
///
/// Text is stored as given with one exception, the same for every store: U+0000 (NUL), which
/// PostgreSQL cannot hold in `TEXT`, is replaced by U+FFFD (the replacement character) in
/// every string written — ids, descriptions, proposals, critiques, errors, and strings inside
/// stored documents alike — so every store reads back the same text.
///
/// Every method fails with [`StoreError::Unavailable`] when the database cannot be reached
/// or refuses, and [`StoreError::Corrupt`] when a stored row no longer decodes.
#[async_trait]
pub trait DeliberationStore: Send + Sync + 'static {
    /// Stores a new PENDING deliberation claimed under `lease`. Returns `false`, storing
    /// nothing, when the task id already exists (idempotent submit).
    ///
    /// Every method that changes a deliberation's state takes the `event` that announces the
    /// change: when given, it is stored in the outbox (see [`crate::ports::Outbox`]) in the
    /// same transaction, numbered after the deliberation's previous events — only when the
    /// change applies.
    async fn create(
        &self,
        new: &NewDeliberation,
        lease: &Lease,
        event: Option<&DeliberationEvent>,
    ) -> Result<bool, StoreError>;

    /// [`Self::create`] for a deliberation nobody has been told is stored: its caller waits
    /// for the result, and no event announces it. The store may commit it less durably than
    /// [`Self::create`] — enough to survive this process dying (the run resumes), not
    /// necessarily a power cut — because nobody outside relies on it yet, and the durable
    /// commit of its result covers it as soon as there is one. A power cut may lose it along
    /// with the run, whose caller then hears of a failure, never of a result that is gone.
    ///
    /// With `started_at_ms` it is stored IN_PROGRESS from then (it runs at once): what
    /// [`Self::mark_started`] under the creator's fence would make of it, in one write.
    ///
    /// By default it is [`Self::create`], then [`Self::mark_started`].
    async fn create_awaited(
        &self,
        new: &NewDeliberation,
        lease: &Lease,
        started_at_ms: Option<i64>,
    ) -> Result<bool, StoreError> {
        let created = self.create(new, lease, None).await?;
        match started_at_ms {
            Some(at_ms) if created => {
                self.mark_started(&new.task_id, &Fence::created_by(lease.owner.clone()), at_ms, None).await
            }
            _ => Ok(created),
        }
    }

    /// Reads one deliberation with its progress and outcome.
    async fn get(&self, task_id: &TaskId) -> Result<Option<DeliberationRecord>, StoreError>;

    /// PENDING → IN_PROGRESS, under `fence`.
    ///
    /// The writes that take a [`Fence`] apply only while the row is held by it; a row that
    /// another claim took fails with [`StoreError::LeaseLost`].
    async fn mark_started(
        &self,
        task_id: &TaskId,
        fence: &Fence,
        at_ms: i64,
        event: Option<&DeliberationEvent>,
    ) -> Result<bool, StoreError>;

    /// Saves the deliberation as it stands after a phase; only while IN_PROGRESS, under `fence`.
    async fn save_progress(
        &self,
        task_id: &TaskId,
        fence: &Fence,
        progress: &Deliberation,
        event: Option<&DeliberationEvent>,
    ) -> Result<bool, StoreError>;

    /// IN_PROGRESS → COMPLETED with the ranked outcome, under `fence`.
    async fn complete(
        &self,
        task_id: &TaskId,
        fence: &Fence,
        outcome: &DeliberationOutcome,
        finished_at_ms: i64,
        duration_ms: i64,
        event: Option<&DeliberationEvent>,
    ) -> Result<bool, StoreError>;

    /// PENDING/IN_PROGRESS → FAILED, TIMEOUT, CANCELLED or INTERRUPTED with the reason, under
    /// `fence` when one is given (`None`: a client's cancel, which any node may store).
    /// `partial` holds what a deliberation that ran out of time had finished, ranked as it
    /// stood; it is stored with the end and read back as the record's outcome.
    async fn finish_unsuccessfully(
        &self,
        task_id: &TaskId,
        fence: Option<&Fence>,
        end: &UnsuccessfulEnd<'_>,
        event: Option<&DeliberationEvent>,
    ) -> Result<bool, StoreError>;

    /// Stores how Orchestrate chose the winner of a COMPLETED deliberation; the first choice
    /// stored stays (returns `false` when one was stored already).
    async fn save_selection(&self, task_id: &TaskId, selection: &StoredSelection)
    -> Result<bool, StoreError>;

    /// Pages through deliberations, newest first, serving [`ListQuery::page_size`] records.
    ///
    /// # Errors
    /// [`StoreError::InvalidCursor`] for a cursor this store did not issue.
    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError>;

    /// Extends `lease` over the unfinished deliberations its owner holds — only those in
    /// `only` when given (what the owner actually runs: the rest is left to run out, so
    /// whoever claims it next runs it) — and returns the task ids actually renewed, so the
    /// owner can stop what it no longer holds.
    async fn renew_leases(&self, lease: &Lease, only: Option<&[TaskId]>) -> Result<Vec<TaskId>, StoreError>;

    /// Claims, under `lease`, the PENDING or IN_PROGRESS deliberations `claim` allows — those
    /// nobody holds or whose lease ended before `now_ms`, or with [`ClaimScope::All`] every one
    /// — except the task ids in `claim.running` (what this node runs already), at most
    /// `claim.limit` of them, oldest first, and returns them with their saved progress, oldest
    /// first. Each claim increments the row's lease epoch (see [`Fence`]).
    async fn claim_unfinished(
        &self,
        lease: &Lease,
        now_ms: i64,
        claim: &Claim<'_>,
    ) -> Result<Vec<DeliberationRecord>, StoreError>;

    /// Whether no other process can reach this store while this handle is open: a SQLite
    /// file under an exclusive lock, an in-memory database. Then whatever it holds unfinished
    /// was left by a process that is gone, and recovery may claim all of it at once
    /// ([`ClaimScope::All`]) instead of waiting for the dead process's leases to run out.
    fn held_exclusively(&self) -> bool {
        false
    }

    /// Checks, within a short timeout, that the database answers; for health probes.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Releases the store's connections, waiting for those in use; call once at shutdown,
    /// after the last write. Calls made afterwards fail with [`StoreError::Unavailable`].
    /// Stores without connections do nothing.
    async fn close(&self) {}
}
