//! Durable deliberations: submit, poll, list, cancel — bounded, persisted phase by phase.
//!
//! Every deliberation, synchronous or not, runs as a job: it is stored PENDING before anything
//! runs, waits for one of `max_running` slots (at most `queue_capacity` wait; beyond that
//! submissions are refused with `ResourceExhausted`), is saved after every phase, and ends
//! COMPLETED, FAILED, TIMEOUT, CANCELLED or INTERRUPTED. A crash loses at most the phase in
//! flight: on the next start [`Jobs::recover`] resumes what the dead process left unfinished
//! from its last saved phase, within what is left of its deadline (or marks it INTERRUPTED
//! when resuming is turned off or impossible).
//!
//! One idea a file:
//! * `admission.rs` — the bound on work running or waiting;
//! * `submission.rs` — `submit` and `run`, the entry points;
//! * `execution.rs` — a job's life from its slot to its stored end;
//! * `progress.rs` — saving and announcing every phase;
//! * `recovery.rs` — resuming what a stopped process left;
//! * `leases.rs` — keeping this node's claims alive, stopping what it lost, taking over other
//!   nodes' work;
//! * `durable_writes.rs` — retrying the writes that end or save a deliberation, and keeping
//!   those that could not land for repair;
//! * `health.rs` — probing the store, so health reports what storage can do;
//! * `queries.rs` — get, list and cancel;
//! * `watch.rs` — following a deliberation step by step;
//! * `shutdown.rs` — stopping within the grace period.

mod admission;
mod durable_writes;
mod execution;
mod health;
mod leases;
mod progress;
mod queries;
mod recovery;
mod shutdown;
mod submission;
mod watch;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orchestrator_domain::{Role, TaskId};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::deliberate::Deliberate;
use crate::error::ApplicationError;
use crate::ports::{Clock, DeliberationEvent, DeliberationStore, EventKind, StoreError};

pub use health::StoreState;
pub use recovery::Recovery;
pub use shutdown::ShutdownReport;
pub use submission::{Begun, CancelOnDrop, JobResult, Submission};
pub use watch::{WatchUpdate, WatchUpdates};

/// Limits on work in flight.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSettings {
    /// Deliberations running at once.
    pub max_running: usize,
    /// Deliberations waiting for a slot before submissions are refused.
    pub queue_capacity: usize,
    /// The share (0 < share ≤ 1) of the places (`max_running + queue_capacity`) one principal
    /// may hold at once; beyond it that principal's submissions are refused while others'
    /// are still taken.
    pub queue_share: f64,
    /// Resume what a stopped process left unfinished from its last saved phase (and leave
    /// running work resumable on shutdown); when false, such work ends INTERRUPTED.
    pub resume_unfinished: bool,
    /// This server's name among the servers sharing a database; a restart under the same name
    /// takes back its unfinished work at once. Two live servers must not share one.
    pub node_id: String,
    /// How long this node's claim on its unfinished deliberations holds without renewal;
    /// another node takes them over once it runs out.
    pub lease: Duration,
    /// How long a write that ends or saves a deliberation is retried (with back-off) while the
    /// store is unavailable, before it is kept for repair and the caller told UNAVAILABLE.
    pub write_retry: Duration,
    /// How often the store is probed for health (and pending repairs retried).
    pub probe_interval: Duration,
    /// Submissions this server has no free slot for are stored for any server to take
    /// (announced on the bus) instead of queued here. On when servers share a bus.
    pub share_submissions: bool,
}

impl Default for JobSettings {
    fn default() -> Self {
        Self {
            max_running: 8,
            queue_capacity: 256,
            queue_share: 0.5,
            resume_unfinished: true,
            node_id: "orchestrator".to_owned(),
            lease: Duration::from_secs(30),
            write_retry: Duration::from_secs(30),
            probe_interval: Duration::from_secs(2),
            share_submissions: false,
        }
    }
}

