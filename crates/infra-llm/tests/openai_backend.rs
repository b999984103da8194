//! The OpenAI-compatible backend against local fake servers: wiremock for canned answers, raw
//! TCP servers (see `support`) for dripping bodies, concurrency counting and cancellation.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::future::join_all;
use orchestrator_application::ports::{AgentBackend, AgentError};
use orchestrator_domain::{AgentId, PeerScore, ProfileName, Review, TestOutcome};
use secrecy::SecretString;
use serde_json::{Value, json};
use support::{REQUIREMENTS, RUBRIC, agent, backend, completion, profile, task};
use tokio::time::Instant;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const ENDPOINT: &str = "/v1/chat/completions";

async fn server() -> (MockServer, String) {
    let server = MockServer::start().await;
    let base_url = format!("{}/v1", server.uri());
    (server, base_url)
}

async fn answer(server: &MockServer, response: ResponseTemplate) {
    Mock::given(method("POST")).and(path(ENDPOINT)).respond_with(response).mount(server).await;
}

async fn requests(server: &MockServer) -> Vec<Request> {
    server.received_requests().await.expect("request recording is on")
}

fn body_of(request: &Request) -> Value {
    request.body_json().expect("the backend sends JSON")
}

#[tokio::test]
async fn happy_path_returns_the_text_and_token_usage() {
    let (server, base_url) = server().await;
    answer(&server, ResponseTemplate::new(200).set_body_json(completion("  fn rev() {}  ", Some((42, 7)))))
        .await;

    let reply = backend(profile(&base_url, |_| {})).propose(&agent(0), &task()).await.unwrap();

    assert_eq!(reply.text, "fn rev() {}");
    assert_eq!((reply.usage.prompt_tokens, reply.usage.completion_tokens), (42, 7));
    // Calls and latency are the caller's to fill.
    assert_eq!((reply.usage.calls, reply.usage.latency_ms), (0, 0));
    let sent = body_of(&requests(&server).await[0]);
    assert_eq!(sent["model"], "test-model");
    assert_eq!(sent["max_tokens"], 512);
    assert_eq!(sent["stream"], false);
    assert_eq!(sent["messages"][0]["role"], "system");
    assert_eq!(sent["messages"][1]["role"], "user");
}

#[tokio::test]
async fn an_agents_persona_reaches_the_system_message_of_every_call() {
    let (server, base_url) = server().await;
    answer(&server, ResponseTemplate::new(200).set_body_json(completion("ok", None))).await;
    let backend = backend(profile(&base_url, |_| {}));
    let mut seated = agent(1);
    seated.persona = Some(orchestrator_domain::Persona::new("You always ask for a rollback plan.").unwrap());
    backend.propose(&seated, &task()).await.unwrap();
    backend.review(&seated, &task(), "a plan", &TestOutcome::no_tests()).await.unwrap();
    backend.propose(&agent(0), &task()).await.unwrap();
    let sent = requests(&server).await;
    for request in &sent[..2] {
        let system = body_of(request)["messages"][0]["content"].as_str().unwrap().to_owned();
        assert!(system.ends_with("\n\nYou always ask for a rollback plan."), "{system}");
    }
    let plain = body_of(&sent[2])["messages"][0]["content"].as_str().unwrap().to_owned();
    assert!(!plain.contains("rollback"), "an agent without persona gets only its role's: {plain}");
}

#[tokio::test]
async fn missing_usage_counts_zero_tokens() {
    let (server, base_url) = server().await;
    let body = json!({"choices": [{"message": {"content": "text"}}], "unexpected": [1, 2]});
    answer(&server, ResponseTemplate::new(200).set_body_json(body)).await;

    let reply = backend(profile(&base_url, |_| {})).propose(&agent(0), &task()).await.unwrap();

    assert_eq!(reply.text, "text");
    assert_eq!(reply.usage.total_tokens(), 0);
}

