//! Counters of the deliberations and agent calls of this process, kept in memory since it
//! started: what GetStatus and GetMetrics report — in all for admins, per principal for
//! everyone else (one principal's load is not another's business).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use orchestrator_domain::{Role, TokenUsage};

use crate::latency::LatencyHistogram;

/// Counters since the process started.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CountersSnapshot {
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
    /// Latency percentiles (p50, p95, p99) of the completed deliberations, in milliseconds.
    pub latency_percentiles_ms: (f64, f64, f64),
    /// Agent calls made and their mean latency, in milliseconds.
    pub agent_calls: u64,
    pub avg_agent_call_ms: f64,
}

#[derive(Debug, Default)]
struct Tallies {
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
    latencies: LatencyHistogram,
    agent_calls: u64,
    agent_latency_ms: u64,
}

/// The tallies of everyone and of each principal.
#[derive(Debug, Default)]
struct Ledger {
    all: Tallies,
    by_principal: HashMap<String, Tallies>,
}

/// Collects counters from the use cases; cheap to share (`Arc`) and to update.
#[derive(Debug)]
pub struct Counters {
    started_at_ms: i64,
    ledger: Mutex<Ledger>,
}

impl Counters {
    pub fn new(started_at_ms: i64) -> Self {
        Self { started_at_ms, ledger: Mutex::new(Ledger::default()) }
    }

    /// Applies `f` to everyone's tallies and to `principal`'s.
    fn with(&self, principal: &str, f: impl Fn(&mut Tallies)) {
        // Counters stay consistent even if a holder panicked: every update is a few additions.
        let mut ledger = self.ledger.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut ledger.all);
        f(ledger.by_principal.entry(principal.to_owned()).or_default());
    }

    /// Counts one finished deliberation of `principal` (successful or not).
    pub fn record_deliberation(&self, principal: &str, role: Role, duration: Duration, succeeded: bool) {
        self.with(principal, |c| {
            c.total += 1;
            *c.per_role.entry(role).or_default() += 1;
            if succeeded {
                let ms = duration.as_secs_f64() * 1000.0;
                c.completed += 1;
                c.completed_ms_sum += ms;
                c.latencies.record(duration);
            } else {
                c.failed += 1;
            }
        });
    }

    /// Counts one completed orchestration of `principal` and its whole duration.
    pub fn record_orchestration(&self, principal: &str, duration: Duration) {
        self.with(principal, |c| {
            c.orchestrations += 1;
            c.orchestration_ms_sum += duration.as_secs_f64() * 1000.0;
        });
    }

    /// Adds the agent calls of one deliberation of `principal`.
    pub fn record_agent_calls(&self, principal: &str, usage: &TokenUsage) {
        self.with(principal, |c| {
            c.agent_calls += usage.calls;
            c.agent_latency_ms += usage.latency_ms;
        });
    }

    /// Marks a deliberation of `principal` with `agents` agents of `role` as running until the
    /// returned guard is dropped.
    pub fn track_active(self: &Arc<Self>, principal: &str, role: Role, agents: usize) -> ActiveGuard {
        let agents = agents as u64;
        self.with(principal, |c| {
            c.active += 1;
            c.active_agents += agents;
            c.councils_seated += 1;
            c.agents_seated += agents;
            *c.agents_per_role.entry(role).or_default() += agents;
        });
        ActiveGuard { counters: Arc::clone(self), principal: principal.to_owned(), agents }
    }

    /// Everyone's counters: for admins (and a server without authentication).
    pub fn snapshot(&self) -> CountersSnapshot {
        let ledger = self.ledger.lock().unwrap_or_else(PoisonError::into_inner);
        ledger.all.snapshot()
    }

    /// The counters of `principal`'s own work (zero when it has none).
    pub fn snapshot_of(&self, principal: &str) -> CountersSnapshot {
        let ledger = self.ledger.lock().unwrap_or_else(PoisonError::into_inner);
        ledger.by_principal.get(principal).map(Tallies::snapshot).unwrap_or_default()
    }

    pub fn started_at_ms(&self) -> i64 {
        self.started_at_ms
    }
}

impl Tallies {
    fn snapshot(&self) -> CountersSnapshot {
        {
            let c = self;
            let mean = |sum: f64, n: u64| if n == 0 { 0.0 } else { sum / n as f64 };
            CountersSnapshot {
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
                latency_percentiles_ms: c.latencies.p50_p95_p99_ms(),
                agent_calls: c.agent_calls,
                avg_agent_call_ms: mean(c.agent_latency_ms as f64, c.agent_calls),
            }
        }
    }
}

/// Keeps a deliberation counted as active while alive.
#[derive(Debug)]
pub struct ActiveGuard {
    counters: Arc<Counters>,
    principal: String,
    agents: u64,
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.counters.with(&self.principal, |c| {
            c.active = c.active.saturating_sub(1);
            c.active_agents = c.active_agents.saturating_sub(self.agents);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_deliberations_per_role_and_averages_successes() {
        let counters = Counters::new(0);
        counters.record_deliberation("a", Role::Dev, Duration::from_millis(100), true);
        counters.record_deliberation("a", Role::Dev, Duration::from_millis(300), true);
        counters.record_deliberation("a", Role::Qa, Duration::from_millis(999), false);
        counters.record_orchestration("a", Duration::from_millis(500));
        counters.record_agent_calls("a", &TokenUsage { calls: 4, latency_ms: 100, ..Default::default() });
        let s = counters.snapshot();
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
    fn percentiles_cover_successes_only() {
        let counters = Counters::new(0);
        for ms in 1..=100 {
            counters.record_deliberation("a", Role::Data, Duration::from_millis(ms), true);
        }
        counters.record_deliberation("a", Role::Data, Duration::from_secs(3600), false);
        let (p50, _, p99) = counters.snapshot().latency_percentiles_ms;
        assert!((p50 - 50.0).abs() < 0.1 && (p99 - 99.0).abs() < 0.1, "{p50} {p99}");
    }

    #[test]
    fn active_guard_counts_while_alive() {
        let counters = Arc::new(Counters::new(0));
        let guard = counters.track_active("a", Role::Qa, 4);
        let s = counters.snapshot();
        assert_eq!((s.active, s.active_agents, s.councils_seated, s.agents_seated), (1, 4, 1, 4));
        assert_eq!(s.agents_per_role.get(&Role::Qa), Some(&4));
        drop(guard);
        let s = counters.snapshot();
        assert_eq!((s.active, s.active_agents, s.councils_seated, s.agents_seated), (0, 0, 1, 4));
    }

    #[test]
    fn each_principal_sees_only_its_own_counts_and_everyone_is_the_sum() {
        let counters = Arc::new(Counters::new(0));
        counters.record_deliberation("alice", Role::Dev, Duration::from_millis(100), true);
        counters.record_deliberation("bob", Role::Dev, Duration::from_millis(300), false);
        let _running = counters.track_active("bob", Role::Qa, 3);
        let alice = counters.snapshot_of("alice");
        assert_eq!((alice.total_deliberations, alice.failed_deliberations, alice.active), (1, 0, 0));
        let bob = counters.snapshot_of("bob");
        assert_eq!((bob.total_deliberations, bob.failed_deliberations, bob.active), (1, 1, 1));
        assert_eq!(counters.snapshot_of("carol"), CountersSnapshot::default());
        let all = counters.snapshot();
        assert_eq!((all.total_deliberations, all.failed_deliberations, all.active), (2, 1, 1));
    }
}
