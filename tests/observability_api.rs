//! What an operator sees of a deliberation: the real server (`Application::build`, so the real
//! OpenAI-compatible backend and its probe) on a fake model server, with `metrics_listen` on a
//! free port. One deliberation runs; then `/metrics` is scraped over HTTP, the spans of every
//! model call are checked for the task id, and GetStatus reports the model server's probe.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock};

use orchestrator_api_grpc::pb;
use orchestrator_api_grpc::pb::orchestrator_service_client::OrchestratorServiceClient;
use orchestrator_infra_llm::LlmProfile;
use orchestrator_server::{Application, Config};
use orchestrator_tests::test_config;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const MODEL: &str = "fake-model";
const PROMPT_TOKENS: u64 = 11;
const COMPLETION_TOKENS: u64 = 7;

/// A model server that lists [`MODEL`] and answers every chat completion with a review-shaped
/// text (usable as a proposal too); its first completion is a 503, so one call is retried.
async fn fake_model_server() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"object": "list", "data": [{"id": MODEL}]})),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    let text = r#"{"score": 8, "critique": "Reverse the string with chars().rev().", "issues": []}"#;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS}
        })))
        .mount(&server)
        .await;
    server
}

struct Running {
    client: OrchestratorServiceClient<tonic::transport::Channel>,
    metrics: SocketAddr,
    _data_dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start(model_server: &MockServer) -> Running {
    let data_dir = tempfile::tempdir().unwrap();
    let mut profile = LlmProfile::new(format!("{}/v1", model_server.uri()), MODEL);
    profile.max_retries = 2;
    let config = Config {
        profiles: BTreeMap::from([("default".to_owned(), profile)]),
        metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        ..test_config(&data_dir)
    };
    let app = Application::build(config).await.unwrap();
    let metrics = app.metrics_addr().expect("metrics_listen binds an endpoint");
    let addr = app.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    let client = OrchestratorServiceClient::connect(format!("http://{addr}")).await.unwrap();
    Running { client, metrics, _data_dir: data_dir, _stop: stop }
}

fn request(task_id: &str) -> pb::DeliberateRequest {
    pb::DeliberateRequest {
        task_id: task_id.into(),
        task_description: "Write a Rust function that reverses a string".into(),
        role: "DEV".into(),
        num_agents: Some(2),
        rounds: Some(1),
        ..Default::default()
    }
}

/// `GET path` over plain HTTP/1.1: the status code and the body.
async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(
        status != 200 || head.to_ascii_lowercase().contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    (status, body.to_owned())
}

/// A series: the metric's name and its labels, sorted.
type Series = (String, Vec<(String, String)>);

/// The samples of a Prometheus text page: series → value.
fn samples(page: &str) -> BTreeMap<Series, f64> {
    page.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let mut labels: Vec<(String, String)> = labels
                .split(',')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (key, value) = pair.split_once('=').unwrap();
                    (key.to_owned(), value.trim_matches('"').to_owned())
                })
                .collect();
            labels.sort();
            ((name.to_owned(), labels), value.parse().unwrap())
        })
        .collect()
}

fn value(samples: &BTreeMap<Series, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut labels: Vec<(String, String)> =
        labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    labels.sort();
    let key = (name.to_owned(), labels);
    *samples.get(&key).unwrap_or_else(|| {
        let known: Vec<_> = samples.keys().filter(|(n, _)| n.starts_with(name)).collect();
        panic!("no sample {key:?}; samples of that name: {known:?}")
    })
}

#[tokio::test]
async fn a_scrape_after_a_deliberation_counts_it_its_phases_and_its_model_calls() {
    install_span_capture();
    let model_server = fake_model_server().await;
    let mut app = start(&model_server).await;

    let response = app.client.deliberate(request("metrics-1")).await.unwrap().into_inner();
    assert_eq!(response.results.len(), 2, "both agents ranked");

    let (status, page) = http_get(app.metrics, "/metrics").await;
    assert_eq!(status, 200);
    let s = samples(&page);
    let dev = [("role", "DEV")];
    assert_eq!(value(&s, "orchestrator_deliberations_total", &[dev[0], ("status", "COMPLETED")]), 1.0);
    assert_eq!(
        value(&s, "orchestrator_deliberation_duration_seconds_count", &[dev[0], ("outcome", "completed")]),
        1.0
    );
    for phase in ["propose", "review", "revise", "score"] {
        let labels = [dev[0], ("phase", phase)];
        assert_eq!(value(&s, "orchestrator_phase_duration_seconds_count", &labels), 1.0, "{phase}");
    }
    let model = [("profile", "default"), ("model", MODEL)];
    for phase in ["propose", "review", "revise"] {
        let labels = [model[0], model[1], ("phase", phase), ("outcome", "ok")];
        assert_eq!(value(&s, "orchestrator_llm_calls_total", &labels), 2.0, "{phase}");
        let labels = [model[0], model[1], ("phase", phase)];
        assert_eq!(value(&s, "orchestrator_llm_call_duration_seconds_count", &labels), 2.0, "{phase}");
    }
    let calls = 6.0;
    let prompt = [model[0], model[1], ("kind", "prompt")];
    assert_eq!(value(&s, "orchestrator_llm_tokens_total", &prompt), calls * PROMPT_TOKENS as f64);
    let completion = [model[0], model[1], ("kind", "completion")];
    assert_eq!(value(&s, "orchestrator_llm_tokens_total", &completion), calls * COMPLETION_TOKENS as f64);
    assert_eq!(value(&s, "orchestrator_llm_retries_total", &model), 1.0, "the first 503 was retried once");
    assert_eq!(value(&s, "orchestrator_jobs_running", &[]), 0.0);
    assert_eq!(value(&s, "orchestrator_jobs_queued", &[]), 0.0);
    assert!(!s.keys().any(|(name, _)| name == "orchestrator_llm_errors_total"), "no call failed for good");

    assert_eq!(http_get(app.metrics, "/other").await.0, 404);

    // Every model call of the deliberation ran inside spans that carry its task id: the RPC
    // handler's, the job's (spawned, so it must be instrumented), and the deliberation's.
    let calls = captured_model_calls("metrics-1");
    assert_eq!(calls.len(), 6, "{calls:?}");
    for scope in &calls {
        for span in ["deliberate", "job", "deliberation"] {
            assert!(
                scope.iter().any(|(name, task_id)| name == span && task_id == "metrics-1"),
                "the model call is not inside a {span} span with the task id: {scope:?}"
            );
        }
        assert!(scope.iter().any(|(name, _)| name == "llm_call"), "{scope:?}");
    }
}

