//! The roles a council can take.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{DomainError, Result};

/// Longest excerpt of an unknown role repeated in an error.
const MAX_ECHOED_CHARS: usize = 32;

/// The specialty shared by every agent of a council; it selects prompts and rubric emphasis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Role {
    Dev,
    Qa,
    Architect,
    Devops,
    Data,
}

impl Role {
    /// Every role, in the order the API documents them.
    pub const ALL: [Role; 5] = [Role::Dev, Role::Qa, Role::Architect, Role::Devops, Role::Data];

    /// Parses a role case-insensitively, ignoring surrounding whitespace.
    ///
    /// # Errors
    /// [`DomainError::Invalid`] on field `role` for anything but the five roles.
    pub fn parse(input: &str) -> Result<Self> {
        let wanted = input.trim();
        Self::ALL.into_iter().find(|role| role.as_str().eq_ignore_ascii_case(wanted)).ok_or_else(|| {
            let reason = if wanted.is_empty() {
                "is required; expected one of DEV, QA, ARCHITECT, DEVOPS, DATA".to_owned()
            } else {
                // Client input is echoed only as a short excerpt: it is data, not a message.
                let shown = crate::excerpt::excerpt(wanted, MAX_ECHOED_CHARS);
                format!("unknown role \"{shown}\"; expected one of DEV, QA, ARCHITECT, DEVOPS, DATA")
            };
            DomainError::invalid("role", reason)
        })
    }

    /// The canonical upper-case name used on the wire and in storage.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Dev => "DEV",
            Role::Qa => "QA",
            Role::Architect => "ARCHITECT",
            Role::Devops => "DEVOPS",
            Role::Data => "DATA",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = DomainError;

    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_is_case_insensitive_and_trims() {
        assert_eq!(Role::parse("dev").unwrap(), Role::Dev);
        assert_eq!(Role::parse(" Qa ").unwrap(), Role::Qa);
        assert_eq!(Role::parse("ARCHITECT").unwrap(), Role::Architect);
        assert_eq!(Role::parse("DevOps").unwrap(), Role::Devops);
        assert_eq!(Role::parse("data").unwrap(), Role::Data);
    }

    #[test]
    fn every_role_round_trips_through_its_name() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
        }
    }

    #[test]
    fn a_long_unknown_role_is_echoed_only_in_part() {
        let err = Role::parse(&"Z".repeat(5000)).unwrap_err().to_string();
        assert!(err.len() < 200, "{err}");
    }

    #[test]
    fn unknown_role_names_field_and_choices() {
        let err = Role::parse("FOO").unwrap_err();
        assert_eq!(
            err.to_string(),
            "role: unknown role \"FOO\"; expected one of DEV, QA, ARCHITECT, DEVOPS, DATA"
        );
    }

    #[test]
    fn empty_role_is_required() {
        let err = Role::parse("  ").unwrap_err();
        assert!(err.to_string().starts_with("role: is required"), "{err}");
    }
}
