//! Probing model servers: is each profile's server up, does it take our key, does it serve the
//! configured model? For start-up checks and operators' diagnostics.
//!
//! A probe is one `GET {base_url}/models` (the OpenAI-compatible model list, served by vLLM,
//! Ollama, llama.cpp server and OpenAI) bounded by a short timeout, so a dead server costs the
//! caller at most that long. Probes do not take the profile's concurrency permits: they must
//! answer even while every permit is held by a slow deliberation.
//!
//! A server that takes the connection but does not answer in time is **busy**, not down: a
//! llama.cpp server answering a long completion leaves `/models` unanswered for a while, and
//! deliberations simply wait for it. So alongside the request the probe opens a plain TCP
//! connection to the server's address (closed at once): when the request times out, a
//! connection that was accepted means busy (usable, a warning at most), one refused, not
//! resolved or not accepted within the timeout means down. A refused connection, a name that
//! does not resolve or a TLS failure ends the request itself at once: down. (Through an HTTP
//! proxy the direct connection says nothing of the server: a proxied probe that times out is
//! told as down.) [`ProfileProbe::busy_message`] is the one wording of it, for GetStatus, the start-up log
//! and `config check` alike.
//!
//! What a probe reports quotes no error body (the server may echo our key in it): a status is
//! named with the fixed phrase of [`crate::client`], the body goes to the `debug` log redacted.

use std::time::Duration;

use async_trait::async_trait;
use orchestrator_application::ports::{AgentError, BackendHealth, BackendProber};
use orchestrator_domain::ProfileName;
use reqwest::StatusCode;
use serde_json::Value;
use tracing::debug;

use crate::OpenAiBackend;
use crate::client::{ChatClient, status_phrase};
use crate::profile::ResolvedProfile;
use crate::redact::Redactor;

/// How long [`OpenAiBackend::probe`](crate::OpenAiBackend::probe) waits for each server: the
/// bound GetStatus and the start-up check use, so `config check` says what they say.
pub const PROBE_TIMEOUT: Duration = orchestrator_application::BACKEND_PROBE_TIMEOUT;
/// How many of the server's model ids a "model not listed" hint names.
pub const LISTED_MODELS: usize = 5;
/// Most of a model list read; longer lists are read this far.
const MAX_MODELS_BODY: usize = 1024 * 1024;

/// What probing one profile found.
///
/// For operators — log lines, a start-up check, a CLI — **not for clients**: `url` and `hint`
/// name the model server (without credentials), which clients must not learn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileProbe {
    /// The profile probed.
    pub profile: ProfileName,
    /// The URL asked (`{base_url}/models`), without user info, query or fragment.
    pub url: String,
    /// Whether the server answered HTTP at all within the timeout.
    pub reachable: bool,
    /// Whether it accepted a connection but did not answer within the timeout: busy with other
    /// work (a long completion), usable, not down.
    pub busy: bool,
    /// The HTTP status of the answer, when there was one.
    pub status: Option<u16>,
    /// Whether the profile's model is in the server's list; `None` when no list was read.
    pub model_listed: Option<bool>,
    /// What to check, when something looks wrong.
    pub hint: Option<String>,
    /// What was found, in one line that names the profile but not the server (no URL, no
    /// text the server sent): safe to show clients.
    pub summary: String,
}

impl ProfileProbe {
    /// Whether the profile looks usable: busy, or reachable, answered 2xx, and did not leave out
    /// the model from a list it gave.
    pub fn is_ok(&self) -> bool {
        self.busy
            || (self.reachable
                && self.status.is_some_and(|s| (200..300).contains(&s))
                && self.model_listed != Some(false))
    }
}

impl ProfileProbe {
    /// What a busy model server is told as, everywhere it is told (GetStatus, the start-up
    /// log, `config check`): it took the connection but did not answer within `timeout`.
    /// Names no server, so clients may read it.
    pub fn busy_message(timeout: Duration) -> String {
        format!(
            "accepted the connection but did not answer GET /models within {} ms: busy (a model \
             server answering a long completion does this); deliberations wait for it",
            timeout.as_millis()
        )
    }

    /// The port's view of this probe: the client-safe summary as its message, the URL and
    /// hint as the operator's detail. Busy is `ok` without `reachable` (no HTTP answer), as
    /// [`BackendHealth::is_busy`] reads it.
    pub fn into_health(self) -> BackendHealth {
        let ok = self.is_ok();
        let operator_detail = format!("{}: {}", self.url, self.hint.as_deref().unwrap_or(&self.summary));
        BackendHealth {
            profile: self.profile.to_string(),
            reachable: self.reachable,
            model_listed: self.model_listed,
            ok,
            message: self.summary,
            operator_detail,
        }
    }
}

