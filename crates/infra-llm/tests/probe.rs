//! `OpenAiBackend::probe` against fake model servers: a model list with and without the
//! profile's model, a base URL missing `/v1`, a refused key, a refused port, a busy server (it
//! takes the connection and does not answer) told from a down one.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use orchestrator_application::ports::BackendProber;
use orchestrator_domain::ProfileName;
use orchestrator_infra_llm::{OpenAiBackend, ProfileProbe};
use orchestrator_test_support::logs::capture_logs;
use secrecy::SecretString;
use serde_json::json;
use support::{backend, profile, refused_base_url};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A hang guard only: probes end within their own timeout, far sooner.
const GUARD: Duration = Duration::from_secs(60);

async fn models_server(response: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET")).and(path("/v1/models")).respond_with(response).mount(&server).await;
    server
}

fn model_list(ids: &[&str]) -> ResponseTemplate {
    let data: Vec<_> = ids.iter().map(|id| json!({"id": id, "object": "model", "owned_by": "me"})).collect();
    ResponseTemplate::new(200).set_body_json(json!({"object": "list", "data": data}))
}

async fn probe_one(backend: &OpenAiBackend) -> ProfileProbe {
    let mut probes = tokio::time::timeout(GUARD, backend.probe()).await.expect("the probe returned");
    assert_eq!(probes.len(), 1);
    probes.remove(0)
}

#[tokio::test]
async fn a_server_listing_the_model_is_ok_and_gets_the_key() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .and(header("authorization", "Bearer sk-probe-key-123456"))
        .respond_with(model_list(&["other", "test-model"]))
        .expect(1)
        .mount(&server)
        .await;
    let backend = backend(profile(&format!("{}/v1", server.uri()), |p| {
        p.api_key = Some(SecretString::from("sk-probe-key-123456"));
    }));

    let probe = probe_one(&backend).await;

    assert_eq!(
        probe,
        ProfileProbe {
            profile: ProfileName::default_profile(),
            url: format!("{}/v1/models", server.uri()),
            reachable: true,
            busy: false,
            status: Some(200),
            model_listed: Some(true),
            hint: None,
            summary: "reachable; model \"test-model\" is served".to_owned(),
        }
    );
    assert!(probe.is_ok());
    server.verify().await;
}

#[tokio::test]
async fn a_model_missing_from_the_list_is_named_with_up_to_five_available_ids() {
    let ids = ["m1", "m2", "m3", "m4", "m5", "m6", "m7"];
    let server = models_server(model_list(&ids)).await;
    let backend = backend(profile(&format!("{}/v1", server.uri()), |_| {}));

    let probe = probe_one(&backend).await;

    assert_eq!((probe.reachable, probe.status, probe.model_listed), (true, Some(200), Some(false)));
    assert!(!probe.is_ok());
    let hint = probe.hint.unwrap();
    assert!(hint.contains("model \"test-model\" is not in the server's list"), "{hint}");
    assert!(hint.contains("available: m1, m2, m3, m4, m5 and 2 more"), "{hint}");
    assert!(!hint.contains("m6"), "{hint}");
    assert!(hint.contains("profiles.default.model"), "{hint}");
}

#[tokio::test]
async fn a_404_on_a_base_url_without_v1_suggests_adding_it() {
    // The server serves /v1/models; the profile forgot /v1, so /models is a 404.
    let server = models_server(model_list(&["test-model"])).await;
    let backend = backend(profile(&server.uri(), |_| {}));

    let probe = probe_one(&backend).await;

    assert_eq!((probe.reachable, probe.status, probe.model_listed), (true, Some(404), None));
    let hint = probe.hint.unwrap();
    assert!(hint.contains("the base URL may be missing /v1"), "{hint}");
    assert!(hint.contains(&format!("try {}/v1", server.uri())), "{hint}");
}

#[tokio::test]
async fn a_404_on_a_v1_base_url_asks_to_check_it() {
    let server = MockServer::start().await;
    let backend = backend(profile(&format!("{}/v1", server.uri()), |_| {}));

    let probe = probe_one(&backend).await;

    assert_eq!(probe.status, Some(404));
    let hint = probe.hint.unwrap();
    assert!(hint.contains("check profiles.default.base_url") && !hint.contains("missing /v1"), "{hint}");
}

