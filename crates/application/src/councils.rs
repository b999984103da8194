//! The council registry use cases: create, register, list, unregister, drain and delete
//! standing councils; report what their agents did. (How a council is seated in a deliberation
//! is `seating.rs`'s.)
//!
//! Every change is one [`CouncilStore::update`]: the domain's [`Registry`] applies it to the
//! registry as stored, so its rules (one council per role, agent ids unique service-wide,
//! 1..=16 agents, never below one ACTIVE agent) hold across servers sharing a database.

use std::sync::Arc;

use orchestrator_domain::{
    AgentId, AgentMetadata, AgentStatus, Capabilities, CouncilId, DomainError, Member, Persona, ProfileName,
    Registry, Role, Rounds, StandingCouncil,
};
use tracing::info;

use crate::error::{ApplicationError, Result};
use crate::ports::{AgentBackend, Clock, CouncilStore, IdGenerator, RegistryRecords, StoreError};

/// A validated request to create a standing council of generated agents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateCouncilCommand {
    pub role: Role,
    pub num_agents: usize,
    /// Agent `i` runs on `profiles[i % len]`; empty: the default profile.
    pub profiles: Vec<ProfileName>,
    /// The request field the profiles came from (`config.model_profile` or
    /// `config.model_profiles`), to name in errors.
    pub profiles_field: &'static str,
    pub rounds: Rounds,
    /// Given to every agent of the council.
    pub persona: Option<Persona>,
}

/// A validated request to register one agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterAgentCommand {
    pub agent_id: AgentId,
    pub role: Role,
    /// `None`: the default profile.
    pub profile: Option<ProfileName>,
    pub persona: Option<Persona>,
    pub capabilities: Capabilities,
    pub metadata: AgentMetadata,
}

/// Which council to delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CouncilSelector {
    Id(CouncilId),
    Role(Role),
}

/// A council the configuration file declares: created at startup when its role has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredCouncil {
    pub role: Role,
    pub rounds: Rounds,
    /// Agent id, profile and persona, in seat order.
    pub agents: Vec<(AgentId, ProfileName, Option<Persona>)>,
}

/// The registry with the records of its agents and councils, for the metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RegistryReport {
    pub registry: Registry,
    pub records: RegistryRecords,
}

/// The council registry use cases.
pub struct Councils {
    store: Arc<dyn CouncilStore>,
    backend: Option<Arc<dyn AgentBackend>>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGenerator>,
}

impl std::fmt::Debug for Councils {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Councils")
            .field("backend_configured", &self.backend.is_some())
            .finish_non_exhaustive()
    }
}

impl Councils {
    /// `backend` answers which model profiles exist; without one, agents cannot be registered.
    pub fn new(
        store: Arc<dyn CouncilStore>,
        backend: Option<Arc<dyn AgentBackend>>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdGenerator>,
    ) -> Self {
        Self { store, backend, clock, ids }
    }

    /// Creates the standing council of a role with `num_agents` generated agents (`dev-1`, …).
    ///
    /// # Errors
    /// `Conflict` on `role` when the role has a council; `InvalidArgument` on the profiles
    /// field for an unknown profile; `BackendNotConfigured`; `Store`.
    #[tracing::instrument(skip_all, fields(role = %command.role, agents = command.num_agents))]
    pub async fn create(&self, command: CreateCouncilCommand) -> Result<StandingCouncil> {
        let profiles = if command.profiles.is_empty() {
            vec![ProfileName::default_profile()]
        } else {
            command.profiles.clone()
        };
        for (i, profile) in profiles.iter().enumerate() {
            let field = match command.profiles_field {
                list if list.ends_with("profiles") => format!("{list}[{i}]"),
                single => single.to_owned(),
            };
            self.check_profile(profile, &field)?;
        }
        let id = self.new_council_id()?;
        let now = self.clock.now_ms();
        let registry = self
            .update(&mut |registry| {
                let members = registry
                    .free_agent_ids(command.role, command.num_agents)
                    .into_iter()
                    .zip(profiles.iter().cycle())
                    .map(|(agent_id, profile)| {
                        Member::new(agent_id, command.role, profile.clone(), now)
                            .with_persona(command.persona.clone())
                    })
                    .collect();
                registry.create(StandingCouncil::new(
                    id.clone(),
                    command.role,
                    members,
                    command.rounds,
                    now,
                )?)?;
                Ok(())
            })
            .await?;
        let council = registry.council(&id).cloned().ok_or_else(|| lost("council", id.as_str()))?;
        info!(council_id = %id, role = %council.role(), agents = council.members().len(), "standing council created");
        Ok(council)
    }

