//! One chat-completions exchange over HTTP, and what a response means (the request and reply
//! shapes are in `chat_wire.rs`).
//!
//! [`ChatClient::attempt`] makes exactly one request and classifies its outcome for the
//! [`retry`](crate::retry) policy; it never retries itself. Responses are read leniently, as
//! real servers differ: extra fields are ignored, `usage` and `finish_reason` may be missing,
//! `content` may be a string or a list of text parts. What cannot be used — a malformed body,
//! no choices, empty content — is an `InvalidResponse`, which is not retried.
//!
//! Error messages built here quote nothing the server sent. They become the
//! [`AgentError`] text that reaches gRPC clients, stored results and `warn` logs, and a body
//! can echo our request — the key included, in encodings no redaction can list. So a non-2xx
//! answer is told as its status and a fixed phrase for it ([`status_phrase`]: `HTTP 400: the
//! model server rejected the request`), a 2xx body we cannot use as a fixed phrase with a
//! structural reason (`the reply is not a chat completion (no choices)`), a transport failure
//! as a fixed phrase (`cannot connect to the model server (connection refused)`). The body
//! goes only to our own `debug` log, as a redacted [`Redactor::excerpt`] naming the profile,
//! and the URL too. HTTP 401 and 403 are [`AgentError::Unauthorized`], whose body is not even
//! logged: auth failures are where servers echo the key most.

use std::time::Duration;

use orchestrator_application::ports::AgentError;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use tokio::time::Instant;
use tracing::debug;

use crate::chat_wire::{ChatReply, parse_reply};
use crate::error::{LlmError, Result};
use crate::profile::ResolvedProfile;
use crate::redact::Redactor;
use crate::retry::AttemptError;
use crate::structured_output::refuses_format;

/// Largest response body read; a chat completion is far smaller, anything bigger is an error.
pub const MAX_BACKEND_BODY_BYTES: usize = 4 * 1024 * 1024;

/// The one HTTP client of the backend: pooled connections, rustls, shared by every profile.
#[derive(Debug, Clone)]
pub(crate) struct ChatClient {
    http: reqwest::Client,
}

impl ChatClient {
    /// # Errors
    /// [`LlmError::Client`] when the TLS stack cannot be set up.
    pub(crate) fn new() -> Result<Self> {
        // reqwest is built without a bundled crypto provider (no aws-lc C build): install ring
        // as the process default. An `Err` means one is installed already, which reqwest uses.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .user_agent(concat!("orchestrator-infra-llm/", env!("CARGO_PKG_VERSION")))
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| LlmError::Client { reason: error_chain(&e) })?;
        Ok(Self { http })
    }

    /// Makes one request to `profile`'s chat endpoint and classifies the outcome; the whole
    /// exchange, body included, must finish within `timeout`. Dropping the future aborts the
    /// request.
    pub(crate) async fn attempt(
        &self,
        profile: &ResolvedProfile,
        body: Vec<u8>,
        timeout: Duration,
    ) -> std::result::Result<ChatReply, AttemptError> {
        let mut request = self
            .http
            .post(profile.endpoint.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json")
            .body(body);
        if let Some(authorization) = &profile.authorization {
            request = request.header(AUTHORIZATION, authorization.clone());
        }
        let started = Instant::now();
        let exchange = async {
            let response = request.send().await.map_err(|e| {
                let failure = transport_failure(&e, &profile.endpoint, &profile.redactor);
                AttemptError::transient(AgentError::Unavailable(failure), None)
            })?;
            let status = response.status();
            let retry_after = retry_after(response.headers());
            let body = read_capped(response, profile).await?;
            Ok::<_, AttemptError>((status, retry_after, body))
        };
        let outcome = tokio::time::timeout(timeout, exchange).await;
        let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (status, retry_after, body) = match outcome {
            Err(_elapsed) => {
                debug!(latency_ms, status = "timeout", "chat completion attempt");
                return Err(AttemptError::transient(AgentError::Timeout(timeout), None));
            }
            Ok(Err(failure)) => {
                debug!(latency_ms, status = "error", error = %failure.error, "chat completion attempt");
                return Err(failure);
            }
            Ok(Ok(parts)) => parts,
        };
        debug!(latency_ms, status = status.as_u16(), "chat completion attempt");
        classify(status, retry_after, &body, profile)
    }

    /// `GET url` with the profile's credentials: the status and the first `cap` bytes of the
    /// body (the rest is not read). No timeout of its own; the caller bounds it.
    ///
    /// # Errors
    /// A redacted description of the transport failure (see [`transport_failure`]).
    pub(crate) async fn get(
        &self,
        url: &Url,
        profile: &ResolvedProfile,
        cap: usize,
    ) -> std::result::Result<(StatusCode, Vec<u8>), String> {
        let mut request = self.http.get(url.clone()).header(ACCEPT, "application/json");
        if let Some(authorization) = &profile.authorization {
            request = request.header(AUTHORIZATION, authorization.clone());
        }
        let failure = |e: reqwest::Error| transport_failure(&e, url, &profile.redactor);
        let mut response = request.send().await.map_err(failure)?;
        let status = response.status();
        let mut body = Vec::new();
        while body.len() < cap
            && let Some(chunk) = response.chunk().await.map_err(failure)?
        {
            body.extend_from_slice(&chunk);
        }
        body.truncate(cap);
        Ok((status, body))
    }
}

