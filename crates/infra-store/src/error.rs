//! How failures become [`StoreError`]s: sqlx errors sorted into "unavailable" and "corrupt",
//! the faults this crate finds itself, and causes that never reveal a password.

use std::time::Duration;

use orchestrator_application::ports::{StoreCause, StoreError};
use orchestrator_domain::DomainError;

use crate::observability::store_failed;

/// Stand-in task id in errors about a row whose own id could not be read.
const UNKNOWN_TASK: &str = "<unknown>";

/// What this crate itself finds wrong, carried as the source of a [`StoreError`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum Fault {
    #[error("unsupported database url: expected postgres://, postgresql://, sqlite: or a file path")]
    UnsupportedUrl,
    #[error(
        "invalid schema name {schema:?}: use 1 to {max} ASCII letters, digits or '_', not starting with a digit"
    )]
    InvalidSchema { schema: String, max: usize },
    #[error("no answer within {timeout:?}")]
    NoAnswer { timeout: Duration },
    #[error("cannot write {what} as JSON")]
    Serialize {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("column {column} holds invalid JSON")]
    Json {
        column: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("column {column} holds an invalid value")]
    Invalid {
        column: &'static str,
        #[source]
        source: DomainError,
    },
    #[error("{field} {value} is out of range")]
    OutOfRange { field: &'static str, value: i64 },
    #[error("{field} is too large to store")]
    TooLarge { field: &'static str },
    #[error("deliberation is COMPLETED but has no usage totals")]
    MissingUsage,
    #[error("agents belong to a council that is not stored")]
    MissingCouncil,
    #[error(
        "the database file {} is in use by another orchestrator process{}; stop that server or give this one another database_url",
        database.display(),
        holder.map(|pid| format!(" (pid {pid})")).unwrap_or_default()
    )]
    InUse { database: std::path::PathBuf, holder: Option<u32> },
    #[error("cannot create {}", path.display())]
    Create {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot lock {}", path.display())]
    Lock {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A cause whose text named the password, kept as that text with the password masked.
    #[error("{message}")]
    Redacted { message: String },
}

/// Maps a sqlx failure while doing `action` (on deliberation `task_id`, if one) to the port's
/// error, keeping it as the source.
///
/// Decoding problems mean a stored row is unreadable ([`StoreError::Corrupt`]); everything
/// else (I/O, pool timeouts, constraint or SQL errors) means the database refused or could
/// not be reached ([`StoreError::Unavailable`]).
pub(crate) fn from_sqlx(action: &str, task_id: Option<&str>, err: sqlx::Error) -> StoreError {
    match err {
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::TypeNotFound { .. }
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. } => {
            store_failed("corrupt");
            StoreError::corrupt(task_id.unwrap_or(UNKNOWN_TASK), err)
        }
        other => {
            store_failed("unavailable");
            let operation = match task_id {
                Some(task_id) => format!("{action} deliberation {task_id}"),
                None => action.to_owned(),
            };
            StoreError::unavailable(operation, other)
        }
    }
}

/// An unreadable stored value of deliberation `task_id`.
pub(crate) fn corrupt(task_id: &str, fault: Fault) -> StoreError {
    store_failed("corrupt");
    StoreError::corrupt(task_id, fault)
}

/// An unreadable stored row of the agent registry (`entry` names the council or agent).
pub(crate) fn corrupt_registry(entry: &str, fault: Fault) -> StoreError {
    store_failed("corrupt");
    StoreError::CorruptRegistry { entry: entry.to_owned(), source: fault.into() }
}

/// Maps a failure while opening a database at `url`. The message names the database
/// without its password; the cause is kept as the source unless its own text contains the
/// password, in which case it is replaced by that text with the password masked.
pub(crate) fn connect_failed(url: &str, err: impl Into<StoreCause>) -> StoreError {
    store_failed("unavailable");
    let mut cause: StoreCause = err.into();
    if let Some(password) = password_of(url).filter(|p| !p.is_empty()) {
        let text = chain_text(cause.as_ref());
        if text.contains(password) {
            cause = Box::new(Fault::Redacted { message: text.replace(password, "***") });
        }
    }
    StoreError::unavailable(format!("opening {}", redact_url(url)), cause)
}

