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
    WrongPhase { action: &'static str, actual: crate::Phase },
    /// The driver moved on while agents still owed replies (a driver bug).
    #[error("deliberation is {phase} with {pending} replies pending, cannot advance")]
    RepliesPending { phase: crate::Phase, pending: usize },
    /// A reply came from an agent that owes none in this phase (a driver bug).
    #[error("agent {agent} has nothing pending in phase {phase}")]
    NotPending { agent: String, phase: crate::Phase },
    /// Every agent failed, so no proposal is left to rank.
    #[error("no proposal survived: every agent failed")]
    NoSurvivors,
    /// The registry holds something that may exist only once (a council for the role, an
    /// agent id); `field` names the request field that collides.
    #[error("{field}: {reason}")]
    Conflict { field: String, reason: String },
    /// The registry holds nothing by that name; `field` names the request field.
    #[error("{field}: {reason}")]
    NotFound { field: String, reason: String },
    /// Valid input the registry's current state refuses (removing a council's last agent).
    #[error("{field}: {reason}")]
    Refused { field: String, reason: String },
}

impl DomainError {
    /// Shorthand for [`DomainError::Invalid`].
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid { field: field.into(), reason: reason.into() }
    }

    /// Shorthand for [`DomainError::Conflict`].
    pub fn conflict(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Conflict { field: field.into(), reason: reason.into() }
    }

    /// Shorthand for [`DomainError::NotFound`].
    pub fn not_found(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::NotFound { field: field.into(), reason: reason.into() }
    }

    /// Shorthand for [`DomainError::Refused`].
    pub fn refused(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Refused { field: field.into(), reason: reason.into() }
    }

    /// The request field the error names, for errors about input.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Invalid { field, .. }
            | Self::Conflict { field, .. }
            | Self::NotFound { field, .. }
            | Self::Refused { field, .. } => Some(field),
            Self::WrongPhase { .. }
            | Self::RepliesPending { .. }
            | Self::NotPending { .. }
            | Self::NoSurvivors => None,
        }
    }
}

/// Result of domain operations.
pub type Result<T, E = DomainError> = std::result::Result<T, E>;
