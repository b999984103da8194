//! The deliberation store port in memory: lifecycle guards, leases and fences, paging.

use super::*;

#[async_trait]
impl DeliberationStore for InMemoryStore {
    async fn create(
        &self,
        new: &NewDeliberation,
        lease: &Lease,
        event: Option<&DeliberationEvent>,
    ) -> Result<bool, StoreError> {
        self.check_up()?;
        let request = storable(&new.task_id, new)?;
        let mut entries = self.entries();
        if entries.contains_key(&request.task_id) {
            return Ok(false);
        }
        let lease = Lease { owner: storable_text(&lease.owner), until_ms: lease.until_ms };
        let record = DeliberationRecord {
            request,
            status: DeliberationStatus::Pending,
            started_at_ms: None,
            finished_at_ms: None,
            duration_ms: None,
            winner_id: None,
            error: None,
            progress: None,
            unreadable_progress: None,
            outcome: None,
            lease_epoch: 0,
            selection: None,
        };
        entries.insert(record.request.task_id.clone(), Entry { record, lease });
        self.announce(&new.task_id, true, event)
    }

    async fn create_awaited(
        &self,
        new: &NewDeliberation,
        lease: &Lease,
        started_at_ms: Option<i64>,
    ) -> Result<bool, StoreError> {
        self.awaited_creates.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let created = self.create(new, lease, None).await?;
        match started_at_ms {
            // As the port's default: stored, then started under its creator's fence.
            Some(at_ms) if created => {
                self.mark_started(&new.task_id, &Fence::created_by(lease.owner.clone()), at_ms, None).await
            }
            _ => Ok(created),
        }
    }

    async fn get(&self, task_id: &TaskId) -> Result<Option<DeliberationRecord>, StoreError> {
        self.check_up()?;
        Ok(self.entries().get(task_id).map(|entry| entry.record.clone()))
    }

    async fn mark_started(
        &self,
        task_id: &TaskId,
        fence: &Fence,
        at_ms: i64,
        event: Option<&DeliberationEvent>,
    ) -> Result<bool, StoreError> {
        let applied = self.transition(task_id, Some(fence), DeliberationStatus::InProgress, |r| {
            r.started_at_ms = Some(at_ms)
        })?;
        self.announce(task_id, applied, event)
    }

    async fn save_progress(
        &self,
        task_id: &TaskId,
        fence: &Fence,
        progress: &Deliberation,
        event: Option<&DeliberationEvent>,
    ) -> Result<bool, StoreError> {
        self.saves.fetch_add(1, Ordering::SeqCst);
        self.check_up()?;
        let progress = storable(task_id, progress)?;
        let applied = {
            let mut entries = self.entries();
            match entries.get_mut(task_id) {
                Some(entry) if entry.record.status == DeliberationStatus::InProgress => {
                    entry.check_fence(task_id, Some(fence))?;
                    entry.record.progress = Some(progress);
                    true
                }
                _ => false,
            }
        };
        self.announce(task_id, applied, event)
    }

    async fn complete(
        &self,
        task_id: &TaskId,
        fence: &Fence,
        outcome: &DeliberationOutcome,
        finished_at_ms: i64,
        duration_ms: i64,
        event: Option<&DeliberationEvent>,
    ) -> Result<bool, StoreError> {
        let mut outcome = storable(task_id, outcome)?;
        // Stored results keep who wrote them (id, role, profile, seat), not their personas.
        for ranked in &mut outcome.results {
            ranked.agent.persona = None;
        }
        let applied = self.transition(task_id, Some(fence), DeliberationStatus::Completed, |r| {
            r.winner_id = outcome.results.first().map(|winner| winner.agent.id.to_string());
            r.outcome = Some(outcome);
            r.error = None;
            r.finished_at_ms = Some(finished_at_ms);
            r.duration_ms = Some(duration_ms);
        })?;
        self.announce(task_id, applied, event)
    }

    async fn finish_unsuccessfully(
        &self,
        task_id: &TaskId,
        fence: Option<&Fence>,
        end: &UnsuccessfulEnd<'_>,
        event: Option<&DeliberationEvent>,
    ) -> Result<bool, StoreError> {
        use DeliberationStatus::{Cancelled, Failed, Interrupted, Timeout};
        if !matches!(end.status, Failed | Timeout | Cancelled | Interrupted) {
            return Ok(false);
        }
        let partial = match end.partial {
            Some(partial) if end.status == Timeout => {
                let mut partial = storable(task_id, partial)?;
                for ranked in &mut partial.results {
                    ranked.agent.persona = None;
                }
                Some(partial)
            }
            _ => None,
        };
        let applied = self.transition(task_id, fence, end.status, |r| {
            r.error = Some(storable_text(end.error));
            r.finished_at_ms = Some(end.finished_at_ms);
            r.duration_ms = end.duration_ms;
            if let Some(partial) = partial {
                r.winner_id = partial.results.first().map(|best| best.agent.id.to_string());
                r.outcome = Some(partial);
            }
        })?;
        self.announce(task_id, applied, event)
    }

