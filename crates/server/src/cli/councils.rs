//! The `council`, `agent` and `agents` subcommands: the standing-council registry from a
//! terminal.

use std::collections::HashMap;

use clap::{Args, Subcommand};
use orchestrator_api_grpc::pb;

use serde::Serialize;

use super::Context;
use super::terminal_text::outln;

/// `orchestrator council …`
#[derive(Debug, Subcommand)]
pub(crate) enum CouncilCommand {
    /// Create the standing council of a role with generated agents.
    Create {
        /// DEV, QA, ARCHITECT, DEVOPS or DATA.
        #[arg(long)]
        role: String,
        /// Agents to seat (1..=16; default 3).
        #[arg(long, default_value_t = 0, allow_negative_numbers = true,
              value_parser = clap::value_parser!(i32).range(0..=16), hide_default_value = true)]
        agents: i32,
        /// Model profile (repeatable; agent i runs on the i-th, cycled). Default: `default`.
        #[arg(long = "profile")]
        profiles: Vec<String>,
        /// Default review rounds of its deliberations (0: no peer review; default 1).
        #[arg(long, allow_negative_numbers = true, value_parser = clap::value_parser!(i32).range(0..=5))]
        rounds: Option<i32>,
        /// Persona of every agent.
        #[arg(long, default_value = "")]
        persona: String,
    },
    /// List the standing councils and their agents.
    List {
        #[arg(long)]
        role: Option<String>,
    },
    /// Delete a standing council (by id, or by --role) and its agents.
    Delete {
        council_id: Option<String>,
        #[arg(long)]
        role: Option<String>,
    },
}

/// `orchestrator agent …`
#[derive(Debug, Subcommand)]
pub(crate) enum AgentCommand {
    /// Register an agent on its role's standing council (created if the role has none).
    Register {
        agent_id: String,
        #[arg(long)]
        role: String,
        /// Model profile it runs on (default: `default`).
        #[arg(long, default_value = "")]
        profile: String,
        /// Standing instructions added to its prompts.
        #[arg(long, default_value = "")]
        persona: String,
        /// A `key=value` label (repeatable).
        #[arg(long = "meta")]
        metadata: Vec<String>,
    },
    /// Remove an agent from its council.
    Unregister {
        agent_id: String,
        /// Only if it is of this role.
        #[arg(long, default_value = "")]
        role: String,
    },
    /// Seat the agent in no new deliberation (running ones keep it).
    Drain { agent_id: String },
    /// Seat the agent in new deliberations again.
    Activate { agent_id: String },
}

/// `orchestrator agents`
#[derive(Debug, Args)]
pub(crate) struct AgentsArgs {
    /// Only deliberations of the last this many seconds (0: all time).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true, value_parser = clap::value_parser!(i64).range(0..))]
    since_secs: i64,
}

/// What a registry change did, for `--json`.
#[derive(Debug, Serialize)]
struct ChangeView {
    council_id: Option<String>,
    agent_ids: Vec<String>,
    message: Option<String>,
}

