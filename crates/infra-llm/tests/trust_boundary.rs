//! What a model server sends is data: against fake servers that echo our request — the
//! `authorization: Bearer <key>` header included, plainly or `\u`-escaped, spaced out or
//! reversed — in error bodies and in completions, the key and the server's address must reach
//! no error, no log line and no returned text, and error bodies reach no error at all (only the
//! debug log, redacted); refused credentials are a configuration fault; truncation, echoed
//! delimiters and echoed templates are reported for what they are.

mod support;

use orchestrator_application::ports::{AgentBackend, AgentError};
use orchestrator_domain::TestOutcome;
use orchestrator_infra_llm::StructuredOutput;
use orchestrator_infra_llm::prompts::REVIEW_JSON_TEMPLATE;
use orchestrator_infra_llm::review_parse::TEMPLATE_ECHO_CRITIQUE;
use orchestrator_test_support::logs::capture_logs;
use secrecy::SecretString;
use serde_json::json;
use support::{agent, backend, completion, profile, refused_base_url, task};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const KEY: &str = "sk-proj-Zx81kQ0pLm3nB7vC5xT2wR9y";
const ENDPOINT: &str = "/v1/chat/completions";

/// The request's headers, one `name: value` a line (`authorization` first, so it falls within
/// an excerpt), as a debugging proxy would echo them.
fn echoed_headers(request: &Request) -> String {
    let mut echo = format!("{} {} from you:\n", request.method, request.url);
    let mut headers: Vec<_> = request.headers.iter().collect();
    headers.sort_by_key(|(name, _)| name.as_str() != "authorization");
    for (name, value) in headers {
        echo.push_str(&format!("{name}: {}\n", value.to_str().unwrap_or("?")));
    }
    echo
}

/// A server answering `status` with a body that echoes the request's headers.
async fn echoing_server(status: u16) -> (MockServer, String) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(ENDPOINT))
        .respond_with(move |request: &Request| {
            ResponseTemplate::new(status)
                .set_body_string(format!("upstream said no. {}", echoed_headers(request)))
        })
        .mount(&server)
        .await;
    let base_url = format!("{}/v1", server.uri());
    (server, base_url)
}

/// Every way the key could show: whole, or a fragment of 8 characters or more.
fn assert_no_key(text: &str, what: &str) {
    for fragment in [KEY, &KEY[..12], &KEY[KEY.len() - 12..], &KEY[8..20]] {
        assert!(!text.contains(fragment), "{what} holds {fragment:?}: {text}");
    }
}

#[tokio::test]
async fn error_bodies_echoing_the_key_leak_it_into_no_error_and_no_log() {
    for status in [400u16, 429, 500, 502] {
        let (_guard, logs) = capture_logs();
        let (server, base_url) = echoing_server(status).await;
        let backend = backend(profile(&base_url, |p| {
            p.api_key = Some(SecretString::from(KEY));
            p.max_retries = 1;
        }));

        let error = backend.propose(&agent(0), &task()).await.unwrap_err();

        let received = server.received_requests().await.expect("recording is on");
        assert_eq!(received[0].headers.get("authorization").unwrap(), &format!("Bearer {KEY}"));
        let echoed = echoed_headers(&received[0]);
        assert!(echoed.contains(KEY), "the fake server did echo the key: {echoed}");
        let shown = format!("{error} | {error:?}");
        assert_no_key(&shown, &format!("the HTTP {status} error"));
        let address = server.address().to_string();
        assert!(!shown.contains(&address), "the error names the server: {shown}");
        assert!(!shown.contains(&server.uri()), "{shown}");
        assert!(shown.contains("profile \"default\""), "{shown}");
        assert!(shown.contains(&format!("HTTP {status}: ")), "{shown}");
        assert!(!shown.contains("upstream said no") && !shown.contains("authorization"), "{shown}");
        let logs = logs.text();
        assert!(logs.contains("llm call failed"), "logs were captured: {logs}");
        assert_no_key(&logs, "the logs");
        let body_line = logs.lines().find(|line| line.contains("upstream said no"));
        assert!(
            body_line
                .is_some_and(|line| line.contains(" DEBUG ") && line.contains("authorization: [REDACTED]")),
            "the body is logged at debug, saying what was hidden: {logs}"
        );
    }
}

