//! Layered configuration: defaults → TOML file (`ORCHESTRATOR_CONFIG`) → `ORCHESTRATOR_*`
//! environment variables → validation. Errors name the key at fault.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use orchestrator_infra_dryrun::DryRunConfig;
use orchestrator_infra_llm::LlmProfile;
use secrecy::SecretString;
use serde::Deserialize;

use crate::error::{Result, ServerError};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable, one line per event.
    #[default]
    Pretty,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Everything the server can be told.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// gRPC listen address.
    pub listen: SocketAddr,
    /// Deadline of a deliberation whose task sets none, in seconds.
    pub default_timeout_secs: u64,
    /// How long shutdown waits for running requests before exiting anyway, in seconds.
    pub shutdown_grace_secs: u64,
    pub log_format: LogFormat,
    /// Where deliberations are stored: a SQLite path or `sqlite:` URL (embedded default), or a
    /// `postgres://` URL.
    pub database_url: String,
    /// Deliberations running at once.
    pub max_running: usize,
    /// Deliberations waiting for a slot before submissions get RESOURCE_EXHAUSTED.
    pub queue_capacity: usize,
    /// Resume deliberations a stopped process left unfinished from their last saved phase
    /// (true), or mark them INTERRUPTED (false).
    pub resume_unfinished: bool,
    /// This server's name among servers sharing a database (default: the host name). A restart
    /// under the same name takes back its unfinished work at once; two live servers must not
    /// share one.
    pub node_id: String,
    /// How long a server's claim on its unfinished deliberations holds without renewal; other
    /// servers take them over after it runs out.
    pub lease_secs: u64,
    /// Profile of the ARCHITECT agent that selects in Orchestrate (default: the first agent's).
    pub selection_profile: Option<String>,
    /// NATS server to publish deliberation events to (`nats://host:4222`); none: no events.
    pub nats_url: Option<String>,
    /// Subject prefix of the events: `<prefix>.deliberation.<event>`.
    pub events_prefix: String,
    /// A command that checks the code blocks of every final proposal (`[dry_run]`); none: the
    /// dry-run check reports "not run".
    pub dry_run: Option<DryRunConfig>,
    /// Model profiles by name (`[profiles.<name>]`); `default` serves requests that name none.
    /// Empty: no LLM backend, and deliberations answer FAILED_PRECONDITION.
    pub profiles: BTreeMap<String, LlmProfile>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 50055)),
            default_timeout_secs: 300,
            shutdown_grace_secs: 30,
            log_format: LogFormat::Pretty,
            database_url: "sqlite:data/orchestrator.db".to_owned(),
            max_running: 8,
            queue_capacity: 256,
            resume_unfinished: true,
            node_id: default_node_id(),
            lease_secs: 30,
            selection_profile: None,
            dry_run: None,
            nats_url: None,
            events_prefix: "orchestrator".to_owned(),
            profiles: BTreeMap::new(),
        }
    }
}

/// The host name (a pod's name on Kubernetes), or `orchestrator`.
fn default_node_id() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "orchestrator".to_owned())
}

fn parse<T: std::str::FromStr>(key: &str, value: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    value
        .trim()
        .parse()
        .map_err(|e: T::Err| ServerError::config(key, format!("invalid value {value:?}: {e}")))
}

impl Config {
    /// Loads from the process environment (and the file it names).
    ///
    /// # Errors
    /// A [`ServerError::Config`] naming the key, or [`ServerError::ConfigFile`].
    pub fn load() -> Result<Self> {
        Self::from_env(&std::env::vars().collect())
    }

    /// Loads from the given environment (and the file it names): testable without touching
    /// the process environment.
    ///
    /// # Errors
    /// See [`Config::load`].
    pub fn from_env(env: &HashMap<String, String>) -> Result<Self> {
        let mut config = match env.get("ORCHESTRATOR_CONFIG").filter(|p| !p.is_empty()) {
            Some(path) => Self::from_file(Path::new(path))?,
            None => Self::default(),
        };
        config.apply_env(env)?;
        config.validate()?;
        Ok(config)
    }

    /// Reads a TOML file over the defaults.
    ///
    /// # Errors
    /// [`ServerError::ConfigFile`] when unreadable or not valid for this schema.
    pub fn from_file(path: &Path) -> Result<Self> {
        let file_error =
            |reason: String| ServerError::ConfigFile { path: path.display().to_string(), reason };
        let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
        toml::from_str(&text).map_err(|e| file_error(e.to_string()))
    }

