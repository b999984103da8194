//! How the relay fares, as its status watchers, metrics and log see it: a failure shown once
//! per kind and backed off, a recovery logged, the outbox's depth counted.

use std::time::Duration;

use orchestrator_application::ports::RelayStatus;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::JetStreamRelay;
use crate::error::EventsError;
use crate::observability;

/// The failure the relay's status reports until an attempt succeeds.
#[derive(Debug)]
pub(super) struct Problem {
    /// [`EventsError::kind`]: a change of kind is logged, a repeat is not.
    pub(super) kind: &'static str,
    pub(super) text: String,
}

impl JetStreamRelay {
    /// Records a failed attempt: the status shows it, the log says it once per kind, the next
    /// publish waits a backoff. Returns that wait.
    pub(super) fn failed(&mut self, error: EventsError) -> Duration {
        let kind = error.kind();
        let text = error.described();
        // Waiting for a connection is not an attempt: the client retries by itself.
        if !matches!(error, EventsError::Disconnected) {
            observability::publish_failed(kind);
        }
        let wait = self.backoff.failed();
        self.retry_at = Instant::now() + wait;
        if self.problem.as_ref().is_none_or(|problem| problem.kind != kind) {
            warn!(
                problem = text,
                kind,
                depth = self.depth,
                "events cannot be published now: they wait in the outbox"
            );
        } else {
            debug!(problem = text, retry_in = ?wait, "events still cannot be published");
        }
        self.problem = Some(Problem { kind, text });
        self.publish_status();
        wait
    }

    /// Records an attempt that worked: the problem, if any, is over.
    pub(super) fn recovered(&mut self) {
        self.backoff.reset();
        if let Some(problem) = self.problem.take() {
            info!(after = problem.kind, depth = self.depth, "events relay working again");
            self.publish_status();
        }
    }

    pub(super) fn set_depth(&mut self, depth: u64) {
        self.depth = depth;
        observability::outbox_depth(depth);
        self.publish_status();
    }

    /// Shows the relay's state to its watchers (only when it changed).
    pub(super) fn publish_status(&self) {
        let broker_failing = self.problem.as_ref().is_some_and(|problem| problem.kind != "outbox");
        let problem = match &self.problem {
            Some(problem) => Some(problem.text.clone()),
            None if !self.connected => Some(EventsError::Disconnected.to_string()),
            None => None,
        };
        let status =
            RelayStatus { connected: self.connected && !broker_failing, outbox_depth: self.depth, problem };
        self.status.send_if_modified(|current| {
            let changed = *current != status;
            if changed {
                *current = status;
            }
            changed
        });
    }
}
