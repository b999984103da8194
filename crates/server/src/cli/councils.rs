//! The `council` subcommands: the standing councils of the registry from a terminal (its
//! agents: `agents.rs`).

use clap::Subcommand;
use orchestrator_api_grpc::pb;

use super::Context;
use super::registry_views::{ChangeView, CouncilView};
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
