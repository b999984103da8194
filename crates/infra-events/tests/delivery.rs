//! The relay against a real JetStream (`nats-server -js` of each test's own): what reaches
//! the stream, how the stream is set up, and that an event sent twice is kept once.
#![allow(clippy::unwrap_used, reason = "test code: a failed step should fail the test loudly")]

mod support;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::stream::{Config, RetentionPolicy, StorageType};
use async_trait::async_trait;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use orchestrator_application::ports::{
    Outbox, OutboxMessage, RelayLease, RelayMonitor, RelayStatus, StoreError,
};
use orchestrator_application::testing::InMemoryStore;
use orchestrator_infra_events::{DEFAULT_STREAM, observability};
use orchestrator_test_support::nats_server::NatsServer;
use support::{
    TestRelay, assert_in_order_per_deliberation, copies, deliberation, eventually, settings, stored_count,
};

// A current-thread runtime, so the relay's task records its metrics on this thread, where the
// test's recorder is the default.
#[tokio::test(flavor = "current_thread")]
async fn stored_events_reach_the_stream_in_order_with_their_dedup_id_and_leave_the_outbox() {
    let Some(nats) = NatsServer::start() else { return };
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let store = Arc::new(InMemoryStore::default());
    // Two deliberations, three events each.
    deliberation(&store, "task-a").await;
    deliberation(&store, "task-b").await;
    let mut relay = TestRelay::start(settings(&nats.url()), store.clone(), "node-1");

    let acknowledged = relay.acknowledgements(6).await;
    let js = support::jetstream(&nats.url()).await;
    let messages = stored_count(&js, DEFAULT_STREAM, 6).await;
    for task_id in ["task-a", "task-b"] {
        // Each deliberation's events in its order; different deliberations may interleave.
        let its: Vec<_> = messages.iter().filter(|message| message.task_id == task_id).collect();
        let expected = [("submitted", 1), ("started", 2), ("ended", 3)];
        assert_eq!(its.len(), expected.len(), "{messages:?}");
        for (message, (event, seq)) in its.iter().zip(expected) {
            assert_eq!(message.subject, format!("orchestration.deliberation.{event}"));
            assert_eq!(message.msg_id, format!("{task_id}:{event}:{seq}"));
            assert_eq!(message.payload["event_type"], format!("orchestration.deliberation.{event}"));
            assert_eq!(message.payload["task_id"], task_id);
        }
    }
    assert_eq!(messages.len(), 6);
    assert!(acknowledged.iter().all(|ack| !ack.duplicate));
    let status = relay.status_until(|status| status.outbox_depth == 0).await;
    assert!(status.connected && status.problem.is_none(), "{status:?}");
    assert!(store.outbox_messages().is_empty(), "acknowledged events leave the outbox");

    // A later state change is published when the job runner notifies the relay.
    deliberation(&store, "task-c").await;
    relay.wakeup.notify_one();
    relay.acknowledgements(3).await;
    let messages = stored_count(&js, DEFAULT_STREAM, 9).await;
    assert_in_order_per_deliberation(&messages);
    assert!(copies(&messages).values().all(|&n| n == 1));
    relay.stop().await;

    let metrics = snapshotter.snapshot().into_vec();
    let published: u64 = metrics
        .iter()
        .filter(|(key, ..)| key.key().name() == observability::EVENTS_PUBLISHED)
        .map(|(.., value)| match value {
            DebugValue::Counter(n) => *n,
            other => panic!("a counter, got {other:?}"),
        })
        .sum();
    assert_eq!(published, 9);
    let latencies = metrics
        .iter()
        .find_map(|(key, .., value)| match value {
            DebugValue::Histogram(samples) if key.key().name() == observability::PUBLISH_LATENCY => {
                Some(samples.len())
            }
            _ => None,
        })
        .expect("the publish latency is recorded");
    assert_eq!(latencies, 9, "one latency per acknowledged event");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absent_stream_is_created_with_the_events_settings() {
    let Some(nats) = NatsServer::start() else { return };
    let store = Arc::new(InMemoryStore::default());
    deliberation(&store, "task-a").await;
    let relay = TestRelay::start(settings(&nats.url()), store.clone(), "node-1");
    let js = support::jetstream(&nats.url()).await;
    stored_count(&js, DEFAULT_STREAM, 3).await;

    let config = js.get_stream(DEFAULT_STREAM).await.unwrap().cached_info().config.clone();
    assert_eq!(config.subjects, ["orchestration.>"]);
    assert_eq!(config.storage, StorageType::File);
    assert_eq!(config.retention, RetentionPolicy::Limits);
    assert_eq!(config.max_age, Duration::from_secs(7 * 24 * 3600));
    assert_eq!(config.max_messages, 50_000);
    assert!(config.duplicate_window >= Duration::from_secs(120), "{:?}", config.duplicate_window);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_stream_is_used_and_left_unaltered() {
    let Some(nats) = NatsServer::start() else { return };
    let js = support::jetstream(&nats.url()).await;
    let operators = Config {
        name: DEFAULT_STREAM.to_owned(),
        subjects: vec!["orchestration.deliberation.*".to_owned(), "elsewhere.>".to_owned()],
        storage: StorageType::Memory,
        max_messages: 1_000,
        duplicate_window: Duration::from_secs(30),
        ..Config::default()
    };
    js.create_stream(operators).await.unwrap();
    let before = js.get_stream(DEFAULT_STREAM).await.unwrap().cached_info().config.clone();
    let store = Arc::new(InMemoryStore::default());
    deliberation(&store, "task-a").await;

    let relay = TestRelay::start(settings(&nats.url()), store.clone(), "node-1");
    stored_count(&js, DEFAULT_STREAM, 3).await;
    let after = js.get_stream(DEFAULT_STREAM).await.unwrap().cached_info().config.clone();
    assert_eq!(after, before, "the operator's stream is not altered");
    relay.stop().await;
}

/// An outbox that forgets to mark anything sent: a relay killed between the stream's
/// acknowledgement and marking the events sent.
struct NeverMarksSent(Arc<InMemoryStore>);

#[async_trait]
impl Outbox for NeverMarksSent {
    async fn take_relay(
        &self,
        owner: &str,
        until_ms: i64,
        now_ms: i64,
    ) -> Result<Option<RelayLease>, StoreError> {
        self.0.take_relay(owner, until_ms, now_ms).await
    }
    async fn release_relay(&self, lease: &RelayLease) -> Result<(), StoreError> {
        self.0.release_relay(lease).await
    }
    async fn unsent(&self, limit: usize) -> Result<Vec<OutboxMessage>, StoreError> {
        self.0.unsent(limit).await
    }
    async fn mark_sent(&self, _: &RelayLease, _: &[i64]) -> Result<bool, StoreError> {
        Err(StoreError::unavailable("marking events sent", "the relay died first"))
    }
    async fn depth(&self) -> Result<u64, StoreError> {
        self.0.depth().await
    }
    async fn drop_beyond(&self, max: u64) -> Result<u64, StoreError> {
        self.0.drop_beyond(max).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_published_again_after_a_relay_died_before_marking_them_sent_are_kept_once() {
    let Some(nats) = NatsServer::start() else { return };
    let store = Arc::new(InMemoryStore::default());
    deliberation(&store, "task-a").await;
    deliberation(&store, "task-b").await;

    // The first relay gets every event acknowledged, then fails to mark them sent.
    let mut first =
        TestRelay::start(settings(&nats.url()), Arc::new(NeverMarksSent(store.clone())), "node-1");
    first.acknowledgements(6).await;
    let outbox_failed =
        |status: &RelayStatus| status.problem.as_deref().is_some_and(|p| p.contains("the outbox failed"));
    let status = first.status_until(outbox_failed).await;
    assert!(status.connected, "the outbox failing is not NATS failing");
    first.stop().await;
    assert_eq!(store.outbox_messages().len(), 6, "nothing marked sent");

    // The next one publishes them all again: the stream drops every copy.
    let mut next = TestRelay::start(settings(&nats.url()), store.clone(), "node-2");
    let again = next.acknowledgements(6).await;
    assert!(again.iter().all(|ack| ack.duplicate), "{again:?}");
    eventually("the outbox emptied", || async { store.outbox_messages().is_empty().then_some(()) }).await;
    let js = support::jetstream(&nats.url()).await;
    let messages = stored_count(&js, DEFAULT_STREAM, 6).await;
    assert_eq!(messages.len(), 6);
    assert!(copies(&messages).values().all(|&n| n == 1), "{messages:?}");
    let status = next.status_until(|status| status.outbox_depth == 0).await;
    assert!(status.problem.is_none(), "{status:?}");
    assert_eq!(next.handle.status(), status);
    next.stop().await;
}
