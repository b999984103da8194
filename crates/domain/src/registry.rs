//! The agent registry: every standing council, and the rules that span them.
//!
//! Service-wide, a role has at most one standing council and an agent id names at most one
//! agent. [`Registry`] keeps both over the whole set of councils; each change either applies
//! completely or is refused with an error naming the request field at fault, leaving the
//! registry as it was. Stores apply a change to the registry as they read it inside one
//! transaction, so these rules hold across processes sharing a database too.

use crate::agent::{AgentId, AgentStatus};
use crate::council::CouncilId;
use crate::deliberation::Rounds;
use crate::error::{DomainError, Result};
use crate::role::Role;
use crate::standing::{Member, StandingCouncil};

/// Every standing council, one per role at most, ordered by role.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registry {
    councils: Vec<StandingCouncil>,
}

impl Registry {
    /// The registry of `councils`.
    ///
    /// # Errors
    /// `role` (a conflict) for two councils of one role, `council_id` for a repeated council
    /// id, `agent_id` for an agent id on two councils.
    pub fn new(councils: Vec<StandingCouncil>) -> Result<Self> {
        let mut registry = Self::default();
        for council in councils {
            registry.create(council)?;
        }
        Ok(registry)
    }

    /// Councils ordered by role.
    pub fn councils(&self) -> &[StandingCouncil] {
        &self.councils
    }

    /// The standing council of `role`, if it has one.
    pub fn council_for(&self, role: Role) -> Option<&StandingCouncil> {
        self.councils.iter().find(|c| c.role() == role)
    }

    pub fn council(&self, id: &CouncilId) -> Option<&StandingCouncil> {
        self.councils.iter().find(|c| c.id() == id)
    }

    /// The council an agent sits on, and the agent.
    pub fn agent(&self, id: &AgentId) -> Option<(&StandingCouncil, &Member)> {
        self.councils.iter().find_map(|c| c.member(id).map(|m| (c, m)))
    }

    /// Adds a council.
    ///
    /// # Errors
    /// `role` when the role has a standing council already, `council_id` when the id is
    /// taken, `agent_id` when one of its agents is registered elsewhere (all conflicts).
    pub fn create(&mut self, council: StandingCouncil) -> Result<&StandingCouncil> {
        if let Some(existing) = self.council_for(council.role()) {
            return Err(DomainError::conflict(
                "role",
                format!(
                    "{} has a standing council already ({}); delete it first or register agents to it",
                    council.role(),
                    existing.id()
                ),
            ));
        }
        if self.council(council.id()).is_some() {
            return Err(DomainError::conflict(
                "council_id",
                format!("council {} exists already", council.id()),
            ));
        }
        for member in council.members() {
            self.check_unregistered(&member.id)?;
        }
        let at = self.councils.partition_point(|c| c.role() < council.role());
        self.councils.insert(at, council);
        Ok(&self.councils[at])
    }

    /// Adds `member` to its role's standing council, creating that council (id `new_id`,
    /// default rounds) when the role has none. Returns the council it joined.
    ///
    /// # Errors
    /// `agent_id` (a conflict) when the id is registered already; `role` (refused) when the
    /// council is full.
    pub fn register(&mut self, member: Member, new_id: CouncilId) -> Result<&StandingCouncil> {
        self.check_unregistered(&member.id)?;
        let role = member.role;
        match self.councils.iter().position(|c| c.role() == role) {
            Some(index) => {
                self.councils[index].add(member)?;
                Ok(&self.councils[index])
            }
            None => {
                let created_at_ms = member.registered_at_ms;
                let council =
                    StandingCouncil::new(new_id, role, vec![member], Rounds::DEFAULT, created_at_ms)?;
                self.create(council)
            }
        }
    }

    /// Removes an agent from its council and returns the council's id with the agent. With
    /// `role`, the agent must be of that role.
    ///
    /// # Errors
    /// `agent_id` (not found) for an unknown agent; `role` (invalid) when the agent is of
    /// another role; `agent_id` or `status` (refused) when the council would be left with no
    /// agent or no ACTIVE agent — delete the council instead.
    pub fn unregister(&mut self, id: &AgentId, role: Option<Role>) -> Result<(CouncilId, Member)> {
        let index = self.index_of_agent(id)?;
        let council = &mut self.councils[index];
        if let Some(role) = role.filter(|r| *r != council.role()) {
            return Err(DomainError::invalid(
                "role",
                format!("agent \"{id}\" is {}, not {role}", council.role()),
            ));
        }
        let member = council.remove(id)?;
        Ok((council.id().clone(), member))
    }

