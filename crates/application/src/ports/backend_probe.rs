//! The port that checks model servers: is each profile's server up and serving its model?

use std::time::Duration;

use async_trait::async_trait;

/// What checking one model profile found, in two registers: [`BackendHealth::message`] is safe
/// for clients (it names the profile and what to fix, never the server's address), while
/// [`BackendHealth::operator_detail`] names the server for the operator's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendHealth {
    /// The configured profile name.
    pub profile: String,
    /// Whether the server answered HTTP at all within the timeout.
    pub reachable: bool,
    /// Whether the profile's model is in the server's list; `None` when no list was read.
    pub model_listed: Option<bool>,
    /// Whether the profile looks usable (reachable, answered 2xx, did not leave out the model).
    pub ok: bool,
    /// What was found and what to fix, without the server's URL: for clients.
    pub message: String,
    /// The same with the URL asked (no credentials): for the server's log only.
    pub operator_detail: String,
}

/// Checks every configured model profile (e.g. `GET {base_url}/models`).
#[async_trait]
pub trait BackendProber: Send + Sync + 'static {
    /// One result per profile, in profile order, each bounded by `timeout` (probes run at once,
    /// so the whole call takes about `timeout` at most).
    async fn probe_backends(&self, timeout: Duration) -> Vec<BackendHealth>;
}
