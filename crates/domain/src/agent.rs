//! Agents: who takes part in a deliberation and on which model profile.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{DomainError, Result};
use crate::role::Role;

/// Longest accepted agent id or profile name, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// Checks a name (agent id, profile, council id) as `field`: 1..=64 bytes of `[A-Za-z0-9._:-]`.
pub(crate) fn validate_name(field: &str, value: &str) -> Result<()> {
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

/// Longest accepted persona, in bytes: a paragraph of standing instructions, not a document.
pub const MAX_PERSONA_BYTES: usize = 2 * 1024;

/// Standing instructions an agent of a standing council brings to every prompt ("You favour
/// boring technology; you always ask for a rollback plan"), on top of its role's.
///
/// Set by the operators who register the agent, not by the clients who submit tasks; still only
/// text that reaches a model, never instructions to this server.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Persona(String);

impl Persona {
    /// Trims the text.
    ///
    /// # Errors
    /// Field `persona` when blank, longer than 2 KiB, or holding control characters other than
    /// newline and tab.
    pub fn new(value: impl Into<String>) -> Result<Self> {
        let value = value.into();
        let trimmed = value.trim();
        if trimmed.is_empty() {
            return Err(DomainError::invalid("persona", "must not be blank"));
        }
        if trimmed.len() > MAX_PERSONA_BYTES {
            return Err(DomainError::invalid(
                "persona",
                format!("must be at most {MAX_PERSONA_BYTES} bytes, got {}", trimmed.len()),
            ));
        }
        if let Some(bad) = trimmed.chars().find(|c| c.is_control() && !matches!(c, '\n' | '\t')) {
            return Err(DomainError::invalid("persona", format!("invalid control character {bad:?}")));
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// An optional persona as clients send it: empty means none.
    ///
    /// # Errors
    /// As [`Persona::new`] for non-empty text.
    pub fn optional(value: &str) -> Result<Option<Self>> {
        if value.is_empty() { Ok(None) } else { Self::new(value).map(Some) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Persona {
    type Error = DomainError;

    fn try_from(value: String) -> Result<Self> {
        Self::new(value)
    }
}

impl From<Persona> for String {
    fn from(persona: Persona) -> Self {
        persona.0
    }
}

impl fmt::Display for Persona {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether a registered agent takes new deliberations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum AgentStatus {
    /// Seated in every new deliberation of its council.
    #[default]
    Active,
    /// Finishes the deliberations it sits in but is seated in no new one: the way to take an
    /// agent out of service without losing its record.
    Draining,
}

impl AgentStatus {
    pub const ALL: [AgentStatus; 2] = [AgentStatus::Active, AgentStatus::Draining];

    /// Parses `ACTIVE` or `DRAINING`, case-insensitively.
    ///
    /// # Errors
    /// Field `status` for anything else.
    pub fn parse(input: &str) -> Result<Self> {
        let wanted = input.trim();
        Self::ALL.into_iter().find(|s| s.as_str().eq_ignore_ascii_case(wanted)).ok_or_else(|| {
            DomainError::invalid(
                "status",
                format!("unknown agent status \"{wanted}\"; expected ACTIVE or DRAINING"),
            )
        })
    }

    /// The upper-case name used on the wire and in storage.
    pub const fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Active => "ACTIVE",
            AgentStatus::Draining => "DRAINING",
        }
    }
}

impl fmt::Display for AgentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A member of a council.
///
/// `seat` is the agent's 0-based position in its council: it fixes the review ring and lets
/// backends spread sampling (temperature, seed) so agents on one model do not answer alike.
/// `persona` is set for agents of a standing council that were registered with one; ad-hoc
/// agents have none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agent {
    pub id: AgentId,
    pub role: Role,
    pub profile: ProfileName,
    pub seat: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persona: Option<Persona>,
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
    fn persona_is_trimmed_bounded_and_free_of_control_characters() {
        assert_eq!(
            Persona::new("  Be terse.\n\tAsk for tests. ").unwrap().as_str(),
            "Be terse.\n\tAsk for tests."
        );
        assert_eq!(Persona::new(" \n").unwrap_err().to_string(), "persona: must not be blank");
        assert_eq!(
            Persona::new("x".repeat(MAX_PERSONA_BYTES + 1)).unwrap_err().to_string(),
            "persona: must be at most 2048 bytes, got 2049"
        );
        assert_eq!(
            Persona::new("a\u{7}b").unwrap_err().to_string(),
            "persona: invalid control character '\\u{7}'"
        );
        assert_eq!(Persona::optional("").unwrap(), None);
    }

    #[test]
    fn agent_status_parses_its_two_names() {
        assert_eq!(AgentStatus::parse("draining").unwrap(), AgentStatus::Draining);
        assert_eq!(AgentStatus::parse(" ACTIVE ").unwrap(), AgentStatus::Active);
        assert_eq!(
            AgentStatus::parse("BUSY").unwrap_err().to_string(),
            "status: unknown agent status \"BUSY\"; expected ACTIVE or DRAINING"
        );
    }

    #[test]
    fn an_agent_without_persona_serializes_as_before() {
        let agent = Agent {
            id: AgentId::new("dev-1").unwrap(),
            role: Role::Dev,
            profile: ProfileName::default_profile(),
            seat: 0,
            persona: None,
        };
        let json = serde_json::to_string(&agent).unwrap();
        assert_eq!(json, r#"{"id":"dev-1","role":"DEV","profile":"default","seat":0}"#);
        assert_eq!(serde_json::from_str::<Agent>(&json).unwrap(), agent);
    }

    #[test]
    fn profile_name_errors_name_the_request_field() {
        let err = ProfileName::new("bad/name").unwrap_err();
        assert!(err.to_string().starts_with("agent_profiles: invalid character '/'"), "{err}");
    }
}
