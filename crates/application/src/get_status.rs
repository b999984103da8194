//! The GetStatus use case: uptime, whether a backend is configured, and the counters.

use std::sync::Arc;
use std::time::Duration;

use crate::counters::{Counters, CountersSnapshot};
use tokio::sync::watch;

use crate::jobs::StoreState;
use crate::ports::Clock;

/// What GetStatus answers.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusReport {
    pub uptime: Duration,
    pub llm_configured: bool,
    pub stats: Option<CountersSnapshot>,
    /// Why the server is degraded (the store is unreachable, say); `None` while serving.
    pub degraded: Option<String>,
}

/// The GetStatus use case.
pub struct GetStatus {
    tracker: Arc<Counters>,
    clock: Arc<dyn Clock>,
    llm_configured: bool,
    store_state: Option<watch::Receiver<StoreState>>,
}

impl std::fmt::Debug for GetStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GetStatus").field("llm_configured", &self.llm_configured).finish_non_exhaustive()
    }
}

impl GetStatus {
    pub fn new(tracker: Arc<Counters>, clock: Arc<dyn Clock>, llm_configured: bool) -> Self {
        Self { tracker, clock, llm_configured, store_state: None }
    }

    /// Reports the store's health as the probe last saw it (see [`crate::Jobs::store_state`]).
    #[must_use]
    pub fn with_store_state(mut self, store_state: watch::Receiver<StoreState>) -> Self {
        self.store_state = Some(store_state);
        self
    }

    pub fn execute(&self, include_stats: bool) -> StatusReport {
        let uptime_ms = (self.clock.now_ms() - self.tracker.started_at_ms()).max(0);
        StatusReport {
            uptime: Duration::from_millis(u64::try_from(uptime_ms).unwrap_or(0)),
            llm_configured: self.llm_configured,
            stats: include_stats.then(|| self.tracker.snapshot()),
            degraded: self.store_state.as_ref().and_then(|state| match &*state.borrow() {
                StoreState::Serving => None,
                StoreState::Unreachable { cause } => Some(format!("storage unreachable: {cause}")),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::MockClock;

    #[test]
    fn uptime_comes_from_the_clock_and_stats_only_when_asked() {
        let tracker = Arc::new(Counters::new(1_000));
        let mut clock = MockClock::new();
        clock.expect_now_ms().return_const(61_000_i64);
        let status = GetStatus::new(tracker, Arc::new(clock), true);
        let report = status.execute(false);
        assert_eq!(report.uptime, Duration::from_secs(60));
        assert!(report.llm_configured);
        assert!(report.stats.is_none());
        assert!(status.execute(true).stats.is_some());
    }
}
