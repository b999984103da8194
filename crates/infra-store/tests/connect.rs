//! Opening and closing stores: reopening a SQLite file, choosing the database from a URL,
//! migrations that run once, results that are plain SQL rows, errors that keep passwords
//! secret, closing through the port, and calls that give up promptly once PostgreSQL is gone.

#![allow(clippy::unwrap_used, reason = "test code: a failed step should fail the test loudly")]

mod support;

use orchestrator_application::testing::tid;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use orchestrator_application::ports::{DeliberationStore, ListQuery, StoreError};
use orchestrator_domain::{DeliberationStatus, Role};
use orchestrator_infra_store::{PostgresStore, SqliteStore, StoreOptions, connect};
use sqlx::{Connection, SqliteConnection};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// Migrations shipped for `database` (one file each), so adding one needs no edit here.
fn migrations(database: &str) -> i64 {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/").to_owned() + database;
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "sql"))
        .count() as i64
}

use support::{PostgresDb, fence, finished_deliberation, lease, request};

async fn complete_one(
    store: &dyn DeliberationStore,
    task_id: &str,
) -> orchestrator_domain::DeliberationOutcome {
    let finished = finished_deliberation(Role::Dev);
    assert!(store.create(&request(task_id, Role::Dev, 1), &lease(), None).await.unwrap());
    assert!(store.mark_started(&tid(task_id), &fence(), 2, None).await.unwrap());
    assert!(store.save_progress(&tid(task_id), &fence(), &finished.last, None).await.unwrap());
    assert!(store.complete(&tid(task_id), &fence(), &finished.outcome, 3, 1, None).await.unwrap());
    finished.outcome
}

