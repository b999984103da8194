//! The fleet drills of issue 16, against the real binary and a real JetStream: each test runs
//! `orchestrator serve` processes with a `nats-server -js` of its own (so it can kill and
//! restart the broker), a fake OpenAI server (wiremock), and SQLite in a temp dir — or, where
//! servers share work or the store must go away, a PostgreSQL schema of its own behind a TCP
//! proxy the test controls.
//!
//! What they prove: approved plans become one deliberation per role, once, however often they
//! are delivered, owned by the intake's principal; poison is dead-lettered and never holds up
//! the next message; a broker that goes away fails nothing, and every event stored meanwhile
//! reaches the stream exactly once after it returns — also when the relay dies between
//! publishing and marking sent; a store outage naks a plan until the store is back; two
//! servers on one database share plans and gRPC submissions and lose none when one is killed;
//! SIGTERM never waits for an unreachable broker.
//!
//! Every wait is on something observable (the store through gRPC, the stream's and consumers'
//! state, log lines), bounded by [`PATIENCE`]; no sleep stands in for synchronisation. Without
//! `nats-server` or PostgreSQL the tests print SKIPPED (and fail when `CI=true`).
#![allow(clippy::unwrap_used, reason = "test code: a failed step should fail the test loudly")]

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures::StreamExt;
use orchestrator_api_grpc::pb;
use orchestrator_api_grpc::pb::DeliberationStatus as Status;
use orchestrator_api_grpc::pb::orchestrator_service_client::OrchestratorServiceClient;
use orchestrator_test_support::nats_server::NatsServer;
use serde_json::Value;
use sqlx::Connection;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use wiremock::MockServer;

use support::proxy::{Link, Proxy};
use support::{chat_calls, fresh_pg_schema, poll, slow_model};

/// The longest any drill waits for one thing to happen: a hang guard, not a speed goal.
const PATIENCE: Duration = Duration::from_secs(60);
/// The events stream and the subject of `completed` events (default prefix).
const EVENTS_STREAM: &str = "ORCHESTRATOR_EVENTS";
const COMPLETED: &str = "orchestration.deliberation.completed";
/// Where the intake reads approved plans and bus requests, and writes dead letters.
const PLAN_STREAM: &str = "PLANNING_EVENTS";
const PLAN_CONSUMER: &str = "orch-planning-plan-approved";
const PLAN_SUBJECT: &str = "planning.plan.approved";
const REQUEST_CONSUMER: &str = "orch-orchestration-request";
const REQUEST_SUBJECT: &str = "orchestration.request";
const DEAD_LETTERS: &str = "orchestration.intake.dead_letter";
/// What the intake logs (INFO) for every task id it takes from the bus.
const TOOK_FROM_THE_BUS: &str = "took a deliberation from the bus";
/// The shutdown grace of every server here.
const GRACE: Duration = Duration::from_secs(2);

// ---------------------------------------------------------------------------------------------
// Servers

/// A running `orchestrator serve`, logging JSON lines (INFO and up) to a file. Killed with
/// SIGKILL when dropped, so a failing test leaves no orphan holding its ports.
struct Node {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
}

impl Node {
    /// Starts a server against `database_url` and the model at `model_url` with `env` on top of
    /// the drills' defaults (JSON logs, a 2 s grace, room for many model calls at once).
    fn start(database_url: &str, model_url: &str, env: &[(&str, &str)], log: PathBuf) -> Self {
        let grace = GRACE.as_secs().to_string();
        let mut all = vec![
            ("ORCHESTRATOR_LOG_FORMAT", "json"),
            ("ORCHESTRATOR_SHUTDOWN_GRACE_SECS", grace.as_str()),
            ("ORCHESTRATOR_LLM_MAX_CONCURRENCY", "64"),
        ];
        all.extend_from_slice(env);
        let (child, port) = support::start_server_logged(database_url, model_url, &all, &log);
        Self { child: Some(child), port, log }
    }

    async fn client(&self) -> Client {
        connect(self.port, None).await
    }

    /// SIGKILL, as when the host dies: nothing is released, nothing flushed.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGTERM; returns the exit status and how long the process took to exit.
    async fn sigterm(&mut self) -> (ExitStatus, Duration) {
        let mut child = self.child.take().expect("the server runs");
        let signalled = Instant::now();
        assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
        let status = tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
        (status, signalled.elapsed())
    }

    /// SIGTERM, and the exit must be a clean one.
    async fn stop(&mut self) {
        let (status, _) = self.sigterm().await;
        assert!(status.success(), "exit status {status:?}");
    }

    /// The JSON log lines written so far.
    fn log_lines(&self) -> Vec<Value> {
        log_lines(&self.log)
    }

    /// The task ids of this server's "took a deliberation from the bus" lines, in log order.
    fn took_from_the_bus(&self) -> Vec<String> {
        self.log_lines()
            .iter()
            .filter(|line| line["message"] == TOOK_FROM_THE_BUS)
            .map(|line| {
                assert_eq!(line["level"], "INFO", "{line}");
                line["task_id"].as_str().unwrap().to_owned()
            })
            .collect()
    }

    /// Waits until a log line satisfies `wanted`, and returns it.
    async fn logged(&self, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        poll(&format!("the log never showed {what}"), PATIENCE, async || {
            self.log_lines().into_iter().find(|line| wanted(line))
        })
        .await
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn log_lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().filter_map(|line| serde_json::from_str(line).ok()).collect()
}

/// `env` with borrowed values, as [`Node::start`] takes it.
fn borrowed<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(key, value)| (*key, value.as_str())).collect()
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite:{}", dir.join("fleet.db").display())
}

/// The PostgreSQL URL `url` with its `host:port` replaced by the proxy's.
fn behind(url: &str, proxy: &str) -> String {
    url.replacen(&upstream(url), proxy, 1)
}

