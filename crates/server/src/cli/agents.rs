//! The `agent` and `agents` subcommands: registering, retiring and listing agents of the
//! standing councils, and their records.

use std::collections::HashMap;

use clap::{Args, Subcommand};
use orchestrator_api_grpc::pb;

use super::Context;
use super::terminal_text::outln;

use super::registry_views::{AgentView, ChangeView, RecordView};

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
