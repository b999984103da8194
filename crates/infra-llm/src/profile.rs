//! Model profiles: where a model is served, how to authenticate and how to sample it.
//!
//! [`LlmProfile`] is the configuration as a person writes it (a TOML table, env overrides);
//! [`ResolvedProfile`] is what the backend runs on after validation, with the base URL parsed,
//! the API key looked up and turned into a ready, sensitive `Authorization` header.

use std::fmt;
use std::time::Duration;

use orchestrator_domain::ProfileName;
use reqwest::Url;
use reqwest::header::HeaderValue;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};

use crate::error::{LlmError, Result};
use crate::redact::Redactor;
use crate::structured_output::StructuredOutput;

/// Sampling temperature when a profile sets none.
pub const DEFAULT_TEMPERATURE: f64 = 0.7;
/// Completion token limit when a profile sets none.
pub const DEFAULT_MAX_TOKENS: u32 = 512;
/// Per-attempt timeout when a profile sets none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on one call including all its retries and back-off, when a profile sets none.
pub const DEFAULT_TOTAL_TIMEOUT: Duration = Duration::from_secs(180);
/// Retries after the first attempt when a profile sets none.
pub const DEFAULT_MAX_RETRIES: u32 = 3;
/// Concurrent calls per profile when a profile sets none.
pub const DEFAULT_MAX_CONCURRENCY: usize = 4;
/// Most retries a profile may ask for: past this a failing server is down, not flaky.
pub const MAX_RETRIES_LIMIT: u32 = 10;
/// Most concurrent calls a profile may ask for.
pub const MAX_CONCURRENCY_LIMIT: usize = 1024;
/// Highest temperature OpenAI-compatible servers accept.
pub const MAX_TEMPERATURE: f64 = 2.0;

/// One model behind an OpenAI-compatible `POST {base_url}/chat/completions` endpoint.
///
/// Deserialized from the server's config file, one table per profile name:
///
/// ```toml
/// [profiles.default]
/// base_url = "http://127.0.0.1:8089/v1"   # required; http or https, no credentials in it
/// model = "smollm2"                        # required
/// api_key_env = "OPENAI_API_KEY"           # optional: env var holding the key
/// temperature = 0.7                        # 0..=2, default 0.7 (spread per seat, see `sampling`)
/// max_tokens = 512                         # completion tokens per call, default 512
/// timeout_secs = 60                        # per attempt (fractions allowed), default 60
/// total_timeout_secs = 180                 # per call, retries and back-off included, default 180
/// max_retries = 3                          # retries after the first attempt, 0..=10, default 3
/// max_concurrency = 4                      # calls in flight on this profile, 1..=1024, default 4
/// structured_output = "auto"               # auto | json_schema | json_object | off, default auto
/// ```
///
/// `structured_output` says how review and selection answers are constrained to their JSON
/// Schema (see [`crate::structured_output`]); `auto` probes the server once and never fails a
/// call that would work without it. The former `response_format_json = true` is still read, as
/// a deprecated spelling of `structured_output = "json_object"` (and `false`, its old default,
/// as the new default `auto`).
///
/// `api_key` may also be set directly (for env overrides such as `ORCHESTRATOR_LLM_API_KEY`);
/// it wins over `api_key_env`. Keys are [`SecretString`]s: `Debug` prints them redacted and no
/// error or log message contains them. Unknown fields are refused so a typo is not silently
/// ignored. Validation happens when the backend is built ([`crate::OpenAiBackend::new`]) because
/// only then is the profile's name known for the error message.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmProfile {
    /// Base URL of the API, up to and including its version segment (`…/v1`).
    pub base_url: String,
    /// Model name sent in every request.
    pub model: String,
    /// Name of the environment variable holding the API key, read when the backend is built.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// The API key itself; takes precedence over `api_key_env`.
    #[serde(default)]
    pub api_key: Option<SecretString>,
    /// Base sampling temperature, spread per council seat.
    #[serde(default = "default_temperature")]
    pub temperature: f64,
    /// Completion token limit of every call.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
    /// Timeout of one HTTP attempt, body included (TOML key `timeout_secs`).
    #[serde(rename = "timeout_secs", default = "default_timeout", deserialize_with = "seconds")]
    pub timeout: Duration,
    /// Bound on one call: all attempts and back-off (TOML key `total_timeout_secs`).
    #[serde(rename = "total_timeout_secs", default = "default_total_timeout", deserialize_with = "seconds")]
    pub total_timeout: Duration,
    /// Retries after the first attempt on transient failures.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// Calls in flight at once on this profile, across every deliberation of the server.
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: usize,
    /// How review and select calls ask for schema-constrained JSON (`auto`, `json_schema`,
    /// `json_object`, `off`); see [`crate::structured_output`].
    #[serde(default)]
    pub structured_output: StructuredOutput,
    /// Deprecated: the switch `structured_output` replaced. `Some(true)` means
    /// `structured_output = "json_object"`, `Some(false)` the default; kept so that existing
    /// config files and `ORCHESTRATOR_PROFILES__<NAME>__RESPONSE_FORMAT_JSON` still load. It may
    /// not be combined with a `structured_output` other than `auto`.
    #[serde(default)]
    pub response_format_json: Option<bool>,
}