fn upstream(url: &str) -> String {
    url.split_once('@').unwrap().1.split(['/', '?']).next().unwrap().to_owned()
}

async fn drop_schema(schema: &str) {
    let base = orchestrator_test_support::services::pg_url();
    let mut connection = sqlx::PgConnection::connect(&base).await.unwrap();
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE")).execute(&mut connection).await.unwrap();
}

fn now_ms() -> i64 {
    i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis())
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// gRPC

/// Sends `authorization: Bearer <token>` when it has a token.
#[derive(Clone)]
struct Bearer(Option<tonic::metadata::AsciiMetadataValue>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(token) = &self.0 {
            request.metadata_mut().insert("authorization", token.clone());
        }
        Ok(request)
    }
}

type Client = OrchestratorServiceClient<InterceptedService<Channel, Bearer>>;

/// A client (with `token`, when given) once the server answers GetStatus.
async fn connect(port: u16, token: Option<&str>) -> Client {
    let bearer = Bearer(token.map(|token| format!("Bearer {token}").parse().unwrap()));
    poll(&format!("the server on port {port} never answered"), Duration::from_secs(10), async || {
        let channel =
            Channel::from_shared(format!("http://127.0.0.1:{port}")).unwrap().connect().await.ok()?;
        let mut client = OrchestratorServiceClient::with_interceptor(channel, bearer.clone());
        client.get_status(pb::GetStatusRequest::default()).await.ok()?;
        Some(client)
    })
    .await
}

async fn get_status(client: &mut Client) -> pb::GetStatusResponse {
    client.get_status(pb::GetStatusRequest::default()).await.unwrap().into_inner()
}

/// How the relay fares, as GetStatus reports it.
async fn events_status(client: &mut Client) -> pb::EventsStatus {
    get_status(client).await.events.expect("GetStatus reports the events relay when nats_url is set")
}

/// Waits until the relay's status satisfies `wanted`.
async fn until_events(client: &mut Client, what: &str, wanted: impl Fn(&pb::EventsStatus) -> bool) {
    poll(&format!("GetStatus never reported {what}"), PATIENCE, async || {
        let status = events_status(client).await;
        wanted(&status).then_some(())
    })
    .await;
}

async fn health(port: u16) -> Option<ServingStatus> {
    let channel = Channel::from_shared(format!("http://127.0.0.1:{port}")).ok()?.connect().await.ok()?;
    let request = tonic_health::pb::HealthCheckRequest { service: String::new() };
    let response = HealthClient::new(channel).check(request).await.ok()?;
    Some(response.into_inner().status())
}

/// Every deliberation the client may see, following the pages.
async fn list_all(client: &mut Client) -> Vec<pb::DeliberationSummary> {
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let request = pb::ListDeliberationsRequest { page_size: 100, page_token, ..Default::default() };
        let page = client.list_deliberations(request).await.unwrap().into_inner();
        all.extend(page.deliberations);
        if page.next_page_token.is_empty() {
            return all;
        }
        page_token = page.next_page_token;
    }
}

/// Waits until the client sees `count` deliberations, and returns them.
async fn until_listed(client: &mut Client, count: usize) -> Vec<pb::DeliberationSummary> {
    poll(&format!("{count} deliberations were never listed"), PATIENCE, async || {
        Some(list_all(client).await).filter(|listed| listed.len() >= count)
    })
    .await
}

/// Waits until every one of `task_ids` is COMPLETED; one that ends otherwise fails the test.
async fn until_completed(client: &mut Client, task_ids: &BTreeSet<String>) {
    let what = format!("the {} deliberations never all completed", task_ids.len());
    poll(&what, PATIENCE, async || {
        let listed = list_all(client).await;
        let mut completed = 0;
        for summary in listed.iter().filter(|s| task_ids.contains(&s.task_id)) {
            match summary.status() {
                Status::Completed => completed += 1,
                Status::Pending | Status::InProgress => {}
                other => panic!("{} ended {other:?}: {}", summary.task_id, summary.error_message),
            }
        }
        (completed == task_ids.len()).then_some(())
    })
    .await;
}

/// A gRPC request whose calls the model can be told apart by: the task id is in the text.
fn request(task_id: &str, agents: i32, rounds: i32) -> pb::DeliberateRequest {
    pb::DeliberateRequest {
        task_description: format!("Design a retry policy for webhooks ({task_id})"),
        role: "DEV".into(),
        task_id: task_id.into(),
        rounds: Some(rounds),
        num_agents: Some(agents),
        ..Default::default()
    }
}

/// How many of the model's chat calls were for `task_id` (its id is in every prompt).
async fn calls_for(model: &MockServer, task_id: &str) -> usize {
    let marker = format!("({task_id})");
    chat_calls(model).await.iter().filter(|r| String::from_utf8_lossy(&r.body).contains(&marker)).count()
}

// ---------------------------------------------------------------------------------------------
// JetStream

async fn jetstream_of(nats: &NatsServer) -> jetstream::Context {
    jetstream::new(async_nats::connect(nats.url()).await.expect("the test's NATS answers"))
}

/// Publishes through JetStream; returns the stream sequence once the stream stored it.
async fn publish(js: &jetstream::Context, subject: &str, payload: impl Into<Vec<u8>>) -> u64 {
    let payload: Vec<u8> = payload.into();
    js.publish(subject.to_owned(), payload.into())
        .await
        .unwrap()
        .await
        .expect("the stream stores it")
        .sequence
}

/// An approved plan as the planning service publishes it.
fn plan(plan_id: &str, story_id: &str, roles: &[&str]) -> String {
    serde_json::json!({
        "story_id": story_id,
        "plan_id": plan_id,
        "approved_by": "ana",
        "roles": roles,
        "timestamp": "2026-06-01T12:00:00Z",
    })
    .to_string()
}

