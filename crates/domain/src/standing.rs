//! Standing councils: who deliberates for a role, defined once and kept.
//!
//! A [`StandingCouncil`] holds the registered [`Member`]s of one role — each with its model
//! profile, optional persona, capabilities and [`AgentStatus`] — and the rounds its
//! deliberations run when a request does not say. Every deliberation for the role seats its
//! ACTIVE members ([`StandingCouncil::seat`]) into an ordinary [`Council`], which the
//! deliberation keeps: later changes to the standing council never reach a deliberation that
//! already started. The rules that span councils (one council per role, agent ids unique
//! service-wide) live in [`crate::registry`].

use std::collections::{BTreeMap, BTreeSet};

use crate::agent::{Agent, AgentId, AgentStatus, Persona, ProfileName};
use crate::council::{Council, CouncilId};
use crate::deliberation::Rounds;
use crate::error::{DomainError, Result};
use crate::role::Role;

/// Most entries in each capability list.
pub const MAX_CAPABILITIES: usize = 32;
/// Longest capability entry, in bytes.
pub const MAX_CAPABILITY_BYTES: usize = 64;
/// Most metadata entries of an agent.
pub const MAX_AGENT_METADATA: usize = 32;
/// Longest metadata key and value of an agent, in bytes.
pub const MAX_AGENT_METADATA_KEY_BYTES: usize = 128;
pub const MAX_AGENT_METADATA_VALUE_BYTES: usize = 1024;

/// What an agent says it is good at. Recorded and reported, not used for seating: every ACTIVE
/// member of a council sits in each of its deliberations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    supported_tasks: Vec<String>,
    languages: Vec<String>,
    max_concurrent_tasks: u32,
}

impl Capabilities {
    /// Validates capabilities as a client sends them; entries are trimmed.
    ///
    /// # Errors
    /// `capabilities.supported_tasks[i]` / `capabilities.languages[i]` for a blank or too long
    /// entry (or the list when it has more than 32), `capabilities.max_concurrent_tasks` when
    /// negative.
    pub fn new(
        supported_tasks: Vec<String>,
        languages: Vec<String>,
        max_concurrent_tasks: i64,
    ) -> Result<Self> {
        let max_concurrent_tasks = u32::try_from(max_concurrent_tasks).map_err(|_| {
            DomainError::invalid(
                "capabilities.max_concurrent_tasks",
                format!("must be within 0..={}, got {max_concurrent_tasks}", u32::MAX),
            )
        })?;
        Ok(Self {
            supported_tasks: entries("capabilities.supported_tasks", supported_tasks)?,
            languages: entries("capabilities.languages", languages)?,
            max_concurrent_tasks,
        })
    }

    pub fn supported_tasks(&self) -> &[String] {
        &self.supported_tasks
    }

    pub fn languages(&self) -> &[String] {
        &self.languages
    }

    /// 0: not stated.
    pub fn max_concurrent_tasks(&self) -> u32 {
        self.max_concurrent_tasks
    }
}

fn entries(field: &str, raw: Vec<String>) -> Result<Vec<String>> {
    if raw.len() > MAX_CAPABILITIES {
        return Err(DomainError::invalid(
            field,
            format!("at most {MAX_CAPABILITIES} entries, got {}", raw.len()),
        ));
    }
    raw.into_iter()
        .enumerate()
        .map(|(i, entry)| {
            let entry = entry.trim().to_owned();
            if entry.is_empty() {
                Err(DomainError::invalid(format!("{field}[{i}]"), "must not be blank"))
            } else if let Some(bad) = control(&entry) {
                Err(DomainError::invalid(
                    format!("{field}[{i}]"),
                    format!("invalid control character {bad:?}"),
                ))
            } else if entry.len() > MAX_CAPABILITY_BYTES {
                Err(DomainError::invalid(
                    format!("{field}[{i}]"),
                    format!("must be at most {MAX_CAPABILITY_BYTES} bytes, got {}", entry.len()),
                ))
            } else {
                Ok(entry)
            }
        })
        .collect()
}

/// The first control character of `text` other than newline and tab.
fn control(text: &str) -> Option<char> {
    text.chars().find(|c| c.is_control() && !matches!(c, '\n' | '\t'))
}

/// Free-form labels an operator attaches to an agent (team, owner, ticket); kept and shown,
/// never interpreted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentMetadata(BTreeMap<String, String>);

