//! Who may run and write an unfinished deliberation: leases held by a node, the fence of
//! each claim, and what a claim may take.

use orchestrator_domain::TaskId;

/// A server's claim on the unfinished deliberations it runs: held by `owner` (a node id) until
/// `until_ms` unless renewed. Another server takes over only what it finds unclaimed or
/// expired, so servers sharing a database never run the same deliberation twice while their
/// leases hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub owner: String,
    pub until_ms: i64,
}

/// The right to write one deliberation: the node that holds its lease and the epoch of that
/// claim. Every claim increments the epoch, so a node that lost a deliberation (its lease ran
/// out during a pause and another node claimed it) holds a stale fence, and the store refuses
/// its writes with [`StoreError::LeaseLost`](super::StoreError::LeaseLost) instead of letting two nodes store results.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fence {
    pub owner: String,
    pub epoch: i64,
}

impl Fence {
    /// The fence of a deliberation `owner` created (never claimed yet: epoch 0).
    pub fn created_by(owner: impl Into<String>) -> Self {
        Self { owner: owner.into(), epoch: 0 }
    }
}

/// What [`DeliberationStore::claim_unfinished`](super::DeliberationStore::claim_unfinished) may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim<'a> {
    pub scope: ClaimScope,
    /// Task ids never claimed (what the claiming node runs already).
    pub running: &'a [TaskId],
    /// Only this deliberation, when set (work announced on the bus).
    pub only: Option<&'a TaskId>,
    /// At most this many, the oldest first: a node takes what it can start, and leaves the
    /// rest to the others.
    pub limit: usize,
}

impl<'a> Claim<'a> {
    /// Everything `scope` allows but `running`, without a limit.
    pub fn all(scope: ClaimScope, running: &'a [TaskId]) -> Self {
        Self { scope, running, only: None, limit: usize::MAX }
    }
}

/// Which unfinished deliberations [`DeliberationStore::claim_unfinished`](super::DeliberationStore::claim_unfinished) may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimScope {
    /// Those nobody holds or whose lease ran out: work a live process holds is never taken.
    Expired,
    /// Every unfinished one, whoever held it: only for a store this process holds exclusively
    /// ([`DeliberationStore::held_exclusively`](super::DeliberationStore::held_exclusively)), where no holder can be alive.
    All,
}
