//! Council registry requests → validated commands, councils and records → messages.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use orchestrator_application::ports::{AgentRecord, CouncilRecord};
use orchestrator_application::{
    ApplicationError, CouncilSelector, CreateCouncilCommand, RegisterAgentCommand, RegistryReport,
};
use orchestrator_domain::{
    AgentId, AgentMetadata, AgentStatus, Capabilities, Council, CouncilId, DomainError, Member, Persona,
    ProfileName, Role, Rounds, StandingCouncil,
};

use super::{invalid, narrow, usage, wide};
use crate::pb;

/// `error` with its field renamed to `field` (a value object names its own field; the request
/// may spell it differently, e.g. `config.persona`).
fn renamed(field: &str) -> impl FnOnce(DomainError) -> ApplicationError + '_ {
    move |error| match error {
        DomainError::Invalid { reason, .. } => invalid(field, reason),
        other => other.into(),
    }
}

fn role(raw: &str, field: &str) -> Result<Role, ApplicationError> {
    Role::parse(raw).map_err(renamed(field))
}

/// An optional role: empty means any.
fn role_filter(raw: &str, field: &str) -> Result<Option<Role>, ApplicationError> {
    match raw.trim() {
        "" => Ok(None),
        raw => role(raw, field).map(Some),
    }
}

fn agent_id(raw: &str) -> Result<AgentId, ApplicationError> {
    Ok(AgentId::new(raw)?)
}

fn profile(raw: String, field: &str) -> Result<ProfileName, ApplicationError> {
    ProfileName::new(raw).map_err(renamed(field))
}

impl TryFrom<pb::CreateCouncilRequest> for CreateCouncilCommand {
    type Error = ApplicationError;

    /// `num_agents` 0 means the default council size. Rounds follow `config` as Orchestrate's
    /// options do: `deliberation_rounds` when positive, else one round with
    /// `enable_peer_review` (or without any config) and none without.
    fn try_from(r: pb::CreateCouncilRequest) -> Result<Self, Self::Error> {
        let role = role(&r.role, "role")?;
        let num_agents = match r.num_agents {
            0 => Council::DEFAULT_AGENTS,
            n => Council::validate_size(i64::from(n))?,
        };
        let config = r.config;
        let rounds = match &config {
            None => Rounds::DEFAULT,
            Some(c) if c.deliberation_rounds != 0 => Rounds::new(i64::from(c.deliberation_rounds))
                .map_err(renamed("config.deliberation_rounds"))?,
            Some(c) => Rounds::new(i64::from(c.enable_peer_review))?,
        };
        let config = config.unwrap_or_default();
        let (profiles, profiles_field) =
            match (config.model_profile.is_empty(), config.model_profiles.is_empty()) {
                (false, false) => {
                    return Err(invalid(
                        "config.model_profiles",
                        "set model_profile or model_profiles, not both",
                    ));
                }
                (true, false) => (
                    config
                        .model_profiles
                        .into_iter()
                        .enumerate()
                        .map(|(i, p)| profile(p, &format!("config.model_profiles[{i}]")))
                        .collect::<Result<Vec<_>, _>>()?,
                    "config.model_profiles",
                ),
                (false, true) => {
                    (vec![profile(config.model_profile, "config.model_profile")?], "config.model_profile")
                }
                (true, true) => (Vec::new(), "config.model_profile"),
            };
        Ok(Self {
            role,
            num_agents,
            profiles,
            profiles_field,
            rounds,
            persona: Persona::optional(&config.persona).map_err(renamed("config.persona"))?,
        })
    }
}

impl TryFrom<pb::RegisterAgentRequest> for RegisterAgentCommand {
    type Error = ApplicationError;

    /// `endpoint` is ignored; an empty `capabilities.model_profile` means the default profile.
    fn try_from(r: pb::RegisterAgentRequest) -> Result<Self, Self::Error> {
        let capabilities = r.capabilities.unwrap_or_default();
        let profile = match capabilities.model_profile.as_str() {
            "" => None,
            _ => Some(profile(capabilities.model_profile, "capabilities.model_profile")?),
        };
        Ok(Self {
            agent_id: agent_id(&r.agent_id)?,
            role: role(&r.role, "role")?,
            profile,
            persona: Persona::optional(&r.persona)?,
            capabilities: Capabilities::new(
                capabilities.supported_tasks,
                capabilities.languages,
                i64::from(capabilities.max_concurrent_tasks),
            )?,
            metadata: AgentMetadata::new(r.metadata.into_iter().collect())?,
        })
    }
}

