//! The port to whatever writes proposals and reviews: an LLM, a scripted test agent, a human.

use std::time::Duration;

use async_trait::async_trait;
use orchestrator_domain::{Agent, Escalation, PeerScore, ProfileName, Review, Task, TestOutcome, TokenUsage};

/// Text an agent produced, with what it cost (tokens; calls and latency are filled by the caller).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Completion {
    pub text: String,
    pub usage: TokenUsage,
    /// The model stopped because it hit its token limit (`finish_reason = "length"`), so `text`
    /// is likely cut off mid-way; `false` when it finished or the backend cannot tell.
    pub truncated: bool,
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
    /// The model server refused our credentials (HTTP 401 or 403). A configuration fault of the
    /// profile, not of the agent or the request: never retried, and every other call on the
    /// profile will fail the same way until its key is fixed. `key_sent` says whether a key was
    /// configured at all (a missing key and a wrong one need different fixes).
    #[error("{}", unauthorized_message(.profile, *.status, *.key_sent))]
    Unauthorized { profile: String, status: u16, key_sent: bool },
}

impl AgentError {
    /// Whether the failure is the operator's configuration, not the agent, the request or the
    /// network: retrying, or asking another agent on the same profile, cannot succeed.
    pub fn is_configuration_fault(&self) -> bool {
        self.misconfigured_profile().is_some()
    }

    /// The profile whose configuration caused the failure, for a configuration fault.
    pub fn misconfigured_profile(&self) -> Option<&str> {
        match self {
            Self::Unauthorized { profile, .. } => Some(profile),
            Self::Timeout(_)
            | Self::Unavailable(_)
            | Self::Rejected(_)
            | Self::InvalidResponse(_)
            | Self::UnknownProfile(_) => None,
        }
    }
}

fn unauthorized_message(profile: &str, status: u16, key_sent: bool) -> String {
    if key_sent {
        format!(
            "profile \"{profile}\": the model server refused the API key (HTTP {status}); \
             check profiles.{profile}.api_key or api_key_env"
        )
    } else {
        format!(
            "profile \"{profile}\": the model server requires an API key (HTTP {status}) and none is \
             configured; set profiles.{profile}.api_key or api_key_env"
        )
    }
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

    /// Writes a first proposal for a task whose first answer failed its acceptance tests (an
    /// escalated cascade): the prompt shows that answer and its failing tests, so the agent
    /// does not repeat the mistake. A backend that cannot show them proposes as usual.
    async fn propose_after(
        &self,
        agent: &Agent,
        task: &Task,
        escalation: &Escalation,
    ) -> Result<Completion, AgentError> {
        let _ = escalation;
        self.propose(agent, task).await
    }

    /// Reviews an anonymous proposal against the task's rubric and requirements, and against
    /// the report of its code run on the task's acceptance tests (`NotRun` when the task has
    /// none or they could not run).
    async fn review(
        &self,
        agent: &Agent,
        task: &Task,
        proposal: &str,
        tests: &TestOutcome,
    ) -> Result<ReviewReply, AgentError>;

    /// Revises the agent's own proposal in the light of the reviews it received and of its own
    /// acceptance-test report (`NotRun` when the task has none or they could not run).
    async fn revise(
        &self,
        agent: &Agent,
        task: &Task,
        current: &str,
        tests: &TestOutcome,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_key_is_a_configuration_fault_naming_the_profile_and_the_field() {
        let error = AgentError::Unauthorized { profile: "default".into(), status: 401, key_sent: true };
        assert!(error.is_configuration_fault());
        assert_eq!(error.misconfigured_profile(), Some("default"));
        assert_eq!(
            error.to_string(),
            "profile \"default\": the model server refused the API key (HTTP 401); \
             check profiles.default.api_key or api_key_env"
        );
        let missing = AgentError::Unauthorized { profile: "gpu".into(), status: 403, key_sent: false };
        assert!(missing.to_string().contains("requires an API key (HTTP 403) and none is configured"));
        assert!(missing.to_string().contains("set profiles.gpu.api_key"));
    }

    #[test]
    fn other_failures_are_not_configuration_faults() {
        for error in [
            AgentError::Timeout(Duration::from_secs(1)),
            AgentError::Unavailable("down".into()),
            AgentError::Rejected("HTTP 400".into()),
            AgentError::InvalidResponse("empty".into()),
            AgentError::UnknownProfile("x".into()),
        ] {
            assert!(!error.is_configuration_fault(), "{error}");
            assert_eq!(error.misconfigured_profile(), None);
        }
    }
}
