//! The bus's numbers, on SQLite and on PostgreSQL: how fast approved plans published to
//! JetStream become stored deliberations (plans/s from the first publish until the intake has
//! acked the last plan — it acks only once the deliberations are stored), and how long a state
//! change takes to reach the events stream (from the event's `at_ms`, stamped with the state
//! change, to the time the stream stored it, which is when it acks; p50/p99).
//!
//! The server runs in this process with agents that answer at once, so the deliberations run
//! (and their events flow) while the plans arrive: the numbers are the intake's, the store's
//! and the relay's, not a model's. Latency is measured twice: over the burst (queueing
//! included) and with one plan at a time (each deliberation done before the next plan).
//!
//! Needs `nats-server` (a server of its own per store, as the drills start) and, for the
//! PostgreSQL row, `ORCHESTRATOR_TEST_PG_URL` (default the machine's server); a missing one is
//! reported and its row left out. Prints numbers; asserts only that every plan was stored.
//! Run: `cargo bench -p orchestrator-tests --bench fleet` (`FLEET_BENCH_PLANS`, default 200).
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures::StreamExt;
use orchestrator_api_grpc::pb;
use orchestrator_test_support::nats_server::NatsServer;
use orchestrator_tests::{ScriptedBackend, TestApp, spawn_app_with};
use sqlx::Connection;

const PLAN_STREAM: &str = "PLANNING_EVENTS";
const PLAN_CONSUMER: &str = "orch-planning-plan-approved";
const PLAN_SUBJECT: &str = "planning.plan.approved";
const EVENTS_STREAM: &str = "ORCHESTRATOR_EVENTS";
const COMPLETED: &str = "orchestration.deliberation.completed";
/// Plans published one at a time for the unloaded latency.
const ONE_AT_A_TIME: usize = 30;
/// The longest the bench waits for anything (a hang guard).
const PATIENCE: Duration = Duration::from_secs(300);

/// One row of the table.
struct Row {
    store: &'static str,
    plans: usize,
    stored_in: Duration,
    burst: Latencies,
    single: Latencies,
}

/// State change → stream ack of some events, in milliseconds, sorted.
struct Latencies(Vec<f64>);

impl Latencies {
    fn percentile(&self, q: f64) -> f64 {
        let sorted = &self.0;
        if sorted.is_empty() {
            return f64::NAN;
        }
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1]
    }
}

fn plan(plan_id: &str) -> Vec<u8> {
    serde_json::json!({
        "story_id": format!("story-{plan_id}"),
        "plan_id": plan_id,
        "approved_by": "bench",
        "roles": ["DEV"],
        "timestamp": "2026-06-01T12:00:00Z",
    })
    .to_string()
    .into_bytes()
}

