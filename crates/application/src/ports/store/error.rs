//! Why storage failed, as the callers of the store ports can act on it.

use orchestrator_domain::TaskId;

/// The underlying failure a [`StoreError`] carries for the logs: a driver error, an I/O
/// error, a decoding error — whatever the adapter met.
pub type StoreCause = Box<dyn std::error::Error + Send + Sync>;

/// Why storage failed. The variants say what a caller can do about it; the cause, for the
/// logs, is the [`std::error::Error::source`] of the error, never part of its message.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached, timed out or refused the operation: the call may
    /// succeed later.
    #[error("database unavailable while {operation}")]
    Unavailable {
        /// What the store was doing, e.g. `reading deliberation t-1`.
        operation: String,
        #[source]
        source: StoreCause,
    },
    /// A stored row could not be decoded: retrying does not help.
    #[error("stored deliberation {task_id} is unreadable")]
    Corrupt {
        task_id: String,
        #[source]
        source: StoreCause,
    },
    /// A list cursor that this store did not issue.
    #[error("page_token: invalid page token")]
    InvalidCursor,
    /// A stored row of the agent registry could not be decoded: retrying does not help.
    #[error("stored registry entry {entry} is unreadable")]
    CorruptRegistry {
        /// The council or agent the row holds.
        entry: String,
        #[source]
        source: StoreCause,
    },
    /// The operation names a deliberation that does not exist.
    #[error("no deliberation with task_id \"{task_id}\"")]
    NotFound { task_id: TaskId },
    /// The write came with a fence that no longer holds: another node claimed the deliberation
    /// (this node's lease ran out). Nothing was written; this node must stop running it.
    #[error("deliberation {task_id} is now held by another node; the write was refused")]
    LeaseLost { task_id: TaskId },
}

impl StoreError {
    /// A [`StoreError::Unavailable`] while doing `operation`.
    pub fn unavailable(operation: impl Into<String>, source: impl Into<StoreCause>) -> Self {
        Self::Unavailable { operation: operation.into(), source: source.into() }
    }

    /// A [`StoreError::Corrupt`] row of deliberation `task_id`.
    pub fn corrupt(task_id: impl Into<String>, source: impl Into<StoreCause>) -> Self {
        Self::Corrupt { task_id: task_id.into(), source: source.into() }
    }
}
