//! The deliberation store port over SQL: each method one transaction (or one statement).

use async_trait::async_trait;
use orchestrator_application::ports::{
    Claim, DeliberationEvent, DeliberationRecord, DeliberationStore, Fence, Lease, ListQuery,
    NewDeliberation, Page, PageCursor, StoreError, StoredSelection, UnsuccessfulEnd,
};
use orchestrator_domain::{Deliberation, DeliberationOutcome, DeliberationStatus, TaskId};
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Row, Type};

use crate::error::{Fault, from_sqlx};
use crate::outbox::StoredEvent;
use crate::rows::{
    DELIBERATION_COLUMNS, DeliberationRow, FAILURE_COLUMNS, FailureRow, OutcomeRows, PROPOSAL_COLUMNS,
    ProposalRow, REVIEW_COLUMNS, ReviewRow,
};
use crate::snapshot::snapshot;
use crate::statement::Statement;
use crate::text::{storable, to_json};

use super::statements::{Completion, push_completion, writes_in_one_statement};
use super::*;

// The bounds below say "DB runs this file's SQL with i64, f64 and text values". They are
// written out on each impl block that needs them (here, `statements.rs`, `leases.rs`) rather
// than named by a helper trait (`trait SqlDialect: Database where … {}` with a blanket impl):
// Rust does not carry a trait's where-clauses to the places that use it as a bound
// (rust-lang/rust#20671), so every `DB: SqlDialect` would fail to compile unless it repeated
// them all anyway.
#[async_trait]
impl<DB> DeliberationStore for SqlStore<DB>
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
    #[tracing::instrument(level = "debug", skip_all, fields(task_id = %new.task_id), err)]
    async fn create(
        &self,
        new: &NewDeliberation,
        lease: &Lease,
        event: Option<&DeliberationEvent>,
    ) -> Result<bool, StoreError> {
        let event = event.map(|event| StoredEvent::of(&new.task_id, event)).transpose()?;
        self.insert_new(new, lease, None, event.as_ref(), Durability::PowerLoss).await
    }

    /// Committed to survive this process dying: on SQLite no fsync of its own (the result's
    /// commit syncs the log, this row with it); PostgreSQL commits every write durably.
    #[tracing::instrument(level = "debug", skip_all, fields(task_id = %new.task_id), err)]
    async fn create_awaited(
        &self,
        new: &NewDeliberation,
        lease: &Lease,
        started_at_ms: Option<i64>,
    ) -> Result<bool, StoreError> {
        self.insert_new(new, lease, started_at_ms, None, Durability::ProcessCrash).await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(task_id = %task_id), err)]
    async fn get(&self, task_id: &TaskId) -> Result<Option<DeliberationRecord>, StoreError> {
        let fail = |e| from_sqlx("reading", Some(task_id), e);
        let row: Option<DeliberationRow> = sqlx::query_as(&format!(
            "SELECT {DELIBERATION_COLUMNS}, progress FROM deliberations WHERE task_id = $1"
        ))
        .bind(task_id.to_string())
        .fetch_optional(&self.reader)
        .await
        .map_err(fail)?;
        let Some(row) = row else {
            return Ok(None);
        };
        if !matches!(row.status()?, DeliberationStatus::Completed | DeliberationStatus::Timeout) {
            return row.into_record(None).map(Some);
        }
        // The outcome rows (a TIMEOUT's partial ones too) are committed in the same transaction
        // as the status, so once that status is visible they are too. Read concurrently: three
        // round trips to PostgreSQL cost one.
        let (proposals, reviews, failures) = tokio::try_join!(
            self.rows_of::<ProposalRow>(PROPOSAL_COLUMNS, "proposals", "ordinal", task_id),
            self.rows_of::<ReviewRow>(REVIEW_COLUMNS, "reviews", "proposal_agent_id, ordinal", task_id),
            self.rows_of::<FailureRow>(FAILURE_COLUMNS, "agent_failures", "ordinal", task_id),
        )?;
        let outcome = OutcomeRows {
            winner_id: None,
            usage: Default::default(),
            calls_saved: 0,
            path: String::new(),
            proposals,
            reviews,
            failures,
        };
        row.into_record(Some(outcome)).map(Some)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(task_id = %task_id), err)]
    async fn mark_started(
        &self,
        task_id: &TaskId,
        fence: &Fence,
        at_ms: i64,
        event: Option<&DeliberationEvent>,
    ) -> Result<bool, StoreError> {
        let target = DeliberationStatus::InProgress;
        let Some(sources) = sources_of(target) else {
            return Ok(false);
        };
        let event = event.map(|event| StoredEvent::of(task_id, event)).transpose()?;
        let sql = format!(
            "UPDATE deliberations SET status = '{target}', started_at_ms = $1, event_seq = event_seq + $5 \
             WHERE task_id = $2 AND status IN ({sources}) AND owner = $3 AND lease_epoch = $4 RETURNING event_seq",
            target = target.as_str(),
        );
        let update = sqlx::query(&sql).bind(at_ms);
        self.fenced_change(update, task_id, fence, event.as_ref(), "starting").await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(task_id = %task_id, phase = %progress.phase()), err)]
    async fn save_progress(
        &self,
        task_id: &TaskId,
        fence: &Fence,
        progress: &Deliberation,
        event: Option<&DeliberationEvent>,
    ) -> Result<bool, StoreError> {
        let event = event.map(|event| StoredEvent::of(task_id, event)).transpose()?;
        let sql = format!(
            "UPDATE deliberations SET progress = $1, event_seq = event_seq + $5 WHERE task_id = $2 \
             AND status = '{in_progress}' AND owner = $3 AND lease_epoch = $4 RETURNING event_seq",
            in_progress = DeliberationStatus::InProgress.as_str(),
        );
        let update = sqlx::query(&sql).bind(to_json(task_id, "progress", &snapshot(progress))?);
        self.fenced_change(update, task_id, fence, event.as_ref(), "saving progress of").await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(task_id = %task_id), err)]
    async fn complete(
        &self,
        task_id: &TaskId,
        fence: &Fence,
        outcome: &DeliberationOutcome,
        finished_at_ms: i64,
        duration_ms: i64,
        event: Option<&DeliberationEvent>,
    ) -> Result<bool, StoreError> {
        let Some(sources) = sources_of(DeliberationStatus::Completed) else {
            return Ok(false);
        };
        let event = event.map(|event| StoredEvent::of(task_id, event)).transpose()?;
        let rows = OutcomeRows::from_outcome(task_id, outcome)?;
        if writes_in_one_statement::<DB>() {
            let applied = self
                .complete_in_one_statement(
                    task_id,
                    fence,
                    &sources,
                    finished_at_ms,
                    duration_ms,
                    &rows,
                    event.as_ref(),
                )
                .await
                .map_err(|e| from_sqlx("completing", Some(task_id), e))?;
            return if applied { Ok(true) } else { self.refusal(task_id, Some(fence)).await };
        }
        // The status change and the outcome rows commit together or not at all.
        let transaction = async {
            let mut writer = self.writer_at(Durability::PowerLoss).await?;
            let mut update = Statement::new("");
            let completion =
                Completion { task_id, fence, sources: &sources, finished_at_ms, duration_ms, rows: &rows };
            push_completion(&mut update, &completion, event.is_some());
            let (sql, arguments) = update.into_parts()?;
            let mut tx = sqlx::Connection::begin(&mut *writer).await?;
            let updated = sqlx::query_with(&sql, arguments).fetch_optional(&mut *tx).await?;
            let Some(updated) = updated else {
                tx.rollback().await?;
                writer.finished();
                return Ok(false);
            };
            Self::insert_outcome(&mut tx, task_id, &rows).await?;
            if let Some(event) = &event {
                Self::insert_event(&mut tx, task_id, updated.try_get("event_seq")?, event).await?;
            }
            tx.commit().await?;
            writer.finished();
            Ok(true)
        };
        let applied = transaction.await.map_err(|e| from_sqlx("completing", Some(task_id), e))?;
        if applied { Ok(true) } else { self.refusal(task_id, Some(fence)).await }
    }

    #[tracing::instrument(level = "debug", skip_all, fields(task_id = %task_id, status = %end.status), err)]
    async fn finish_unsuccessfully(
        &self,
        task_id: &TaskId,
        fence: Option<&Fence>,
        end: &UnsuccessfulEnd<'_>,
        event: Option<&DeliberationEvent>,
    ) -> Result<bool, StoreError> {
        use DeliberationStatus::{Cancelled, Failed, Interrupted, Timeout};
        let status = end.status;
        if !matches!(status, Failed | Timeout | Cancelled | Interrupted) {
            tracing::warn!(%status, "refusing to finish a deliberation unsuccessfully with a non-failure status");
            return Ok(false);
        }
        let Some(sources) = sources_of(status) else {
            return Ok(false);
        };
        let event = event.map(|event| StoredEvent::of(task_id, event)).transpose()?;
        let rows = match end.partial {
            Some(partial) if status == Timeout => Some(OutcomeRows::from_outcome(task_id, partial)?),
            _ => None,
        };
        let usage = rows.as_ref().map(|rows| rows.usage);
        let fenced = if fence.is_some() { " AND owner = $12 AND lease_epoch = $13" } else { "" };
        // The end and a TIMEOUT's partial results commit together or not at all.
        let transaction = async {
            let mut writer = self.writer_at(Durability::PowerLoss).await?;
            let mut tx = sqlx::Connection::begin(&mut *writer).await?;
            let sql = format!(
                "UPDATE deliberations SET status = '{target}', error = $1, finished_at_ms = $2, \
                 duration_ms = $3, winner_id = $4, prompt_tokens = $5, completion_tokens = $6, calls = $7, \
                 latency_ms = $8, event_seq = event_seq + $10, path = COALESCE($11, path) \
                 WHERE task_id = $9 AND status IN ({sources}){fenced} \
                 RETURNING event_seq",
                target = status.as_str(),
            );
            let mut update = sqlx::query(&sql)
                .bind(storable(end.error))
                .bind(end.finished_at_ms)
                .bind(end.duration_ms)
                .bind(rows.as_ref().and_then(|rows| rows.winner_id.clone()))
                .bind(usage.map(|u| u.prompt_tokens))
                .bind(usage.map(|u| u.completion_tokens))
                .bind(usage.map(|u| u.calls))
                .bind(usage.map(|u| u.latency_ms))
                .bind(task_id.to_string())
                .bind(i64::from(event.is_some()))
                .bind(rows.as_ref().map(|rows| rows.path.clone()));
            if let Some(fence) = fence {
                update = update.bind(storable(&fence.owner)).bind(fence.epoch);
            }
            let Some(updated) = update.fetch_optional(&mut *tx).await? else {
                tx.rollback().await?;
                writer.finished();
                return Ok(false);
            };
            if let Some(rows) = &rows {
                Self::insert_outcome(&mut tx, task_id, rows).await?;
            }
            if let Some(event) = &event {
                Self::insert_event(&mut tx, task_id, updated.try_get("event_seq")?, event).await?;
            }
            tx.commit().await?;
            writer.finished();
            Ok(true)
        };
        let applied = transaction.await.map_err(|e| from_sqlx("finishing", Some(task_id), e))?;
        if applied { Ok(true) } else { self.refusal(task_id, fence).await }
    }

    #[tracing::instrument(level = "debug", skip_all, fields(task_id = %task_id), err)]
    async fn save_selection(
        &self,
        task_id: &TaskId,
        selection: &StoredSelection,
    ) -> Result<bool, StoreError> {
        let fail = |e| from_sqlx("saving the selection of", Some(task_id), e);
        let mut writer = self.writer_at(Durability::PowerLoss).await.map_err(fail)?;
        let updated = sqlx::query(&format!(
            "UPDATE deliberations SET selection = $1, winner_id = $2 \
             WHERE task_id = $3 AND status = '{completed}' AND selection IS NULL RETURNING task_id",
            completed = DeliberationStatus::Completed.as_str(),
        ))
        .bind(to_json(task_id, "selection", selection)?)
        .bind(storable(&selection.winner_id))
        .bind(task_id.to_string())
        .fetch_optional(&mut *writer)
        .await
        .map_err(fail)?;
        writer.finished();
        Ok(updated.is_some())
    }

    // Not `err`-instrumented: a bad page token is the client's mistake, worth a note rather
    // than an ERROR line; database failures reach the caller, which logs them.
    #[tracing::instrument(level = "debug", skip_all)]
    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        let cursor = query.cursor.as_deref().map(PageCursor::decode).transpose().inspect_err(|_| {
            tracing::info!("listing refused: the page token is not one this store issued");
        })?;
        let page_size = query.page_size();
        let mut select =
            Statement::new(format!("SELECT {DELIBERATION_COLUMNS} FROM deliberations WHERE 1 = 1"));
        if let Some(principal) = &query.principal {
            select.push(" AND principal = ").push_bind(storable(principal));
        }
        if let Some(role) = query.role {
            select.push(" AND role = ").push_bind(role.as_str().to_owned());
        }
        if let Some(status) = query.status {
            select.push(" AND status = ").push_bind(status.as_str().to_owned());
        }
        if let Some(after) = query.created_after_ms {
            select.push(" AND created_at_ms >= ").push_bind(after);
        }
        if let Some(before) = query.created_before_ms {
            select.push(" AND created_at_ms < ").push_bind(before);
        }
        if let Some(cursor) = cursor {
            select
                .push(" AND (created_at_ms, task_id) < (")
                .push_bind(cursor.created_at_ms)
                .push(", ")
                .push_bind(storable(&cursor.task_id))
                .push(")");
        }
        // One row more than asked tells whether another page exists.
        select.push(" ORDER BY created_at_ms DESC, task_id DESC LIMIT ").push_bind(i64::from(page_size) + 1);
        let fail = |e| from_sqlx("listing deliberations", None, e);
        let (sql, arguments) = select.into_parts().map_err(fail)?;
        let mut rows: Vec<DeliberationRow> =
            sqlx::query_as_with(&sql, arguments).fetch_all(&self.reader).await.map_err(fail)?;
        let more = rows.len() > page_size as usize;
        rows.truncate(page_size as usize);
        let items = rows.into_iter().map(|row| row.into_record(None)).collect::<Result<Vec<_>, _>>()?;
        let next_cursor = more.then(|| items.last().map(|last| PageCursor::after(last).encode())).flatten();
        Ok(Page { items, next_cursor })
    }

    async fn renew_leases(&self, lease: &Lease, only: Option<&[TaskId]>) -> Result<Vec<TaskId>, StoreError> {
        self.renew(lease, only).await
    }

    async fn claim_unfinished(
        &self,
        lease: &Lease,
        now_ms: i64,
        claim: &Claim<'_>,
    ) -> Result<Vec<DeliberationRecord>, StoreError> {
        self.claim(lease, now_ms, claim).await
    }

    fn held_exclusively(&self) -> bool {
        !matches!(self.hold, Hold::Shared)
    }

    #[tracing::instrument(level = "debug", skip_all, err)]
    async fn ping(&self) -> Result<(), StoreError> {
        let probe = sqlx::query("SELECT 1").execute(&self.reader);
        match tokio::time::timeout(self.ping_timeout, probe).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(StoreError::unavailable("pinging", e)),
            Err(_) => Err(StoreError::unavailable("pinging", Fault::NoAnswer { timeout: self.ping_timeout })),
        }
    }

    /// Closes every connection, waiting for those in use to be returned. Dropping the store
    /// also releases them, but only eventually; closing lets SQLite checkpoint its write-ahead
    /// log into the database file.
    async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
        if let Hold::File(held) = &self.hold {
            // Every connection is closed: another process may have the file now.
            held.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        }
        tracing::info!("closed the deliberation store");
    }
}