/// UnregisterAgent's agent and optional role.
///
/// # Errors
/// Field `agent_id` or `role` when malformed.
pub fn unregister(r: &pb::UnregisterAgentRequest) -> Result<(AgentId, Option<Role>), ApplicationError> {
    Ok((agent_id(&r.agent_id)?, role_filter(&r.role, "role")?))
}

/// ListCouncils' role filter.
///
/// # Errors
/// Field `role_filter` for an unknown role.
pub fn list_filter(r: &pb::ListCouncilsRequest) -> Result<Option<Role>, ApplicationError> {
    role_filter(&r.role_filter, "role_filter")
}

/// DeleteCouncil's council, by id or by role.
///
/// # Errors
/// Field `council_id` unless exactly one of `council_id` and `role` is set, or when malformed;
/// `role` for an unknown role.
pub fn delete_selector(r: &pb::DeleteCouncilRequest) -> Result<CouncilSelector, ApplicationError> {
    match (r.council_id.is_empty(), r.role.trim().is_empty()) {
        (false, true) => Ok(CouncilSelector::Id(CouncilId::new(r.council_id.as_str())?)),
        (true, false) => Ok(CouncilSelector::Role(role(&r.role, "role")?)),
        (false, false) => Err(invalid("council_id", "set council_id or role, not both")),
        (true, true) => Err(invalid("council_id", "is required (or set role)")),
    }
}

/// SetAgentStatus' agent and status.
///
/// # Errors
/// Field `agent_id` or `status` when malformed.
pub fn set_status(r: &pb::SetAgentStatusRequest) -> Result<(AgentId, AgentStatus), ApplicationError> {
    Ok((agent_id(&r.agent_id)?, AgentStatus::parse(&r.status)?))
}

/// One registered agent as listed.
pub fn agent_info(council: &CouncilId, m: &Member) -> pb::AgentInfo {
    pb::AgentInfo {
        agent_id: m.id.to_string(),
        role: m.role.to_string(),
        status: m.status.to_string(),
        capabilities: Some(pb::AgentCapabilities {
            supported_tasks: m.capabilities.supported_tasks().to_vec(),
            model_profile: m.profile.to_string(),
            max_concurrent_tasks: i32::try_from(m.capabilities.max_concurrent_tasks()).unwrap_or(i32::MAX),
            languages: m.capabilities.languages().to_vec(),
        }),
        persona: m.persona.as_ref().map(ToString::to_string).unwrap_or_default(),
        council_id: council.to_string(),
        metadata: m.metadata.entries().iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        registered_at_ms: m.registered_at_ms,
    }
}

/// One standing council as listed; its agents only when asked.
pub fn council_info(c: &StandingCouncil, include_agents: bool) -> pb::CouncilInfo {
    let profiles: BTreeSet<&str> = c.members().iter().map(|m| m.profile.as_str()).collect();
    pb::CouncilInfo {
        council_id: c.id().to_string(),
        role: c.role().to_string(),
        num_agents: narrow(c.members().len()),
        agents: if include_agents {
            c.members().iter().map(|m| agent_info(c.id(), m)).collect()
        } else {
            Vec::new()
        },
        status: "ACTIVE".to_owned(),
        model: profiles.into_iter().collect::<Vec<_>>().join(","),
        deliberation_rounds: i32::try_from(c.rounds().get()).unwrap_or(i32::MAX),
        enable_peer_review: c.peer_review(),
        created_at_ms: c.created_at_ms(),
        active_agents: narrow(c.members().iter().filter(|m| m.status == AgentStatus::Active).count()),
    }
}

/// A created council as CreateCouncil answers it.
pub fn created(c: &StandingCouncil) -> pb::CreateCouncilResponse {
    pb::CreateCouncilResponse {
        council_id: c.id().to_string(),
        agents_created: narrow(c.members().len()),
        agent_ids: c.members().iter().map(|m| m.id.to_string()).collect(),
    }
}

