//! The one error type of the server crate.

/// Why the server could not start or keep serving.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A configuration value is wrong; the message names it.
    #[error("{key}: {reason}")]
    Config { key: String, reason: String },
    #[error("cannot read config file {path}: {reason}")]
    ConfigFile { path: String, reason: String },
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("storage: {0}")]
    Store(#[from] orchestrator_application::ports::StoreError),
    #[error("startup: {0}")]
    Application(#[from] orchestrator_application::ApplicationError),
    #[error("gRPC reflection setup failed: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

impl ServerError {
    pub(crate) fn config(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Config { key: key.into(), reason: reason.into() }
    }
}

/// Result of server operations.
pub type Result<T, E = ServerError> = std::result::Result<T, E>;
