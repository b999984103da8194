//! The agent registry as both databases store it — `councils` and `council_agents` — and the
//! aggregate rows agent and council records are computed from.

use std::collections::BTreeMap;

use orchestrator_application::ports::StoreError;
use orchestrator_domain::{
    AgentId, AgentMetadata, AgentStatus, Capabilities, CouncilId, DomainError, Member, Persona, ProfileName,
    Registry, Role, Rounds, StandingCouncil,
};
use serde::{Deserialize, Serialize};

use crate::error::{Fault, corrupt_registry};
use crate::rows::UsageColumns;
use crate::text::storable;

/// The columns of `councils`, in the order of [`CouncilRow`].
pub(crate) const COUNCIL_COLUMNS: &str = "council_id, role, rounds, created_at_ms";

/// The columns of `council_agents`, in the order of [`MemberRow`].
pub(crate) const MEMBER_COLUMNS: &str =
    "agent_id, council_id, seat, role, profile, persona, capabilities, metadata, status, registered_at_ms";

/// One row of `councils`.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub(crate) struct CouncilRow {
    pub(crate) council_id: String,
    pub(crate) role: String,
    pub(crate) rounds: i64,
    pub(crate) created_at_ms: i64,
}

/// One row of `council_agents`.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub(crate) struct MemberRow {
    pub(crate) agent_id: String,
    pub(crate) council_id: String,
    /// Position in the council (the order agents joined).
    pub(crate) seat: i64,
    pub(crate) role: String,
    pub(crate) profile: String,
    pub(crate) persona: Option<String>,
    /// [`CapabilitiesJson`].
    pub(crate) capabilities: String,
    /// A JSON object of strings.
    pub(crate) metadata: String,
    pub(crate) status: String,
    pub(crate) registered_at_ms: i64,
}

/// [`Capabilities`] as stored.
#[derive(Debug, Serialize, Deserialize)]
struct CapabilitiesJson {
    supported_tasks: Vec<String>,
    languages: Vec<String>,
    max_concurrent_tasks: u32,
}

/// The registry as rows.
///
/// # Errors
/// Never for a registry the domain built; [`StoreError::CorruptRegistry`] if serde refused.
pub(crate) fn to_rows(registry: &Registry) -> Result<(Vec<CouncilRow>, Vec<MemberRow>), StoreError> {
    let mut councils = Vec::new();
    let mut members = Vec::new();
    for council in registry.councils() {
        councils.push(CouncilRow {
            council_id: storable(council.id().as_str()),
            role: council.role().as_str().to_owned(),
            rounds: i64::from(council.rounds().get()),
            created_at_ms: council.created_at_ms(),
        });
        for (seat, member) in council.members().iter().enumerate() {
            let entry = || format!("agent {}", member.id);
            let capabilities = CapabilitiesJson {
                supported_tasks: member.capabilities.supported_tasks().to_vec(),
                languages: member.capabilities.languages().to_vec(),
                max_concurrent_tasks: member.capabilities.max_concurrent_tasks(),
            };
            members.push(MemberRow {
                agent_id: storable(member.id.as_str()),
                council_id: storable(council.id().as_str()),
                seat: i64::try_from(seat).unwrap_or(i64::MAX),
                role: member.role.as_str().to_owned(),
                profile: storable(member.profile.as_str()),
                persona: member.persona.as_ref().map(|p| storable(p.as_str())),
                capabilities: json(&entry(), "capabilities", &capabilities)?,
                metadata: json(&entry(), "metadata", member.metadata.entries())?,
                status: member.status.as_str().to_owned(),
                registered_at_ms: member.registered_at_ms,
            });
        }
    }
    Ok((councils, members))
}

/// `value` as JSON text. Registry values hold no U+0000 (the domain refuses control characters
/// in them), so unlike deliberation documents they need no replacement pass.
fn json<T: Serialize>(entry: &str, what: &'static str, value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|source| corrupt_registry(entry, Fault::Serialize { what, source }))
}