#[tokio::test]
async fn a_completion_echoing_the_key_is_returned_with_the_key_redacted() {
    let (_guard, logs) = capture_logs();
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(ENDPOINT))
        .respond_with(|request: &Request| {
            let text = format!("Sure! Here is what I received:\n{}", echoed_headers(request));
            ResponseTemplate::new(200).set_body_json(completion(&text, Some((5, 5))))
        })
        .mount(&server)
        .await;
    let backend =
        backend(profile(&format!("{}/v1", server.uri()), |p| p.api_key = Some(SecretString::from(KEY))));
    let (agent, task) = (agent(0), task());

    let proposal = backend.propose(&agent, &task).await.unwrap();
    let review = backend.review(&agent, &task, "p", &TestOutcome::no_tests()).await.unwrap();
    let selection = backend.select(&agent, &task, &["a".into(), "b".into()]).await.unwrap();

    assert_no_key(&proposal.text, "the proposal");
    assert!(proposal.text.contains("authorization: Bearer [REDACTED]"), "{}", proposal.text);
    // The rest of the model's text is data we return as it is.
    assert!(proposal.text.contains("content-type: application/json"), "{}", proposal.text);
    assert_no_key(&review.critique, "the critique");
    assert_no_key(&selection.rationale, "the rationale");
    let logs = logs.text();
    assert!(logs.contains("the model's answer contained the profile's API key"), "{logs}");
    assert_no_key(&logs, "the logs");
}

#[tokio::test]
async fn a_refused_connection_names_the_profile_and_not_the_url() {
    let (_guard, logs) = capture_logs();
    let (_bound, base_url) = refused_base_url();
    let port = base_url.rsplit(':').next().unwrap().trim_end_matches("/v1").to_owned();

    let error = backend(profile(&base_url, |_| {})).propose(&agent(0), &task()).await.unwrap_err();

    assert_eq!(
        error,
        AgentError::Unavailable(
            "profile \"default\": cannot connect to the model server (connection refused)".into()
        )
    );
    assert!(!format!("{error:?}").contains(&port), "{error:?}");
    let logs = logs.text();
    assert!(
        logs.contains("model server transport failure") && logs.contains(&base_url),
        "our own debug line names the URL for operators: {logs}"
    );
}

#[tokio::test]
async fn refused_credentials_are_a_configuration_fault_and_never_retried() {
    for (status, key) in [(401u16, Some(KEY)), (403, Some(KEY)), (401, None)] {
        let (_guard, logs) = capture_logs();
        let (server, base_url) = echoing_server(status).await;
        let backend = backend(profile(&base_url, |p| {
            p.api_key = key.map(SecretString::from);
            p.max_retries = 3;
        }));

        let error = backend.propose(&agent(0), &task()).await.unwrap_err();

        assert_eq!(
            error,
            AgentError::Unauthorized { profile: "default".into(), status, key_sent: key.is_some() }
        );
        assert!(error.is_configuration_fault());
        assert!(error.to_string().contains("profiles.default.api_key"), "{error}");
        assert_eq!(server.received_requests().await.unwrap().len(), 1, "HTTP {status} is not retried");
        assert_no_key(&logs.text(), "the logs");
    }
}

#[tokio::test]
async fn a_completion_cut_at_max_tokens_is_marked_truncated() {
    let server = MockServer::start().await;
    let mut cut = completion("fn rev(s: &str) -> String { s.chars().rev().coll", Some((40, 16)));
    cut["choices"][0]["finish_reason"] = json!("length");
    Mock::given(method("POST"))
        .and(path(ENDPOINT))
        .respond_with(ResponseTemplate::new(200).set_body_json(cut))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(ENDPOINT))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion("done", None)))
        .mount(&server)
        .await;
    let backend = backend(profile(&format!("{}/v1", server.uri()), |p| p.max_tokens = 16));
    let (agent, task) = (agent(0), task());

    let proposal = backend.propose(&agent, &task).await.unwrap();
    let revision = backend.revise(&agent, &task, "draft", &TestOutcome::no_tests(), &[]).await.unwrap();
    let finished = backend.propose(&agent, &task).await.unwrap();

    assert!(proposal.truncated && revision.truncated);
    assert!(proposal.text.ends_with(".coll"), "the cut text is kept: {}", proposal.text);
    assert!(!finished.truncated);
}

