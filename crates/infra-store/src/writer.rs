//! Where a store's writes go: a pool (PostgreSQL, where writes run side by side) or one
//! connection held for good (a SQLite file, which has one writer at a time anyway).
//!
//! Holding SQLite's writer outside a pool is for speed: sqlx's pool pings a connection when it
//! is returned (and, by default, when it is taken), and on SQLite a ping is a round trip to the
//! connection's worker thread. With one writer every write waited for the previous write's
//! return ping — two context switches on the path of every statement of a zero-latency
//! deliberation. A mutex hands the connection from write to write with none of that; a write
//! waits for it at most the pool's acquire timeout, as before.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::{Connection, Database, Pool};
use tokio::sync::{Mutex, OwnedMappedMutexGuard, OwnedMutexGuard};

/// Where writes go.
pub(crate) enum Writer<DB: Database> {
    /// A connection from the pool for each write.
    Pool(Pool<DB>),
    /// The one connection, taken in turn; `None` once the store is closed.
    Held { connection: Arc<Mutex<Option<DB::Connection>>>, wait: Duration },
}

impl<DB: Database> Writer<DB> {
    /// `connection`, held for every write; a write waits at most `wait` for it.
    pub(crate) fn held(connection: DB::Connection, wait: Duration) -> Self {
        Self::Held { connection: Arc::new(Mutex::new(Some(connection))), wait }
    }

    /// The writer connection, once it is free.
    ///
    /// # Errors
    /// `PoolTimedOut` after the wait, `PoolClosed` once the store is closed, or the pool's
    /// error.
    pub(crate) async fn acquire(&self) -> Result<WriterGuard<DB>, sqlx::Error> {
        match self {
            Self::Pool(pool) => Ok(WriterGuard::Pooled(pool.acquire().await?)),
            Self::Held { connection, wait } => {
                let held = tokio::time::timeout(*wait, Arc::clone(connection).lock_owned())
                    .await
                    .map_err(|_| sqlx::Error::PoolTimedOut)?;
                let open =
                    OwnedMutexGuard::try_map(held, Option::as_mut).map_err(|_| sqlx::Error::PoolClosed)?;
                Ok(WriterGuard::Held(open))
            }
        }
    }

    /// Closes the writer's connections, waiting for a write in progress to finish.
    pub(crate) async fn close(&self) {
        match self {
            Self::Pool(pool) => pool.close().await,
            Self::Held { connection, .. } => {
                let taken = connection.lock().await.take();
                if let Some(connection) = taken
                    && let Err(error) = connection.close().await
                {
                    tracing::warn!(%error, "closing the writer connection failed");
                }
            }
        }
    }
}

impl<DB: Database> Clone for Writer<DB> {
    fn clone(&self) -> Self {
        match self {
            Self::Pool(pool) => Self::Pool(pool.clone()),
            Self::Held { connection, wait } => Self::Held { connection: Arc::clone(connection), wait: *wait },
        }
    }
}

impl<DB: Database> std::fmt::Debug for Writer<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Pool(pool) => f.debug_tuple("Pool").field(pool).finish(),
            Self::Held { wait, .. } => f.debug_struct("Held").field("wait", wait).finish_non_exhaustive(),
        }
    }
}

/// The writer connection while a write has it.
pub(crate) enum WriterGuard<DB: Database> {
    Pooled(PoolConnection<DB>),
    Held(OwnedMappedMutexGuard<Option<DB::Connection>, DB::Connection>),
}

impl<DB: Database> Deref for WriterGuard<DB> {
    type Target = DB::Connection;

    fn deref(&self) -> &DB::Connection {
        match self {
            Self::Pooled(connection) => connection,
            Self::Held(connection) => connection,
        }
    }
}

impl<DB: Database> DerefMut for WriterGuard<DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        match self {
            Self::Pooled(connection) => connection,
            Self::Held(connection) => connection,
        }
    }
}
