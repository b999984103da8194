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
//! * [`admission`] — the bound on work running or waiting;
//! * [`submission`] — `submit` and `run`, the entry points;
//! * [`execution`] — a job's life from its slot to its stored end;
//! * [`progress`] — saving and announcing every phase;
//! * [`recovery`] — resuming what a stopped process left;
//! * [`leases`] — keeping this node's claims alive and taking over other nodes' work;
//! * [`queries`] — get, list and cancel;
//! * [`shutdown`] — stopping within the grace period.

mod admission;
mod execution;
mod leases;
mod progress;
mod queries;
mod recovery;
mod shutdown;
mod submission;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orchestrator_domain::Role;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::deliberate::Deliberate;
use crate::error::ApplicationError;
use crate::ports::{Clock, DeliberationEvent, DeliberationStore, EventKind, EventPublisher, StoreError};

pub use recovery::Recovery;
pub use submission::{CancelOnDrop, JobResult, Submission};

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

    pub fn deliberate(&self) -> &Arc<Deliberate> {
        &self.deliberate
    }

    async fn emit(&self, task_id: &str, role: Role, kind: EventKind) {
        if let Some(events) = &self.events {
            let event =
                DeliberationEvent { task_id: task_id.to_owned(), role, at_ms: self.clock.now_ms(), kind };
            events.publish(&event).await;
        }
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
        source => ApplicationError::Store { source },
    }
}

#[cfg(test)]
mod tests;
