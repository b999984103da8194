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
    /// Whether the profile looks usable: reachable, answered 2xx and did not leave out the
    /// model — or busy (see [`BackendHealth::is_busy`]).
    pub ok: bool,
    /// What was found and what to fix, without the server's URL: for clients.
    pub message: String,
    /// The same with the URL asked (no credentials): for the server's log only.
    pub operator_detail: String,
}

impl BackendHealth {
    /// Whether the server is busy: it accepted the connection but did not answer within the
    /// timeout, as a model server answering a long completion does. Told as `ok` without
    /// `reachable` (no HTTP answer), on the wire too: usable, deliberations wait for it.
    pub fn is_busy(&self) -> bool {
        self.ok && !self.reachable
    }

    /// The verdict a person reads: see [`BackendHealth::verdict_of`].
    pub fn verdict(&self) -> &'static str {
        Self::verdict_of(self.ok, self.reachable)
    }

    /// `ok`, `busy` (usable: it took the connection but has not answered yet) or `PROBLEM`,
    /// from a probe's `ok` and `reachable` as the wire carries them — the one reading of them
    /// for `status`, `config check` and the start-up log.
    pub fn verdict_of(ok: bool, reachable: bool) -> &'static str {
        match (ok, reachable) {
            (true, true) => "ok",
            (true, false) => "busy",
            (false, _) => "PROBLEM",
        }
    }
}

/// Checks every configured model profile (e.g. `GET {base_url}/models`).
#[async_trait]
pub trait BackendProber: Send + Sync + 'static {
    /// One result per profile, in profile order, each bounded by `timeout` (probes run at once,
    /// so the whole call takes about `timeout` at most).
    async fn probe_backends(&self, timeout: Duration) -> Vec<BackendHealth>;
}
