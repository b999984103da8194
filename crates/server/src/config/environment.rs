//! Which environment variables are settings: `ORCHESTRATOR_<KEY>` with `__` between nested
//! keys, the `ORCHESTRATOR_LLM_` alias of the default profile, and the `ORCHESTRATOR_*`
//! variables that are not settings (the clients', the tests', Kubernetes' service links).

use std::collections::HashMap;

use super::Config;

/// Prefix of every setting in the environment.
pub(super) const PREFIX: &str = "ORCHESTRATOR_";
/// Names the TOML file read before the environment.
pub(super) const CONFIG_FILE_VAR: &str = "ORCHESTRATOR_CONFIG";
/// `ORCHESTRATOR_LLM_<KEY>` is an alias of this prefix followed by `<KEY>`.
pub(super) const LLM_ALIAS: &str = "ORCHESTRATOR_LLM_";
pub(super) const LLM_ALIAS_TARGET: &str = "ORCHESTRATOR_PROFILES__DEFAULT__";
/// `ORCHESTRATOR_*` variables that are not server settings: the config file's name, the
/// client subcommands' address, token and CA, the test suites' services, and the variables
/// Kubernetes injects for a Service named `orchestrator` (`ORCHESTRATOR_SERVICE_HOST`,
/// `ORCHESTRATOR_PORT_50055_TCP`, … when service links are on): an unknown key stops the
/// server, and these are nobody's typo.
pub(super) const NOT_SETTINGS: &[&str] = &[
    "ORCHESTRATOR_CONFIG",
    "ORCHESTRATOR_ADDR",
    "ORCHESTRATOR_TOKEN",
    "ORCHESTRATOR_CA",
    "ORCHESTRATOR_CLIENT_",
    "ORCHESTRATOR_TEST_",
    "ORCHESTRATOR_SERVICE_",
    "ORCHESTRATOR_PORT",
];

/// The setting an environment variable names, as `ORCHESTRATOR_<KEY>` with `__` between
/// nested keys (after resolving the `ORCHESTRATOR_LLM_` alias), when its top-level key is a
/// real one.
pub(super) fn setting_key(name: &str) -> Option<String> {
    let name = match name.strip_prefix(LLM_ALIAS) {
        Some(rest) => format!("{LLM_ALIAS_TARGET}{rest}"),
        None => name.to_owned(),
    };
    let rest = name.strip_prefix(PREFIX)?;
    let top = rest.split("__").next()?.to_ascii_lowercase();
    Config::KEYS.contains(&top.as_str()).then_some(name)
}

/// The `ORCHESTRATOR_*` settings of `env`, aliases resolved, everything else left out.
pub(super) fn settings_from_env(env: &HashMap<String, String>) -> config::Map<String, String> {
    env.iter()
        .filter(|(name, _)| !NOT_SETTINGS.iter().any(|n| name.starts_with(n)))
        .filter_map(|(name, value)| Some((setting_key(name)?, value.trim().to_owned())))
        .collect()
}

/// The variable a user wrote for a resolved setting name (the alias when it was one).
pub(super) fn alias_name(resolved: &str) -> String {
    match resolved.strip_prefix(LLM_ALIAS_TARGET) {
        Some(rest) => format!("{LLM_ALIAS}{rest}"),
        None => resolved.to_owned(),
    }
}
