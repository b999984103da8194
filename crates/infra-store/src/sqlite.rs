//! The embedded default: a SQLite file, opened in WAL mode.

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use orchestrator_application::ports::StoreError;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Sqlite};

use crate::error::{Fault, connect_failed};
use crate::file_lock::ExclusiveFile;
use crate::options::StoreOptions;
use crate::sql_store::{CommitLevels, Hold, SqlStore};
use crate::writer::Writer;

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
    /// One process at a time: opening takes an exclusive lock on `<file>.lock` first, before
    /// anything is read, and a file another server holds is refused (see `file_lock.rs`). The
    /// file is created mode 0600 and the directories created for it 0700: deliberations hold
    /// tasks and model output that other local users have no business reading.
    ///
    /// The file is put in WAL mode with `synchronous = FULL` (a committed deliberation
    /// survives even power loss), foreign keys on and a busy timeout. Writes are serialised
    /// through one connection so concurrent deliberations queue instead of failing with
    /// `SQLITE_BUSY` — each waiting up to [`StoreOptions::sqlite_writer_acquire_timeout`] —;
    /// reads use a small separate pool, waiting up to [`StoreOptions::acquire_timeout`].
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the location is malformed, the file is in use by
    /// another process, cannot be created or opened, or a migration fails.
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
        let hold = if in_memory {
            Hold::Memory
        } else {
            let file = connection.get_filename().to_owned();
            let held = tokio::task::spawn_blocking(move || prepare_file(&file))
                .await
                .map_err(|e| connect_failed(location, std::io::Error::other(e)))?;
            let held = held.map_err(|e| connect_failed(location, e))?;
            tracing::debug!(lock = %held.path().display(), "holding the SQLite file exclusively");
            Hold::File(Arc::new(std::sync::Mutex::new(Some(held))))
        };

        // The migrations run through a one-connection pool, which is also the writer of an
        // in-memory database. No ping before each acquire (sqlx's default), here and for the
        // readers: on SQLite a ping is a round trip to the connection's worker thread, and a
        // file connection does not go stale the way a socket does.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .acquire_timeout(options.sqlite_writer_acquire_timeout);
        // An in-memory database lives only as long as its connection: keep exactly one.
        let writer =
            if in_memory { writer.min_connections(1).idle_timeout(None).max_lifetime(None) } else { writer };
        let writer =
            writer.connect_with(connection.clone()).await.map_err(|e| connect_failed(location, e))?;
        MIGRATOR.run(&writer).await.map_err(|e| connect_failed(location, e))?;

        let (writer, reader) = if in_memory {
            (Writer::Pool(writer.clone()), writer)
        } else {
            // The migrations' pool is done with: writes take one connection held for good.
            writer.close().await;
            let held = connection.connect().await.map_err(|e| connect_failed(location, e))?;
            let reader = SqlitePoolOptions::new()
                .max_connections(READERS)
                .test_before_acquire(false)
                .acquire_timeout(options.acquire_timeout)
                .connect_with(connection)
                .await
                .map_err(|e| connect_failed(location, e))?;
            (Writer::held(held, options.sqlite_writer_acquire_timeout), reader)
        };
        tracing::info!(location = %location, "opened SQLite deliberation store");
        // A saved phase must survive this process dying, which WAL with `synchronous = NORMAL`
        // gives without an fsync; results and submissions survive a power cut too (`FULL`, the
        // connection's default), and that fsync of the log covers the phases before them.
        let levels = CommitLevels {
            process_crash: "PRAGMA synchronous = NORMAL",
            power_loss: "PRAGMA synchronous = FULL",
        };
        Ok(Self::from_pools(writer, reader, options.acquire_timeout, hold).with_commit_levels(levels))
    }
}

/// Creates the directories of `file` (0700) and the file itself (0600) where missing, then
/// takes its exclusive lock — before SQLite opens it, so a second server reads nothing.
fn prepare_file(file: &Path) -> Result<ExclusiveFile, Fault> {
    let io = |source| Fault::Create { path: file.to_owned(), source };
    if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(parent).map_err(io)?;
    }
    let held = ExclusiveFile::take(file)?;
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(file) {
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(error) => return Err(io(error)),
    }
    Ok(held)
}