/// What clients are told about a status that is neither a success nor a refused key: a fixed
/// phrase by status (class), so that nothing the server wrote reaches them.
pub(crate) fn status_phrase(status: StatusCode) -> &'static str {
    match status.as_u16() {
        404 => "model or path not found",
        408 => "the model server timed out waiting for the request",
        413 => "the request is too large for the model server",
        422 => "the model server could not process the request",
        429 => "rate limited by the model server",
        400..=499 => "the model server rejected the request",
        503 => "the model server is unavailable",
        500..=599 => "the model server failed",
        _ => "unexpected status from the model server",
    }
}

/// Maps a status and body to a reply or an attempt error (see the module docs). Retry
/// classification: 408, 429 and 5xx are transient (with the server's `Retry-After`), other
/// statuses final. A failure that may be a refusal of the request's `response_format` is
/// marked so ([`AttemptError::format_refusal`], see [`refuses_format`]); whether that matters
/// is the caller's to decide, as only it knows whether one was sent.
pub(crate) fn classify(
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &[u8],
    profile: &ResolvedProfile,
) -> std::result::Result<ChatReply, AttemptError> {
    classify_status(status, retry_after, body, profile)
        .map_err(|failure| failure.with_format_refusal(refuses_format(status, body)))
}

fn classify_status(
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &[u8],
    profile: &ResolvedProfile,
) -> std::result::Result<ChatReply, AttemptError> {
    let describe = || {
        debug!(
            profile = %profile.name,
            status = status.as_u16(),
            body = %profile.redactor.excerpt(body),
            "model server error body"
        );
        format!("HTTP {}: {}", status.as_u16(), status_phrase(status))
    };
    match status {
        s if s.is_success() => parse_reply(body, profile).map_err(AttemptError::final_),
        StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_MANY_REQUESTS => {
            Err(AttemptError::transient(AgentError::Unavailable(describe()), retry_after))
        }
        s if s.is_server_error() => {
            Err(AttemptError::transient(AgentError::Unavailable(describe()), retry_after))
        }
        // Auth failures often echo part of the key: their body is neither quoted nor logged.
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            Err(AttemptError::final_(AgentError::Unauthorized {
                profile: profile.name.to_string(),
                status: status.as_u16(),
                key_sent: profile.authorization.is_some(),
            }))
        }
        StatusCode::NOT_FOUND => Err(AttemptError::final_(AgentError::Rejected(format!(
            "{}; check profiles.{}.base_url (it usually ends in /v1) and model",
            describe(),
            profile.name
        )))),
        s if s.is_client_error() => Err(AttemptError::final_(AgentError::Rejected(describe()))),
        _ => Err(AttemptError::final_(AgentError::InvalidResponse(describe()))),
    }
}

/// A transport failure as clients may see it — a fixed phrase, never the URL or the error's
/// own text — after logging the details (`url` without credentials, redacted cause) at debug.
pub(crate) fn transport_failure(error: &reqwest::Error, url: &Url, redactor: &Redactor) -> String {
    debug!(
        url = %Redactor::url(url),
        cause = %redactor.message(&error_chain(error)),
        "model server transport failure"
    );
    let cause = transport_cause(error);
    if error.is_connect() {
        format!("cannot connect to the model server ({cause})")
    } else {
        format!("the connection to the model server failed ({cause})")
    }
}