impl AgentMetadata {
    /// # Errors
    /// Field `metadata` for more than 32 entries or a key outside 1..=128 bytes,
    /// `metadata[<key>]` for a value over 1 KiB; either for control characters (other than
    /// newline and tab).
    pub fn new(entries: BTreeMap<String, String>) -> Result<Self> {
        if entries.len() > MAX_AGENT_METADATA {
            return Err(DomainError::invalid(
                "metadata",
                format!("at most {MAX_AGENT_METADATA} entries, got {}", entries.len()),
            ));
        }
        for (key, value) in &entries {
            if key.is_empty() || key.len() > MAX_AGENT_METADATA_KEY_BYTES {
                return Err(DomainError::invalid(
                    "metadata",
                    format!("keys must be 1..={MAX_AGENT_METADATA_KEY_BYTES} bytes, got {}", key.len()),
                ));
            }
            if let Some(bad) = control(key) {
                return Err(DomainError::invalid(
                    "metadata",
                    format!("invalid control character {bad:?} in a key"),
                ));
            }
            if let Some(bad) = control(value) {
                return Err(DomainError::invalid(
                    format!("metadata[{key}]"),
                    format!("invalid control character {bad:?}"),
                ));
            }
            if value.len() > MAX_AGENT_METADATA_VALUE_BYTES {
                return Err(DomainError::invalid(
                    format!("metadata[{key}]"),
                    format!("must be at most {MAX_AGENT_METADATA_VALUE_BYTES} bytes, got {}", value.len()),
                ));
            }
        }
        Ok(Self(entries))
    }

    pub fn entries(&self) -> &BTreeMap<String, String> {
        &self.0
    }
}

/// A registered agent: a member of its role's standing council.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: AgentId,
    pub role: Role,
    pub profile: ProfileName,
    pub persona: Option<Persona>,
    pub capabilities: Capabilities,
    pub metadata: AgentMetadata,
    pub status: AgentStatus,
    pub registered_at_ms: i64,
}

impl Member {
    /// An ACTIVE member with no persona, capabilities or metadata.
    pub fn new(id: AgentId, role: Role, profile: ProfileName, registered_at_ms: i64) -> Self {
        Self {
            id,
            role,
            profile,
            persona: None,
            capabilities: Capabilities::default(),
            metadata: AgentMetadata::default(),
            status: AgentStatus::Active,
            registered_at_ms,
        }
    }

    /// This member with `persona`.
    #[must_use]
    pub fn with_persona(self, persona: Option<Persona>) -> Self {
        Self { persona, ..self }
    }
}

/// The standing council of a role: 1..=16 members of that role with unique ids, at least one
/// of them ACTIVE, and the review rounds its deliberations run by default (0: no peer review).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandingCouncil {
    id: CouncilId,
    role: Role,
    members: Vec<Member>,
    rounds: Rounds,
    created_at_ms: i64,
}

impl StandingCouncil {
    /// # Errors
    /// `num_agents` unless 1..=16 members; `role` when a member's role is not the council's;
    /// `agent_id` (a conflict) for a duplicate id; `status` (refused) when no member is ACTIVE.
    pub fn new(
        id: CouncilId,
        role: Role,
        members: Vec<Member>,
        rounds: Rounds,
        created_at_ms: i64,
    ) -> Result<Self> {
        Council::validate_size(i64::try_from(members.len()).unwrap_or(i64::MAX))?;
        let mut seen = BTreeSet::new();
        for member in &members {
            check_role(role, member)?;
            if !seen.insert(&member.id) {
                return Err(DomainError::conflict(
                    "agent_id",
                    format!("agent \"{}\" is listed twice", member.id),
                ));
            }
        }
        let council = Self { id, role, members, rounds, created_at_ms };
        council.check_active()?;
        Ok(council)
    }

