//! The server option: PostgreSQL by URL, optionally confined to one schema.

use std::str::FromStr;
use std::sync::Arc;

use orchestrator_application::ports::StoreError;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, Executor, PgConnection, Postgres};

use crate::error::{Fault, connect_failed, redact_url};
use crate::options::StoreOptions;
use crate::sql_store::{Hold, SqlStore};
use crate::writer::{ConnectionSet, Writer};

/// The store on PostgreSQL; open it with [`PostgresStore::connect`].
pub type PostgresStore = SqlStore<Postgres>;

/// The PostgreSQL schema, embedded in the binary and applied on connect.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// Connections for writes: enough for many concurrent deliberations (each write is one short
/// statement or transaction) while leaving most of a default server's 100 connections to
/// others.
const WRITERS: u32 = 8;

/// Pool size for reads (results, listings, the relay's reads) and the migrations.
const READERS: u32 = 4;

/// Longest schema name PostgreSQL keeps without truncating it.
const MAX_SCHEMA_LEN: usize = 63;

impl SqlStore<Postgres> {
    /// Connects to the PostgreSQL database at `url` (`postgres://user@host:5432/db`; TLS is
    /// not compiled in) and brings its schema up to date.
    ///
    /// With `schema`, every table — and the migration history — lives in that schema, which
    /// is created if missing and put first on the `search_path` of every pooled connection;
    /// tests use this to run in isolation on one database.
    ///
    /// Every statement waits at most [`StoreOptions::acquire_timeout`] for a connection, so
    /// while the server is down calls fail promptly with [`StoreError::Unavailable`]; opening
    /// the first connection is bounded by the same timeout.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the URL or schema name is malformed, the server
    /// cannot be reached in time or refuses, or a migration fails. Neither the message nor
    /// the cause contains the password.
    pub async fn connect(
        url: &str,
        schema: Option<&str>,
        options: &StoreOptions,
    ) -> Result<Self, StoreError> {
        let connection = PgConnectOptions::from_str(url).map_err(|e| connect_failed(url, e))?;
        // No ping when a connection is taken (sqlx's default): sqlx pings it when it is
        // returned, so a connection that broke in use is closed then; one that broke while idle
        // (a server restart) fails its next statement, which the jobs' durable writes retry.
        // The ping on taking cost a round trip to the server before every statement.
        let mut pool = PgPoolOptions::new()
            .max_connections(READERS)
            .test_before_acquire(false)
            .acquire_timeout(options.acquire_timeout);
        let quoted = schema
            .map(|schema| {
                quoted_schema(schema).ok_or_else(|| {
                    connect_failed(
                        url,
                        Fault::InvalidSchema { schema: schema.to_owned(), max: MAX_SCHEMA_LEN },
                    )
                })
            })
            .transpose()?;
        // One direct connection first: the pool would retry a refused or misconfigured server
        // until its acquire timeout, this fails at once with the real cause.
        let mut probe =
            tokio::time::timeout(options.acquire_timeout, PgConnection::connect_with(&connection))
                .await
                .map_err(|_| connect_failed(url, Fault::NoAnswer { timeout: options.acquire_timeout }))?
                .map_err(|e| connect_failed(url, e))?;
        if let Some(schema) = &quoted {
            probe
                .execute(format!("CREATE SCHEMA IF NOT EXISTS {schema}").as_str())
                .await
                .map_err(|e| connect_failed(url, e))?;
        }
        let set_path = quoted.map(|schema| format!("SET search_path TO {schema}"));
        if let Some(set_path) = set_path.clone() {
            pool = pool.after_connect(move |conn, _meta| {
                let set_path = set_path.clone();
                Box::pin(async move {
                    conn.execute(set_path.as_str()).await?;
                    Ok(())
                })
            });
        }
        probe.close().await.map_err(|e| connect_failed(url, e))?;
        let pool = pool.connect_with(connection.clone()).await.map_err(|e| connect_failed(url, e))?;
        MIGRATOR.run(&pool).await.map_err(|e| connect_failed(url, e))?;
        // Writes go through connections of their own, not the pool (see `writer.rs`).
        // Writes that need only survive this process (saved phases; see `Durability`) commit
        // without waiting for the server's log to reach disk: the server still holds them if
        // this process dies, and the next durable commit flushes them with it.
        let relaxed = connection.clone().options([("synchronous_commit", "off")]);
        let writer = Writer::Set {
            durable: Arc::new(ConnectionSet::new(
                connection,
                set_path.clone(),
                WRITERS / 2,
                options.acquire_timeout,
            )),
            relaxed: Arc::new(ConnectionSet::new(relaxed, set_path, WRITERS / 2, options.acquire_timeout)),
        };
        tracing::info!(url = %redact_url(url), schema = schema.unwrap_or("(default)"), "connected PostgreSQL deliberation store");
        Ok(Self::from_pools(writer, pool, options.acquire_timeout, Hold::Shared))
    }
}

/// The schema name as a quoted identifier, if it is a plain one.
fn quoted_schema(schema: &str) -> Option<String> {
    let plain = !schema.is_empty()
        && schema.len() <= MAX_SCHEMA_LEN
        && !schema.starts_with(|c: char| c.is_ascii_digit())
        && schema.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    plain.then(|| format!("\"{schema}\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql_store::Durability;
    use orchestrator_application::ports::DeliberationStore as _;

    /// Saved phases (and deliberations nobody was told of) commit without waiting for the
    /// server's log flush; submissions and results wait for it.
    #[tokio::test]
    async fn only_writes_that_need_to_survive_a_power_cut_wait_for_the_log_flush() {
        let url = orchestrator_test_support::services::pg_url();
        if let Err(error) = PgConnection::connect(&url).await {
            orchestrator_test_support::skip("PostgreSQL", "set ORCHESTRATOR_TEST_PG_URL", error.to_string());
            return;
        }
        let schema = format!("commit_levels_{}", std::process::id());
        let store = PostgresStore::connect(&url, Some(&schema), &StoreOptions::default()).await.unwrap();
        for (durability, expected) in [(Durability::ProcessCrash, "off"), (Durability::PowerLoss, "on")] {
            let mut writer = store.writer_at(durability).await.unwrap();
            let (level,): (String,) =
                sqlx::query_as("SHOW synchronous_commit").fetch_one(&mut *writer).await.unwrap();
            assert_eq!(level, expected, "{durability:?}");
            let (path,): (String,) =
                sqlx::query_as("SHOW search_path").fetch_one(&mut *writer).await.unwrap();
            assert!(path.contains(&schema), "{durability:?}: {path}");
            writer.finished();
        }
        store.close().await;
        let mut connection = PgConnection::connect(&url).await.unwrap();
        connection.execute(format!("DROP SCHEMA \"{schema}\" CASCADE").as_str()).await.unwrap();
    }

    #[test]
    fn only_plain_schema_names_are_accepted() {
        assert_eq!(quoted_schema("store_test_1").as_deref(), Some("\"store_test_1\""));
        for bad in ["", "1abc", "a-b", "a\"b", "a;drop", &"x".repeat(64)] {
            assert_eq!(quoted_schema(bad), None, "{bad:?}");
        }
    }
}
