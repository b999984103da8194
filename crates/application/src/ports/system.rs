//! Time and identity, behind ports so tests control them.

/// Wall-clock time for timestamps (durations use the async runtime's monotonic clock).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// Makes ids for deliberations and executions.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait IdGenerator: Send + Sync + 'static {
    /// A new unique id, safe in URLs and logs.
    fn new_id(&self) -> String;
}