    pub fn id(&self) -> &CouncilId {
        &self.id
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// Members in seat order (the order they joined).
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    pub fn member(&self, id: &AgentId) -> Option<&Member> {
        self.members.iter().find(|m| &m.id == id)
    }

    /// Review rounds of a deliberation whose request sets none.
    pub fn rounds(&self) -> Rounds {
        self.rounds
    }

    /// Whether its deliberations run peer review by default (rounds above 0).
    pub fn peer_review(&self) -> bool {
        self.rounds.get() > 0
    }

    pub fn created_at_ms(&self) -> i64 {
        self.created_at_ms
    }

    /// The council a new deliberation seats: the ACTIVE members, in seat order, with their
    /// profiles and personas, marked with this council's id.
    ///
    /// # Errors
    /// None while the invariants hold (members share the role, ids are unique, 1..=16 are
    /// ACTIVE): [`StandingCouncil::new`] and every change keep them.
    pub fn seat(&self) -> Result<Council> {
        let agents = self
            .members
            .iter()
            .filter(|m| m.status == AgentStatus::Active)
            .enumerate()
            .map(|(seat, m)| Agent {
                id: m.id.clone(),
                role: m.role,
                profile: m.profile.clone(),
                seat,
                persona: m.persona.clone(),
            })
            .collect();
        Ok(Council::new(self.role, agents)?.seated_from(self.id.clone()))
    }

    /// Adds `member` at the last seat.
    pub(crate) fn add(&mut self, member: Member) -> Result<()> {
        check_role(self.role, &member)?;
        if self.members.len() >= Council::MAX_AGENTS {
            return Err(DomainError::refused(
                "role",
                format!(
                    "the {} council already seats {} agents, the most a council may have",
                    self.role,
                    Council::MAX_AGENTS
                ),
            ));
        }
        if self.member(&member.id).is_some() {
            return Err(DomainError::conflict(
                "agent_id",
                format!("agent \"{}\" already sits on this council", member.id),
            ));
        }
        self.members.push(member);
        Ok(())
    }

    /// Removes a member; the council keeps at least one ACTIVE member.
    pub(crate) fn remove(&mut self, id: &AgentId) -> Result<Member> {
        let index = self.index_of(id)?;
        if self.members.len() == 1 {
            return Err(DomainError::refused(
                "agent_id",
                format!(
                    "\"{id}\" is the last agent of council {}; a council keeps at least one (delete the council instead)",
                    self.id
                ),
            ));
        }
        let member = self.members.remove(index);
        if let Err(error) = self.check_active() {
            self.members.insert(index, member);
            return Err(error);
        }
        Ok(member)
    }

    /// Changes a member's status; the council keeps at least one ACTIVE member.
    pub(crate) fn set_status(&mut self, id: &AgentId, status: AgentStatus) -> Result<&Member> {
        let index = self.index_of(id)?;
        let before = self.members[index].status;
        self.members[index].status = status;
        if let Err(error) = self.check_active() {
            self.members[index].status = before;
            return Err(error);
        }
        Ok(&self.members[index])
    }

    fn index_of(&self, id: &AgentId) -> Result<usize> {
        self.members.iter().position(|m| &m.id == id).ok_or_else(|| {
            DomainError::not_found("agent_id", format!("no agent \"{id}\" on council {}", self.id))
        })
    }

    fn check_active(&self) -> Result<()> {
        if self.members.iter().any(|m| m.status == AgentStatus::Active) {
            Ok(())
        } else {
            Err(DomainError::refused(
                "status",
                format!("council {} needs at least one ACTIVE agent to seat", self.id),
            ))
        }
    }
}

fn check_role(role: Role, member: &Member) -> Result<()> {
    if member.role == role {
        Ok(())
    } else {
        Err(DomainError::invalid(
            "role",
            format!("agent \"{}\" is {} but the council is {role}", member.id, member.role),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn member(id: &str, role: Role, profile: &str) -> Member {
        Member::new(AgentId::new(id).unwrap(), role, ProfileName::new(profile).unwrap(), 1)
    }

    fn council(members: Vec<Member>) -> Result<StandingCouncil> {
        StandingCouncil::new(CouncilId::new("c-1").unwrap(), Role::Dev, members, Rounds::DEFAULT, 1)
    }

    #[test]
    fn seats_active_members_in_order_with_profiles_personas_and_its_id() {
        let persona = Persona::new("You favour boring technology.").unwrap();
        let mut c = council(vec![
            member("alice", Role::Dev, "fast").with_persona(Some(persona.clone())),
            member("bob", Role::Dev, "big"),
            member("carol", Role::Dev, "fast"),
        ])
        .unwrap();
        c.set_status(&AgentId::new("bob").unwrap(), AgentStatus::Draining).unwrap();
        let seated = c.seat().unwrap();
        assert_eq!(seated.id().map(CouncilId::as_str), Some("c-1"));
        let seats: Vec<_> =
            seated.agents().iter().map(|a| (a.id.as_str(), a.profile.as_str(), a.seat)).collect();
        assert_eq!(seats, [("alice", "fast", 0), ("carol", "fast", 1)]);
        assert_eq!(seated.agents()[0].persona.as_ref(), Some(&persona));
        assert_eq!(seated.agents()[1].persona, None);
    }

    #[test]
    fn size_must_be_one_to_sixteen() {
        assert_eq!(council(vec![]).unwrap_err().to_string(), "num_agents: must be within 1..=16, got 0");
        let seventeen = (0..17).map(|i| member(&format!("a{i}"), Role::Dev, "default")).collect();
        assert_eq!(council(seventeen).unwrap_err().to_string(), "num_agents: must be within 1..=16, got 17");
        let mut full =
            council((0..16).map(|i| member(&format!("a{i}"), Role::Dev, "default")).collect()).unwrap();
        let err = full.add(member("one-more", Role::Dev, "default")).unwrap_err();
        assert!(matches!(err, DomainError::Refused { ref field, .. } if field == "role"), "{err:?}");
        assert_eq!(
            err.to_string(),
            "role: the DEV council already seats 16 agents, the most a council may have"
        );
    }

    #[test]
    fn members_share_the_council_role() {
        let err = council(vec![member("q", Role::Qa, "default")]).unwrap_err();
        assert_eq!(err, DomainError::invalid("role", "agent \"q\" is QA but the council is DEV"));
        let mut c = council(vec![member("d", Role::Dev, "default")]).unwrap();
        assert_eq!(c.add(member("q", Role::Qa, "default")).unwrap_err().field(), Some("role"));
    }

    #[test]
    fn member_ids_are_unique_within_a_council() {
        let err = council(vec![member("x", Role::Dev, "a"), member("x", Role::Dev, "b")]).unwrap_err();
        assert_eq!(err, DomainError::conflict("agent_id", "agent \"x\" is listed twice"));
        let mut c = council(vec![member("x", Role::Dev, "a")]).unwrap();
        let err = c.add(member("x", Role::Dev, "b")).unwrap_err();
        assert!(matches!(err, DomainError::Conflict { ref field, .. } if field == "agent_id"), "{err:?}");
    }

    #[test]
    fn the_last_agent_stays_and_one_agent_stays_active() {
        let mut c = council(vec![member("x", Role::Dev, "a"), member("y", Role::Dev, "a")]).unwrap();
        let x = AgentId::new("x").unwrap();
        let y = AgentId::new("y").unwrap();
        c.set_status(&x, AgentStatus::Draining).unwrap();
        let err = c.set_status(&y, AgentStatus::Draining).unwrap_err();
        assert_eq!(
            err,
            DomainError::refused("status", "council c-1 needs at least one ACTIVE agent to seat")
        );
        assert_eq!(c.member(&y).unwrap().status, AgentStatus::Active, "a refused change changes nothing");
        let err = c.remove(&y).unwrap_err();
        assert_eq!(err.field(), Some("status"), "removing the only active agent is refused: {err}");
        assert_eq!(c.members().len(), 2);
        c.set_status(&x, AgentStatus::Active).unwrap();
        assert_eq!(c.remove(&y).unwrap().id, y);
        let err = c.remove(&x).unwrap_err();
        assert!(matches!(err, DomainError::Refused { ref field, .. } if field == "agent_id"), "{err:?}");
        assert!(err.to_string().contains("last agent of council c-1"), "{err}");
        let err = c.remove(&y).unwrap_err();
        assert_eq!(err, DomainError::not_found("agent_id", "no agent \"y\" on council c-1"));
        let all_draining =
            council(vec![Member { status: AgentStatus::Draining, ..member("z", Role::Dev, "a") }]);
        assert_eq!(all_draining.unwrap_err().field(), Some("status"));
    }

    #[test]
    fn peer_review_follows_the_rounds() {
        let none = StandingCouncil::new(
            CouncilId::new("c").unwrap(),
            Role::Qa,
            vec![member("q", Role::Qa, "a")],
            Rounds::new(0).unwrap(),
            5,
        )
        .unwrap();
        assert!(!none.peer_review());
        assert!(council(vec![member("d", Role::Dev, "a")]).unwrap().peer_review());
    }

    #[test]
    fn capabilities_and_metadata_name_the_bad_entry() {
        let caps = Capabilities::new(vec![" review ".into()], vec!["rust".into()], 2).unwrap();
        assert_eq!((caps.supported_tasks(), caps.max_concurrent_tasks()), (&["review".to_owned()][..], 2));
        assert_eq!(
            Capabilities::new(vec![], vec!["rust".into(), " ".into()], 0).unwrap_err().to_string(),
            "capabilities.languages[1]: must not be blank"
        );
        assert_eq!(
            Capabilities::new(vec![], vec![], -1).unwrap_err().field(),
            Some("capabilities.max_concurrent_tasks")
        );
        let many = vec!["t".to_owned(); MAX_CAPABILITIES + 1];
        assert_eq!(
            Capabilities::new(many, vec![], 0).unwrap_err().field(),
            Some("capabilities.supported_tasks")
        );
        let long = BTreeMap::from([("team".to_owned(), "x".repeat(MAX_AGENT_METADATA_VALUE_BYTES + 1))]);
        assert_eq!(AgentMetadata::new(long).unwrap_err().field(), Some("metadata[team]"));
        let empty_key = BTreeMap::from([(String::new(), "x".to_owned())]);
        assert_eq!(AgentMetadata::new(empty_key).unwrap_err().field(), Some("metadata"));
        let nul = BTreeMap::from([("team".to_owned(), "a\0b".to_owned())]);
        assert_eq!(
            AgentMetadata::new(nul).unwrap_err().to_string(),
            "metadata[team]: invalid control character '\\0'"
        );
        assert_eq!(
            Capabilities::new(vec!["a\0".into()], vec![], 0).unwrap_err().field(),
            Some("capabilities.supported_tasks[0]")
        );
    }
}