/// What went wrong on the wire, from a fixed vocabulary.
fn transport_cause(error: &reqwest::Error) -> &'static str {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    let mut text = String::new();
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return "connection refused",
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted => {
                    return "connection reset";
                }
                std::io::ErrorKind::TimedOut => return "connection timed out",
                std::io::ErrorKind::HostUnreachable | std::io::ErrorKind::NetworkUnreachable => {
                    return "host unreachable";
                }
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::BrokenPipe => {
                    return "connection closed early";
                }
                _ => {}
            }
        }
        text.push_str(&cause.to_string().to_lowercase());
        text.push(' ');
        source = cause.source();
    }
    if text.contains("dns error") || text.contains("failed to lookup address") {
        "host name not resolved"
    } else if text.contains("certificate") || text.contains("tls") || text.contains("handshake") {
        "TLS failure"
    } else if error.is_body() || error.is_decode() {
        "response cut off"
    } else if text.contains("connection closed") || text.contains("incomplete") {
        "connection closed early"
    } else {
        "transport error"
    }
}

/// `Retry-After` in its delta-seconds form (fractions tolerated); the HTTP-date form is ignored
/// and the policy's own back-off applies.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let secs: f64 = value.parse().ok()?;
    Duration::try_from_secs_f64(secs).ok()
}

