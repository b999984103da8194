//! The drills' shared set-up: a `nats-server -js` of the test's own, real `Jobs` over the
//! in-memory store with a backend that never answers (deliberations stay PENDING or
//! IN_PROGRESS: the intake only cares that they are stored), the intake started on them, and
//! bounded waits on events — never fixed sleeps.

#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use async_trait::async_trait;
use futures::StreamExt;
use orchestrator_api_bus::{BusIntake, DeadLetter, IntakeHandle, IntakeSettings, NatsConnection};
use orchestrator_application::ports::{
    AgentBackend, AgentError, Clock, Completion, DeliberationRecord, DeliberationStore, IdGenerator,
    ListQuery, ReviewReply, Selection,
};
use orchestrator_application::testing::InMemoryStore;
use orchestrator_application::{Caller, Counters, Deliberate, DeliberationSettings, JobSettings, Jobs};
use orchestrator_domain::{Agent, ProfileName, Review, Task, TestOutcome};
use orchestrator_test_support::nats_server::NatsServer;
use tokio_util::sync::CancellationToken;

/// The longest any drill waits for something to happen (a hang guard, not a timing).
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A backend whose every call waits forever.
#[derive(Debug)]
struct Silent;

#[async_trait]
impl AgentBackend for Silent {
    fn has_profile(&self, _profile: &ProfileName) -> bool {
        true
    }

    async fn propose(&self, _agent: &Agent, _task: &Task) -> Result<Completion, AgentError> {
        std::future::pending().await
    }

    async fn review(
        &self,
        _agent: &Agent,
        _task: &Task,
        _proposal: &str,
        _tests: &TestOutcome,
    ) -> Result<ReviewReply, AgentError> {
        std::future::pending().await
    }

    async fn revise(
        &self,
        _agent: &Agent,
        _task: &Task,
        _current: &str,
        _tests: &TestOutcome,
        _reviews: &[Review],
    ) -> Result<Completion, AgentError> {
        std::future::pending().await
    }

    async fn select(
        &self,
        _agent: &Agent,
        _task: &Task,
        _candidates: &[String],
    ) -> Result<Selection, AgentError> {
        std::future::pending().await
    }
}

#[derive(Debug)]
struct WallClock;

impl Clock for WallClock {
    fn now_ms(&self) -> i64 {
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
    }
}

#[derive(Debug, Default)]
struct Counter(AtomicUsize);

impl IdGenerator for Counter {
    fn new_id(&self) -> String {
        format!("gen-{}", self.0.fetch_add(1, Ordering::SeqCst))
    }
}

/// Real jobs over `store`, with a backend that never answers.
pub fn jobs(store: &Arc<InMemoryStore>) -> Arc<Jobs> {
    let clock: Arc<dyn Clock> = Arc::new(WallClock);
    let deliberate = Arc::new(Deliberate::new(
        Some(Arc::new(Silent)),
        Arc::clone(&clock),
        Arc::new(Counter::default()),
        Arc::new(Counters::new(0)),
        DeliberationSettings::default(),
    ));
    let store: Arc<dyn DeliberationStore> = Arc::clone(store) as Arc<dyn DeliberationStore>;
    Arc::new(Jobs::new(deliberate, store, clock, JobSettings::default()))
}

/// The intake's settings in the drills: on, everything else at its default.
pub fn settings() -> IntakeSettings {
    IntakeSettings { enabled: true, ..IntakeSettings::default() }
}

/// The principal the drills' work belongs to.
pub fn fleet() -> Caller {
    Caller::new("fleet", false)
}

/// One intake replica: its jobs, its stop token and its handle.
pub struct Replica {
    pub jobs: Arc<Jobs>,
    pub stop: CancellationToken,
    pub handle: IntakeHandle,
}

impl Replica {
    /// Starts an intake on `store` with `settings`, reaching NATS through `nats`.
    pub fn start(
        nats: impl Into<NatsConnection>,
        store: &Arc<InMemoryStore>,
        settings: IntakeSettings,
    ) -> Self {
        let jobs = jobs(store);
        let stop = CancellationToken::new();
        let handle = BusIntake::start(nats, settings, Arc::clone(&jobs), fleet(), stop.clone())
            .expect("the drills' settings are valid");
        Self { jobs, stop, handle }
    }

    /// Stops it and waits until every message in hand is settled.
    pub async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(PATIENCE, self.handle.stopped()).await.expect("the intake stops");
    }
}

