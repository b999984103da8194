//! StreamDeliberation's stream: one update per completed phase while the deliberation runs,
//! then one per ranked proposal; a client that goes away cancels the deliberation.

use std::pin::Pin;

use futures::Stream;
use orchestrator_application::Caller;
use orchestrator_application::jobs::Begun;
use orchestrator_application::ports::ProgressObserver;
use orchestrator_domain::{Deliberation, Phase, TaskId};
use tokio::sync::mpsc;
use tonic::Status;
use tracing::debug;

use crate::convert;
use crate::error_mapping::to_status;
use crate::pb;

/// Streams one update per completed phase of a deliberation.
pub(super) struct StreamObserver {
    tx: mpsc::Sender<Result<pb::DeliberationUpdate, Status>>,
    /// Opened once the stream's first update (the proposing phase) is sent, so no phase of a
    /// fast deliberation overtakes it.
    opened: tokio::sync::watch::Receiver<bool>,
}

impl StreamObserver {
    pub(super) fn new(
        tx: mpsc::Sender<Result<pb::DeliberationUpdate, Status>>,
        opened: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        Self { tx, opened }
    }
}

#[tonic::async_trait]
impl ProgressObserver for StreamObserver {
    async fn phase_completed(&self, _task_id: &TaskId, d: &Deliberation) {
        let mut opened = self.opened.clone();
        if opened.wait_for(|open| *open).await.is_err() {
            return;
        }
        if d.phase() != Phase::Completed {
            // A client that went away is handled by the driver; a failed send changes nothing here.
            let _ = self.tx.send(Ok(convert::watch::phase_update(d.phase(), d.rounds()))).await;
        }
    }
}

pub(super) type UpdateStream = Pin<Box<dyn Stream<Item = Result<pb::DeliberationUpdate, Status>> + Send>>;

/// Sends the outcome of `begun` on `tx` as ranking updates (or its error as the stream's last
/// item); stops early, cancelling the deliberation, when the client drops the stream.
pub(super) async fn stream_outcome(
    begun: Begun,
    caller: Caller,
    tx: mpsc::Sender<Result<pb::DeliberationUpdate, Status>>,
) {
    // A client that disconnects drops the receiver: the deliberation is cancelled.
    let result = tokio::select! {
        result = begun.outcome(&caller) => result,
        () = tx.closed() => {
            debug!("stream client went away; deliberation cancelled");
            return;
        }
    };
    match result {
        Ok(report) => {
            let results = &report.outcome.results;
            for (i, ranked) in results.iter().enumerate() {
                let last = i + 1 == results.len();
                let update = pb::DeliberationUpdate {
                    status: if last { Phase::Completed } else { Phase::Scoring }.status_word().to_owned(),
                    progress_percent: if last { 100 } else { 99 },
                    current_step: format!("rank {} of {} ({})", ranked.rank, results.len(), report.task_id),
                    current_agent: ranked.agent.id.to_string(),
                    partial_result: Some(convert::result(ranked)),
                    state: None,
                    agent_step: None,
                };
                if tx.send(Ok(update)).await.is_err() {
                    return;
                }
            }
        }
        Err(error) => {
            let _ = tx.send(Err(to_status(error))).await;
        }
    }
}