#[tokio::test]
async fn a_refused_key_is_named_as_such() {
    let server =
        models_server(ResponseTemplate::new(401).set_body_string("bad key sk-probe-key-123456")).await;
    let backend = backend(profile(&format!("{}/v1", server.uri()), |p| {
        p.api_key = Some(SecretString::from("sk-probe-key-123456"));
    }));

    let probe = probe_one(&backend).await;

    assert_eq!((probe.reachable, probe.status, probe.model_listed), (true, Some(401), None));
    let hint = probe.hint.unwrap();
    assert!(hint.contains("refused the API key (HTTP 401)"), "{hint}");
    assert!(hint.contains("profiles.default.api_key") && !hint.contains("sk-probe"), "{hint}");
}

#[tokio::test]
async fn a_refused_port_is_unreachable_and_asks_whether_the_server_runs() {
    let (_bound, base_url) = refused_base_url();
    let backend = backend(profile(&base_url, |_| {}));

    let probe = probe_one(&backend).await;

    assert_eq!((probe.reachable, probe.status, probe.model_listed), (false, None, None));
    let hint = probe.hint.unwrap();
    assert!(hint.contains("connection refused"), "{hint}");
    assert!(hint.contains(&format!("is the model server running at {base_url}?")), "{hint}");
}

#[tokio::test]
async fn a_hung_server_is_busy_given_up_on_at_the_timeout_while_other_profiles_answer() {
    let hung = models_server(model_list(&["test-model"]).set_delay(Duration::from_secs(600))).await;
    let fine = models_server(model_list(&["test-model"])).await;
    let backend = OpenAiBackend::new(BTreeMap::from([
        (ProfileName::new("hung").unwrap(), profile(&format!("{}/v1", hung.uri()), |_| {})),
        (ProfileName::new("fine").unwrap(), profile(&format!("{}/v1", fine.uri()), |_| {})),
    ]))
    .unwrap();

    let probes = tokio::time::timeout(GUARD, backend.probe_within(Duration::from_millis(300))).await.unwrap();

    // In profile order: "fine", then "hung".
    assert_eq!(probes.len(), 2);
    assert_eq!(probes[0].profile.as_str(), "fine");
    assert!(probes[0].is_ok(), "{:?}", probes[0]);
    assert_eq!((probes[1].reachable, probes[1].busy, probes[1].status), (false, true, None));
    assert!(probes[1].is_ok(), "busy is usable");
    let hint = probes[1].hint.as_deref().unwrap();
    assert!(hint.contains("did not answer GET /models within 300 ms: busy"), "{hint}");
}

/// A server that takes connections (the kernel's backlog does) and never answers: a
/// llama.cpp server in the middle of a long completion, as the probe sees it.
fn silent_base_url() -> (std::net::TcpListener, String) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port to listen on");
    let url = format!("http://{}/v1", listener.local_addr().expect("the bound address"));
    (listener, url)
}

#[tokio::test]
async fn a_server_that_accepts_and_never_answers_is_busy_not_down_in_one_wording() {
    let (_listening, base_url) = silent_base_url();
    let backend = backend(profile(&base_url, |_| {}));

    let probes = tokio::time::timeout(GUARD, backend.probe_within(Duration::from_millis(300))).await.unwrap();
    let health =
        tokio::time::timeout(GUARD, backend.probe_backends(Duration::from_millis(300))).await.unwrap();

    let probe = &probes[0];
    assert_eq!((probe.reachable, probe.busy, probe.status, probe.model_listed), (false, true, None, None));
    assert!(probe.is_ok());
    let wording = ProfileProbe::busy_message(Duration::from_millis(300));
    assert_eq!(probe.summary, wording);
    assert_eq!(probe.hint.as_deref(), Some(wording.as_str()));
    let health = &health[0];
    assert!(health.ok && !health.reachable && health.is_busy(), "{health:?}");
    assert_eq!((health.verdict(), health.message.as_str()), ("busy", wording.as_str()));
    assert_eq!(health.operator_detail, format!("{}/models: {wording}", base_url));
}

#[tokio::test]
async fn a_closed_port_is_down_a_problem_and_never_busy() {
    let (_bound, base_url) = refused_base_url();
    let backend = backend(profile(&base_url, |_| {}));

    let health =
        tokio::time::timeout(GUARD, backend.probe_backends(Duration::from_millis(300))).await.unwrap();

    let health = &health[0];
    assert!(!health.ok && !health.reachable && !health.is_busy(), "{health:?}");
    assert_eq!(health.verdict(), "PROBLEM");
    assert!(health.message.starts_with("not reachable: cannot connect"), "{}", health.message);
    assert!(health.message.contains("connection refused"), "{}", health.message);
}

