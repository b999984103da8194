//! Service status: uptime and counters, kept in memory since the process started.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use orchestrator_domain::Role;

use crate::ports::Clock;

/// Counters since the process started.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatsSnapshot {
    pub total_deliberations: u64,
    pub failed_deliberations: u64,
    pub total_orchestrations: u64,
    /// Mean duration of completed deliberations, in milliseconds (0 when none).
    pub avg_deliberation_ms: f64,
    pub per_role: BTreeMap<Role, u64>,
    /// Deliberations running right now.
    pub active: u64,
}

#[derive(Debug, Default)]
struct Counters {
    total: u64,
    failed: u64,
    orchestrations: u64,
    completed_ms_sum: f64,
    completed: u64,
    per_role: BTreeMap<Role, u64>,
    active: u64,
}

/// Collects counters from the use cases; cheap to share (`Arc`) and to update.
#[derive(Debug)]
pub struct StatusTracker {
    started_at_ms: i64,
    counters: Mutex<Counters>,
}

impl StatusTracker {
    pub fn new(started_at_ms: i64) -> Self {
        Self { started_at_ms, counters: Mutex::new(Counters::default()) }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Counters) -> T) -> T {
        // Counters stay consistent even if a holder panicked: every update is a few additions.
        let mut guard = self.counters.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut guard)
    }

    /// Counts one finished deliberation (successful or not).
    pub fn record_deliberation(&self, role: Role, duration: Duration, succeeded: bool) {
        self.with(|c| {
            c.total += 1;
            *c.per_role.entry(role).or_default() += 1;
            if succeeded {
                c.completed += 1;
                c.completed_ms_sum += duration.as_secs_f64() * 1000.0;
            } else {
                c.failed += 1;
            }
        });
    }

    pub fn record_orchestration(&self) {
        self.with(|c| c.orchestrations += 1);
    }

    /// Marks a deliberation as running until the returned guard is dropped.
    pub fn track_active(self: &Arc<Self>) -> ActiveGuard {
        self.with(|c| c.active += 1);
        ActiveGuard { tracker: Arc::clone(self) }
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        self.with(|c| StatsSnapshot {
            total_deliberations: c.total,
            failed_deliberations: c.failed,
            total_orchestrations: c.orchestrations,
            avg_deliberation_ms: if c.completed == 0 { 0.0 } else { c.completed_ms_sum / c.completed as f64 },
            per_role: c.per_role.clone(),
            active: c.active,
        })
    }

    pub fn started_at_ms(&self) -> i64 {
        self.started_at_ms
    }
}

/// Keeps a deliberation counted as active while alive.
#[derive(Debug)]
pub struct ActiveGuard {
    tracker: Arc<StatusTracker>,
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.tracker.with(|c| c.active = c.active.saturating_sub(1));
    }
}

/// What GetStatus answers.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusReport {
    pub uptime: Duration,
    pub llm_configured: bool,
    pub stats: Option<StatsSnapshot>,
}

/// The GetStatus use case.
pub struct GetStatus {
    tracker: Arc<StatusTracker>,
    clock: Arc<dyn Clock>,
    llm_configured: bool,
}

impl std::fmt::Debug for GetStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GetStatus").field("llm_configured", &self.llm_configured).finish_non_exhaustive()
    }
}

impl GetStatus {
    pub fn new(tracker: Arc<StatusTracker>, clock: Arc<dyn Clock>, llm_configured: bool) -> Self {
        Self { tracker, clock, llm_configured }
    }

    pub fn execute(&self, include_stats: bool) -> StatusReport {
        let uptime_ms = (self.clock.now_ms() - self.tracker.started_at_ms()).max(0);
        StatusReport {
            uptime: Duration::from_millis(u64::try_from(uptime_ms).unwrap_or(0)),
            llm_configured: self.llm_configured,
            stats: include_stats.then(|| self.tracker.snapshot()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::MockClock;

    #[test]
    fn counts_deliberations_per_role_and_averages_successes() {
        let tracker = StatusTracker::new(0);
        tracker.record_deliberation(Role::Dev, Duration::from_millis(100), true);
        tracker.record_deliberation(Role::Dev, Duration::from_millis(300), true);
        tracker.record_deliberation(Role::Qa, Duration::from_millis(999), false);
        tracker.record_orchestration();
        let s = tracker.snapshot();
        assert_eq!(s.total_deliberations, 3);
        assert_eq!(s.failed_deliberations, 1);
        assert_eq!(s.total_orchestrations, 1);
        assert_eq!(s.avg_deliberation_ms, 200.0);
        assert_eq!(s.per_role.get(&Role::Dev), Some(&2));
        assert_eq!(s.per_role.get(&Role::Qa), Some(&1));
    }

    #[test]
    fn active_guard_counts_while_alive() {
        let tracker = Arc::new(StatusTracker::new(0));
        let guard = tracker.track_active();
        assert_eq!(tracker.snapshot().active, 1);
        drop(guard);
        assert_eq!(tracker.snapshot().active, 0);
    }

    #[test]
    fn uptime_comes_from_the_clock_and_stats_only_when_asked() {
        let tracker = Arc::new(StatusTracker::new(1_000));
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