/// The job runner and the queries over stored deliberations.
pub struct Jobs {
    deliberate: Arc<Deliberate>,
    store: Arc<dyn DeliberationStore>,
    clock: Arc<dyn Clock>,
    /// Set when lifecycle events are announced: every state change then stores its event in
    /// the outbox (same transaction), and this is notified so the relay sends it at once.
    announce: Option<Arc<tokio::sync::Notify>>,
    settings: JobSettings,
    slots: Arc<Semaphore>,
    /// Deliberations admitted and not yet ended (running or waiting for a slot), in all and
    /// per principal.
    admitted: Arc<admission::Admitted>,
    /// The deliberations this node runs (or is about to), by task id.
    runs: Mutex<HashMap<TaskId, Arc<RunHandle>>>,
    /// Writes that could not land within `write_retry`, by task id: retried by the store probe
    /// until they do (see [`durable_writes`]).
    repairs: Mutex<HashMap<TaskId, durable_writes::PendingWrite>>,
    /// What the store probe last saw.
    store_state: tokio::sync::watch::Sender<StoreState>,
    /// Set when shutdown begins: new submissions are refused.
    draining: CancellationToken,
    /// Set when the grace period ends: running deliberations stop.
    shutdown: CancellationToken,
    /// How running deliberations ended at shutdown (see [`ShutdownReport`]).
    shutdown_counts: shutdown::Counts,
    /// Ends [`Jobs::maintain`] once shutdown has finished.
    stopped: CancellationToken,
    tasks: TaskTracker,
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jobs")
            .field("settings", &self.settings)
            .field("admitted", &self.admitted.total())
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
            announce: None,
            slots: Arc::new(Semaphore::new(settings.max_running)),
            settings,
            admitted: Arc::new(admission::Admitted::default()),
            runs: Mutex::new(HashMap::new()),
            repairs: Mutex::new(HashMap::new()),
            store_state: tokio::sync::watch::Sender::new(StoreState::Serving),
            draining: CancellationToken::new(),
            shutdown: CancellationToken::new(),
            shutdown_counts: shutdown::Counts::default(),
            stopped: CancellationToken::new(),
            tasks: TaskTracker::new(),
        }
    }

    /// Announces lifecycle events (submitted, started, each phase, completed, ended): each is
    /// stored in the outbox with the state change it reports, and `relay` is notified after
    /// each one so the relay publishes it without waiting for its next poll.
    #[must_use]
    pub fn with_events(mut self, relay: Arc<tokio::sync::Notify>) -> Self {
        self.announce = Some(relay);
        self
    }

    pub fn deliberate(&self) -> &Arc<Deliberate> {
        &self.deliberate
    }

    /// The event announcing `kind`, when this server announces events.
    fn event(
        &self,
        task_id: &TaskId,
        story_id: Option<&str>,
        role: Role,
        kind: EventKind,
    ) -> Option<DeliberationEvent> {
        self.announce.as_ref()?;
        Some(DeliberationEvent::new(task_id, story_id, role, self.clock.now_ms(), kind))
    }

    /// Wakes the relay after a state change stored `event`.
    fn announced(&self, event: Option<&DeliberationEvent>) {
        if let (Some(relay), Some(_)) = (&self.announce, event) {
            relay.notify_one();
        }
    }
}

/// One deliberation this node runs: how to cancel it for a client, and how to stop it when
/// its lease was lost (without writing anything: another node holds it now).
#[derive(Debug)]
pub(crate) struct RunHandle {
    cancel: CancellationToken,
    lease_lost: CancellationToken,
    /// When the row was known to be held by this node (created or claimed); a lease renewal
    /// that began earlier may not have seen it.
    held_since: std::sync::OnceLock<tokio::time::Instant>,
    /// Each agent's step and each saved phase, for watchers (see [`watch`]); closed when the
    /// run ends and this handle is dropped.
    live: tokio::sync::broadcast::Sender<watch::LiveEvent>,
    /// The planning service's story the deliberation serves, carried in its events.
    story_id: Option<String>,
    /// The steps of the phase in flight, replayed to a watcher that joins mid-phase; sent on
    /// `live` under this lock, so a joining watcher misses none and sees none twice.
    phase_steps: Mutex<Vec<crate::ports::AgentStep>>,
}

impl RunHandle {
    fn new(story_id: Option<String>) -> Self {
        Self {
            cancel: CancellationToken::new(),
            lease_lost: CancellationToken::new(),
            held_since: std::sync::OnceLock::new(),
            live: tokio::sync::broadcast::Sender::new(watch::LIVE_CAPACITY),
            story_id,
            phase_steps: Mutex::new(Vec::new()),
        }
    }

    fn held_now(&self) {
        let _ = self.held_since.set(tokio::time::Instant::now());
    }
}

/// A storage failure as the use cases report it: a bad cursor and an unknown id are the
/// client's; everything else is the database's.
fn store_error(error: StoreError) -> ApplicationError {
    match error {
        StoreError::InvalidCursor => ApplicationError::InvalidArgument {
            field: "page_token".into(),
            reason: "invalid page token".into(),
        },
        StoreError::NotFound { task_id } => ApplicationError::NotFound { task_id },
        StoreError::LeaseLost { task_id } => ApplicationError::LeaseLost { task_id },
        source => ApplicationError::Store { source },
    }
}

#[cfg(test)]
mod tests;
