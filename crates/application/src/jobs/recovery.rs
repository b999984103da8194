//! Resuming what a stopped process left unfinished, from its last saved phase.

use std::sync::Arc;

use orchestrator_domain::{Deliberation, DeliberationStatus, Phase, Rounds, TaskId};
use tracing::{info, warn};

use super::admission::Share;
use super::execution::StartFrom;
use super::{Jobs, store_error};
use crate::caller::Caller;
use crate::deliberate::DeliberateCommand;
use crate::error::{ApplicationError, Result};
use crate::ports::{Claim, ClaimScope, DeliberationRecord, Fence};
use crate::seating::Overrides;

/// What [`Jobs::recover`] did with the deliberations a stopped process left unfinished.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovery {
    pub resumed: u64,
    pub interrupted: u64,
}

/// Why a stored deliberation cannot be resumed here.
const STOPPED: &str = "the server stopped before this deliberation finished";

impl Jobs {
    /// Deals with deliberations a stopped process left PENDING or IN_PROGRESS: resumes each
    /// from its last saved phase (a PENDING one, or one that saved no phase, starts over),
    /// or marks it INTERRUPTED when resuming is off, no backend is configured, or its model
    /// profiles are gone.
    ///
    /// Only work no live process holds is taken: on a store this process holds exclusively
    /// (a locked SQLite file) that is all of it; on a shared one, what nobody holds or whose
    /// lease ran out, as much as it can start at once (the rest is left to the other servers
    /// and to [`Jobs::maintain`]). A second server started on a database in use therefore
    /// never takes the running server's work.
    ///
    /// # Errors
    /// `Store` when the database fails.
    pub async fn recover(self: &Arc<Self>) -> Result<Recovery> {
        if self.store.held_exclusively() {
            self.take_over(ClaimScope::All, None, usize::MAX).await
        } else {
            self.take_over(ClaimScope::Expired, None, self.free_slots()).await
        }
    }

    /// Takes the deliberation `task_id` — work announced on the bus — when nobody holds it and
    /// this server has a free slot, and runs it here. `false` when another server holds it, it
    /// ended, or there is no free slot here.
    ///
    /// # Errors
    /// `Store` when the database fails.
    pub async fn take(self: &Arc<Self>, task_id: &TaskId) -> Result<bool> {
        let taken = self.take_over(ClaimScope::Expired, Some(task_id), self.free_slots().min(1)).await?;
        Ok(taken.resumed + taken.interrupted > 0)
    }

    /// A slot came free: with shared submissions, take the oldest work waiting for any server
    /// (stored by a server that had no room for it) — a queue across the servers, in the
    /// database. Failures are left to the next lease round.
    pub(super) async fn take_shared_work(self: &Arc<Self>) {
        if !self.settings.share_submissions || self.is_draining() {
            return;
        }
        if let Err(error) = self.take_over(ClaimScope::Expired, None, self.free_slots()).await {
            warn!(%error, "could not take shared work");
        }
    }

    /// Slots free right now: what this server can start at once, so a takeover leaves the
    /// rest to servers with room.
    pub fn free_slots(&self) -> usize {
        self.settings.max_running.saturating_sub(self.admitted.total())
    }

    /// Claims what `scope` allows (only `only` when given, at most `limit`, oldest first) and
    /// resumes it (or ends it INTERRUPTED).
    pub(super) async fn take_over(
        self: &Arc<Self>,
        scope: ClaimScope,
        only: Option<&TaskId>,
        limit: usize,
    ) -> Result<Recovery> {
        if limit == 0 {
            return Ok(Recovery::default());
        }
        let now = self.clock.now_ms();
        let running = self.held_locally();
        let claim = Claim { scope, running: &running, only, limit };
        let claimed =
            self.store.claim_unfinished(&self.lease(now), now, &claim).await.map_err(store_error)?;
        let mut recovery = Recovery::default();
        for record in claimed {
            let task_id = record.request.task_id.clone();
            let fence = Fence { owner: self.settings.node_id.clone(), epoch: record.lease_epoch };
            let restored = if !self.settings.resume_unfinished {
                Err(None)
            } else if let Some(reason) = &record.unreadable_progress {
                Err(Some(format!("its saved progress cannot be restored ({reason})")))
            } else if !self.deliberate.backend_configured() {
                Err(Some("no LLM backend is configured".to_owned()))
            } else {
                self.restore(&record).await.map_err(|e| Some(e.to_string()))
            };
            let owner = Caller::new(record.request.principal.clone(), false);
            let admitted = restored.and_then(|deliberation| match self.admit(&owner, Share::Counted) {
                Ok(admission) => Ok((deliberation, admission)),
                Err(full) => Err(Some(full.to_string())),
            });
            match admitted {
                Ok((deliberation, admission)) => {
                    let start = match record.status {
                        DeliberationStatus::InProgress => {
                            StartFrom::Resumed { started_at_ms: record.started_at_ms.unwrap_or(now) }
                        }
                        _ => StartFrom::Pending,
                    };
                    info!(task_id = %task_id, phase = %deliberation.phase(), epoch = fence.epoch, "resuming deliberation");
                    let handle = self.register(&task_id, record.request.story_id.clone());
                    let created_at_ms = record.request.created_at_ms;
                    let (_result, guard) = self.spawn(
                        admission,
                        task_id,
                        handle,
                        fence,
                        deliberation,
                        None,
                        created_at_ms,
                        start,
                    );
                    guard.disarm();
                    recovery.resumed += 1;
                }
                Err(reason) => {
                    let message = match reason {
                        None => STOPPED.to_owned(),
                        Some(reason) => {
                            warn!(task_id = %task_id, %reason, "cannot resume deliberation");
                            format!("{STOPPED}; not resumed: {reason}")
                        }
                    };
                    let interrupted = self
                        .record_end(
                            &record.request,
                            record.started_at_ms,
                            Some(&fence),
                            DeliberationStatus::Interrupted,
                            &message,
                        )
                        .await
                        .map_err(store_error)?;
                    if interrupted {
                        recovery.interrupted += 1;
                    }
                }
            }
        }
        if recovery.interrupted > 0 {
            warn!(interrupted = recovery.interrupted, "marked unfinished deliberations INTERRUPTED");
        }
        Ok(recovery)
    }

    /// The deliberation to continue: the saved one, or a new one from the stored request
    /// (with the standing council seats it was submitted with, if any).
    async fn restore(&self, record: &DeliberationRecord) -> Result<Deliberation> {
        let saved = record.progress.clone().filter(|d| d.phase() != Phase::Completed);
        if let Some(saved) = saved.or_else(|| record.request.seated()) {
            let backend = self.deliberate.backend()?;
            if let Some(agent) = saved.council().agents().iter().find(|a| !backend.has_profile(&a.profile)) {
                return Err(ApplicationError::FailedPrecondition(format!(
                    "model profile \"{}\" is no longer configured",
                    agent.profile
                )));
            }
            return Ok(saved);
        }
        let request = &record.request;
        let command = DeliberateCommand {
            task_id: Some(TaskId::new(request.task_id.clone())?),
            role: request.role,
            task: request.task.clone(),
            rounds: Rounds::new(i64::from(request.rounds))?,
            num_agents: usize::try_from(request.num_agents).unwrap_or(usize::MAX),
            profiles: request.profiles.clone(),
            overrides: Overrides::ALL,
            story_id: request.story_id.clone(),
        };
        Ok(self.deliberate.prepare(command).await?.1)
    }
}
