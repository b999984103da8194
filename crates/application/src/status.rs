//! Service status: uptime and counters, kept in memory since the process started.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use orchestrator_domain::{Role, TokenUsage};

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
    /// Councils seated since start (one per deliberation that started running).
    pub councils_seated: u64,
    /// Agents seated since start, in total and per role.
    pub agents_seated: u64,
    pub agents_per_role: BTreeMap<Role, u64>,
    /// Agents of the deliberations running right now.
    pub active_agents: u64,
    /// Mean duration of orchestrations (deliberation + selection), in milliseconds.
    pub avg_orchestration_ms: f64,
    /// Latency percentiles (p50, p95, p99) of the last completed deliberations, in milliseconds.
    pub latency_percentiles_ms: (f64, f64, f64),
    /// Agent calls made and their mean latency, in milliseconds.
    pub agent_calls: u64,
    pub avg_agent_call_ms: f64,
}

/// How many recent deliberation durations the percentiles are computed over.
pub const LATENCY_WINDOW: usize = 1024;

#[derive(Debug, Default)]
struct Counters {
    total: u64,
    failed: u64,
    orchestrations: u64,
    completed_ms_sum: f64,
    completed: u64,
    per_role: BTreeMap<Role, u64>,
    active: u64,
    councils_seated: u64,
    agents_seated: u64,
    agents_per_role: BTreeMap<Role, u64>,
    active_agents: u64,
    orchestration_ms_sum: f64,
    recent_ms: VecDeque<f64>,
    agent_calls: u64,
    agent_latency_ms: u64,
}

/// Nearest-rank percentile of sorted samples; 0 when there are none.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
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
                let ms = duration.as_secs_f64() * 1000.0;
                c.completed += 1;
                c.completed_ms_sum += ms;
                if c.recent_ms.len() == LATENCY_WINDOW {
                    c.recent_ms.pop_front();
                }
                c.recent_ms.push_back(ms);
            } else {
                c.failed += 1;
            }
        });
    }

    /// Counts one completed orchestration and its whole duration.
    pub fn record_orchestration(&self, duration: Duration) {
        self.with(|c| {
            c.orchestrations += 1;
            c.orchestration_ms_sum += duration.as_secs_f64() * 1000.0;
        });
    }

    /// Adds the agent calls of one deliberation.
    pub fn record_agent_calls(&self, usage: &TokenUsage) {
        self.with(|c| {
            c.agent_calls += usage.calls;
            c.agent_latency_ms += usage.latency_ms;
        });
    }

    /// Marks a deliberation of `agents` agents of `role` as running until the returned guard
    /// is dropped.
    pub fn track_active(self: &Arc<Self>, role: Role, agents: usize) -> ActiveGuard {
        let agents = agents as u64;
        self.with(|c| {
            c.active += 1;
            c.active_agents += agents;
            c.councils_seated += 1;
            c.agents_seated += agents;
            *c.agents_per_role.entry(role).or_default() += agents;
        });
        ActiveGuard { tracker: Arc::clone(self), agents }
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        self.with(|c| {
            let mut sorted: Vec<f64> = c.recent_ms.iter().copied().collect();
            sorted.sort_by(f64::total_cmp);
            let mean = |sum: f64, n: u64| if n == 0 { 0.0 } else { sum / n as f64 };
            StatsSnapshot {
                total_deliberations: c.total,
                failed_deliberations: c.failed,
                total_orchestrations: c.orchestrations,
                avg_deliberation_ms: mean(c.completed_ms_sum, c.completed),
                per_role: c.per_role.clone(),
                active: c.active,
                councils_seated: c.councils_seated,
                agents_seated: c.agents_seated,
                agents_per_role: c.agents_per_role.clone(),
                active_agents: c.active_agents,
                avg_orchestration_ms: mean(c.orchestration_ms_sum, c.orchestrations),
                latency_percentiles_ms: (
                    percentile(&sorted, 50.0),
                    percentile(&sorted, 95.0),
                    percentile(&sorted, 99.0),
                ),
                agent_calls: c.agent_calls,
                avg_agent_call_ms: mean(c.agent_latency_ms as f64, c.agent_calls),
            }
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
    agents: u64,
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.tracker.with(|c| {
            c.active = c.active.saturating_sub(1);
            c.active_agents = c.active_agents.saturating_sub(self.agents);
        });
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
        tracker.record_orchestration(Duration::from_millis(500));
        tracker.record_agent_calls(&TokenUsage { calls: 4, latency_ms: 100, ..Default::default() });
        let s = tracker.snapshot();
        assert_eq!(s.avg_orchestration_ms, 500.0);
        assert_eq!((s.agent_calls, s.avg_agent_call_ms), (4, 25.0));
        assert_eq!(s.total_deliberations, 3);
        assert_eq!(s.failed_deliberations, 1);
        assert_eq!(s.total_orchestrations, 1);
        assert_eq!(s.avg_deliberation_ms, 200.0);
        assert_eq!(s.per_role.get(&Role::Dev), Some(&2));
        assert_eq!(s.per_role.get(&Role::Qa), Some(&1));
    }

    #[test]
    fn percentiles_use_nearest_rank_over_recent_successes() {
        let tracker = StatusTracker::new(0);
        for ms in 1..=100 {
            tracker.record_deliberation(Role::Data, Duration::from_millis(ms), true);
        }
        assert_eq!(tracker.snapshot().latency_percentiles_ms, (50.0, 95.0, 99.0));
        assert_eq!(percentile(&[], 50.0), 0.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
    }

    #[test]
    fn active_guard_counts_while_alive() {
        let tracker = Arc::new(StatusTracker::new(0));
        let guard = tracker.track_active(Role::Qa, 4);
        let s = tracker.snapshot();
        assert_eq!((s.active, s.active_agents, s.councils_seated, s.agents_seated), (1, 4, 1, 4));
        assert_eq!(s.agents_per_role.get(&Role::Qa), Some(&4));
        drop(guard);
        let s = tracker.snapshot();
        assert_eq!((s.active, s.active_agents, s.councils_seated, s.agents_seated), (0, 0, 1, 4));
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
