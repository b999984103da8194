//! Why an [`OpenAiBackend`](crate::OpenAiBackend) could not be built.
//!
//! Only construction fails with [`LlmError`]; a failing agent call is reported through the
//! port's [`AgentError`](orchestrator_application::ports::AgentError) so the use cases can drop
//! the agent and carry on.

/// A configuration the backend refuses, or an HTTP client it could not build.
///
/// Messages never carry an API key: profile errors name the field, not its value, when the
/// value is secret.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// A profile field is invalid; `field` is its full path, e.g. `profiles.default.base_url`.
    #[error("{field}: {reason}")]
    InvalidProfile { field: String, reason: String },
    /// The shared HTTP client could not be built (TLS set-up, most likely).
    #[error("cannot build the HTTP client: {reason}")]
    Client { reason: String },
}

impl LlmError {
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidProfile { field: field.into(), reason: reason.into() }
    }
}

/// Results of building the backend.
pub type Result<T, E = LlmError> = std::result::Result<T, E>;
