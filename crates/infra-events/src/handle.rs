//! What the server keeps of a running relay: a way to read its status (GetStatus, health)
//! and to wait for it to stop.

use std::sync::Arc;
use std::time::Duration;

use orchestrator_application::ports::{RelayMonitor, RelayStatus};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tracing::error;

/// One event the stream acknowledged, as the relay saw it: what a benchmark of "state change
/// to the stream's ack" reads (see [`RelayHandle::acknowledgements`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acknowledged {
    /// `<task_id>:<event>:<seq>`, the message's `Nats-Msg-Id`.
    pub dedup_id: String,
    /// Where the stream keeps it.
    pub stream_sequence: u64,
    /// Whether the stream already had it (a second publish it dropped).
    pub duplicate: bool,
    /// From the state change it reports (stored with the event, in ms) to the acknowledgement.
    pub latency: Duration,
}

/// Reads the relay's status; cheap to clone, lives on after the relay stopped (then it shows
/// the last status).
#[derive(Debug, Clone)]
pub struct RelayWatch {
    status: watch::Receiver<RelayStatus>,
}

impl RelayWatch {
    /// Waits until the status satisfies `condition` and returns it (tests and drills wait for
    /// "disconnected" or "outbox empty" this way instead of sleeping).
    pub async fn wait_for(&mut self, mut condition: impl FnMut(&RelayStatus) -> bool) -> RelayStatus {
        let found = self.status.wait_for(|status| condition(status)).await.map(|status| status.clone());
        // Err: the relay is gone, its last status is final.
        found.unwrap_or_else(|_| self.status.borrow().clone())
    }
}

impl RelayMonitor for RelayWatch {
    fn status(&self) -> RelayStatus {
        self.status.borrow().clone()
    }
}

/// A running relay, returned by [`crate::JetStreamRelay::start`].
#[derive(Debug)]
pub struct RelayHandle {
    task: JoinHandle<()>,
    watch: RelayWatch,
    acknowledged: broadcast::Sender<Acknowledged>,
}

impl RelayHandle {
    pub(crate) fn new(
        task: JoinHandle<()>,
        status: watch::Receiver<RelayStatus>,
        acknowledged: broadcast::Sender<Acknowledged>,
    ) -> Self {
        Self { task, watch: RelayWatch { status }, acknowledged }
    }

    /// The relay's status, for GetStatus: whether NATS answers, the outbox depth, the problem.
    pub fn watch(&self) -> RelayWatch {
        self.watch.clone()
    }

    /// The status reader as the port the server's status use case takes.
    pub fn monitor(&self) -> Arc<dyn RelayMonitor> {
        Arc::new(self.watch.clone())
    }

    /// Every event this relay gets acknowledged from now on, with its latency. A receiver that
    /// falls more than 1,024 events behind skips (it is told how many).
    pub fn acknowledgements(&self) -> broadcast::Receiver<Acknowledged> {
        self.acknowledged.subscribe()
    }

    /// Waits for the relay to stop once its stop token is cancelled. Bounded: the relay never
    /// waits for NATS after that (a last flush, when connected, takes at most a second) and
    /// gives the relay lease up, so another server relays at once; what is unsent stays in the
    /// outbox for the next start.
    pub async fn stopped(self) {
        if let Err(error) = self.task.await {
            error!(%error, "the events relay ended abnormally");
        }
    }
}

impl RelayMonitor for RelayHandle {
    fn status(&self) -> RelayStatus {
        self.watch.status()
    }
}
