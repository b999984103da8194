//! The bound on work in flight: at most `max_running + queue_capacity` deliberations are
//! admitted (running or waiting for a slot) at once, whether submitted by a client or taken
//! back by recovery.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::Jobs;
use crate::error::{ApplicationError, Result};
use crate::observability::JobLoad;

/// One admitted deliberation; dropping it gives the place back, on every path.
#[derive(Debug)]
pub(super) struct Admission(Arc<AtomicUsize>);

impl Drop for Admission {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Jobs {
    /// Deliberations that may be admitted at once.
    pub(super) fn capacity(&self) -> usize {
        self.settings.max_running + self.settings.queue_capacity
    }

    /// Admits one more deliberation, or refuses it when running and queued work is at capacity.
    ///
    /// # Errors
    /// `ResourceExhausted` when full; nothing is counted then.
    pub(super) fn admit(&self) -> Result<Admission> {
        let capacity = self.capacity();
        let before = self.admitted.fetch_add(1, Ordering::SeqCst);
        let admission = Admission(Arc::clone(&self.admitted));
        if before >= capacity {
            return Err(ApplicationError::ResourceExhausted(format!(
                "{capacity} deliberations are already running or queued; retry later"
            )));
        }
        Ok(admission)
    }

    /// Deliberations holding a slot and waiting for one right now, for the metrics gauges.
    pub fn load(&self) -> JobLoad {
        let running = self.settings.max_running.saturating_sub(self.slots.available_permits());
        let admitted = self.admitted.load(Ordering::SeqCst);
        JobLoad { running, queued: admitted.saturating_sub(running) }
    }
}
