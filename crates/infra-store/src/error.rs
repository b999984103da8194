//! How database failures become [`StoreError`]s, without leaking credentials.

use orchestrator_application::ports::StoreError;

/// Maps a sqlx failure on deliberation `task_id` to the port's error.
///
/// Decoding problems mean a stored row is unreadable ([`StoreError::Corrupt`]); everything
/// else (I/O, pool timeouts, constraint or SQL errors) means the database refused or could
/// not be reached ([`StoreError::Unavailable`]).
pub(crate) fn from_sqlx(task_id: &str, err: sqlx::Error) -> StoreError {
    match err {
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::TypeNotFound { .. }
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. } => {
            StoreError::Corrupt { task_id: task_id.to_owned(), reason: err.to_string() }
        }
        other => StoreError::Unavailable(other.to_string()),
    }
}

/// An unreadable stored value of deliberation `task_id`.
pub(crate) fn corrupt(task_id: &str, reason: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt { task_id: task_id.to_owned(), reason: reason.to_string() }
}

/// Maps a failure while opening a database at `url`, so that the message names the
/// database without its password.
pub(crate) fn connect_failed(url: &str, err: impl std::fmt::Display) -> StoreError {
    let mut message = err.to_string();
    if let Some(password) = password_of(url).filter(|p| !p.is_empty()) {
        message = message.replace(password, "***");
    }
    StoreError::Unavailable(format!("cannot open {}: {message}", redact_url(url)))
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
    use super::*;

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
        let StoreError::Unavailable(message) = err else { panic!("{err:?}") };
        assert!(!message.contains("s3cret"), "{message}");
        assert!(message.contains("postgres://app:***@db/x"), "{message}");
    }

    #[test]
    fn decode_failures_are_corruption_and_the_rest_unavailability() {
        let decode = from_sqlx("t-1", sqlx::Error::ColumnNotFound("status".into()));
        assert!(matches!(decode, StoreError::Corrupt { ref task_id, .. } if task_id == "t-1"), "{decode:?}");
        assert!(matches!(from_sqlx("t-1", sqlx::Error::PoolTimedOut), StoreError::Unavailable(_)));
    }
}
