//! Tasks and their constraints.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::acceptance::AcceptanceTests;
use crate::deliberation::{EarlyStop, Strategy};
use crate::error::{DomainError, Result};

/// Largest task description, in bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 64 * 1024;
/// Largest rubric, in bytes.
pub const MAX_RUBRIC_BYTES: usize = 16 * 1024;
/// Most requirements a task may list.
pub const MAX_REQUIREMENTS: usize = 64;
/// Largest single requirement, in bytes.
pub const MAX_REQUIREMENT_BYTES: usize = 2 * 1024;
/// Most metadata entries.
pub const MAX_METADATA_ENTRIES: usize = 64;
/// Largest metadata key, in bytes.
pub const MAX_METADATA_KEY_BYTES: usize = 128;
/// Largest metadata value, in bytes.
pub const MAX_METADATA_VALUE_BYTES: usize = 4 * 1024;
/// Longest deliberation a client may ask for: six hours covers 16 agents on a slow CPU model.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(6 * 3600);

/// What a task asks of the council beyond its description.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskConstraints {
    rubric: String,
    requirements: Vec<String>,
    metadata: BTreeMap<String, String>,
    timeout: Option<Duration>,
    max_iterations: Option<u32>,
    /// Tests every proposal's code must pass; absent in rows stored before they existed.
    #[serde(default)]
    acceptance_tests: Option<AcceptanceTests>,
    /// When the review rounds end early, for this task; `None`: the server's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    early_stop: Option<EarlyStop>,
    /// Council or cascade, for this task; `None`: the server's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    strategy: Option<Strategy>,
}

impl TaskConstraints {
    /// Validates raw constraint values as a client sends them.
    ///
    /// `timeout_seconds` and `max_iterations` of 0 mean "not set"; negative values are errors.
    /// Requirements are trimmed; blank ones are errors rather than silently dropped, so the
    /// client learns its list is not what it meant.
    ///
    /// # Errors
    /// [`DomainError::Invalid`] naming `constraints.<field>` (with the index for list items).
    pub fn new(
        rubric: String,
        requirements: Vec<String>,
        metadata: BTreeMap<String, String>,
        timeout_seconds: i64,
        max_iterations: i64,
    ) -> Result<Self> {
        if rubric.len() > MAX_RUBRIC_BYTES {
            return Err(DomainError::invalid(
                "constraints.rubric",
                format!("must be at most {MAX_RUBRIC_BYTES} bytes, got {}", rubric.len()),
            ));
        }
        if requirements.len() > MAX_REQUIREMENTS {
            return Err(DomainError::invalid(
                "constraints.requirements",
                format!("at most {MAX_REQUIREMENTS} requirements, got {}", requirements.len()),
            ));
        }
        let requirements = requirements
            .into_iter()
            .enumerate()
            .map(|(i, req)| {
                let req = req.trim().to_owned();
                let field = format!("constraints.requirements[{i}]");
                if req.is_empty() {
                    Err(DomainError::invalid(field, "must not be blank"))
                } else if req.len() > MAX_REQUIREMENT_BYTES {
                    Err(DomainError::invalid(
                        field,
                        format!("must be at most {MAX_REQUIREMENT_BYTES} bytes, got {}", req.len()),
                    ))
                } else {
                    Ok(req)
                }
            })
            .collect::<Result<Vec<_>>>()?;
        if metadata.len() > MAX_METADATA_ENTRIES {
            return Err(DomainError::invalid(
                "constraints.metadata",
                format!("at most {MAX_METADATA_ENTRIES} entries, got {}", metadata.len()),
            ));
        }
        for (key, value) in &metadata {
            if key.is_empty() || key.len() > MAX_METADATA_KEY_BYTES {
                return Err(DomainError::invalid(
                    "constraints.metadata",
                    format!("keys must be 1..={MAX_METADATA_KEY_BYTES} bytes, got {}", key.len()),
                ));
            }
            if value.len() > MAX_METADATA_VALUE_BYTES {
                return Err(DomainError::invalid(
                    format!("constraints.metadata[{key}]"),
                    format!("must be at most {MAX_METADATA_VALUE_BYTES} bytes, got {}", value.len()),
                ));
            }
        }
        let timeout = match timeout_seconds {
            0 => None,
            s if s < 0 => {
                return Err(DomainError::invalid(
                    "constraints.timeout_seconds",
                    format!("must not be negative, got {s}"),
                ));
            }
            s => {
                let timeout = Duration::from_secs(s.unsigned_abs());
                if timeout > MAX_TIMEOUT {
                    return Err(DomainError::invalid(
                        "constraints.timeout_seconds",
                        format!("must be at most {}, got {s}", MAX_TIMEOUT.as_secs()),
                    ));
                }
                Some(timeout)
            }
        };
        let max_iterations = match max_iterations {
            0 => None,
            n if n < 0 => {
                return Err(DomainError::invalid(
                    "constraints.max_iterations",
                    format!("must not be negative, got {n}"),
                ));
            }
            n => Some(u32::try_from(n).unwrap_or(u32::MAX)),
        };
        Ok(Self {
            rubric: rubric.trim().to_owned(),
            requirements,
            metadata,
            timeout,
            max_iterations,
            acceptance_tests: None,
            early_stop: None,
            strategy: None,
        })
    }

    /// The same constraints carrying acceptance tests (validated by [`AcceptanceTests::new`]).
    #[must_use]
    pub fn with_acceptance_tests(self, tests: AcceptanceTests) -> Self {
        Self { acceptance_tests: Some(tests), ..self }
    }

