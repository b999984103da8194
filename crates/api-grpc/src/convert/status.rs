//! GetStatus and GetMetrics as the wire's messages.

use std::collections::{BTreeMap, HashMap};

use orchestrator_application::{CountersSnapshot, StatusReport};
use orchestrator_domain::Role;

use super::wide;
use crate::pb;

fn per_role(counts: &BTreeMap<Role, u64>) -> HashMap<String, i64> {
    counts.iter().map(|(role, n)| (role.to_string(), wide(*n))).collect()
}

/// GetStatus as sent on the wire; `stats` only when they were asked for.
pub fn status_response(report: &StatusReport) -> pb::GetStatusResponse {
    let stats = report.stats.as_ref().map(|s| pb::OrchestratorStats {
        total_deliberations: wide(s.total_deliberations),
        total_orchestrations: wide(s.total_orchestrations),
        avg_deliberation_time_ms: s.avg_deliberation_ms,
        active_councils: wide(s.active),
        role_counts: per_role(&s.per_role),
        failed_deliberations: wide(s.failed_deliberations),
    });
    pb::GetStatusResponse {
        status: if report.degraded.is_some() { "DEGRADED" } else { "SERVING" }.to_owned(),
        uptime_seconds: wide(report.uptime.as_secs()),
        stats,
        llm_configured: report.llm_configured,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        degraded_reason: report.degraded.clone().unwrap_or_default(),
        backends: report
            .backends
            .iter()
            .map(|probe| pb::BackendProbe {
                profile: probe.profile.clone(),
                reachable: probe.reachable,
                model_listed: probe.model_listed,
                ok: probe.ok,
                message: probe.message.clone(),
            })
            .collect(),
        events: report.events.as_ref().map(|events| pb::EventsStatus {
            connected: events.connected,
            outbox_depth: wide(events.outbox_depth),
            problem: events.problem.clone().unwrap_or_default(),
        }),
    }
}

/// GetMetrics as sent on the wire, from this process's counters; the standing councils'
/// records and health are added by [`councils::add_registry`].
pub fn metrics_response(s: &CountersSnapshot) -> pb::GetMetricsResponse {
    let (p50, p95, p99) = s.latency_percentiles_ms;
    pb::GetMetricsResponse {
        performance: Some(pb::PerformanceMetrics {
            avg_deliberation_ms: s.avg_deliberation_ms,
            avg_orchestration_ms: s.avg_orchestration_ms,
            p50_latency_ms: p50,
            p95_latency_ms: p95,
            p99_latency_ms: p99,
        }),
        agents: Some(pb::AgentMetrics {
            total_agents: wide(s.agents_seated),
            active_agents: wide(s.active_agents),
            agents_per_role: per_role(&s.agents_per_role),
            avg_agent_response_time_ms: s.avg_agent_call_ms,
            per_agent: Vec::new(),
        }),
        councils: Some(pb::CouncilMetrics {
            total_councils: wide(s.councils_seated),
            active_councils: wide(s.active),
            health_per_council: HashMap::new(),
        }),
    }
}