/// Polls `attempt` every 5 ms until it gives a value.
async fn until<T>(what: &str, mut attempt: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = attempt().await {
            return value;
        }
        assert!(Instant::now() < deadline, "{what} (waited {PATIENCE:?})");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn consumer(js: &jetstream::Context) -> Option<jetstream::consumer::Info> {
    js.get_stream(PLAN_STREAM).await.ok()?.consumer_info(PLAN_CONSUMER).await.ok()
}

async fn completed_count(js: &jetstream::Context) -> usize {
    let Ok(stream) = js.get_stream(EVENTS_STREAM).await else { return 0 };
    let Ok(mut subjects) = stream.info_with_subjects(COMPLETED).await else { return 0 };
    let mut count = 0;
    while let Some(Ok((_, n))) = subjects.next().await {
        count += n;
    }
    count
}

async fn last_event_sequence(js: &jetstream::Context) -> u64 {
    js.get_stream(EVENTS_STREAM).await.unwrap().info().await.unwrap().state.last_sequence
}

/// The state change → stream ack latency of the deliberation events stored after sequence
/// `after` (up to `through`).
async fn latencies(js: &jetstream::Context, after: u64, through: u64) -> Latencies {
    let stream = js.get_stream(EVENTS_STREAM).await.unwrap();
    let mut millis = Vec::new();
    for sequence in after + 1..=through {
        let message = stream.get_raw_message(sequence).await.unwrap();
        if !message.subject.starts_with("orchestration.deliberation.") {
            continue;
        }
        let event: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
        #[allow(clippy::cast_precision_loss)]
        let stored_ms = message.time.unix_timestamp_nanos() as f64 / 1e6;
        #[allow(clippy::cast_precision_loss)]
        let changed_ms = event["at_ms"].as_i64().unwrap() as f64;
        millis.push((stored_ms - changed_ms).max(0.0));
    }
    millis.sort_by(f64::total_cmp);
    Latencies(millis)
}

async fn list_count(app: &TestApp) -> usize {
    let mut client = app.client.clone();
    let (mut count, mut page_token) = (0, String::new());
    loop {
        let request = pb::ListDeliberationsRequest { page_size: 100, page_token, ..Default::default() };
        let page = client.list_deliberations(request).await.unwrap().into_inner();
        count += page.deliberations.len();
        if page.next_page_token.is_empty() {
            return count;
        }
        page_token = page.next_page_token;
    }
}

async fn outbox_depth(app: &TestApp) -> i64 {
    let mut client = app.client.clone();
    let status = client.get_status(pb::GetStatusRequest::default()).await.unwrap().into_inner();
    status.events.map_or(-1, |events| if events.connected { events.outbox_depth } else { -1 })
}

/// Runs both measurements against a server on `database_url`.
async fn measure(store: &'static str, database_url: Option<String>, plans: usize) -> Option<Row> {
    let nats = NatsServer::start()?;
    let url = nats.url();
    let app = spawn_app_with(
        move |mut config| {
            if let Some(database_url) = database_url {
                config.database_url = database_url;
            }
            config.nats_url = Some(url);
            config.intake.enabled = true;
            config.max_running = 64;
            config.queue_capacity = 4096;
            config
        },
        Some(Arc::new(ScriptedBackend::new())),
    )
    .await;
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    until("the intake never pulled", async || consumer(&js).await.filter(|c| c.num_waiting > 0)).await;

    // The burst: every plan published at once (acks awaited together).
    let started = Instant::now();
    let mut acks = Vec::with_capacity(plans);
    for i in 0..plans {
        acks.push(js.publish(PLAN_SUBJECT, plan(&format!("burst-{i}")).into()).await.unwrap());
    }
    let mut last = 0;
    for ack in acks {
        last = last.max(ack.await.unwrap().sequence);
    }
    until("the plans were never all acked", async || {
        consumer(&js)
            .await
            .filter(|c| c.num_pending == 0 && c.num_ack_pending == 0 && c.ack_floor.stream_sequence >= last)
    })
    .await;
    let stored_in = started.elapsed();
    assert_eq!(list_count(&app).await, plans, "every plan stored once");
    until("the burst's events never all arrived", async || {
        (completed_count(&js).await >= plans && outbox_depth(&app).await == 0).then_some(())
    })
    .await;
    let burst_end = last_event_sequence(&js).await;
    let burst = latencies(&js, 0, burst_end).await;

    // One at a time: each plan's deliberation done, its events in the stream, before the next.
    for i in 0..ONE_AT_A_TIME {
        js.publish(PLAN_SUBJECT, plan(&format!("single-{i}")).into()).await.unwrap().await.unwrap();
        until("a plan's events never arrived", async || {
            (completed_count(&js).await > plans + i && outbox_depth(&app).await == 0).then_some(())
        })
        .await;
    }
    let single = latencies(&js, burst_end, last_event_sequence(&js).await).await;
    app.stop().await;
    Some(Row { store, plans, stored_in, burst, single })
}

/// A fresh schema on the test PostgreSQL: its name and the URL that uses it.
async fn pg_schema() -> Option<(String, String, String)> {
    let base = orchestrator_test_support::services::pg_url();
    let mut connection = match sqlx::PgConnection::connect(&base).await {
        Ok(connection) => connection,
        Err(error) => {
            println!("PostgreSQL row left out: no PostgreSQL at the test URL ({error})");
            return None;
        }
    };
    let schema = format!("fleet_bench_{}", uuid::Uuid::now_v7().simple());
    sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&mut connection).await.unwrap();
    let separator = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{separator}options=-c%20search_path%3D{schema}");
    Some((base, schema, url))
}

fn main() {
    let plans = std::env::var("FLEET_BENCH_PLANS").ok().and_then(|n| n.parse().ok()).unwrap_or(200);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let rows = runtime.block_on(async {
        let mut rows = Vec::new();
        rows.extend(measure("SQLite", None, plans).await);
        if let Some((base, schema, url)) = pg_schema().await {
            rows.extend(measure("PostgreSQL", Some(url), plans).await);
            let mut connection = sqlx::PgConnection::connect(&base).await.unwrap();
            sqlx::query(&format!("DROP SCHEMA {schema} CASCADE")).execute(&mut connection).await.unwrap();
        }
        rows
    });
    if rows.is_empty() {
        println!("fleet bench: nothing measured (is nats-server installed?)");
        return;
    }
    println!(
        "\nfleet bench: {plans} plans × 1 role published at once, then {ONE_AT_A_TIME} one at a time; \
         agents answer at once; state change → stream ack over every deliberation event\n"
    );
    println!("| store | publish → stored | burst: events, p50, p99 | one at a time: events, p50, p99 |");
    println!("|---|---|---|---|");
    for row in rows {
        #[allow(clippy::cast_precision_loss)]
        let rate = row.plans as f64 / row.stored_in.as_secs_f64();
        println!(
            "| {} | {rate:.0} plans/s ({} in {:.2} s) | {}, {:.1} ms, {:.1} ms | {}, {:.1} ms, {:.1} ms |",
            row.store,
            row.plans,
            row.stored_in.as_secs_f64(),
            row.burst.0.len(),
            row.burst.percentile(0.50),
            row.burst.percentile(0.99),
            row.single.0.len(),
            row.single.percentile(0.50),
            row.single.percentile(0.99),
        );
    }
}
