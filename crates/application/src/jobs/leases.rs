//! Leases: this node's claim on the unfinished deliberations it runs, renewed every third of
//! a lease; stopping a local run at once when a renewal no longer covers it (another node
//! claimed it, or the renewals failed until the lease ran out); and the takeover of work whose
//! owner stopped renewing — never of work this node runs already.

use orchestrator_domain::TaskId;
use std::collections::HashSet;
use std::sync::{Arc, PoisonError};

use tokio::time::Instant;
use tracing::{info, warn};

use super::Jobs;
use crate::ports::{ClaimScope, Lease};

impl Jobs {
    /// This node's lease, as renewed at `now_ms`.
    pub(super) fn lease(&self, now_ms: i64) -> Lease {
        let ms = i64::try_from(self.settings.lease.as_millis()).unwrap_or(i64::MAX);
        Lease { owner: self.settings.node_id.clone(), until_ms: now_ms.saturating_add(ms) }
    }

    /// Keeps the leases of what this node runs alive and takes over what is left unfinished
    /// once its lease ran out — other nodes' work, and this node's own rows it no longer runs
    /// (a start the store refused, a run stopped during an outage: only running work is
    /// renewed) — every third of a lease, until [`Jobs::shutdown`] has finished. Run it as a
    /// background task beside the server.
    pub async fn maintain(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.settings.lease / 3);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        // Until when the leases of this node's runs are known to hold.
        let mut held_until = Instant::now() + self.settings.lease;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = self.stopped.cancelled() => return,
            }
            held_until = self.maintain_once(held_until).await;
        }
    }

    /// One round of [`Jobs::maintain`]: renews, stops what was lost, takes over what is free.
    /// `held_until` is until when the leases were last known to hold; returns the new bound.
    pub(super) async fn maintain_once(self: &Arc<Self>, held_until: Instant) -> Instant {
        let held_until = self.renew(held_until).await;
        if !self.tasks.is_closed()
            && let Err(error) = self.take_over(ClaimScope::Expired, None, self.free_slots()).await
        {
            warn!(%error, "could not take over unfinished deliberations");
        }
        held_until
    }

    /// Renews the leases of what this node runs (or holds a write for) and stops the local
    /// runs a renewal did not cover; returns until when the leases now hold.
    async fn renew(&self, held_until: Instant) -> Instant {
        let began = Instant::now();
        let held = self.held_locally();
        match self.store.renew_leases(&self.lease(self.clock.now_ms()), Some(&held)).await {
            Ok(renewed) => {
                let renewed: HashSet<TaskId> = renewed.into_iter().collect();
                self.stop_runs(|task_id, held_since| !renewed.contains(task_id) && held_since < began);
                began + self.settings.lease
            }
            Err(error) => {
                warn!(%error, "could not renew deliberation leases");
                if Instant::now() >= held_until {
                    // Another node may have claimed them by now: what this node writes would
                    // be refused, so stop running them. Whoever claims them resumes them.
                    self.stop_runs(|_, held_since| held_since < held_until);
                }
                held_until
            }
        }
    }

    /// Stops, as lost, the local runs `lost(task_id, held_since)` selects.
    fn stop_runs(&self, lost: impl Fn(&TaskId, Instant) -> bool) {
        let runs = self.runs.lock().unwrap_or_else(PoisonError::into_inner);
        for (task_id, run) in runs.iter() {
            let Some(&held_since) = run.held_since.get() else { continue };
            if !run.lease_lost.is_cancelled() && lost(task_id, held_since) {
                warn!(task_id = %task_id, "lease not renewed; stopping the local run");
                run.lease_lost.cancel();
            }
        }
    }

    /// Ends this node's claims at once (at shutdown), so another node may take its unfinished
    /// work without waiting for the lease to run out.
    pub(super) async fn release_leases(&self) {
        let now = self.clock.now_ms();
        let released = Lease { owner: self.settings.node_id.clone(), until_ms: now.saturating_sub(1) };
        match self.store.renew_leases(&released, None).await {
            Ok(rows) => {
                info!(released = rows.len(), "shutdown: released the leases of unfinished deliberations")
            }
            Err(error) => warn!(%error, "shutdown: could not release leases; they run out on their own"),
        }
    }
}
