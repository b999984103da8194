//! What the relay tests share: an outbox filled through the real store API, a relay started
//! with short intervals, the stream read back message by message, and bounded waits on
//! observable state (never a fixed sleep).
#![allow(dead_code, reason = "each test binary uses a different part of the support code")]

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use orchestrator_application::ports::{
    Clock, DeliberationEvent, DeliberationStore, EventKind, Fence, Lease, NewDeliberation, Outbox,
    RelayStatus, UnsuccessfulEnd,
};
use orchestrator_application::testing::InMemoryStore;
use orchestrator_domain::{DeliberationStatus, Role, Task, TaskConstraints};
use orchestrator_infra_events::{Acknowledged, EventsSettings, JetStreamRelay, RelayHandle};
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;

/// The bound on every wait for something the relay or NATS does: generous, because it is a
/// bound on behaviour (it happens at all), not a speed goal.
pub(crate) const WAIT: Duration = Duration::from_secs(30);
/// The node that creates the deliberations whose events the tests relay.
const WRITER: &str = "writer-node";

/// The wall clock, as the server's.
#[derive(Debug)]
pub(crate) struct WallClock;

impl Clock for WallClock {
    fn now_ms(&self) -> i64 {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("the clock is after 1970");
        i64::try_from(since_epoch.as_millis()).expect("milliseconds fit in i64")
    }
}

/// Settings for a relay of the test: short poll, lease and timeouts so drills run quickly.
pub(crate) fn settings(url: &str) -> EventsSettings {
    EventsSettings::new(url, orchestrator_infra_events::DEFAULT_PREFIX)
        .unwrap()
        .with_poll_interval(Duration::from_millis(50))
        .unwrap()
        .with_publish_timeout(Duration::from_secs(1))
        .unwrap()
        .with_relay_lease(Duration::from_millis(1_500))
        .unwrap()
}

/// A running relay and what a test does with it.
pub(crate) struct TestRelay {
    pub(crate) handle: RelayHandle,
    pub(crate) stop: CancellationToken,
    pub(crate) wakeup: Arc<Notify>,
    pub(crate) acknowledged: broadcast::Receiver<Acknowledged>,
}

impl TestRelay {
    /// Starts a relay named `node_id` over `outbox`.
    pub(crate) fn start(settings: EventsSettings, outbox: Arc<dyn Outbox>, node_id: &str) -> Self {
        // The relay's log lines with the test's output, when RUST_LOG asks for them.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let stop = CancellationToken::new();
        let wakeup = Arc::new(Notify::new());
        let handle = JetStreamRelay::start(
            settings,
            outbox,
            Arc::clone(&wakeup),
            node_id.to_owned(),
            Arc::new(WallClock),
            stop.clone(),
        );
        let acknowledged = handle.acknowledgements();
        Self { handle, stop, wakeup, acknowledged }
    }

    /// Stops it and waits until it has.
    pub(crate) async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(WAIT, self.handle.stopped()).await.expect("the relay stops");
    }

    /// Waits (bounded by [`WAIT`]) until the relay's status satisfies `condition`.
    pub(crate) async fn status_until(&self, condition: impl FnMut(&RelayStatus) -> bool) -> RelayStatus {
        let mut watch = self.handle.watch();
        tokio::time::timeout(WAIT, watch.wait_for(condition)).await.expect("the relay's status in time")
    }

    /// The next `count` acknowledgements.
    pub(crate) async fn acknowledgements(&mut self, count: usize) -> Vec<Acknowledged> {
        let mut received = Vec::with_capacity(count);
        while received.len() < count {
            let next = tokio::time::timeout(WAIT, self.acknowledged.recv()).await;
            received.push(next.expect("acknowledged in time").expect("no acknowledgement skipped"));
        }
        received
    }
}

