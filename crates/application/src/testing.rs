//! Test doubles of the ports that need state: available to this crate's tests and, with the
//! `mocks` feature, to other crates' tests. Never used by production wiring.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use orchestrator_domain::{Deliberation, DeliberationOutcome, DeliberationStatus, DomainError, Registry};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::ports::{
    Claim, ClaimScope, CouncilStore, DeliberationEvent, DeliberationRecord, DeliberationStore, Fence, Lease,
    ListQuery, NewDeliberation, Outbox, OutboxMessage, Page, PageCursor, RegistryChange, RegistryRecords,
    RelayLease, StoreError, StoredSelection, UnsuccessfulEnd,
};

/// The store ports in memory, for driving the job runner and the council registry. It keeps
/// the whole contract the database stores keep (`crates/infra-store/tests/store_contract.rs`
/// runs it too): lifecycle guards, filters and keyset paging, leases, U+0000 replaced in every
/// stored text, atomic registry updates and agent records from completed deliberations.
/// Saved progress goes through the same JSON the databases keep (a [`Deliberation`] is written
/// as its `DeliberationParts` and read back through `Deliberation::restore`), so a snapshot
/// the fake accepts is one the databases accept.
#[derive(Debug, Default)]
pub struct InMemoryStore {
    entries: Mutex<HashMap<String, Entry>>,
    registry: Mutex<Registry>,
    /// How many times saving progress was asked for, applied or not.
    pub saves: AtomicUsize,
    /// While set, every call fails with `StoreError::Unavailable` (a database that is down).
    pub down: std::sync::atomic::AtomicBool,
    /// What [`DeliberationStore::held_exclusively`] answers: unset, the store behaves as a
    /// database several nodes share (the default, so tests can run nodes side by side).
    pub exclusive: std::sync::atomic::AtomicBool,
    outbox: Mutex<OutboxState>,
}

/// The outbox: unsent events, each deliberation's last sequence number, the relay lease.
#[derive(Debug, Default)]
struct OutboxState {
    messages: Vec<OutboxMessage>,
    next_id: i64,
    seqs: HashMap<String, i64>,
    relay: Option<(String, i64, i64)>,
}

/// A stored deliberation and the lease on it.
#[derive(Debug)]
struct Entry {
    record: DeliberationRecord,
    lease: Lease,
}

impl Entry {
    /// Refuses a write under a fence that no longer holds an unfinished row.
    fn check_fence(&self, task_id: &str, fence: Option<&Fence>) -> Result<(), StoreError> {
        match fence {
            Some(fence)
                if !self.record.status.is_terminal()
                    && (storable_text(&fence.owner) != self.lease.owner
                        || fence.epoch != self.record.lease_epoch) =>
            {
                Err(StoreError::LeaseLost { task_id: task_id.to_owned() })
            }
            _ => Ok(()),
        }
    }
}

/// The text a store keeps for `text`: U+0000 replaced by U+FFFD, as the port promises.
fn storable_text(text: &str) -> String {
    text.replace('\0', "\u{FFFD}")
}

/// `value` as a store reads it back: every string in it — map keys too — passed through
/// [`storable_text`].
fn storable<T: Serialize + DeserializeOwned>(task_id: &str, value: &T) -> Result<T, StoreError> {
    fn clean(value: serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match value {
            Value::String(text) => Value::String(storable_text(&text)),
            Value::Array(items) => Value::Array(items.into_iter().map(clean).collect()),
            Value::Object(fields) => Value::Object(
                fields.into_iter().map(|(key, value)| (storable_text(&key), clean(value))).collect(),
            ),
            other => other,
        }
    }
    let json = serde_json::to_value(value).map_err(|e| StoreError::corrupt(task_id, e))?;
    serde_json::from_value(clean(json)).map_err(|e| StoreError::corrupt(task_id, e))
}

