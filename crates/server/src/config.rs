//! Layered configuration: defaults → TOML file (`ORCHESTRATOR_CONFIG`) → `ORCHESTRATOR_*`
//! environment variables (`__` between nested keys) → validation, layered by the `config`
//! crate. Errors name the key at fault, as the user wrote it.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use orchestrator_api_bus::IntakeSettings;
use orchestrator_domain::{EarlyStop, Strategy};
use orchestrator_infra_dryrun::DryRunConfig;
use orchestrator_infra_llm::LlmProfile;
use serde::Deserialize;

use self::environment::{
    CONFIG_FILE_VAR, LLM_ALIAS_TARGET, NOT_SETTINGS, PREFIX, alias_name, setting_key, settings_from_env,
};
use self::errors::{from_config_error, unknown_variable};
use self::file::ConfigFile;
use crate::error::{Result, ServerError};

mod councils;
mod environment;
mod errors;
mod file;
mod reference;
mod typos;
mod validate;

pub use councils::{AgentDeclaration, CouncilDeclaration};
pub use reference::{MAIN_SETTINGS, Setting, serve_help};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable, one line per event.
    #[default]
    #[serde(alias = "text", alias = "Pretty", alias = "PRETTY")]
    Pretty,
    /// One JSON object per line, for log collectors.
    #[serde(alias = "JSON", alias = "Json")]
    Json,
}

