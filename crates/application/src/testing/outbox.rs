//! The outbox port in memory: events in order, a relay lease, pruning.

use super::*;

#[async_trait]
impl Outbox for InMemoryStore {
    async fn take_relay(
        &self,
        owner: &str,
        until_ms: i64,
        now_ms: i64,
    ) -> Result<Option<RelayLease>, StoreError> {
        self.check_up()?;
        let mut outbox = self.outbox();
        let epoch = match &outbox.relay {
            Some((holder, _, epoch)) if holder == owner => *epoch,
            Some((_, until, epoch)) if *until < now_ms => epoch + 1,
            Some(_) => return Ok(None),
            None => 1,
        };
        outbox.relay = Some((owner.to_owned(), until_ms, epoch));
        Ok(Some(RelayLease { owner: owner.to_owned(), epoch }))
    }

    async fn release_relay(&self, lease: &RelayLease) -> Result<(), StoreError> {
        self.check_up()?;
        let mut outbox = self.outbox();
        if let Some((holder, until, epoch)) = &mut outbox.relay
            && *holder == lease.owner
            && *epoch == lease.epoch
        {
            *until = i64::MIN;
        }
        Ok(())
    }

    async fn unsent(&self, limit: usize) -> Result<Vec<OutboxMessage>, StoreError> {
        self.check_up()?;
        Ok(self.outbox().messages.iter().take(limit).cloned().collect())
    }

    async fn mark_sent(&self, lease: &RelayLease, ids: &[i64]) -> Result<bool, StoreError> {
        self.check_up()?;
        let mut outbox = self.outbox();
        let holds = outbox
            .relay
            .as_ref()
            .is_some_and(|(holder, _, epoch)| *holder == lease.owner && *epoch == lease.epoch);
        if holds {
            outbox.messages.retain(|message| !ids.contains(&message.id));
        }
        Ok(holds)
    }

    async fn depth(&self) -> Result<u64, StoreError> {
        self.check_up()?;
        Ok(self.outbox().messages.len() as u64)
    }

    async fn drop_beyond(&self, max: u64) -> Result<u64, StoreError> {
        self.check_up()?;
        let mut outbox = self.outbox();
        let excess = outbox.messages.len().saturating_sub(usize::try_from(max).unwrap_or(usize::MAX));
        outbox.messages.drain(..excess);
        Ok(excess as u64)
    }
}