#[async_trait]
impl BackendProber for OpenAiBackend {
    async fn probe_backends(&self, timeout: Duration) -> Vec<BackendHealth> {
        self.probe_within(timeout).await.into_iter().map(ProfileProbe::into_health).collect()
    }
}

/// Probes one profile within `timeout` (see the module docs).
pub(crate) async fn probe_profile(
    client: &ChatClient,
    profile: &ResolvedProfile,
    timeout: Duration,
) -> ProfileProbe {
    let base = Redactor::url(&profile.base_url);
    let mut probe = ProfileProbe {
        profile: profile.name.clone(),
        url: Redactor::url(&profile.models_url),
        reachable: false,
        busy: false,
        status: None,
        model_listed: None,
        hint: None,
        summary: String::new(),
    };
    let name = &profile.name;
    let (answer, accepted) = tokio::join!(
        tokio::time::timeout(timeout, client.get(&profile.models_url, profile, MAX_MODELS_BODY)),
        accepts_connections(&profile.models_url, timeout),
    );
    match answer {
        Err(_elapsed) if accepted => {
            probe.busy = true;
            probe.hint = Some(ProfileProbe::busy_message(timeout));
            probe.summary = ProfileProbe::busy_message(timeout);
        }
        Err(_elapsed) => {
            probe.hint = Some(format!(
                "no connection within {} ms; is the model server at {base} running and reachable from here?",
                timeout.as_millis()
            ));
            probe.summary = format!(
                "not reachable: no connection within {} ms; is the model server of profiles.{name} running?",
                timeout.as_millis()
            );
        }
        Ok(Err(cause)) => {
            probe.hint = Some(format!("{cause}; is the model server running at {base}?"));
            probe.summary =
                format!("not reachable: {cause}; is the model server of profiles.{name} running?");
        }
        Ok(Ok((status, body))) => {
            probe.reachable = true;
            probe.status = Some(status.as_u16());
            read_answer(&mut probe, profile, status, &body, &base);
        }
    }
    // The whole probe: the URL has no credentials (see `ProfileProbe`).
    debug!(?probe, "model server probed");
    probe
}

/// Whether the host and port of `url` accept a TCP connection within `timeout` (closed at
/// once): what tells a busy server from a down one when the request gets no answer.
async fn accepts_connections(url: &reqwest::Url, timeout: Duration) -> bool {
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        return false;
    };
    let address = format!("{host}:{port}");
    matches!(tokio::time::timeout(timeout, tokio::net::TcpStream::connect(address)).await, Ok(Ok(_)))
}

fn read_answer(
    probe: &mut ProfileProbe,
    profile: &ResolvedProfile,
    status: StatusCode,
    body: &[u8],
    base: &str,
) {
    let name = &profile.name;
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            let refused = AgentError::Unauthorized {
                profile: name.to_string(),
                status: status.as_u16(),
                key_sent: profile.authorization.is_some(),
            };
            probe.hint = Some(refused.to_string());
            probe.summary = refused.to_string();
        }
        StatusCode::NOT_FOUND if !profile.base_url.path().trim_end_matches('/').ends_with("/v1") => {
            probe.hint = Some(format!(
                "GET {} answered 404: the base URL may be missing /v1 (try {}/v1 in profiles.{name}.base_url)",
                probe.url,
                base.trim_end_matches('/')
            ));
            probe.summary = format!(
                "GET /models answered 404: the base URL may be missing /v1 (check profiles.{name}.base_url)"
            );
        }
        StatusCode::NOT_FOUND => {
            probe.hint = Some(format!(
                "GET {} answered 404: is {base} an OpenAI-compatible API? check profiles.{name}.base_url",
                probe.url
            ));
            probe.summary = format!(
                "GET /models answered 404: is it an OpenAI-compatible API? check profiles.{name}.base_url"
            );
        }
        s if s.is_success() => match model_ids(body) {
            None => {
                let hint = "the server's answer is not a model list; it may still serve chat completions";
                probe.hint = Some(hint.to_owned());
                probe.summary = format!("reachable, but {hint}");
            }
            Some(ids) => {
                let listed = ids.iter().any(|id| same_model(id, &profile.model));
                probe.model_listed = Some(listed);
                if listed {
                    probe.summary = format!("reachable; model \"{}\" is served", profile.model);
                } else {
                    probe.hint = Some(not_listed_hint(profile, &ids));
                    probe.summary = format!(
                        "reachable, but model \"{}\" is not in the server's list; check profiles.{name}.model",
                        profile.model
                    );
                }
            }
        },
        s => {
            // The body may echo our request, key included: only our debug log sees it.
            debug!(
                profile = %name,
                status = s.as_u16(),
                body = %profile.redactor.excerpt(body),
                "model server error body"
            );
            let phrase = status_phrase(s);
            probe.hint = Some(format!("GET {} answered HTTP {}: {phrase}", probe.url, s.as_u16()));
            probe.summary =
                format!("GET /models answered HTTP {}: {phrase}; check profiles.{name}.base_url", s.as_u16());
        }
    }
}

