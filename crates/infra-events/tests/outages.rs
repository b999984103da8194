//! The relay while NATS is away: events wait in the outbox and go out once each when it is
//! back, the status says what is wrong, and stopping never waits for NATS.
#![allow(clippy::unwrap_used, reason = "test code: a failed step should fail the test loudly")]

mod support;

use std::sync::Arc;
use std::time::Duration;

use orchestrator_application::ports::{Clock, Outbox};
use orchestrator_application::testing::InMemoryStore;
use orchestrator_infra_events::DEFAULT_STREAM;
use orchestrator_test_support::nats_server::NatsServer;
use support::{
    TestRelay, assert_in_order_per_deliberation, copies, deliberation, settings, stored_count,
    unreachable_url,
};

/// How long stopping may take with NATS unreachable: a bound on behaviour (stopping does not
/// wait for NATS at all), far below any reconnect or publish timeout.
const STOP_BOUND: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stored_while_nats_is_down_wait_and_arrive_once_each_when_it_returns() {
    let Some(mut nats) = NatsServer::start() else { return };
    let store = Arc::new(InMemoryStore::default());
    let relay = TestRelay::start(settings(&nats.url()), store.clone(), "node-1");
    deliberation(&store, "before").await;
    relay.wakeup.notify_one();
    let js = support::jetstream(&nats.url()).await;
    stored_count(&js, DEFAULT_STREAM, 3).await;

    nats.kill();
    let down = relay.status_until(|status| !status.connected).await;
    assert!(down.problem.is_some(), "{down:?}");
    for task_id in ["during-1", "during-2"] {
        deliberation(&store, task_id).await;
        relay.wakeup.notify_one();
    }
    let waiting = relay.status_until(|status| status.outbox_depth == 6).await;
    assert!(!waiting.connected, "{waiting:?}");
    assert_eq!(store.outbox_messages().len(), 6, "the events wait in the outbox");

    nats.restart();
    let up = relay.status_until(|status| status.connected && status.outbox_depth == 0).await;
    assert!(up.problem.is_none(), "{up:?}");
    let js = support::jetstream(&nats.url()).await;
    let messages = stored_count(&js, DEFAULT_STREAM, 9).await;
    assert_eq!(messages.len(), 9, "{messages:?}");
    assert!(copies(&messages).values().all(|&n| n == 1), "each event once: {messages:?}");
    assert_in_order_per_deliberation(&messages);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_whose_nats_never_answered_stops_at_once_and_leaves_the_outbox() {
    let store = Arc::new(InMemoryStore::default());
    let relay = TestRelay::start(settings(&unreachable_url()), store.clone(), "node-1");
    deliberation(&store, "task-a").await;
    relay.wakeup.notify_one();
    let status = relay.status_until(|status| status.outbox_depth == 3).await;
    assert!(!status.connected && status.problem.is_some(), "{status:?}");

    relay.stop.cancel();
    tokio::time::timeout(STOP_BOUND, relay.handle.stopped()).await.expect("stopped without waiting for NATS");
    assert_eq!(store.outbox_messages().len(), 3, "left for the next start");
    let now = support::WallClock.now_ms();
    let next = store.take_relay("node-2", now + 10_000, now).await.unwrap();
    assert!(next.is_some(), "the relay lease was given up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_whose_nats_went_away_stops_at_once() {
    let Some(mut nats) = NatsServer::start() else { return };
    let store = Arc::new(InMemoryStore::default());
    let mut relay = TestRelay::start(settings(&nats.url()), store.clone(), "node-1");
    deliberation(&store, "task-a").await;
    relay.wakeup.notify_one();
    relay.acknowledgements(3).await;

    nats.kill();
    relay.status_until(|status| !status.connected).await;
    deliberation(&store, "task-b").await;
    relay.wakeup.notify_one();
    relay.stop.cancel();
    tokio::time::timeout(STOP_BOUND, relay.handle.stopped()).await.expect("stopped without waiting for NATS");
    assert_eq!(store.outbox_messages().len(), 3, "task-b's events wait for the next start");
}

#[tokio::test(flavor = "current_thread")]
async fn beyond_max_outbox_the_oldest_events_are_dropped_and_counted() {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let store = Arc::new(InMemoryStore::default());
    for task_id in ["old", "middle", "new"] {
        deliberation(&store, task_id).await;
    }
    let settings = settings(&unreachable_url()).with_max_outbox(4).unwrap();
    let relay = TestRelay::start(settings, store.clone(), "node-1");

    let status = relay.status_until(|status| status.outbox_depth == 4).await;
    assert!(!status.connected, "{status:?}");
    let kept: Vec<String> = store.outbox_messages().iter().map(|m| m.dedup_id()).collect();
    assert_eq!(
        kept,
        ["middle:ended:3", "new:submitted:1", "new:started:2", "new:ended:3"],
        "the newest are kept"
    );
    relay.stop().await;

    let dropped: u64 = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().name() == orchestrator_infra_events::observability::EVENTS_DROPPED)
        .map(|(.., value)| match value {
            metrics_util::debugging::DebugValue::Counter(n) => n,
            other => panic!("a counter, got {other:?}"),
        })
        .sum();
    assert_eq!(dropped, 5);
}
