//! The lifecycle of a stored deliberation.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{DomainError, Result};

/// Where a deliberation is in its life: `Pending → InProgress → Completed | Failed | Timeout |
/// Cancelled | Interrupted`. `Pending` may also end directly (cancelled, interrupted, failed)
/// but never completes without having run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DeliberationStatus {
    Pending,
    InProgress,
    Completed,
    Failed,
    Timeout,
    Cancelled,
    /// The process running it stopped before it finished.
    Interrupted,
}

impl DeliberationStatus {
    pub const ALL: [DeliberationStatus; 7] = [
        Self::Pending,
        Self::InProgress,
        Self::Completed,
        Self::Failed,
        Self::Timeout,
        Self::Cancelled,
        Self::Interrupted,
    ];

    /// True once nothing more will happen to the deliberation.
    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::Pending | Self::InProgress)
    }

    /// Whether the lifecycle allows going from `self` to `next`.
    pub fn can_become(self, next: Self) -> bool {
        match self {
            Self::Pending => !matches!(next, Self::Pending | Self::Completed),
            Self::InProgress => next.is_terminal(),
            _ => false,
        }
    }

    /// Checks a transition.
    ///
    /// # Errors
    /// Field `status` when the lifecycle forbids it.
    pub fn transition(self, next: Self) -> Result<Self> {
        if self.can_become(next) {
            Ok(next)
        } else {
            Err(DomainError::invalid("status", format!("cannot go from {self} to {next}")))
        }
    }

    /// Stable upper-case name used in storage.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::InProgress => "IN_PROGRESS",
            Self::Completed => "COMPLETED",
            Self::Failed => "FAILED",
            Self::Timeout => "TIMEOUT",
            Self::Cancelled => "CANCELLED",
            Self::Interrupted => "INTERRUPTED",
        }
    }

    /// # Errors
    /// Field `status` for an unknown name.
    pub fn parse(input: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(input.trim()))
            .ok_or_else(|| DomainError::invalid("status", format!("unknown status \"{input}\"")))
    }
}

impl fmt::Display for DeliberationStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::DeliberationStatus::*;
    use super::*;

    #[test]
    fn lifecycle_moves_forward_only() {
        assert!(Pending.can_become(InProgress));
        assert!(Pending.can_become(Cancelled));
        assert!(!Pending.can_become(Completed), "a deliberation completes only after running");
        assert!(InProgress.can_become(Completed));
        assert!(InProgress.can_become(Interrupted));
        assert!(!InProgress.can_become(Pending));
        assert!(!InProgress.can_become(InProgress));
        for terminal in [Completed, Failed, Timeout, Cancelled, Interrupted] {
            assert!(terminal.is_terminal());
            for next in DeliberationStatus::ALL {
                assert!(!terminal.can_become(next), "{terminal} -> {next}");
            }
        }
        assert_eq!(
            Completed.transition(Failed).unwrap_err().to_string(),
            "status: cannot go from COMPLETED to FAILED"
        );
    }

    #[test]
    fn names_round_trip() {
        for s in DeliberationStatus::ALL {
            assert_eq!(DeliberationStatus::parse(s.as_str()).unwrap(), s);
        }
        assert!(DeliberationStatus::parse("DONE").is_err());
    }
}