/// How callers authenticate (`auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// `authorization: Bearer <token>` with a token of `auth_tokens_file`.
    Token,
    /// A client certificate verified against `tls_client_ca`; its common name is the principal.
    Mtls,
    /// No authentication: only when said explicitly (logged as a warning).
    None,
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
    /// The share (0 < share ≤ 1) of the places (`max_running + queue_capacity`) one principal
    /// may hold at once; beyond it, that principal gets RESOURCE_EXHAUSTED naming the limit
    /// while others are still served. Not applied without authentication (one principal).
    pub queue_share: f64,
    /// Resume deliberations a stopped process left unfinished from their last saved phase
    /// (true), or mark them INTERRUPTED (false).
    pub resume_unfinished: bool,
    /// The name this server's leases carry among servers sharing a database (default: the
    /// host name). Each process adds its pid and a random suffix (logged at start-up), so no
    /// two processes — a restart included — ever pass for one another.
    pub node_id: String,
    /// How long a server's claim on its unfinished deliberations holds without renewal; other
    /// servers take them over after it runs out.
    pub lease_secs: u64,
    /// How long a statement waits for a database connection before failing UNAVAILABLE, in
    /// milliseconds (also bounds the health probe's ping).
    pub store_acquire_timeout_ms: u64,
    /// How often the store is probed for health (and unstored writes retried), in milliseconds.
    pub store_probe_interval_ms: u64,
    /// How long a write that ends or saves a deliberation is retried while the store is down,
    /// in seconds, before it is kept for repair and a waiting caller gets UNAVAILABLE.
    pub store_write_retry_secs: u64,
    /// Profile of the ARCHITECT agent that selects in Orchestrate (default: the first agent's).
    pub selection_profile: Option<String>,
    /// When review rounds end early, for tasks that do not say (`constraints.early_stop`):
    /// `off`, `tests` (once a proposal passes every acceptance test), `tests_and_reviews`
    /// (after a review round that agreed on a passing proposal). `true`/`false` still read as
    /// `tests_and_reviews`/`off`. The calls saved are reported.
    pub early_stop: EarlyStop,
    /// `council` or `cascade` (one agent first, the rest only when its answer fails the
    /// acceptance tests), for tasks that do not say (`constraints.strategy`).
    pub strategy: Strategy,
    /// NATS server to publish deliberation events to (`nats://host:4222`); none: no events.
    pub nats_url: Option<String>,
    /// Subject prefix of the events: `<prefix>.deliberation.<event>`.
    pub events_prefix: String,
    /// JetStream stream the events are published to; created (on `<prefix>.>`, file storage,
    /// 7 days, 50,000 messages) when absent, never altered when present.
    pub events_stream: String,
    /// Most events kept unsent while NATS is away; beyond, the oldest are dropped and counted.
    pub events_max_outbox: u64,
    /// The bus intake (`[intake]`): plan events and bus requests become deliberations.
    pub intake: IntakeSettings,
    /// A command that checks the code blocks of every final proposal (`[dry_run]`); none: the
    /// dry-run check reports "not run".
    pub dry_run: Option<DryRunConfig>,
    /// Model profiles by name (`[profiles.<name>]`); `default` serves requests that name none.
    /// Empty: no LLM backend, and deliberations answer FAILED_PRECONDITION.
    pub profiles: BTreeMap<String, LlmProfile>,
    /// How callers authenticate. Unset: `token` when `auth_tokens_file` is set; otherwise none,
    /// which the server accepts only on a loopback address.
    pub auth: Option<AuthMode>,
    /// File of accepted tokens, one `name token [admin]` a line.
    pub auth_tokens_file: Option<PathBuf>,
    /// With `auth = "mtls"`: certificate common names with the admin scope.
    pub auth_admins: Vec<String>,
    /// Serve gRPC reflection without authentication (it describes the API, no data).
    pub reflection_open: bool,
    /// PEM certificate chain and private key: serve gRPC over TLS.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle: require client certificates signed by it (mutual TLS).
    pub tls_client_ca: Option<PathBuf>,
    /// How often the TLS files are checked for changes and reloaded (also on SIGHUP); 0: only
    /// on SIGHUP.
    pub tls_reload_interval_secs: u64,
    /// A connection with no RPC in flight for this long is sent GOAWAY and closed: clients
    /// reconnect when they need to, and a forgotten channel does not hold a slot forever.
    pub idle_connection_secs: u64,
    /// Client connections served at once; at the limit new ones wait in the kernel's backlog
    /// until one closes. 0 (the default): sized to the open-files limit, leaving room for the
    /// database, the model servers and the sandbox (logged at start-up).
    pub max_connections: usize,
    /// How long a connection may be silent before the server sends an HTTP/2 PING.
    pub http2_keepalive_interval_secs: u64,
    /// How long the server waits for the answer to its PING before dropping the connection
    /// as dead.
    pub http2_keepalive_timeout_secs: u64,
    /// Standing councils by role (`[councils.<role>]`), created at startup when their role has
    /// none; a council already stored is left as it is.
    pub councils: BTreeMap<String, CouncilDeclaration>,
    /// Serve Prometheus metrics at `http://<metrics_listen>/metrics`; none: no endpoint.
    pub metrics_listen: Option<SocketAddr>,
    /// Export spans to this OpenTelemetry collector over OTLP/HTTP (`http://host:4318`;
    /// `/v1/traces` is appended). Needs a build with the `otlp` feature; none: no export.
    pub otlp_endpoint: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50055)),
            default_timeout_secs: 300,
            shutdown_grace_secs: 30,
            log_format: LogFormat::Pretty,
            database_url: "sqlite:data/orchestrator.db".to_owned(),
            max_running: 8,
            queue_capacity: 256,
            queue_share: 0.5,
            resume_unfinished: true,
            node_id: default_node_id(),
            lease_secs: 30,
            store_acquire_timeout_ms: 3000,
            store_probe_interval_ms: 2000,
            store_write_retry_secs: 30,
            selection_profile: None,
            early_stop: EarlyStop::TestsAndReviews,
            strategy: Strategy::Council,
            dry_run: None,
            nats_url: None,
            events_prefix: orchestrator_infra_events::DEFAULT_PREFIX.to_owned(),
            events_stream: orchestrator_infra_events::DEFAULT_STREAM.to_owned(),
            events_max_outbox: 100_000,
            intake: IntakeSettings::default(),
            profiles: BTreeMap::new(),
            auth: None,
            auth_tokens_file: None,
            auth_admins: Vec::new(),
            reflection_open: true,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            tls_reload_interval_secs: 60,
            idle_connection_secs: 300,
            max_connections: 0,
            http2_keepalive_interval_secs: 60,
            http2_keepalive_timeout_secs: 20,
            councils: BTreeMap::new(),
            metrics_listen: None,
            otlp_endpoint: None,
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

