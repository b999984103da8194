//! Which council seats a deliberation, as `deliberate` tells it: before it runs, the role's
//! standing council with its agents' names (asked of the registry) or an ad-hoc council of N;
//! after, the agents that took part, from the result. A standing council silently changes what
//! a deliberation does — drain one of two agents and every deliberation of the role has one —
//! so fewer agents than asked (or than the council has) is warned about, never left to be
//! noticed in the ranking.

use orchestrator_api_grpc::pb;

use super::args::TaskArgs;
use super::target::Client;

/// Agents of an ad-hoc council when the request names no number (the server's default).
pub(crate) const DEFAULT_AGENTS: usize = 3;
/// Review rounds when neither the request nor a standing council says (the server's default).
const DEFAULT_ROUNDS: i32 = 1;

/// What the client knows of the council before the deliberation runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seating {
    /// The request chose its own council (`--agents` or `--profile`).
    AdHoc { agents: usize, asked: bool },
    /// The role's standing council: its active agents sit, the draining ones do not.
    Standing { council_id: String, active: Vec<String>, draining: Vec<String>, rounds: i32 },
    /// The registry could not be read (an older server, a refused call): the server decides.
    Unknown,
}

impl Seating {
    /// The agents expected to take part, when known.
    pub(crate) fn expected(&self) -> Option<usize> {
        match self {
            Self::AdHoc { agents, .. } => Some(*agents),
            Self::Standing { active, .. } => Some(active.len()),
            Self::Unknown => None,
        }
    }

    /// `standing council c-1: dev-a, dev-b`, `default council of 3 agents`, `ad-hoc council
    /// of 2 agents`, or `council chosen by the server`.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::AdHoc { agents, asked: false } => format!("default council of {agents} agents"),
            Self::AdHoc { agents, asked: true } => format!("ad-hoc council of {agents} agent(s)"),
            Self::Standing { council_id, active, draining, .. } => {
                let mut text = format!("standing council {council_id}: {}", active.join(", "));
                if !draining.is_empty() {
                    text.push_str(&format!(" ({} draining)", draining.join(", ")));
                }
                text
            }
            Self::Unknown => "council chosen by the server".to_owned(),
        }
    }

    /// `2 round(s)`: the request's, else the standing council's, else the server's default.
    pub(crate) fn rounds(&self, asked: Option<i32>) -> String {
        let rounds = match (asked, self) {
            (Some(rounds), _) => rounds,
            (None, Self::Standing { rounds, .. }) => *rounds,
            (None, _) => DEFAULT_ROUNDS,
        };
        format!("{rounds} round(s)")
    }

    /// The warning a standing council of fewer agents than it has, or than a deliberation
    /// needs for peer review, deserves.
    pub(crate) fn warning(&self, role: &str) -> Option<String> {
        let Self::Standing { council_id, active, draining, .. } = self else { return None };
        if draining.is_empty() && active.len() > 1 {
            return None;
        }
        let why = if draining.is_empty() {
            String::new()
        } else {
            format!(" ({} of its agents draining: {})", draining.len(), draining.join(", "))
        };
        Some(format!(
            "warning: only {} agent(s) will deliberate: the standing {role} council {council_id} seats its \
             active agents{why}; pass --agents {DEFAULT_AGENTS} for an ad-hoc council of {DEFAULT_AGENTS}",
            active.len()
        ))
    }
}

/// The seating of `args`'s deliberation: ad-hoc when it chose its agents, else the role's
/// standing council as the registry lists it, else the default council.
pub(crate) async fn predict(client: &mut Client, args: &TaskArgs) -> Seating {
    if args.agents.is_some() || !args.profiles.is_empty() {
        let agents = args.agents.and_then(|n| usize::try_from(n).ok()).unwrap_or(DEFAULT_AGENTS);
        return Seating::AdHoc { agents, asked: args.agents.is_some() };
    }
    let request = pb::ListCouncilsRequest { role_filter: args.role.clone(), include_agents: true };
    let listed = match client.list_councils(request).await {
        Ok(listed) => listed,
        // A server without a council registry seats an ad-hoc council every time.
        Err(status) if status.code() == tonic::Code::FailedPrecondition => {
            return Seating::AdHoc { agents: DEFAULT_AGENTS, asked: false };
        }
        Err(_) => return Seating::Unknown,
    };
    let role = args.role.to_ascii_uppercase();
    match listed.into_inner().councils.into_iter().find(|c| c.role.eq_ignore_ascii_case(&role)) {
        Some(council) => standing(&council),
        None => Seating::AdHoc { agents: DEFAULT_AGENTS, asked: false },
    }
}

