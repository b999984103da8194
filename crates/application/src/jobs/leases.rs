//! Leases: this node's claim on the unfinished deliberations it runs, renewed every third of
//! a lease, and the takeover of work whose owner stopped renewing.

use std::sync::Arc;

use tracing::warn;

use super::Jobs;
use crate::ports::Lease;

impl Jobs {
    /// This node's lease, as renewed at `now_ms`.
    pub(super) fn lease(&self, now_ms: i64) -> Lease {
        let ms = i64::try_from(self.settings.lease.as_millis()).unwrap_or(i64::MAX);
        Lease { owner: self.settings.node_id.clone(), until_ms: now_ms.saturating_add(ms) }
    }

    /// Keeps this node's leases alive and takes over what other nodes left when their lease
    /// ran out, every third of a lease, until [`Jobs::shutdown`] has finished. Run it as a
    /// background task beside the server.
    pub async fn maintain(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.settings.lease / 3);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = self.stopped.cancelled() => return,
            }
            let now = self.clock.now_ms();
            if let Err(error) = self.store.renew_leases(&self.lease(now)).await {
                warn!(%error, "could not renew deliberation leases");
            }
            if !self.tasks.is_closed()
                && let Err(error) = self.take_over(false).await
            {
                warn!(%error, "could not take over deliberations of other nodes");
            }
        }
    }
}
