//! The list cursor every store issues: the position of the last record of a page.
//!
//! Listing is newest first, ordered by `(created_at_ms DESC, task_id DESC)`; the cursor holds
//! that key of the last record served, so the next page starts strictly after it (keyset
//! paging: stable under concurrent inserts, no `OFFSET` scans). On the wire it is the hex
//! encoding of `"<created_at_ms>:<task_id>"` — opaque to clients, trivial to validate.

use super::{DeliberationRecord, StoreError};

/// Where the previous page ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageCursor {
    pub created_at_ms: i64,
    pub task_id: String,
}

impl PageCursor {
    /// The cursor of a page whose last record is `last`.
    #[must_use]
    pub fn after(last: &DeliberationRecord) -> Self {
        Self { created_at_ms: last.request.created_at_ms, task_id: last.request.task_id.to_string() }
    }

    /// The token handed to clients as [`super::Page::next_cursor`].
    #[must_use]
    pub fn encode(&self) -> String {
        let plain = format!("{}:{}", self.created_at_ms, self.task_id);
        data_encoding::HEXLOWER.encode(plain.as_bytes())
    }

    /// Reads a token issued by [`PageCursor::encode`].
    ///
    /// # Errors
    /// [`StoreError::InvalidCursor`] for anything else.
    pub fn decode(token: &str) -> Result<Self, StoreError> {
        if token.is_empty() {
            return Err(StoreError::InvalidCursor);
        }
        let bytes = data_encoding::HEXLOWER_PERMISSIVE
            .decode(token.as_bytes())
            .map_err(|_| StoreError::InvalidCursor)?;
        let plain = String::from_utf8(bytes).map_err(|_| StoreError::InvalidCursor)?;
        let (millis, task_id) = plain.split_once(':').ok_or(StoreError::InvalidCursor)?;
        let created_at_ms = millis.parse().map_err(|_| StoreError::InvalidCursor)?;
        if task_id.is_empty() {
            return Err(StoreError::InvalidCursor);
        }
        Ok(Self { created_at_ms, task_id: task_id.to_owned() })
    }

    /// Whether a record with this key comes after the cursor in listing order.
    #[must_use]
    pub fn precedes(&self, created_at_ms: i64, task_id: &str) -> bool {
        (created_at_ms, task_id) < (self.created_at_ms, self.task_id.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_including_colons_in_task_ids() {
        for cursor in [
            PageCursor { created_at_ms: 1_700_000_000_000, task_id: "t-1".into() },
            PageCursor { created_at_ms: -5, task_id: "a:b:c".into() },
        ] {
            assert_eq!(PageCursor::decode(&cursor.encode()).unwrap(), cursor);
        }
    }

    #[test]
    fn malformed_tokens_are_invalid_cursors() {
        let no_colon: String = "123".bytes().map(|b| format!("{b:02x}")).collect();
        let bad_number: String = "x1:t".bytes().map(|b| format!("{b:02x}")).collect();
        let no_task: String = "12:".bytes().map(|b| format!("{b:02x}")).collect();
        for token in ["", "z", "zz", "abc", "ff", "é1", &no_colon, &bad_number, &no_task] {
            assert!(matches!(PageCursor::decode(token), Err(StoreError::InvalidCursor)), "{token:?}");
        }
    }

    #[test]
    fn later_keys_follow_the_cursor_in_newest_first_order() {
        let cursor = PageCursor { created_at_ms: 10, task_id: "m".into() };
        assert!(cursor.precedes(9, "z"), "older");
        assert!(cursor.precedes(10, "a"), "same time, smaller id");
        assert!(!cursor.precedes(10, "m"), "the cursor's own record");
        assert!(!cursor.precedes(10, "n"));
        assert!(!cursor.precedes(11, "a"), "newer");
    }
}