#[tokio::test]
async fn rate_limit_is_retried_after_the_servers_retry_after() {
    let (server, base_url) = server().await;
    Mock::given(method("POST"))
        .and(path(ENDPOINT))
        .respond_with(
            ResponseTemplate::new(429).insert_header("retry-after", "1").set_body_string("slow down"),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    answer(&server, ResponseTemplate::new(200).set_body_json(completion("ok", Some((1, 1))))).await;

    let started = Instant::now();
    let reply = backend(profile(&base_url, |p| p.max_retries = 3)).propose(&agent(0), &task()).await.unwrap();

    assert_eq!(reply.text, "ok");
    assert_eq!(requests(&server).await.len(), 2);
    // Our own first back-off is at most 250 ms, so a wait of a full second is the header's.
    // (A lower bound only: sleeps never end early, so this cannot flake on a slow machine.)
    assert!(started.elapsed() >= Duration::from_secs(1), "retried after {:?}", started.elapsed());
}

#[tokio::test]
async fn persistent_server_errors_give_up_naming_the_attempts() {
    let (server, base_url) = server().await;
    Mock::given(method("POST"))
        .and(path(ENDPOINT))
        .respond_with(ResponseTemplate::new(500).set_body_string("upstream exploded"))
        .expect(3)
        .mount(&server)
        .await;

    let error =
        backend(profile(&base_url, |p| p.max_retries = 2)).propose(&agent(0), &task()).await.unwrap_err();

    let AgentError::Unavailable(message) = &error else { panic!("expected Unavailable, got {error:?}") };
    assert!(
        message.starts_with("profile \"default\": gave up after 3 attempts (retries exhausted)"),
        "{message}"
    );
    assert!(message.ends_with("HTTP 500: the model server failed"), "{message}");
    assert!(!message.contains("upstream exploded"), "the body is not quoted: {message}");
    server.verify().await;
}

#[tokio::test]
async fn client_errors_are_rejected_without_retry() {
    let (server, base_url) = server().await;
    answer(&server, ResponseTemplate::new(400).set_body_string("context length exceeded")).await;

    let error =
        backend(profile(&base_url, |p| p.max_retries = 3)).propose(&agent(0), &task()).await.unwrap_err();

    assert_eq!(
        error,
        AgentError::Rejected("profile \"default\": HTTP 400: the model server rejected the request".into())
    );
    assert_eq!(requests(&server).await.len(), 1);
}

#[tokio::test]
async fn a_hung_server_times_out_on_every_attempt() {
    let (server, base_url) = server().await;
    answer(
        &server,
        ResponseTemplate::new(200).set_body_json(completion("late", None)).set_delay(Duration::from_secs(30)),
    )
    .await;
    let timeout = Duration::from_millis(200);

    let error = backend(profile(&base_url, |p| {
        p.timeout = timeout;
        p.max_retries = 1;
    }))
    .propose(&agent(0), &task())
    .await
    .unwrap_err();

    assert_eq!(error, AgentError::Timeout(timeout));
    assert_eq!(requests(&server).await.len(), 2, "a timeout is transient: one retry expected");
}

#[tokio::test]
async fn a_malformed_body_is_an_invalid_response_and_not_retried() {
    let (server, base_url) = server().await;
    answer(&server, ResponseTemplate::new(200).set_body_raw("{\"choices\": [ oops", "application/json"))
        .await;

    let error =
        backend(profile(&base_url, |p| p.max_retries = 3)).propose(&agent(0), &task()).await.unwrap_err();

    assert!(
        matches!(&error, AgentError::InvalidResponse(m) if m.contains("not a chat completion")),
        "{error:?}"
    );
    assert_eq!(requests(&server).await.len(), 1);
}

#[tokio::test]
async fn empty_choices_are_an_invalid_response() {
    let (server, base_url) = server().await;
    answer(&server, ResponseTemplate::new(200).set_body_json(json!({"choices": []}))).await;

    let error = backend(profile(&base_url, |_| {})).propose(&agent(0), &task()).await.unwrap_err();

    assert!(matches!(error, AgentError::InvalidResponse(_)), "{error:?}");
}

#[tokio::test]
async fn a_body_dripping_slower_than_the_timeout_times_out() {
    // Headers arrive at once; the body would take ~200 bytes × 20 ms = 4 s.
    let body = completion("a complete answer that is sent very slowly", None).to_string();
    let base_url = support::drip_server(body, Duration::from_millis(20)).await;
    let timeout = Duration::from_millis(300);

    let error =
        backend(profile(&base_url, |p| p.timeout = timeout)).propose(&agent(0), &task()).await.unwrap_err();

    assert_eq!(error, AgentError::Timeout(timeout));
}

#[tokio::test]
async fn a_dripping_body_within_the_timeout_is_read_whole() {
    let body = completion("dripped", Some((3, 4))).to_string();
    let base_url = support::drip_server(body, Duration::from_millis(1)).await;

    let reply = backend(profile(&base_url, |_| {})).propose(&agent(0), &task()).await.unwrap();

    assert_eq!((reply.text.as_str(), reply.usage.completion_tokens), ("dripped", 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_parallel_calls_never_exceed_the_profiles_concurrency() {
    let (base_url, stats) =
        support::counting_server(completion("ok", Some((1, 1))), Duration::from_millis(20)).await;
    let backend = backend(profile(&base_url, |p| p.max_concurrency = 3));
    let task = task();
    let agents: Vec<_> = (0..50).map(agent).collect();

    let replies = join_all(agents.iter().map(|a| backend.propose(a, &task))).await;

    assert!(replies.iter().all(Result::is_ok), "{replies:?}");
    assert_eq!(stats.served.load(Ordering::SeqCst), 50);
    // The cap is reached (so the test can see a breach) and never passed.
    assert_eq!(stats.max.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn profiles_have_separate_concurrency_limits() {
    let (base_url, stats) = support::counting_server(completion("ok", None), Duration::from_millis(20)).await;
    let other = ProfileName::new("other").unwrap();
    let backend = orchestrator_infra_llm::OpenAiBackend::new(BTreeMap::from([
        (ProfileName::default_profile(), profile(&base_url, |p| p.max_concurrency = 1)),
        (other.clone(), profile(&base_url, |p| p.max_concurrency = 1)),
    ]))
    .unwrap();
    let task = task();
    let mut agents: Vec<_> = (0..10).map(agent).collect();
    for a in agents.iter_mut().skip(5) {
        a.profile = other.clone();
    }

    let replies = join_all(agents.iter().map(|a| backend.propose(a, &task))).await;

    assert!(replies.iter().all(Result::is_ok));
    assert_eq!(stats.max.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn dropping_a_call_closes_its_connection() {
    let (base_url, mut events) = support::silent_server().await;
    let backend = backend(profile(&base_url, |p| p.timeout = Duration::from_secs(600)));
    let task = task();
    let agent = agent(0);

    let call = backend.propose(&agent, &task);
    let mut call = Box::pin(call);
    tokio::select! {
        _ = &mut call => panic!("the silent server never answers"),
        event = events.recv() => assert_eq!(event, Some("request")),
    }
    drop(call);

    // A hang guard only: the close is observed within milliseconds.
    let closed = tokio::time::timeout(Duration::from_secs(30), events.recv()).await;
    assert_eq!(closed, Ok(Some("closed")));
}

#[tokio::test]
async fn the_api_key_is_sent_as_a_bearer_token() {
    let (server, base_url) = server().await;
    Mock::given(method("POST"))
        .and(path(ENDPOINT))
        .and(header("authorization", "Bearer sk-test-123"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion("ok", None)))
        .expect(1)
        .mount(&server)
        .await;

    let reply = backend(profile(&base_url, |p| p.api_key = Some(SecretString::from("sk-test-123"))))
        .propose(&agent(0), &task())
        .await;

    assert!(reply.is_ok(), "{reply:?}");
    server.verify().await;
}

#[tokio::test]
async fn no_authorization_header_is_sent_without_a_key() {
    let (server, base_url) = server().await;
    answer(&server, ResponseTemplate::new(200).set_body_json(completion("ok", None))).await;

    backend(profile(&base_url, |_| {})).propose(&agent(0), &task()).await.unwrap();

    assert!(requests(&server).await[0].headers.get("authorization").is_none());
}

#[tokio::test]
async fn every_prompt_sent_carries_the_rubric_and_every_requirement() {
    let (server, base_url) = server().await;
    answer(
        &server,
        ResponseTemplate::new(200).set_body_json(completion("{\"score\": 5, \"choice\": 1}", None)),
    )
    .await;
    let backend = backend(profile(&base_url, |_| {}));
    let (agent, task) = (agent(0), task());
    let received = Review {
        reviewer: AgentId::new("dev-9").unwrap(),
        target: AgentId::new("dev-0").unwrap(),
        round: 1,
        critique: "Needs tests".into(),
        score: Some(PeerScore::new(4.0).unwrap()),
        issues: vec![],
    };

    backend.propose(&agent, &task).await.unwrap();
    backend.review(&agent, &task, "proposal text", &TestOutcome::no_tests()).await.unwrap();
    backend.revise(&agent, &task, "proposal text", &TestOutcome::no_tests(), &[received]).await.unwrap();
    backend.select(&agent, &task, &["one".into(), "two".into()]).await.unwrap();

    let sent = requests(&server).await;
    assert_eq!(sent.len(), 4);
    for request in &sent {
        let user = body_of(request)["messages"][1]["content"].as_str().unwrap().to_owned();
        assert!(user.contains("Write a Rust function that reverses a string"), "{user}");
        assert!(user.contains(RUBRIC), "{user}");
        for (i, requirement) in REQUIREMENTS.iter().enumerate() {
            assert!(user.contains(&format!("{}. {requirement}", i + 1)), "{user}");
        }
        assert!(!user.contains("dev-9"), "reviewers stay anonymous: {user}");
    }
}

#[tokio::test]
async fn review_answers_are_parsed_and_the_deprecated_json_switch_still_asks_for_json_object() {
    let (server, base_url) = server().await;
    let text =
        "Sure!\n```json\n{\"score\": \"8/10\", \"critique\": \"Good\", \"issues\": [\"no tests\"]}\n```";
    answer(&server, ResponseTemplate::new(200).set_body_json(completion(text, Some((100, 20))))).await;
    let backend = backend(profile(&base_url, |p| p.response_format_json = Some(true)));

    let review = backend.review(&agent(1), &task(), "fn rev() {}", &TestOutcome::no_tests()).await.unwrap();
    backend.propose(&agent(1), &task()).await.unwrap();

    assert_eq!(review.score.map(PeerScore::value), Some(8.0));
    assert_eq!((review.critique.as_str(), review.issues.clone()), ("Good", vec!["no tests".to_owned()]));
    assert_eq!(review.usage.prompt_tokens, 100);
    let sent = requests(&server).await;
    assert_eq!(sent.len(), 2, "an explicit mode does not probe");
    let format = &body_of(&sent[0])["response_format"];
    assert_eq!(format["type"], "json_object");
    assert_eq!(format["schema"]["required"], json!(["score", "critique", "issues"]), "{format}");
    assert!(body_of(&sent[1]).get("response_format").is_none(), "proposals are free text");
}

#[tokio::test]
async fn an_unparseable_review_keeps_the_text_without_a_score() {
    let (server, base_url) = server().await;
    answer(&server, ResponseTemplate::new(200).set_body_json(completion("I like it a lot.", None))).await;

    let review = backend(profile(&base_url, |_| {}))
        .review(&agent(0), &task(), "p", &TestOutcome::no_tests())
        .await
        .unwrap();

    assert_eq!((review.score, review.critique.as_str()), (None, "I like it a lot."));
}

#[tokio::test]
async fn selection_maps_the_one_based_choice_to_an_index() {
    let (server, base_url) = server().await;
    let text = "{\"choice\": 2, \"rationale\": \"Candidate 2 has tests\"}";
    answer(&server, ResponseTemplate::new(200).set_body_json(completion(text, Some((50, 10))))).await;

    let selection = backend(profile(&base_url, |_| {}))
        .select(&agent(0), &task(), &["first".into(), "second".into(), "third".into()])
        .await
        .unwrap();

    assert_eq!(selection.choice, Some(1));
    assert_eq!(selection.rationale, "Candidate 2 has tests");
    assert_eq!(selection.usage.completion_tokens, 10);
    let user = body_of(&requests(&server).await[0])["messages"][1]["content"].as_str().unwrap().to_owned();
    assert!(user.contains("Candidate 1:\n<<<\nfirst") && user.contains("Candidate 3:\n<<<\nthird"), "{user}");
}

#[tokio::test]
async fn seats_sample_with_different_temperatures_and_seeds() {
    let (server, base_url) = server().await;
    answer(&server, ResponseTemplate::new(200).set_body_json(completion("ok", None))).await;
    let backend = backend(profile(&base_url, |p| p.temperature = 0.7));

    for seat in 0..3 {
        backend.propose(&agent(seat), &task()).await.unwrap();
    }
    backend.review(&agent(2), &task(), "p", &TestOutcome::no_tests()).await.unwrap();

    let sampled: Vec<(f64, u64)> = requests(&server)
        .await
        .iter()
        .map(body_of)
        .map(|b| (b["temperature"].as_f64().unwrap(), b["seed"].as_u64().unwrap()))
        .collect();
    assert_eq!(sampled, vec![(0.7, 1000), (0.85, 1001), (0.55, 1002), (0.3, 1002)]);
}

#[tokio::test]
async fn an_unknown_profile_is_refused_without_a_request() {
    let (server, base_url) = server().await;
    let mut stranger = agent(0);
    stranger.profile = ProfileName::new("nope").unwrap();

    let error = backend(profile(&base_url, |_| {})).propose(&stranger, &task()).await.unwrap_err();

    assert_eq!(error, AgentError::UnknownProfile("nope".into()));
    assert!(requests(&server).await.is_empty());
}

#[tokio::test]
async fn the_api_key_appears_in_no_log_debug_output_or_error() {
    const KEY: &str = "sk-never-print-this-4711";
    let (_guard, captured) = orchestrator_test_support::logs::capture_logs();

    let (server, base_url) = server().await;
    Mock::given(method("POST"))
        .and(path(ENDPOINT))
        .respond_with(ResponseTemplate::new(503).set_body_string("try later"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    answer(&server, ResponseTemplate::new(401).set_body_string(format!("bad key {KEY}"))).await;
    let profile = profile(&base_url, |p| {
        p.api_key = Some(SecretString::from(KEY));
        p.max_retries = 1;
    });
    let profile_debug = format!("{profile:?}");
    let backend = backend(profile);

    let error = backend.propose(&agent(0), &task()).await.unwrap_err();

    let logs = captured.text();
    assert!(logs.contains("transient failure; retrying"), "the logs were captured: {logs}");
    assert!(logs.contains("llm call failed"), "{logs}");
    for text in [logs, profile_debug, format!("{backend:?}"), error.to_string(), format!("{error:?}")] {
        assert!(!text.contains(KEY), "the key leaked into: {text}");
    }
    assert_eq!(requests(&server).await[0].headers.get("authorization").unwrap(), &format!("Bearer {KEY}"));
}