fn agent_record(r: &AgentRecord) -> pb::PerformanceRecord {
    pb::PerformanceRecord {
        deliberations: wide(r.deliberations()),
        wins: wide(r.wins),
        mean_score: r.mean_score(),
        failures: wide(r.failures),
        mean_response_ms: r.mean_response_ms(),
        usage: Some(usage(&r.usage)),
    }
}

fn council_record(r: &CouncilRecord) -> pb::PerformanceRecord {
    pb::PerformanceRecord {
        deliberations: wide(r.deliberations()),
        wins: wide(r.completed),
        mean_score: r.mean_winner_score(),
        failures: wide(r.agent_failures),
        mean_response_ms: r.mean_response_ms(),
        usage: Some(usage(&r.usage)),
    }
}

/// Adds the registry's numbers to GetMetrics: every agent's record (registered agents first, in
/// council order, then unregistered agents with a record, by id) and each council's health.
pub fn add_registry(metrics: &mut pb::GetMetricsResponse, report: &RegistryReport) {
    let records = &report.records;
    let empty = AgentRecord::default();
    let mut per_agent = Vec::new();
    let mut registered = BTreeSet::new();
    let mut health = HashMap::new();
    for council in report.registry.councils() {
        for m in council.members() {
            registered.insert(&m.id);
            per_agent.push(pb::AgentPerformance {
                agent_id: m.id.to_string(),
                role: m.role.to_string(),
                council_id: council.id().to_string(),
                model_profile: m.profile.to_string(),
                status: m.status.to_string(),
                busy: records.busy.contains(&m.id),
                record: Some(agent_record(records.agents.get(&m.id).unwrap_or(&empty))),
            });
        }
        let record = records.councils.get(council.id()).cloned().unwrap_or_default();
        let now = council.health(&records.busy);
        health.insert(
            council.id().to_string(),
            pb::CouncilHealth {
                status: if now.is_available() { "AVAILABLE" } else { "BUSY" }.to_owned(),
                available_agents: narrow(now.available),
                busy_agents: narrow(now.busy),
                success_rate: record.success_rate().unwrap_or(0.0),
                role: council.role().to_string(),
                performance: Some(council_record(&record)),
            },
        );
    }
    let former: BTreeMap<&AgentId, &AgentRecord> =
        records.agents.iter().filter(|(id, _)| !registered.contains(id)).collect();
    for (id, record) in former {
        per_agent.push(pb::AgentPerformance {
            agent_id: id.to_string(),
            role: String::new(),
            council_id: String::new(),
            model_profile: String::new(),
            status: "UNREGISTERED".to_owned(),
            busy: records.busy.contains(id),
            record: Some(agent_record(record)),
        });
    }
    if let Some(agents) = metrics.agents.as_mut() {
        agents.per_agent = per_agent;
    }
    if let Some(councils) = metrics.councils.as_mut() {
        councils.health_per_council = health;
    }
}

#[cfg(test)]
mod tests {
    use orchestrator_application::ports::RegistryRecords;
    use orchestrator_domain::{Registry, TokenUsage};

    use super::*;

    fn config(c: pb::CouncilConfig) -> pb::CreateCouncilRequest {
        pb::CreateCouncilRequest { role: "dev".into(), num_agents: 0, config: Some(c) }
    }

    fn create_error(r: pb::CreateCouncilRequest) -> String {
        CreateCouncilCommand::try_from(r).unwrap_err().to_string()
    }

