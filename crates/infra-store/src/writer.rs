//! Where a store's writes go: connections the store opens itself and hands from write to
//! write (PostgreSQL, where writes run side by side), or one connection held for good (a
//! SQLite file, which has one writer at a time anyway).
//!
//! Writes stay outside sqlx's pool for speed: the pool pings a connection when it is returned
//! (and, by default, when it is taken). On SQLite a ping is a round trip to the connection's
//! worker thread; with one writer every write waited for the previous write's return ping —
//! two context switches on the path of every statement of a zero-latency deliberation. On
//! PostgreSQL it is a round trip to the server after every write, about one in two of a
//! deliberation's. A mutex (SQLite) or a semaphore over idle connections (PostgreSQL) hands a
//! connection on with none of that; a write waits for one at most the acquire timeout, as
//! with the pool.
//!
//! What the ping was for is kept where it matters: a connection whose write did not say it
//! ended cleanly ([`WriterGuard::finished`]: an error, a cancelled future) is pinged before
//! its next use, and replaced when that fails. A connection a server restart broke while idle
//! fails the one write that next takes it — retried like any write that meets an outage —
//! and is replaced then, not reused forever.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::{ConnectOptions, Connection, Database, Executor, Pool};
use tokio::sync::{Mutex, OwnedMappedMutexGuard, OwnedMutexGuard, OwnedSemaphorePermit, Semaphore};

use crate::sql_store::Durability;

/// Where writes go.
pub(crate) enum Writer<DB: Database> {
    /// A connection from the pool for each write: an in-memory SQLite database's one
    /// connection, which its reads share.
    Pool(Pool<DB>),
    /// The one connection, taken in turn; `None` once the store is closed.
    Held { connection: Arc<Mutex<Option<DB::Connection>>>, wait: Duration },
    /// Up to a fixed number of connections each, opened when first needed: `relaxed` serves
    /// the writes that need only survive this process (see [`Durability::ProcessCrash`]),
    /// `durable` every other.
    Set { durable: Arc<ConnectionSet<DB>>, relaxed: Arc<ConnectionSet<DB>> },
}

/// Connections this store opens itself, each used by one write at a time.
pub(crate) struct ConnectionSet<DB: Database> {
    connect: <DB::Connection as Connection>::Options,
    /// Run on every new connection (PostgreSQL: the schema's `SET search_path`).
    setup: Option<String>,
    /// A permit per connection that may be open; closing takes them all.
    permits: Arc<Semaphore>,
    size: u32,
    /// Open connections no write holds, and whether their last write ended cleanly.
    idle: std::sync::Mutex<Vec<(DB::Connection, bool)>>,
    wait: Duration,
}

impl<DB: Database> ConnectionSet<DB> {
    /// Up to `size` connections opened with `connect` (then `setup`); a write waits at most
    /// `wait` for one, opening it included.
    pub(crate) fn new(
        connect: <DB::Connection as Connection>::Options,
        setup: Option<String>,
        size: u32,
        wait: Duration,
    ) -> Self {
        Self {
            connect,
            setup,
            permits: Arc::new(Semaphore::new(size as usize)),
            size,
            idle: std::sync::Mutex::new(Vec::with_capacity(size as usize)),
            wait,
        }
    }
}

impl<DB> ConnectionSet<DB>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    /// An idle connection, or a new one; a connection whose last write did not end cleanly
    /// is pinged first and replaced when the ping fails.
    async fn acquire(self: &Arc<Self>) -> Result<WriterGuard<DB>, sqlx::Error> {
        let give_up = tokio::time::Instant::now() + self.wait;
        let permit = tokio::time::timeout_at(give_up, Arc::clone(&self.permits).acquire_owned())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?
            .map_err(|_| sqlx::Error::PoolClosed)?;
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let connection = match idle {
            Some((connection, true)) => connection,
            Some((mut connection, false)) => {
                match tokio::time::timeout_at(give_up, connection.ping()).await {
                    Ok(Ok(())) => connection,
                    _ => {
                        tracing::debug!("replacing a writer connection that no longer answers");
                        drop(connection);
                        self.open(give_up).await?
                    }
                }
            }
            None => self.open(give_up).await?,
        };
        Ok(WriterGuard::Set {
            connection: Some(connection),
            set: Arc::clone(self),
            clean: false,
            _permit: permit,
        })
    }

    async fn open(&self, give_up: tokio::time::Instant) -> Result<DB::Connection, sqlx::Error> {
        let opening = async {
            let mut connection = self.connect.connect().await?;
            if let Some(setup) = &self.setup {
                connection.execute(setup.as_str()).await?;
            }
            Ok(connection)
        };
        tokio::time::timeout_at(give_up, opening).await.map_err(|_| sqlx::Error::PoolTimedOut)?
    }

    /// Closes every connection once no write holds it; later writes fail with `PoolClosed`.
    async fn close(&self) {
        // Taking every permit waits for the writes in progress (at most `wait`); what is
        // taken stays taken.
        let _all = tokio::time::timeout(self.wait, self.permits.acquire_many(self.size)).await;
        self.permits.close();
        let idle: Vec<_> = self.idle.lock().unwrap_or_else(PoisonError::into_inner).drain(..).collect();
        for (connection, _) in idle {
            if let Err(error) = connection.close().await {
                tracing::warn!(%error, "closing a writer connection failed");
            }
        }
    }
}

