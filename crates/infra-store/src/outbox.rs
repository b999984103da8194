//! The outbox: events stored with the state changes they report (see `sql_store.rs`), read,
//! removed and bounded by the relay through the [`Outbox`] port, and the relay lease.

use async_trait::async_trait;
use orchestrator_application::ports::{DeliberationEvent, Outbox, OutboxMessage, RelayLease, StoreError};
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Type};

use crate::error::from_sqlx;
use crate::sql_store::{Durability, SqlStore};
use crate::text::to_json;

/// An event as it goes into the outbox: its name, its JSON, when it happened.
#[derive(Debug, Clone)]
pub(crate) struct StoredEvent {
    pub(crate) name: &'static str,
    pub(crate) payload: String,
    pub(crate) at_ms: i64,
}

impl StoredEvent {
    /// `event` of deliberation `task_id`, as stored.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when it cannot be written as JSON.
    pub(crate) fn of(task_id: &str, event: &DeliberationEvent) -> Result<Self, StoreError> {
        Ok(Self { name: event.kind.name(), payload: to_json(task_id, "event", event)?, at_ms: event.at_ms })
    }
}

/// A row of `outbox`.
#[derive(Debug, sqlx::FromRow)]
struct OutboxRow {
    id: i64,
    task_id: String,
    seq: i64,
    event: String,
    payload: String,
    created_at_ms: i64,
}

/// The epoch of the relay lease, as returned when taken.
#[derive(Debug, sqlx::FromRow)]
struct RelayRow {
    epoch: i64,
}

/// A count, or an id.
#[derive(Debug, sqlx::FromRow)]
struct Number {
    n: i64,
}

/// `$1, $2, …` for `count` binds starting at `$first`.
fn placeholders(first: usize, count: usize) -> String {
    (first..first + count).map(|n| format!("${n}")).collect::<Vec<_>>().join(", ")
}

// The bounds of the store's SQL (see the note in `sql_store.rs` on why they are repeated).
#[async_trait]
impl<DB> Outbox for SqlStore<DB>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'n> &'n str: ColumnIndex<DB::Row>,
{
    #[tracing::instrument(level = "debug", skip_all, err)]
    async fn take_relay(
        &self,
        owner: &str,
        until_ms: i64,
        now_ms: i64,
    ) -> Result<Option<RelayLease>, StoreError> {
        // One statement: two servers taking it at once cannot both get it. A new holder moves
        // the lease to a new epoch, fencing off the one before.
        let fail = |e| from_sqlx("taking the outbox relay lease", None, e);
        let mut writer = self.writer_at(Durability::ProcessCrash).await.map_err(fail)?;
        let taken: Option<RelayRow> = sqlx::query_as(
            "INSERT INTO outbox_relay (id, owner, until_ms, epoch) VALUES (1, $1, $2, 1) \
             ON CONFLICT (id) DO UPDATE SET owner = excluded.owner, until_ms = excluded.until_ms, \
             epoch = CASE WHEN outbox_relay.owner = excluded.owner THEN outbox_relay.epoch \
                          ELSE outbox_relay.epoch + 1 END \
             WHERE outbox_relay.owner = excluded.owner OR outbox_relay.until_ms < $3 \
             RETURNING epoch",
        )
        .bind(owner.to_owned())
        .bind(until_ms)
        .bind(now_ms)
        .fetch_optional(&mut *writer)
        .await
        .map_err(fail)?;
        writer.finished();
        Ok(taken.map(|row| RelayLease { owner: owner.to_owned(), epoch: row.epoch }))
    }

    #[tracing::instrument(level = "debug", skip_all, err)]
    async fn release_relay(&self, lease: &RelayLease) -> Result<(), StoreError> {
        let fail = |e| from_sqlx("releasing the outbox relay lease", None, e);
        let mut writer = self.writer_at(Durability::ProcessCrash).await.map_err(fail)?;
        sqlx::query("UPDATE outbox_relay SET until_ms = 0 WHERE id = 1 AND owner = $1 AND epoch = $2")
            .bind(lease.owner.clone())
            .bind(lease.epoch)
            .execute(&mut *writer)
            .await
            .map_err(fail)?;
        writer.finished();
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all, err)]
    async fn unsent(&self, limit: usize) -> Result<Vec<OutboxMessage>, StoreError> {
        let rows: Vec<OutboxRow> = sqlx::query_as(
            "SELECT id, task_id, seq, event, payload, created_at_ms FROM outbox ORDER BY id LIMIT $1",
        )
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(self.reader())
        .await
        .map_err(|e| from_sqlx("reading the outbox", None, e))?;
        Ok(rows
            .into_iter()
            .map(|row| OutboxMessage {
                id: row.id,
                task_id: row.task_id,
                seq: row.seq,
                event: row.event,
                payload: row.payload,
                created_at_ms: row.created_at_ms,
            })
            .collect())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(sent = ids.len()), err)]
    async fn mark_sent(&self, lease: &RelayLease, ids: &[i64]) -> Result<bool, StoreError> {
        let fail = |e| from_sqlx("marking outbox events sent", None, e);
        let mut writer = self.writer_at(Durability::ProcessCrash).await.map_err(fail)?;
        let mut tx = sqlx::Connection::begin(&mut *writer).await.map_err(fail)?;
        // Fenced: the lease is checked in the transaction that deletes.
        let holds: Option<RelayRow> =
            sqlx::query_as("SELECT epoch FROM outbox_relay WHERE id = 1 AND owner = $1 AND epoch = $2")
                .bind(lease.owner.clone())
                .bind(lease.epoch)
                .fetch_optional(&mut *tx)
                .await
                .map_err(fail)?;
        if holds.is_none() {
            tx.rollback().await.map_err(fail)?;
            writer.finished();
            return Ok(false);
        }
        for chunk in ids.chunks(500) {
            let sql = format!("DELETE FROM outbox WHERE id IN ({})", placeholders(1, chunk.len()));
            let mut delete = sqlx::query(&sql);
            for id in chunk {
                delete = delete.bind(*id);
            }
            delete.execute(&mut *tx).await.map_err(fail)?;
        }
        tx.commit().await.map_err(fail)?;
        writer.finished();
        Ok(true)
    }

    #[tracing::instrument(level = "debug", skip_all, err)]
    async fn depth(&self) -> Result<u64, StoreError> {
        let count: Number = sqlx::query_as("SELECT COUNT(*) AS n FROM outbox")
            .fetch_one(self.reader())
            .await
            .map_err(|e| from_sqlx("counting the outbox", None, e))?;
        Ok(u64::try_from(count.n).unwrap_or(0))
    }

    #[tracing::instrument(level = "debug", skip_all, err)]
    async fn drop_beyond(&self, max: u64) -> Result<u64, StoreError> {
        let keep = i64::try_from(max).unwrap_or(i64::MAX);
        // Everything older than the newest `max`.
        let fail = |e| from_sqlx("bounding the outbox", None, e);
        let mut writer = self.writer_at(Durability::ProcessCrash).await.map_err(fail)?;
        let dropped: Vec<Number> = sqlx::query_as(
            "DELETE FROM outbox WHERE id < \
             (SELECT MIN(id) FROM (SELECT id FROM outbox ORDER BY id DESC LIMIT $1) AS kept) RETURNING id AS n",
        )
        .bind(keep)
        .fetch_all(&mut *writer)
        .await
        .map_err(fail)?;
        writer.finished();
        Ok(dropped.len() as u64)
    }
}