fn standing(council: &pb::CouncilInfo) -> Seating {
    let (draining, active): (Vec<&pb::AgentInfo>, Vec<&pb::AgentInfo>) =
        council.agents.iter().partition(|a| a.status.eq_ignore_ascii_case("DRAINING"));
    let names = |agents: Vec<&pb::AgentInfo>| agents.into_iter().map(|a| a.agent_id.clone()).collect();
    Seating::Standing {
        council_id: council.council_id.clone(),
        active: names(active),
        draining: names(draining),
        rounds: council.deliberation_rounds,
    }
}

/// After the deliberation: `seated: a, b (standing council c-1)` from the result, and a
/// warning when fewer agents took part than `expected`.
pub(crate) fn seated(r: &pb::GetDeliberationResultResponse, expected: Option<usize>) -> Vec<String> {
    let mut agents: Vec<&str> = r
        .results
        .iter()
        .filter_map(|x| x.proposal.as_ref().map(|p| p.author_id.as_str()))
        .chain(r.failures.iter().map(|f| f.agent_id.as_str()))
        .collect();
    agents.sort_unstable();
    agents.dedup();
    if agents.is_empty() {
        return Vec::new();
    }
    let council = match r.metadata.as_ref().and_then(|m| m.tags.get("council_id")).map(String::as_str) {
        Some("ad-hoc") | None => "ad-hoc council".to_owned(),
        Some(id) => format!("standing council {id}"),
    };
    let mut lines = vec![format!("seated: {} ({council})", agents.join(", "))];
    if let Some(expected) = expected.filter(|n| agents.len() < *n) {
        lines.push(format!("warning: {} of the {expected} agents expected took part", agents.len()));
    }
    lines
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn standing_of(active: &[&str], draining: &[&str]) -> Seating {
        let names = |n: &[&str]| n.iter().map(|s| (*s).to_owned()).collect();
        Seating::Standing {
            council_id: "c-1".into(),
            active: names(active),
            draining: names(draining),
            rounds: 2,
        }
    }

    #[test]
    fn a_standing_council_is_named_with_its_agents_and_its_rounds() {
        let seating = standing_of(&["dev-a"], &["dev-b"]);
        assert_eq!(seating.describe(), "standing council c-1: dev-a (dev-b draining)");
        assert_eq!(seating.rounds(None), "2 round(s)");
        assert_eq!(seating.rounds(Some(0)), "0 round(s)");
        assert_eq!(seating.expected(), Some(1));
        assert_eq!(
            seating.warning("DEV").unwrap(),
            "warning: only 1 agent(s) will deliberate: the standing DEV council c-1 seats its active \
             agents (1 of its agents draining: dev-b); pass --agents 3 for an ad-hoc council of 3"
        );
        assert_eq!(standing_of(&["a", "b"], &[]).warning("DEV"), None);
        assert!(standing_of(&["a"], &[]).warning("DEV").is_some(), "one agent: no peer review");
    }

    #[test]
    fn without_a_standing_council_the_header_says_how_many_agents_sit() {
        let default = Seating::AdHoc { agents: 3, asked: false };
        assert_eq!(default.describe(), "default council of 3 agents");
        assert_eq!(default.rounds(None), "1 round(s)");
        assert_eq!(Seating::AdHoc { agents: 2, asked: true }.describe(), "ad-hoc council of 2 agent(s)");
        assert_eq!(Seating::Unknown.describe(), "council chosen by the server");
        assert_eq!(default.warning("DEV"), None);
    }

    #[test]
    fn the_result_tells_who_sat_and_fewer_than_expected_is_warned_about() {
        let result = |authors: &[&str], council: &str| pb::GetDeliberationResultResponse {
            results: authors
                .iter()
                .map(|a| pb::DeliberationResult {
                    proposal: Some(pb::Proposal { author_id: (*a).into(), ..Default::default() }),
                    ..Default::default()
                })
                .collect(),
            metadata: Some(pb::OrchestratorMetadata {
                tags: HashMap::from([("council_id".to_owned(), council.to_owned())]),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            seated(&result(&["dev-b", "dev-a"], "c-1"), Some(2)),
            ["seated: dev-a, dev-b (standing council c-1)"]
        );
        assert_eq!(
            seated(&result(&["dev-a"], "ad-hoc"), Some(3)),
            ["seated: dev-a (ad-hoc council)", "warning: 1 of the 3 agents expected took part"]
        );
        assert!(seated(&result(&[], "ad-hoc"), Some(3)).is_empty(), "nothing ran: nothing to say");
    }
}