    /// This task's early stop, overriding the server's default.
    #[must_use]
    pub fn with_early_stop(self, early_stop: Option<EarlyStop>) -> Self {
        Self { early_stop, ..self }
    }

    /// This task's strategy, overriding the server's default.
    #[must_use]
    pub fn with_strategy(self, strategy: Option<Strategy>) -> Self {
        Self { strategy, ..self }
    }

    /// The early stop the task asked for, if any.
    pub fn early_stop(&self) -> Option<EarlyStop> {
        self.early_stop
    }

    /// The strategy the task asked for, if any.
    pub fn strategy(&self) -> Option<Strategy> {
        self.strategy
    }

    /// Tests every proposal's code is run against, when the task has any.
    pub fn acceptance_tests(&self) -> Option<&AcceptanceTests> {
        self.acceptance_tests.as_ref()
    }

    /// How proposals are judged (may be empty).
    pub fn rubric(&self) -> &str {
        &self.rubric
    }

    /// What every proposal must address.
    pub fn requirements(&self) -> &[String] {
        &self.requirements
    }

    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// Bound on the whole deliberation; `None` means the server default.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Upper bound on review rounds; `None` means no bound.
    pub fn max_iterations(&self) -> Option<u32> {
        self.max_iterations
    }

    /// The review rounds a deliberation runs when `requested`: capped by `max_iterations`.
    pub fn cap_rounds(&self, requested: u32) -> u32 {
        self.max_iterations.map_or(requested, |cap| requested.min(cap))
    }
}

/// A software-engineering task for a council.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    description: String,
    constraints: TaskConstraints,
}

impl Task {
    /// # Errors
    /// Field `task_description` when blank or larger than 64 KiB.
    pub fn new(description: impl Into<String>, constraints: TaskConstraints) -> Result<Self> {
        let description = description.into();
        let trimmed = description.trim();
        if trimmed.is_empty() {
            return Err(DomainError::invalid("task_description", "must not be empty"));
        }
        if trimmed.len() > MAX_DESCRIPTION_BYTES {
            return Err(DomainError::invalid(
                "task_description",
                format!("must be at most {MAX_DESCRIPTION_BYTES} bytes, got {}", trimmed.len()),
            ));
        }
        Ok(Self { description: trimmed.to_owned(), constraints })
    }

    pub fn description(&self) -> &str {
        &self.description
    }

    pub fn constraints(&self) -> &TaskConstraints {
        &self.constraints
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn constraints(timeout: i64, iterations: i64) -> Result<TaskConstraints> {
        TaskConstraints::new(String::new(), vec![], BTreeMap::new(), timeout, iterations)
    }

    #[test]
    fn description_is_required_and_trimmed() {
        assert_eq!(
            Task::new("  \n", TaskConstraints::default()).unwrap_err().to_string(),
            "task_description: must not be empty"
        );
        assert_eq!(Task::new("  do it ", TaskConstraints::default()).unwrap().description(), "do it");
    }

    #[test]
    fn description_is_bounded_to_64_kib() {
        assert!(Task::new("x".repeat(MAX_DESCRIPTION_BYTES), TaskConstraints::default()).is_ok());
        let err = Task::new("x".repeat(MAX_DESCRIPTION_BYTES + 1), TaskConstraints::default()).unwrap_err();
        assert!(err.to_string().starts_with("task_description: must be at most 65536 bytes"), "{err}");
    }

    #[test]
    fn zero_means_unset_for_timeout_and_iterations() {
        let c = constraints(0, 0).unwrap();
        assert_eq!(c.timeout(), None);
        assert_eq!(c.max_iterations(), None);
        let c = constraints(30, 2).unwrap();
        assert_eq!(c.timeout(), Some(Duration::from_secs(30)));
        assert_eq!(c.max_iterations(), Some(2));
        assert_eq!((c.cap_rounds(5), c.cap_rounds(1)), (2, 1));
        assert_eq!(constraints(0, 0).unwrap().cap_rounds(5), 5);
    }

    #[test]
    fn negative_and_huge_values_name_their_field() {
        assert_eq!(
            constraints(-1, 0).unwrap_err().to_string(),
            "constraints.timeout_seconds: must not be negative, got -1"
        );
        assert!(
            constraints(6 * 3600 + 1, 0).unwrap_err().to_string().starts_with("constraints.timeout_seconds")
        );
        assert_eq!(
            constraints(0, -3).unwrap_err().to_string(),
            "constraints.max_iterations: must not be negative, got -3"
        );
    }

    #[test]
    fn blank_requirement_is_reported_with_its_index() {
        let err = TaskConstraints::new(String::new(), vec!["ok".into(), " ".into()], BTreeMap::new(), 0, 0)
            .unwrap_err();
        assert_eq!(err.to_string(), "constraints.requirements[1]: must not be blank");
    }

    #[test]
    fn requirement_count_rubric_and_metadata_are_bounded() {
        let many = vec!["r".to_owned(); MAX_REQUIREMENTS + 1];
        assert!(TaskConstraints::new(String::new(), many, BTreeMap::new(), 0, 0).is_err());
        let rubric = "r".repeat(MAX_RUBRIC_BYTES + 1);
        assert!(
            TaskConstraints::new(rubric, vec![], BTreeMap::new(), 0, 0)
                .unwrap_err()
                .to_string()
                .starts_with("constraints.rubric")
        );
        let mut metadata = BTreeMap::new();
        metadata.insert("k".to_owned(), "v".repeat(MAX_METADATA_VALUE_BYTES + 1));
        assert!(
            TaskConstraints::new(String::new(), vec![], metadata, 0, 0)
                .unwrap_err()
                .to_string()
                .starts_with("constraints.metadata[k]")
        );
    }
}
