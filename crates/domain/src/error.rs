//! The one error type of the domain.

/// Everything the domain can refuse.
///
/// `Invalid` names the offending field the way clients spell it (`role`, `num_agents`,
/// `constraints.requirements[2]`), so outer layers can pass the message through unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// A value object rejected its input.
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    /// A command arrived in a phase where it makes no sense (a driver bug, not user input).
    #[error("deliberation is {actual}, cannot {action}")]
    WrongPhase { action: &'static str, actual: String },
    /// A reply came from an agent that owes none in this phase (a driver bug).
    #[error("agent {agent} has nothing pending in phase {phase}")]
    NotPending { agent: String, phase: String },
    /// Every agent failed, so no proposal is left to rank.
    #[error("no proposal survived: every agent failed")]
    NoSurvivors,
}

impl DomainError {
    /// Shorthand for [`DomainError::Invalid`].
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid { field: field.into(), reason: reason.into() }
    }
}

/// Result of domain operations.
pub type Result<T, E = DomainError> = std::result::Result<T, E>;