    /// Registers an agent on its role's standing council, creating the council when the role
    /// has none; returns the council it joined.
    ///
    /// # Errors
    /// `Conflict` on `agent_id` for a registered id; `InvalidArgument` on
    /// `capabilities.model_profile` for an unknown profile; `FailedPrecondition` on `role` when
    /// the council is full; `BackendNotConfigured`; `Store`.
    #[tracing::instrument(skip_all, fields(agent_id = %command.agent_id, role = %command.role))]
    pub async fn register(&self, command: RegisterAgentCommand) -> Result<StandingCouncil> {
        let profile = command.profile.clone().unwrap_or_else(ProfileName::default_profile);
        self.check_profile(&profile, "capabilities.model_profile")?;
        let new_id = self.new_council_id()?;
        let member = Member {
            id: command.agent_id.clone(),
            role: command.role,
            profile,
            persona: command.persona,
            capabilities: command.capabilities,
            metadata: command.metadata,
            status: AgentStatus::Active,
            registered_at_ms: self.clock.now_ms(),
        };
        let registry = self
            .update(&mut |registry| {
                registry.register(member.clone(), new_id.clone())?;
                Ok(())
            })
            .await?;
        let (council, _) =
            registry.agent(&command.agent_id).ok_or_else(|| lost("agent", command.agent_id.as_str()))?;
        info!(council_id = %council.id(), "agent registered");
        Ok(council.clone())
    }

    /// The standing councils, ordered by role; only `role`'s with a filter.
    ///
    /// # Errors
    /// `Store`.
    pub async fn list(&self, role: Option<Role>) -> Result<Vec<StandingCouncil>> {
        let registry = self.store.registry().await.map_err(registry_store_error)?;
        Ok(registry.councils().iter().filter(|c| role.is_none_or(|r| c.role() == r)).cloned().collect())
    }

    /// Removes an agent from its council. Deliberations it sits in keep it until they end.
    ///
    /// # Errors
    /// `Missing` on `agent_id` for an unknown agent; `InvalidArgument` on `role` when the agent
    /// is of another role; `FailedPrecondition` when it is its council's last (ACTIVE) agent;
    /// `Store`.
    #[tracing::instrument(skip_all, fields(agent_id = %agent_id))]
    pub async fn unregister(&self, agent_id: &AgentId, role: Option<Role>) -> Result<(CouncilId, Member)> {
        let mut removed = None;
        self.update(&mut |registry| {
            removed = Some(registry.unregister(agent_id, role)?);
            Ok(())
        })
        .await?;
        let (council_id, member) = removed.ok_or_else(|| lost("agent", agent_id.as_str()))?;
        info!(%council_id, "agent unregistered");
        Ok((council_id, member))
    }

    /// Sets an agent ACTIVE or DRAINING (seated in no new deliberation).
    ///
    /// # Errors
    /// `Missing` on `agent_id`; `FailedPrecondition` on `status` when its council would have no
    /// ACTIVE agent; `Store`.
    #[tracing::instrument(skip_all, fields(agent_id = %agent_id, status = %status))]
    pub async fn set_status(&self, agent_id: &AgentId, status: AgentStatus) -> Result<(CouncilId, Member)> {
        let registry = self
            .update(&mut |registry| {
                registry.set_status(agent_id, status)?;
                Ok(())
            })
            .await?;
        let (council, member) = registry.agent(agent_id).ok_or_else(|| lost("agent", agent_id.as_str()))?;
        Ok((council.id().clone(), member.clone()))
    }