impl LlmProfile {
    /// A profile from plain values with every other setting at its default; for env-var
    /// overrides and tests. Set the public fields to change the rest.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            model: model.into(),
            api_key_env: None,
            api_key: None,
            temperature: DEFAULT_TEMPERATURE,
            max_tokens: DEFAULT_MAX_TOKENS,
            timeout: DEFAULT_TIMEOUT,
            total_timeout: DEFAULT_TOTAL_TIMEOUT,
            max_retries: DEFAULT_MAX_RETRIES,
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            structured_output: StructuredOutput::Auto,
            response_format_json: None,
        }
    }

    /// Validates the profile and resolves its key; `env` looks environment variables up.
    ///
    /// An `api_key_env` naming an unset or empty variable is not an error: local servers need
    /// no key, and a remote one answers 401, which names the problem. It is logged.
    pub(crate) fn resolve(
        &self,
        name: &ProfileName,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ResolvedProfile> {
        let field = |f: &str| format!("profiles.{name}.{f}");
        let base_url =
            base_url(&self.base_url).map_err(|reason| LlmError::invalid(field("base_url"), reason))?;
        let join = |path: &str| {
            Url::parse(&format!("{}/{path}", base_url.as_str().trim_end_matches('/')))
                .map_err(|e| LlmError::invalid(field("base_url"), format!("not a valid URL ({e})")))
        };
        let (endpoint, models_url) = (join("chat/completions")?, join("models")?);
        let model = self.model.trim();
        if model.is_empty() {
            return Err(LlmError::invalid(field("model"), "must not be empty"));
        }
        if !(self.temperature.is_finite() && (0.0..=MAX_TEMPERATURE).contains(&self.temperature)) {
            return Err(LlmError::invalid(
                field("temperature"),
                format!("must be within 0..=2, got {}", self.temperature),
            ));
        }
        if self.max_tokens == 0 {
            return Err(LlmError::invalid(field("max_tokens"), "must be at least 1"));
        }
        if self.timeout.is_zero() {
            return Err(LlmError::invalid(field("timeout_secs"), "must be greater than 0"));
        }
        if self.total_timeout.is_zero() {
            return Err(LlmError::invalid(field("total_timeout_secs"), "must be greater than 0"));
        }
        if self.max_retries > MAX_RETRIES_LIMIT {
            return Err(LlmError::invalid(
                field("max_retries"),
                format!("must be at most {MAX_RETRIES_LIMIT}, got {}", self.max_retries),
            ));
        }
        if !(1..=MAX_CONCURRENCY_LIMIT).contains(&self.max_concurrency) {
            return Err(LlmError::invalid(
                field("max_concurrency"),
                format!("must be within 1..={MAX_CONCURRENCY_LIMIT}, got {}", self.max_concurrency),
            ));
        }
        let structured_output = self.structured_output(name)?;
        let key = self.api_key(name, env)?;
        let authorization = key.as_ref().map(|(key, source)| bearer(name, key, source)).transpose()?;
        let redactor = Redactor::new(key.as_ref().map(|(key, _)| key.expose_secret()), Some(&base_url));
        Ok(ResolvedProfile {
            name: name.clone(),
            base_url,
            endpoint,
            models_url,
            redactor,
            model: model.to_owned(),
            authorization,
            temperature: self.temperature,
            max_tokens: self.max_tokens,
            timeout: self.timeout,
            total_timeout: self.total_timeout,
            max_retries: self.max_retries,
            max_concurrency: self.max_concurrency,
            structured_output,
        })
    }

    /// `structured_output`, with the deprecated `response_format_json` read as its alias.
    fn structured_output(&self, name: &ProfileName) -> Result<StructuredOutput> {
        let Some(legacy) = self.response_format_json else {
            return Ok(self.structured_output);
        };
        if self.structured_output != StructuredOutput::Auto {
            return Err(LlmError::invalid(
                format!("profiles.{name}.response_format_json"),
                "is deprecated and replaced by structured_output, which is also set; remove it",
            ));
        }
        let mode = if legacy { StructuredOutput::JsonObject } else { StructuredOutput::Auto };
        tracing::warn!(
            profile = %name,
            response_format_json = legacy,
            structured_output = %mode,
            "response_format_json is deprecated; write structured_output instead"
        );
        Ok(mode)
    }

    /// The key, and the field it came from, if one is configured and set.
    fn api_key(
        &self,
        name: &ProfileName,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<(SecretString, &'static str)>> {
        let (key, source) = match (&self.api_key, &self.api_key_env) {
            (Some(key), _) => (Some(key.clone()), "api_key"),
            (None, Some(var)) => {
                let var = var.trim();
                if var.is_empty() || var.contains('=') || var.contains('\0') {
                    return Err(LlmError::invalid(
                        format!("profiles.{name}.api_key_env"),
                        "must name an environment variable",
                    ));
                }
                let key = env(var).filter(|v| !v.trim().is_empty()).map(SecretString::from);
                if key.is_none() {
                    tracing::warn!(
                        profile = %name,
                        api_key_env = var,
                        "environment variable for the API key is not set; calling without a key"
                    );
                }
                (key, "api_key_env")
            }
            (None, None) => (None, "api_key"),
        };
        let key = key.map(|key| key.expose_secret().trim().to_owned()).filter(|key| !key.is_empty());
        Ok(key.map(|key| (SecretString::from(key), source)))
    }
}

/// `Bearer <key>` as a header value marked sensitive, so HTTP-level debug output hides it.
fn bearer(name: &ProfileName, key: &SecretString, source: &str) -> Result<HeaderValue> {
    let mut value = HeaderValue::try_from(format!("Bearer {}", key.expose_secret())).map_err(|_| {
        LlmError::invalid(
            format!("profiles.{name}.{source}"),
            "the API key contains characters not allowed in an HTTP header",
        )
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// Parses the base URL, refusing URLs the backend cannot or should not call.
fn base_url(base_url: &str) -> std::result::Result<Url, String> {
    let base_url = base_url.trim();
    if base_url.is_empty() {
        return Err("must not be empty".into());
    }
    let url = Url::parse(base_url).map_err(|e| format!("not a valid URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("scheme must be http or https, got \"{}\"", url.scheme()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("must name a host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not embed credentials; use api_key_env".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query or fragment".into());
    }
    Ok(url)
}

/// A validated profile, ready to call.
#[derive(Clone)]
pub(crate) struct ResolvedProfile {
    pub(crate) name: ProfileName,
    /// The configured base URL (`…/v1`); for operators' logs and probes, never for clients.
    pub(crate) base_url: Url,
    /// `{base_url}/chat/completions`.
    pub(crate) endpoint: Url,
    /// `{base_url}/models`, asked by probes.
    pub(crate) models_url: Url,
    /// Redacts what this profile's server echoes: its key, its host (see [`crate::redact`]).
    pub(crate) redactor: Redactor,
    pub(crate) model: String,
    /// `Bearer <key>`, marked sensitive so HTTP-level debug output hides it.
    pub(crate) authorization: Option<HeaderValue>,
    pub(crate) temperature: f64,
    pub(crate) max_tokens: u32,
    pub(crate) timeout: Duration,
    pub(crate) total_timeout: Duration,
    pub(crate) max_retries: u32,
    pub(crate) max_concurrency: usize,
    pub(crate) structured_output: StructuredOutput,
}

impl fmt::Debug for ResolvedProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResolvedProfile")
            .field("name", &self.name)
            .field("endpoint", &self.endpoint.as_str())
            .field("redactor", &self.redactor)
            .field("model", &self.model)
            .field("has_api_key", &self.authorization.is_some())
            .field("temperature", &self.temperature)
            .field("max_tokens", &self.max_tokens)
            .field("timeout", &self.timeout)
            .field("total_timeout", &self.total_timeout)
            .field("max_retries", &self.max_retries)
            .field("max_concurrency", &self.max_concurrency)
            .field("structured_output", &self.structured_output)
            .finish()
    }
}

fn default_temperature() -> f64 {
    DEFAULT_TEMPERATURE
}

fn default_max_tokens() -> u32 {
    DEFAULT_MAX_TOKENS
}

fn default_timeout() -> Duration {
    DEFAULT_TIMEOUT
}

fn default_total_timeout() -> Duration {
    DEFAULT_TOTAL_TIMEOUT
}

fn default_max_retries() -> u32 {
    DEFAULT_MAX_RETRIES
}

fn default_max_concurrency() -> usize {
    DEFAULT_MAX_CONCURRENCY
}

/// Reads a duration written as (possibly fractional) seconds.
fn seconds<'de, D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Duration, D::Error> {
    let secs = f64::deserialize(deserializer)?;
    Duration::try_from_secs_f64(secs).map_err(|_| {
        serde::de::Error::custom(format!("must be a non-negative number of seconds, got {secs}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name() -> ProfileName {
        ProfileName::new("main").unwrap()
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn resolve(profile: &LlmProfile) -> Result<ResolvedProfile> {
        profile.resolve(&name(), &no_env)
    }

    fn error_of(profile: &LlmProfile) -> String {
        resolve(profile).unwrap_err().to_string()
    }

    #[test]
    fn toml_with_only_url_and_model_gets_every_default() {
        let profile: LlmProfile =
            toml::from_str("base_url = \"http://127.0.0.1:8089/v1\"\nmodel = \"smollm2\"").unwrap();
        assert_eq!(profile.temperature, 0.7);
        assert_eq!(profile.max_tokens, 512);
        assert_eq!(profile.timeout, Duration::from_secs(60));
        assert_eq!(profile.total_timeout, Duration::from_secs(180));
        assert_eq!(profile.max_retries, 3);
        assert_eq!(profile.max_concurrency, 4);
        assert_eq!(profile.structured_output, StructuredOutput::Auto);
        assert_eq!(resolve(&profile).unwrap().structured_output, StructuredOutput::Auto);
        assert!(profile.api_key.is_none() && profile.api_key_env.is_none());
    }

    #[test]
    fn toml_reads_every_documented_field() {
        let profile: LlmProfile = toml::from_str(
            r#"
            base_url = "https://api.example.com/v1/"
            model = "gpt-x"
            api_key_env = "OPENAI_API_KEY"
            temperature = 1.1
            max_tokens = 64
            timeout_secs = 2.5
            total_timeout_secs = 30
            max_retries = 1
            max_concurrency = 9
            structured_output = "json_schema"
            "#,
        )
        .unwrap();
        assert_eq!(profile.timeout, Duration::from_millis(2500));
        assert_eq!(profile.total_timeout, Duration::from_secs(30));
        assert_eq!((profile.max_tokens, profile.max_retries, profile.max_concurrency), (64, 1, 9));
        assert_eq!(profile.api_key_env.as_deref(), Some("OPENAI_API_KEY"));
        assert_eq!(profile.structured_output, StructuredOutput::JsonSchema);
        let resolved = resolve(&profile).unwrap();
        assert_eq!(resolved.structured_output, StructuredOutput::JsonSchema);
        assert_eq!(resolved.endpoint.as_str(), "https://api.example.com/v1/chat/completions");
        assert_eq!(resolved.models_url.as_str(), "https://api.example.com/v1/models");
    }

    #[test]
    fn the_deprecated_response_format_json_reads_as_structured_output() {
        let read = |extra: &str| {
            let profile: LlmProfile =
                toml::from_str(&format!("base_url = \"http://x/v1\"\nmodel = \"m\"\n{extra}")).unwrap();
            resolve(&profile).map(|r| r.structured_output).map_err(|e| e.to_string())
        };
        assert_eq!(read("response_format_json = true"), Ok(StructuredOutput::JsonObject));
        assert_eq!(read("response_format_json = false"), Ok(StructuredOutput::Auto));
        assert_eq!(
            read("response_format_json = true\nstructured_output = \"auto\""),
            Ok(StructuredOutput::JsonObject)
        );
        assert_eq!(read("structured_output = \"off\""), Ok(StructuredOutput::Off));
        let both = read("response_format_json = true\nstructured_output = \"off\"").unwrap_err();
        assert!(both.starts_with("profiles.main.response_format_json: is deprecated"), "{both}");
        let typo = toml::from_str::<LlmProfile>(
            "base_url = \"http://x/v1\"\nmodel = \"m\"\nstructured_output = \"on\"",
        );
        assert!(typo.unwrap_err().to_string().contains("json_schema"), "the values are listed");
    }

    #[test]
    fn toml_refuses_unknown_fields_and_negative_seconds() {
        let typo =
            toml::from_str::<LlmProfile>("base_url = \"http://x/v1\"\nmodel = \"m\"\ntemprature = 1.0");
        assert!(typo.unwrap_err().to_string().contains("temprature"));
        let negative =
            toml::from_str::<LlmProfile>("base_url = \"http://x/v1\"\nmodel = \"m\"\ntimeout_secs = -1");
        assert!(negative.unwrap_err().to_string().contains("non-negative number of seconds"));
    }

    #[test]
    fn invalid_fields_are_named_with_the_profile() {
        let ok = LlmProfile::new("http://127.0.0.1:8089/v1", "smollm2");
        let cases: Vec<(LlmProfile, &str)> = vec![
            (LlmProfile { base_url: " ".into(), ..ok.clone() }, "profiles.main.base_url: must not be empty"),
            (
                LlmProfile { base_url: "not a url".into(), ..ok.clone() },
                "profiles.main.base_url: not a valid URL",
            ),
            (
                LlmProfile { base_url: "ftp://h/v1".into(), ..ok.clone() },
                "profiles.main.base_url: scheme must be",
            ),
            (
                LlmProfile { base_url: "http://user:pw@h/v1".into(), ..ok.clone() },
                "profiles.main.base_url: must not embed credentials",
            ),
            (
                LlmProfile { base_url: "http://h/v1?x=1".into(), ..ok.clone() },
                "profiles.main.base_url: must not have",
            ),
            (LlmProfile { model: " ".into(), ..ok.clone() }, "profiles.main.model: must not be empty"),
            (
                LlmProfile { temperature: 2.5, ..ok.clone() },
                "profiles.main.temperature: must be within 0..=2",
            ),
            (LlmProfile { temperature: f64::NAN, ..ok.clone() }, "profiles.main.temperature"),
            (LlmProfile { max_tokens: 0, ..ok.clone() }, "profiles.main.max_tokens: must be at least 1"),
            (LlmProfile { timeout: Duration::ZERO, ..ok.clone() }, "profiles.main.timeout_secs"),
            (LlmProfile { total_timeout: Duration::ZERO, ..ok.clone() }, "profiles.main.total_timeout_secs"),
            (LlmProfile { max_retries: 11, ..ok.clone() }, "profiles.main.max_retries: must be at most 10"),
            (LlmProfile { max_concurrency: 0, ..ok.clone() }, "profiles.main.max_concurrency"),
            (LlmProfile { api_key_env: Some(" ".into()), ..ok.clone() }, "profiles.main.api_key_env"),
        ];
        for (profile, expected) in cases {
            let error = error_of(&profile);
            assert!(error.starts_with(expected), "expected {expected:?}, got {error:?}");
        }
    }

    #[test]
    fn api_key_env_is_read_at_resolution_and_explicit_key_wins() {
        let env = |var: &str| (var == "MY_KEY").then(|| "sk-from-env".to_owned());
        let mut profile = LlmProfile::new("http://h/v1", "m");
        profile.api_key_env = Some("MY_KEY".into());
        let resolved = profile.resolve(&name(), &env).unwrap();
        assert_eq!(resolved.authorization.unwrap().to_str().unwrap(), "Bearer sk-from-env");

        profile.api_key = Some(SecretString::from("sk-explicit"));
        let resolved = profile.resolve(&name(), &env).unwrap();
        assert_eq!(resolved.authorization.unwrap().to_str().unwrap(), "Bearer sk-explicit");
    }

    #[test]
    fn unset_or_empty_key_variable_means_no_key() {
        let empty = |_: &str| Some("  ".to_owned());
        let mut profile = LlmProfile::new("http://h/v1", "m");
        profile.api_key_env = Some("UNSET_VAR".into());
        assert!(resolve(&profile).unwrap().authorization.is_none());
        assert!(profile.resolve(&name(), &empty).unwrap().authorization.is_none());
    }

    #[test]
    fn key_with_forbidden_characters_is_refused_without_echoing_it() {
        let mut profile = LlmProfile::new("http://h/v1", "m");
        profile.api_key = Some(SecretString::from("sk-secret\nvalue"));
        let error = error_of(&profile);
        assert!(error.starts_with("profiles.main.api_key: "), "{error}");
        assert!(!error.contains("sk-secret"), "{error}");
    }

    #[test]
    fn debug_output_never_shows_the_key() {
        let mut profile = LlmProfile::new("http://h/v1", "m");
        profile.api_key = Some(SecretString::from("sk-very-secret-123"));
        let resolved = resolve(&profile).unwrap();
        for text in [format!("{profile:?}"), format!("{resolved:?}"), format!("{profile:#?}")] {
            assert!(!text.contains("sk-very-secret-123"), "{text}");
        }
        assert!(format!("{resolved:?}").contains("has_api_key: true"));
    }
}
