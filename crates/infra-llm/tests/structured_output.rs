//! Structured output against local fake servers: what each `structured_output` mode sends on
//! review and select calls, how `auto` falls back within one call when a server refuses a
//! `response_format` (or answers nothing usable) and remembers what worked, and what the
//! review counters record.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use orchestrator_application::ports::{AgentBackend, AgentError};
use orchestrator_domain::{PeerScore, TestOutcome};
use orchestrator_infra_llm::StructuredOutput;
use orchestrator_infra_llm::observability::{
    LLM_REVIEWS, LLM_REVIEWS_GRADED, LLM_STRUCTURED_OUTPUT_FALLBACKS,
};
use serde_json::Value;
use support::{agent, backend, completion, profile, task};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const ENDPOINT: &str = "/v1/chat/completions";
const GRADED: &str = r#"{"score": 7, "critique": "Handles the main case; misses empty input.", "issues": ["no empty-input test"]}"#;
/// What llama-cpp-python 0.3 answers to `{"type": "json_schema"}`: HTTP 500 naming the field.
const LLAMA_CPP_PYTHON_REFUSAL: &str = r#"{"error":{"message":"1 validation error:\n  {'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), 'msg': \"Input should be 'text' or 'json_object'\"}","type":"internal_server_error"}}"#;

/// The `response_format.type` a request carried, `None` without one.
fn format_type(request: &Request) -> Option<String> {
    let body: Value = request.body_json().expect("the backend sends JSON");
    body.get("response_format").map(|f| f["type"].as_str().unwrap_or("?").to_owned())
}

/// A server answering each request by the `response_format` type it carries.
async fn server_by_format(
    respond: impl Fn(Option<&str>) -> ResponseTemplate + Send + Sync + 'static,
) -> (MockServer, String) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(ENDPOINT))
        .respond_with(move |request: &Request| respond(format_type(request).as_deref()))
        .mount(&server)
        .await;
    let base_url = format!("{}/v1", server.uri());
    (server, base_url)
}

/// The `response_format.type` of every request received, in order.
async fn sent_formats(server: &MockServer) -> Vec<Option<String>> {
    server.received_requests().await.expect("request recording is on").iter().map(format_type).collect()
}

fn ok(text: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(completion(text, Some((50, 20))))
}

fn some(kind: &str) -> Option<String> {
    Some(kind.to_owned())
}

async fn review_score(backend: &orchestrator_infra_llm::OpenAiBackend) -> Result<Option<f64>, AgentError> {
    let review = backend.review(&agent(0), &task(), "fn rev() {}", &TestOutcome::no_tests()).await?;
    Ok(review.score.map(PeerScore::value))
}