/// Runs a deliberation through the store: created, started, cancelled — its three events
/// (`submitted`, `started`, `ended`, numbered 1 to 3) stored in the outbox with the changes.
pub(crate) async fn deliberation(store: &InMemoryStore, task_id: &str) {
    let id = orchestrator_application::testing::tid(task_id);
    let at_ms = WallClock.now_ms();
    let event = |kind| DeliberationEvent::new(task_id, Some("story-1"), Role::Dev, WallClock.now_ms(), kind);
    let new = NewDeliberation {
        task_id: id.clone(),
        role: Role::Dev,
        task: Task::new("Relay the events", TaskConstraints::default()).unwrap(),
        rounds: 1,
        num_agents: 2,
        profiles: Vec::new(),
        created_at_ms: at_ms,
        principal: "anonymous".to_owned(),
        seats: None,
        story_id: Some("story-1".to_owned()),
    };
    let lease = Lease { owner: WRITER.to_owned(), until_ms: i64::MAX / 2 };
    assert!(store.create(&new, &lease, Some(&event(EventKind::Submitted))).await.unwrap());
    let fence = Fence::created_by(WRITER);
    assert!(store.mark_started(&id, &fence, at_ms, Some(&event(EventKind::Started))).await.unwrap());
    let end = UnsuccessfulEnd {
        status: DeliberationStatus::Cancelled,
        error: "cancelled by the test",
        finished_at_ms: at_ms,
        duration_ms: Some(0),
        partial: None,
    };
    let ended = event(EventKind::Ended { status: "CANCELLED".into(), error: "cancelled by the test".into() });
    assert!(store.finish_unsuccessfully(&id, Some(&fence), &end, Some(&ended)).await.unwrap());
}

/// One message of the stream, as a subscriber sees it.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub(crate) subject: String,
    pub(crate) msg_id: String,
    pub(crate) task_id: String,
    pub(crate) payload: serde_json::Value,
}

/// A JetStream context on `url`.
pub(crate) async fn jetstream(url: &str) -> jetstream::Context {
    jetstream::new(async_nats::connect(url).await.expect("the test's NATS answers"))
}

/// Every message the stream holds, oldest first (empty while the stream does not exist).
pub(crate) async fn stored(js: &jetstream::Context, stream: &str) -> Vec<Stored> {
    let Ok(stream) = js.get_stream(stream).await else { return Vec::new() };
    let state = stream.get_info().await.expect("the stream's state").state;
    let mut messages = Vec::new();
    for sequence in state.first_sequence..=state.last_sequence {
        if state.messages == 0 {
            break;
        }
        let message = stream.get_raw_message(sequence).await.expect("a stored message");
        let header =
            |name: &str| message.headers.get(name).map(|value| value.as_str().to_owned()).unwrap_or_default();
        messages.push(Stored {
            subject: message.subject.to_string(),
            msg_id: header("Nats-Msg-Id"),
            task_id: header("Orchestrator-Task-Id"),
            payload: serde_json::from_slice(&message.payload).expect("a JSON event"),
        });
    }
    messages
}

/// Waits (bounded by [`WAIT`]) until the stream holds `count` messages, and returns them.
pub(crate) async fn stored_count(js: &jetstream::Context, stream: &str, count: usize) -> Vec<Stored> {
    eventually(&format!("{count} messages in {stream}"), || async {
        let messages = stored(js, stream).await;
        (messages.len() >= count).then_some(messages)
    })
    .await
}

/// How many copies of each message id the stream holds.
pub(crate) fn copies(messages: &[Stored]) -> HashMap<String, usize> {
    let mut copies = HashMap::new();
    for message in messages {
        *copies.entry(message.msg_id.clone()).or_insert(0) += 1;
    }
    copies
}

/// Checks that each deliberation's messages are in the stream in the order of their
/// sequence numbers.
pub(crate) fn assert_in_order_per_deliberation(messages: &[Stored]) {
    let mut last: HashMap<&str, i64> = HashMap::new();
    for message in messages {
        let seq: i64 = message.msg_id.rsplit(':').next().unwrap().parse().unwrap();
        let previous = last.insert(message.task_id.as_str(), seq).unwrap_or(0);
        assert!(seq > previous, "{} after seq {previous} of its deliberation", message.msg_id);
    }
}

/// Polls `probe` until it returns `Some`, failing the test after [`WAIT`].
pub(crate) async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    orchestrator_test_support::eventually(what, WAIT, async || probe().await).await
}

/// A loopback address nothing listens on.
pub(crate) fn unreachable_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("nats://{}", listener.local_addr().unwrap())
}
