//! The port through which a running deliberation reports its progress.

use async_trait::async_trait;
use orchestrator_domain::Deliberation;

/// Told after each phase of a deliberation completes (proposals in, a review round in, a
/// revision round in). Used to persist phases as they finish and to stream progress.
/// Implementations should be quick; the deliberation waits for them.
#[async_trait]
pub trait ProgressObserver: Send + Sync {
    async fn phase_completed(&self, task_id: &str, deliberation: &Deliberation);
}

/// Observes nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

#[async_trait]
impl ProgressObserver for NoProgress {
    async fn phase_completed(&self, _task_id: &str, _deliberation: &Deliberation) {}
}
