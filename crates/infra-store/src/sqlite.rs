//! The embedded default: a SQLite file, opened in WAL mode.

use std::str::FromStr;
use std::time::Duration;

use orchestrator_application::ports::StoreError;
use sqlx::Sqlite;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::error::connect_failed;
use crate::options::StoreOptions;
use crate::sql_store::SqlStore;

/// The store on SQLite; open it with [`SqliteStore::open`].
pub type SqliteStore = SqlStore<Sqlite>;

/// The SQLite schema, embedded in the binary and applied on open.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// Readers beside the single writer: WAL serves them concurrently with it.
const READERS: u32 = 4;

/// How long a connection waits for a lock held by another process before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

impl SqlStore<Sqlite> {
    /// Opens (creating it and its parent directories if needed) the SQLite database at
    /// `location` — a file path or a `sqlite:` URL (`sqlite::memory:` works too, for tests) —
    /// and brings its schema up to date.
    ///
    /// The file is put in WAL mode with `synchronous = FULL` (a committed deliberation
    /// survives even power loss), foreign keys on and a busy timeout. Writes are serialised
    /// through one connection so concurrent deliberations queue instead of failing with
    /// `SQLITE_BUSY` — each waiting up to [`StoreOptions::sqlite_writer_acquire_timeout`] —;
    /// reads use a small separate pool, waiting up to [`StoreOptions::acquire_timeout`].
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the location is malformed, the file cannot be
    /// created or opened, or a migration fails.
    pub async fn open(location: &str, options: &StoreOptions) -> Result<Self, StoreError> {
        let connection = if location.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(location).map_err(|e| connect_failed(location, e))?
        } else {
            SqliteConnectOptions::new().filename(location)
        };
        let connection = connection
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let in_memory = location.contains(":memory:") || location.contains("mode=memory");
        let parent = connection.get_filename().parent().filter(|p| !in_memory && !p.as_os_str().is_empty());
        if let Some(parent) = parent {
            tokio::fs::create_dir_all(parent).await.map_err(|e| connect_failed(location, e))?;
        }

        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(options.sqlite_writer_acquire_timeout);
        // An in-memory database lives only as long as its connection: keep exactly one.
        let writer =
            if in_memory { writer.min_connections(1).idle_timeout(None).max_lifetime(None) } else { writer };
        let writer =
            writer.connect_with(connection.clone()).await.map_err(|e| connect_failed(location, e))?;
        MIGRATOR.run(&writer).await.map_err(|e| connect_failed(location, e))?;

        let reader = if in_memory {
            writer.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(READERS)
                .acquire_timeout(options.acquire_timeout)
                .connect_with(connection)
                .await
                .map_err(|e| connect_failed(location, e))?
        };
        tracing::info!(location = %location, "opened SQLite deliberation store");
        Ok(Self::from_pools(writer, reader, options.acquire_timeout))
    }
}