#[tokio::test]
async fn auto_asks_for_json_schema_first_and_keeps_it_when_the_server_accepts() {
    let (server, base_url) = server_by_format(|_| ok(GRADED)).await;
    let backend = backend(profile(&base_url, |_| {}));

    assert_eq!(review_score(&backend).await.unwrap(), Some(7.0));
    assert_eq!(review_score(&backend).await.unwrap(), Some(7.0));

    assert_eq!(sent_formats(&server).await, vec![some("json_schema"), some("json_schema")]);
    let body: Value = server.received_requests().await.unwrap()[0].body_json().unwrap();
    let format = &body["response_format"]["json_schema"];
    assert_eq!((format["name"].as_str(), format["strict"].as_bool()), (Some("review"), Some(true)));
    assert_eq!(format["schema"]["properties"]["score"]["enum"][10], 10);
    let user = body["messages"][1]["content"].as_str().unwrap();
    assert!(user.contains(r#""score" is your grade from 0"#), "fields named in words: {user}");
    assert!(!user.contains("<what to improve>"), "no placeholder to copy under a schema: {user}");
}

#[tokio::test]
async fn auto_falls_back_within_the_call_to_json_object_then_none_and_remembers_it() {
    let (server, base_url) = server_by_format(|format| match format {
        Some(_) => ResponseTemplate::new(400).set_body_string("unsupported response_format"),
        None => ok(GRADED),
    })
    .await;
    let backend = backend(profile(&base_url, |p| p.max_retries = 3));

    assert_eq!(review_score(&backend).await.unwrap(), Some(7.0), "the call works as it would without");
    assert_eq!(sent_formats(&server).await, vec![some("json_schema"), some("json_object"), None]);
    let body: Value = server.received_requests().await.unwrap()[2].body_json().unwrap();
    let user = body["messages"][1]["content"].as_str().unwrap();
    assert!(
        user.contains("Reply with JSON only:\n{\"score\": <0-10>"),
        "free text gets the template: {user}"
    );

    assert_eq!(review_score(&backend).await.unwrap(), Some(7.0));
    let selection = backend.select(&agent(1), &task(), &["a".into(), "b".into()]).await.unwrap();
    assert_eq!(selection.choice, None, "the canned answer names no candidate");
    assert_eq!(
        sent_formats(&server).await[3..],
        [None, None],
        "later calls of the profile, selections too, go straight to what worked"
    );
}

#[tokio::test]
async fn auto_on_llama_cpp_python_settles_on_json_object_without_retrying_its_500() {
    let (server, base_url) = server_by_format(|format| match format {
        Some("json_schema") => ResponseTemplate::new(500).set_body_string(LLAMA_CPP_PYTHON_REFUSAL),
        _ => ok(GRADED),
    })
    .await;
    let backend = backend(profile(&base_url, |p| p.max_retries = 3));

    assert_eq!(review_score(&backend).await.unwrap(), Some(7.0));
    assert_eq!(review_score(&backend).await.unwrap(), Some(7.0));

    assert_eq!(
        sent_formats(&server).await,
        vec![some("json_schema"), some("json_object"), some("json_object")]
    );
    let body: Value = server.received_requests().await.unwrap()[1].body_json().unwrap();
    assert_eq!(body["response_format"]["schema"]["required"][0], "score", "the schema rides along");
}

#[tokio::test]
async fn a_server_failure_that_names_no_format_is_retried_not_taken_for_a_refusal() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(ENDPOINT))
        .respond_with(ResponseTemplate::new(500).set_body_string("upstream exploded"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST")).and(path(ENDPOINT)).respond_with(ok(GRADED)).mount(&server).await;
    let backend = backend(profile(&format!("{}/v1", server.uri()), |p| p.max_retries = 1));

    assert_eq!(review_score(&backend).await.unwrap(), Some(7.0));
    assert_eq!(review_score(&backend).await.unwrap(), Some(7.0));

    assert_eq!(sent_formats(&server).await, vec![some("json_schema"); 3]);
}

#[tokio::test]
async fn an_accepted_mode_whose_answer_is_unusable_gives_way_to_the_next() {
    let (server, base_url) = server_by_format(|format| match format {
        Some("json_schema") => ok(""),
        _ => ok(GRADED),
    })
    .await;
    let backend = backend(profile(&base_url, |_| {}));

    assert_eq!(review_score(&backend).await.unwrap(), Some(7.0));
    assert_eq!(review_score(&backend).await.unwrap(), Some(7.0));

    assert_eq!(
        sent_formats(&server).await,
        vec![some("json_schema"), some("json_object"), some("json_object")]
    );
}

#[tokio::test]
async fn auto_fails_a_call_only_as_it_would_fail_without_a_format() {
    let (server, base_url) =
        server_by_format(|_| ResponseTemplate::new(400).set_body_string("context length exceeded")).await;
    let backend = backend(profile(&base_url, |_| {}));

    let error = review_score(&backend).await.unwrap_err();

    assert_eq!(
        error,
        AgentError::Rejected("profile \"default\": HTTP 400: the model server rejected the request".into())
    );
    assert_eq!(sent_formats(&server).await, vec![some("json_schema"), some("json_object"), None]);
    review_score(&backend).await.unwrap_err();
    assert_eq!(sent_formats(&server).await.len(), 6, "nothing worked, so nothing is remembered");
}

#[tokio::test]
async fn explicit_modes_send_only_themselves_and_surface_a_refusal() {
    let (server, base_url) = server_by_format(|format| match format {
        Some("json_schema") => ResponseTemplate::new(400).set_body_string("no"),
        _ => ok(GRADED),
    })
    .await;
    let strict = backend(profile(&base_url, |p| p.structured_output = StructuredOutput::JsonSchema));
    let error = review_score(&strict).await.unwrap_err();
    assert!(matches!(error, AgentError::Rejected(_)), "{error:?}");

    let object = backend(profile(&base_url, |p| p.structured_output = StructuredOutput::JsonObject));
    assert_eq!(review_score(&object).await.unwrap(), Some(7.0));
    object.select(&agent(0), &task(), &["a".into(), "b".into()]).await.unwrap();

    let off = backend(profile(&base_url, |p| p.structured_output = StructuredOutput::Off));
    assert_eq!(review_score(&off).await.unwrap(), Some(7.0));

    assert_eq!(
        sent_formats(&server).await,
        vec![some("json_schema"), some("json_object"), some("json_object"), None]
    );
    let body: Value = server.received_requests().await.unwrap()[2].body_json().unwrap();
    assert_eq!(body["response_format"]["schema"]["properties"]["choice"]["enum"], serde_json::json!([1, 2]));
}

#[tokio::test]
async fn proposals_and_revisions_never_carry_a_format() {
    let (server, base_url) = server_by_format(|_| ok("fn rev() {}")).await;
    let backend = backend(profile(&base_url, |p| p.structured_output = StructuredOutput::JsonSchema));

    backend.propose(&agent(0), &task()).await.unwrap();
    backend.revise(&agent(0), &task(), "fn rev() {}", &TestOutcome::no_tests(), &[]).await.unwrap();

    assert_eq!(sent_formats(&server).await, vec![None, None]);
}

#[test]
fn reviews_are_counted_by_mode_and_whether_they_were_graded() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let served = Arc::clone(&served);
            let (_server, base_url) = server_by_format(move |format| match format {
                Some("json_schema") => ResponseTemplate::new(422),
                _ if served.fetch_add(1, Ordering::SeqCst) == 0 => ok("I like it."),
                _ => ok(GRADED),
            })
            .await;
            let backend = backend(profile(&base_url, |_| {}));
            assert_eq!(review_score(&backend).await.unwrap(), None);
            assert_eq!(review_score(&backend).await.unwrap(), Some(7.0));
        });
    });
    let mut counts: Vec<(String, String, u64)> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| {
            [LLM_REVIEWS, LLM_REVIEWS_GRADED, LLM_STRUCTURED_OUTPUT_FALLBACKS].contains(&key.key().name())
        })
        .map(|(key, _, _, value)| {
            let labels: Vec<String> =
                key.key().labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
            let DebugValue::Counter(count) = value else { panic!("{value:?}") };
            (key.key().name().to_owned(), labels.join(","), count)
        })
        .collect();
    counts.sort();
    let labels = "profile=default,model=test-model,structured_output=json_object";
    assert_eq!(
        counts,
        vec![
            (LLM_REVIEWS_GRADED.to_owned(), labels.to_owned(), 1),
            (LLM_REVIEWS.to_owned(), labels.to_owned(), 2),
            (
                LLM_STRUCTURED_OUTPUT_FALLBACKS.to_owned(),
                "profile=default,model=test-model,structured_output=json_schema,reason=refused".to_owned(),
                1
            ),
        ]
    );
}
