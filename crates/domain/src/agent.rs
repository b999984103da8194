//! Agents: who takes part in a deliberation and on which model profile.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{DomainError, Result};
use crate::role::Role;

/// Longest accepted agent id or profile name, in bytes.
pub const MAX_NAME_LEN: usize = 64;

fn validate_name(field: &str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(DomainError::invalid(field, "must not be empty"));
    }
    if value.len() > MAX_NAME_LEN {
        return Err(DomainError::invalid(
            field,
            format!("must be at most {MAX_NAME_LEN} bytes, got {}", value.len()),
        ));
    }
    if let Some(bad) =
        value.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')))
    {
        return Err(DomainError::invalid(
            field,
            format!("invalid character {bad:?}; allowed are ASCII letters, digits, '-', '_', '.', ':'"),
        ));
    }
    Ok(())
}

/// Identifies an agent within a council; safe to log and to use as a key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AgentId(String);

impl AgentId {
    /// # Errors
    /// Field `agent_id` when empty, longer than 64 bytes or outside `[A-Za-z0-9._:-]`.
    pub fn new(value: impl Into<String>) -> Result<Self> {
        let value = value.into();
        validate_name("agent_id", &value)?;
        Ok(Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for AgentId {
    type Error = DomainError;

    fn try_from(value: String) -> Result<Self> {
        Self::new(value)
    }
}

impl From<AgentId> for String {
    fn from(id: AgentId) -> Self {
        id.0
    }
}

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Names a model profile (backend URL, model, sampling settings) configured on the server.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProfileName(String);

impl ProfileName {
    /// The profile used when a request names none.
    pub const DEFAULT: &'static str = "default";

    /// # Errors
    /// Field `agent_profiles` under the same rules as agent ids.
    pub fn new(value: impl Into<String>) -> Result<Self> {
        let value = value.into();
        validate_name("agent_profiles", &value)?;
        Ok(Self(value))
    }

    /// The `default` profile.
    pub fn default_profile() -> Self {
        Self(Self::DEFAULT.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ProfileName {
    type Error = DomainError;

    fn try_from(value: String) -> Result<Self> {
        Self::new(value)
    }
}

impl From<ProfileName> for String {
    fn from(name: ProfileName) -> Self {
        name.0
    }
}

impl fmt::Display for ProfileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A member of a council.
///
/// `seat` is the agent's 0-based position in its council: it fixes the review ring and lets
/// backends spread sampling (temperature, seed) so agents on one model do not answer alike.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agent {
    pub id: AgentId,
    pub role: Role,
    pub profile: ProfileName,
    pub seat: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_id_accepts_plain_names() {
        assert_eq!(AgentId::new("dev-1").unwrap().as_str(), "dev-1");
        assert!(AgentId::new("a.b:c_d").is_ok());
    }

    #[test]
    fn agent_id_rejects_empty_long_and_odd_characters() {
        assert_eq!(AgentId::new("").unwrap_err().to_string(), "agent_id: must not be empty");
        assert!(AgentId::new("x".repeat(65)).unwrap_err().to_string().contains("at most 64"));
        assert!(AgentId::new("a b").unwrap_err().to_string().contains("invalid character ' '"));
    }

    #[test]
    fn profile_name_errors_name_the_request_field() {
        let err = ProfileName::new("bad/name").unwrap_err();
        assert!(err.to_string().starts_with("agent_profiles: invalid character '/'"), "{err}");
    }
}
