//! What the registry subcommands print for `--json`: councils, agents, their records and
//! what a change did.

use orchestrator_api_grpc::pb;

use serde::Serialize;

/// What a registry change did, for `--json`.
#[derive(Debug, Serialize)]
pub(super) struct ChangeView {
    pub(super) council_id: Option<String>,
    pub(super) agent_ids: Vec<String>,
    pub(super) message: Option<String>,
}

#[derive(Debug, Serialize)]
pub(super) struct AgentView {
    agent_id: String,
    role: String,
    status: String,
    council_id: String,
    model_profile: String,
    persona: String,
    metadata: std::collections::BTreeMap<String, String>,
    registered_at_ms: i64,
}

impl AgentView {
    pub(super) fn of(a: &pb::AgentInfo) -> Self {
        Self {
            agent_id: a.agent_id.clone(),
            role: a.role.clone(),
            status: a.status.clone(),
            council_id: a.council_id.clone(),
            model_profile: a.capabilities.as_ref().map(|c| c.model_profile.clone()).unwrap_or_default(),
            persona: a.persona.clone(),
            metadata: a.metadata.clone().into_iter().collect(),
            registered_at_ms: a.registered_at_ms,
        }
    }
}

#[derive(Debug, Serialize)]
pub(super) struct CouncilView {
    council_id: String,
    role: String,
    num_agents: i32,
    active_agents: i32,
    deliberation_rounds: i32,
    enable_peer_review: bool,
    created_at_ms: i64,
    agents: Vec<AgentView>,
}

impl CouncilView {
    pub(super) fn of(c: &pb::CouncilInfo) -> Self {
        Self {
            council_id: c.council_id.clone(),
            role: c.role.clone(),
            num_agents: c.num_agents,
            active_agents: c.active_agents,
            deliberation_rounds: c.deliberation_rounds,
            enable_peer_review: c.enable_peer_review,
            created_at_ms: c.created_at_ms,
            agents: c.agents.iter().map(AgentView::of).collect(),
        }
    }
}

/// One agent's record, for `agents --json`.
#[derive(Debug, Serialize)]
pub(super) struct RecordView {
    agent_id: String,
    role: String,
    council_id: String,
    model_profile: String,
    status: String,
    busy: bool,
    deliberations: i64,
    wins: i64,
    mean_score: Option<f64>,
    failures: i64,
    mean_response_ms: Option<f64>,
    usage: super::view::UsageView,
}

impl RecordView {
    pub(super) fn of(a: &pb::AgentPerformance) -> Self {
        let r = a.record.unwrap_or_default();
        Self {
            agent_id: a.agent_id.clone(),
            role: a.role.clone(),
            council_id: a.council_id.clone(),
            model_profile: a.model_profile.clone(),
            status: a.status.clone(),
            busy: a.busy,
            deliberations: r.deliberations,
            wins: r.wins,
            mean_score: r.mean_score,
            failures: r.failures,
            mean_response_ms: r.mean_response_ms,
            usage: super::view::UsageView::of(r.usage.as_ref()),
        }
    }
}
