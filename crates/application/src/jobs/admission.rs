//! The bound on work in flight: at most `max_running + queue_capacity` deliberations are
//! admitted (running or waiting for a slot) at once, whether submitted by a client or taken
//! back by recovery — and no principal holds more than `queue_share` of those places, so one
//! busy client cannot lock every other one out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::Jobs;
use crate::caller::Caller;
use crate::error::{ApplicationError, Result};
use crate::observability::JobLoad;

/// Places admitted, in all and per principal.
#[derive(Debug, Default)]
pub(super) struct Admitted {
    total: AtomicUsize,
    by_principal: Mutex<HashMap<String, usize>>,
}

impl Admitted {
    pub(super) fn total(&self) -> usize {
        self.total.load(Ordering::SeqCst)
    }

    fn by_principal(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.by_principal.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One admitted deliberation of `principal`; dropping it gives the place back, on every path.
#[derive(Debug)]
pub(super) struct Admission {
    admitted: Arc<Admitted>,
    principal: String,
}

impl Admission {
    /// Whose work holds the place.
    pub(super) fn principal(&self) -> &str {
        &self.principal
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.admitted.total.fetch_sub(1, Ordering::SeqCst);
        let mut by_principal = self.admitted.by_principal();
        if let Some(held) = by_principal.get_mut(&self.principal) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                by_principal.remove(&self.principal);
            }
        }
    }
}

/// Whether an admission may be refused for the principal's share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Share {
    /// New work: refused beyond the principal's share (except the unauthenticated caller's,
    /// the only principal of a server without authentication).
    Enforced,
    /// Work taken back after a restart: it was admitted once already, so it only counts.
    Counted,
}

impl Jobs {
    /// Deliberations that may be admitted at once.
    pub(super) fn capacity(&self) -> usize {
        self.settings.max_running + self.settings.queue_capacity
    }

    /// Places one principal may hold: `queue_share` of the capacity, at least one.
    pub(super) fn principal_capacity(&self) -> usize {
        let share = (self.capacity() as f64 * self.settings.queue_share).floor();
        (share as usize).clamp(1, self.capacity())
    }

    /// Admits one more deliberation of `caller`, or refuses it when running and queued work
    /// is at capacity, or (with [`Share::Enforced`]) when the caller holds its whole share.
    ///
    /// # Errors
    /// `ResourceExhausted` naming the limit; nothing is counted then.
    pub(super) fn admit(&self, caller: &Caller, share: Share) -> Result<Admission> {
        let capacity = self.capacity();
        let principal_capacity = self.principal_capacity();
        let mut by_principal = self.admitted.by_principal();
        let held = by_principal.get(caller.principal()).copied().unwrap_or(0);
        if share == Share::Enforced && !caller.is_unauthenticated() && held >= principal_capacity {
            return Err(ApplicationError::ResourceExhausted(format!(
                "{} already has {held} deliberations running or queued, its share of the queue \
                 (queue_share {} of {capacity} places); retry once some have ended",
                caller.principal(),
                self.settings.queue_share
            )));
        }
        if self.admitted.total.fetch_add(1, Ordering::SeqCst) >= capacity {
            self.admitted.total.fetch_sub(1, Ordering::SeqCst);
            return Err(ApplicationError::ResourceExhausted(format!(
                "{capacity} deliberations are already running or queued; retry later"
            )));
        }
        *by_principal.entry(caller.principal().to_owned()).or_default() += 1;
        Ok(Admission { admitted: Arc::clone(&self.admitted), principal: caller.principal().to_owned() })
    }

    /// Deliberations holding a slot and waiting for one right now, for the metrics gauges.
    pub fn load(&self) -> JobLoad {
        let running = self.settings.max_running.saturating_sub(self.slots.available_permits());
        let admitted = self.admitted.total();
        JobLoad { running, queued: admitted.saturating_sub(running) }
    }
}