    /// Sets an agent's status (DRAINING agents are not seated in new deliberations).
    ///
    /// # Errors
    /// `agent_id` (not found) for an unknown agent; `status` (refused) when no ACTIVE agent
    /// would be left on its council.
    pub fn set_status(&mut self, id: &AgentId, status: AgentStatus) -> Result<(&StandingCouncil, &Member)> {
        let index = self.index_of_agent(id)?;
        self.councils[index].set_status(id, status)?;
        let council = &self.councils[index];
        council.member(id).map(|m| (council, m)).ok_or_else(|| unknown_agent(id))
    }

    /// Deletes a council with its agents (deliberations already seated from it keep them).
    ///
    /// # Errors
    /// `council_id` (not found) for an unknown id.
    pub fn delete(&mut self, id: &CouncilId) -> Result<StandingCouncil> {
        let index = self
            .councils
            .iter()
            .position(|c| c.id() == id)
            .ok_or_else(|| DomainError::not_found("council_id", format!("no council {id}")))?;
        Ok(self.councils.remove(index))
    }

    /// Deletes the standing council of `role`.
    ///
    /// # Errors
    /// `role` (not found) when the role has none.
    pub fn delete_for_role(&mut self, role: Role) -> Result<StandingCouncil> {
        let index = self
            .councils
            .iter()
            .position(|c| c.role() == role)
            .ok_or_else(|| DomainError::not_found("role", format!("{role} has no standing council")))?;
        Ok(self.councils.remove(index))
    }

    /// `count` agent ids free service-wide for new agents of `role`: `<role>-<n>` with the
    /// smallest unused numbers (`dev-1`, `dev-2`, … for the first DEV council).
    pub fn free_agent_ids(&self, role: Role, count: usize) -> Vec<AgentId> {
        let prefix = role.as_str().to_ascii_lowercase();
        (1..)
            .filter_map(|n: u32| AgentId::new(format!("{prefix}-{n}")).ok())
            .filter(|id| self.agent(id).is_none())
            .take(count)
            .collect()
    }

    fn check_unregistered(&self, id: &AgentId) -> Result<()> {
        match self.agent(id) {
            None => Ok(()),
            Some((council, _)) => Err(DomainError::conflict(
                "agent_id",
                format!(
                    "agent \"{id}\" is registered already, on the {} council {}",
                    council.role(),
                    council.id()
                ),
            )),
        }
    }

    fn index_of_agent(&self, id: &AgentId) -> Result<usize> {
        self.councils.iter().position(|c| c.member(id).is_some()).ok_or_else(|| unknown_agent(id))
    }
}

