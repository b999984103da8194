//! Councils: the agents that deliberate together.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::agent::{Agent, AgentId, ProfileName};
use crate::error::{DomainError, Result};
use crate::role::Role;

/// A council of 1..=16 agents of one role with unique ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Council {
    role: Role,
    agents: Vec<Agent>,
}

impl Council {
    /// Largest council: beyond this, review rounds cost more than they add.
    pub const MAX_AGENTS: usize = 16;
    /// Council size when a request does not say.
    pub const DEFAULT_AGENTS: usize = 3;

    /// Builds a council from explicit agents; seats are renumbered to list order.
    ///
    /// # Errors
    /// `num_agents` when empty or larger than 16, `agent_id` on a duplicate id, `role` when an
    /// agent's role differs from the council's.
    pub fn new(role: Role, agents: Vec<Agent>) -> Result<Self> {
        Self::check_size(agents.len())?;
        let mut seen = BTreeSet::new();
        for agent in &agents {
            if !seen.insert(agent.id.clone()) {
                return Err(DomainError::invalid("agent_id", format!("duplicate agent id \"{}\"", agent.id)));
            }
            if agent.role != role {
                return Err(DomainError::invalid(
                    "role",
                    format!("agent \"{}\" is {} but the council is {role}", agent.id, agent.role),
                ));
            }
        }
        let agents = agents.into_iter().enumerate().map(|(seat, agent)| Agent { seat, ..agent }).collect();
        Ok(Self { role, agents })
    }

    /// Seats `size` agents named `<role>-<n>` (`dev-1`, `dev-2`, …); agent `i` runs on
    /// `profiles[i % profiles.len()]`, or on the default profile when `profiles` is empty.
    ///
    /// # Errors
    /// `num_agents` when `size` is 0 or larger than 16.
    pub fn assemble(role: Role, size: usize, profiles: &[ProfileName]) -> Result<Self> {
        Self::check_size(size)?;
        let prefix = role.as_str().to_ascii_lowercase();
        let agents = (0..size)
            .map(|seat| {
                let profile = match profiles {
                    [] => ProfileName::default_profile(),
                    _ => profiles[seat % profiles.len()].clone(),
                };
                Ok(Agent { id: AgentId::new(format!("{prefix}-{}", seat + 1))?, role, profile, seat })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { role, agents })
    }

    /// Checks a requested council size: the one place the 1..=16 rule lives.
    ///
    /// # Errors
    /// Field `num_agents` when below 1 or above 16.
    pub fn validate_size(size: i64) -> Result<usize> {
        match usize::try_from(size) {
            Ok(n) if (1..=Self::MAX_AGENTS).contains(&n) => Ok(n),
            _ => Err(DomainError::invalid(
                "num_agents",
                format!("must be within 1..={}, got {size}", Self::MAX_AGENTS),
            )),
        }
    }

    fn check_size(size: usize) -> Result<()> {
        Self::validate_size(i64::try_from(size).unwrap_or(i64::MAX)).map(|_| ())
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// Agents in seat order.
    pub fn agents(&self) -> &[Agent] {
        &self.agents
    }

    pub fn agent(&self, id: &AgentId) -> Option<&Agent> {
        self.agents.iter().find(|a| &a.id == id)
    }

    pub fn len(&self) -> usize {
        self.agents.len()
    }

    /// Always false: a council has at least one agent. Present for API symmetry with `len`.
    pub fn is_empty(&self) -> bool {
        self.agents.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(name: &str) -> ProfileName {
        ProfileName::new(name).unwrap()
    }

    #[test]
    fn assemble_names_agents_by_role_and_seat() {
        let council = Council::assemble(Role::Qa, 3, &[]).unwrap();
        let ids: Vec<_> = council.agents().iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["qa-1", "qa-2", "qa-3"]);
        assert!(council.agents().iter().all(|a| a.profile.as_str() == "default" && a.role == Role::Qa));
        assert_eq!(council.agents()[2].seat, 2);
    }

    #[test]
    fn assemble_cycles_profiles_over_agents() {
        let council = Council::assemble(Role::Dev, 3, &[profile("a"), profile("b")]).unwrap();
        let profiles: Vec<_> = council.agents().iter().map(|a| a.profile.as_str()).collect();
        assert_eq!(profiles, ["a", "b", "a"]);
    }

    #[test]
    fn size_must_be_between_one_and_sixteen() {
        assert!(Council::assemble(Role::Dev, 1, &[]).is_ok());
        assert!(Council::assemble(Role::Dev, 16, &[]).is_ok());
        assert_eq!(
            Council::assemble(Role::Dev, 0, &[]).unwrap_err().to_string(),
            "num_agents: must be within 1..=16, got 0"
        );
        assert_eq!(
            Council::assemble(Role::Dev, 17, &[]).unwrap_err().to_string(),
            "num_agents: must be within 1..=16, got 17"
        );
        assert_eq!(
            Council::validate_size(-1).unwrap_err().to_string(),
            "num_agents: must be within 1..=16, got -1"
        );
    }

    #[test]
    fn duplicate_ids_are_rejected() {
        let agent = Agent {
            id: AgentId::new("x").unwrap(),
            role: Role::Dev,
            profile: ProfileName::default_profile(),
            seat: 0,
        };
        let err = Council::new(Role::Dev, vec![agent.clone(), agent]).unwrap_err();
        assert_eq!(err.to_string(), "agent_id: duplicate agent id \"x\"");
    }

    #[test]
    fn agents_of_another_role_are_rejected() {
        let agent = Agent {
            id: AgentId::new("x").unwrap(),
            role: Role::Qa,
            profile: ProfileName::default_profile(),
            seat: 4,
        };
        assert!(Council::new(Role::Dev, vec![agent.clone()]).is_err());
        let council = Council::new(Role::Qa, vec![agent]).unwrap();
        assert_eq!(council.agents()[0].seat, 0, "seats follow list order");
    }
}
