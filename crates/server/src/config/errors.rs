//! The layering's errors as a user can act on them: each names the key as it was written — the
//! environment variable, or the file, line and dotted key — and never repeats the file's text.

use std::collections::HashMap;

use super::Config;
use super::environment::{LLM_ALIAS, LLM_ALIAS_TARGET, PREFIX, alias_name};
use super::file::ConfigFile;
use super::typos;
use crate::error::ServerError;

/// Turns a layering error into one naming the key as the user wrote it: the environment
/// variable when it came from there, the file, line and dotted key otherwise. A value from
/// the environment is repeated unless its name suggests a secret; a value from the file never
/// is (only its kind), since the file's text must never be echoed.
pub(super) fn from_config_error(
    error: config::ConfigError,
    env: &HashMap<String, String>,
    file: Option<&ConfigFile>,
) -> ServerError {
    if let Some(unknown) = unknown_field_error(&error, env, file) {
        return unknown;
    }
    let from_env = |key: &str| {
        let var = format!("{PREFIX}{}", key.replace('.', "__").to_ascii_uppercase());
        let alias = alias_name(&var);
        [alias, var].into_iter().find(|name| env.contains_key(name))
    };
    let in_file = |key: &str| file.and_then(|file| file.locate(key));
    let named = |key: &str| match (from_env(key), in_file(key)) {
        (Some(var), _) => var,
        (None, Some((place, _))) => format!("{place}: {key}"),
        (None, None) => key.to_owned(),
    };
    // The value is repeated when it came from the environment and cannot be a secret.
    let value_of = |name: &str| {
        let secret = ["KEY", "TOKEN", "PASSWORD", "SECRET", "URL"].iter().any(|s| name.contains(s));
        env.get(name).filter(|_| !secret).map_or_else(String::new, |v| format!("invalid value {v:?}: "))
    };
    match error {
        config::ConfigError::Type { unexpected, expected, key, .. } => {
            let key = key.as_deref();
            let shown = match key.and_then(from_env) {
                Some(_) => unexpected.to_string(),
                None => kind_of(&unexpected),
            };
            ServerError::config(
                key.map_or_else(|| "config".to_owned(), named),
                format!("invalid value {shown}: expected {expected}"),
            )
        }
        config::ConfigError::At { error, key: Some(key), .. } => {
            let name = named(&key);
            let mut reason = format!("{}{error}", value_of(&name));
            if from_env(&key).is_none()
                && let Some((_, Some(value))) = in_file(&key)
                && !value.is_empty()
            {
                reason = reason.replace(&value, "<value>");
            }
            ServerError::config(name, reason)
        }
        config::ConfigError::NotFound(key) => ServerError::config(named(&key), "missing"),
        other => ServerError::config(file.map_or("config", ConfigFile::path), other.to_string()),
    }
}

/// A key no struct has (serde's "unknown field", from a file key or a variable whose top-level
/// key is real), named where it was written: the variable, else the file and line. The same
/// words as [`unknown_variable`], the nearest key suggested.
pub(super) fn unknown_field_error(
    error: &config::ConfigError,
    env: &HashMap<String, String>,
    file: Option<&ConfigFile>,
) -> Option<ServerError> {
    let (parent, message) = match error {
        config::ConfigError::At { error, key, .. } => (key.clone().unwrap_or_default(), error.to_string()),
        other => (String::new(), other.to_string()),
    };
    let (field, expected) = typos::unknown_field(&message)?;
    let within = |key: &str| if parent.is_empty() { key.to_owned() } else { format!("{parent}.{key}") };
    let written = within(&field);
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    let (place, reason) = match typos::variable_in(env, &written) {
        Some(variable) => {
            let short = variable.starts_with(LLM_ALIAS);
            let reason = typos::unknown_key(&written, &field, &expected, |near| {
                typos::variable_of(&within(near), short)
            });
            (variable, reason)
        }
        None => {
            let place = file
                .map(|file| file.locate(&written).map_or_else(|| file.path().to_owned(), |(place, _)| place));
            let reason =
                typos::unknown_key(&written, &field, &expected, |near| format!("\"{}\"", within(near)));
            (place.unwrap_or_else(|| "config".to_owned()), reason)
        }
    };
    Some(ServerError::config(place, reason))
}

/// An `ORCHESTRATOR_*` variable whose top-level key is no key: refused as a file's unknown key
/// is, with the nearest variable suggested — or the double underscore, when it writes a nested
/// key with one (`ORCHESTRATOR_INTAKE_ENABLED`).
pub(super) fn unknown_variable(name: &str) -> ServerError {
    let resolved = match name.strip_prefix(LLM_ALIAS) {
        Some(rest) => format!("{LLM_ALIAS_TARGET}{rest}"),
        None => name.to_owned(),
    };
    let rest = resolved.strip_prefix(PREFIX).unwrap_or(&resolved);
    let segments: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
    let top = segments.first().cloned().unwrap_or_default();
    let written = segments.join(".");
    let with_top = |top: &str| {
        let mut key = segments.clone();
        if let Some(first) = key.first_mut() {
            *first = top.to_owned();
        }
        key.join(".")
    };
    let one_underscore = Config::KEYS.iter().find_map(|key| {
        let nested = top.strip_prefix(key)?.strip_prefix('_').filter(|nested| !nested.is_empty())?;
        Some(format!("{key}.{nested}"))
    });
    let reason = match one_underscore {
        Some(nested) => format!(
            "unknown key \"{written}\"; did you mean {}? (a nested key takes a double underscore)",
            typos::variable_of(&with_top(&nested), false)
        ),
        None => typos::unknown_key(&written, &top, Config::KEYS, |near| {
            typos::variable_of(&with_top(near), false)
        }),
    };
    ServerError::config(name, reason)
}

/// What kind of value a `config` "unexpected value" is, without the value: its text up to
/// the quoted value (`string "…"` → `string`; the type itself is not exported).
pub(super) fn kind_of(unexpected: &impl std::fmt::Display) -> String {
    let text = unexpected.to_string();
    text.split(['`', '"']).next().unwrap_or_default().trim().to_owned()
}
