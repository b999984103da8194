//! Saving every phase as it completes, so a crash loses at most the phase in flight.

use async_trait::async_trait;
use orchestrator_domain::{Deliberation, Phase, TaskId};
use tokio_util::sync::CancellationToken;

use super::Jobs;
use super::durable_writes::{NotWritten, PendingWrite, Write};
use super::watch::Broadcast;
use crate::ports::{AgentStep, EventKind, Fence, ProgressObserver, StoreError};

/// Saves each phase under the job's fence (retried while the store is unavailable), announces
/// it, then passes it on to the caller's observer. A save refused because another node holds
/// the deliberation stops the local run through `lease_lost`. Agents' steps and saved phases
/// go to the run's watchers through `live` (nobody listening is fine).
pub(super) struct Persisting<'a> {
    pub(super) jobs: &'a Jobs,
    pub(super) fence: &'a Fence,
    pub(super) lease_lost: &'a CancellationToken,
    pub(super) live: Broadcast<'a>,
    pub(super) story_id: Option<&'a str>,
    pub(super) next: Option<&'a (dyn ProgressObserver + 'a)>,
}

#[async_trait]
impl ProgressObserver for Persisting<'_> {
    async fn phase_completed(&self, task_id: &TaskId, deliberation: &Deliberation) {
        if deliberation.phase() == Phase::Completed {
            // The completion that follows stores the outcome (and announces it) in one write:
            // saving the finished aggregate first would cost a commit and tell nobody anything.
            self.live.phase_saved(true);
            if let Some(next) = self.next {
                next.phase_completed(task_id, deliberation).await;
            }
            return;
        }
        let role = deliberation.council().role();
        let phase = EventKind::PhaseCompleted { phase: deliberation.phase() };
        let pending = PendingWrite {
            fence: Some(self.fence.clone()),
            role,
            write: Write::Progress(Box::new(deliberation.clone())),
            event: self.jobs.event(task_id, self.story_id, role, phase),
        };
        if let Err(NotWritten::Refused(StoreError::LeaseLost { .. })) =
            self.jobs.write_durably(task_id, pending).await
        {
            self.lease_lost.cancel();
            return;
        }
        self.live.phase_saved(false);
        if let Some(next) = self.next {
            next.phase_completed(task_id, deliberation).await;
        }
    }

    async fn agent_step(&self, task_id: &TaskId, step: &AgentStep) {
        self.live.step(step);
        if let Some(next) = self.next {
            next.agent_step(task_id, step).await;
        }
    }
}