/// Rebuilds the registry; rows may come in any order.
///
/// # Errors
/// [`StoreError::CorruptRegistry`] when a stored value or the registry's rules no longer hold.
pub(crate) fn from_rows(
    councils: Vec<CouncilRow>,
    mut members: Vec<MemberRow>,
) -> Result<Registry, StoreError> {
    members.sort_by(|a, b| (&a.council_id, a.seat).cmp(&(&b.council_id, b.seat)));
    let mut by_council: BTreeMap<String, Vec<Member>> = BTreeMap::new();
    for row in members {
        let council_id = row.council_id.clone();
        by_council.entry(council_id).or_default().push(member(row)?);
    }
    let councils = councils
        .into_iter()
        .map(|row| {
            let entry = format!("council {}", row.council_id);
            let invalid = |column| invalid(&entry, column);
            let members = by_council.remove(&row.council_id).unwrap_or_default();
            StandingCouncil::new(
                CouncilId::new(row.council_id.clone()).map_err(invalid("council_id"))?,
                Role::parse(&row.role).map_err(invalid("role"))?,
                members,
                Rounds::new(row.rounds).map_err(invalid("rounds"))?,
                row.created_at_ms,
            )
            .map_err(invalid("council_agents"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(orphan) = by_council.keys().next() {
        return Err(corrupt_registry(&format!("council {orphan}"), Fault::MissingCouncil));
    }
    Registry::new(councils)
        .map_err(|source| corrupt_registry("councils", Fault::Invalid { column: "councils", source }))
}

/// A stored value of registry `entry` that no longer validates.
fn invalid<'e>(entry: &'e str, column: &'static str) -> impl FnOnce(DomainError) -> StoreError + 'e {
    move |source| corrupt_registry(entry, Fault::Invalid { column, source })
}

fn member(row: MemberRow) -> Result<Member, StoreError> {
    let entry = format!("agent {}", row.agent_id);
    let invalid = |column| invalid(&entry, column);
    let entry = entry.as_str();
    let json = |column| move |source| corrupt_registry(entry, Fault::Json { column, source });
    let capabilities: CapabilitiesJson =
        serde_json::from_str(&row.capabilities).map_err(json("capabilities"))?;
    let metadata: BTreeMap<String, String> = serde_json::from_str(&row.metadata).map_err(json("metadata"))?;
    Ok(Member {
        id: AgentId::new(row.agent_id).map_err(invalid("agent_id"))?,
        role: Role::parse(&row.role).map_err(invalid("role"))?,
        profile: ProfileName::new(row.profile).map_err(invalid("profile"))?,
        persona: row.persona.map(Persona::new).transpose().map_err(invalid("persona"))?,
        capabilities: Capabilities::new(
            capabilities.supported_tasks,
            capabilities.languages,
            i64::from(capabilities.max_concurrent_tasks),
        )
        .map_err(invalid("capabilities"))?,
        metadata: AgentMetadata::new(metadata).map_err(invalid("metadata"))?,
        status: AgentStatus::parse(&row.status).map_err(invalid("status"))?,
        registered_at_ms: row.registered_at_ms,
    })
}

/// Ranked proposals of one agent over completed standing-council deliberations.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct AgentTotalsRow {
    pub(crate) agent_id: String,
    pub(crate) ranked: i64,
    pub(crate) wins: i64,
    pub(crate) score_sum: f64,
    #[sqlx(flatten)]
    pub(crate) usage: UsageColumns,
}

/// A count per agent or per council (failures, dropped agents).
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct CountRow {
    pub(crate) id: String,
    pub(crate) n: i64,
}

/// Deliberations of one council in one status, with their summed usage.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct CouncilStatusRow {
    pub(crate) council_id: String,
    pub(crate) status: String,
    pub(crate) n: i64,
    pub(crate) prompt_tokens: Option<i64>,
    pub(crate) completion_tokens: Option<i64>,
    pub(crate) calls: Option<i64>,
    pub(crate) latency_ms: Option<i64>,
}

/// The summed winner scores of one council.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct ScoreSumRow {
    pub(crate) id: String,
    pub(crate) score_sum: f64,
}

/// The stored request of a running standing-council deliberation, for its seats.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct RequestRow {
    pub(crate) task_id: String,
    pub(crate) request: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Registry {
        let mut alice =
            Member::new(AgentId::new("alice").unwrap(), Role::Dev, ProfileName::new("fast").unwrap(), 7)
                .with_persona(Some(Persona::new("Terse.").unwrap()));
        alice.capabilities = Capabilities::new(vec!["review".into()], vec!["rust".into()], 2).unwrap();
        alice.metadata = AgentMetadata::new(BTreeMap::from([("team".into(), "payments".into())])).unwrap();
        let bob = Member {
            status: AgentStatus::Draining,
            ..Member::new(AgentId::new("bob").unwrap(), Role::Dev, ProfileName::default_profile(), 8)
        };
        let dev = StandingCouncil::new(
            CouncilId::new("c-dev").unwrap(),
            Role::Dev,
            vec![alice, bob],
            Rounds::new(2).unwrap(),
            5,
        )
        .unwrap();
        let qa = StandingCouncil::new(
            CouncilId::new("c-qa").unwrap(),
            Role::Qa,
            vec![Member::new(AgentId::new("q").unwrap(), Role::Qa, ProfileName::default_profile(), 9)],
            Rounds::new(0).unwrap(),
            6,
        )
        .unwrap();
        Registry::new(vec![qa, dev]).unwrap()
    }

    #[test]
    fn the_registry_round_trips_through_rows_in_any_order() {
        let registry = registry();
        let (mut councils, mut members) = to_rows(&registry).unwrap();
        assert_eq!(members.iter().map(|m| m.seat).collect::<Vec<_>>(), [0, 1, 0]);
        councils.reverse();
        members.reverse();
        assert_eq!(from_rows(councils, members).unwrap(), registry);
    }

    #[test]
    fn rows_that_break_the_rules_are_reported_corrupt() {
        let (councils, mut members) = to_rows(&registry()).unwrap();
        members[0].status = "ASLEEP".into();
        let err = from_rows(councils.clone(), members).unwrap_err();
        assert_eq!(err.to_string(), "stored registry entry agent alice is unreadable");
        let (_, members) = to_rows(&registry()).unwrap();
        let err = from_rows(councils[..1].to_vec(), members).unwrap_err();
        assert!(matches!(err, StoreError::CorruptRegistry { .. }), "{err:?}");
    }
}
