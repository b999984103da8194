//! Throughput and latency of the orchestrator itself (agents answer instantly, so the numbers
//! are our overhead: scheduling, checks, scoring, persistence, gRPC), on SQLite and, when the
//! test PostgreSQL answers (`ORCHESTRATOR_TEST_PG_URL`, else the default), on PostgreSQL in a
//! fresh schema. Prints numbers; asserts nothing. Run:
//! `cargo bench -p orchestrator-tests --bench deliberation` (`-- --quick`: fewer deliberations
//! and only 3 agents × 1 round, what CI runs to make a regression visible).
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Instant;

use orchestrator_api_grpc::pb;
use orchestrator_application::LatencyHistogram;
use orchestrator_domain::checks::{check_policy, lint};
use orchestrator_tests::{ScriptedBackend, spawn_app_with};
use sqlx::Connection;

fn request(agents: i32, rounds: i32) -> pb::DeliberateRequest {
    pb::DeliberateRequest {
        task_description: "Add rate limiting to the public REST API".into(),
        role: "DEV".into(),
        constraints: Some(pb::TaskConstraints {
            rubric: "correctness first".into(),
            requirements: vec!["limit requests per API key".into(), "return 429 with Retry-After".into()],
            ..Default::default()
        }),
        rounds: Some(rounds),
        num_agents: Some(agents),
        ..Default::default()
    }
}

fn bench_checks() {
    let proposal: String = (0..1500)
        .map(|i| {
            format!(
                "Line {i}: limit requests per API key with a token bucket; return 429 with Retry-After.\n"
            )
        })
        .collect();
    let requirements: Vec<String> =
        (0..20).map(|i| format!("requirement number {i} about api keys")).collect();
    let iterations = 50;
    let started = Instant::now();
    for _ in 0..iterations {
        std::hint::black_box(check_policy(&proposal));
        std::hint::black_box(lint(
            &proposal,
            "Limit requests per API key with a token bucket",
            &requirements,
        ));
    }
    let per = started.elapsed() / iterations;
    println!(
        "checks: policy+lint of a {} KiB proposal, 20 requirements: {:.2} ms",
        proposal.len() / 1024,
        per.as_secs_f64() * 1e3
    );
}

/// Where the bench's server stores deliberations.
#[derive(Clone)]
enum Store {
    /// The default: a SQLite file of the app's own.
    Sqlite,
    /// PostgreSQL, confined to a fresh schema by the URL's search_path.
    Postgres { url: String },
}

impl Store {
    fn name(&self) -> &'static str {
        match self {
            Store::Sqlite => "SQLite",
            Store::Postgres { .. } => "PostgreSQL",
        }
    }
}

/// A fresh schema on the test PostgreSQL: the server URL, the schema, and the URL that uses it.
async fn pg_schema() -> Option<(String, String, String)> {
    let base = orchestrator_test_support::services::pg_url();
    let mut connection = match sqlx::PgConnection::connect(&base).await {
        Ok(connection) => connection,
        Err(error) => {
            println!("PostgreSQL rows left out: no PostgreSQL at the test URL ({error})");
            return None;
        }
    };
    let schema = format!("deliberation_bench_{}", uuid::Uuid::now_v7().simple());
    sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&mut connection).await.unwrap();
    let separator = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{separator}options=-c%20search_path%3D{schema}");
    Some((base, schema, url))
}

async fn bench_grpc(
    store: &Store,
    agents: i32,
    rounds: i32,
    sequential: usize,
    concurrent: usize,
    clients: usize,
) {
    let database_url = match store {
        Store::Sqlite => None,
        Store::Postgres { url } => Some(url.clone()),
    };
    let app = spawn_app_with(
        move |c| orchestrator_server::Config {
            max_running: 64,
            queue_capacity: 4096,
            database_url: database_url.unwrap_or_else(|| c.database_url.clone()),
            ..c
        },
        Some(Arc::new(ScriptedBackend::new())),
    )
    .await;
    let name = store.name();

    let mut client = app.client.clone();
    let mut latencies = LatencyHistogram::default();
    for _ in 0..sequential {
        let started = Instant::now();
        client.deliberate(request(agents, rounds)).await.unwrap();
        latencies.record(started.elapsed());
    }
    let (p50, p95, p99) = latencies.p50_p95_p99_ms();
    println!(
        "gRPC+{name}, {agents} agents × {rounds} round(s), sequential {sequential}: p50 {p50:.2} ms, p95 {p95:.2} ms, p99 {p99:.2} ms"
    );

    let started = Instant::now();
    let per_client = concurrent / clients;
    let tasks = (0..clients).map(|_| {
        let mut client = app.client.clone();
        tokio::spawn(async move {
            for _ in 0..per_client {
                client.deliberate(request(agents, rounds)).await.unwrap();
            }
        })
    });
    for t in futures::future::join_all(tasks).await {
        t.unwrap();
    }
    let elapsed = started.elapsed();
    let done = per_client * clients;
    println!(
        "gRPC+{name}, {agents} agents × {rounds} round(s), {done} deliberations from {clients} clients: {:.0} deliberations/s ({:.2} s)",
        done as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    app.stop().await;
}

fn main() {
    let quick = std::env::args().any(|arg| arg == "--quick");
    bench_checks();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let mut stores = vec![Store::Sqlite];
        let schema = pg_schema().await;
        if let Some((_, _, url)) = &schema {
            stores.push(Store::Postgres { url: url.clone() });
        }
        for store in &stores {
            if quick {
                bench_grpc(store, 3, 1, 100, 320, 32).await;
            } else {
                bench_grpc(store, 3, 1, 300, 1000, 32).await;
                bench_grpc(store, 16, 3, 50, 200, 16).await;
            }
        }
        if let Some((base, schema, _)) = schema {
            let mut connection = sqlx::PgConnection::connect(&base).await.unwrap();
            sqlx::query(&format!("DROP SCHEMA {schema} CASCADE")).execute(&mut connection).await.unwrap();
        }
    });
}