#[tokio::test]
async fn a_non_list_answer_is_reachable_without_a_verdict_on_the_model() {
    let server = models_server(ResponseTemplate::new(200).set_body_string("<html>hello</html>")).await;
    let backend = backend(profile(&format!("{}/v1", server.uri()), |_| {}));

    let probe = probe_one(&backend).await;

    assert_eq!((probe.reachable, probe.status, probe.model_listed), (true, Some(200), None));
    assert!(probe.is_ok());
    assert!(probe.hint.unwrap().contains("not a model list"));
}

#[tokio::test]
async fn the_status_port_reports_each_case_in_words_that_never_name_the_server() {
    let listed = models_server(model_list(&["test-model"])).await;
    let unlisted = models_server(model_list(&["other"])).await;
    let no_v1 = models_server(model_list(&["test-model"])).await;
    let (_bound, refused) = refused_base_url();
    let profiles = [
        ("listed", format!("{}/v1", listed.uri())),
        ("unlisted", format!("{}/v1", unlisted.uri())),
        ("no-v1", no_v1.uri()),
        ("refused", refused.clone()),
    ];
    let backend = OpenAiBackend::new(
        profiles.iter().map(|(name, url)| (ProfileName::new(*name).unwrap(), profile(url, |_| {}))).collect(),
    )
    .unwrap();

    let health = tokio::time::timeout(GUARD, backend.probe_backends(Duration::from_secs(2))).await.unwrap();

    // In profile order: listed, no-v1, refused, unlisted.
    let verdicts: Vec<_> =
        health.iter().map(|h| (h.profile.as_str(), h.reachable, h.model_listed, h.ok)).collect();
    assert_eq!(
        verdicts,
        vec![
            ("listed", true, Some(true), true),
            ("no-v1", true, None, false),
            ("refused", false, None, false),
            ("unlisted", true, Some(false), false),
        ]
    );
    assert_eq!(health[0].message, "reachable; model \"test-model\" is served");
    assert!(
        health[1].message.contains("missing /v1 (check profiles.no-v1.base_url)"),
        "{}",
        health[1].message
    );
    assert!(health[2].message.starts_with("not reachable: cannot connect"), "{}", health[2].message);
    assert!(health[3].message.contains("not in the server's list; check profiles.unlisted.model"));
    for (h, (_, url)) in health.iter().zip([&profiles[0], &profiles[2], &profiles[3], &profiles[1]]) {
        let host = url.trim_start_matches("http://").split('/').next().unwrap();
        assert!(!h.message.contains(host), "the client message names the server: {}", h.message);
        assert!(
            h.operator_detail.contains(host),
            "the operator detail names the server: {}",
            h.operator_detail
        );
    }
}

#[tokio::test]
async fn an_error_answer_is_named_by_its_status_and_its_body_is_only_logged_at_debug() {
    const MARKER: &str = "PROBE-MARKER-9052";
    for status in [400u16, 500] {
        let (_guard, logs) = capture_logs();
        let body = format!("{MARKER} bad request; you sent: authorization: Bearer sk-probe-key-123456");
        let server = models_server(ResponseTemplate::new(status).set_body_string(body)).await;
        let backend = backend(profile(&format!("{}/v1", server.uri()), |p| {
            p.api_key = Some(SecretString::from("sk-probe-key-123456"));
        }));

        let probe = probe_one(&backend).await;

        assert_eq!((probe.reachable, probe.status, probe.model_listed), (true, Some(status), None));
        let health = probe.clone().into_health();
        for shown in [probe.hint.clone().unwrap_or_default(), probe.summary.clone(), health.operator_detail] {
            assert!(shown.contains(&format!("HTTP {status}")), "{shown}");
            assert!(!shown.contains(MARKER) && !shown.contains("sk-probe"), "the body got out: {shown}");
        }
        let logs = logs.text();
        let quoting: Vec<&str> = logs.lines().filter(|line| line.contains(MARKER)).collect();
        assert!(!quoting.is_empty(), "the body is logged for operators: {logs}");
        for line in quoting {
            assert!(line.contains(" DEBUG ") && line.contains("profile=default"), "{line}");
            assert!(line.contains("authorization: [REDACTED]") && !line.contains("sk-probe"), "{line}");
        }
    }
}
