//! How long a store waits for the database: the tuning every store accepts.

use std::time::Duration;

/// Timeouts of a store's connection pools; [`StoreOptions::default`] gives the values
/// documented on each field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// How long a statement waits for a pooled connection — every PostgreSQL statement and
    /// every SQLite read — before the call fails with `StoreError::Unavailable`. It also
    /// bounds opening the first PostgreSQL connection and [`ping`]. Kept short (default 3 s)
    /// so that while the database is down calls answer UNAVAILABLE promptly instead of each
    /// holding its caller for the whole wait: sqlx retries a refused connection until this
    /// deadline.
    ///
    /// [`ping`]: orchestrator_application::ports::DeliberationStore::ping
    pub acquire_timeout: Duration,
    /// How long a SQLite write waits for the single writer connection (default 60 s). Every
    /// write of the process queues for that one connection, so a write waits its turn
    /// through a burst (200 deliberations finishing together take well under this) rather
    /// than failing. PostgreSQL ignores it.
    pub sqlite_writer_acquire_timeout: Duration,
}

impl StoreOptions {
    /// Default of [`StoreOptions::acquire_timeout`].
    pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
    /// Default of [`StoreOptions::sqlite_writer_acquire_timeout`].
    pub const DEFAULT_SQLITE_WRITER_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(60);
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            acquire_timeout: Self::DEFAULT_ACQUIRE_TIMEOUT,
            sqlite_writer_acquire_timeout: Self::DEFAULT_SQLITE_WRITER_ACQUIRE_TIMEOUT,
        }
    }
}