#[tokio::test]
async fn echoed_prompt_delimiters_never_reach_a_proposal() {
    let cases = [
        ("<<<\ndef f():\n    return 1\n>>>", "def f():\n    return 1"),
        ("<<< PROPOSAL\nUse a token bucket per key.\n>>>", "Use a token bucket per key."),
        (
            "<<<PROPOSAL\n1. Handle empty strings.\n2. Ship unit tests.",
            "1. Handle empty strings.\n2. Ship unit tests.",
        ),
        (
            "<<<fn rev(s: &str) -> String { s.chars().rev().collect() }>>>",
            "fn rev(s: &str) -> String { s.chars().rev().collect() }",
        ),
    ];
    for (raw, expected) in cases {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(ENDPOINT))
            .respond_with(ResponseTemplate::new(200).set_body_json(completion(raw, None)))
            .mount(&server)
            .await;
        let backend = backend(profile(&format!("{}/v1", server.uri()), |_| {}));

        let proposal = backend.propose(&agent(0), &task()).await.unwrap();
        let revision =
            backend.revise(&agent(0), &task(), "draft", &TestOutcome::no_tests(), &[]).await.unwrap();

        assert_eq!(proposal.text, expected, "{raw:?}");
        assert_eq!(revision.text, expected, "{raw:?}");
    }
}