impl Config {
    /// Top-level keys, as in the config file; `ORCHESTRATOR_<KEY>` (upper case, `__` between
    /// nested keys) sets each from the environment. A test checks this list against the
    /// struct, so it cannot drift.
    pub const KEYS: &'static [&'static str] = &[
        "listen",
        "default_timeout_secs",
        "shutdown_grace_secs",
        "log_format",
        "database_url",
        "max_running",
        "queue_capacity",
        "queue_share",
        "resume_unfinished",
        "node_id",
        "lease_secs",
        "store_acquire_timeout_ms",
        "store_probe_interval_ms",
        "store_write_retry_secs",
        "selection_profile",
        "early_stop",
        "strategy",
        "nats_url",
        "events_prefix",
        "events_stream",
        "events_max_outbox",
        "intake",
        "dry_run",
        "profiles",
        "auth",
        "auth_tokens_file",
        "auth_admins",
        "reflection_open",
        "tls_cert",
        "tls_key",
        "tls_client_ca",
        "tls_reload_interval_secs",
        "idle_connection_secs",
        "max_connections",
        "http2_keepalive_interval_secs",
        "http2_keepalive_timeout_secs",
        "councils",
        "metrics_listen",
        "otlp_endpoint",
    ];

    /// Loads from the process environment (and the file it names).
    ///
    /// # Errors
    /// A [`ServerError::Config`] naming the key, or [`ServerError::ConfigFile`].
    pub fn load() -> Result<Self> {
        Self::from_env(&std::env::vars().collect())
    }

    /// Loads defaults, then the TOML file named by `ORCHESTRATOR_CONFIG`, then the
    /// `ORCHESTRATOR_*` variables of `env` (`__` separates nested keys, e.g.
    /// `ORCHESTRATOR_PROFILES__SMALL__MODEL`; `ORCHESTRATOR_LLM_<KEY>` is short for
    /// `ORCHESTRATOR_PROFILES__DEFAULT__<KEY>`), then validates. Taking the environment as a
    /// map keeps it testable without touching the process environment.
    ///
    /// # Errors
    /// See [`Config::load`].
    pub fn from_env(env: &HashMap<String, String>) -> Result<Self> {
        if let Some(name) = Self::unrecognised_env(env).first() {
            return Err(unknown_variable(name));
        }
        let mut builder = config::Config::builder();
        let file = match env.get(CONFIG_FILE_VAR).map(|p| p.trim()).filter(|p| !p.is_empty()) {
            Some(path) => Some(ConfigFile::read(path)?),
            None => None,
        };
        if let Some(file) = &file {
            builder = builder.add_source(config::File::from_str(file.text(), config::FileFormat::Toml));
        }
        let vars = settings_from_env(env);
        let stray_llm = vars.keys().filter(|k| k.starts_with(LLM_ALIAS_TARGET)).min().cloned();
        let layered = builder
            .add_source(
                config::Environment::with_prefix("ORCHESTRATOR")
                    .prefix_separator("_")
                    .separator("__")
                    .ignore_empty(true)
                    .try_parsing(true)
                    .list_separator(",")
                    .with_list_parse_key("dry_run.command")
                    .with_list_parse_key("dry_run.languages")
                    .with_list_parse_key("auth_admins")
                    .source(Some(vars)),
            )
            .build()
            .map_err(|e| from_config_error(e, env, file.as_ref()))?;
        if let Some(stray) = stray_llm
            && layered.get_string("profiles.default.base_url").is_err()
        {
            return Err(ServerError::config(
                alias_name(&stray),
                "set ORCHESTRATOR_LLM_BASE_URL too (or define [profiles.default] in the config file)",
            ));
        }
        let config: Self = layered.try_deserialize().map_err(|e| from_config_error(e, env, file.as_ref()))?;
        config.validate()?;
        Ok(config)
    }

    /// `ORCHESTRATOR_*` variables of `env` whose top-level key is no key (a typo, most likely):
    /// [`Config::from_env`] refuses the first, as it refuses a file's unknown key. Variables
    /// the client subcommands and tests read are not listed.
    pub fn unrecognised_env(env: &HashMap<String, String>) -> Vec<String> {
        let mut names: Vec<String> = env
            .keys()
            .filter(|name| name.starts_with(PREFIX) && !NOT_SETTINGS.iter().any(|n| name.starts_with(n)))
            .filter(|name| setting_key(name).is_none())
            .cloned()
            .collect();
        names.sort();
        names
    }

    /// The `[councils.<role>]` declarations, as the council registry takes them.
    ///
    /// # Errors
    /// A [`ServerError::Config`] naming the key at fault (e.g.
    /// `councils.dev.agents[1].profile` for a profile that is not configured).
    pub fn declared_councils(&self) -> Result<Vec<orchestrator_application::DeclaredCouncil>> {
        let profiles = self.profiles.keys().map(String::as_str).collect();
        councils::declared(&self.councils, &profiles)
    }

    /// Whether an LLM backend is configured.
    pub fn llm_configured(&self) -> bool {
        !self.profiles.is_empty()
    }

    pub fn default_timeout(&self) -> Duration {
        Duration::from_secs(self.default_timeout_secs)
    }

    pub fn tls_reload_interval(&self) -> Duration {
        Duration::from_secs(self.tls_reload_interval_secs)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }

    pub fn idle_connection(&self) -> Duration {
        Duration::from_secs(self.idle_connection_secs)
    }

    pub fn http2_keepalive_interval(&self) -> Duration {
        Duration::from_secs(self.http2_keepalive_interval_secs)
    }

    pub fn http2_keepalive_timeout(&self) -> Duration {
        Duration::from_secs(self.http2_keepalive_timeout_secs)
    }

    /// The store's connection timeouts.
    pub fn store_options(&self) -> orchestrator_infra_store::StoreOptions {
        orchestrator_infra_store::StoreOptions {
            acquire_timeout: Duration::from_millis(self.store_acquire_timeout_ms),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn defaults_listen_on_loopback_50055() {
        let config = Config::from_env(&env(&[])).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:50055");
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
    fn selection_profile_must_name_a_configured_profile_and_the_error_names_the_key() {
        let llm = [("ORCHESTRATOR_LLM_BASE_URL", "http://x/v1"), ("ORCHESTRATOR_LLM_MODEL", "m")];
        let err = Config::from_env(&env(&[llm[0], llm[1], ("ORCHESTRATOR_SELECTION_PROFILE", "judge")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("selection_profile: names profile \"judge\", which is not configured"),
            "{err}"
        );
        let config =
            Config::from_env(&env(&[llm[0], llm[1], ("ORCHESTRATOR_SELECTION_PROFILE", "default")])).unwrap();
        assert_eq!(config.selection_profile.as_deref(), Some("default"));
    }

    #[test]
    fn store_timeouts_come_from_config_and_are_bounded() {
        let config = Config::from_env(&env(&[("ORCHESTRATOR_STORE_ACQUIRE_TIMEOUT_MS", "750")])).unwrap();
        assert_eq!(config.store_options().acquire_timeout, Duration::from_millis(750));
        assert_eq!(config.store_probe_interval_ms, 2000);
        let err = Config::from_env(&env(&[("ORCHESTRATOR_STORE_PROBE_INTERVAL_MS", "0")])).unwrap_err();
        assert!(err.to_string().starts_with("store_probe_interval_ms: must be within"), "{err}");
    }

    #[test]
    fn connection_limits_default_to_an_internet_facing_server_and_are_bounded() {
        let config = Config::from_env(&env(&[])).unwrap();
        assert_eq!(config.idle_connection(), Duration::from_secs(300));
        assert_eq!(config.max_connections, 0, "0: sized to the open-files limit");
        assert_eq!(
            (config.http2_keepalive_interval(), config.http2_keepalive_timeout()),
            (Duration::from_secs(60), Duration::from_secs(20))
        );
        let config = Config::from_env(&env(&[("ORCHESTRATOR_MAX_CONNECTIONS", "20")])).unwrap();
        assert_eq!(config.max_connections, 20);
        let err = Config::from_env(&env(&[("ORCHESTRATOR_IDLE_CONNECTION_SECS", "0")])).unwrap_err();
        assert_eq!(err.to_string(), "idle_connection_secs: must be within 1..=86400, got 0");
        let err =
            Config::from_env(&env(&[("ORCHESTRATOR_HTTP2_KEEPALIVE_TIMEOUT_SECS", "601")])).unwrap_err();
        assert!(err.to_string().starts_with("http2_keepalive_timeout_secs: must be within"), "{err}");
        let err = Config::from_env(&env(&[("ORCHESTRATOR_MAX_CONNECTIONS", "2000000")])).unwrap_err();
        assert!(err.to_string().starts_with("max_connections: must be at most"), "{err}");
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
        assert_eq!(err.to_string(), format!("{p}:1: unknown key \"lisen\"; did you mean \"listen\"?"));
    }

    #[test]
    fn a_misspelt_key_is_refused_alike_from_the_file_or_the_environment_with_the_near_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orchestrator.toml");
        let p = path.to_str().unwrap();
        let refused = |pairs: &[(&str, &str)]| Config::from_env(&env(pairs)).unwrap_err().to_string();

        // Top level.
        assert_eq!(
            refused(&[("ORCHESTRATOR_LISEN", "127.0.0.1:1")]),
            "ORCHESTRATOR_LISEN: unknown key \"lisen\"; did you mean ORCHESTRATOR_LISTEN?"
        );
        std::fs::write(&path, "listen = \"127.0.0.1:1\"\nmax_runing = 2\n").unwrap();
        assert_eq!(
            refused(&[("ORCHESTRATOR_CONFIG", p)]),
            format!("{p}:2: unknown key \"max_runing\"; did you mean \"max_running\"?")
        );

        // A profile's key, from the file, the long variable and the LLM short form.
        std::fs::write(&path, "[profiles.default]\nbase_url = \"http://m/v1\"\nmodl = \"m\"\n").unwrap();
        assert_eq!(
            refused(&[("ORCHESTRATOR_CONFIG", p)]),
            format!("{p}:3: unknown key \"profiles.default.modl\"; did you mean \"profiles.default.model\"?")
        );
        let llm = ("ORCHESTRATOR_LLM_BASE_URL", "http://m/v1");
        assert_eq!(
            refused(&[llm, ("ORCHESTRATOR_PROFILES__DEFAULT__MODL", "m")]),
            "ORCHESTRATOR_PROFILES__DEFAULT__MODL: unknown key \"profiles.default.modl\"; did you mean \
             ORCHESTRATOR_PROFILES__DEFAULT__MODEL?"
        );
        assert_eq!(
            refused(&[llm, ("ORCHESTRATOR_LLM_MODL", "m")]),
            "ORCHESTRATOR_LLM_MODL: unknown key \"profiles.default.modl\"; did you mean ORCHESTRATOR_LLM_MODEL?"
        );
        // The file's profile is fine; the variable is blamed, not the file.
        std::fs::write(&path, "[profiles.default]\nbase_url = \"http://m/v1\"\nmodel = \"m\"\n").unwrap();
        assert!(
            refused(&[("ORCHESTRATOR_CONFIG", p), ("ORCHESTRATOR_PROFILES__DEFAULT__MAX_TOKEN", "9")])
                .starts_with("ORCHESTRATOR_PROFILES__DEFAULT__MAX_TOKEN: unknown key"),
        );

        // Nested sections, and a nested key written with one underscore.
        assert_eq!(
            refused(&[("ORCHESTRATOR_INTAKE__ENABLD", "true")]),
            "ORCHESTRATOR_INTAKE__ENABLD: unknown key \"intake.enabld\"; did you mean ORCHESTRATOR_INTAKE__ENABLED?"
        );
        assert_eq!(
            refused(&[("ORCHESTRATOR_INTAKE_ENABLED", "true")]),
            "ORCHESTRATOR_INTAKE_ENABLED: unknown key \"intake_enabled\"; did you mean \
             ORCHESTRATOR_INTAKE__ENABLED? (a nested key takes a double underscore)"
        );
        std::fs::write(
            &path,
            "[dry_run]\ncommand = [\"true\", \"{file}\"]\nlanguages = [\"py\"]\ntimeout = 3\n",
        )
        .unwrap();
        assert_eq!(
            refused(&[("ORCHESTRATOR_CONFIG", p)]),
            format!("{p}:4: unknown key \"dry_run.timeout\"; did you mean \"dry_run.timeout_secs\"?")
        );

        // Nothing near: the keys of that level, still named where it was written.
        let far = refused(&[("ORCHESTRATOR_ZZZ_QQQ", "1")]);
        assert!(
            far.starts_with("ORCHESTRATOR_ZZZ_QQQ: unknown key \"zzz_qqq\" (the keys here: listen, "),
            "{far}"
        );
    }

    #[test]
    fn errors_about_the_file_name_file_line_and_key_but_never_its_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orchestrator.toml");
        let p = path.to_str().unwrap();
        std::fs::write(&path, "listen = \"127.0.0.1:7000\"\n\nmax_running = \"sk-SECRET-42\"\n").unwrap();
        let err = Config::from_env(&env(&[("ORCHESTRATOR_CONFIG", p)])).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{p}:3: max_running: invalid value string: expected")), "{err}");
        std::fs::write(
            &path,
            "[profiles.default]\nbase_url = \"http://m/v1\"\nmodel = \"m\"\nmax_tokens = \"many\"\n",
        )
        .unwrap();
        let err = Config::from_env(&env(&[("ORCHESTRATOR_CONFIG", p)])).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{p}:4: profiles.default.max_tokens: invalid value string")),
            "{err}"
        );
        assert!(!err.contains("many"), "{err}");
        std::fs::write(&path, "log_format = \"SECRET-format\"\n").unwrap();
        let err = Config::from_env(&env(&[("ORCHESTRATOR_CONFIG", p)])).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{p}:1: log_format: ")), "{err}");
        assert!(!err.contains("SECRET"), "{err}");
        // The environment's values are not the file's: a wrong one is repeated (it is no secret).
        let err = Config::from_env(&env(&[("ORCHESTRATOR_MAX_RUNNING", "lots")])).unwrap_err().to_string();
        assert!(err.starts_with("ORCHESTRATOR_MAX_RUNNING: invalid value string \"lots\""), "{err}");
    }

    #[test]
    fn nested_keys_come_from_the_environment_with_double_underscores() {
        let config = Config::from_env(&env(&[
            ("ORCHESTRATOR_PROFILES__SMALL__BASE_URL", "http://small/v1"),
            ("ORCHESTRATOR_PROFILES__SMALL__MODEL", "llama3.2:3b"),
            ("ORCHESTRATOR_PROFILES__SMALL__MAX_TOKENS", "256"),
            ("ORCHESTRATOR_DRY_RUN__COMMAND", "python3,-m,py_compile,{file}"),
            ("ORCHESTRATOR_DRY_RUN__LANGUAGES", "python,py"),
            ("ORCHESTRATOR_DRY_RUN__TIMEOUT_SECS", "3"),
        ]))
        .unwrap();
        let small = &config.profiles["small"];
        assert_eq!((small.model.as_str(), small.max_tokens), ("llama3.2:3b", 256));
        let dry_run = config.dry_run.unwrap();
        assert_eq!(dry_run.timeout_secs, 3.0);
        assert_eq!(dry_run.command.last().map(String::as_str), Some("{file}"));
    }

    #[test]
    fn numbers_in_text_settings_stay_text() {
        let config =
            Config::from_env(&env(&[("ORCHESTRATOR_NODE_ID", "42"), ("ORCHESTRATOR_EVENTS_PREFIX", "7")]))
                .unwrap();
        assert_eq!((config.node_id.as_str(), config.events_prefix.as_str()), ("42", "7"));
    }

    #[test]
    fn unknown_orchestrator_variables_are_found_but_client_and_test_ones_are_not() {
        let vars = env(&[
            ("ORCHESTRATOR_LISEN", "x"),
            ("ORCHESTRATOR_LISTEN", "127.0.0.1:1"),
            ("ORCHESTRATOR_LLM_MODEL", "m"),
            ("ORCHESTRATOR_ADDR", "http://x"),
            ("ORCHESTRATOR_TEST_PG_URL", "postgres://x"),
            ("ORCHESTRATOR_CONFIG", "/x.toml"),
            ("ORCHESTRATOR_SERVICE_HOST", "10.0.0.7"),
            ("ORCHESTRATOR_PORT", "tcp://10.0.0.7:50055"),
            ("ORCHESTRATOR_PORT_50055_TCP_ADDR", "10.0.0.7"),
        ]);
        assert_eq!(Config::unrecognised_env(&vars), ["ORCHESTRATOR_LISEN"]);
    }

    /// The field names serde expects, read from its own "unknown field" message, so the
    /// list cannot drift from the struct.
    pub(crate) fn struct_fields() -> Vec<String> {
        let err = toml::from_str::<Config>("zz_probe = 1").unwrap_err().to_string();
        let expected = err.split("expected one of").nth(1).unwrap();
        expected.split(',').map(|f| f.trim().trim_matches(|c| c == '`' || c == '\n').to_owned()).collect()
    }

    #[test]
    fn the_list_of_keys_is_the_struct() {
        let mut fields = struct_fields();
        fields.sort();
        let mut keys: Vec<String> = Config::KEYS.iter().map(|k| (*k).to_owned()).collect();
        keys.sort();
        assert_eq!(fields, keys);
    }

    #[test]
    fn the_readme_documents_every_key_and_no_other() {
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
        let section = readme.split("## Configuration").nth(1).unwrap().split("\n## ").next().unwrap();
        let documented: std::collections::BTreeSet<String> = section
            .lines()
            .filter(|line| line.starts_with('|'))
            .filter_map(|line| line.split('|').nth(2))
            .filter_map(|cell| cell.trim().strip_prefix('`')?.split(['`', '.']).next().map(str::to_owned))
            .collect();
        let fields: std::collections::BTreeSet<String> = struct_fields().into_iter().collect();
        let missing: Vec<_> = fields.difference(&documented).collect();
        let unknown: Vec<_> = documented.difference(&fields).collect();
        assert!(
            missing.is_empty() && unknown.is_empty(),
            "README lacks {missing:?}; documents unknown {unknown:?}"
        );
    }
}
