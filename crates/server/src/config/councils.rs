//! Standing councils declared in the configuration file (`[councils.<role>]`), created at
//! startup when their role has none.
//!
//! ```toml
//! [councils.dev]
//! rounds = 2                      # default review rounds; 0: no peer review (default 1)
//!
//! [[councils.dev.agents]]
//! id = "dev-alice"
//! profile = "fast"                # a [profiles.<name>] (default: "default")
//! persona = "You favour boring technology and always ask for tests."
//!
//! [[councils.dev.agents]]
//! id = "dev-bob"
//! profile = "big"
//! ```

use std::collections::{BTreeMap, BTreeSet};

use orchestrator_application::DeclaredCouncil;
use orchestrator_domain::{AgentId, Council, DomainError, Persona, ProfileName, Role, Rounds};
use serde::Deserialize;

use crate::error::{Result, ServerError};

/// One `[councils.<role>]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CouncilDeclaration {
    /// Default review rounds of the council's deliberations, 0..=5 (0: no peer review).
    #[serde(default = "default_rounds")]
    pub rounds: u32,
    /// Its agents in seat order, 1..=16.
    #[serde(default)]
    pub agents: Vec<AgentDeclaration>,
}

/// One `[[councils.<role>.agents]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentDeclaration {
    /// Unique across every council.
    pub id: String,
    /// A configured profile; `default` when omitted.
    #[serde(default = "default_profile")]
    pub profile: String,
    pub persona: Option<String>,
}

fn default_rounds() -> u32 {
    Rounds::DEFAULT.get()
}

fn default_profile() -> String {
    ProfileName::DEFAULT.to_owned()
}

