//! The transactional outbox: events stored in the same transaction as the state change they
//! report, relayed to the broker afterwards.
//!
//! A deliberation's state change and its event either both commit or neither does, so an event
//! is never lost while the broker is away (it waits here) and never announces a state that was
//! not stored. A relay publishes the stored events in order — each carries a deduplication id
//! made of its task id, event name and per-deliberation sequence number, so a message sent
//! twice (a relay killed between publishing and [`Outbox::mark_sent`]) is kept once by the
//! broker — and removes them once the broker acknowledged them.
//!
//! With several servers on one database exactly one relays at a time: it holds the relay
//! lease ([`Outbox::take_relay`]), renewed like a deliberation's, and a relay that lost it can
//! no longer mark anything sent (the lease's epoch fences it off).

use async_trait::async_trait;

use crate::ports::StoreError;

/// A stored event waiting to be published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    /// Its place in the outbox: relayed in increasing order.
    pub id: i64,
    pub task_id: String,
    /// 1, 2, 3… per deliberation, in the order its state changed.
    pub seq: i64,
    /// The event's name (`submitted`, `completed`, …).
    pub event: String,
    /// The event as JSON.
    pub payload: String,
    /// When the state change it reports was stored (ms since the Unix epoch).
    pub created_at_ms: i64,
}

impl OutboxMessage {
    /// The broker's deduplication id of this message: `<task_id>:<event>:<seq>`.
    pub fn dedup_id(&self) -> String {
        format!("{}:{}:{}", self.task_id, self.event, self.seq)
    }
}

/// The relay lease as held: marking sent is refused once another relay took the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayLease {
    pub owner: String,
    pub epoch: i64,
}

/// How the relay fares, for GetStatus and health: never part of readiness — a broker that is
/// away holds up no deliberation, its events wait in the outbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayStatus {
    /// Whether the broker answered the relay's last attempt.
    pub connected: bool,
    /// Events waiting to be published, as last counted.
    pub outbox_depth: u64,
    /// Why the last attempt failed, when it did.
    pub problem: Option<String>,
}

/// Reports how the relay fares; implemented by the relay adapter.
pub trait RelayMonitor: Send + Sync + 'static {
    fn status(&self) -> RelayStatus;
}

/// The outbox as the relay sees it. The events go in through the [`crate::ports::DeliberationStore`]
/// methods that change state (their `event` argument), in the same transaction.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait Outbox: Send + Sync + 'static {
    /// Takes or renews the relay lease for `owner` until `until_ms`: granted when nobody holds
    /// it, `owner` does, or its holder's lease ended before `now_ms` (a new holder gets a new
    /// epoch). `None` while another relay holds it.
    async fn take_relay(
        &self,
        owner: &str,
        until_ms: i64,
        now_ms: i64,
    ) -> Result<Option<RelayLease>, StoreError>;

    /// Gives the relay lease up at once (at shutdown), so another server relays without waiting.
    async fn release_relay(&self, lease: &RelayLease) -> Result<(), StoreError>;

    /// The oldest `limit` unsent events, in outbox order (which is each deliberation's order).
    async fn unsent(&self, limit: usize) -> Result<Vec<OutboxMessage>, StoreError>;

    /// Removes the events `ids`, acknowledged by the broker, while `lease` still holds the relay
    /// lease; `false` (nothing removed) once another relay took it.
    async fn mark_sent(&self, lease: &RelayLease, ids: &[i64]) -> Result<bool, StoreError>;

    /// Unsent events.
    async fn depth(&self) -> Result<u64, StoreError>;

    /// Keeps the outbox bounded while the broker stays away: drops the oldest unsent events
    /// beyond `max`, returning how many (the caller reports them — they will never be sent).
    async fn drop_beyond(&self, max: u64) -> Result<u64, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dedup_id_names_the_deliberation_the_event_and_its_place() {
        let message = OutboxMessage {
            id: 7,
            task_id: "plan-42-DEV".into(),
            seq: 3,
            event: "phase_completed".into(),
            payload: "{}".into(),
            created_at_ms: 0,
        };
        assert_eq!(message.dedup_id(), "plan-42-DEV:phase_completed:3");
    }
}