    #[test]
    fn create_council_defaults_and_rounds_follow_the_config() {
        let c = CreateCouncilCommand::try_from(pb::CreateCouncilRequest {
            role: "qa".into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!((c.role, c.num_agents, c.rounds, c.profiles.len()), (Role::Qa, 3, Rounds::DEFAULT, 0));
        let rounds = |c: pb::CouncilConfig| CreateCouncilCommand::try_from(config(c)).unwrap().rounds.get();
        assert_eq!(rounds(pb::CouncilConfig::default()), 0, "a config without peer review");
        assert_eq!(rounds(pb::CouncilConfig { enable_peer_review: true, ..Default::default() }), 1);
        assert_eq!(rounds(pb::CouncilConfig { deliberation_rounds: 4, ..Default::default() }), 4);
        let c = CreateCouncilCommand::try_from(config(pb::CouncilConfig {
            model_profiles: vec!["a".into(), "b".into()],
            persona: "Terse.".into(),
            ..Default::default()
        }))
        .unwrap();
        assert_eq!((c.profiles.len(), c.profiles_field), (2, "config.model_profiles"));
        assert_eq!(c.persona.unwrap().as_str(), "Terse.");
    }

    #[test]
    fn create_council_names_each_bad_field() {
        let base = pb::CreateCouncilRequest { role: "dev".into(), ..Default::default() };
        assert!(
            create_error(pb::CreateCouncilRequest { role: "ceo".into(), ..base.clone() })
                .starts_with("role: unknown role")
        );
        assert_eq!(
            create_error(pb::CreateCouncilRequest { num_agents: 17, ..base.clone() }),
            "num_agents: must be within 1..=16, got 17"
        );
        assert_eq!(
            create_error(pb::CreateCouncilRequest { num_agents: -2, ..base }),
            "num_agents: must be within 1..=16, got -2"
        );
        assert_eq!(
            create_error(config(pb::CouncilConfig { deliberation_rounds: 6, ..Default::default() })),
            "config.deliberation_rounds: must be within 0..=5, got 6"
        );
        assert_eq!(
            create_error(config(pb::CouncilConfig { deliberation_rounds: -1, ..Default::default() })),
            "config.deliberation_rounds: must be within 0..=5, got -1"
        );
        assert!(
            create_error(config(pb::CouncilConfig { model_profile: "a b".into(), ..Default::default() }))
                .starts_with("config.model_profile: invalid character")
        );
        assert!(
            create_error(config(pb::CouncilConfig {
                model_profiles: vec!["ok".into(), "".into()],
                ..Default::default()
            }))
            .starts_with("config.model_profiles[1]: must not be empty")
        );
        assert_eq!(
            create_error(config(pb::CouncilConfig {
                model_profile: "a".into(),
                model_profiles: vec!["b".into()],
                ..Default::default()
            })),
            "config.model_profiles: set model_profile or model_profiles, not both"
        );
        assert_eq!(
            create_error(config(pb::CouncilConfig { persona: " ".into(), ..Default::default() })),
            "config.persona: must not be blank"
        );
    }

    fn register_error(r: pb::RegisterAgentRequest) -> String {
        RegisterAgentCommand::try_from(r).unwrap_err().to_string()
    }

    #[test]
    fn register_agent_names_each_bad_field() {
        let base =
            pb::RegisterAgentRequest { agent_id: "alice".into(), role: "DEV".into(), ..Default::default() };
        let ok = RegisterAgentCommand::try_from(base.clone()).unwrap();
        assert_eq!((ok.agent_id.as_str(), ok.role, ok.profile), ("alice", Role::Dev, None));
        assert_eq!(
            register_error(pb::RegisterAgentRequest { agent_id: String::new(), ..base.clone() }),
            "agent_id: must not be empty"
        );
        assert!(
            register_error(pb::RegisterAgentRequest { role: String::new(), ..base.clone() })
                .starts_with("role: is required")
        );
        let caps =
            |c: pb::AgentCapabilities| pb::RegisterAgentRequest { capabilities: Some(c), ..base.clone() };
        assert!(
            register_error(caps(pb::AgentCapabilities { model_profile: "x/y".into(), ..Default::default() }))
                .starts_with("capabilities.model_profile: invalid character '/'")
        );
        assert_eq!(
            register_error(caps(pb::AgentCapabilities { max_concurrent_tasks: -1, ..Default::default() })),
            "capabilities.max_concurrent_tasks: must be within 0..=4294967295, got -1"
        );
        assert_eq!(
            register_error(caps(pb::AgentCapabilities { languages: vec![" ".into()], ..Default::default() })),
            "capabilities.languages[0]: must not be blank"
        );
        assert_eq!(
            register_error(pb::RegisterAgentRequest { persona: "\u{7}".into(), ..base.clone() }),
            "persona: invalid control character '\\u{7}'"
        );
        let metadata = HashMap::from([("k".to_owned(), "v".repeat(2000))]);
        assert!(
            register_error(pb::RegisterAgentRequest { metadata, ..base })
                .starts_with("metadata[k]: must be at most")
        );
    }

    #[test]
    fn delete_takes_exactly_one_of_id_and_role_and_filters_name_their_field() {
        let by = |council_id: &str, role: &str| {
            delete_selector(&pb::DeleteCouncilRequest { council_id: council_id.into(), role: role.into() })
        };
        assert_eq!(by("c-1", "").unwrap(), CouncilSelector::Id(CouncilId::new("c-1").unwrap()));
        assert_eq!(by("", "qa").unwrap(), CouncilSelector::Role(Role::Qa));
        assert_eq!(by("", "").unwrap_err().to_string(), "council_id: is required (or set role)");
        assert_eq!(by("c", "qa").unwrap_err().to_string(), "council_id: set council_id or role, not both");
        assert!(by("a b", "").unwrap_err().to_string().starts_with("council_id: invalid character"));
        assert!(
            list_filter(&pb::ListCouncilsRequest { role_filter: "x".into(), include_agents: false })
                .unwrap_err()
                .to_string()
                .starts_with("role_filter: unknown role")
        );
        let err = set_status(&pb::SetAgentStatusRequest { agent_id: "a".into(), status: "gone".into() })
            .unwrap_err();
        assert!(err.to_string().starts_with("status: unknown agent status"), "{err}");
        assert!(unregister(&pb::UnregisterAgentRequest { agent_id: "a".into(), role: "x".into() }).is_err());
    }

    #[test]
    fn metrics_report_each_agent_and_council_with_busy_and_available_counts() {
        let member = |id: &str, status| Member {
            status,
            ..Member::new(AgentId::new(id).unwrap(), Role::Dev, ProfileName::default_profile(), 1)
        };
        let council = StandingCouncil::new(
            CouncilId::new("c").unwrap(),
            Role::Dev,
            vec![
                member("a", AgentStatus::Active),
                member("b", AgentStatus::Active),
                member("d", AgentStatus::Draining),
            ],
            Rounds::DEFAULT,
            1,
        )
        .unwrap();
        let mut records = RegistryRecords::default();
        records.busy.insert(AgentId::new("a").unwrap());
        records.agents.insert(
            AgentId::new("a").unwrap(),
            AgentRecord {
                ranked: 2,
                wins: 1,
                score_sum: 1.5,
                failures: 1,
                usage: TokenUsage { calls: 4, latency_ms: 100, ..TokenUsage::default() },
            },
        );
        records
            .agents
            .insert(AgentId::new("old").unwrap(), AgentRecord { ranked: 1, ..AgentRecord::default() });
        records.councils.insert(
            CouncilId::new("c").unwrap(),
            CouncilRecord { completed: 3, unsuccessful: 1, ..CouncilRecord::default() },
        );
        let report = RegistryReport { registry: Registry::new(vec![council]).unwrap(), records };
        let mut metrics = pb::GetMetricsResponse {
            agents: Some(pb::AgentMetrics::default()),
            councils: Some(pb::CouncilMetrics::default()),
            ..Default::default()
        };
        add_registry(&mut metrics, &report);
        let agents = metrics.agents.unwrap().per_agent;
        let ids: Vec<_> = agents.iter().map(|a| (a.agent_id.as_str(), a.status.as_str(), a.busy)).collect();
        assert_eq!(
            ids,
            [
                ("a", "ACTIVE", true),
                ("b", "ACTIVE", false),
                ("d", "DRAINING", false),
                ("old", "UNREGISTERED", false)
            ]
        );
        let a = agents[0].record.unwrap();
        assert_eq!(
            (a.deliberations, a.wins, a.failures, a.mean_score, a.mean_response_ms),
            (3, 1, 1, Some(0.75), Some(25.0))
        );
        assert_eq!(agents[1].record.as_ref().unwrap().mean_score, None);
        let health = &metrics.councils.unwrap().health_per_council["c"];
        assert_eq!(
            (health.status.as_str(), health.available_agents, health.busy_agents),
            ("AVAILABLE", 1, 1)
        );
        assert_eq!((health.success_rate, health.performance.as_ref().unwrap().deliberations), (0.75, 4));
    }
}
