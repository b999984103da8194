//! The relay: takes the relay lease, publishes the outbox's events through JetStream in
//! order, marks them sent once acknowledged, keeps the outbox bounded, reports how it fares.
//!
//! Every server runs one; the one holding the relay lease publishes, the others only renew
//! their claim (every third of the lease) and count the outbox for their status. The relay
//! wakes when its own server stored an event (the `wakeup` notification), when the
//! connection to NATS comes back, and every poll interval (for events other servers stored).
//! Whatever it waits on — a connect, a stream request, an acknowledgement — stopping
//! interrupts it: a relay whose NATS is away stops at once, its events left in the outbox.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream::{self, Context};
use async_nats::{Client, ConnectOptions, Event};
use orchestrator_application::ports::{Clock, Outbox, RelayLease, RelayStatus};
use tokio::sync::{Notify, broadcast, watch};
use tokio::time::{Instant, sleep_until, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::backoff::Backoff;
use crate::error::{EventsError, Result};
use crate::handle::{Acknowledged, RelayHandle};
use crate::observability;
use crate::publish::publish_in_order;
use crate::settings::EventsSettings;
use crate::stream::ensure_stream;

/// How long a stopping relay may keep publishing what is left while NATS answers.
const FINAL_FLUSH: Duration = Duration::from_secs(1);
/// How long a stopping relay may wait for the store to take its relay lease back (it runs out
/// by itself otherwise).
const RELEASE: Duration = Duration::from_secs(1);
/// How many acknowledgements a slow reader of [`RelayHandle::acknowledgements`] may lag.
const ACKNOWLEDGEMENTS: usize = 1_024;

/// The outbox relay over JetStream. See the module documentation; started with
/// [`JetStreamRelay::start`], it runs until its stop token is cancelled.
pub struct JetStreamRelay {
    settings: EventsSettings,
    outbox: Arc<dyn Outbox>,
    node_id: String,
    clock: Arc<dyn Clock>,
    status: watch::Sender<RelayStatus>,
    acknowledged: broadcast::Sender<Acknowledged>,
    /// The relay lease while this relay holds it, with its end by the clock.
    held: Option<Held>,
    renew_at: Instant,
    housekeeping_at: Instant,
    /// No publish before this (backing off after a failure).
    retry_at: Instant,
    backoff: Backoff,
    /// Whether the stream was found or created since the connection was last (re)made.
    stream_ready: bool,
    connected: bool,
    /// When the relay started: the first connect gets a timeout's grace before it counts as a
    /// failure.
    started: Instant,
    depth: u64,
    /// The failure the status reports, until an attempt succeeds.
    problem: Option<Problem>,
}

/// The relay lease as held.
#[derive(Debug, Clone)]
struct Held {
    lease: RelayLease,
    until_ms: i64,
}

/// What a pass did.
#[derive(Debug, PartialEq, Eq)]
enum Pass {
    /// Published events: there may be more right away.
    Progress,
    /// Nothing to do until woken.
    Idle,
    /// Backing off after a failure: nothing attempted.
    Waiting,
}

impl JetStreamRelay {
    /// Starts the relay of `outbox` on the runtime and returns at once: connecting happens in
    /// the background, retried until NATS answers, so a broker that is down never holds up
    /// nor fails the server's start. `wakeup` is notified by the job runner after each stored
    /// event; `node_id` names this server as the relay lease's holder; `stop` ends the relay
    /// (see [`RelayHandle::stopped`]).
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn start(
        settings: EventsSettings,
        outbox: Arc<dyn Outbox>,
        wakeup: Arc<Notify>,
        node_id: String,
        clock: Arc<dyn Clock>,
        stop: CancellationToken,
    ) -> RelayHandle {
        let (relay, status) = Self::new(settings, outbox, node_id, clock);
        let acknowledged = relay.acknowledged.clone();
        let task = tokio::spawn(relay.run(wakeup, stop));
        RelayHandle::new(task, status, acknowledged)
    }

    /// The relay before it runs, and its status as watchers see it.
    fn new(
        settings: EventsSettings,
        outbox: Arc<dyn Outbox>,
        node_id: String,
        clock: Arc<dyn Clock>,
    ) -> (Self, watch::Receiver<RelayStatus>) {
        let (status, status_rx) = watch::channel(RelayStatus {
            connected: false,
            outbox_depth: 0,
            problem: Some(EventsError::Disconnected.to_string()),
        });
        let now = Instant::now();
        let relay = Self {
            settings,
            outbox,
            node_id,
            clock,
            status,
            acknowledged: broadcast::channel(ACKNOWLEDGEMENTS).0,
            held: None,
            renew_at: now,
            housekeeping_at: now,
            retry_at: now,
            backoff: Backoff::default(),
            stream_ready: false,
            connected: false,
            started: now,
            depth: 0,
            problem: None,
        };
        (relay, status_rx)
    }

    async fn run(mut self, wakeup: Arc<Notify>, stop: CancellationToken) {
        info!(
            servers = %self.settings.redacted_url(),
            stream = self.settings.stream(),
            prefix = self.settings.prefix(),
            node_id = self.node_id,
            "events relay starting"
        );
        let connection_changed = Arc::new(Notify::new());
        let client = tokio::select! {
            biased;
            () = stop.cancelled() => return,
            client = self.connect(Arc::clone(&connection_changed)) => client,
        };
        let mut js = jetstream::new(client.clone());
        js.set_timeout(self.settings.publish_timeout());
        loop {
            let pass = tokio::select! {
                biased;
                () = stop.cancelled() => break,
                pass = self.pass(&client, &js) => pass,
            };
            let pass = match pass {
                Ok(pass) => {
                    if pass != Pass::Waiting {
                        self.recovered();
                    }
                    pass
                }
                Err(error) => {
                    self.failed(error);
                    Pass::Waiting
                }
            };
            if pass == Pass::Progress {
                continue;
            }
            let deadline = self.next_deadline();
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                () = wakeup.notified() => {}
                () = connection_changed.notified() => {}
                () = sleep_until(deadline) => {}
            }
        }
        self.finish(&client, &js).await;
    }

    /// The client, made without waiting for NATS (the client connects and reconnects in the
    /// background). Making it fails only on a client setting NATS refuses; that is retried
    /// (with backoff) rather than ending the relay, and the status says why.
    async fn connect(&mut self, connection_changed: Arc<Notify>) -> Client {
        loop {
            let changed = Arc::clone(&connection_changed);
            let options = ConnectOptions::new()
                .name("orchestrator-events-relay")
                .retry_on_initial_connect()
                .connection_timeout(self.settings.publish_timeout())
                .request_timeout(Some(self.settings.publish_timeout()))
                .event_callback(move |event| {
                    let changed = Arc::clone(&changed);
                    async move {
                        if matches!(event, Event::Connected | Event::Disconnected) {
                            changed.notify_one();
                        }
                    }
                });
            match options.connect(self.settings.servers()).await {
                Ok(client) => return client,
                Err(source) => {
                    let wait = self.failed(EventsError::Client { source });
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// One round: renew the lease and count the outbox when due, then publish a batch when
    /// this relay holds the lease, NATS is connected and no backoff is pending.
    async fn pass(&mut self, client: &Client, js: &Context) -> Result<Pass> {
        let now = Instant::now();
        if now >= self.renew_at {
            self.renew().await?;
        }
        if now >= self.housekeeping_at {
            self.housekeep().await?;
        }
        self.follow_connection(client);
        if !self.connected {
            // The first connection is still being made: no failure to report yet.
            if client.connection_state() == State::Pending
                && self.started.elapsed() < self.settings.publish_timeout()
            {
                return Ok(Pass::Waiting);
            }
            return Err(EventsError::Disconnected);
        }
        let Some(held) = self.held_now() else { return Ok(Pass::Idle) };
        if now < self.retry_at {
            return Ok(Pass::Waiting);
        }
        self.relay_batch(js, &held.lease).await
    }

    /// Publishes the oldest unsent events and marks the acknowledged ones sent.
    async fn relay_batch(&mut self, js: &Context, lease: &RelayLease) -> Result<Pass> {
        if !self.stream_ready {
            ensure_stream(js, &self.settings).await?;
            self.stream_ready = true;
        }
        let messages = self.outbox.unsent(self.settings.batch_size()).await.map_err(outbox)?;
        if messages.is_empty() {
            self.set_depth(0);
            return Ok(Pass::Idle);
        }
        let outcome = publish_in_order(js, &self.settings, &messages, self.clock.as_ref()).await;
        for acknowledged in outcome.acknowledged {
            // Nobody listening is the usual case.
            let _ = self.acknowledged.send(acknowledged);
        }
        if !outcome.done.is_empty() {
            if !self.outbox.mark_sent(lease, &outcome.done).await.map_err(outbox)? {
                warn!(
                    node_id = self.node_id,
                    "another server took the relay lease: it publishes the events from now on"
                );
                self.held = None;
                return Ok(Pass::Idle);
            }
            self.set_depth(self.depth.saturating_sub(outcome.done.len() as u64));
        }
        match outcome.failure {
            Some(failure) => {
                // Whatever failed, the stream may be what is missing (a broker restarted
                // without its store): look it up again before the next attempt.
                self.stream_ready = false;
                Err(failure)
            }
            None => Ok(Pass::Progress),
        }
    }

    /// Takes or renews the relay lease.
    async fn renew(&mut self) -> Result<()> {
        let lease = self.settings.relay_lease();
        let now_ms = self.clock.now_ms();
        let until_ms = now_ms.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
        // A failed renewal is tried again at the next poll, while the lease still holds.
        self.renew_at = Instant::now() + self.settings.poll_interval().min(lease / 3);
        let taken = self.outbox.take_relay(&self.node_id, until_ms, now_ms).await.map_err(outbox)?;
        self.renew_at = Instant::now() + lease / 3;
        match taken {
            Some(lease) => {
                if self.held.as_ref().is_none_or(|held| held.lease != lease) {
                    info!(
                        node_id = self.node_id,
                        epoch = lease.epoch,
                        "took the relay lease: this server publishes the events"
                    );
                    self.retry_at = Instant::now();
                }
                self.held = Some(Held { lease, until_ms });
            }
            None => {
                if self.held.take().is_some() {
                    warn!(
                        node_id = self.node_id,
                        "lost the relay lease: another server publishes the events"
                    );
                }
            }
        }
        Ok(())
    }

    /// Bounds the outbox (the lease holder only, so servers do not all drop) and counts it.
    async fn housekeep(&mut self) -> Result<()> {
        self.housekeeping_at = Instant::now() + self.settings.poll_interval();
        if self.held_now().is_some() {
            let max = self.settings.max_outbox();
            let dropped = self.outbox.drop_beyond(max).await.map_err(outbox)?;
            if dropped > 0 {
                error!(
                    dropped,
                    max_outbox = max,
                    "the outbox is full: dropped its oldest events, they will never be published"
                );
                observability::events_dropped("outbox_full", dropped);
            }
        }
        let depth = self.outbox.depth().await.map_err(outbox)?;
        self.set_depth(depth);
        Ok(())
    }

    /// Notes a change of the connection: a new connection may be to a server that lost its
    /// store, so the stream is looked up again, and a pending backoff is cut short.
    fn follow_connection(&mut self, client: &Client) {
        let connected = client.connection_state() == State::Connected;
        if connected && !self.connected {
            info!(servers = %self.settings.redacted_url(), "connected to NATS");
            if self.problem.as_ref().is_some_and(|problem| problem.kind == "disconnected") {
                self.problem = None;
            }
            self.stream_ready = false;
            self.retry_at = Instant::now();
            self.backoff.reset();
        }
        self.connected = connected;
        self.publish_status();
    }

    /// The lease, while held by the clock (a lease that ran out may be another's by now).
    fn held_now(&self) -> Option<Held> {
        self.held.as_ref().filter(|held| held.until_ms > self.clock.now_ms()).cloned()
    }

    /// When to look again without being woken: the next renewal, count or retry.
    fn next_deadline(&self) -> Instant {
        let mut deadline = self.renew_at.min(self.housekeeping_at);
        if self.held.is_some() && self.retry_at > Instant::now() {
            deadline = deadline.min(self.retry_at);
        }
        deadline
    }

    /// Stopping: a last flush while NATS answers (bounded), then the lease given up so another
    /// server relays at once. Nothing here waits for NATS beyond [`FINAL_FLUSH`].
    async fn finish(mut self, client: &Client, js: &Context) {
        if let Some(held) = self.held_now()
            && client.connection_state() == State::Connected
        {
            let flush = async { while let Ok(Pass::Progress) = self.relay_batch(js, &held.lease).await {} };
            if timeout(FINAL_FLUSH, flush).await.is_err() {
                info!("stopped publishing at shutdown: the rest waits in the outbox");
            }
        }
        if let Some(held) = self.held.take() {
            match timeout(RELEASE, self.outbox.release_relay(&held.lease)).await {
                Ok(Ok(())) => debug!("gave the relay lease up"),
                Ok(Err(error)) => warn!(%error, "could not give the relay lease up: it runs out by itself"),
                Err(_) => warn!("giving the relay lease up timed out: it runs out by itself"),
            }
        }
        info!(unsent = self.depth, "events relay stopped");
    }
}

impl fmt::Debug for JetStreamRelay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JetStreamRelay")
            .field("settings", &self.settings)
            .field("node_id", &self.node_id)
            .field("held", &self.held)
            .field("connected", &self.connected)
            .field("depth", &self.depth)
            .finish_non_exhaustive()
    }
}

fn outbox(source: orchestrator_application::ports::StoreError) -> EventsError {
    EventsError::Outbox { source }
}

mod health;

use health::Problem;

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};

    use orchestrator_application::ports::StoreError;
    use orchestrator_application::testing::InMemoryStore;

    use super::*;

    /// A clock the test moves.
    #[derive(Debug, Default)]
    struct TestClock(AtomicI64);

    impl Clock for TestClock {
        fn now_ms(&self) -> i64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    fn relay(
        outbox: Arc<InMemoryStore>,
        clock: Arc<TestClock>,
    ) -> (JetStreamRelay, watch::Receiver<RelayStatus>) {
        let settings = EventsSettings::new("nats://127.0.0.1:4222", "p").unwrap();
        JetStreamRelay::new(settings, outbox, "node-1".to_owned(), clock)
    }

    #[tokio::test]
    async fn the_relay_lease_is_held_until_its_end_by_the_clock_and_then_left_to_another() {
        let store = Arc::new(InMemoryStore::default());
        let clock = Arc::new(TestClock::default());
        let (mut relay, _) = relay(store.clone(), clock.clone());
        relay.renew().await.unwrap();
        let held = relay.held_now().expect("nobody else held it");
        assert_eq!(held.until_ms, 10_000, "the default lease of 10 s");

        // Unrenewed past its end, it is not used, even before anyone else takes it.
        clock.0.store(10_000, Ordering::SeqCst);
        assert!(relay.held_now().is_none());
        assert!(store.take_relay("node-2", 20_000, 10_001).await.unwrap().is_some());
        relay.renew().await.unwrap();
        assert!(relay.held.is_none(), "another relay holds it now");
    }

    #[tokio::test]
    async fn the_status_tells_a_broker_problem_from_a_store_problem() {
        let store = Arc::new(InMemoryStore::default());
        let (mut relay, status) = relay(store, Arc::new(TestClock::default()));
        assert_eq!(status.borrow().problem.as_deref(), Some("not connected to NATS"), "until it connects");

        relay.connected = true;
        relay.failed(EventsError::Outbox { source: StoreError::unavailable("reading the outbox", "down") });
        let current = status.borrow().clone();
        assert!(current.connected, "NATS answers; the store is what fails");
        assert!(current.problem.unwrap().starts_with("the outbox failed"));

        relay.failed(EventsError::Disconnected);
        assert!(!status.borrow().connected);
        relay.recovered();
        let current = status.borrow().clone();
        assert!(current.connected && current.problem.is_none(), "{current:?}");
    }
}
