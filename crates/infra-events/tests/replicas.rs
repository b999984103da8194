//! Several servers on one outbox: one relays at a time, the others take over when it stops.
#![allow(clippy::unwrap_used, reason = "test code: a failed step should fail the test loudly")]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use orchestrator_application::ports::{Outbox, OutboxMessage, RelayLease, StoreError};
use orchestrator_application::testing::InMemoryStore;
use orchestrator_infra_events::DEFAULT_STREAM;
use orchestrator_test_support::nats_server::NatsServer;
use support::{TestRelay, copies, deliberation, eventually, settings, stored_count};
use tokio::sync::broadcast::error::TryRecvError;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_relay_lease_holder_publishes_and_another_takes_over_when_it_stops() {
    let Some(nats) = NatsServer::start() else { return };
    let store = Arc::new(InMemoryStore::default());
    let mut a = TestRelay::start(settings(&nats.url()), store.clone(), "node-a");
    deliberation(&store, "first").await;
    a.wakeup.notify_one();
    a.acknowledgements(3).await;

    // b runs beside a (renewing its claim, counting the outbox) but a holds the lease.
    let mut b = TestRelay::start(settings(&nats.url()), store.clone(), "node-b");
    deliberation(&store, "second").await;
    a.wakeup.notify_one();
    b.wakeup.notify_one();
    a.acknowledgements(3).await;
    b.status_until(|status| status.connected && status.outbox_depth == 0).await;
    assert_eq!(b.acknowledged.try_recv(), Err(TryRecvError::Empty), "b published nothing");

    // a stops and gives the lease up: b relays from then on.
    a.stop().await;
    deliberation(&store, "third").await;
    b.wakeup.notify_one();
    let taken_over = b.acknowledgements(3).await;
    assert!(taken_over.iter().all(|ack| ack.dedup_id.starts_with("third:")), "{taken_over:?}");

    let js = support::jetstream(&nats.url()).await;
    let messages = stored_count(&js, DEFAULT_STREAM, 9).await;
    assert_eq!(messages.len(), 9);
    assert!(copies(&messages).values().all(|&n| n == 1));
    b.stop().await;
}

/// The shared outbox as one server sees it: while `cut`, its writes fail (renewing the relay
/// lease, marking events sent) — it can still read the outbox and publish.
struct WritesFail {
    outbox: Arc<InMemoryStore>,
    cut: AtomicBool,
}

impl WritesFail {
    fn write(&self) -> Result<&InMemoryStore, StoreError> {
        if self.cut.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable("writing the outbox", "partitioned"));
        }
        Ok(&self.outbox)
    }
}

#[async_trait]
impl Outbox for WritesFail {
    async fn take_relay(
        &self,
        owner: &str,
        until_ms: i64,
        now_ms: i64,
    ) -> Result<Option<RelayLease>, StoreError> {
        self.write()?.take_relay(owner, until_ms, now_ms).await
    }
    async fn release_relay(&self, lease: &RelayLease) -> Result<(), StoreError> {
        self.write()?.release_relay(lease).await
    }
    async fn unsent(&self, limit: usize) -> Result<Vec<OutboxMessage>, StoreError> {
        self.outbox.unsent(limit).await
    }
    async fn mark_sent(&self, lease: &RelayLease, ids: &[i64]) -> Result<bool, StoreError> {
        self.write()?.mark_sent(lease, ids).await
    }
    async fn depth(&self) -> Result<u64, StoreError> {
        self.outbox.depth().await
    }
    async fn drop_beyond(&self, max: u64) -> Result<u64, StoreError> {
        self.write()?.drop_beyond(max).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_cannot_renew_its_lease_stops_publishing_once_it_runs_out() {
    let Some(nats) = NatsServer::start() else { return };
    let store = Arc::new(InMemoryStore::default());
    let a_view = Arc::new(WritesFail { outbox: store.clone(), cut: AtomicBool::new(false) });
    let mut a = TestRelay::start(settings(&nats.url()), a_view.clone(), "node-a");
    deliberation(&store, "first").await;
    a.wakeup.notify_one();
    a.acknowledgements(3).await;
    let b = TestRelay::start(settings(&nats.url()), store.clone(), "node-b");

    // a can no longer write: its lease runs out unrenewed, and only b can mark events sent, so
    // an empty outbox means b took over.
    a_view.cut.store(true, Ordering::SeqCst);
    deliberation(&store, "second").await;
    a.wakeup.notify_one();
    b.wakeup.notify_one();
    eventually("b took over", || async { store.outbox_messages().is_empty().then_some(()) }).await;

    // From then on a, its lease over by its own clock, publishes nothing.
    while a.acknowledged.try_recv().is_ok() {}
    deliberation(&store, "third").await;
    a.wakeup.notify_one();
    b.wakeup.notify_one();
    eventually("b published the third", || async { store.outbox_messages().is_empty().then_some(()) }).await;
    while let Ok(ack) = a.acknowledged.try_recv() {
        assert!(!ack.dedup_id.starts_with("third:"), "a published after its lease ran out: {ack:?}");
    }

    let js = support::jetstream(&nats.url()).await;
    let messages = stored_count(&js, DEFAULT_STREAM, 9).await;
    assert_eq!(messages.len(), 9);
    assert!(copies(&messages).values().all(|&n| n == 1));
    a.stop().await;
    b.stop().await;
}
