//! The council store port in memory: atomic registry changes and agent records.

use super::*;

#[async_trait]
impl CouncilStore for InMemoryStore {
    async fn registry(&self) -> Result<Registry, StoreError> {
        Ok(self.registry.lock().unwrap_or_else(PoisonError::into_inner).clone())
    }

    async fn update(
        &self,
        change: &mut RegistryChange<'_>,
    ) -> Result<Result<Registry, DomainError>, StoreError> {
        let mut stored = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        let mut changed = stored.clone();
        if let Err(refused) = change(&mut changed) {
            return Ok(Err(refused));
        }
        *stored = changed.clone();
        Ok(Ok(changed))
    }

    async fn records(&self, since_ms: Option<i64>) -> Result<RegistryRecords, StoreError> {
        let mut records = RegistryRecords::default();
        for entry in self.entries().values() {
            let record = &entry.record;
            let Some(council) = record.request.seats.as_ref().map(|s| &s.council) else { continue };
            let Some(council_id) = council.id() else { continue };
            if record.status == DeliberationStatus::InProgress {
                records.busy.extend(council.agents().iter().map(|a| a.id.clone()));
            }
            if since_ms.is_some_and(|since| record.request.created_at_ms < since) {
                continue;
            }
            match (record.status, &record.outcome) {
                (DeliberationStatus::Completed, Some(outcome)) => {
                    let totals = records.councils.entry(council_id.clone()).or_default();
                    totals.completed += 1;
                    totals.winner_score_sum += outcome.winner().score.value();
                    totals.agent_failures += outcome.failures.len() as u64;
                    totals.usage += outcome.usage;
                    for ranked in &outcome.results {
                        let agent = records.agents.entry(ranked.agent.id.clone()).or_default();
                        agent.ranked += 1;
                        agent.wins += u64::from(ranked.rank == 1);
                        agent.score_sum += ranked.score.value();
                        agent.usage += ranked.usage;
                    }
                    for failure in &outcome.failures {
                        records.agents.entry(failure.agent.clone()).or_default().failures += 1;
                    }
                }
                (DeliberationStatus::Failed | DeliberationStatus::Timeout, _) => {
                    records.councils.entry(council_id.clone()).or_default().unsuccessful += 1;
                }
                _ => {}
            }
        }
        Ok(records)
    }
}
