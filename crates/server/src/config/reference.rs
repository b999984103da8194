//! The settings a person starting a server most often needs, as `orchestrator serve --help`
//! lists them: each key with its environment variable, its default (read from
//! [`Config::default`], so the help cannot drift from the code) and what it does.
//!
//! The full list is the README's Configuration table and `orchestrator.example.toml`; this one
//! is the first hour's: where it listens, where it stores, which model, who may call, TLS,
//! events, metrics, how much runs at once and how it stops.

use std::fmt::Write as _;

use super::Config;
use super::environment::{LLM_ALIAS, LLM_ALIAS_TARGET, PREFIX};

/// One documented setting.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// The dotted key as the TOML file writes it (`intake.enabled`, `profiles.default.model`).
    pub key: &'static str,
    /// Its value when nothing sets it, from the defaults in force.
    default: fn(&Config) -> String,
    /// What it does, in one line.
    pub about: &'static str,
}

impl Setting {
    /// The environment variable that sets it: `ORCHESTRATOR_<KEY>` with `__` between nested
    /// keys, and the `ORCHESTRATOR_LLM_` short form for the default profile's keys.
    pub fn env_var(&self) -> String {
        let long = format!("{PREFIX}{}", self.key.replace('.', "__").to_ascii_uppercase());
        match long.strip_prefix(LLM_ALIAS_TARGET) {
            Some(rest) => format!("{LLM_ALIAS}{rest}"),
            None => long,
        }
    }

    /// Its default under `defaults`.
    pub fn default_in(&self, defaults: &Config) -> String {
        (self.default)(defaults)
    }
}

fn none(_: &Config) -> String {
    "none".to_owned()
}

/// The settings `serve --help` lists, in the order a first start needs them.
pub const MAIN_SETTINGS: &[Setting] = &[
    Setting { key: "listen", default: |c| c.listen.to_string(), about: "gRPC listen address" },
    Setting {
        key: "database_url",
        default: |c| c.database_url.clone(),
        about: "SQLite path or sqlite: URL, or a postgres:// URL",
    },
    Setting {
        key: "profiles.default.base_url",
        default: none,
        about: "OpenAI-compatible model server, e.g. http://127.0.0.1:8080/v1 (none: every deliberation fails)",
    },
    Setting { key: "profiles.default.model", default: none, about: "the model it serves" },
    Setting {
        key: "profiles.default.api_key",
        default: none,
        about: "bearer key for the model server, when it needs one",
    },
    Setting {
        key: "auth_tokens_file",
        default: none,
        about: "file of accepted tokens, `name token [admin]` a line (none: loopback only, no auth)",
    },
    Setting {
        key: "tls_cert",
        default: none,
        about: "PEM certificate chain: serve gRPC over TLS (with tls_key)",
    },
    Setting { key: "tls_key", default: none, about: "PEM private key of tls_cert" },
    Setting {
        key: "tls_client_ca",
        default: none,
        about: "PEM CA bundle: require client certificates (mTLS)",
    },
    Setting { key: "nats_url", default: none, about: "NATS server to publish deliberation events to" },
    Setting {
        key: "intake.enabled",
        default: |c| c.intake.enabled.to_string(),
        about: "take deliberations from the bus (needs nats_url)",
    },
    Setting {
        key: "metrics_listen",
        default: none,
        about: "serve Prometheus metrics at http://<address>/metrics",
    },
    Setting {
        key: "max_running",
        default: |c| c.max_running.to_string(),
        about: "deliberations running at once; more wait in a queue",
    },
    Setting {
        key: "early_stop",
        default: |c| c.early_stop.to_string(),
        about: "off, tests or tests_and_reviews: when review rounds end early",
    },
    Setting {
        key: "strategy",
        default: |c| c.strategy.to_string(),
        about: "council, or cascade (one agent first, the rest only if it fails the tests)",
    },
    Setting {
        key: "shutdown_grace_secs",
        default: |c| c.shutdown_grace_secs.to_string(),
        about: "how long stopping waits for running work (a second Ctrl-C stops at once)",
    },
    Setting {
        key: "resume_unfinished",
        default: |c| c.resume_unfinished.to_string(),
        about: "resume work a stopped server left (false: mark it INTERRUPTED)",
    },
    Setting {
        key: "log_format",
        default: |c| format!("{:?}", c.log_format).to_ascii_lowercase(),
        about: "pretty or json (RUST_LOG filters, default info)",
    },
];

/// The text `orchestrator serve --help` ends with: the file variable, then [`MAIN_SETTINGS`]
/// as `VARIABLE (key)  default: D` over a line saying what it does.
pub fn serve_help() -> String {
    let defaults = Config::default();
    let mut text = String::from(
        "Configured by ORCHESTRATOR_* environment variables over an optional TOML file, never by \
         the client subcommands' flags (where to listen is ORCHESTRATOR_LISTEN).\n\n\
         ORCHESTRATOR_CONFIG\n    the TOML file read before the environment (see orchestrator.example.toml)\n",
    );
    for setting in MAIN_SETTINGS {
        let _ = write!(
            text,
            "{} ({})  default: {}\n    {}\n",
            setting.env_var(),
            setting.key,
            setting.default_in(&defaults),
            setting.about
        );
    }
    text.push_str(
        "\nEvery key, with nested ones as ORCHESTRATOR_<KEY>__<SUBKEY>: the README's Configuration \
         table. Check a file with `orchestrator config check FILE`.",
    );
    text
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn every_listed_setting_is_a_real_key_its_variable_sets() {
        for setting in MAIN_SETTINGS {
            let top = setting.key.split('.').next().unwrap_or_default();
            assert!(Config::KEYS.contains(&top), "{} is no key", setting.key);
            let var = setting.env_var();
            assert!(
                Config::unrecognised_env(&HashMap::from([(var.clone(), "x".to_owned())])).is_empty(),
                "{var} sets nothing"
            );
        }
    }

    #[test]
    fn the_help_names_the_variables_the_defaults_and_no_client_flag_as_usable() {
        let help = serve_help();
        for line in [
            "ORCHESTRATOR_LISTEN (listen)  default: 127.0.0.1:50055",
            "ORCHESTRATOR_DATABASE_URL (database_url)  default: sqlite:data/orchestrator.db",
            "ORCHESTRATOR_LLM_BASE_URL (profiles.default.base_url)  default: none",
            "ORCHESTRATOR_LLM_MODEL (profiles.default.model)  default: none",
            "ORCHESTRATOR_AUTH_TOKENS_FILE (auth_tokens_file)  default: none",
            "ORCHESTRATOR_TLS_CERT (tls_cert)",
            "ORCHESTRATOR_NATS_URL (nats_url)",
            "ORCHESTRATOR_INTAKE__ENABLED (intake.enabled)  default: false",
            "ORCHESTRATOR_METRICS_LISTEN (metrics_listen)",
            "ORCHESTRATOR_MAX_RUNNING (max_running)  default: 8",
            "ORCHESTRATOR_EARLY_STOP (early_stop)  default: tests_and_reviews",
            "ORCHESTRATOR_STRATEGY (strategy)  default: council",
            "ORCHESTRATOR_SHUTDOWN_GRACE_SECS (shutdown_grace_secs)  default: 30",
        ] {
            assert!(help.contains(line), "{line:?} missing from:\n{help}");
        }
    }
}
