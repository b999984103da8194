//! Councils: the agents that deliberate together.
//!
//! A [`Council`] is the group seated for one deliberation: either assembled ad hoc from a
//! request, or seated from the role's standing council (see [`crate::standing`]), whose id it
//! then carries so results can be traced back to it.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::agent::{Agent, AgentId, ProfileName, validate_name};
use crate::error::{DomainError, Result};
use crate::role::Role;

/// Identifies a standing council; safe to log and to use as a key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CouncilId(String);

impl CouncilId {
    /// # Errors
    /// Field `council_id` when empty, longer than 64 bytes or outside `[A-Za-z0-9._:-]`.
    pub fn new(value: impl Into<String>) -> Result<Self> {
        let value = value.into();
        validate_name("council_id", &value)?;
        Ok(Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for CouncilId {
    type Error = DomainError;

    fn try_from(value: String) -> Result<Self> {
        Self::new(value)
    }
}

impl From<CouncilId> for String {
    fn from(id: CouncilId) -> Self {
        id.0
    }
}

impl fmt::Display for CouncilId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A council of 1..=16 agents of one role with unique ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Council {
    /// The standing council the agents were seated from; `None` for an ad-hoc council.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<CouncilId>,
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
        Ok(Self { id: None, role, agents })
    }

    /// The same agents, marked as seated from the standing council `id`.
    #[must_use]
    pub fn seated_from(self, id: CouncilId) -> Self {
        Self { id: Some(id), ..self }
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
                Ok(Agent {
                    id: AgentId::new(format!("{prefix}-{}", seat + 1))?,
                    role,
                    profile,
                    seat,
                    persona: None,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { id: None, role, agents })
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

    /// The standing council these agents were seated from; `None` when assembled ad hoc.
    pub fn id(&self) -> Option<&CouncilId> {
        self.id.as_ref()
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
        assert_eq!(council.id(), None, "an assembled council is ad hoc");
    }

    #[test]
    fn council_ids_follow_the_name_rules_and_name_their_field() {
        assert_eq!(CouncilId::new("0192f3a4-7c1e-7000-8000-000000000001").unwrap().as_str().len(), 36);
        assert_eq!(CouncilId::new("").unwrap_err().to_string(), "council_id: must not be empty");
        assert!(CouncilId::new("a/b").unwrap_err().to_string().starts_with("council_id: invalid character"));
    }

    #[test]
    fn a_council_seated_from_a_standing_one_keeps_its_id_through_serde() {
        let council =
            Council::assemble(Role::Dev, 2, &[]).unwrap().seated_from(CouncilId::new("c-1").unwrap());
        let json = serde_json::to_string(&council).unwrap();
        assert_eq!(serde_json::from_str::<Council>(&json).unwrap(), council);
        let ad_hoc = serde_json::to_string(&Council::assemble(Role::Dev, 1, &[]).unwrap()).unwrap();
        assert!(!ad_hoc.contains("\"id\":\"c"), "ad-hoc councils serialize as before: {ad_hoc}");
        assert!(ad_hoc.starts_with("{\"role\""), "{ad_hoc}");
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
            persona: None,
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
            persona: None,
        };
        assert!(Council::new(Role::Dev, vec![agent.clone()]).is_err());
        let council = Council::new(Role::Qa, vec![agent]).unwrap();
        assert_eq!(council.agents()[0].seat, 0, "seats follow list order");
    }
}
