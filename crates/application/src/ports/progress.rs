//! The port through which a running deliberation reports its progress.

use async_trait::async_trait;
use orchestrator_domain::{AgentId, Deliberation, Phase, TaskId};

/// Told after each phase of a deliberation completes (proposals in, a review round in, a
/// revision round in), and as each agent's call of a phase lands. Used to persist phases as
/// they finish and to stream progress. Implementations should be quick; the deliberation
/// waits for them.
#[async_trait]
pub trait ProgressObserver: Send + Sync {
    async fn phase_completed(&self, task_id: &TaskId, deliberation: &Deliberation);

    /// One agent's call landed (or its tests ran). Told as it happens, before the phase
    /// ends; ignored unless an observer cares to show it.
    async fn agent_step(&self, _task_id: &TaskId, _step: &AgentStep) {}
}

/// What one agent's call did, as it landed.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentStep {
    pub agent_id: AgentId,
    /// The phase the call belongs to.
    pub phase: Phase,
    pub kind: StepKind,
    /// Prompt plus completion tokens of this call (0 for test runs).
    pub tokens: u64,
}

/// The kinds of [`AgentStep`].
#[derive(Debug, Clone, PartialEq)]
pub enum StepKind {
    Proposed,
    /// A review of `target`'s proposal, with the score it gave (if it gave one).
    Reviewed {
        target: AgentId,
        score: Option<f64>,
    },
    Revised,
    /// The acceptance tests ran against the agent's current proposal.
    TestsRan {
        passed: u32,
        failed: u32,
        errored: u32,
    },
    /// The call failed and the agent was dropped; `reason` is an excerpt of the error.
    Dropped {
        reason: String,
    },
}

/// Observes nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

#[async_trait]
impl ProgressObserver for NoProgress {
    async fn phase_completed(&self, _task_id: &TaskId, _deliberation: &Deliberation) {}
}
