//! The port to durable storage of deliberations.

use async_trait::async_trait;
use orchestrator_domain::{Deliberation, DeliberationOutcome, DeliberationStatus, ProfileName, Role, Task};
use serde::{Deserialize, Serialize};

use crate::deliberate::DeliberationReport;

/// What a client asked for, stored before anything runs so a deliberation is never lost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewDeliberation {
    pub task_id: String,
    pub role: Role,
    pub task: Task,
    /// Review rounds requested (before the `max_iterations` cap).
    pub rounds: u32,
    pub num_agents: u32,
    pub profiles: Vec<ProfileName>,
    pub created_at_ms: i64,
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
    pub outcome: Option<DeliberationOutcome>,
}

impl DeliberationRecord {
    /// The report of a COMPLETED deliberation, as Deliberate answered it; `None` otherwise.
    pub fn report(&self) -> Option<DeliberationReport> {
        let outcome = self.outcome.clone()?;
        let task = self.request.task.clone();
        let rounds = self
            .progress
            .as_ref()
            .map_or_else(|| task.constraints().cap_rounds(self.request.rounds), Deliberation::rounds);
        Some(DeliberationReport {
            task_id: self.request.task_id.clone(),
            role: self.request.role,
            task,
            rounds,
            started_at_ms: self.started_at_ms.unwrap_or(self.request.created_at_ms),
            duration_ms: self.duration_ms.and_then(|d| u64::try_from(d).ok()).unwrap_or_default(),
            outcome,
        })
    }
}

/// A server's claim on the unfinished deliberations it runs: held by `owner` (a node id) until
/// `until_ms` unless renewed. Another server takes over only what it finds unclaimed or
/// expired, so servers sharing a database never run the same deliberation twice while their
/// leases hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub owner: String,
    pub until_ms: i64,
}

/// Filters and paging for [`DeliberationStore::list`]; newest first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListQuery {
    pub role: Option<Role>,
    pub status: Option<DeliberationStatus>,
    /// Inclusive lower bound on `created_at_ms`.
    pub created_after_ms: Option<i64>,
    /// Exclusive upper bound on `created_at_ms`.
    pub created_before_ms: Option<i64>,
    /// Page size, 1..=100.
    pub limit: u32,
    /// Opaque cursor from a previous [`Page::next_cursor`].
    pub cursor: Option<String>,
}

/// One page of records (without `progress`/`outcome`), newest first.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Page {
    pub items: Vec<DeliberationRecord>,
    /// Present when more records match.
    pub next_cursor: Option<String>,
}

/// Why storage failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or refused the operation.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A stored row could not be decoded.
    #[error("stored deliberation {task_id} is unreadable: {reason}")]
    Corrupt { task_id: String, reason: String },
    /// A list cursor that this store did not issue.
    #[error("page_token: invalid page token")]
    InvalidCursor,
    /// The operation names a deliberation that does not exist.
    #[error("no deliberation with task_id \"{0}\"")]
    NotFound(String),
}

/// Durable storage of deliberations. Status changes obey the lifecycle of
/// [`DeliberationStatus`]: a change the lifecycle forbids (e.g. completing a cancelled
/// deliberation) is not applied and the method answers `Ok(false)`.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait DeliberationStore: Send + Sync + 'static {
    /// Stores a new PENDING deliberation claimed under `lease`. Returns `false`, storing
    /// nothing, when the task id already exists (idempotent submit).
    async fn create(&self, new: &NewDeliberation, lease: &Lease) -> Result<bool, StoreError>;

    /// Reads one deliberation with its progress and outcome.
    async fn get(&self, task_id: &str) -> Result<Option<DeliberationRecord>, StoreError>;

    /// PENDING → IN_PROGRESS.
    async fn mark_started(&self, task_id: &str, at_ms: i64) -> Result<bool, StoreError>;

    /// Saves the deliberation as it stands after a phase; only while IN_PROGRESS.
    async fn save_progress(&self, task_id: &str, progress: &Deliberation) -> Result<bool, StoreError>;

    /// IN_PROGRESS → COMPLETED with the ranked outcome.
    async fn complete(
        &self,
        task_id: &str,
        outcome: &DeliberationOutcome,
        finished_at_ms: i64,
        duration_ms: i64,
    ) -> Result<bool, StoreError>;

    /// PENDING/IN_PROGRESS → FAILED, TIMEOUT, CANCELLED or INTERRUPTED with the reason.
    async fn finish_unsuccessfully(
        &self,
        task_id: &str,
        status: DeliberationStatus,
        error: &str,
        finished_at_ms: i64,
    ) -> Result<bool, StoreError>;

    /// Pages through deliberations, newest first.
    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError>;

    /// Extends `lease` over every unfinished deliberation its owner holds; returns how many.
    async fn renew_leases(&self, lease: &Lease) -> Result<u64, StoreError>;

    /// Claims, under `lease`, every PENDING or IN_PROGRESS deliberation that nobody holds or
    /// whose lease ended before `now_ms` — and, with `include_own`, those `lease.owner` held
    /// already (a restarted server taking back what its previous process left) — and returns
    /// them with their saved progress, oldest first.
    async fn claim_unfinished(
        &self,
        lease: &Lease,
        now_ms: i64,
        include_own: bool,
    ) -> Result<Vec<DeliberationRecord>, StoreError>;
}