/// A NATS server, a client of it, and the in-memory store the replicas share.
pub struct Bus {
    pub server: NatsServer,
    pub client: async_nats::Client,
    pub jetstream: jetstream::Context,
    pub store: Arc<InMemoryStore>,
}

impl Bus {
    /// `None` (after SKIPPED) without `nats-server`.
    pub async fn start() -> Option<Self> {
        if std::env::var_os("RUST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_test_writer()
                .try_init();
        }
        let server = NatsServer::start()?;
        let client = async_nats::connect(server.url()).await.expect("the test's NATS accepts connections");
        let jetstream = jetstream::new(client.clone());
        Some(Self { server, client, jetstream, store: Arc::new(InMemoryStore::default()) })
    }

    /// Starts a replica on this bus's client connection.
    pub fn replica(&self, settings: IntakeSettings) -> Replica {
        Replica::start(self.client.clone(), &self.store, settings)
    }

    /// Publishes through JetStream and waits for the stream to store it.
    pub async fn publish(&self, subject: &str, payload: impl Into<Vec<u8>>) {
        let payload: Vec<u8> = payload.into();
        self.jetstream
            .publish(subject.to_owned(), payload.into())
            .await
            .expect("publish")
            .await
            .expect("the stream stores it");
    }

    /// The info of `durable` on `stream`, once both exist.
    pub async fn consumer(&self, stream: &str, durable: &str) -> consumer::Info {
        let what = format!("a consumer {durable} on {stream}");
        orchestrator_test_support::eventually(&what, PATIENCE, async || {
            let stream = self.jetstream.get_stream(stream).await.ok()?;
            stream.consumer_info(durable).await.ok()
        })
        .await
    }

    /// Waits until `durable` on `stream` has delivered at least `published` messages of the
    /// stream and every delivered one is settled (acked or terminated).
    pub async fn settled(&self, stream: &str, durable: &str, published: u64) {
        until(&format!("{durable} settles {published} messages"), move || async move {
            let Ok(stream) = self.jetstream.get_stream(stream).await else { return false };
            let Ok(info) = stream.consumer_info(durable).await else { return false };
            info.num_pending == 0 && info.num_ack_pending == 0 && info.ack_floor.stream_sequence >= published
        })
        .await;
    }

    /// The info of `stream`.
    pub async fn stream(&self, name: &str) -> stream::Info {
        let mut stream = self.jetstream.get_stream(name).await.expect("the stream exists");
        stream.info().await.expect("stream info").clone()
    }

    /// Every stored deliberation.
    pub async fn stored(&self) -> Vec<DeliberationRecord> {
        let mut records = Vec::new();
        let mut cursor = None;
        loop {
            let query = ListQuery { limit: ListQuery::MAX_LIMIT, cursor, ..ListQuery::default() };
            let page = self.store.list(&query).await.expect("the store lists");
            records.extend(page.items);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return records,
            }
        }
    }

    /// Waits until `count` deliberations are stored.
    pub async fn until_stored(&self, count: usize) {
        until(
            &format!("{count} deliberations stored"),
            move || async move { self.stored().await.len() >= count },
        )
        .await;
    }

    /// Subscribes to the dead letters (confirmed by the server before it returns).
    pub async fn dead_letters(&self, subject: &str) -> async_nats::Subscriber {
        orchestrator_test_support::nats::subscribe_confirmed(&self.client, subject, subject).await
    }
}

/// The next dead letter on `letters`.
pub async fn next_dead_letter(letters: &mut async_nats::Subscriber) -> DeadLetter {
    let message = tokio::time::timeout(PATIENCE, letters.next())
        .await
        .expect("a dead letter within the patience")
        .expect("the subscription stays open");
    serde_json::from_slice(&message.payload).expect("a dead letter is a JSON document")
}

/// A plan event.
pub fn plan(plan_id: &str, story_id: &str, roles: &[&str]) -> String {
    serde_json::json!({
        "story_id": story_id,
        "plan_id": plan_id,
        "approved_by": "ana",
        "roles": roles,
        "timestamp": "2025-06-01T12:00:00Z",
    })
    .to_string()
}

/// Polls `done` every 20 ms until it holds.
///
/// # Panics
/// When it does not within [`PATIENCE`].
pub async fn until<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    orchestrator_test_support::eventually(what, PATIENCE, async || done().await.then_some(())).await;
}