#[tokio::test]
async fn get_status_reports_each_model_profile_as_probed() {
    let model_server = fake_model_server().await;
    let mut app = start(&model_server).await;

    let status =
        app.client.get_status(pb::GetStatusRequest { include_stats: false }).await.unwrap().into_inner();

    assert_eq!(status.backends.len(), 1);
    let probe = &status.backends[0];
    assert_eq!(
        (probe.profile.as_str(), probe.reachable, probe.model_listed, probe.ok),
        ("default", true, Some(true), true)
    );
    assert_eq!(probe.message, format!("reachable; model \"{MODEL}\" is served"));
    let host = model_server.uri().trim_start_matches("http://").to_owned();
    assert!(!probe.message.contains(&host), "the server's address never reaches clients");
}

#[tokio::test]
async fn a_hung_model_server_delays_neither_startup_nor_status_beyond_the_probe_timeout() {
    let hung = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .respond_with(ResponseTemplate::new(200).set_delay(std::time::Duration::from_secs(600)))
        .mount(&hung)
        .await;
    // A hang guard, far below the server's 600 s: startup must not wait for the probe at all.
    let guard = std::time::Duration::from_secs(60);
    let mut app =
        tokio::time::timeout(guard, start(&hung)).await.expect("startup waited for the model server");

    let status = tokio::time::timeout(guard, app.client.get_status(pb::GetStatusRequest::default()))
        .await
        .expect("GetStatus waited for the model server")
        .unwrap()
        .into_inner();

    // It took the connection and did not answer: busy (usable), not down.
    let probe = &status.backends[0];
    assert_eq!((probe.reachable, probe.model_listed, probe.ok), (false, None, true));
    assert!(probe.message.contains("did not answer GET /models within 2000 ms: busy"), "{}", probe.message);
}

// ---- span capture ----------------------------------------------------------------------

/// The spans (name, task id or "") around each "llm call succeeded" event.
type Scopes = Vec<Vec<(String, String)>>;

fn captured() -> &'static Mutex<Scopes> {
    static CAPTURED: OnceLock<Mutex<Scopes>> = OnceLock::new();
    CAPTURED.get_or_init(Mutex::default)
}

/// The scopes of the model calls whose spans name `task_id`.
fn captured_model_calls(task_id: &str) -> Scopes {
    captured()
        .lock()
        .unwrap()
        .iter()
        .filter(|scope| scope.iter().any(|(_, id)| id == task_id))
        .cloned()
        .collect()
}

/// Installs the capturing subscriber for the whole process (the server runs on other threads).
fn install_span_capture() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let subscriber = tracing_subscriber::registry().with(Capture);
        tracing::subscriber::set_global_default(subscriber).unwrap();
    });
}

/// A span's task id, kept in its extensions.
struct TaskId(String);

#[derive(Default)]
struct FindField {
    wanted: &'static str,
    found: Option<String>,
}

impl Visit for FindField {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == self.wanted {
            self.found = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == self.wanted {
            self.found = Some(format!("{value:?}").trim_matches('"').to_owned());
        }
    }
}

struct Capture;

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut find = FindField { wanted: "task_id", found: None };
        attrs.record(&mut find);
        if let (Some(task_id), Some(span)) = (find.found, ctx.span(id)) {
            span.extensions_mut().insert(TaskId(task_id));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let mut find = FindField { wanted: "task_id", found: None };
        values.record(&mut find);
        if let (Some(task_id), Some(span)) = (find.found, ctx.span(id)) {
            span.extensions_mut().replace(TaskId(task_id));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut find = FindField { wanted: "message", found: None };
        event.record(&mut find);
        if find.found.as_deref() != Some("llm call succeeded") {
            return;
        }
        let Some(scope) = ctx.event_scope(event) else { return };
        let spans = scope
            .map(|span| {
                let task_id = span.extensions().get::<TaskId>().map(|t| t.0.clone()).unwrap_or_default();
                (span.name().to_owned(), task_id)
            })
            .collect();
        captured().lock().unwrap().push(spans);
    }
}
