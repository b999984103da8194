//! Writes made as one statement on PostgreSQL: a status change, the rows it brings and its
//! event as data-modifying `WITH` queries.
//!
//! A transaction is a round trip to the server for `BEGIN`, for each statement and for
//! `COMMIT`, and on the server a wake-up of its backend for each; at zero model latency those
//! were most of a deliberation's database time. One statement is its own transaction: all of it
//! commits or none, as before. SQLite has no data-modifying `WITH` (and its round trips stay
//! inside this process), so there the transaction stays.

use orchestrator_application::ports::Fence;
use orchestrator_domain::DeliberationStatus;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Type};

use super::statements::{OutcomeChunk, push_outcome_values};
use super::*;
use crate::outbox::StoredEvent;
use crate::rows::OutcomeRows;
use crate::statement::Statement;
use crate::text::storable;

/// Whether `DB` runs data-modifying `WITH` queries (PostgreSQL does, SQLite does not).
pub(super) fn writes_in_one_statement<DB: Database>() -> bool {
    DB::NAME == "PostgreSQL"
}

// The bounds are those of the other impl blocks (see the note in `deliberation_store.rs`).
impl<DB> SqlStore<DB>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> f64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB>,
    for<'q> Option<f64>: Encode<'q, DB>,
    for<'q> Option<String>: Encode<'q, DB>,
    for<'n> &'n str: ColumnIndex<DB::Row>,
{
    /// A status in `sources` → COMPLETED under `fence`, with the outcome's `rows` and `event`,
    /// as one statement (only where [`writes_in_one_statement`]). Whether the row matched:
    /// without a match nothing is inserted either.
    #[allow(clippy::too_many_arguments, reason = "the parts of one completion, each distinct")]
    pub(super) async fn complete_in_one_statement(
        &self,
        task_id: &str,
        fence: &Fence,
        sources: &str,
        finished_at_ms: i64,
        duration_ms: i64,
        rows: &OutcomeRows,
        event: Option<&StoredEvent>,
    ) -> Result<bool, sqlx::Error> {
        let mut statement = Statement::<DB>::new(format!(
            "WITH updated AS (UPDATE deliberations SET status = '{completed}', error = NULL, finished_at_ms = ",
            completed = DeliberationStatus::Completed.as_str(),
        ));
        statement
            .push_bind(finished_at_ms)
            .push(", duration_ms = ")
            .push_bind(duration_ms)
            .push(", winner_id = ")
            .push_bind(rows.winner_id.clone())
            .push(", prompt_tokens = ")
            .push_bind(rows.usage.prompt_tokens)
            .push(", completion_tokens = ")
            .push_bind(rows.usage.completion_tokens)
            .push(", calls = ")
            .push_bind(rows.usage.calls)
            .push(", latency_ms = ")
            .push_bind(rows.usage.latency_ms)
            .push(", calls_saved = ")
            .push_bind(rows.calls_saved)
            .push(", path = ")
            .push_bind(rows.path.clone())
            .push(", event_seq = event_seq + ")
            .push_bind(i64::from(event.is_some()))
            .push(" WHERE task_id = ")
            .push_bind(task_id.to_owned())
            .push(&format!(" AND status IN ({sources}) AND owner = "))
            .push_bind(storable(&fence.owner))
            .push(" AND lease_epoch = ")
            .push_bind(fence.epoch)
            .push(" RETURNING event_seq)");
        // Each insert takes its rows only when the update matched.
        for (i, chunk) in OutcomeChunk::all(rows).into_iter().enumerate() {
            statement.push(&format!(", rows_{i} AS (INSERT INTO {} SELECT * FROM (VALUES ", chunk.table()));
            push_outcome_values(&mut statement, task_id, chunk);
            statement.push(") AS v WHERE EXISTS (SELECT 1 FROM updated))");
        }
        if let Some(event) = event {
            statement
                .push(", event AS (INSERT INTO outbox (task_id, seq, event, payload, created_at_ms) SELECT ")
                .push_bind(task_id.to_owned())
                .push(", event_seq, ")
                .push_bind(event.name.to_owned())
                .push(", ")
                .push_bind(event.payload.clone())
                .push(", ")
                .push_bind(event.at_ms)
                .push(" FROM updated)");
        }
        statement.push(" SELECT event_seq FROM updated");
        let (sql, arguments) = statement.into_parts()?;
        let mut writer = self.writer_at(Durability::PowerLoss).await?;
        let updated = sqlx::query_with(&sql, arguments).fetch_optional(&mut *writer).await?;
        writer.finished();
        Ok(updated.is_some())
    }
}