    async fn save_selection(
        &self,
        task_id: &TaskId,
        selection: &StoredSelection,
    ) -> Result<bool, StoreError> {
        self.check_up()?;
        let selection = storable(task_id, selection)?;
        let mut entries = self.entries();
        match entries.get_mut(task_id) {
            Some(entry)
                if entry.record.status == DeliberationStatus::Completed
                    && entry.record.selection.is_none() =>
            {
                entry.record.winner_id = Some(selection.winner_id.clone());
                entry.record.selection = Some(selection);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        self.check_up()?;
        let cursor = query.cursor.as_deref().map(PageCursor::decode).transpose()?;
        let cursor = cursor.map(|c| PageCursor { task_id: storable_text(&c.task_id), ..c });
        let mut matching: Vec<DeliberationRecord> = self
            .entries()
            .values()
            .map(|entry| &entry.record)
            .filter(|r| query.principal.as_ref().is_none_or(|p| r.request.principal == storable_text(p)))
            .filter(|r| query.role.is_none_or(|role| r.request.role == role))
            .filter(|r| query.status.is_none_or(|status| r.status == status))
            .filter(|r| query.created_after_ms.is_none_or(|after| r.request.created_at_ms >= after))
            .filter(|r| query.created_before_ms.is_none_or(|before| r.request.created_at_ms < before))
            .filter(|r| {
                cursor.as_ref().is_none_or(|c| c.precedes(r.request.created_at_ms, &r.request.task_id))
            })
            .map(|r| DeliberationRecord { progress: None, outcome: None, ..r.clone() })
            .collect();
        matching.sort_by(|a, b| {
            (b.request.created_at_ms, &b.request.task_id).cmp(&(a.request.created_at_ms, &a.request.task_id))
        });
        let size = query.page_size() as usize;
        let next_cursor = (matching.len() > size).then(|| PageCursor::after(&matching[size - 1]).encode());
        matching.truncate(size);
        Ok(Page { items: matching, next_cursor })
    }

    async fn renew_leases(&self, lease: &Lease, only: Option<&[TaskId]>) -> Result<Vec<TaskId>, StoreError> {
        self.check_up()?;
        let owner = storable_text(&lease.owner);
        let mut renewed = Vec::new();
        for entry in self.entries().values_mut() {
            let listed = only.as_ref().is_none_or(|ids| ids.contains(&entry.record.request.task_id));
            if entry.lease.owner == owner && !entry.record.status.is_terminal() && listed {
                entry.lease.until_ms = lease.until_ms;
                renewed.push(entry.record.request.task_id.clone());
            }
        }
        Ok(renewed)
    }

    async fn claim_unfinished(
        &self,
        lease: &Lease,
        now_ms: i64,
        claim: &Claim<'_>,
    ) -> Result<Vec<DeliberationRecord>, StoreError> {
        self.check_up()?;
        let owner = storable_text(&lease.owner);
        let mut entries = self.entries();
        let mut candidates: Vec<&mut Entry> = entries
            .values_mut()
            .filter(|entry| {
                let free = entry.lease.until_ms < now_ms || claim.scope == ClaimScope::All;
                let id = &entry.record.request.task_id;
                !entry.record.status.is_terminal()
                    && free
                    && !claim.running.contains(id)
                    && claim.only.is_none_or(|only| only == id)
            })
            .collect();
        candidates.sort_by(|a, b| {
            let (a, b) = (&a.record.request, &b.record.request);
            (a.created_at_ms, &a.task_id).cmp(&(b.created_at_ms, &b.task_id))
        });
        let mut claimed = Vec::new();
        for entry in candidates.into_iter().take(claim.limit) {
            entry.lease = Lease { owner: owner.clone(), until_ms: lease.until_ms };
            entry.record.lease_epoch += 1;
            claimed.push(entry.record.clone());
        }
        Ok(claimed)
    }

    fn held_exclusively(&self) -> bool {
        self.exclusive.load(Ordering::SeqCst)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.check_up()
    }
}