async fn read_capped(
    mut response: reqwest::Response,
    profile: &ResolvedProfile,
) -> std::result::Result<Vec<u8>, AttemptError> {
    let mut body = Vec::new();
    let failure = |e: reqwest::Error| {
        let failure = transport_failure(&e, &profile.endpoint, &profile.redactor);
        AttemptError::transient(AgentError::Unavailable(failure), None)
    };
    while let Some(chunk) = response.chunk().await.map_err(failure)? {
        if body.len() + chunk.len() > MAX_BACKEND_BODY_BYTES {
            return Err(AttemptError::final_(AgentError::InvalidResponse(format!(
                "response body larger than {MAX_BACKEND_BODY_BYTES} bytes"
            ))));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An error with its causes, since reqwest's own message hides the interesting part.
fn error_chain(error: &reqwest::Error) -> String {
    let causes =
        std::iter::successors(Some(error as &(dyn std::error::Error + 'static)), |&cause| cause.source());
    causes.map(ToString::to_string).collect::<Vec<_>>().join(": ")
}

#[cfg(test)]
mod tests {
    use orchestrator_domain::ProfileName;
    use reqwest::header::HeaderValue;
    use secrecy::SecretString;

    use serde_json::Value;

    use super::*;
    use crate::LlmProfile;
    use crate::chat_wire::*;
    use crate::structured_output::FormatMode;

    const KEY: &str = "sk-client-test-0123456789";

    fn resolved(key: Option<&str>) -> ResolvedProfile {
        let mut profile = LlmProfile::new("http://models.internal:8089/v1", "m");
        profile.api_key = key.map(SecretString::from);
        profile.resolve(&ProfileName::new("main").unwrap(), &|_| None).unwrap()
    }

    fn reply(body: &str) -> std::result::Result<ChatReply, AgentError> {
        parse_reply(body.as_bytes(), &resolved(None))
    }

    #[test]
    fn reads_text_usage_and_finish_reason() {
        let r = reply(
            r#"{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":" hi "},"finish_reason":"stop"}],
               "usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15},"extra":{"a":1}}"#,
        )
        .unwrap();
        assert_eq!(
            r,
            ChatReply {
                text: "hi".into(),
                prompt_tokens: 12,
                completion_tokens: 3,
                finish_reason: Some("stop".into())
            }
        );
        assert!(!r.truncated());
    }

    #[test]
    fn finish_reason_length_means_truncated() {
        let r =
            reply(r#"{"choices":[{"message":{"content":"half an ans"},"finish_reason":"length"}]}"#).unwrap();
        assert!(r.truncated());
        assert_eq!(r.finish_reason_for_logs(), "length");
        let r =
            reply(r#"{"choices":[{"message":{"content":"a"},"finish_reason":"sk-weird-value"}]}"#).unwrap();
        assert!(!r.truncated());
        assert_eq!(r.finish_reason_for_logs(), "other");
    }

    #[test]
    fn tolerates_missing_or_odd_usage_and_finish_reason() {
        let r = reply(r#"{"choices":[{"message":{"content":"a"}}]}"#).unwrap();
        assert_eq!((r.prompt_tokens, r.completion_tokens, r.finish_reason), (0, 0, None));
        let r =
            reply(r#"{"choices":[{"message":{"content":"a"},"finish_reason":null}],"usage":null}"#).unwrap();
        assert_eq!((r.prompt_tokens, r.finish_reason), (0, None));
        let r = reply(r#"{"choices":[{"message":{"content":"a"},"finish_reason":7}],"usage":{"prompt_tokens":"5","completion_tokens":2.0}}"#).unwrap();
        assert_eq!((r.prompt_tokens, r.completion_tokens, r.finish_reason), (5, 2, None));
        let r = reply(r#"{"choices":[{"message":{"content":"a"},"finish_reason":"eos_token"}],"usage":{"prompt_tokens":-1}}"#).unwrap();
        assert_eq!((r.prompt_tokens, r.finish_reason.as_deref()), (0, Some("eos_token")));
    }

    #[test]
    fn joins_text_parts_and_reads_legacy_text() {
        let r = reply(r#"{"choices":[{"message":{"content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}}]}"#).unwrap();
        assert_eq!(r.text, "ab");
        assert_eq!(reply(r#"{"choices":[{"text":"legacy"}]}"#).unwrap().text, "legacy");
    }

    #[test]
    fn unusable_bodies_are_invalid_responses() {
        for body in [
            "not json",
            "{\"choices\": [",
            "{\"choices\": []}",
            "{\"choices\": null}",
            "{}",
            "{\"choices\":[{\"message\":{\"content\":\"  \"}}]}",
            "{\"choices\":[{\"message\":{\"content\":null}}]}",
            "[1,2]",
        ] {
            assert!(matches!(reply(body), Err(AgentError::InvalidResponse(_))), "{body}");
        }
        let err = reply(r#"{"error":{"message":"model overloaded"}}"#).unwrap_err();
        assert_eq!(
            err,
            AgentError::InvalidResponse(
                "the reply is not a chat completion (no choices; the server sent an error object)".into()
            )
        );
    }

    #[test]
    fn invalid_bodies_are_described_without_quoting_them() {
        let profile = resolved(Some(KEY));
        let cases = [
            (format!(r#"{{"choices": "quoted {KEY}"}}"#), "a value has the wrong type at line 1 column "),
            (
                format!(
                    r#"{{"error": {{"message": "quoted {KEY}", "headers": {{"authorization": "Bearer {KEY}"}}}}}}"#
                ),
                "no choices; the server sent an error object",
            ),
            (format!("quoted {KEY}"), "not valid JSON at line 1 column 1"),
            (
                format!(r#"{{"choices": [{{"message": "quoted {KEY}""#),
                "a value has the wrong type at line 1 column ",
            ),
            ("{\"choices\": [".to_owned(), "the JSON ends early"),
        ];
        for (body, reason) in cases {
            let err = parse_reply(body.as_bytes(), &profile).unwrap_err();
            let text = format!("{err} {err:?}");
            assert!(!text.contains("quoted") && !text.contains(&KEY[..8]), "{text}");
            assert!(text.contains(&format!("{NOT_A_CHAT_COMPLETION} ({reason}")), "{body}: {text}");
        }
    }

    #[test]
    fn statuses_are_classified_for_the_retry_policy() {
        use crate::retry::Retry;
        let profile = resolved(None);
        let retry_of = |code: u16| {
            classify(StatusCode::from_u16(code).unwrap(), None, b"oops", &profile).unwrap_err().retry
        };
        for code in [408, 429, 500, 502, 503, 504] {
            assert_eq!(retry_of(code), Retry::After(None), "{code}");
        }
        for code in [400, 401, 403, 404, 413, 422] {
            assert_eq!(retry_of(code), Retry::Never, "{code}");
        }
        let err = classify(StatusCode::BAD_REQUEST, None, b"context too long", &profile).unwrap_err().error;
        assert_eq!(err, AgentError::Rejected("HTTP 400: the model server rejected the request".into()));
        let retry_after = Some(Duration::from_secs(2));
        let err = classify(StatusCode::TOO_MANY_REQUESTS, retry_after, b"slow down", &profile).unwrap_err();
        assert_eq!(err.retry, Retry::After(retry_after));
        assert_eq!(err.error, AgentError::Unavailable("HTTP 429: rate limited by the model server".into()));
        let err = classify(StatusCode::OK, None, b"<html>", &profile).unwrap_err();
        assert_eq!(err.retry, Retry::Never);
        assert!(matches!(err.error, AgentError::InvalidResponse(_)));
    }

    #[test]
    fn refused_credentials_are_a_configuration_fault_that_quotes_nothing() {
        let with_key = resolved(Some(KEY));
        for code in [401u16, 403] {
            let body = format!("Incorrect API key provided: {KEY}");
            let err = classify(StatusCode::from_u16(code).unwrap(), None, body.as_bytes(), &with_key)
                .unwrap_err()
                .error;
            assert_eq!(
                err,
                AgentError::Unauthorized { profile: "main".into(), status: code, key_sent: true }
            );
            assert!(err.is_configuration_fault());
            assert!(!err.to_string().contains("sk-"), "{err}");
        }
        let err = classify(StatusCode::UNAUTHORIZED, None, b"", &resolved(None)).unwrap_err().error;
        assert_eq!(err, AgentError::Unauthorized { profile: "main".into(), status: 401, key_sent: false });
    }

    #[test]
    fn a_missing_endpoint_points_at_the_base_url() {
        let err = classify(StatusCode::NOT_FOUND, None, b"Cannot POST /chat/completions", &resolved(None))
            .unwrap_err()
            .error
            .to_string();
        assert_eq!(
            err,
            "backend rejected the request: HTTP 404: model or path not found; \
             check profiles.main.base_url (it usually ends in /v1) and model"
        );
    }

    #[test]
    fn each_status_is_told_with_a_fixed_phrase_and_none_of_the_body() {
        let profile = resolved(Some(KEY));
        let body = format!("marker-7031\nauthorization: Bearer {KEY}\nhost: models.internal:8089");
        let cases = [
            (400, "the model server rejected the request"),
            (404, "model or path not found"),
            (405, "the model server rejected the request"),
            (408, "the model server timed out waiting for the request"),
            (413, "the request is too large for the model server"),
            (422, "the model server could not process the request"),
            (429, "rate limited by the model server"),
            (500, "the model server failed"),
            (502, "the model server failed"),
            (503, "the model server is unavailable"),
            (504, "the model server failed"),
            (302, "unexpected status from the model server"),
        ];
        for (code, phrase) in cases {
            let status = StatusCode::from_u16(code).unwrap();
            assert_eq!(status_phrase(status), phrase);
            let err = classify(status, None, body.as_bytes(), &profile).unwrap_err().error;
            let text = format!("{err} {err:?}");
            assert!(text.contains(&format!("HTTP {code}: {phrase}")), "{text}");
            assert!(!text.contains("marker-7031") && !text.contains("authorization"), "{text}");
            assert!(!text.contains(&KEY[..8]) && !text.contains("models.internal"), "{text}");
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_ignores_dates() {
        let headers = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(RETRY_AFTER, HeaderValue::from_str(v).unwrap());
            h
        };
        assert_eq!(retry_after(&headers("3")), Some(Duration::from_secs(3)));
        assert_eq!(retry_after(&headers(" 1.5 ")), Some(Duration::from_millis(1500)));
        assert_eq!(retry_after(&headers("Wed, 21 Oct 2015 07:28:00 GMT")), None);
        assert_eq!(retry_after(&headers("-4")), None);
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }

    #[test]
    fn request_body_has_the_openai_shape() {
        let request = ChatRequest {
            model: "m",
            messages: vec![Message { role: "user", content: "hi".into() }],
            temperature: 0.85,
            max_tokens: 7,
            seed: 1001,
            response_format: None,
            stream: false,
        };
        let json: Value = serde_json::to_value(&request).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0.85,
                "max_tokens":7,"seed":1001,"stream":false})
        );
    }

    #[test]
    fn each_mode_sends_its_response_format() {
        use crate::answer_schema;
        let review = answer_schema::review();
        let schema = serde_json::to_value(&review).unwrap();
        let format_of = |mode| {
            let request = ChatRequest {
                model: "m",
                messages: Vec::new(),
                temperature: 0.7,
                max_tokens: 7,
                seed: 1,
                response_format: ResponseFormat::new(mode, &review),
                stream: false,
            };
            serde_json::to_value(&request).unwrap().get("response_format").cloned()
        };
        assert_eq!(
            format_of(FormatMode::JsonSchema),
            Some(serde_json::json!({"type": "json_schema",
                "json_schema": {"name": "review", "strict": true, "schema": schema.clone()}}))
        );
        assert_eq!(
            format_of(FormatMode::JsonObject),
            Some(serde_json::json!({"type": "json_object", "schema": schema}))
        );
        assert_eq!(format_of(FormatMode::Off), None, "off sends no response_format at all");
    }

    #[test]
    fn failures_that_may_refuse_the_format_are_marked_and_others_not() {
        let profile = resolved(None);
        let refusal = |code: u16, body: &str| {
            classify(StatusCode::from_u16(code).unwrap(), None, body.as_bytes(), &profile)
                .unwrap_err()
                .format_refusal
        };
        assert!(refusal(400, "anything"));
        assert!(refusal(500, "('body', 'response_format', 'type')"));
        assert!(!refusal(500, "out of memory"));
        assert!(!refusal(401, "response_format"));
        assert!(!classify(StatusCode::OK, None, b"not json", &profile).unwrap_err().format_refusal);
    }
}