fn unknown_agent(id: &AgentId) -> DomainError {
    DomainError::not_found("agent_id", format!("no registered agent \"{id}\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::ProfileName;

    fn member(id: &str, role: Role) -> Member {
        Member::new(AgentId::new(id).unwrap(), role, ProfileName::default_profile(), 10)
    }

    fn id(s: &str) -> CouncilId {
        CouncilId::new(s).unwrap()
    }

    fn council(council_id: &str, role: Role, ids: &[&str]) -> StandingCouncil {
        let members = ids.iter().map(|m| member(m, role)).collect();
        StandingCouncil::new(id(council_id), role, members, Rounds::DEFAULT, 1).unwrap()
    }

    fn field(error: &DomainError) -> &str {
        error.field().unwrap()
    }

    #[test]
    fn one_standing_council_per_role() {
        let mut registry = Registry::new(vec![council("c-dev", Role::Dev, &["a"])]).unwrap();
        let err = registry.create(council("c-dev-2", Role::Dev, &["b"])).unwrap_err();
        assert!(matches!(err, DomainError::Conflict { .. }), "{err:?}");
        assert_eq!(field(&err), "role");
        assert!(err.to_string().contains("DEV has a standing council already (c-dev)"), "{err}");
        assert_eq!(registry.councils().len(), 1, "a refused change changes nothing");
        assert_eq!(
            field(
                &Registry::new(vec![council("x", Role::Qa, &["a"]), council("y", Role::Qa, &["b"])])
                    .unwrap_err()
            ),
            "role"
        );
    }

    #[test]
    fn agent_ids_are_unique_service_wide() {
        let mut registry = Registry::new(vec![council("c-dev", Role::Dev, &["alice"])]).unwrap();
        let err = registry.create(council("c-qa", Role::Qa, &["bob", "alice"])).unwrap_err();
        assert_eq!((field(&err), matches!(err, DomainError::Conflict { .. })), ("agent_id", true));
        assert!(registry.council_for(Role::Qa).is_none());
        let err = registry.register(member("alice", Role::Qa), id("c-new")).unwrap_err();
        assert_eq!(
            err,
            DomainError::conflict(
                "agent_id",
                "agent \"alice\" is registered already, on the DEV council c-dev"
            )
        );
        assert!(registry.council_for(Role::Qa).is_none(), "no council created for a refused agent");
    }

    #[test]
    fn council_ids_are_unique() {
        let mut registry = Registry::new(vec![council("same", Role::Dev, &["a"])]).unwrap();
        assert_eq!(field(&registry.create(council("same", Role::Qa, &["b"])).unwrap_err()), "council_id");
    }

    #[test]
    fn registering_joins_the_role_council_or_creates_it() {
        let mut registry = Registry::default();
        let created = registry.register(member("a", Role::Data), id("c-data")).unwrap();
        assert_eq!(
            (created.id().as_str(), created.role(), created.rounds()),
            ("c-data", Role::Data, Rounds::DEFAULT)
        );
        assert_eq!(created.created_at_ms(), 10);
        let joined = registry.register(member("b", Role::Data), id("unused")).unwrap();
        assert_eq!(joined.id().as_str(), "c-data");
        let ids: Vec<_> = joined.members().iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(registry.agent(&AgentId::new("b").unwrap()).unwrap().0.id().as_str(), "c-data");
    }

    #[test]
    fn unregistering_names_unknown_agents_wrong_roles_and_last_agents() {
        let mut registry = Registry::new(vec![council("c-dev", Role::Dev, &["a", "b"])]).unwrap();
        let unknown = registry.unregister(&AgentId::new("zz").unwrap(), None).unwrap_err();
        assert_eq!(unknown, DomainError::not_found("agent_id", "no registered agent \"zz\""));
        let wrong = registry.unregister(&AgentId::new("a").unwrap(), Some(Role::Qa)).unwrap_err();
        assert_eq!(wrong, DomainError::invalid("role", "agent \"a\" is DEV, not QA"));
        let (council_id, removed) =
            registry.unregister(&AgentId::new("a").unwrap(), Some(Role::Dev)).unwrap();
        assert_eq!((council_id.as_str(), removed.id.as_str()), ("c-dev", "a"));
        let last = registry.unregister(&AgentId::new("b").unwrap(), None).unwrap_err();
        assert!(matches!(last, DomainError::Refused { ref field, .. } if field == "agent_id"), "{last:?}");
        assert_eq!(registry.council_for(Role::Dev).unwrap().members().len(), 1);
    }

    #[test]
    fn draining_keeps_one_active_agent_per_council() {
        let mut registry = Registry::new(vec![council("c", Role::Dev, &["a", "b"])]).unwrap();
        let (_, a) = registry.set_status(&AgentId::new("a").unwrap(), AgentStatus::Draining).unwrap();
        assert_eq!(a.status, AgentStatus::Draining);
        let err = registry.set_status(&AgentId::new("b").unwrap(), AgentStatus::Draining).unwrap_err();
        assert_eq!(field(&err), "status");
        assert_eq!(
            field(&registry.set_status(&AgentId::new("q").unwrap(), AgentStatus::Active).unwrap_err()),
            "agent_id"
        );
    }

    #[test]
    fn deleting_by_id_or_role_frees_the_role_and_the_ids() {
        let mut registry =
            Registry::new(vec![council("c-dev", Role::Dev, &["a"]), council("c-qa", Role::Qa, &["q"])])
                .unwrap();
        assert_eq!(
            registry.delete(&id("nope")).unwrap_err(),
            DomainError::not_found("council_id", "no council nope")
        );
        assert_eq!(registry.delete(&id("c-dev")).unwrap().members().len(), 1);
        assert_eq!(field(&registry.delete_for_role(Role::Dev).unwrap_err()), "role");
        assert_eq!(registry.delete_for_role(Role::Qa).unwrap().id().as_str(), "c-qa");
        registry.create(council("c-dev-2", Role::Dev, &["a", "q"])).unwrap();
    }

    #[test]
    fn councils_are_ordered_by_role() {
        let registry = Registry::new(vec![
            council("d", Role::Data, &["x"]),
            council("a", Role::Dev, &["y"]),
            council("q", Role::Qa, &["z"]),
        ])
        .unwrap();
        let roles: Vec<_> = registry.councils().iter().map(StandingCouncil::role).collect();
        assert_eq!(roles, [Role::Dev, Role::Qa, Role::Data]);
    }

    #[test]
    fn free_agent_ids_skip_those_registered() {
        let registry = Registry::new(vec![council("c", Role::Dev, &["dev-1", "dev-3"])]).unwrap();
        let ids: Vec<_> = registry.free_agent_ids(Role::Dev, 3).iter().map(|i| i.to_string()).collect();
        assert_eq!(ids, ["dev-2", "dev-4", "dev-5"]);
        assert_eq!(registry.free_agent_ids(Role::Devops, 1)[0].as_str(), "devops-1");
    }
}
