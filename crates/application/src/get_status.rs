//! The GetStatus use case: uptime, whether a backend is configured, how each model server
//! answers, and the counters.

use std::sync::Arc;
use std::time::Duration;

use crate::counters::{Counters, CountersSnapshot};
use tokio::sync::watch;

use crate::jobs::StoreState;
use crate::ports::{BackendHealth, BackendProber, Clock};

/// How long GetStatus waits for each model server: long enough for a healthy server on
/// another continent, short enough that a dead one does not stall a status call.
pub const BACKEND_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What GetStatus answers.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusReport {
    pub uptime: Duration,
    pub llm_configured: bool,
    pub stats: Option<CountersSnapshot>,
    /// Why the server is degraded (the store is unreachable, say); `None` while serving.
    pub degraded: Option<String>,
    /// One probe per configured model profile (empty without a backend or a prober).
    pub backends: Vec<BackendHealth>,
}

/// The GetStatus use case.
pub struct GetStatus {
    tracker: Arc<Counters>,
    clock: Arc<dyn Clock>,
    llm_configured: bool,
    store_state: Option<watch::Receiver<StoreState>>,
    prober: Option<Arc<dyn BackendProber>>,
}

impl std::fmt::Debug for GetStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GetStatus")
            .field("llm_configured", &self.llm_configured)
            .field("prober", &self.prober.is_some())
            .finish_non_exhaustive()
    }
}

impl GetStatus {
    pub fn new(tracker: Arc<Counters>, clock: Arc<dyn Clock>, llm_configured: bool) -> Self {
        Self { tracker, clock, llm_configured, store_state: None, prober: None }
    }

    /// Reports the store's health as the probe last saw it (see [`crate::Jobs::store_state`]).
    #[must_use]
    pub fn with_store_state(mut self, store_state: watch::Receiver<StoreState>) -> Self {
        self.store_state = Some(store_state);
        self
    }

    /// Probes the model servers with `prober` on every status call.
    #[must_use]
    pub fn with_prober(mut self, prober: Option<Arc<dyn BackendProber>>) -> Self {
        self.prober = prober;
        self
    }

    /// Uptime, configuration, the counters when `include_stats`, and a fresh probe of every
    /// model profile (bounded by [`BACKEND_PROBE_TIMEOUT`]).
    pub async fn execute(&self, include_stats: bool) -> StatusReport {
        let uptime_ms = (self.clock.now_ms() - self.tracker.started_at_ms()).max(0);
        let backends = match &self.prober {
            Some(prober) => prober.probe_backends(BACKEND_PROBE_TIMEOUT).await,
            None => Vec::new(),
        };
        StatusReport {
            uptime: Duration::from_millis(u64::try_from(uptime_ms).unwrap_or(0)),
            llm_configured: self.llm_configured,
            stats: include_stats.then(|| self.tracker.snapshot()),
            degraded: self.store_state.as_ref().and_then(|state| match &*state.borrow() {
                StoreState::Serving => None,
                StoreState::Unreachable { cause } => Some(format!("storage unreachable: {cause}")),
            }),
            backends,
        }
    }
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;

    use super::*;
    use crate::ports::MockClock;

    struct OneDownServer;

    #[async_trait]
    impl BackendProber for OneDownServer {
        async fn probe_backends(&self, timeout: Duration) -> Vec<BackendHealth> {
            assert_eq!(timeout, BACKEND_PROBE_TIMEOUT);
            vec![BackendHealth {
                profile: "default".into(),
                reachable: false,
                model_listed: None,
                ok: false,
                message: "not reachable".into(),
                operator_detail: "http://h/v1/models: not reachable".into(),
            }]
        }
    }

    #[tokio::test]
    async fn uptime_comes_from_the_clock_and_stats_only_when_asked() {
        let tracker = Arc::new(Counters::new(1_000));
        let mut clock = MockClock::new();
        clock.expect_now_ms().return_const(61_000_i64);
        let status = GetStatus::new(tracker, Arc::new(clock), true);
        let report = status.execute(false).await;
        assert_eq!(report.uptime, Duration::from_secs(60));
        assert!(report.llm_configured);
        assert!(report.stats.is_none());
        assert!(report.backends.is_empty());
        assert!(status.execute(true).await.stats.is_some());
    }

    #[tokio::test]
    async fn every_status_call_probes_the_model_servers() {
        let mut clock = MockClock::new();
        clock.expect_now_ms().return_const(0_i64);
        let status = GetStatus::new(Arc::new(Counters::new(0)), Arc::new(clock), true)
            .with_prober(Some(Arc::new(OneDownServer)));
        let report = status.execute(false).await;
        assert_eq!(report.backends.len(), 1);
        assert!(!report.backends[0].reachable);
    }
}