    fn apply_env(&mut self, env: &HashMap<String, String>) -> Result<()> {
        let get = |key: &str| env.get(key).filter(|v| !v.trim().is_empty());
        if let Some(v) = get("ORCHESTRATOR_LISTEN") {
            self.listen = parse("ORCHESTRATOR_LISTEN", v)?;
        }
        if let Some(v) = get("ORCHESTRATOR_DEFAULT_TIMEOUT_SECS") {
            self.default_timeout_secs = parse("ORCHESTRATOR_DEFAULT_TIMEOUT_SECS", v)?;
        }
        if let Some(v) = get("ORCHESTRATOR_SHUTDOWN_GRACE_SECS") {
            self.shutdown_grace_secs = parse("ORCHESTRATOR_SHUTDOWN_GRACE_SECS", v)?;
        }
        if let Some(v) = get("ORCHESTRATOR_DATABASE_URL") {
            v.trim().clone_into(&mut self.database_url);
        }
        if let Some(v) = get("ORCHESTRATOR_MAX_RUNNING") {
            self.max_running = parse("ORCHESTRATOR_MAX_RUNNING", v)?;
        }
        if let Some(v) = get("ORCHESTRATOR_QUEUE_CAPACITY") {
            self.queue_capacity = parse("ORCHESTRATOR_QUEUE_CAPACITY", v)?;
        }
        if let Some(v) = get("ORCHESTRATOR_NATS_URL") {
            self.nats_url = Some(v.trim().to_owned());
        }
        if let Some(v) = get("ORCHESTRATOR_EVENTS_PREFIX") {
            v.trim().clone_into(&mut self.events_prefix);
        }
        if let Some(v) = get("ORCHESTRATOR_NODE_ID") {
            v.trim().clone_into(&mut self.node_id);
        }
        if let Some(v) = get("ORCHESTRATOR_LEASE_SECS") {
            self.lease_secs = parse("ORCHESTRATOR_LEASE_SECS", v)?;
        }
        if let Some(v) = get("ORCHESTRATOR_RESUME_UNFINISHED") {
            self.resume_unfinished = parse("ORCHESTRATOR_RESUME_UNFINISHED", v)?;
        }
        if let Some(v) = get("ORCHESTRATOR_SELECTION_PROFILE") {
            self.selection_profile = Some(v.trim().to_owned());
        }
        self.apply_llm_env(env)?;
        if let Some(v) = get("ORCHESTRATOR_LOG_FORMAT") {
            self.log_format = match v.trim().to_ascii_lowercase().as_str() {
                "json" => LogFormat::Json,
                "pretty" | "text" => LogFormat::Pretty,
                other => {
                    return Err(ServerError::config(
                        "ORCHESTRATOR_LOG_FORMAT",
                        format!("expected json or pretty, got {other:?}"),
                    ));
                }
            };
        }
        Ok(())
    }

