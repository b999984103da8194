//! Health that tells the truth about storage: a probe pings the store every
//! `probe_interval`, publishes what it saw (watched by the gRPC health service and GetStatus),
//! and applies the writes kept for repair once the store answers again.
//!
//! The bound: a store that stops answering is reported within `probe_interval` plus the
//! ping's own timeout (the store's acquire timeout); one that comes back, within
//! `probe_interval`.

use std::sync::Arc;

use tokio::sync::watch;
use tracing::{info, warn};

use super::Jobs;

/// What the last probe of the store saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreState {
    /// The store answered.
    Serving,
    /// The store did not answer; `cause` says why (no secrets: the store redacts its URL).
    Unreachable { cause: String },
}

impl StoreState {
    pub fn is_serving(&self) -> bool {
        matches!(self, StoreState::Serving)
    }
}

impl Jobs {
    /// Follows the store's health as the probe sees it.
    pub fn store_state(&self) -> watch::Receiver<StoreState> {
        self.store_state.subscribe()
    }

    /// Probes the store once: publishes the result, and on success applies pending repairs.
    pub async fn probe_store_once(&self) -> StoreState {
        let state = match self.store.ping().await {
            Ok(()) => StoreState::Serving,
            Err(error) => {
                let mut cause = error.to_string();
                let mut source = std::error::Error::source(&error);
                while let Some(inner) = source {
                    cause = format!("{cause}: {inner}");
                    source = inner.source();
                }
                StoreState::Unreachable { cause }
            }
        };
        let changed = self.store_state.send_if_modified(|seen| {
            if *seen == state {
                return false;
            }
            *seen = state.clone();
            true
        });
        if changed {
            match &state {
                StoreState::Serving => info!("store reachable again; reporting SERVING"),
                StoreState::Unreachable { cause } => {
                    warn!(%cause, "store unreachable; reporting NOT_SERVING")
                }
            }
        }
        if state.is_serving() {
            let left = self.repair().await;
            if left > 0 {
                warn!(left, "writes still waiting for the store");
            }
        }
        state
    }

    /// Probes the store every `probe_interval` until [`Jobs::shutdown`] has finished. Run it
    /// as a background task beside the server.
    pub async fn probe_store(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.settings.probe_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = self.stopped.cancelled() => return,
            }
            tokio::select! {
                _ = self.probe_store_once() => {}
                () = self.stopped.cancelled() => return,
            }
        }
    }
}
