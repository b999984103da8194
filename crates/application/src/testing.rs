//! Test doubles of the ports that need state: available to this crate's tests and, with the
//! `mocks` feature, to other crates' tests. Never used by production wiring.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use orchestrator_domain::{
    Deliberation, DeliberationOutcome, DeliberationStatus, DomainError, Registry, TaskId,
};
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
    entries: Mutex<HashMap<TaskId, Entry>>,
    registry: Mutex<Registry>,
    /// How many times saving progress was asked for, applied or not.
    pub saves: AtomicUsize,
    /// How many deliberations were stored through [`DeliberationStore::create_awaited`].
    pub awaited_creates: AtomicUsize,
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
    fn check_fence(&self, task_id: &TaskId, fence: Option<&Fence>) -> Result<(), StoreError> {
        match fence {
            Some(fence)
                if !self.record.status.is_terminal()
                    && (storable_text(&fence.owner) != self.lease.owner
                        || fence.epoch != self.record.lease_epoch) =>
            {
                Err(StoreError::LeaseLost { task_id: task_id.clone() })
            }
            _ => Ok(()),
        }
    }
}

/// `raw` as a [`TaskId`], for tests that name their deliberations with literals.
///
/// # Panics
/// When `raw` breaks the task-id rule: a test's own mistake.
pub fn tid(raw: &str) -> TaskId {
    TaskId::new(raw).unwrap_or_else(|error| panic!("test task id {raw:?}: {error}"))
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
    fn entries(&self) -> MutexGuard<'_, HashMap<TaskId, Entry>> {
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
        task_id: &TaskId,
        fence: Option<&Fence>,
        next: DeliberationStatus,
        f: impl FnOnce(&mut DeliberationRecord),
    ) -> Result<bool, StoreError> {
        self.check_up()?;
        let mut entries = self.entries();
        let Some(entry) = entries.get_mut(task_id) else { return Ok(false) };
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

mod council_store;
mod deliberation_store;
mod outbox;

#[cfg(test)]
mod backends;
#[cfg(test)]
pub(crate) use backends::{SleepingBackend, revising_by_appending, scripted_backend};
