//! Saving every phase as it completes, so a crash loses at most the phase in flight.

use async_trait::async_trait;
use orchestrator_domain::Deliberation;
use tracing::warn;

use super::Jobs;
use crate::ports::{EventKind, ProgressObserver};

/// Saves each phase, announces it, then passes it on to the caller's observer.
pub(super) struct Persisting<'a> {
    pub(super) jobs: &'a Jobs,
    pub(super) next: Option<&'a (dyn ProgressObserver + 'a)>,
}

#[async_trait]
impl ProgressObserver for Persisting<'_> {
    async fn phase_completed(&self, task_id: &str, deliberation: &Deliberation) {
        if let Err(error) = self.jobs.store.save_progress(task_id, deliberation).await {
            warn!(task_id, %error, "could not save deliberation progress");
        }
        let phase = EventKind::PhaseCompleted { phase: deliberation.phase().to_string() };
        self.jobs.emit(task_id, deliberation.council().role(), phase).await;
        if let Some(next) = self.next {
            next.phase_completed(task_id, deliberation).await;
        }
    }
}
