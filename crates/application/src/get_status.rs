//! The GetStatus use case: uptime, whether a backend is configured, how each model server
//! answers, and the counters.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, watch};

use crate::caller::Caller;
use crate::counters::{Counters, CountersSnapshot};

use crate::jobs::StoreState;
use crate::ports::{BackendHealth, BackendProber, Clock, RelayMonitor, RelayStatus};

/// How long GetStatus waits for each model server: long enough for a healthy server on
/// another continent, short enough that a dead one does not stall a status call.
pub const BACKEND_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long one probe of the model servers answers GetStatus. A monitor polling status every
/// second, or a hundred clients at once, then cost each model server one `GET /models` per
/// window, and a dead server holds up at most one status call per window (by
/// [`BACKEND_PROBE_TIMEOUT`]) instead of every one.
pub const BACKEND_PROBE_MAX_AGE: Duration = Duration::from_secs(5);

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
    /// How the events relay fares, when events are published.
    pub events: Option<RelayStatus>,
}

/// The GetStatus use case.
pub struct GetStatus {
    counters: Arc<Counters>,
    clock: Arc<dyn Clock>,
    llm_configured: bool,
    store_state: Option<watch::Receiver<StoreState>>,
    prober: Option<Arc<dyn BackendProber>>,
    relay: Option<Arc<dyn RelayMonitor>>,
    /// The last probe and when it was taken (clock ms). Held across a probe, so callers that
    /// arrive meanwhile wait for it instead of starting their own.
    last_probe: Mutex<Option<(i64, Vec<BackendHealth>)>>,
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
    pub fn new(counters: Arc<Counters>, clock: Arc<dyn Clock>, llm_configured: bool) -> Self {
        Self {
            counters,
            clock,
            llm_configured,
            store_state: None,
            prober: None,
            relay: None,
            last_probe: Mutex::new(None),
        }
    }

    /// Reports the store's health as the probe last saw it (see [`crate::Jobs::store_state`]).
    #[must_use]
    pub fn with_store_state(mut self, store_state: watch::Receiver<StoreState>) -> Self {
        self.store_state = Some(store_state);
        self
    }

    /// Reports how the events relay fares.
    #[must_use]
    pub fn with_relay(mut self, relay: Arc<dyn RelayMonitor>) -> Self {
        self.relay = Some(relay);
        self
    }

    /// Probes the model servers with `prober`, at most once per [`BACKEND_PROBE_MAX_AGE`].
    #[must_use]
    pub fn with_prober(mut self, prober: Option<Arc<dyn BackendProber>>) -> Self {
        self.prober = prober;
        self
    }

    /// Uptime, configuration, the counters when `include_stats` — everyone's for an admin or
    /// the caller of a server without authentication, the caller's own otherwise — and a
    /// probe of every model profile at most [`BACKEND_PROBE_MAX_AGE`] old (a new one is
    /// bounded by [`BACKEND_PROBE_TIMEOUT`]).
    pub async fn execute(&self, caller: &Caller, include_stats: bool) -> StatusReport {
        let uptime_ms = (self.clock.now_ms() - self.counters.started_at_ms()).max(0);
        let backends = self.backends().await;
        StatusReport {
            uptime: Duration::from_millis(u64::try_from(uptime_ms).unwrap_or(0)),
            llm_configured: self.llm_configured,
            stats: include_stats.then(|| self.counters_for(caller)),
            degraded: self.store_state.as_ref().and_then(|state| match &*state.borrow() {
                StoreState::Serving => None,
                StoreState::Unreachable { cause } => Some(format!("storage unreachable: {cause}")),
            }),
            backends,
            events: self.relay.as_ref().map(|relay| relay.status()),
        }
    }

    /// The counters `caller` may see.
    pub fn counters_for(&self, caller: &Caller) -> CountersSnapshot {
        if caller.is_admin() || caller.is_unauthenticated() {
            self.counters.snapshot()
        } else {
            self.counters.snapshot_of(caller.principal())
        }
    }

