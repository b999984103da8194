//! `max_connections`: how many connections are served at once, and what is said when the
//! limit is reached.
//!
//! At the limit the accept loop stops accepting until a connection closes, the way Go's
//! `netutil.LimitListener` and HAProxy's `maxconn` do: new clients wait in the kernel's backlog
//! (and are served as slots free up — silent connections free theirs within the preface
//! timeout) instead of being accepted into descriptors the server's own work needs. Reaching
//! the limit is logged at WARN naming `max_connections`, at most once a minute with the count
//! of times since, so a flood cannot flood the log.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tracing::warn;

/// The least time between two warnings of the same kind.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// How long the accept loop pauses when the process is out of descriptors: the connection
/// stays in the backlog, so retrying at once would spin on the same error.
pub(crate) const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The connection slots and the rate-limited warnings about them.
#[derive(Debug)]
pub(crate) struct ConnectionLimit {
    max: usize,
    slots: Arc<Semaphore>,
    at_limit: Warnings,
    out_of_descriptors: Warnings,
}

impl ConnectionLimit {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            max,
            slots: Arc::new(Semaphore::new(max)),
            at_limit: Warnings::default(),
            out_of_descriptors: Warnings::default(),
        }
    }

    /// A slot for the next connection, held until the connection closes; when none is free,
    /// warns (see the module docs) and waits for one.
    pub(crate) async fn acquire(&mut self) -> OwnedSemaphorePermit {
        if let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() {
            return permit;
        }
        if let Some(times) = self.at_limit.due(Instant::now()) {
            warn!(
                max_connections = self.max,
                times_since_last_warning = times,
                "max_connections reached: no new connection is accepted until one closes (clients wait \
                 in the backlog)"
            );
        }
        // Never closed: the semaphore lives as long as `self`.
        loop {
            if let Ok(permit) = Arc::clone(&self.slots).acquire_owned().await {
                return permit;
            }
        }
    }

    /// Warns (rate-limited) that accepting failed for want of descriptors.
    pub(crate) fn warn_out_of_descriptors(&mut self, error: &io::Error) {
        if let Some(times) = self.out_of_descriptors.due(Instant::now()) {
            warn!(
                %error,
                max_connections = self.max,
                times_since_last_warning = times,
                "cannot accept a connection: out of file descriptors; lower max_connections or raise \
                 the open-files limit (ulimit -n)"
            );
        }
    }
}

/// Whether an accept failed for want of descriptors or memory (EMFILE, ENFILE, ENOBUFS,
/// ENOMEM): the connection is still waiting and nothing is wrong with it.
pub(crate) fn out_of_descriptors(error: &io::Error) -> bool {
    use rustix::io::Errno;
    rustix::io::Errno::from_io_error(error)
        .is_some_and(|errno| [Errno::MFILE, Errno::NFILE, Errno::NOBUFS, Errno::NOMEM].contains(&errno))
}

/// When a recurring warning is due: the first time, then at most every [`WARN_EVERY`].
#[derive(Debug, Default)]
struct Warnings {
    last: Option<Instant>,
    /// Occurrences since the last warning, the one that triggers the next included.
    since: u64,
}

impl Warnings {
    /// Counts an occurrence at `now`; `Some(occurrences since the last warning)` when this one
    /// is to be logged.
    fn due(&mut self, now: Instant) -> Option<u64> {
        self.since += 1;
        match self.last {
            Some(last) if now.duration_since(last) < WARN_EVERY => None,
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.since))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recurring_warning_is_logged_at_most_once_a_minute_with_the_count() {
        let start = Instant::now();
        let mut warnings = Warnings::default();
        assert_eq!(warnings.due(start), Some(1), "the first time at once");
        for second in 1..60 {
            assert_eq!(warnings.due(start + Duration::from_secs(second)), None);
        }
        assert_eq!(warnings.due(start + WARN_EVERY), Some(60));
        assert_eq!(warnings.due(start + WARN_EVERY + Duration::from_secs(1)), None);
    }

    #[test]
    fn running_out_of_descriptors_is_told_from_other_accept_errors() {
        let emfile = io::Error::from_raw_os_error(rustix::io::Errno::MFILE.raw_os_error());
        assert!(out_of_descriptors(&emfile));
        assert!(!out_of_descriptors(&io::Error::from(io::ErrorKind::ConnectionAborted)));
    }

    #[tokio::test]
    async fn at_the_limit_a_slot_waits_for_a_connection_to_close() {
        let mut limit = ConnectionLimit::new(1);
        let first = limit.acquire().await;
        let mut second = Box::pin(limit.acquire());
        assert!(futures::poll!(second.as_mut()).is_pending());
        drop(first);
        let _second = second.await;
    }
}