async fn consumer_info(
    js: &jetstream::Context,
    stream: &str,
    durable: &str,
) -> Option<jetstream::consumer::Info> {
    let stream = js.get_stream(stream).await.ok()?;
    stream.consumer_info(durable).await.ok()
}

/// Waits until `durable` on `stream` exists and has at least `pulls` pull requests waiting:
/// that many intakes are ready for the next message.
async fn until_pulling(js: &jetstream::Context, stream: &str, durable: &str, pulls: usize) {
    poll(&format!("{pulls} intakes never pulled from {durable}"), PATIENCE, async || {
        consumer_info(js, stream, durable).await.filter(|info| info.num_waiting >= pulls).map(|_| ())
    })
    .await;
}

/// Waits until `durable` has settled (acked or terminated) everything up to stream sequence
/// `last`, and returns its info.
async fn until_settled(
    js: &jetstream::Context,
    stream: &str,
    durable: &str,
    last: u64,
) -> jetstream::consumer::Info {
    poll(&format!("{durable} never settled up to {last}"), PATIENCE, async || {
        consumer_info(js, stream, durable).await.filter(|info| {
            info.num_pending == 0 && info.num_ack_pending == 0 && info.ack_floor.stream_sequence >= last
        })
    })
    .await
}

/// One message of a stream.
#[derive(Debug, Clone)]
struct Stored {
    subject: String,
    msg_id: String,
    payload: Vec<u8>,
}

impl Stored {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.payload).unwrap_or_else(|e| panic!("{}: not JSON: {e}", self.msg_id))
    }
}

/// Every message `stream` holds, oldest first (none while it does not exist).
async fn stored(js: &jetstream::Context, stream: &str) -> Vec<Stored> {
    let Ok(mut stream) = js.get_stream(stream).await else { return Vec::new() };
    let state = stream.info().await.unwrap().state.clone();
    if state.messages == 0 {
        return Vec::new();
    }
    let mut messages = Vec::new();
    for sequence in state.first_sequence..=state.last_sequence {
        let message = stream.get_raw_message(sequence).await.unwrap();
        messages.push(Stored {
            subject: message.subject.to_string(),
            msg_id: message.headers.get("Nats-Msg-Id").map(|v| v.as_str().to_owned()).unwrap_or_default(),
            payload: message.payload.to_vec(),
        });
    }
    messages
}

/// How many messages `stream` holds on subjects matching `filter`.
async fn count_on(js: &jetstream::Context, stream: &str, filter: &str) -> usize {
    let Ok(stream) = js.get_stream(stream).await else { return 0 };
    let Ok(mut subjects) = stream.info_with_subjects(filter).await else { return 0 };
    let mut count = 0;
    while let Some(Ok((_, n))) = subjects.next().await {
        count += n;
    }
    count
}

/// Waits until `stream` holds at least `count` messages on `filter`.
async fn until_count(js: &jetstream::Context, stream: &str, filter: &str, count: usize) {
    poll(&format!("{stream} never held {count} messages on {filter}"), PATIENCE, async || {
        (count_on(js, stream, filter).await >= count).then_some(())
    })
    .await;
}

/// The message ids stored more than once, with their counts.
fn duplicates(messages: &[Stored]) -> BTreeMap<String, usize> {
    let mut copies: HashMap<&str, usize> = HashMap::new();
    for message in messages {
        *copies.entry(&message.msg_id).or_default() += 1;
    }
    copies.into_iter().filter(|(_, n)| *n > 1).map(|(id, n)| (id.to_owned(), n)).collect()
}

/// The `completed` events, by task id (each task id once, checked).
fn completed_events(messages: &[Stored]) -> BTreeMap<String, Value> {
    let mut completed = BTreeMap::new();
    for message in messages.iter().filter(|m| m.subject == COMPLETED) {
        let event = message.json();
        let task_id = event["task_id"].as_str().unwrap().to_owned();
        assert!(message.msg_id.starts_with(&format!("{task_id}:completed:")), "{}", message.msg_id);
        let again = completed.insert(task_id.clone(), event);
        assert!(again.is_none(), "{task_id} completed twice in the stream");
    }
    completed
}