impl<DB: Database> Writer<DB> {
    /// `connection`, held for every write; a write waits at most `wait` for it.
    pub(crate) fn held(connection: DB::Connection, wait: Duration) -> Self {
        Self::Held { connection: Arc::new(Mutex::new(Some(connection))), wait }
    }
}

impl<DB> Writer<DB>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    /// The writer connection, once it is free.
    ///
    /// # Errors
    /// `PoolTimedOut` after the wait, `PoolClosed` once the store is closed, or the pool's
    /// error.
    pub(crate) async fn acquire(&self) -> Result<WriterGuard<DB>, sqlx::Error> {
        self.acquire_at(Durability::PowerLoss).await
    }

    /// A writer connection for a write that must survive `durability`.
    ///
    /// # Errors
    /// As [`Self::acquire`].
    pub(crate) async fn acquire_at(&self, durability: Durability) -> Result<WriterGuard<DB>, sqlx::Error> {
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
            Self::Set { durable, relaxed } => match durability {
                Durability::ProcessCrash => relaxed.acquire().await,
                Durability::PowerLoss => durable.acquire().await,
            },
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
            Self::Set { durable, relaxed } => {
                durable.close().await;
                relaxed.close().await;
            }
        }
    }
}

impl<DB: Database> Clone for Writer<DB> {
    fn clone(&self) -> Self {
        match self {
            Self::Pool(pool) => Self::Pool(pool.clone()),
            Self::Held { connection, wait } => Self::Held { connection: Arc::clone(connection), wait: *wait },
            Self::Set { durable, relaxed } => {
                Self::Set { durable: Arc::clone(durable), relaxed: Arc::clone(relaxed) }
            }
        }
    }
}

impl<DB: Database> std::fmt::Debug for Writer<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Pool(pool) => f.debug_tuple("Pool").field(pool).finish(),
            Self::Held { wait, .. } => f.debug_struct("Held").field("wait", wait).finish_non_exhaustive(),
            Self::Set { durable, relaxed } => f
                .debug_struct("Set")
                .field("idle", &durable.idle.lock().unwrap_or_else(PoisonError::into_inner).len())
                .field("relaxed_idle", &relaxed.idle.lock().unwrap_or_else(PoisonError::into_inner).len())
                .field("wait", &durable.wait)
                .finish_non_exhaustive(),
        }
    }
}

/// The writer connection while a write has it.
pub(crate) enum WriterGuard<DB: Database> {
    Pooled(PoolConnection<DB>),
    Held(OwnedMappedMutexGuard<Option<DB::Connection>, DB::Connection>),
    Set {
        /// `None` only while being dropped.
        connection: Option<DB::Connection>,
        set: Arc<ConnectionSet<DB>>,
        /// Whether the write said it ended cleanly ([`WriterGuard::finished`]).
        clean: bool,
        _permit: OwnedSemaphorePermit,
    },
}

impl<DB: Database> WriterGuard<DB> {
    /// Says the write ended cleanly (committed, or nothing left open on the connection): the
    /// connection is handed to the next write as it is. Without this it is pinged first.
    pub(crate) fn finished(&mut self) {
        if let Self::Set { clean, .. } = self {
            *clean = true;
        }
    }
}

impl<DB: Database> Drop for WriterGuard<DB> {
    fn drop(&mut self) {
        if let Self::Set { connection, set, clean, .. } = self
            && let Some(connection) = connection.take()
        {
            // Back before the permit is released (the permit field drops after this), so the
            // next write finds it.
            set.idle.lock().unwrap_or_else(PoisonError::into_inner).push((connection, *clean));
        }
    }
}

impl<DB: Database> Deref for WriterGuard<DB> {
    type Target = DB::Connection;

    fn deref(&self) -> &DB::Connection {
        match self {
            Self::Pooled(connection) => connection,
            Self::Held(connection) => connection,
            Self::Set { connection, .. } => connection.as_ref().expect("taken only on drop"),
        }
    }
}

impl<DB: Database> DerefMut for WriterGuard<DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        match self {
            Self::Pooled(connection) => connection,
            Self::Held(connection) => connection,
            Self::Set { connection, .. } => connection.as_mut().expect("taken only on drop"),
        }
    }
}
