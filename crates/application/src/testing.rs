//! Test doubles of the ports that need state: available to this crate's tests and, with the
//! `mocks` feature, to other crates' tests. Never used by production wiring.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use orchestrator_domain::{Deliberation, DeliberationOutcome, DeliberationStatus};

use crate::ports::{
    DeliberationRecord, DeliberationStore, Lease, ListQuery, NewDeliberation, Page, StoreError,
};

/// The store port's behaviour, in memory, for driving the job runner.
#[derive(Debug, Default)]
pub struct InMemoryStore {
    /// Lease (owner, until) per unfinished task id.
    leases: Mutex<HashMap<String, (String, i64)>>,
    records: Mutex<HashMap<String, DeliberationRecord>>,
    /// How many times progress was saved.
    pub saves: AtomicUsize,
}

impl InMemoryStore {
    fn records(&self) -> MutexGuard<'_, HashMap<String, DeliberationRecord>> {
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn transition(
        &self,
        task_id: &str,
        next: DeliberationStatus,
        f: impl FnOnce(&mut DeliberationRecord),
    ) -> bool {
        let mut records = self.records();
        match records.get_mut(task_id) {
            Some(r) if r.status.can_become(next) => {
                r.status = next;
                f(r);
                true
            }
            _ => false,
        }
    }

    /// The stored status of `task_id`; panics when unknown (test code).
    pub fn status(&self, task_id: &str) -> DeliberationStatus {
        self.records()[task_id].status
    }
}

#[async_trait]
impl DeliberationStore for InMemoryStore {
    async fn create(&self, new: &NewDeliberation, lease: &Lease) -> Result<bool, StoreError> {
        let mut records = self.records();
        if records.contains_key(&new.task_id) {
            return Ok(false);
        }
        self.leases
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(new.task_id.clone(), (lease.owner.clone(), lease.until_ms));
        records.insert(
            new.task_id.clone(),
            DeliberationRecord {
                request: new.clone(),
                status: DeliberationStatus::Pending,
                started_at_ms: None,
                finished_at_ms: None,
                duration_ms: None,
                winner_id: None,
                error: None,
                progress: None,
                outcome: None,
            },
        );
        Ok(true)
    }

    async fn get(&self, task_id: &str) -> Result<Option<DeliberationRecord>, StoreError> {
        Ok(self.records().get(task_id).cloned())
    }

    async fn mark_started(&self, task_id: &str, at_ms: i64) -> Result<bool, StoreError> {
        Ok(self.transition(task_id, DeliberationStatus::InProgress, |r| r.started_at_ms = Some(at_ms)))
    }

    async fn save_progress(&self, task_id: &str, progress: &Deliberation) -> Result<bool, StoreError> {
        self.saves.fetch_add(1, Ordering::SeqCst);
        let mut records = self.records();
        match records.get_mut(task_id) {
            Some(r) if r.status == DeliberationStatus::InProgress => {
                r.progress = Some(progress.clone());
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn complete(
        &self,
        task_id: &str,
        outcome: &DeliberationOutcome,
        at: i64,
        duration: i64,
    ) -> Result<bool, StoreError> {
        Ok(self.transition(task_id, DeliberationStatus::Completed, |r| {
            r.outcome = Some(outcome.clone());
            r.winner_id = Some(outcome.winner().agent.id.to_string());
            r.finished_at_ms = Some(at);
            r.duration_ms = Some(duration);
        }))
    }

    async fn finish_unsuccessfully(
        &self,
        task_id: &str,
        status: DeliberationStatus,
        error: &str,
        at: i64,
    ) -> Result<bool, StoreError> {
        Ok(self.transition(task_id, status, |r| {
            r.error = Some(error.to_owned());
            r.finished_at_ms = Some(at);
        }))
    }

    async fn list(&self, _query: &ListQuery) -> Result<Page, StoreError> {
        Ok(Page { items: self.records().values().cloned().collect(), next_cursor: None })
    }

    async fn renew_leases(&self, lease: &Lease) -> Result<u64, StoreError> {
        let unfinished: Vec<String> = self
            .records()
            .values()
            .filter(|r| !r.status.is_terminal())
            .map(|r| r.request.task_id.clone())
            .collect();
        let mut leases = self.leases.lock().unwrap_or_else(PoisonError::into_inner);
        let mut renewed = 0;
        for (task_id, (owner, until)) in leases.iter_mut() {
            if *owner == lease.owner && unfinished.contains(task_id) {
                *until = lease.until_ms;
                renewed += 1;
            }
        }
        Ok(renewed)
    }

    async fn claim_unfinished(
        &self,
        lease: &Lease,
        now_ms: i64,
        include_own: bool,
    ) -> Result<Vec<DeliberationRecord>, StoreError> {
        let mut records: Vec<DeliberationRecord> =
            self.records().values().filter(|r| !r.status.is_terminal()).cloned().collect();
        let mut leases = self.leases.lock().unwrap_or_else(PoisonError::into_inner);
        records.retain(|r| match leases.get(&r.request.task_id) {
            None => true,
            Some((owner, until)) => *until < now_ms || (include_own && *owner == lease.owner),
        });
        for record in &records {
            leases.insert(record.request.task_id.clone(), (lease.owner.clone(), lease.until_ms));
        }
        records.sort_by(|a, b| {
            (a.request.created_at_ms, &a.request.task_id).cmp(&(b.request.created_at_ms, &b.request.task_id))
        });
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
    backend.expect_revise().returning(|_, _, current, _| {
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
    use orchestrator_domain::{Agent, PeerScore, ProfileName, Review, Task, TokenUsage};

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
