//! What the operator configures.

use std::time::Duration;

use serde::Deserialize;

/// Placeholder in the command replaced by the path of the file holding the code.
pub const FILE_PLACEHOLDER: &str = "{file}";

/// A dry-run command, from the `[dry_run]` table of the server's config file:
///
/// ```toml
/// [dry_run]
/// command = ["python3", "-m", "py_compile", "{file}"]  # {file}: the code, written to a temp file
/// languages = ["python", "py"]                          # code fences to take
/// file_extension = "py"
/// timeout_secs = 10
/// max_concurrency = 2
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DryRunConfig {
    /// Program and arguments; `{file}` is replaced by the code file's path.
    pub command: Vec<String>,
    /// Code-fence languages whose blocks are checked (case-insensitive).
    pub languages: Vec<String>,
    /// Extension of the temp file (some tools care), without the dot.
    #[serde(default)]
    pub file_extension: String,
    /// Bound on one run; a run that takes longer fails.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: f64,
    /// Runs at once, across all deliberations.
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: usize,
}

fn default_timeout_secs() -> f64 {
    10.0
}

fn default_max_concurrency() -> usize {
    2
}

/// A configuration that cannot work; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("dry_run.{field}: {reason}")]
pub struct ConfigError {
    pub field: &'static str,
    pub reason: String,
}

impl DryRunConfig {
    /// # Errors
    /// A [`ConfigError`] naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let error = |field, reason: &str| Err(ConfigError { field, reason: reason.to_owned() });
        if self.command.first().is_none_or(|program| program.trim().is_empty()) {
            return error("command", "must name a program");
        }
        if !self.command.iter().any(|arg| arg.contains(FILE_PLACEHOLDER)) {
            return error("command", "must pass the code with a {file} argument");
        }
        if self.languages.iter().all(|l| l.trim().is_empty()) {
            return error("languages", "must name at least one code-fence language");
        }
        if !(self.timeout_secs.is_finite() && self.timeout_secs > 0.0 && self.timeout_secs <= 600.0) {
            return error("timeout_secs", "must be within (0, 600]");
        }
        if self.max_concurrency == 0 || self.max_concurrency > 64 {
            return error("max_concurrency", "must be within 1..=64");
        }
        if !self.file_extension.chars().all(|c| c.is_ascii_alphanumeric()) {
            return error("file_extension", "must be letters and digits only");
        }
        Ok(())
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> DryRunConfig {
        DryRunConfig {
            command: vec!["python3".into(), "-m".into(), "py_compile".into(), "{file}".into()],
            languages: vec!["python".into()],
            file_extension: "py".into(),
            timeout_secs: 10.0,
            max_concurrency: 2,
        }
    }

    #[test]
    fn a_complete_config_is_valid() {
        assert_eq!(config().validate(), Ok(()));
    }

    #[test]
    fn each_mistake_names_its_field() {
        let cases = [
            (DryRunConfig { command: vec![], ..config() }, "dry_run.command: must name a program"),
            (
                DryRunConfig { command: vec!["true".into()], ..config() },
                "dry_run.command: must pass the code with a {file} argument",
            ),
            (
                DryRunConfig { languages: vec![], ..config() },
                "dry_run.languages: must name at least one code-fence language",
            ),
            (DryRunConfig { timeout_secs: 0.0, ..config() }, "dry_run.timeout_secs: must be within (0, 600]"),
            (
                DryRunConfig { max_concurrency: 0, ..config() },
                "dry_run.max_concurrency: must be within 1..=64",
            ),
            (
                DryRunConfig { file_extension: "p/y".into(), ..config() },
                "dry_run.file_extension: must be letters and digits only",
            ),
        ];
        for (bad, message) in cases {
            assert_eq!(bad.validate().unwrap_err().to_string(), message);
        }
    }
}
