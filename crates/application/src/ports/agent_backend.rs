//! The port to whatever writes proposals and reviews: an LLM, a scripted test agent, a human.

use std::time::Duration;

use async_trait::async_trait;
use orchestrator_domain::{Agent, PeerScore, ProfileName, Review, Task, TokenUsage};

/// Text an agent produced, with what it cost (tokens; calls and latency are filled by the caller).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Completion {
    pub text: String,
    pub usage: TokenUsage,
}

/// A parsed review. `score` is `None` when the agent's answer held no usable grade.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReviewReply {
    pub critique: String,
    pub score: Option<PeerScore>,
    pub issues: Vec<String>,
    pub usage: TokenUsage,
}

/// An agent's choice among candidates. `choice` indexes the candidates it was shown, or is
/// `None` when its answer named none it could be held to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selection {
    pub choice: Option<usize>,
    pub rationale: String,
    pub usage: TokenUsage,
}

/// Why an agent call failed. The agent is then dropped from the deliberation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    #[error("timed out after {}ms", .0.as_millis())]
    Timeout(Duration),
    /// The backend could not be reached or kept failing (after any retries).
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    /// The backend refused the request (4xx other than 408/429): retrying will not help.
    #[error("backend rejected the request: {0}")]
    Rejected(String),
    /// The backend answered with something unusable.
    #[error("invalid backend response: {0}")]
    InvalidResponse(String),
    /// The agent names a profile the backend does not have.
    #[error("unknown model profile \"{0}\"")]
    UnknownProfile(String),
}

/// Runs agents. Implementations must be cancel-safe: dropping a returned future abandons the
/// call (in-flight HTTP requests included).
///
/// Prompts must carry the task's description, rubric and requirements; proposals under review
/// are passed without their author so reviews stay anonymous.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait AgentBackend: Send + Sync + 'static {
    /// Whether this backend can run agents on `profile`; requests naming another are refused.
    fn has_profile(&self, profile: &ProfileName) -> bool;

    /// Writes a first proposal for the task.
    async fn propose(&self, agent: &Agent, task: &Task) -> Result<Completion, AgentError>;

    /// Reviews an anonymous proposal against the task's rubric and requirements.
    async fn review(&self, agent: &Agent, task: &Task, proposal: &str) -> Result<ReviewReply, AgentError>;

    /// Revises the agent's own proposal in the light of the reviews it received.
    async fn revise(
        &self,
        agent: &Agent,
        task: &Task,
        current: &str,
        reviews: &[Review],
    ) -> Result<Completion, AgentError>;

    /// Chooses the best of anonymous candidate proposals and says why.
    async fn select(
        &self,
        agent: &Agent,
        task: &Task,
        candidates: &[String],
    ) -> Result<Selection, AgentError>;
}
