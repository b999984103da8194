//! Requests → validated commands, results → messages, one file per kind of message.
//!
//! Validation happens here, through the domain's fallible constructors, so a handler only
//! ever sees valid commands; every error names the request field.

use orchestrator_application::ApplicationError;

pub mod councils;
mod listing;
mod requests;
mod results;
mod status;
pub mod watch;

pub use listing::{DEFAULT_PAGE_SIZE, list_query, record_response, submission, summary, wire_status};
pub use requests::{required_task_id, task_id};
pub use results::{
    deliberate_response, failure, metadata, orchestrate_response, result, test_report, total_usage, usage,
};
pub use status::{metrics_response, status_response};

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ApplicationError {
    ApplicationError::InvalidArgument { field: field.into(), reason: reason.into() }
}

/// A counter as the wire's int64 (saturating; counters never reach it).
fn wide(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A count as an `int32` field (saturating; counts here are small).
fn narrow(count: usize) -> i32 {
    i32::try_from(count).unwrap_or(i32::MAX)
}