    /// Deletes a council and its agents. Deliberations seated from it keep their seats.
    ///
    /// # Errors
    /// `Missing` on `council_id` or `role`; `Store`.
    #[tracing::instrument(skip_all)]
    pub async fn delete(&self, which: &CouncilSelector) -> Result<StandingCouncil> {
        let mut deleted = None;
        self.update(&mut |registry| {
            deleted = Some(match which {
                CouncilSelector::Id(id) => registry.delete(id)?,
                CouncilSelector::Role(role) => registry.delete_for_role(*role)?,
            });
            Ok(())
        })
        .await?;
        let council = deleted.ok_or_else(|| lost("council", "deleted"))?;
        info!(council_id = %council.id(), role = %council.role(), "standing council deleted");
        Ok(council)
    }

    /// Creates each declared council whose role has none yet, and returns the roles created:
    /// a restart finds them present and creates nothing, so they are never duplicated. A
    /// council present already is left as it is, even if the declaration changed.
    ///
    /// # Errors
    /// The declaration's invalid size, a `Conflict` on `agent_id` when one of its agents is
    /// registered on another council; `Store`.
    pub async fn declare(&self, declared: &[DeclaredCouncil]) -> Result<Vec<Role>> {
        let now = self.clock.now_ms();
        let mut created = Vec::new();
        for council in declared {
            let id = self.new_council_id()?;
            let members: Vec<Member> = council
                .agents
                .iter()
                .map(|(agent_id, profile, persona)| {
                    Member::new(agent_id.clone(), council.role, profile.clone(), now)
                        .with_persona(persona.clone())
                })
                .collect();
            let mut added = false;
            self.update(&mut |registry| {
                added = false;
                if registry.council_for(council.role).is_none() {
                    registry.create(StandingCouncil::new(
                        id.clone(),
                        council.role,
                        members.clone(),
                        council.rounds,
                        now,
                    )?)?;
                    added = true;
                }
                Ok(())
            })
            .await?;
            if added {
                info!(council_id = %id, role = %council.role, "created the standing council the configuration declares");
                created.push(council.role);
            } else {
                info!(role = %council.role, "the configuration declares a council its role has already; left as stored");
            }
        }
        Ok(created)
    }

    /// The registry and the records of its agents and councils over deliberations created at
    /// or after `since_ms`.
    ///
    /// # Errors
    /// `Store`.
    pub async fn report(&self, since_ms: Option<i64>) -> Result<RegistryReport> {
        let registry = self.store.registry().await.map_err(registry_store_error)?;
        let records = self.store.records(since_ms).await.map_err(registry_store_error)?;
        Ok(RegistryReport { registry, records })
    }

    async fn update(
        &self,
        change: &mut (dyn FnMut(&mut Registry) -> std::result::Result<(), DomainError> + Send),
    ) -> Result<Registry> {
        Ok(self.store.update(change).await.map_err(registry_store_error)??)
    }

    fn check_profile(&self, profile: &ProfileName, field: &str) -> Result<()> {
        let backend = self.backend.as_deref().ok_or(ApplicationError::BackendNotConfigured)?;
        if backend.has_profile(profile) {
            Ok(())
        } else {
            Err(ApplicationError::InvalidArgument {
                field: field.to_owned(),
                reason: format!("unknown model profile \"{profile}\""),
            })
        }
    }

    fn new_council_id(&self) -> Result<CouncilId> {
        CouncilId::new(self.ids.new_id())
            .map_err(|e| ApplicationError::Internal(format!("generated council id is invalid: {e}")))
    }
}

/// A registry storage failure: the database's, never the client's.
fn registry_store_error(error: StoreError) -> ApplicationError {
    ApplicationError::Store { source: error }
}

/// A change that applied but whose result is missing from the registry it returned: a store
/// bug, never the client's fault.
fn lost(what: &str, id: &str) -> ApplicationError {
    ApplicationError::Internal(format!("the registry lost {what} {id} it just stored"))
}

#[cfg(test)]
mod tests;
