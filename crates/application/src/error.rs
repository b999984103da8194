//! The one error type of the application layer.

use std::time::Duration;

use orchestrator_domain::{AgentFailure, DeliberationOutcome, DomainError, Phase, TaskId};

use crate::ports::StoreError;

/// Why a use case failed. The API layer maps each variant to one status code.
#[derive(Debug, thiserror::Error)]
pub enum ApplicationError {
    /// Bad input; the message names the field.
    #[error("{field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    /// No agent backend is configured, so nothing can deliberate.
    #[error(
        "no LLM backend configured: set ORCHESTRATOR_LLM_BASE_URL (and ORCHESTRATOR_LLM_MODEL) or define profiles in the file named by ORCHESTRATOR_CONFIG"
    )]
    BackendNotConfigured,
    /// Every agent failed; nothing is left to rank.
    #[error("every agent failed: {}", summarize(.failures))]
    AllAgentsFailed { failures: Vec<AgentFailure> },
    /// Every agent failed because the servers of these model profiles refused the configured
    /// credentials: the operator must fix the profiles, retrying cannot help.
    #[error(
        "every agent failed: the model server refused the credentials of profile(s) {}; fix their api_key/api_key_env (HTTP 401/403; see the server log)",
        .profiles.iter().map(|p| format!("\"{p}\"")).collect::<Vec<_>>().join(", ")
    )]
    BackendMisconfigured { profiles: Vec<String>, failures: Vec<AgentFailure> },
    /// The deliberation ran out of time. `partial` holds the proposals it had finished,
    /// scored and ranked as they stood (none when no proposal was finished).
    #[error(
        "deliberation exceeded its {}s deadline while {phase}{}",
        .timeout.as_secs(),
        if .partial.is_some() { "; the proposals finished by then are kept as partial results (GetDeliberationResult)" } else { "" }
    )]
    DeadlineExceeded { timeout: Duration, phase: Phase, partial: Option<Box<DeliberationOutcome>> },
    /// The deliberation was cancelled by a client.
    #[error("deliberation {task_id} was cancelled")]
    Cancelled { task_id: TaskId },
    /// No deliberation has this id.
    #[error("no deliberation with task_id \"{task_id}\"")]
    NotFound { task_id: TaskId },
    /// The task id was used before; the stored deliberation is not replaced. `detail` says
    /// what a caller may know: the status of its own deliberation, or only that the id is taken.
    #[error("task_id \"{task_id}\" {detail}")]
    AlreadyExists { task_id: TaskId, detail: String },
    /// The agent registry holds this already (a council for the role, an agent id); the
    /// message names the field.
    #[error("{field}: {reason}")]
    Conflict { field: String, reason: String },
    /// The agent registry holds no council or agent by that name; the message names the field.
    #[error("{field}: {reason}")]
    Missing { field: String, reason: String },
    /// Too much work in flight; try later.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The request conflicts with the current state (e.g. cancelling a finished deliberation).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The server is stopping; the deliberation resumes at the next start when `resumable`.
    #[error("{}", if *.resumable {
        "the server is shutting down; the deliberation resumes when it restarts (poll GetDeliberationResult)"
    } else {
        "the server is shutting down"
    })]
    ShuttingDown { resumable: bool },
    /// The deliberation's result (or end) could not be stored within the retry budget; the
    /// server keeps it and stores it when storage returns. Never answered as OK.
    #[error(
        "the result of deliberation {task_id} could not be stored yet; it is kept and stored when storage returns (poll GetDeliberationResult)"
    )]
    ResultNotStored { task_id: TaskId },
    /// Another node took the deliberation over (this node's lease ran out); it runs there.
    #[error("deliberation {task_id} is now run by another server (poll GetDeliberationResult)")]
    LeaseLost { task_id: TaskId },
    /// Persistence failed; the cause (for the logs) is the source, not the message.
    #[error("storage failed")]
    Store {
        #[source]
        source: StoreError,
    },
    /// A broken invariant: a bug, never the client's fault.
    #[error("internal error: {0}")]
    Internal(String),
}

fn summarize(failures: &[AgentFailure]) -> String {
    failures
        .iter()
        .map(|f| format!("{} ({}): {}", f.agent, f.phase.action(), f.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

impl From<DomainError> for ApplicationError {
    fn from(error: DomainError) -> Self {
        match error {
            DomainError::Invalid { field, reason } => Self::InvalidArgument { field, reason },
            DomainError::NoSurvivors => Self::AllAgentsFailed { failures: Vec::new() },
            DomainError::Conflict { field, reason } => Self::Conflict { field, reason },
            DomainError::NotFound { field, reason } => Self::Missing { field, reason },
            DomainError::Refused { field, reason } => Self::FailedPrecondition(format!("{field}: {reason}")),
            other @ (DomainError::WrongPhase { .. }
            | DomainError::RepliesPending { .. }
            | DomainError::NotPending { .. }) => Self::Internal(other.to_string()),
        }
    }
}

/// Result of use cases.
pub type Result<T, E = ApplicationError> = std::result::Result<T, E>;