#[derive(Debug, Serialize)]
struct AgentView {
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
    fn of(a: &pb::AgentInfo) -> Self {
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
struct CouncilView {
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
    fn of(c: &pb::CouncilInfo) -> Self {
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
struct RecordView {
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
    fn of(a: &pb::AgentPerformance) -> Self {
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

/// Runs a `council` subcommand.
///
/// # Errors
/// Connection failures and error statuses, formatted for a person.
pub(crate) async fn council(command: CouncilCommand, context: &Context) -> anyhow::Result<()> {
    match command {
        CouncilCommand::Create { role, agents, profiles, rounds, persona } => {
            let config = pb::CouncilConfig {
                deliberation_rounds: rounds.unwrap_or(0),
                enable_peer_review: rounds.is_none_or(|r| r > 0),
                model_profiles: profiles,
                persona,
                ..Default::default()
            };
            let created = context
                .target
                .client()
                .await?
                .create_council(pb::CreateCouncilRequest { role, num_agents: agents, config: Some(config) })
                .await
                .map_err(|s| context.target.failed(&s))?
                .into_inner();
            if context.json {
                return Context::print_json(&ChangeView {
                    council_id: Some(created.council_id),
                    agent_ids: created.agent_ids,
                    message: None,
                });
            }
            outln!("council {} created with {}", created.council_id, created.agent_ids.join(", "));
            Ok(())
        }
        CouncilCommand::List { role } => {
            let listed = context
                .target
                .client()
                .await?
                .list_councils(pb::ListCouncilsRequest {
                    role_filter: role.unwrap_or_default(),
                    include_agents: true,
                })
                .await
                .map_err(|s| context.target.failed(&s))?
                .into_inner();
            if context.json {
                return Context::print_json(&listed.councils.iter().map(CouncilView::of).collect::<Vec<_>>());
            }
            if listed.councils.is_empty() {
                outln!("no standing councils: every deliberation seats an ad-hoc council");
            }
            for c in &listed.councils {
                outln!(
                    "{} {:<9} {} agent(s), {} round(s), profiles {}",
                    c.council_id,
                    c.role,
                    c.num_agents,
                    c.deliberation_rounds,
                    c.model
                );
                for a in &c.agents {
                    let profile = a.capabilities.as_ref().map_or("", |caps| caps.model_profile.as_str());
                    let persona = a.persona.lines().next().unwrap_or_default();
                    outln!("  {:<24} {:<9} {:<12} {persona}", a.agent_id, a.status, profile);
                }
            }
            Ok(())
        }
        CouncilCommand::Delete { council_id, role } => {
            let deleted = context
                .target
                .client()
                .await?
                .delete_council(pb::DeleteCouncilRequest {
                    council_id: council_id.unwrap_or_default(),
                    role: role.unwrap_or_default(),
                })
                .await
                .map_err(|s| context.target.failed(&s))?
                .into_inner();
            if context.json {
                return Context::print_json(&ChangeView {
                    council_id: Some(deleted.council_id),
                    agent_ids: deleted.agent_ids,
                    message: Some(deleted.message),
                });
            }
            outln!("{}", deleted.message);
            Ok(())
        }
    }
}

/// Runs an `agent` subcommand.
///
/// # Errors
/// A malformed `--meta`, connection failures and error statuses, formatted for a person.
pub(crate) async fn agent(command: AgentCommand, context: &Context) -> anyhow::Result<()> {
    match command {
        AgentCommand::Register { agent_id, role, profile, persona, metadata } => {
            let metadata = metadata
                .iter()
                .map(|pair| {
                    pair.split_once('=')
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .ok_or_else(|| anyhow::anyhow!("--meta {pair:?}: expected key=value"))
                })
                .collect::<Result<HashMap<_, _>, _>>()?;
            let registered = context
                .target
                .client()
                .await?
                .register_agent(pb::RegisterAgentRequest {
                    agent_id,
                    role,
                    capabilities: Some(pb::AgentCapabilities {
                        model_profile: profile,
                        ..Default::default()
                    }),
                    metadata,
                    persona,
                    ..Default::default()
                })
                .await
                .map_err(|s| context.target.failed(&s))?
                .into_inner();
            if context.json {
                return Context::print_json(&ChangeView {
                    council_id: Some(registered.council_id),
                    agent_ids: Vec::new(),
                    message: Some(registered.message),
                });
            }
            outln!("{}", registered.message);
            Ok(())
        }
        AgentCommand::Unregister { agent_id, role } => {
            let removed = context
                .target
                .client()
                .await?
                .unregister_agent(pb::UnregisterAgentRequest { agent_id, role })
                .await
                .map_err(|s| context.target.failed(&s))?
                .into_inner();
            if context.json {
                return Context::print_json(&ChangeView {
                    council_id: None,
                    agent_ids: Vec::new(),
                    message: Some(removed.message),
                });
            }
            outln!("{}", removed.message);
            Ok(())
        }
        AgentCommand::Drain { agent_id } => set_status(agent_id, "DRAINING", context).await,
        AgentCommand::Activate { agent_id } => set_status(agent_id, "ACTIVE", context).await,
    }
}

async fn set_status(agent_id: String, status: &str, context: &Context) -> anyhow::Result<()> {
    let set = context
        .target
        .client()
        .await?
        .set_agent_status(pb::SetAgentStatusRequest { agent_id, status: status.to_owned() })
        .await
        .map_err(|s| context.target.failed(&s))?
        .into_inner();
    let agent = set.agent.unwrap_or_default();
    if context.json {
        return Context::print_json(&AgentView::of(&agent));
    }
    outln!("{} is {}", agent.agent_id, agent.status);
    Ok(())
}

/// Prints every agent's record: one line per agent of a standing council.
///
/// # Errors
/// Connection failures and error statuses, formatted for a person.
pub(crate) async fn agents(args: AgentsArgs, context: &Context) -> anyhow::Result<()> {
    let metrics = context
        .target
        .client()
        .await?
        .get_metrics(pb::GetMetricsRequest {
            metric_type: String::new(),
            time_range_ms: args.since_secs.saturating_mul(1000),
        })
        .await
        .map_err(|s| context.target.failed(&s))?
        .into_inner();
    let per_agent = metrics.agents.unwrap_or_default().per_agent;
    if context.json {
        return Context::print_json(&per_agent.iter().map(RecordView::of).collect::<Vec<_>>());
    }
    outln!(
        "{:<24} {:<9} {:<12} {:<12} {:>6} {:>5} {:>6} {:>8} {:>9} {:>9}",
        "agent",
        "role",
        "profile",
        "status",
        "delibs",
        "wins",
        "score",
        "failures",
        "resp_ms",
        "tokens"
    );
    for a in &per_agent {
        let r = a.record.unwrap_or_default();
        let u = r.usage.unwrap_or_default();
        let score = r.mean_score.map_or_else(|| "-".to_owned(), |s| format!("{s:.3}"));
        let response = r.mean_response_ms.map_or_else(|| "-".to_owned(), |ms| format!("{ms:.0}"));
        let status = if a.busy { format!("{} busy", a.status) } else { a.status.clone() };
        outln!(
            "{:<24} {:<9} {:<12} {:<12} {:>6} {:>5} {:>6} {:>8} {:>9} {:>9}",
            a.agent_id,
            a.role,
            a.model_profile,
            status,
            r.deliberations,
            r.wins,
            score,
            r.failures,
            response,
            u.prompt_tokens + u.completion_tokens
        );
    }
    if per_agent.is_empty() {
        outln!("(no registered agents)");
    }
    Ok(())
}
