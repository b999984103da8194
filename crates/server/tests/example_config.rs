//! `orchestrator.example.toml` at the repository root is what a newcomer copies: it must load
//! through the server's own config loader as written, name every key the server knows, and
//! stay loadable with every example line switched on.

#![allow(clippy::unwrap_used, reason = "test code: a failed step should fail the test loudly")]

use std::collections::HashMap;

use orchestrator_server::Config;

const EXAMPLE: &str = include_str!("../../../orchestrator.example.toml");

fn load(text: &str) -> Result<Config, orchestrator_server::ServerError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orchestrator.toml");
    std::fs::write(&path, text).unwrap();
    let env = HashMap::from([("ORCHESTRATOR_CONFIG".to_owned(), path.display().to_string())]);
    Config::from_env(&env)
}

/// The example with its commented-out settings (`# key = …`, `# [table]`) switched on.
fn everything_on(text: &str) -> String {
    text.lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest)
                if rest.starts_with('[')
                    || rest.split_once(" = ").is_some_and(|(key, _)| {
                        !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                    }) =>
            {
                rest.to_owned()
            }
            _ => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_example_config_loads_with_the_defaults_and_the_local_model() {
    let config = load(EXAMPLE).unwrap();
    let defaults = Config::default();
    assert_eq!(config.listen, defaults.listen);
    assert_eq!(config.database_url, defaults.database_url);
    assert_eq!(
        (config.max_running, config.queue_capacity, config.default_timeout_secs, config.shutdown_grace_secs),
        (
            defaults.max_running,
            defaults.queue_capacity,
            defaults.default_timeout_secs,
            defaults.shutdown_grace_secs
        )
    );
    assert_eq!(
        (config.lease_secs, config.resume_unfinished),
        (defaults.lease_secs, defaults.resume_unfinished)
    );
    assert_eq!(config.metrics_listen, None, "metrics are off unless asked for");
    let local = &config.profiles["default"];
    assert_eq!((local.base_url.as_str(), local.model.as_str()), ("http://127.0.0.1:8089/v1", "smollm2"));
    let documented = orchestrator_infra_llm::LlmProfile::new("http://x/v1", "m");
    assert_eq!((local.max_tokens, local.max_retries), (documented.max_tokens, documented.max_retries));
    assert_eq!((local.timeout, local.total_timeout), (documented.timeout, documented.total_timeout));
}

#[test]
fn the_example_config_names_every_key() {
    let named = |key: &str| {
        EXAMPLE.lines().map(|line| line.trim_start_matches("# ")).any(|line| {
            line.starts_with(&format!("{key} = "))
                || line.starts_with(&format!("[{key}"))
                || line.starts_with(&format!("[[{key}"))
        })
    };
    let missing: Vec<&str> = Config::KEYS.iter().copied().filter(|key| !named(key)).collect();
    assert!(missing.is_empty(), "orchestrator.example.toml lacks {missing:?}");
}

#[test]
fn every_commented_example_is_valid_too() {
    let all_on = everything_on(EXAMPLE);
    let config = load(&all_on).unwrap_or_else(|e| panic!("{e}\n---\n{all_on}"));
    assert_eq!(config.metrics_listen.map(|a| a.port()), Some(9464));
    assert!(config.dry_run.is_some() && config.nats_url.is_some());
    assert_eq!(config.profiles.len(), 2);
    assert_eq!(config.councils.len(), 1);
}
