//! What the operator configures.

use std::time::Duration;

use orchestrator_infra_sandbox::SandboxLimits;
use serde::Deserialize;

/// Placeholder in the command replaced by the path of the file holding the code.
pub const FILE_PLACEHOLDER: &str = "{file}";

/// A dry-run command, from the `[dry_run]` table of the server's config file:
///
/// ```toml
/// [dry_run]
/// command = ["python3", "-m", "py_compile", "{file}"]  # {file}: the code, written to a file
/// languages = ["python", "py"]                          # code fences to take
/// file_extension = "py"
/// timeout_secs = 10
/// max_concurrency = 2
/// # unsandboxed = false  # true runs the command WITHOUT the sandbox: read the README first
///
/// [dry_run.limits]        # optional, per process inside the sandbox; these are the defaults
/// cpu_time_secs = 10
/// memory_mib = 512
/// max_processes = 64
/// max_file_mib = 16
/// ```
///
/// The command runs in the bubblewrap sandbox of `orchestrator-infra-sandbox`; without one
/// (and without `unsandboxed = true`) dry runs report "not run" instead of running the code.
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
    /// The operator's opt-in to run the command WITHOUT the sandbox (as the server's user,
    /// with its files and network). Off by default; when on, every run logs a warning.
    #[serde(default)]
    pub unsandboxed: bool,
    /// Resource limits of one run in the sandbox.
    #[serde(default)]
    pub limits: DryRunLimits,
}

/// Per-process limits of one sandboxed run (`[dry_run.limits]`); a field left out keeps the
/// sandbox's default ([`SandboxLimits::default`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DryRunLimits {
    /// CPU seconds of each process.
    pub cpu_time_secs: Option<u64>,
    /// Address space of each process, in MiB.
    pub memory_mib: Option<u64>,
    /// Processes (and threads) at once.
    pub max_processes: Option<u32>,
    /// Largest file a process may write, in MiB.
    pub max_file_mib: Option<u64>,
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
        let limits = &self.limits;
        if limits.cpu_time_secs.is_some_and(|secs| !(1..=600).contains(&secs)) {
            return error("limits.cpu_time_secs", "must be within 1..=600");
        }
        if limits.memory_mib.is_some_and(|mib| !(16..=65536).contains(&mib)) {
            return error("limits.memory_mib", "must be within 16..=65536");
        }
        if limits.max_processes.is_some_and(|n| !(1..=4096).contains(&n)) {
            return error("limits.max_processes", "must be within 1..=4096");
        }
        if limits.max_file_mib.is_some_and(|mib| !(1..=65536).contains(&mib)) {
            return error("limits.max_file_mib", "must be within 1..=65536");
        }
        // Anything the checks above let through, the sandbox accepts; this is a backstop.
        self.sandbox_limits()
            .validate()
            .map_err(|invalid| ConfigError { field: "limits", reason: invalid.to_string() })
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout_secs)
    }

    /// The sandbox limits of one run: [`limits`](Self::limits) over the sandbox defaults, the
    /// wall timeout from [`timeout_secs`](Self::timeout_secs).
    pub fn sandbox_limits(&self) -> SandboxLimits {
        const MIB: u64 = 1024 * 1024;
        let defaults = SandboxLimits::default();
        let limits = &self.limits;
        SandboxLimits {
            cpu_time: limits.cpu_time_secs.map_or(defaults.cpu_time, Duration::from_secs),
            memory_bytes: limits.memory_mib.map_or(defaults.memory_bytes, |mib| mib * MIB),
            max_processes: limits.max_processes.unwrap_or(defaults.max_processes),
            max_file_bytes: limits.max_file_mib.map_or(defaults.max_file_bytes, |mib| mib * MIB),
            wall_timeout: self.timeout(),
            max_output_bytes: defaults.max_output_bytes,
        }
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
            unsandboxed: false,
            limits: DryRunLimits::default(),
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
            (
                DryRunConfig {
                    limits: DryRunLimits { cpu_time_secs: Some(0), ..DryRunLimits::default() },
                    ..config()
                },
                "dry_run.limits.cpu_time_secs: must be within 1..=600",
            ),
            (
                DryRunConfig {
                    limits: DryRunLimits { memory_mib: Some(8), ..DryRunLimits::default() },
                    ..config()
                },
                "dry_run.limits.memory_mib: must be within 16..=65536",
            ),
            (
                DryRunConfig {
                    limits: DryRunLimits { max_processes: Some(0), ..DryRunLimits::default() },
                    ..config()
                },
                "dry_run.limits.max_processes: must be within 1..=4096",
            ),
            (
                DryRunConfig {
                    limits: DryRunLimits { max_file_mib: Some(0), ..DryRunLimits::default() },
                    ..config()
                },
                "dry_run.limits.max_file_mib: must be within 1..=65536",
            ),
        ];
        for (bad, message) in cases {
            assert_eq!(bad.validate().unwrap_err().to_string(), message);
        }
    }

    #[test]
    fn limits_fill_in_the_sandbox_defaults_and_the_timeout_is_the_wall() {
        let limits = DryRunConfig {
            limits: DryRunLimits { memory_mib: Some(256), max_processes: Some(8), ..DryRunLimits::default() },
            timeout_secs: 2.5,
            ..config()
        }
        .sandbox_limits();
        let defaults = SandboxLimits::default();
        assert_eq!(
            limits,
            SandboxLimits {
                memory_bytes: 256 * 1024 * 1024,
                max_processes: 8,
                wall_timeout: Duration::from_millis(2500),
                ..defaults
            }
        );
    }

    #[test]
    fn the_sandbox_is_on_unless_the_file_opts_out() {
        let minimal = "command = [\"python3\", \"{file}\"]\nlanguages = [\"python\"]\n";
        let config: DryRunConfig = toml::from_str(minimal).unwrap();
        assert!(!config.unsandboxed);
        assert_eq!(config.limits, DryRunLimits::default());
        let opted_out: DryRunConfig =
            toml::from_str(&format!("{minimal}unsandboxed = true\n[limits]\ncpu_time_secs = 3\n")).unwrap();
        assert!(opted_out.unsandboxed);
        assert_eq!(opted_out.limits.cpu_time_secs, Some(3));
    }
}