/// An error and its sources, joined by `": "`: what a log line shows.
fn chain(err: &StoreError) -> String {
    let causes =
        std::iter::successors(Some(err as &(dyn std::error::Error + 'static)), |&cause| cause.source());
    causes.map(ToString::to_string).collect::<Vec<_>>().join(": ")
}

async fn migrations_applied(path: &std::path::Path) -> i64 {
    let mut conn = SqliteConnection::connect(&format!("sqlite:{}", path.display())).await.unwrap();
    let (count,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM _sqlx_migrations").fetch_one(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    count
}

#[tokio::test]
async fn reopening_the_sqlite_file_keeps_every_deliberation_and_migrates_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested").join("data").join("orchestrator.db");
    let location = path.to_str().unwrap().to_owned();

    let store = SqliteStore::open(&location, &StoreOptions::default()).await.unwrap();
    let outcome = complete_one(&store, "kept").await;
    assert!(store.create(&request("left-pending", Role::Qa, 5), &lease(), None).await.unwrap());
    let before = store.get(&tid("kept")).await.unwrap().unwrap();
    store.close().await;
    drop(store);

    let reopened = SqliteStore::open(&location, &StoreOptions::default()).await.unwrap();
    let after = reopened.get(&tid("kept")).await.unwrap().unwrap();
    assert_eq!(after, before);
    assert_eq!(after.outcome.as_ref(), Some(&outcome));
    assert_eq!(
        reopened.get(&tid("left-pending")).await.unwrap().unwrap().status,
        DeliberationStatus::Pending
    );
    assert_eq!(reopened.list(&ListQuery { limit: 10, ..ListQuery::default() }).await.unwrap().items.len(), 2);
    reopened.close().await;
    drop(reopened);

    let again = SqliteStore::open(&format!("sqlite://{location}"), &StoreOptions::default()).await.unwrap();
    assert_eq!(again.get(&tid("kept")).await.unwrap().unwrap(), before);
    again.close().await;
    assert_eq!(
        migrations_applied(&path).await,
        migrations("sqlite"),
        "migrations run once, reopening is a no-op"
    );
}

#[tokio::test]
async fn completed_results_are_plain_sql_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rows.db");
    let store = SqliteStore::open(path.to_str().unwrap(), &StoreOptions::default()).await.unwrap();
    let outcome = complete_one(&store, "sql").await;
    store.close().await;

    let mut conn = SqliteConnection::connect(&format!("sqlite:{}", path.display())).await.unwrap();
    let (winner, status, prompt_tokens): (String, String, i64) =
        sqlx::query_as("SELECT winner_id, status, prompt_tokens FROM deliberations WHERE task_id = 'sql'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(winner, outcome.winner().agent.id.as_str());
    assert_eq!(status, "COMPLETED");
    assert_eq!(prompt_tokens, i64::try_from(outcome.usage.prompt_tokens).unwrap());

    let ranks: Vec<(String, i64)> =
        sqlx::query_as("SELECT agent_id, rank FROM proposals WHERE task_id = 'sql' ORDER BY rank")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let expected: Vec<(String, i64)> =
        outcome.results.iter().map(|r| (r.agent.id.to_string(), i64::from(r.rank))).collect();
    assert_eq!(ranks, expected);

    let (reviews, ungraded): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(*) - count(score) FROM reviews WHERE task_id = 'sql'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    let all_reviews = outcome.results.iter().flat_map(|r| &r.reviews);
    assert_eq!(reviews, i64::try_from(all_reviews.clone().count()).unwrap());
    assert_eq!(ungraded, i64::try_from(all_reviews.filter(|r| r.score.is_none()).count()).unwrap());

    let (failed_agent, phase): (String, String) =
        sqlx::query_as("SELECT agent_id, phase FROM agent_failures WHERE task_id = 'sql'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!((failed_agent.as_str(), phase.as_str()), ("dev-4", "propose"));
    conn.close().await.unwrap();
}

#[tokio::test]
async fn connect_opens_sqlite_for_paths_and_sqlite_urls() {
    let dir = tempfile::tempdir().unwrap();
    for location in [
        dir.path().join("plain").join("a.db").display().to_string(),
        format!("sqlite:{}", dir.path().join("url").join("b.db").display()),
        "sqlite::memory:".to_owned(),
    ] {
        let store: Arc<dyn DeliberationStore> = connect(&location, &StoreOptions::default()).await.unwrap();
        complete_one(store.as_ref(), "via-connect").await;
        let record = store.get(&tid("via-connect")).await.unwrap().unwrap();
        assert_eq!(record.status, DeliberationStatus::Completed, "{location}");
        assert!(record.outcome.is_some(), "{location}");
    }
}

#[tokio::test]
async fn connect_rejects_other_url_schemes() {
    let err = connect("mysql://app:hunter2@db/x", &StoreOptions::default()).await.err().unwrap();
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
    let message = chain(&err);
    assert!(message.contains("unsupported database url"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
}

#[tokio::test]
async fn postgres_connection_errors_never_show_the_password() {
    // Port 1 refuses connections at once.
    let err = connect("postgres://app:hunter2@127.0.0.1:1/x", &StoreOptions::default()).await.err().unwrap();
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
    let message = chain(&err);
    assert!(!message.contains("hunter2"), "{message}");
    assert!(message.contains("postgres://app:***@127.0.0.1:1/x"), "{message}");
    assert!(std::error::Error::source(&err).is_some(), "the refusal is kept as the cause: {err:?}");
}

#[tokio::test]
async fn postgres_reconnecting_to_a_schema_keeps_data_and_migrates_once() {
    let Some(db) = PostgresDb::new().await else { return };
    let outcome = complete_one(db.store.as_ref(), "kept").await;
    let again = PostgresStore::connect(&db.url, Some(&db.schema), &StoreOptions::default()).await.unwrap();
    let record = again.get(&tid("kept")).await.unwrap().unwrap();
    assert_eq!(record.outcome.as_ref(), Some(&outcome));
    let (count,): (i64,) =
        sqlx::query_as(&format!("SELECT count(*) FROM \"{}\"._sqlx_migrations", db.schema))
            .fetch_one(&mut sqlx::PgConnection::connect(&db.url).await.unwrap())
            .await
            .unwrap();
    assert_eq!(count, migrations("postgres"), "each migration applied once");
    again.close().await;
    db.drop_schema().await;
}

#[tokio::test]
async fn closing_through_the_port_checkpoints_sqlite_and_refuses_later_calls() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("closing.db");
    let wal = dir.path().join("closing.db-wal");
    let store: Arc<dyn DeliberationStore> =
        connect(path.to_str().unwrap(), &StoreOptions::default()).await.unwrap();
    let outcome = complete_one(store.as_ref(), "kept").await;
    assert!(std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0), "writes go to the write-ahead log first");

    store.close().await;
    assert!(
        std::fs::metadata(&wal).map_or(true, |m| m.len() == 0),
        "closing checkpoints the log into the database file"
    );
    let err = store.get(&tid("kept")).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
    assert!(matches!(store.ping().await, Err(StoreError::Unavailable { .. })));

    let reopened = SqliteStore::open(path.to_str().unwrap(), &StoreOptions::default()).await.unwrap();
    assert_eq!(reopened.get(&tid("kept")).await.unwrap().unwrap().outcome.as_ref(), Some(&outcome));
    reopened.close().await;
}

/// A TCP forwarder between the store and PostgreSQL, so a test can take the database away.
struct Proxy {
    addr: String,
    accepting: tokio::task::JoinHandle<()>,
    forwarders: Arc<Mutex<JoinSet<()>>>,
}

impl Proxy {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let forwarders = Arc::new(Mutex::new(JoinSet::new()));
        let spawned = Arc::clone(&forwarders);
        let accepting = tokio::spawn(async move {
            loop {
                let (mut client, _) = listener.accept().await.unwrap();
                let upstream = upstream.clone();
                spawned.lock().unwrap().spawn(async move {
                    let mut server = TcpStream::connect(upstream).await.unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
            }
        });
        Self { addr, accepting, forwarders }
    }

    /// Cuts the open connections but takes new ones, as a restarted server would.
    async fn cut(&self) {
        let mut forwarders = std::mem::take(&mut *self.forwarders.lock().unwrap());
        forwarders.abort_all();
        while forwarders.join_next().await.is_some() {}
    }

    /// Refuses new connections and cuts the open ones, as a stopped server would.
    async fn stop(self) {
        self.accepting.abort();
        let _ = self.accepting.await;
        let mut forwarders = std::mem::take(&mut *self.forwarders.lock().unwrap());
        forwarders.abort_all();
        while forwarders.join_next().await.is_some() {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_calls_fail_within_the_acquire_timeout_once_the_server_is_gone() {
    let Some(db) = PostgresDb::new().await else { return };
    let authority = db.url.split_once('@').unwrap().1.split('/').next().unwrap().to_owned();
    let proxy = Proxy::start(authority.clone()).await;
    let url = db.url.replacen(&authority, &proxy.addr, 1);
    let options = StoreOptions { acquire_timeout: Duration::from_millis(300), ..StoreOptions::default() };
    let store = PostgresStore::connect(&url, Some(&db.schema), &options).await.unwrap();
    assert!(store.create(&request("before", Role::Dev, 1), &lease(), None).await.unwrap());
    store.ping().await.unwrap();

    proxy.stop().await;
    let mut waits = Vec::new();
    for call in ["get", "list", "create", "ping"] {
        let started = Instant::now();
        let result = match call {
            "get" => store.get(&tid("before")).await.map(drop),
            "list" => store.list(&ListQuery { limit: 10, ..ListQuery::default() }).await.map(drop),
            "create" => store.create(&request("after", Role::Dev, 2), &lease(), None).await.map(drop),
            _ => store.ping().await,
        };
        let err = result.unwrap_err();
        assert!(matches!(err, StoreError::Unavailable { .. }), "{call}: {err:?}");
        waits.push((call, started.elapsed()));
    }
    eprintln!("with PostgreSQL gone and a 300 ms acquire timeout, calls failed after {waits:?}");
    // The bound is 30 times the configured timeout: it fails only if the option is ignored
    // (the pool used to wait 30 s per call), not on a slow machine.
    for (call, waited) in waits {
        assert!(waited < Duration::from_secs(10), "{call} waited {waited:?}");
    }
    store.close().await;
    db.drop_schema().await;
}

/// Writes hand their connections on without sqlx's ping on return; one broken under a write
/// must still be replaced, not handed on for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_writes_recover_on_new_connections_after_the_server_cut_the_old_ones() {
    let Some(db) = PostgresDb::new().await else { return };
    let authority = db.url.split_once('@').unwrap().1.split('/').next().unwrap().to_owned();
    let proxy = Proxy::start(authority.clone()).await;
    let url = db.url.replacen(&authority, &proxy.addr, 1);
    let store = PostgresStore::connect(&url, Some(&db.schema), &StoreOptions::default()).await.unwrap();
    assert!(store.create(&request("before", Role::Dev, 1), &lease(), None).await.unwrap());

    proxy.cut().await;
    // The write that finds its connection cut fails (the durable writes above the store retry
    // it); the next one gets a working connection.
    let first = store.create(&request("after", Role::Dev, 2), &lease(), None).await;
    if let Err(err) = &first {
        assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
        assert!(store.create(&request("after", Role::Dev, 2), &lease(), None).await.unwrap());
    }
    for n in 0..5 {
        let task_id = format!("later-{n}");
        assert!(store.create(&request(&task_id, Role::Dev, 3), &lease(), None).await.unwrap());
        assert!(store.mark_started(&tid(&task_id), &fence(), 4, None).await.unwrap());
    }
    // Reads go through sqlx's pool, which drops a broken connection once a read failed on it.
    let read = match store.get(&tid("after")).await {
        Ok(read) => read,
        Err(_) => store.get(&tid("after")).await.unwrap(),
    };
    assert!(read.is_some());
    store.close().await;
    proxy.stop().await;
    db.drop_schema().await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_bad_page_token_is_noted_at_info_not_logged_as_an_error() {
    let (_guard, captured) = orchestrator_test_support::logs::capture_logs();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("o.db");
    let store = SqliteStore::open(path.to_str().unwrap(), &StoreOptions::default()).await.unwrap();
    let query = ListQuery { cursor: Some("not-a-cursor".into()), limit: 5, ..ListQuery::default() };
    assert!(matches!(store.list(&query).await, Err(StoreError::InvalidCursor)));
    let logged = captured.text();
    assert!(logged.contains(" INFO ") && logged.contains("page token"), "{logged}");
    assert!(!logged.contains("ERROR"), "{logged}");
}

#[tokio::test]
async fn a_sqlite_file_is_private_and_held_by_one_process_at_a_time() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("made/for/it/orchestrator.db");
    let store = SqliteStore::open(path.to_str().unwrap(), &StoreOptions::default()).await.unwrap();
    assert!(store.held_exclusively());
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600, "the database file");
    assert_eq!(mode(path.parent().unwrap()), 0o700, "a directory made for it");
    assert_eq!(mode(&dir.path().join("made")), 0o700);

    let refused = SqliteStore::open(path.to_str().unwrap(), &StoreOptions::default()).await.unwrap_err();
    let text = format!("{refused}: {}", std::error::Error::source(&refused).unwrap());
    assert!(text.contains("in use by another orchestrator process"), "{text}");
    assert!(text.contains(&format!("(pid {})", std::process::id())), "{text}");

    store.close().await;
    let reopened = SqliteStore::open(path.to_str().unwrap(), &StoreOptions::default()).await.unwrap();
    reopened.close().await;
    let memory = SqliteStore::open("sqlite::memory:", &StoreOptions::default()).await.unwrap();
    assert!(memory.held_exclusively(), "nobody else sees an in-memory database");
}