impl InMemoryStore {
    fn entries(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn outbox(&self) -> MutexGuard<'_, OutboxState> {
        self.outbox.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stores `event` (when given) after a change of `task_id` that applied; passes `applied` on.
    fn announce(
        &self,
        task_id: &str,
        applied: bool,
        event: Option<&DeliberationEvent>,
    ) -> Result<bool, StoreError> {
        let Some(event) = event.filter(|_| applied) else { return Ok(applied) };
        let payload = serde_json::to_string(event).map_err(|e| StoreError::corrupt(task_id, e))?;
        let task_id = storable_text(task_id);
        let mut outbox = self.outbox();
        outbox.next_id += 1;
        let id = outbox.next_id;
        let seq = {
            let seq = outbox.seqs.entry(task_id.clone()).or_default();
            *seq += 1;
            *seq
        };
        outbox.messages.push(OutboxMessage {
            id,
            task_id,
            seq,
            event: event.kind.name().to_owned(),
            payload,
            created_at_ms: event.at_ms,
        });
        Ok(true)
    }

    /// Every unsent event, oldest first (test code).
    pub fn outbox_messages(&self) -> Vec<OutboxMessage> {
        self.outbox().messages.clone()
    }

    /// Moves `task_id` to `next` if the lifecycle allows it and `fence` (when given) still
    /// holds the row, then lets `f` fill in the rest.
    fn transition(
        &self,
        task_id: &str,
        fence: Option<&Fence>,
        next: DeliberationStatus,
        f: impl FnOnce(&mut DeliberationRecord),
    ) -> Result<bool, StoreError> {
        self.check_up()?;
        let mut entries = self.entries();
        let Some(entry) = entries.get_mut(&storable_text(task_id)) else { return Ok(false) };
        entry.check_fence(task_id, fence)?;
        if !entry.record.status.can_become(next) {
            return Ok(false);
        }
        entry.record.status = next;
        f(&mut entry.record);
        Ok(true)
    }

    fn check_up(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable("using the in-memory store", "the store is down"));
        }
        Ok(())
    }

    /// The phase of the saved progress of `task_id`, if it exists and saved one.
    pub fn saved_phase(&self, task_id: &str) -> Option<orchestrator_domain::Phase> {
        self.entries().get(task_id)?.record.progress.as_ref().map(Deliberation::phase)
    }

    /// Makes the saved progress of `task_id` unreadable for `reason`, as a snapshot of an
    /// unknown version reads back from a database store.
    pub fn spoil_progress(&self, task_id: &str, reason: &str) {
        if let Some(entry) = self.entries().get_mut(task_id) {
            entry.record.progress = None;
            entry.record.unreadable_progress = Some(reason.to_owned());
        }
    }

    /// The stored status of `task_id`, if it exists.
    pub fn status_if_any(&self, task_id: &str) -> Option<DeliberationStatus> {
        self.entries().get(task_id).map(|entry| entry.record.status)
    }

    /// The lease owner of `task_id`; panics when unknown (test code).
    pub fn owner(&self, task_id: &str) -> String {
        self.entries()[task_id].lease.owner.clone()
    }

    /// The stored status of `task_id`; panics when unknown (test code).
    pub fn status(&self, task_id: &str) -> DeliberationStatus {
        self.entries()[task_id].record.status
    }
}

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

    async fn get(&self, task_id: &str) -> Result<Option<DeliberationRecord>, StoreError> {
        self.check_up()?;
        Ok(self.entries().get(&storable_text(task_id)).map(|entry| entry.record.clone()))
    }

    async fn mark_started(
        &self,
        task_id: &str,
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
        task_id: &str,
        fence: &Fence,
        progress: &Deliberation,
        event: Option<&DeliberationEvent>,
    ) -> Result<bool, StoreError> {
        self.saves.fetch_add(1, Ordering::SeqCst);
        self.check_up()?;
        let progress = storable(task_id, progress)?;
        let applied = {
            let mut entries = self.entries();
            match entries.get_mut(&storable_text(task_id)) {
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
        task_id: &str,
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
        task_id: &str,
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

    async fn save_selection(&self, task_id: &str, selection: &StoredSelection) -> Result<bool, StoreError> {
        self.check_up()?;
        let selection = storable(task_id, selection)?;
        let mut entries = self.entries();
        match entries.get_mut(&storable_text(task_id)) {
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

    async fn renew_leases(&self, lease: &Lease, only: Option<&[String]>) -> Result<Vec<String>, StoreError> {
        self.check_up()?;
        let owner = storable_text(&lease.owner);
        let only: Option<Vec<String>> = only.map(|ids| ids.iter().map(|id| storable_text(id)).collect());
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
        let running: Vec<String> = claim.running.iter().map(|id| storable_text(id)).collect();
        let only = claim.only.map(storable_text);
        let mut entries = self.entries();
        let mut candidates: Vec<&mut Entry> = entries
            .values_mut()
            .filter(|entry| {
                let free = entry.lease.until_ms < now_ms || claim.scope == ClaimScope::All;
                let id = &entry.record.request.task_id;
                !entry.record.status.is_terminal()
                    && free
                    && !running.contains(id)
                    && only.as_ref().is_none_or(|only| only == id)
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

/// A mock backend whose agents propose "… plan <agent id>" and revise by appending
/// "(revised)"; tests add their own review and select expectations.
#[cfg(test)]
pub(crate) fn scripted_backend() -> crate::ports::MockAgentBackend {
    use crate::ports::Completion;
    use orchestrator_domain::TokenUsage;

    let mut backend = crate::ports::MockAgentBackend::new();
    backend.expect_has_profile().return_const(true);
    backend.expect_propose().returning(|agent, _| {
        Ok(Completion {
            text: format!("Rate limit per API key with a token bucket — plan {}", agent.id),
            usage: TokenUsage::default(),
            truncated: false,
        })
    });
    backend.expect_revise().returning(|_, _, current, _, _| {
        Ok(Completion {
            text: format!("{current} (revised)"),
            usage: TokenUsage::default(),
            truncated: false,
        })
    });
    backend
}

#[cfg(test)]
pub(crate) use sleeping::SleepingBackend;

#[cfg(test)]
mod sleeping {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use async_trait::async_trait;
    use orchestrator_domain::{Agent, PeerScore, ProfileName, Review, Task, TestOutcome, TokenUsage};

    use crate::ports::{AgentBackend, AgentError, Completion, ReviewReply, Selection};

    /// What a [`SleepingBackend`] agent proposes.
    fn sleeping_answer(agent: &Agent) -> String {
        format!(
            "Token bucket per API key, rate limit enforced at the gateway. Written by seat {}.",
            agent.seat
        )
    }

    /// A backend whose every call sleeps, counting calls started, in flight, finished and
    /// abandoned; `failing()` makes every call fail after its sleep.
    #[derive(Default)]
    pub(crate) struct SleepingBackend {
        delay: Option<Duration>,
        fail: bool,
        pub(crate) in_flight: AtomicUsize,
        pub(crate) max_in_flight: AtomicUsize,
        pub(crate) started: AtomicUsize,
        pub(crate) finished: AtomicUsize,
        pub(crate) abandoned: Arc<AtomicUsize>,
    }

    struct CallGuard<'a> {
        backend: &'a SleepingBackend,
        done: bool,
    }

    impl Drop for CallGuard<'_> {
        fn drop(&mut self) {
            self.backend.in_flight.fetch_sub(1, Ordering::SeqCst);
            if !self.done {
                self.backend.abandoned.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    impl SleepingBackend {
        pub(crate) fn new(delay: Duration) -> Self {
            Self { delay: Some(delay), ..Self::default() }
        }

        pub(crate) fn failing(self) -> Self {
            Self { fail: true, ..self }
        }

        async fn call(&self) -> Result<(), AgentError> {
            self.started.fetch_add(1, Ordering::SeqCst);
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_in_flight.fetch_max(now, Ordering::SeqCst);
            let mut guard = CallGuard { backend: self, done: false };
            tokio::time::sleep(self.delay.unwrap_or_default()).await;
            guard.done = true;
            self.finished.fetch_add(1, Ordering::SeqCst);
            if self.fail { Err(AgentError::Unavailable("down".into())) } else { Ok(()) }
        }
    }

    #[async_trait]
    impl AgentBackend for SleepingBackend {
        fn has_profile(&self, _profile: &ProfileName) -> bool {
            true
        }

        async fn propose(&self, agent: &Agent, _task: &Task) -> Result<Completion, AgentError> {
            self.call().await?;
            Ok(Completion {
                text: sleeping_answer(agent),
                usage: TokenUsage { prompt_tokens: 10, completion_tokens: 20, ..Default::default() },
                truncated: false,
            })
        }

        async fn review(
            &self,
            _agent: &Agent,
            _task: &Task,
            _proposal: &str,
            _tests: &TestOutcome,
        ) -> Result<ReviewReply, AgentError> {
            self.call().await?;
            Ok(ReviewReply {
                critique: "fine".into(),
                score: Some(PeerScore::new(7.0).map_err(|e| AgentError::InvalidResponse(e.to_string()))?),
                ..Default::default()
            })
        }

        async fn revise(
            &self,
            agent: &Agent,
            _task: &Task,
            _current: &str,
            _tests: &TestOutcome,
            _reviews: &[Review],
        ) -> Result<Completion, AgentError> {
            self.call().await?;
            Ok(Completion {
                text: format!("{} Revised.", sleeping_answer(agent)),
                usage: TokenUsage::default(),
                truncated: false,
            })
        }

        async fn select(
            &self,
            _agent: &Agent,
            _task: &Task,
            _candidates: &[String],
        ) -> Result<Selection, AgentError> {
            self.call().await?;
            Ok(Selection { choice: Some(0), rationale: "best".into(), usage: TokenUsage::default() })
        }
    }
}