/// Checks that every deliberation's events are numbered 1, 2, 3… with nothing missing, and
/// that the last one of each is `completed`.
fn assert_whole_and_completed(messages: &[Stored], task_ids: &BTreeSet<String>) {
    let mut seqs: BTreeMap<&str, Vec<(u64, &str)>> = BTreeMap::new();
    for message in messages.iter().filter(|m| m.subject.starts_with("orchestration.deliberation.")) {
        let mut parts = message.msg_id.rsplitn(3, ':');
        let seq: u64 = parts.next().unwrap().parse().unwrap();
        let event = parts.next().unwrap();
        let task_id = parts.next().unwrap();
        seqs.entry(task_id).or_default().push((seq, event));
    }
    assert_eq!(seqs.keys().map(|id| (*id).to_owned()).collect::<BTreeSet<_>>(), *task_ids);
    for (task_id, mut events) in seqs {
        events.sort_unstable();
        let numbers: Vec<u64> = events.iter().map(|(seq, _)| *seq).collect();
        assert_eq!(numbers, (1..=numbers.len() as u64).collect::<Vec<_>>(), "{task_id}: {events:?}");
        assert_eq!(events.last().unwrap().1, "completed", "{task_id}: {events:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// The drills

const ADMIN_TOKEN: &str = "admin-token-0123456789abcdef";
const FLEET_TOKEN: &str = "fleet-token-0123456789abcdef";
const OTHER_TOKEN: &str = "other-token-0123456789abcdef";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_plans_of_two_roles_make_forty_deliberations_and_again_still_forty() {
    let Some(nats) = NatsServer::start() else { return };
    let model = slow_model(Duration::from_millis(20)).await;
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("ops {ADMIN_TOKEN} admin\nfleet {FLEET_TOKEN}\nother {OTHER_TOKEN}\n"))
        .unwrap();
    std::fs::set_permissions(&tokens, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let nats_url = nats.url();
    let mut node = Node::start(
        &sqlite_url(dir.path()),
        &model.uri(),
        &[
            ("ORCHESTRATOR_NATS_URL", &nats_url),
            ("ORCHESTRATOR_INTAKE__ENABLED", "true"),
            ("ORCHESTRATOR_AUTH_TOKENS_FILE", tokens.to_str().unwrap()),
            ("ORCHESTRATOR_MAX_RUNNING", "16"),
        ],
        dir.path().join("server.log"),
    );
    let mut admin = connect(node.port, Some(ADMIN_TOKEN)).await;
    let js = jetstream_of(&nats).await;
    until_pulling(&js, PLAN_STREAM, PLAN_CONSUMER, 1).await;

    // Task id → (story id, role) of every deliberation the plans ask for.
    let mut expected: BTreeMap<String, (String, &str)> = BTreeMap::new();
    let mut last = 0;
    for i in 0..20 {
        let (plan_id, story_id) = (format!("p{i:02}"), format!("story-{i:02}"));
        for role in ["DEV", "QA"] {
            expected.insert(format!("plan-{plan_id}-{role}"), (story_id.clone(), role));
        }
        last = publish(&js, PLAN_SUBJECT, plan(&plan_id, &story_id, &["DEV", "QA"])).await;
    }
    until_settled(&js, PLAN_STREAM, PLAN_CONSUMER, last).await;
    let listed = until_listed(&mut admin, 40).await;
    assert_eq!(listed.len(), 40);
    for summary in &listed {
        let (story_id, role) = &expected[&summary.task_id];
        assert_eq!(summary.role, *role, "{}", summary.task_id);
        assert!(
            summary.task_description.contains(&format!("of story {story_id}")),
            "{}",
            summary.task_description
        );
    }
    let task_ids: BTreeSet<String> = expected.keys().cloned().collect();
    assert_eq!(listed.iter().map(|s| s.task_id.clone()).collect::<BTreeSet<_>>(), task_ids);

    // The same twenty plans again: acked, nothing new stored.
    for i in 0..20 {
        last =
            publish(&js, PLAN_SUBJECT, plan(&format!("p{i:02}"), &format!("story-{i:02}"), &["DEV", "QA"]))
                .await;
    }
    let consumer = until_settled(&js, PLAN_STREAM, PLAN_CONSUMER, last).await;
    assert_eq!(consumer.delivered.consumer_sequence, 40, "each plan message delivered once");
    assert_eq!(list_all(&mut admin).await.len(), 40, "the same plans again store nothing new");

    // Each replica says which task ids it took: every one twice, created only the first time.
    let took = node.took_from_the_bus();
    assert_eq!(took.len(), 80);
    assert_eq!(took.iter().cloned().collect::<BTreeSet<_>>(), task_ids);
    let created: Vec<bool> = node
        .log_lines()
        .iter()
        .filter(|line| line["message"] == TOOK_FROM_THE_BUS)
        .map(|line| line["created"].as_bool().unwrap())
        .collect();
    assert_eq!(created.iter().filter(|c| **c).count(), 40, "created the first time only");

    // Every deliberation runs, and its `completed` event carries its story.
    until_completed(&mut admin, &task_ids).await;
    until_count(&js, EVENTS_STREAM, COMPLETED, 40).await;
    let messages = stored(&js, EVENTS_STREAM).await;
    assert_eq!(duplicates(&messages), BTreeMap::new(), "every event once");
    let completed = completed_events(&messages);
    assert_eq!(completed.keys().cloned().collect::<BTreeSet<_>>(), task_ids);
    for (task_id, event) in &completed {
        let (story_id, role) = &expected[task_id];
        assert_eq!(event["event_type"], "orchestration.deliberation.completed");
        assert_eq!(event["story_id"], story_id.as_str(), "{event}");
        assert_eq!(event["role"], *role, "{event}");
        assert_eq!(event["timestamp"].as_i64().unwrap(), event["at_ms"].as_i64().unwrap() / 1000);
        let decisions = event["decisions"].as_array().unwrap();
        assert_eq!(decisions.len(), 3, "one decision per agent: {event}");
        let winners: Vec<&Value> = decisions.iter().filter(|d| d["winner"] == true).collect();
        assert_eq!(winners.len(), 1, "{event}");
        assert_eq!(winners[0]["rank"], 1);
        assert!(decisions.iter().all(|d| d["author"].is_string() && d["score"].is_number()), "{event}");
    }
    assert_whole_and_completed(&messages, &task_ids);

    // The work belongs to `fleet`: its tokens see it, another principal's do not.
    let mut fleet = connect(node.port, Some(FLEET_TOKEN)).await;
    assert_eq!(list_all(&mut fleet).await.len(), 40);
    let mut other = connect(node.port, Some(OTHER_TOKEN)).await;
    assert!(list_all(&mut other).await.is_empty(), "another principal sees none of it");
    let read =
        other.get_deliberation_result(pb::GetDeliberationResultRequest { task_id: "plan-p00-DEV".into() });
    assert_eq!(read.await.unwrap_err().code(), tonic::Code::NotFound);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_is_dead_lettered_and_the_next_plan_is_handled() {
    let Some(nats) = NatsServer::start() else { return };
    let model = slow_model(Duration::from_millis(20)).await;
    let dir = tempfile::tempdir().unwrap();
    let nats_url = nats.url();
    let mut node = Node::start(
        &sqlite_url(dir.path()),
        &model.uri(),
        &[("ORCHESTRATOR_NATS_URL", &nats_url), ("ORCHESTRATOR_INTAKE__ENABLED", "true")],
        dir.path().join("server.log"),
    );
    let mut client = node.client().await;
    let js = jetstream_of(&nats).await;
    until_pulling(&js, PLAN_STREAM, PLAN_CONSUMER, 1).await;
    until_pulling(&js, EVENTS_STREAM, REQUEST_CONSUMER, 1).await;

    let not_json = publish(&js, PLAN_SUBJECT, "{not json").await;
    let unknown_role = publish(&js, PLAN_SUBJECT, plan("chef", "story-1", &["DEV", "CHEF"])).await;
    let good = publish(&js, PLAN_SUBJECT, plan("good", "story-1", &["DEV"])).await;
    let no_task_id = serde_json::json!({"taskDescription": "Design a cache", "role": "DEV"}).to_string();
    let no_task_id = publish(&js, REQUEST_SUBJECT, no_task_id).await;
    let request = serde_json::json!({
        "taskId": "bus-request-1", "taskDescription": "Design a cache", "role": "QA", "numAgents": 2, "rounds": 1,
    });
    let good_request = publish(&js, REQUEST_SUBJECT, request.to_string()).await;

    // The good messages after the poison are handled.
    until_settled(&js, PLAN_STREAM, PLAN_CONSUMER, good).await;
    until_settled(&js, EVENTS_STREAM, REQUEST_CONSUMER, good_request).await;
    let ids = BTreeSet::from(["plan-good-DEV".to_owned(), "bus-request-1".to_owned()]);
    until_completed(&mut client, &ids).await;
    let listed: BTreeSet<String> = list_all(&mut client).await.into_iter().map(|s| s.task_id).collect();
    assert_eq!(listed, ids, "nothing of the poison is stored, not even its valid role");

    // Each poison message is dead-lettered once, with its reason, where it came from and its payload.
    until_count(&js, EVENTS_STREAM, DEAD_LETTERS, 3).await;
    let messages = stored(&js, EVENTS_STREAM).await;
    let letters: Vec<Value> =
        messages.iter().filter(|m| m.subject == DEAD_LETTERS).map(Stored::json).collect();
    assert_eq!(letters.len(), 3, "{letters:?}");
    let letter = |stream: &str, sequence: u64| {
        letters.iter().find(|l| l["stream"] == stream && l["stream_sequence"] == sequence).unwrap()
    };
    let first = letter(PLAN_STREAM, not_json);
    assert!(first["reason"].as_str().unwrap().starts_with("not JSON"), "{first}");
    assert_eq!(
        (&first["subject"], &first["stream"], &first["payload"], &first["deliveries"]),
        (&Value::from(PLAN_SUBJECT), &Value::from(PLAN_STREAM), &Value::from("{not json"), &Value::from(1))
    );
    let chef = letter(PLAN_STREAM, unknown_role);
    assert!(chef["reason"].as_str().unwrap().starts_with("roles[1]: unknown role \"CHEF\""), "{chef}");
    let request_letter = letter(EVENTS_STREAM, no_task_id);
    assert_eq!(request_letter["subject"], REQUEST_SUBJECT);
    assert_eq!(request_letter["stream"], EVENTS_STREAM);
    assert!(
        request_letter["reason"].as_str().unwrap().starts_with("task_id: is required"),
        "{request_letter}"
    );
    let poison_lines =
        node.log_lines().iter().filter(|l| l["message"] == "poison: dead-lettered and terminated").count();
    assert_eq!(poison_lines, 3);
    // Terminated, never delivered again.
    let consumer = consumer_info(&js, PLAN_STREAM, PLAN_CONSUMER).await.unwrap();
    assert_eq!(consumer.delivered.consumer_sequence, 3, "each plan message delivered once");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_killed_while_ten_deliberations_end_then_every_completed_event_arrives_once() {
    let Some(mut nats) = NatsServer::start() else { return };
    // Three phases of 1 s each: they end well after NATS is killed.
    let model = slow_model(Duration::from_secs(1)).await;
    let dir = tempfile::tempdir().unwrap();
    let nats_url = nats.url();
    let mut node = Node::start(
        &sqlite_url(dir.path()),
        &model.uri(),
        &[("ORCHESTRATOR_NATS_URL", &nats_url), ("ORCHESTRATOR_MAX_RUNNING", "16")],
        dir.path().join("server.log"),
    );
    let mut client = node.client().await;
    until_events(&mut client, "the relay connected", |s| s.connected).await;
    let js = jetstream_of(&nats).await;

    let task_ids: BTreeSet<String> = (0..10).map(|i| format!("blink-{i}")).collect();
    for task_id in &task_ids {
        client.submit_deliberation(request(task_id, 2, 1)).await.unwrap();
    }
    until_count(&js, EVENTS_STREAM, "orchestration.deliberation.started", 10).await;
    nats.kill();
    let killed_at_ms = now_ms();

    // The broker being away fails nothing: the relay says so, gRPC and health carry on.
    until_events(&mut client, "the relay disconnected", |s| !s.connected && !s.problem.is_empty()).await;
    until_completed(&mut client, &task_ids).await;
    until_events(&mut client, "the completed events waiting", |s| s.outbox_depth >= 10).await;
    let status = get_status(&mut client).await;
    assert_eq!((status.status.as_str(), status.degraded_reason.as_str()), ("SERVING", ""));
    let events = status.events.unwrap();
    assert!(!events.connected && events.outbox_depth >= 10, "{events:?}");
    assert_eq!(health(node.port).await, Some(ServingStatus::Serving));
    for task_id in &task_ids {
        let stored = client
            .get_deliberation_result(pb::GetDeliberationResultRequest { task_id: task_id.clone() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(stored.results.len(), 2, "{task_id}");
    }

    nats.restart();
    until_events(&mut client, "the outbox drained", |s| s.connected && s.outbox_depth == 0).await;
    let js = jetstream_of(&nats).await;
    let messages = stored(&js, EVENTS_STREAM).await;
    assert_eq!(duplicates(&messages), BTreeMap::new(), "every event once");
    let completed = completed_events(&messages);
    assert_eq!(completed.keys().cloned().collect::<BTreeSet<_>>(), task_ids);
    for (task_id, event) in &completed {
        assert!(
            event["at_ms"].as_i64().unwrap() > killed_at_ms,
            "{task_id} ended while NATS was away: {event}"
        );
    }
    assert_whole_and_completed(&messages, &task_ids);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_while_relaying_sends_each_event_once_after_restart() {
    let Some(mut nats) = NatsServer::start() else { return };
    // The server reaches NATS through a proxy the test can freeze: once the stream receives
    // the first event of the backlog, the acknowledgements are held and the server killed, so
    // it dies having published events it never marked sent.
    let proxy = Proxy::start(format!("127.0.0.1:{}", nats.port())).await;
    let model = slow_model(Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let database = sqlite_url(dir.path());
    let nats_url = format!("nats://{}", proxy.addr);
    let env = [("ORCHESTRATOR_NATS_URL", nats_url.as_str()), ("ORCHESTRATOR_MAX_RUNNING", "16")];
    let mut node = Node::start(&database, &model.uri(), &env, dir.path().join("first.log"));
    let mut client = node.client().await;
    until_events(&mut client, "the relay connected", |s| s.connected).await;

    // A backlog built while NATS is away.
    nats.kill();
    until_events(&mut client, "the relay disconnected", |s| !s.connected).await;
    let task_ids: BTreeSet<String> = (0..40).map(|i| format!("backlog-{i:02}")).collect();
    for task_id in &task_ids {
        client.submit_deliberation(request(task_id, 2, 1)).await.unwrap();
    }
    until_completed(&mut client, &task_ids).await;
    // Every event is in the outbox with the state change it reports; the count lags a little.
    until_events(&mut client, "the backlog counted", |s| s.outbox_depth >= 40 * 4).await;

    proxy.set(Link::Paused);
    nats.restart();
    let watcher = async_nats::connect(nats.url()).await.unwrap();
    let mut relayed = watcher.subscribe("orchestration.deliberation.>").await.unwrap();
    // A request on the same connection comes back only after the server took the SUB before it.
    watcher.request("$JS.API.INFO", "".into()).await.unwrap();
    proxy.set(Link::Open);
    tokio::time::timeout(PATIENCE, relayed.next()).await.expect("the relay publishes the backlog").unwrap();
    proxy.set(Link::Paused);
    node.kill();

    // Published, not marked sent: some events are in the stream and still in the outbox.
    let js = jetstream::new(watcher.clone());
    let in_stream: BTreeSet<String> =
        stored(&js, EVENTS_STREAM).await.into_iter().map(|m| m.msg_id).collect();
    let mut db = sqlx::SqliteConnection::connect(&database).await.unwrap();
    let unsent: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT task_id, event, seq FROM outbox").fetch_all(&mut db).await.unwrap();
    db.close().await.unwrap();
    let unsent: BTreeSet<String> = unsent.into_iter().map(|(t, e, s)| format!("{t}:{e}:{s}")).collect();
    let both = in_stream.intersection(&unsent).count();
    eprintln!(
        "killed with {} events in the stream, {} unsent, {both} published but not marked sent",
        in_stream.len(),
        unsent.len()
    );
    assert!(both > 0, "the kill came between publishing and marking sent");
    let every_event: BTreeSet<String> = in_stream.union(&unsent).cloned().collect();

    proxy.set(Link::Open);
    let mut node = Node::start(&database, &model.uri(), &env, dir.path().join("second.log"));
    let mut client = node.client().await;
    until_events(&mut client, "the outbox drained", |s| s.connected && s.outbox_depth == 0).await;
    let messages = stored(&js, EVENTS_STREAM).await;
    assert_eq!(duplicates(&messages), BTreeMap::new(), "every event once");
    assert_eq!(messages.iter().map(|m| m.msg_id.clone()).collect::<BTreeSet<_>>(), every_event);
    assert_whole_and_completed(&messages, &task_ids);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_outage_during_intake_naks_then_the_plan_is_handled() {
    let Some(nats) = NatsServer::start() else { return };
    let Some((url, schema)) = fresh_pg_schema("fleet_outage").await else { return };
    let proxy = Proxy::start(upstream(&url)).await;
    let model = slow_model(Duration::from_millis(20)).await;
    let dir = tempfile::tempdir().unwrap();
    let nats_url = nats.url();
    let mut node = Node::start(
        &behind(&url, &proxy.addr),
        &model.uri(),
        &[
            ("ORCHESTRATOR_NATS_URL", &nats_url),
            ("ORCHESTRATOR_INTAKE__ENABLED", "true"),
            ("ORCHESTRATOR_STORE_ACQUIRE_TIMEOUT_MS", "500"),
            ("ORCHESTRATOR_STORE_PROBE_INTERVAL_MS", "200"),
        ],
        dir.path().join("server.log"),
    );
    let mut client = node.client().await;
    let js = jetstream_of(&nats).await;
    until_pulling(&js, PLAN_STREAM, PLAN_CONSUMER, 1).await;

    proxy.set(Link::Cut);
    let sequence = publish(&js, PLAN_SUBJECT, plan("outage", "story-7", &["DEV", "QA"])).await;
    let nak = node
        .logged("a nak of the plan", |line| {
            line["message"] == "nak'd; JetStream delivers it again" && line["stream_sequence"] == sequence
        })
        .await;
    assert_eq!(nak["reason"], "store_unavailable", "{nak}");
    proxy.set(Link::Open);

    let consumer = until_settled(&js, PLAN_STREAM, PLAN_CONSUMER, sequence).await;
    assert!(consumer.delivered.consumer_sequence >= 2, "delivered again after the nak: {consumer:?}");
    let ids = BTreeSet::from(["plan-outage-DEV".to_owned(), "plan-outage-QA".to_owned()]);
    until_completed(&mut client, &ids).await;
    let mut db = sqlx::PgConnection::connect(&url).await.unwrap();
    let rows: Vec<(String,)> = sqlx::query_as("SELECT task_id FROM deliberations ORDER BY task_id")
        .fetch_all(&mut db)
        .await
        .unwrap();
    assert_eq!(rows.into_iter().map(|r| r.0).collect::<BTreeSet<_>>(), ids, "the plan stored once");
    until_count(&js, EVENTS_STREAM, COMPLETED, 2).await;
    let messages = stored(&js, EVENTS_STREAM).await;
    assert_eq!(duplicates(&messages), BTreeMap::new());
    let submitted = messages.iter().filter(|m| m.subject == "orchestration.deliberation.submitted").count();
    assert_eq!(submitted, 2, "one submitted event per role");
    node.stop().await;
    drop_schema(&schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_postgres_share_thirty_plans_and_lose_none_when_one_is_killed() {
    let Some(nats) = NatsServer::start() else { return };
    let Some((url, schema)) = fresh_pg_schema("fleet_share").await else { return };
    // Each server has a model of its own, so the calls show which server ran what.
    let model_a = slow_model(Duration::from_millis(300)).await;
    let model_b = slow_model(Duration::from_millis(300)).await;
    let dir = tempfile::tempdir().unwrap();
    let nats_url = nats.url();
    let env = |node: &'static str| {
        [
            ("ORCHESTRATOR_NATS_URL", nats_url.clone()),
            ("ORCHESTRATOR_INTAKE__ENABLED", "true".to_owned()),
            ("ORCHESTRATOR_INTAKE__ACK_WAIT_SECS", "5".to_owned()),
            ("ORCHESTRATOR_NODE_ID", node.to_owned()),
            ("ORCHESTRATOR_LEASE_SECS", "3".to_owned()),
            ("ORCHESTRATOR_MAX_RUNNING", "4".to_owned()),
        ]
    };
    let (env_a, env_b) = (env("node-a"), env("node-b"));
    let mut node_a = Node::start(&url, &model_a.uri(), &borrowed(&env_a), dir.path().join("a.log"));
    let mut node_b = Node::start(&url, &model_b.uri(), &borrowed(&env_b), dir.path().join("b.log"));
    let _ = node_a.client().await;
    let mut client_b = node_b.client().await;
    let js = jetstream_of(&nats).await;
    until_pulling(&js, PLAN_STREAM, PLAN_CONSUMER, 2).await;

    let mut task_ids = BTreeSet::new();
    let mut last = 0;
    for i in 0..30 {
        let plan_id = format!("shared-{i:02}");
        task_ids.insert(format!("plan-{plan_id}-DEV"));
        last = publish(&js, PLAN_SUBJECT, plan(&plan_id, &format!("story-{i:02}"), &["DEV"])).await;
    }
    until_settled(&js, PLAN_STREAM, PLAN_CONSUMER, last).await;

    // Mid-way: node-a runs some, some are done, not all. Then it dies without a word.
    let mut db = sqlx::PgConnection::connect(&url).await.unwrap();
    poll("node-a never ran a deliberation while others were done", PATIENCE, async || {
        let (running_on_a, completed): (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE status = 'IN_PROGRESS' AND owner LIKE 'node-a-%'), \
                    count(*) FILTER (WHERE status = 'COMPLETED') FROM deliberations",
        )
        .fetch_one(&mut db)
        .await
        .unwrap();
        (running_on_a > 0 && completed > 0 && completed < 30).then_some(())
    })
    .await;
    node_a.kill();

    until_completed(&mut client_b, &task_ids).await;
    // Both took plans from the bus, between them every one.
    let (took_a, took_b) = (node_a.took_from_the_bus(), node_b.took_from_the_bus());
    eprintln!("node-a took {} plans from the bus, node-b {}", took_a.len(), took_b.len());
    assert!(!took_a.is_empty() && !took_b.is_empty(), "a: {took_a:?}, b: {took_b:?}");
    let took: BTreeSet<String> = took_a.iter().chain(&took_b).cloned().collect();
    assert_eq!(took, task_ids);
    assert!(
        !chat_calls(&model_a).await.is_empty() && !chat_calls(&model_b).await.is_empty(),
        "both ran some"
    );

    // Each deliberation has one result: three proposals, one `completed` event.
    let proposals: Vec<(String, i64)> =
        sqlx::query_as("SELECT task_id, count(*) FROM proposals GROUP BY task_id")
            .fetch_all(&mut db)
            .await
            .unwrap();
    assert_eq!(proposals.len(), 30);
    assert!(proposals.iter().all(|(_, n)| *n == 3), "{proposals:?}");
    until_count(&js, EVENTS_STREAM, COMPLETED, 30).await;
    let messages = stored(&js, EVENTS_STREAM).await;
    assert_eq!(duplicates(&messages), BTreeMap::new(), "every event once");
    assert_eq!(completed_events(&messages).keys().cloned().collect::<BTreeSet<_>>(), task_ids);
    node_b.stop().await;
    drop(db);
    drop_schema(&schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_nats_unreachable_exits_within_the_grace() {
    let Some(mut nats) = NatsServer::start() else { return };
    let model = slow_model(Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let database = sqlite_url(dir.path());
    let nats_url = nats.url();
    let env = [("ORCHESTRATOR_NATS_URL", nats_url.as_str()), ("ORCHESTRATOR_INTAKE__ENABLED", "true")];
    let mut node = Node::start(&database, &model.uri(), &env, dir.path().join("first.log"));
    let mut client = node.client().await;
    until_events(&mut client, "the relay connected", |s| s.connected).await;
    let js = jetstream_of(&nats).await;
    until_pulling(&js, PLAN_STREAM, PLAN_CONSUMER, 1).await;

    nats.kill();
    until_events(&mut client, "the relay disconnected", |s| !s.connected).await;
    let task_ids: BTreeSet<String> = ["unsent-1".to_owned(), "unsent-2".to_owned()].into();
    for task_id in &task_ids {
        client.submit_deliberation(request(task_id, 2, 1)).await.unwrap();
    }
    until_completed(&mut client, &task_ids).await;
    until_events(&mut client, "the events waiting", |s| s.outbox_depth >= 2).await;

    let (status, took) = node.sigterm().await;
    eprintln!("SIGTERM with NATS unreachable: exited after {took:?} (grace {GRACE:?})");
    assert!(status.success(), "exit status {status:?}");
    // The grace is for running deliberations (there are none); the bound is generous on a
    // loaded machine and still well short of any wait for NATS (5 s connect timeout).
    assert!(took < GRACE + Duration::from_secs(2), "exited after {took:?}");
    let log = node.log_lines();
    let stopped =
        log.iter().find(|l| l["message"] == "events relay stopped").expect("the relay says it stopped");
    assert!(stopped["unsent"].as_u64().unwrap() > 0, "{stopped}");
    for step in
        ["shutdown: the bus intake stopped", "shutdown: the events relay stopped", "orchestrator stopped"]
    {
        assert!(log.iter().any(|l| l["message"] == step), "the log names the step {step:?}");
    }

    // A server that never reached NATS stops as promptly (its intake still waits for NATS).
    let mut node = Node::start(&database, &model.uri(), &env, dir.path().join("second.log"));
    let mut client = node.client().await;
    node.logged("the intake waiting for NATS", |l| l["message"] == "the bus intake waits for NATS").await;
    until_events(&mut client, "the unsent events counted", |s| !s.connected && s.outbox_depth > 0).await;
    let (status, took) = node.sigterm().await;
    eprintln!("SIGTERM before NATS was ever reached: exited after {took:?}");
    assert!(status.success() && took < GRACE + Duration::from_secs(2), "{status:?} after {took:?}");

    // The next start publishes what was left.
    nats.restart();
    let mut node = Node::start(&database, &model.uri(), &env, dir.path().join("third.log"));
    let mut client = node.client().await;
    until_events(&mut client, "the outbox drained", |s| s.connected && s.outbox_depth == 0).await;
    let js = jetstream_of(&nats).await;
    let messages = stored(&js, EVENTS_STREAM).await;
    assert_eq!(duplicates(&messages), BTreeMap::new(), "every event once");
    assert_whole_and_completed(&messages, &task_ids);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_submissions_a_server_has_no_room_for_run_on_another() {
    let Some((url, schema)) = fresh_pg_schema("fleet_room").await else { return };
    // Each server has a model of its own, so the calls show which server ran what. A
    // deliberation takes three phases of 500 ms: longer than the other server's lease round.
    let model_a = slow_model(Duration::from_millis(500)).await;
    let model_b = slow_model(Duration::from_millis(500)).await;
    let dir = tempfile::tempdir().unwrap();
    let env = |node: &'static str| {
        [("ORCHESTRATOR_NODE_ID", node), ("ORCHESTRATOR_LEASE_SECS", "3"), ("ORCHESTRATOR_MAX_RUNNING", "1")]
    };
    let mut node_a = Node::start(&url, &model_a.uri(), &env("node-a"), dir.path().join("a.log"));
    let mut node_b = Node::start(&url, &model_b.uri(), &env("node-b"), dir.path().join("b.log"));
    let mut client_a = node_a.client().await;
    let mut client_b = node_b.client().await;

    let task_ids: BTreeSet<String> = (0..4).map(|i| format!("room-{i}")).collect();
    for task_id in &task_ids {
        let submitted = client_a.submit_deliberation(request(task_id, 2, 1)).await.unwrap().into_inner();
        assert_eq!(submitted.status(), Status::Pending);
    }
    until_completed(&mut client_b, &task_ids).await;

    let shared = node_a
        .log_lines()
        .iter()
        .filter(|l| l["message"] == "deliberation submitted for any server to take (no free slot here)")
        .count();
    assert_eq!(shared, 3, "node-a had room for one");
    let (mut ran_on_a, mut ran_on_b) = (Vec::new(), Vec::new());
    for task_id in &task_ids {
        // 2 agents × (a proposal, a review, a revision), all on one server.
        match (calls_for(&model_a, task_id).await, calls_for(&model_b, task_id).await) {
            (6, 0) => ran_on_a.push(task_id.clone()),
            (0, 6) => ran_on_b.push(task_id.clone()),
            calls => panic!("{task_id} ran once, on one server: calls (a, b) = {calls:?}"),
        }
    }
    eprintln!("node-a ran {ran_on_a:?}, node-b ran {ran_on_b:?}");
    assert!(!ran_on_a.is_empty() && !ran_on_b.is_empty(), "both servers ran some");
    let mut db = sqlx::PgConnection::connect(&url).await.unwrap();
    let proposals: Vec<(String, i64)> =
        sqlx::query_as("SELECT task_id, count(*) FROM proposals GROUP BY task_id")
            .fetch_all(&mut db)
            .await
            .unwrap();
    assert_eq!(proposals.len(), 4);
    assert!(proposals.iter().all(|(_, n)| *n == 2), "one result each: {proposals:?}");
    node_a.stop().await;
    node_b.stop().await;
    drop(db);
    drop_schema(&schema).await;
}
