//! Task ids: the one rule for the ids clients and the bus choose, applied at every edge (the
//! gRPC request, the bus's plan events) before a deliberation is stored under one.

use std::fmt;

use crate::error::{DomainError, Result};

/// A task id: 1 to [`TaskId::MAX_LEN`] bytes of `[A-Za-z0-9._:-]` — safe in a log line, a
/// NATS message id (`<task_id>:<event>:<seq>`) and a URL path without escaping.
///
/// It serialises as its text and deserialises through [`TaskId::new`], so a stored or sent
/// id that breaks the rule is refused where it is read.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TaskId(String);

impl TaskId {
    /// Longest task id, in bytes.
    pub const MAX_LEN: usize = 128;

    /// Whether `c` may appear in a task id.
    pub fn allows(c: char) -> bool {
        c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')
    }

    /// `raw` as a task id.
    ///
    /// # Errors
    /// Field `task_id` when empty, longer than [`TaskId::MAX_LEN`] bytes, or holding a
    /// character outside the alphabet (the first one is named).
    pub fn new(raw: impl Into<String>) -> Result<Self> {
        let raw = raw.into();
        if raw.is_empty() {
            return Err(DomainError::invalid("task_id", "is required"));
        }
        if raw.len() > Self::MAX_LEN {
            return Err(DomainError::invalid(
                "task_id",
                format!("must be at most {} bytes, got {}", Self::MAX_LEN, raw.len()),
            ));
        }
        if let Some(bad) = raw.chars().find(|c| !Self::allows(*c)) {
            return Err(DomainError::invalid(
                "task_id",
                format!("invalid character {bad:?}; allowed are ASCII letters, digits, '-', '_', '.', ':'"),
            ));
        }
        Ok(Self(raw))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as an owned string, for the places that store or send it.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl TryFrom<String> for TaskId {
    type Error = DomainError;

    fn try_from(raw: String) -> Result<Self> {
        Self::new(raw)
    }
}

impl From<TaskId> for String {
    fn from(id: TaskId) -> Self {
        id.0
    }
}

impl PartialEq<str> for TaskId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for TaskId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Reads as the text it is (`Option<TaskId>::as_deref` gives `Option<&str>`); nothing can
/// change it through this.
impl std::ops::Deref for TaskId {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

/// Lets maps and sets keyed by task id be looked up with a `&str` (equality and hashing are
/// the text's).
impl std::borrow::Borrow<str> for TaskId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for TaskId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_alphabet_and_the_length_are_the_rule() {
        assert_eq!(TaskId::new("plan-42.DEV:retry_1").unwrap().as_str(), "plan-42.DEV:retry_1");
        assert_eq!(TaskId::new("x".repeat(128)).unwrap().into_string().len(), 128);
        assert_eq!(
            TaskId::new("x".repeat(129)).unwrap_err().to_string(),
            "task_id: must be at most 128 bytes, got 129"
        );
        assert_eq!(
            TaskId::new("a b").unwrap_err().to_string(),
            "task_id: invalid character ' '; allowed are ASCII letters, digits, '-', '_', '.', ':'"
        );
        assert_eq!(TaskId::new("").unwrap_err().to_string(), "task_id: is required");
        assert!(!TaskId::allows('/') && TaskId::allows(':'));
    }

    #[test]
    fn it_is_written_as_its_text_and_read_back_only_under_the_rule() {
        let id = TaskId::new("plan-7:dev").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"plan-7:dev\"");
        assert_eq!(serde_json::from_str::<TaskId>("\"plan-7:dev\"").unwrap(), id);
        let refused = serde_json::from_str::<TaskId>("\"a/b\"").unwrap_err().to_string();
        assert!(refused.contains("invalid character '/'"), "{refused}");
    }
}