/// The declarations of `councils` as the registry takes them, checked against the configured
/// `profiles`.
///
/// # Errors
/// A [`ServerError::Config`] naming the key: `councils.<role>` for an unknown or repeated
/// role, `councils.<role>.rounds`, `councils.<role>.agents` (size), and
/// `councils.<role>.agents[i].id|profile|persona`.
pub(crate) fn declared(
    councils: &BTreeMap<String, CouncilDeclaration>,
    profiles: &BTreeSet<&str>,
) -> Result<Vec<DeclaredCouncil>> {
    let mut roles = BTreeSet::new();
    let mut ids = BTreeSet::new();
    let mut declared = Vec::with_capacity(councils.len());
    for (key, council) in councils {
        let at = |field: &str| format!("councils.{key}{field}");
        let reason = |error: DomainError| match error {
            DomainError::Invalid { reason, .. } => reason,
            other => other.to_string(),
        };
        let role = Role::parse(key).map_err(|e| ServerError::config(at(""), reason(e)))?;
        if !roles.insert(role) {
            return Err(ServerError::config(at(""), format!("{role} is declared twice")));
        }
        let rounds = Rounds::new(i64::from(council.rounds))
            .map_err(|e| ServerError::config(at(".rounds"), reason(e)))?;
        if !(1..=Council::MAX_AGENTS).contains(&council.agents.len()) {
            return Err(ServerError::config(
                at(".agents"),
                format!("must list 1..={} agents, got {}", Council::MAX_AGENTS, council.agents.len()),
            ));
        }
        let agents = council
            .agents
            .iter()
            .enumerate()
            .map(|(i, agent)| {
                let at = |field: &str| at(&format!(".agents[{i}].{field}"));
                let id =
                    AgentId::new(agent.id.as_str()).map_err(|e| ServerError::config(at("id"), reason(e)))?;
                if !ids.insert(id.clone()) {
                    return Err(ServerError::config(at("id"), format!("agent \"{id}\" is declared twice")));
                }
                let profile = ProfileName::new(agent.profile.as_str())
                    .map_err(|e| ServerError::config(at("profile"), reason(e)))?;
                if !profiles.contains(profile.as_str()) {
                    return Err(ServerError::config(
                        at("profile"),
                        format!("no profile \"{profile}\" is configured (define [profiles.{profile}])"),
                    ));
                }
                let persona = agent
                    .persona
                    .as_deref()
                    .map(Persona::new)
                    .transpose()
                    .map_err(|e| ServerError::config(at("persona"), reason(e)))?;
                Ok((id, profile, persona))
            })
            .collect::<Result<Vec<_>>>()?;
        declared.push(DeclaredCouncil { role, rounds, agents });
    }
    Ok(declared)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<Vec<DeclaredCouncil>> {
        #[derive(Deserialize)]
        struct File {
            councils: BTreeMap<String, CouncilDeclaration>,
        }
        let file: File = toml::from_str(toml_text).unwrap();
        declared(&file.councils, &BTreeSet::from(["default", "fast", "big"]))
    }

    #[test]
    fn a_declared_council_becomes_the_registry_declaration() {
        let declared = parse(
            "[councils.dev]\nrounds = 2\n[[councils.dev.agents]]\nid = \"dev-alice\"\nprofile = \"fast\"\npersona = \"Terse.\"\n\
             [[councils.dev.agents]]\nid = \"dev-bob\"\n",
        )
        .unwrap();
        assert_eq!(declared.len(), 1);
        assert_eq!((declared[0].role, declared[0].rounds.get()), (Role::Dev, 2));
        let agents: Vec<_> = declared[0]
            .agents
            .iter()
            .map(|(id, profile, persona)| {
                (id.as_str(), profile.as_str(), persona.as_ref().map(Persona::as_str))
            })
            .collect();
        assert_eq!(agents, [("dev-alice", "fast", Some("Terse.")), ("dev-bob", "default", None)]);
        let qa = parse("[councils.QA]\n[[councils.QA.agents]]\nid = \"q\"\n").unwrap();
        assert_eq!((qa[0].role, qa[0].rounds), (Role::Qa, Rounds::DEFAULT));
    }

    #[test]
    fn the_config_file_declares_councils_with_arrays_of_agents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orchestrator.toml");
        std::fs::write(
            &path,
            "[profiles.default]\nbase_url = \"http://a/v1\"\nmodel = \"small\"\n\
             [profiles.big]\nbase_url = \"http://b/v1\"\nmodel = \"large\"\n\
             [councils.DEV]\nrounds = 0\n\
             [[councils.DEV.agents]]\nid = \"dev-Alice\"\nprofile = \"big\"\n\
             [[councils.DEV.agents]]\nid = \"dev-Bob\"\npersona = \"Asks for tests.\"\n",
        )
        .unwrap();
        let env =
            std::collections::HashMap::from([("ORCHESTRATOR_CONFIG".to_owned(), path.display().to_string())]);
        let config = crate::Config::from_env(&env).unwrap();
        let declared = config.declared_councils().unwrap();
        assert_eq!((declared[0].role, declared[0].rounds.get()), (Role::Dev, 0));
        let ids: Vec<_> = declared[0].agents.iter().map(|(id, p, _)| (id.as_str(), p.as_str())).collect();
        assert_eq!(ids, [("dev-Alice", "big"), ("dev-Bob", "default")], "values keep their case");
        std::fs::write(&path, "[councils.dev]\n[[councils.dev.agents]]\nid = \"x\"\nprofile = \"gpu\"\n")
            .unwrap();
        let err = crate::Config::from_env(&env).unwrap_err();
        assert!(err.to_string().starts_with("councils.dev.agents[0].profile: no profile \"gpu\""), "{err}");
    }

    #[test]
    fn errors_name_the_key_at_fault() {
        let err = |text: &str| parse(text).unwrap_err().to_string();
        assert!(
            err("[councils.ceo]\n[[councils.ceo.agents]]\nid = \"x\"\n")
                .starts_with("councils.ceo: unknown role")
        );
        assert_eq!(
            err("[councils.dev]\nrounds = 9\n[[councils.dev.agents]]\nid = \"x\"\n"),
            "councils.dev.rounds: must be within 0..=5, got 9"
        );
        assert_eq!(
            err("[councils.dev]\nrounds = 1\n"),
            "councils.dev.agents: must list 1..=16 agents, got 0"
        );
        assert!(
            err("[councils.dev]\n[[councils.dev.agents]]\nid = \"a b\"\n")
                .starts_with("councils.dev.agents[0].id: invalid character")
        );
        assert_eq!(
            err("[councils.dev]\n[[councils.dev.agents]]\nid = \"x\"\nprofile = \"gpu\"\n"),
            "councils.dev.agents[0].profile: no profile \"gpu\" is configured (define [profiles.gpu])"
        );
        assert_eq!(
            err("[councils.dev]\n[[councils.dev.agents]]\nid = \"x\"\npersona = \" \"\n"),
            "councils.dev.agents[0].persona: must not be blank"
        );
        assert_eq!(
            err(
                "[councils.dev]\n[[councils.dev.agents]]\nid = \"x\"\n[councils.qa]\n[[councils.qa.agents]]\nid = \"x\"\n"
            ),
            "councils.qa.agents[0].id: agent \"x\" is declared twice"
        );
        assert!(err("[councils.dev]\n[[councils.dev.agents]]\nid = \"x\"\n[councils.DEV]\n[[councils.DEV.agents]]\nid = \"y\"\n")
            .ends_with("DEV is declared twice"));
    }
}