    /// `ORCHESTRATOR_LLM_*` variables configure the `default` profile: they override the
    /// file's values, or create the profile when `ORCHESTRATOR_LLM_BASE_URL` is set.
    fn apply_llm_env(&mut self, env: &HashMap<String, String>) -> Result<()> {
        const PREFIX: &str = "ORCHESTRATOR_LLM_";
        let get = |key: &str| env.get(key).map(|v| v.trim()).filter(|v| !v.is_empty());
        let base_url = get("ORCHESTRATOR_LLM_BASE_URL");
        if base_url.is_none() && !self.profiles.contains_key("default") {
            if let Some(stray) = env.keys().filter(|k| k.starts_with(PREFIX)).min() {
                return Err(ServerError::config(
                    stray.as_str(),
                    "set ORCHESTRATOR_LLM_BASE_URL too (or define [profiles.default] in the config file)",
                ));
            }
            return Ok(());
        }
        let profile = self
            .profiles
            .entry("default".to_owned())
            .or_insert_with(|| LlmProfile::new(base_url.unwrap_or_default(), String::new()));
        if let Some(v) = base_url {
            v.clone_into(&mut profile.base_url);
        }
        if let Some(v) = get("ORCHESTRATOR_LLM_MODEL") {
            v.clone_into(&mut profile.model);
        }
        if let Some(v) = get("ORCHESTRATOR_LLM_API_KEY") {
            profile.api_key = Some(SecretString::from(v.to_owned()));
        }
        if let Some(v) = get("ORCHESTRATOR_LLM_API_KEY_ENV") {
            profile.api_key_env = Some(v.to_owned());
        }
        if let Some(v) = get("ORCHESTRATOR_LLM_TEMPERATURE") {
            profile.temperature = parse("ORCHESTRATOR_LLM_TEMPERATURE", v)?;
        }
        if let Some(v) = get("ORCHESTRATOR_LLM_MAX_TOKENS") {
            profile.max_tokens = parse("ORCHESTRATOR_LLM_MAX_TOKENS", v)?;
        }
        if let Some(v) = get("ORCHESTRATOR_LLM_TIMEOUT_SECS") {
            profile.timeout =
                Duration::from_secs_f64(parse::<f64>("ORCHESTRATOR_LLM_TIMEOUT_SECS", v)?.max(0.0));
        }
        if let Some(v) = get("ORCHESTRATOR_LLM_MAX_RETRIES") {
            profile.max_retries = parse("ORCHESTRATOR_LLM_MAX_RETRIES", v)?;
        }
        if let Some(v) = get("ORCHESTRATOR_LLM_MAX_CONCURRENCY") {
            profile.max_concurrency = parse("ORCHESTRATOR_LLM_MAX_CONCURRENCY", v)?;
        }
        Ok(())
    }

    fn validate(&self) -> Result<()> {
        if self.max_running == 0 || self.max_running > 1024 {
            return Err(ServerError::config(
                "max_running",
                format!("must be within 1..=1024, got {}", self.max_running),
            ));
        }
        if self.queue_capacity > 100_000 {
            return Err(ServerError::config(
                "queue_capacity",
                format!("must be at most 100000, got {}", self.queue_capacity),
            ));
        }
        if let Some(dry_run) = &self.dry_run {
            dry_run.validate().map_err(|e| ServerError::config(format!("dry_run.{}", e.field), e.reason))?;
        }
        if self.node_id.is_empty() || self.node_id.len() > 128 {
            return Err(ServerError::config(
                "node_id",
                format!("must be 1..=128 bytes, got {}", self.node_id.len()),
            ));
        }
        if !(3..=3600).contains(&self.lease_secs) {
            return Err(ServerError::config(
                "lease_secs",
                format!("must be within 3..=3600, got {}", self.lease_secs),
            ));
        }
        if self.database_url.is_empty() {
            return Err(ServerError::config("database_url", "must not be empty"));
        }
        if self.default_timeout_secs == 0 || self.default_timeout_secs > 6 * 3600 {
            return Err(ServerError::config(
                "default_timeout_secs",
                format!("must be within 1..=21600, got {}", self.default_timeout_secs),
            ));
        }
        Ok(())
    }

    /// Whether an LLM backend is configured.
    pub fn llm_configured(&self) -> bool {
        !self.profiles.is_empty()
    }