    /// The last probe while it is younger than [`BACKEND_PROBE_MAX_AGE`], else a new one.
    async fn backends(&self) -> Vec<BackendHealth> {
        let Some(prober) = &self.prober else {
            return Vec::new();
        };
        let mut last_probe = self.last_probe.lock().await;
        let max_age_ms = i64::try_from(BACKEND_PROBE_MAX_AGE.as_millis()).unwrap_or(i64::MAX);
        let now_ms = self.clock.now_ms();
        if let Some((taken_at_ms, backends)) = last_probe.as_ref() {
            // A clock that went backwards counts as stale, not as fresh forever.
            if (0..max_age_ms).contains(&(now_ms - taken_at_ms)) {
                return backends.clone();
            }
        }
        let backends = prober.probe_backends(BACKEND_PROBE_TIMEOUT).await;
        *last_probe = Some((self.clock.now_ms(), backends.clone()));
        backends
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

    use async_trait::async_trait;

    use super::*;
    use crate::ports::MockClock;

    /// One profile whose server is down; counts how often it was asked.
    #[derive(Default)]
    struct OneDownServer {
        probes: AtomicUsize,
    }

    #[async_trait]
    impl BackendProber for OneDownServer {
        async fn probe_backends(&self, timeout: Duration) -> Vec<BackendHealth> {
            assert_eq!(timeout, BACKEND_PROBE_TIMEOUT);
            self.probes.fetch_add(1, Ordering::SeqCst);
            // Give concurrent callers the chance to start their own probe, were they allowed to.
            tokio::task::yield_now().await;
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
        let counters = Arc::new(Counters::new(1_000));
        let mut clock = MockClock::new();
        clock.expect_now_ms().return_const(61_000_i64);
        let status = GetStatus::new(counters, Arc::new(clock), true);
        let report = status.execute(&Caller::anonymous(), false).await;
        assert_eq!(report.uptime, Duration::from_secs(60));
        assert!(report.llm_configured);
        assert!(report.stats.is_none());
        assert!(report.backends.is_empty());
        assert!(status.execute(&Caller::anonymous(), true).await.stats.is_some());
    }

    /// A GetStatus whose clock reads `now` (ms) and whose prober is `prober`.
    fn status_at(now: &Arc<AtomicI64>, prober: &Arc<OneDownServer>) -> GetStatus {
        let mut clock = MockClock::new();
        let now = Arc::clone(now);
        clock.expect_now_ms().returning(move || now.load(Ordering::SeqCst));
        let prober: Arc<dyn BackendProber> = Arc::clone(prober) as Arc<dyn BackendProber>;
        GetStatus::new(Arc::new(Counters::new(0)), Arc::new(clock), true).with_prober(Some(prober))
    }

    #[tokio::test]
    async fn status_reports_the_model_servers_as_probed() {
        let prober = Arc::new(OneDownServer::default());
        let report =
            status_at(&Arc::new(AtomicI64::new(0)), &prober).execute(&Caller::anonymous(), false).await;
        assert_eq!(report.backends.len(), 1);
        assert!(!report.backends[0].reachable);
        assert_eq!(prober.probes.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_probe_answers_status_calls_until_it_is_max_age_old() {
        let now = Arc::new(AtomicI64::new(10_000));
        let prober = Arc::new(OneDownServer::default());
        let status = status_at(&now, &prober);
        let max_age_ms = i64::try_from(BACKEND_PROBE_MAX_AGE.as_millis()).unwrap();

        let first = status.execute(&Caller::anonymous(), false).await;
        now.fetch_add(max_age_ms - 1, Ordering::SeqCst);
        assert_eq!(status.execute(&Caller::anonymous(), false).await.backends, first.backends);
        assert_eq!(prober.probes.load(Ordering::SeqCst), 1, "a young probe is reused");

        now.fetch_add(1, Ordering::SeqCst);
        status.execute(&Caller::anonymous(), false).await;
        assert_eq!(prober.probes.load(Ordering::SeqCst), 2, "a probe max-age old is taken again");

        now.fetch_sub(60_000, Ordering::SeqCst);
        status.execute(&Caller::anonymous(), false).await;
        assert_eq!(prober.probes.load(Ordering::SeqCst), 3, "a clock that went back means stale");
    }

    #[tokio::test]
    async fn concurrent_status_calls_share_one_probe() {
        let prober = Arc::new(OneDownServer::default());
        let status = status_at(&Arc::new(AtomicI64::new(0)), &prober);
        let caller = Caller::anonymous();
        let reports = futures::future::join_all((0..8).map(|_| status.execute(&caller, false))).await;
        assert!(reports.iter().all(|report| report.backends.len() == 1));
        assert_eq!(prober.probes.load(Ordering::SeqCst), 1);
    }
}