fn not_listed_hint(profile: &ResolvedProfile, ids: &[String]) -> String {
    let model = &profile.model;
    let name = &profile.name;
    if ids.is_empty() {
        return format!(
            "model \"{model}\" is not served: the server lists no models; check profiles.{name}.model"
        );
    }
    let shown: Vec<String> = ids.iter().take(LISTED_MODELS).map(|id| profile.redactor.name(id)).collect();
    let more = ids.len().saturating_sub(LISTED_MODELS);
    let more = if more > 0 { format!(" and {more} more") } else { String::new() };
    format!(
        "model \"{model}\" is not in the server's list (available: {}{more}); check profiles.{name}.model \
         (servers of a single model, such as llama.cpp, ignore the name)",
        shown.join(", ")
    )
}

/// The model ids of an OpenAI-style list (`{"data": [{"id": …}]}`), or an Ollama/llama.cpp
/// style `{"models": [{"name"|"model"|"id": …}]}`; `None` when the body is neither.
fn model_ids(body: &[u8]) -> Option<Vec<String>> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let list = value.get("data").and_then(Value::as_array).or_else(|| value.get("models")?.as_array())?;
    let id = |entry: &Value| -> Option<String> {
        let id =
            entry.as_str().or_else(|| ["id", "name", "model"].iter().find_map(|k| entry.get(k)?.as_str()))?;
        Some(id.to_owned())
    };
    Some(list.iter().filter_map(id).collect())
}

/// Whether a listed id is the configured model; Ollama lists `name:latest` for `name`.
fn same_model(id: &str, model: &str) -> bool {
    let bare = |m: &str| m.strip_suffix(":latest").unwrap_or(m).to_owned();
    id == model || bare(id) == bare(model)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_lists_are_read_in_openai_and_ollama_shapes() {
        assert_eq!(
            model_ids(br#"{"object":"list","data":[{"id":"a","object":"model"},{"id":"b"}]}"#),
            Some(vec!["a".to_owned(), "b".to_owned()])
        );
        assert_eq!(
            model_ids(br#"{"models":[{"name":"llama3:latest"},{"model":"x"}]}"#),
            Some(vec!["llama3:latest".to_owned(), "x".to_owned()])
        );
        assert_eq!(model_ids(br#"{"data":[]}"#), Some(vec![]));
        assert_eq!(model_ids(b"<html>"), None);
        assert_eq!(model_ids(br#"{"ok":true}"#), None);
    }

    #[test]
    fn ollama_latest_tags_match_the_bare_name() {
        assert!(same_model("llama3:latest", "llama3"));
        assert!(same_model("llama3", "llama3:latest"));
        assert!(same_model("m", "m"));
        assert!(!same_model("llama3:8b", "llama3"));
    }

    #[test]
    fn a_probe_is_ok_only_when_answered_2xx_with_the_model_or_without_a_list() {
        let probe = ProfileProbe {
            profile: ProfileName::default_profile(),
            url: "http://h/v1/models".into(),
            reachable: true,
            busy: false,
            status: Some(200),
            model_listed: Some(true),
            hint: None,
            summary: "reachable; model \"m\" is served".into(),
        };
        assert!(probe.is_ok());
        assert!(ProfileProbe { model_listed: None, ..probe.clone() }.is_ok());
        assert!(!ProfileProbe { model_listed: Some(false), ..probe.clone() }.is_ok());
        assert!(!ProfileProbe { status: Some(401), ..probe.clone() }.is_ok());
        assert!(!ProfileProbe { reachable: false, status: None, ..probe.clone() }.is_ok());
        let busy = ProfileProbe { reachable: false, busy: true, status: None, model_listed: None, ..probe };
        assert!(busy.is_ok());
        let health = busy.into_health();
        assert!(health.ok && !health.reachable && health.is_busy());
    }

    #[test]
    fn a_busy_server_is_told_in_one_wording_that_names_no_server() {
        assert_eq!(
            ProfileProbe::busy_message(Duration::from_millis(2000)),
            "accepted the connection but did not answer GET /models within 2000 ms: busy (a model \
             server answering a long completion does this); deliberations wait for it"
        );
    }
}