    pub fn default_timeout(&self) -> Duration {
        Duration::from_secs(self.default_timeout_secs)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn defaults_listen_on_50055() {
        let config = Config::from_env(&env(&[])).unwrap();
        assert_eq!(config.listen.to_string(), "0.0.0.0:50055");
        assert_eq!(config.default_timeout(), Duration::from_secs(300));
    }

    #[test]
    fn env_overrides_and_errors_name_the_key() {
        let config = Config::from_env(&env(&[
            ("ORCHESTRATOR_LISTEN", "127.0.0.1:6000"),
            ("ORCHESTRATOR_LOG_FORMAT", "JSON"),
        ]))
        .unwrap();
        assert_eq!(config.listen.port(), 6000);
        assert_eq!(config.log_format, LogFormat::Json);
        let err = Config::from_env(&env(&[("ORCHESTRATOR_LISTEN", "nowhere")])).unwrap_err();
        assert!(err.to_string().starts_with("ORCHESTRATOR_LISTEN: invalid value \"nowhere\""), "{err}");
        let err = Config::from_env(&env(&[("ORCHESTRATOR_DEFAULT_TIMEOUT_SECS", "0")])).unwrap_err();
        assert!(err.to_string().starts_with("default_timeout_secs: must be within"), "{err}");
    }

    #[test]
    fn llm_env_creates_or_overrides_the_default_profile() {
        let config = Config::from_env(&env(&[])).unwrap();
        assert!(!config.llm_configured());
        let config = Config::from_env(&env(&[
            ("ORCHESTRATOR_LLM_BASE_URL", "http://127.0.0.1:11434/v1"),
            ("ORCHESTRATOR_LLM_MODEL", "qwen2.5-coder"),
            ("ORCHESTRATOR_LLM_API_KEY", "sk-very-secret-value-123"),
            ("ORCHESTRATOR_LLM_MAX_CONCURRENCY", "2"),
        ]))
        .unwrap();
        let profile = &config.profiles["default"];
        assert_eq!(
            (profile.base_url.as_str(), profile.model.as_str()),
            ("http://127.0.0.1:11434/v1", "qwen2.5-coder")
        );
        assert_eq!(profile.max_concurrency, 2);
        assert!(
            !format!("{config:?}").contains("sk-very-secret-value-123"),
            "the key never reaches Debug output"
        );
        let err = Config::from_env(&env(&[("ORCHESTRATOR_LLM_MODEL", "x")])).unwrap_err();
        assert!(
            err.to_string().starts_with("ORCHESTRATOR_LLM_MODEL: set ORCHESTRATOR_LLM_BASE_URL too"),
            "{err}"
        );
        let err = Config::from_env(&env(&[
            ("ORCHESTRATOR_LLM_BASE_URL", "http://x/v1"),
            ("ORCHESTRATOR_LLM_MAX_TOKENS", "many"),
        ]))
        .unwrap_err();
        assert!(err.to_string().starts_with("ORCHESTRATOR_LLM_MAX_TOKENS: invalid value"), "{err}");
    }

    #[test]
    fn profiles_come_from_the_file_and_env_overrides_the_default_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orchestrator.toml");
        std::fs::write(
            &path,
            "[profiles.default]\nbase_url = \"http://a/v1\"\nmodel = \"small\"\n\n[profiles.big]\nbase_url = \"http://b/v1\"\nmodel = \"large\"\ntemperature = 0.2\n",
        )
        .unwrap();
        let p = path.to_str().unwrap();
        let config =
            Config::from_env(&env(&[("ORCHESTRATOR_CONFIG", p), ("ORCHESTRATOR_LLM_MODEL", "medium")]))
                .unwrap();
        assert_eq!(config.profiles.len(), 2);
        assert_eq!(config.profiles["default"].model, "medium");
        assert_eq!(config.profiles["big"].temperature, 0.2);
    }

    #[test]
    fn dry_run_comes_from_the_file_and_is_validated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orchestrator.toml");
        std::fs::write(&path, "[dry_run]\ncommand = [\"python3\", \"-m\", \"py_compile\", \"{file}\"]\nlanguages = [\"python\"]\n").unwrap();
        let p = path.to_str().unwrap();
        let config = Config::from_env(&env(&[("ORCHESTRATOR_CONFIG", p)])).unwrap();
        assert_eq!(config.dry_run.unwrap().timeout_secs, 10.0);
        std::fs::write(&path, "[dry_run]\ncommand = [\"true\"]\nlanguages = [\"python\"]\n").unwrap();
        let err = Config::from_env(&env(&[("ORCHESTRATOR_CONFIG", p)])).unwrap_err();
        assert_eq!(err.to_string(), "dry_run.command: must pass the code with a {file} argument");
    }

    #[test]
    fn file_is_read_then_env_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orchestrator.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:7000\"\ndefault_timeout_secs = 60\n").unwrap();
        let p = path.to_str().unwrap();
        let config = Config::from_env(&env(&[("ORCHESTRATOR_CONFIG", p)])).unwrap();
        assert_eq!((config.listen.port(), config.default_timeout_secs), (7000, 60));
        let config =
            Config::from_env(&env(&[("ORCHESTRATOR_CONFIG", p), ("ORCHESTRATOR_LISTEN", "127.0.0.1:7001")]))
                .unwrap();
        assert_eq!(config.listen.port(), 7001);
        std::fs::write(&path, "lisen = 1\n").unwrap();
        let err = Config::from_env(&env(&[("ORCHESTRATOR_CONFIG", p)])).unwrap_err();
        assert!(err.to_string().contains("unknown field `lisen`"), "{err}");
    }
}
