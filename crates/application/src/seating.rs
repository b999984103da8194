//! Who sits a deliberation: the role's standing council, unless the request chose its own
//! council (or rounds). The one place both the registry and the deliberation use case meet, so
//! neither imports the other.

use orchestrator_domain::{Council, Rounds};

use crate::deliberate::DeliberateCommand;
use crate::error::{ApplicationError, Result};
use crate::ports::{AgentBackend, CouncilStore};

/// What a deliberation request chose for itself rather than leaving to the role's standing
/// council. Nothing chosen (the default) seats the standing council when the role has one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `num_agents` or `agent_profiles` was set: an ad-hoc council sits, for this one
    /// deliberation, even if the role has a standing council.
    pub council: bool,
    /// `rounds` was set: it wins over the standing council's default rounds.
    pub rounds: bool,
}

impl Overrides {
    /// Everything chosen by the request: the behaviour of a server without standing councils.
    pub const ALL: Overrides = Overrides { council: true, rounds: true };
}

/// The standing council seats of a deliberation for `command`, with the rounds it runs:
/// `None` when the command chose its own council or the role has no standing council.
///
/// # Errors
/// `FailedPrecondition` when an agent of the standing council runs on a profile the backend
/// does not have; `Store` when the registry cannot be read.
pub(crate) async fn standing_seats(
    store: Option<&dyn CouncilStore>,
    backend: &dyn AgentBackend,
    command: &DeliberateCommand,
) -> Result<Option<(Council, Rounds)>> {
    let Some(store) = store.filter(|_| !command.overrides.council) else {
        return Ok(None);
    };
    let registry = store.registry().await.map_err(|source| ApplicationError::Store { source })?;
    let Some(standing) = registry.council_for(command.role) else {
        return Ok(None);
    };
    let council = standing.seat()?;
    if let Some(agent) = council.agents().iter().find(|a| !backend.has_profile(&a.profile)) {
        return Err(ApplicationError::FailedPrecondition(format!(
            "role: agent \"{}\" of the {} council {} runs on model profile \"{}\", which is not configured",
            agent.id,
            standing.role(),
            standing.id(),
            agent.profile
        )));
    }
    let rounds = if command.overrides.rounds { command.rounds } else { standing.rounds() };
    Ok(Some((council, rounds)))
}