#[tokio::test]
async fn an_answer_of_delimiters_only_is_an_invalid_response() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(ENDPOINT))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion("<<<\n>>>", None)))
        .mount(&server)
        .await;

    let error = backend(profile(&format!("{}/v1", server.uri()), |_| {}))
        .propose(&agent(0), &task())
        .await
        .unwrap_err();

    assert!(
        matches!(&error, AgentError::InvalidResponse(m) if m.contains("only prompt delimiters")),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_review_echoing_the_prompt_template_is_not_a_grade() {
    let texts = [REVIEW_JSON_TEMPLATE.to_owned(), REVIEW_JSON_TEMPLATE.replace("<0-10>", "0")];
    for (text, mode) in texts.iter().flat_map(|t| [(t, StructuredOutput::Off), (t, StructuredOutput::Auto)]) {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(ENDPOINT))
            .respond_with(ResponseTemplate::new(200).set_body_json(completion(text, None)))
            .mount(&server)
            .await;
        let backend = backend(profile(&format!("{}/v1", server.uri()), |p| p.structured_output = mode));

        let review =
            backend.review(&agent(0), &task(), "fn rev() {}", &TestOutcome::no_tests()).await.unwrap();

        assert_eq!(
            (review.score, review.critique.as_str()),
            (None, TEMPLATE_ECHO_CRITIQUE),
            "{mode}: {text}"
        );
        assert!(review.issues.is_empty());
        // The template the parser recognises is the one a free-text prompt shows.
        let sent = server.received_requests().await.unwrap();
        let user = sent[0].body_json::<serde_json::Value>().unwrap()["messages"][1]["content"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(user.contains(REVIEW_JSON_TEMPLATE), mode == StructuredOutput::Off, "{user}");
    }
}

/// The key of the encoding tests: short enough that its reversal is no 24-character run, which
/// the generic patterns would have caught anyway.
const SHORT_KEY: &str = "sk-test-Qm7Hv2Lx";
/// Text the fake servers put in their bodies, so a test can tell whether any of a body got out.
const MARKER: &str = "ECHO-MARKER-4471";

/// Error bodies echoing the key in the three encodings redaction once missed: `\u`-escaped
/// JSON, spaced out, reversed — each with the marker.
fn encoded_echoes() -> [(&'static str, String); 3] {
    let escaped: String = SHORT_KEY.chars().map(|c| format!("\\u{:04x}", u32::from(c))).collect();
    let header = format!("authorization: Bearer {SHORT_KEY}");
    let spaced = header.chars().map(String::from).collect::<Vec<_>>().join(" ");
    let reversed: String = header.chars().rev().collect();
    [
        ("escaped", format!(r#"{{"error":"{MARKER} bad request","you_sent":"{escaped}"}}"#)),
        ("spaced", format!("{MARKER} bad request; you sent: {spaced}")),
        ("reversed", format!("{MARKER} bad request; you sent: {reversed}")),
    ]
}

/// `\uXXXX` escapes resolved, as a JSON reader would (unpaired surrogates become U+FFFD).
fn unescape(text: &str) -> String {
    let mut units = Vec::new();
    let mut out = String::new();
    let mut rest = text;
    loop {
        let hex = rest
            .strip_prefix("\\u")
            .and_then(|r| r.get(..4))
            .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
        if let Some(hex) = hex {
            units.push(u16::from_str_radix(hex, 16).expect("four hex digits"));
            rest = &rest[6..];
            continue;
        }
        out.extend(char::decode_utf16(units.drain(..)).map(|c| c.unwrap_or('\u{FFFD}')));
        let Some(c) = rest.chars().next() else { return out };
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
}

/// Every way a reader could decode `text`: as it is, unescaped, without whitespace, reversed.
fn readings(text: &str) -> [String; 4] {
    let unescaped = unescape(text);
    let compact: String = unescaped.chars().filter(|c| !c.is_whitespace()).collect();
    let reversed: String = compact.chars().rev().collect();
    [text.to_owned(), unescaped, compact, reversed]
}

/// No reading of `text` holds 8 or more characters of `key` in a row.
fn assert_no_key_in_any_reading(text: &str, key: &str, what: &str) {
    for reading in readings(text) {
        for fragment in key.as_bytes().windows(8) {
            let fragment = std::str::from_utf8(fragment).expect("test keys are ASCII");
            assert!(!reading.contains(fragment), "{what} holds {fragment:?} once decoded: {text}");
        }
    }
}

/// A server answering every chat completion with `status` and `body`.
async fn answering_server(status: u16, body: String) -> (MockServer, String) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(ENDPOINT))
        .respond_with(ResponseTemplate::new(status).set_body_string(body))
        .mount(&server)
        .await;
    let base_url = format!("{}/v1", server.uri());
    (server, base_url)
}

#[tokio::test]
async fn an_http_400_echoing_the_key_escaped_spaced_or_reversed_tells_the_client_only_the_status() {
    for (encoding, body) in encoded_echoes() {
        let (_server, base_url) = answering_server(400, body).await;
        let backend = backend(profile(&base_url, |p| p.api_key = Some(SecretString::from(SHORT_KEY))));

        let error = backend.propose(&agent(0), &task()).await.unwrap_err();

        let shown = format!("{error} | {error:?}");
        assert!(!shown.contains(MARKER), "the {encoding} body reached the error: {shown}");
        assert_no_key_in_any_reading(&shown, SHORT_KEY, &format!("the error of the {encoding} body"));
        assert_eq!(
            error,
            AgentError::Rejected(
                "profile \"default\": HTTP 400: the model server rejected the request".into()
            ),
            "{encoding}"
        );
    }
}

#[tokio::test]
async fn error_bodies_reach_only_debug_logs_redacted_whatever_the_encoding_of_the_key() {
    for (encoding, body) in encoded_echoes() {
        for status in [400u16, 503] {
            let (_guard, logs) = capture_logs();
            let (_server, base_url) = answering_server(status, body.clone()).await;
            let backend = backend(profile(&base_url, |p| p.api_key = Some(SecretString::from(SHORT_KEY))));

            backend.propose(&agent(0), &task()).await.unwrap_err();

            let logs = logs.text();
            assert!(logs.contains("llm call failed"), "the logs were captured: {logs}");
            assert_no_key_in_any_reading(
                &logs,
                SHORT_KEY,
                &format!("the logs of the {encoding} HTTP {status}"),
            );
            let quoting: Vec<&str> = logs.lines().filter(|line| line.contains(MARKER)).collect();
            assert!(!quoting.is_empty(), "the {encoding} HTTP {status} body is logged for operators: {logs}");
            for line in quoting {
                assert!(line.contains(" DEBUG ") && line.contains("profile=default"), "{line}");
                assert!(line.contains("[REDACTED]"), "the {encoding} key is redacted: {line}");
            }
        }
    }
}

#[tokio::test]
async fn a_reply_that_is_no_chat_completion_quotes_none_of_its_body() {
    let bodies = [
        json!({"choices": format!("{MARKER} {SHORT_KEY}")}).to_string(),
        json!({"error": {"message": format!("{MARKER} overloaded"), "key": SHORT_KEY}}).to_string(),
        format!("<html>{MARKER} {SHORT_KEY}</html>"),
    ];
    for body in bodies {
        let (_guard, logs) = capture_logs();
        let (_server, base_url) = answering_server(200, body.clone()).await;
        let backend = backend(profile(&base_url, |p| p.api_key = Some(SecretString::from(SHORT_KEY))));

        let error = backend.propose(&agent(0), &task()).await.unwrap_err();

        let shown = format!("{error} | {error:?}");
        assert!(!shown.contains(MARKER), "the body reached the error: {shown}");
        assert_no_key_in_any_reading(&shown, SHORT_KEY, "the error");
        assert!(
            matches!(&error, AgentError::InvalidResponse(m) if m.contains("the reply is not a chat completion")),
            "{error:?}"
        );
        let logs = logs.text();
        assert_no_key_in_any_reading(&logs, SHORT_KEY, "the logs");
        for line in logs.lines().filter(|line| line.contains(MARKER)) {
            assert!(line.contains(" DEBUG "), "{line}");
        }
        assert!(logs.contains(MARKER), "the body is logged for operators at debug: {logs}");
    }
}
