//! Upgrading a database written by the previous release: migration 0006 (lease epochs and
//! Orchestrate selections) applies to a database migrated up to 0005 that holds a running
//! deliberation, whose progress was saved in the unversioned format; the row keeps its meaning
//! (epoch 0, no selection) and its progress is restored, on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used)]

mod support;

use orchestrator_application::testing::tid;
use std::path::Path;

use orchestrator_application::ports::{DeliberationStore, Fence, Lease};
use orchestrator_domain::{DeliberationStatus, Phase, Role};
use orchestrator_infra_store::{PostgresStore, SqliteStore, StoreOptions};
use sqlx::migrate::Migrator;
use sqlx::{Connection, Executor, PgConnection, SqliteConnection};

use support::{PostgresDb, request};

/// Progress saved by the previous release (the aggregate's serde form, no version tag).
const UNVERSIONED: &str = include_str!("fixtures/progress_unversioned.json");

/// The migrations of the previous release: everything before 0006.
async fn previous_release(database: &str) -> Migrator {
    let dir = format!("{}/migrations/{database}", env!("CARGO_MANIFEST_DIR"));
    let mut migrator = Migrator::new(Path::new(&dir)).await.unwrap();
    migrator.migrations =
        migrator.migrations.iter().filter(|m| m.version < 6).cloned().collect::<Vec<_>>().into();
    migrator
}

/// A running deliberation as the previous release left it, held by `old-node`.
fn insert_running(task_id: &str) -> String {
    let request = serde_json::to_string(&request(task_id, Role::Dev, 1)).unwrap();
    let progress = UNVERSIONED.trim().replace('\'', "''");
    format!(
        "INSERT INTO deliberations (task_id, role, status, task_description, request, created_at_ms, \
         started_at_ms, progress, owner, lease_until_ms) VALUES ('{task_id}', 'DEV', 'IN_PROGRESS', \
         'Design a rate limiter', '{}', 1, 2, '{progress}', 'old-node', 0)",
        request.replace('\'', "''"),
    )
}

async fn assert_upgraded(store: &dyn DeliberationStore) {
    let record = store.get(&tid("old")).await.unwrap().unwrap();
    assert_eq!(record.status, DeliberationStatus::InProgress);
    assert_eq!(record.lease_epoch, 0, "existing rows start at epoch 0");
    assert_eq!(record.selection, None);
    assert_eq!(record.unreadable_progress, None);
    let progress = record.progress.expect("the unversioned progress is restored");
    assert_eq!(progress.phase(), Phase::Reviewing { round: 1 });
    assert_eq!(progress.proposals().len(), 2);

    // The old owner's lease ran out: a node claims it under epoch 1 and writes under it; the
    // old owner's fence (epoch 0) is refused.
    let lease = Lease { owner: "new-node".into(), until_ms: 10_000 };
    let claimed = store
        .claim_unfinished(
            &lease,
            5_000,
            &orchestrator_application::ports::Claim::all(
                orchestrator_application::ports::ClaimScope::Expired,
                &[],
            ),
        )
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].lease_epoch, 1);
    assert_eq!(claimed[0].progress.as_ref(), Some(&progress));
    let stale = store.save_progress(&tid("old"), &Fence::created_by("old-node"), &progress, None).await;
    assert!(stale.is_err(), "{stale:?}");
    assert!(
        store
            .save_progress(&tid("old"), &Fence { owner: "new-node".into(), epoch: 1 }, &progress, None)
            .await
            .unwrap()
    );
    // Saved again, it is a version 1 snapshot that reads back the same.
    assert_eq!(store.get(&tid("old")).await.unwrap().unwrap().progress.as_ref(), Some(&progress));
}

#[tokio::test]
async fn sqlite_database_of_the_previous_release_is_upgraded_and_its_progress_restored() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let url = format!("sqlite:{}?mode=rwc", path.display());
    let mut connection = SqliteConnection::connect(&url).await.unwrap();
    previous_release("sqlite").await.run(&mut connection).await.unwrap();
    connection.execute(insert_running("old").as_str()).await.unwrap();
    connection.close().await.unwrap();

    let store = SqliteStore::open(path.to_str().unwrap(), &StoreOptions::default()).await.unwrap();
    assert_upgraded(&store).await;
    store.close().await;
}

#[tokio::test]
async fn postgres_database_of_the_previous_release_is_upgraded_and_its_progress_restored() {
    // Only for its URL (and the SKIPPED note when PostgreSQL is unreachable).
    let Some(db) = PostgresDb::new().await else { return };
    let schema = format!("upgrade_{}", uuid::Uuid::new_v4().simple());
    let mut connection = PgConnection::connect(&db.url).await.unwrap();
    connection.execute(format!("CREATE SCHEMA {schema}").as_str()).await.unwrap();
    connection.execute(format!("SET search_path TO {schema}").as_str()).await.unwrap();
    previous_release("postgres").await.run(&mut connection).await.unwrap();
    connection.execute(insert_running("old").as_str()).await.unwrap();

    let store = PostgresStore::connect(&db.url, Some(&schema), &StoreOptions::default()).await.unwrap();
    assert_upgraded(&store).await;
    store.close().await;
    connection.execute(format!("DROP SCHEMA {schema} CASCADE").as_str()).await.unwrap();
    connection.close().await.unwrap();
    db.drop_schema().await;
}
