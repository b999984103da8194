//! Following one deliberation as it runs: its stored state first, then each agent's step as it
//! lands and the stored state after each saved phase, then its final state.
//!
//! Steps are only known to the node that runs the deliberation: they travel on the run's
//! in-memory broadcast channel (see [`super::RunHandle`]). A deliberation that runs on another
//! node (or on none: left to resume after a restart) is followed by reading the store every
//! [`POLL_INTERVAL`] instead, so its watchers see its phases and its end, not its agents'
//! steps. A watcher is only a reader: dropping its stream never touches the deliberation.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::stream::{self, BoxStream, StreamExt};
use orchestrator_domain::{DeliberationStatus, TaskId};
use tokio::sync::broadcast::{self, error::RecvError};

use super::{Jobs, store_error};
use crate::caller::Caller;
use crate::error::{ApplicationError, Result};
use crate::ports::{AgentStep, DeliberationRecord};

/// Events buffered per running deliberation for a slow watcher; one that falls further behind
/// skips the oldest (it still sees every saved phase through the next stored state).
pub(super) const LIVE_CAPACITY: usize = 256;

/// What a running job tells its watchers: each step (kept until its phase is saved, for
/// watchers that join mid-phase) and each saved phase.
pub(super) struct Broadcast<'a> {
    pub(super) live: &'a broadcast::Sender<LiveEvent>,
    pub(super) phase_steps: &'a Mutex<Vec<AgentStep>>,
}

impl Broadcast<'_> {
    pub(super) fn step(&self, step: &AgentStep) {
        let mut steps = self.phase_steps.lock().unwrap_or_else(PoisonError::into_inner);
        steps.push(step.clone());
        // Nobody listening is fine.
        let _ = self.live.send(LiveEvent::Step(step.clone()));
    }

    /// A phase was saved; `last` when it was the last (the final state follows when the run
    /// ends, and a state between the two would show a completed phase of an unfinished run).
    pub(super) fn phase_saved(&self, last: bool) {
        let mut steps = self.phase_steps.lock().unwrap_or_else(PoisonError::into_inner);
        steps.clear();
        if !last {
            let _ = self.live.send(LiveEvent::Stored);
        }
    }
}

/// How often a deliberation running elsewhere is read back from the store.
pub(super) const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// What the running job tells its watchers.
#[derive(Debug, Clone)]
pub(crate) enum LiveEvent {
    /// An agent's call landed.
    Step(AgentStep),
    /// The stored state changed (started, or a phase saved): watchers read it.
    Stored,
}

/// One item of a watch.
#[derive(Debug, Clone)]
pub enum WatchUpdate {
    /// The stored deliberation: first, after each saved phase, and last (then terminal,
    /// unless it stopped without an end, as when left to resume after a restart).
    State(Box<DeliberationRecord>),
    /// One agent's step, as it landed (only for deliberations this node runs).
    Step(AgentStep),
}

/// The updates of one watch; it ends after the final state.
pub type WatchUpdates = BoxStream<'static, Result<WatchUpdate>>;

/// Where a watch stands.
enum Stage {
    /// Following the local run's channel.
    Live(broadcast::Receiver<LiveEvent>),
    /// Reading the store; `last` is what was last sent, `wait` whether to wait before reading.
    Polling {
        last: (DeliberationStatus, Option<String>),
        wait: bool,
    },
    Done,
}

struct Watching {
    jobs: Arc<Jobs>,
    task_id: TaskId,
    stage: Stage,
}

/// What a watcher can see change in a stored deliberation without steps.
fn fingerprint(record: &DeliberationRecord) -> (DeliberationStatus, Option<String>) {
    (record.status, record.progress.as_ref().map(|d| d.phase().to_string()))
}

impl Jobs {
    /// Follows a deliberation of the caller's (any, for an admin) until it ends.
    ///
    /// # Errors
    /// `NotFound` for an unknown id and for another principal's (as [`Jobs::get`]); `Store`.
    pub async fn watch(self: &Arc<Self>, caller: &Caller, task_id: &TaskId) -> Result<WatchUpdates> {
        // Subscribed before the first read, so nothing between the two is missed; the steps
        // of the phase in flight are replayed after the first state.
        let run = self.runs.lock().unwrap_or_else(PoisonError::into_inner).get(task_id).cloned();
        let live = run.map(|run| {
            let steps = run.phase_steps.lock().unwrap_or_else(PoisonError::into_inner);
            (run.live.subscribe(), steps.clone())
        });
        let first = self.get(caller, task_id).await?;
        let (stage, replay) = match live {
            _ if first.status.is_terminal() => (Stage::Done, Vec::new()),
            Some((live, steps)) => (Stage::Live(live), steps),
            None => (Stage::Polling { last: fingerprint(&first), wait: true }, Vec::new()),
        };
        let watching = Watching { jobs: Arc::clone(self), task_id: task_id.to_owned(), stage };
        let first = std::iter::once(WatchUpdate::State(Box::new(first)))
            .chain(replay.into_iter().map(WatchUpdate::Step))
            .map(Ok);
        Ok(stream::iter(first).chain(stream::unfold(watching, Watching::next)).boxed())
    }
}

impl Watching {
    async fn next(mut self) -> Option<(Result<WatchUpdate>, Self)> {
        loop {
            match &mut self.stage {
                Stage::Done => return None,
                Stage::Live(live) => match live.recv().await {
                    Ok(LiveEvent::Step(step)) => return Some((Ok(WatchUpdate::Step(step)), self)),
                    Ok(LiveEvent::Stored) => {
                        let state = self.read().await;
                        // A cancel is stored before the run stops: its state is the last.
                        if state.as_ref().map_or(true, |r| r.status.is_terminal()) {
                            self.stage = Stage::Done;
                        }
                        return Some((state.map(|r| WatchUpdate::State(Box::new(r))), self));
                    }
                    Err(RecvError::Lagged(_)) => {}
                    // The run ended (its end is stored before its handle goes): read it at once.
                    Err(RecvError::Closed) => {
                        self.stage = Stage::Polling {
                            last: (DeliberationStatus::Pending, Some(String::new())),
                            wait: false,
                        };
                    }
                },
                Stage::Polling { last, wait } => {
                    if *wait {
                        tokio::time::sleep(POLL_INTERVAL).await;
                    }
                    let last = last.clone();
                    let record = match self.read().await {
                        Ok(record) => record,
                        Err(error) => {
                            self.stage = Stage::Done;
                            return Some((Err(error), self));
                        }
                    };
                    let seen = fingerprint(&record);
                    self.stage = if record.status.is_terminal() {
                        Stage::Done
                    } else {
                        Stage::Polling { last: seen.clone(), wait: true }
                    };
                    if seen != last || record.status.is_terminal() {
                        return Some((Ok(WatchUpdate::State(Box::new(record))), self));
                    }
                }
            }
        }
    }

    /// The stored deliberation (already shown to be the caller's).
    async fn read(&self) -> Result<DeliberationRecord> {
        self.jobs
            .store
            .get(&self.task_id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| ApplicationError::NotFound { task_id: self.task_id.clone() })
    }
}
