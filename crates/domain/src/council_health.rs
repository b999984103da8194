//! Whether a standing council can take work now: the rule GetMetrics reports per council.
//!
//! An agent is *busy* while it sits in a running deliberation (on any server sharing the
//! registry) and *available* when it is ACTIVE and not busy. Seating does not wait for
//! availability — a busy agent can sit in several deliberations — so health is what an operator
//! reads, not a gate.

use std::collections::BTreeSet;

use crate::agent::{AgentId, AgentStatus};
use crate::standing::StandingCouncil;

/// How many of a council's agents are available and how many are busy right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CouncilHealth {
    /// ACTIVE members not seated in a running deliberation.
    pub available: usize,
    /// Members seated in a running deliberation, whatever their status.
    pub busy: usize,
}

impl CouncilHealth {
    /// Whether a deliberation seated now would find at least one agent free.
    pub fn is_available(&self) -> bool {
        self.available > 0
    }
}

impl StandingCouncil {
    /// This council's health, given the agents seated in running deliberations.
    pub fn health(&self, busy: &BTreeSet<AgentId>) -> CouncilHealth {
        self.members().iter().fold(CouncilHealth::default(), |mut health, member| {
            let is_busy = busy.contains(&member.id);
            health.busy += usize::from(is_busy);
            health.available += usize::from(!is_busy && member.status == AgentStatus::Active);
            health
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CouncilId, Member, ProfileName, Role, Rounds};

    fn member(id: &str, status: AgentStatus) -> Member {
        let mut member =
            Member::new(AgentId::new(id).unwrap(), Role::Dev, ProfileName::new("default").unwrap(), 0);
        member.status = status;
        member
    }

    #[test]
    fn an_agent_is_available_when_active_and_not_busy() {
        let council = StandingCouncil::new(
            CouncilId::new("dev-council").unwrap(),
            Role::Dev,
            vec![
                member("a", AgentStatus::Active),
                member("b", AgentStatus::Active),
                member("c", AgentStatus::Draining),
            ],
            Rounds::DEFAULT,
            0,
        )
        .unwrap();
        let none = BTreeSet::new();
        assert_eq!(council.health(&none), CouncilHealth { available: 2, busy: 0 });
        let busy: BTreeSet<AgentId> = ["a", "c"].iter().map(|id| AgentId::new(*id).unwrap()).collect();
        assert_eq!(council.health(&busy), CouncilHealth { available: 1, busy: 2 });
        let all: BTreeSet<AgentId> = ["a", "b"].iter().map(|id| AgentId::new(*id).unwrap()).collect();
        assert!(!council.health(&all).is_available());
    }
}