/// An error and its sources, joined by `": "`.
fn chain_text(err: &(dyn std::error::Error + 'static)) -> String {
    let causes = std::iter::successors(Some(err), |&cause| cause.source());
    causes.map(ToString::to_string).collect::<Vec<_>>().join(": ")
}

/// The URL with any password (in the user info or a `password=` query parameter) replaced by
/// `***`, fit for logs and error messages.
pub fn redact_url(url: &str) -> String {
    let mut redacted = url.to_owned();
    if let Some(password) = password_of(url).filter(|p| !p.is_empty()) {
        redacted = redacted.replace(password, "***");
    }
    redacted
}

/// The password in `scheme://user:password@host/...` or in a `password=` query parameter.
fn password_of(url: &str) -> Option<&str> {
    if let Some((_, query)) = url.split_once('?') {
        let from_query = query.split('&').find_map(|pair| pair.strip_prefix("password="));
        if from_query.is_some() {
            return from_query;
        }
    }
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?']).next()?;
    let (user_info, _) = authority.rsplit_once('@')?;
    user_info.split_once(':').map(|(_, password)| password)
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    use super::*;
    use crate::observability::STORE_ERRORS;

    #[test]
    fn every_storage_failure_is_counted_by_kind() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            let _ = from_sqlx("reading", Some("t-1"), sqlx::Error::PoolTimedOut);
            let _ = from_sqlx("reading", Some("t-1"), sqlx::Error::ColumnNotFound("x".into()));
            let _ = corrupt("t-2", Fault::MissingUsage);
            let _ =
                connect_failed("postgres://u:pw@db/x", Fault::NoAnswer { timeout: Duration::from_secs(1) });
        });
        let mut counts: Vec<(String, u64)> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .filter(|(key, ..)| key.key().name() == STORE_ERRORS)
            .map(|(key, _, _, value)| {
                let kind = key.key().labels().map(|label| label.value().to_owned()).collect::<String>();
                let DebugValue::Counter(count) = value else { panic!("{value:?}") };
                (kind, count)
            })
            .collect();
        counts.sort();
        assert_eq!(counts, vec![("corrupt".to_owned(), 2), ("unavailable".to_owned(), 2)]);
    }

    #[test]
    fn passwords_are_removed_from_urls() {
        assert_eq!(redact_url("postgres://app:s3cret@db:5432/x"), "postgres://app:***@db:5432/x");
        assert_eq!(
            redact_url("postgres://app@db/x?password=s3cret&x=1"),
            "postgres://app@db/x?password=***&x=1"
        );
        assert_eq!(redact_url("postgres://postgres@127.0.0.1/test"), "postgres://postgres@127.0.0.1/test");
        assert_eq!(redact_url("sqlite:./data/orchestrator.db"), "sqlite:./data/orchestrator.db");
    }

    #[test]
    fn connection_errors_never_repeat_the_password() {
        let err = connect_failed("postgres://app:s3cret@db/x", "auth failed for app:s3cret");
        let text = chain_text(&err);
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("opening postgres://app:***@db/x"), "{text}");
        assert!(text.contains("auth failed for app:***"), "{text}");
    }

    #[test]
    fn connection_errors_keep_their_cause_as_the_source() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let err = connect_failed("postgres://app:s3cret@db/x", sqlx::Error::Io(io));
        let StoreError::Unavailable { ref source, .. } = err else { panic!("{err:?}") };
        assert!(source.downcast_ref::<sqlx::Error>().is_some(), "{source:?}");
        assert_eq!(err.to_string(), "database unavailable while opening postgres://app:***@db/x");
    }

    #[test]
    fn decode_failures_are_corruption_and_the_rest_unavailability() {
        let decode = from_sqlx("reading", Some("t-1"), sqlx::Error::ColumnNotFound("status".into()));
        assert!(matches!(decode, StoreError::Corrupt { ref task_id, .. } if task_id == "t-1"), "{decode:?}");
        let timeout = from_sqlx("reading", Some("t-1"), sqlx::Error::PoolTimedOut);
        assert_eq!(timeout.to_string(), "database unavailable while reading deliberation t-1");
        assert!(matches!(timeout.source().and_then(|s| s.downcast_ref()), Some(sqlx::Error::PoolTimedOut)));
        let listing = from_sqlx("listing deliberations", None, sqlx::Error::PoolTimedOut);
        assert_eq!(listing.to_string(), "database unavailable while listing deliberations");
    }
}
