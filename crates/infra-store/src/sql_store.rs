//! The store logic both databases share: statements, transactions and lifecycle guards.
//!
//! [`SqlStore`] is generic over the sqlx [`Database`]; the SQL is written once in the dialect
//! common to SQLite and PostgreSQL (`$n` parameters, `ON CONFLICT`, `RETURNING`). What differs
//! — opening, pragmas, pool sizes, migrations — lives in `sqlite.rs` and `postgres.rs`.
//!
//! Lifecycle rules are enforced by the database, not by a read-then-write: every status change
//! is one `UPDATE … WHERE status IN (<states that may become the target>)`, the allowed sources
//! being derived from [`DeliberationStatus::can_become`]. Two racing changes (cancel and
//! complete) therefore cannot both apply: the second finds no matching row and reports `false`.

use async_trait::async_trait;
use orchestrator_application::ports::{
    DeliberationRecord, DeliberationStore, Lease, ListQuery, NewDeliberation, Page, StoreError,
};
use orchestrator_domain::{Deliberation, DeliberationOutcome, DeliberationStatus};
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Row, Type};

use crate::cursor::Cursor;
use crate::error::from_sqlx;
use crate::rows::{DeliberationRow, FailureRow, OutcomeRows, ProposalRow, ReviewRow, UsageColumns, to_json};

/// Largest page [`DeliberationStore::list`] serves.
pub const MAX_PAGE_SIZE: u32 = 100;

/// Rows per multi-row `INSERT`, far below either database's bind-parameter limit.
const INSERT_CHUNK: usize = 100;

/// Columns of `deliberations` that listing returns (everything but the progress snapshot).
const SUMMARY_COLUMNS: &str = "task_id, status, request, started_at_ms, finished_at_ms, duration_ms, \
     winner_id, error, prompt_tokens, completion_tokens, calls, latency_ms";

/// The statuses of deliberations that may still run, as an SQL list.
const UNFINISHED: &str = "'PENDING', 'IN_PROGRESS'";

/// Stand-in task id in errors about a row whose own id could not be read.
const UNKNOWN_TASK: &str = "<unknown>";

/// A [`DeliberationStore`] over an sqlx connection pool; see [`crate::SqliteStore`] and
/// [`crate::PostgresStore`] for how to open one.
///
/// Writes go through `writer`, reads through `reader`. For PostgreSQL they are the same pool;
/// SQLite gets a one-connection writer pool (it has a single writer anyway, and queueing in
/// the pool instead of in SQLite's lock means no `SQLITE_BUSY`) beside a reader pool that WAL
/// lets run concurrently with it.
#[derive(Debug, Clone)]
pub struct SqlStore<DB: Database> {
    writer: Pool<DB>,
    reader: Pool<DB>,
}

impl<DB: Database> SqlStore<DB> {
    pub(crate) fn from_pools(writer: Pool<DB>, reader: Pool<DB>) -> Self {
        Self { writer, reader }
    }

    /// Closes every connection, waiting for those in use to be returned. Dropping the store
    /// also releases them, but only eventually; call this on shutdown so SQLite can
    /// checkpoint its write-ahead log into the database file.
    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }
}

/// The statuses that may change into `target`, as an SQL list of literals.
///
/// The literals are the fixed names of [`DeliberationStatus::as_str`], never client input.
fn sources_of(target: DeliberationStatus) -> Option<String> {
    let sources: Vec<String> = DeliberationStatus::ALL
        .into_iter()
        .filter(|status| status.can_become(target))
        .map(|status| format!("'{}'", status.as_str()))
        .collect();
    (!sources.is_empty()).then(|| sources.join(", "))
}

/// `($1, $2, …), (…)` for a multi-row `INSERT` of `rows` rows of `columns` values.
fn values_placeholders(rows: usize, columns: usize) -> String {
    (0..rows)
        .map(|row| {
            let params: Vec<String> = (1..=columns).map(|col| format!("${}", row * columns + col)).collect();
            format!("({})", params.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A bind parameter of a dynamically built statement.
#[derive(Debug)]
enum Param {
    Text(String),
    Int(i64),
}

/// The `WHERE` conditions of a listing and their parameters, numbered in order.
#[derive(Debug, Default)]
struct ListFilter {
    conditions: Vec<String>,
    params: Vec<Param>,
}

impl ListFilter {
    /// Adds `<lhs> $n` with the next parameter.
    fn and(&mut self, lhs: &str, param: Param) {
        self.params.push(param);
        self.conditions.push(format!("{lhs} ${}", self.params.len()));
    }

    fn where_clause(&self) -> String {
        if self.conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.conditions.join(" AND "))
        }
    }
}

fn deliberation_row<R>(row: &R, with_progress: bool) -> Result<DeliberationRow, sqlx::Error>
where
    R: Row,
    for<'n> &'n str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let usage = match (
        row.try_get::<Option<i64>, _>("prompt_tokens")?,
        row.try_get::<Option<i64>, _>("completion_tokens")?,
        row.try_get::<Option<i64>, _>("calls")?,
        row.try_get::<Option<i64>, _>("latency_ms")?,
    ) {
        (Some(prompt_tokens), Some(completion_tokens), Some(calls), Some(latency_ms)) => {
            Some(UsageColumns { prompt_tokens, completion_tokens, calls, latency_ms })
        }
        _ => None,
    };
    Ok(DeliberationRow {
        task_id: row.try_get("task_id")?,
        status: row.try_get("status")?,
        request: row.try_get("request")?,
        started_at_ms: row.try_get("started_at_ms")?,
        finished_at_ms: row.try_get("finished_at_ms")?,
        duration_ms: row.try_get("duration_ms")?,
        winner_id: row.try_get("winner_id")?,
        error: row.try_get("error")?,
        progress: if with_progress { row.try_get("progress")? } else { None },
        usage,
    })
}

fn usage_columns<R>(row: &R) -> Result<UsageColumns, sqlx::Error>
where
    R: Row,
    for<'n> &'n str: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(UsageColumns {
        prompt_tokens: row.try_get("prompt_tokens")?,
        completion_tokens: row.try_get("completion_tokens")?,
        calls: row.try_get("calls")?,
        latency_ms: row.try_get("latency_ms")?,
    })
}

fn proposal_row<R>(row: &R) -> Result<ProposalRow, sqlx::Error>
where
    R: Row,
    for<'n> &'n str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> f64: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(ProposalRow {
        ordinal: row.try_get("ordinal")?,
        rank: row.try_get("rank")?,
        agent_id: row.try_get("agent_id")?,
        agent_role: row.try_get("agent_role")?,
        profile: row.try_get("profile")?,
        seat: row.try_get("seat")?,
        author: row.try_get("author")?,
        content: row.try_get("content")?,
        revisions: row.try_get("revisions")?,
        created_at_ms: row.try_get("created_at_ms")?,
        checks: row.try_get("checks")?,
        check_score: row.try_get("check_score")?,
        peer_score: row.try_get("peer_score")?,
        score: row.try_get("score")?,
        usage: usage_columns(row)?,
    })
}

fn review_row<R>(row: &R) -> Result<ReviewRow, sqlx::Error>
where
    R: Row,
    for<'n> &'n str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> f64: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(ReviewRow {
        proposal_agent_id: row.try_get("proposal_agent_id")?,
        ordinal: row.try_get("ordinal")?,
        reviewer: row.try_get("reviewer")?,
        target: row.try_get("target")?,
        round: row.try_get("round")?,
        score: row.try_get("score")?,
        critique: row.try_get("critique")?,
        issues: row.try_get("issues")?,
    })
}

fn failure_row<R>(row: &R) -> Result<FailureRow, sqlx::Error>
where
    R: Row,
    for<'n> &'n str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(FailureRow {
        ordinal: row.try_get("ordinal")?,
        agent_id: row.try_get("agent_id")?,
        phase: row.try_get("phase")?,
        round: row.try_get("round")?,
        reason: row.try_get("reason")?,
    })
}

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
    /// Reads the child rows of a completed deliberation.
    async fn outcome_rows(&self, task_id: &str) -> Result<OutcomeRows, StoreError> {
        let to_err = |e| from_sqlx(task_id, e);
        let proposals = sqlx::query("SELECT * FROM proposals WHERE task_id = $1 ORDER BY ordinal")
            .bind(task_id.to_owned())
            .fetch_all(&self.reader)
            .await
            .map_err(to_err)?
            .iter()
            .map(proposal_row)
            .collect::<Result<Vec<_>, _>>()
            .map_err(to_err)?;
        let reviews =
            sqlx::query("SELECT * FROM reviews WHERE task_id = $1 ORDER BY proposal_agent_id, ordinal")
                .bind(task_id.to_owned())
                .fetch_all(&self.reader)
                .await
                .map_err(to_err)?
                .iter()
                .map(review_row)
                .collect::<Result<Vec<_>, _>>()
                .map_err(to_err)?;
        let failures = sqlx::query("SELECT * FROM agent_failures WHERE task_id = $1 ORDER BY ordinal")
            .bind(task_id.to_owned())
            .fetch_all(&self.reader)
            .await
            .map_err(to_err)?
            .iter()
            .map(failure_row)
            .collect::<Result<Vec<_>, _>>()
            .map_err(to_err)?;
        Ok(OutcomeRows { winner_id: None, usage: UsageColumns::default(), proposals, reviews, failures })
    }

    /// Inserts the child rows of a completed deliberation inside `tx`, a multi-row `INSERT`
    /// per table and chunk.
    async fn insert_outcome(
        tx: &mut DB::Connection,
        task_id: &str,
        rows: &OutcomeRows,
    ) -> Result<(), sqlx::Error> {
        for chunk in rows.proposals.chunks(INSERT_CHUNK) {
            let sql = format!(
                "INSERT INTO proposals (task_id, agent_id, ordinal, rank, agent_role, profile, seat, author, \
                 content, revisions, created_at_ms, checks, check_score, peer_score, score, prompt_tokens, \
                 completion_tokens, calls, latency_ms) VALUES {}",
                values_placeholders(chunk.len(), 19)
            );
            let mut insert = sqlx::query(&sql);
            for p in chunk {
                insert = insert
                    .bind(task_id.to_owned())
                    .bind(p.agent_id.clone())
                    .bind(p.ordinal)
                    .bind(p.rank)
                    .bind(p.agent_role.clone())
                    .bind(p.profile.clone())
                    .bind(p.seat)
                    .bind(p.author.clone())
                    .bind(p.content.clone())
                    .bind(p.revisions.clone())
                    .bind(p.created_at_ms)
                    .bind(p.checks.clone())
                    .bind(p.check_score)
                    .bind(p.peer_score)
                    .bind(p.score)
                    .bind(p.usage.prompt_tokens)
                    .bind(p.usage.completion_tokens)
                    .bind(p.usage.calls)
                    .bind(p.usage.latency_ms);
            }
            insert.execute(&mut *tx).await?;
        }
        for chunk in rows.reviews.chunks(INSERT_CHUNK) {
            let sql = format!(
                "INSERT INTO reviews (task_id, proposal_agent_id, ordinal, reviewer, target, round, score, \
                 critique, issues) VALUES {}",
                values_placeholders(chunk.len(), 9)
            );
            let mut insert = sqlx::query(&sql);
            for r in chunk {
                insert = insert
                    .bind(task_id.to_owned())
                    .bind(r.proposal_agent_id.clone())
                    .bind(r.ordinal)
                    .bind(r.reviewer.clone())
                    .bind(r.target.clone())
                    .bind(r.round)
                    .bind(r.score)
                    .bind(r.critique.clone())
                    .bind(r.issues.clone());
            }
            insert.execute(&mut *tx).await?;
        }
        for chunk in rows.failures.chunks(INSERT_CHUNK) {
            let sql = format!(
                "INSERT INTO agent_failures (task_id, ordinal, agent_id, phase, round, reason) VALUES {}",
                values_placeholders(chunk.len(), 6)
            );
            let mut insert = sqlx::query(&sql);
            for f in chunk {
                insert = insert
                    .bind(task_id.to_owned())
                    .bind(f.ordinal)
                    .bind(f.agent_id.clone())
                    .bind(f.phase.clone())
                    .bind(f.round)
                    .bind(f.reason.clone());
            }
            insert.execute(&mut *tx).await?;
        }
        Ok(())
    }

    /// Marks the deliberation COMPLETED and writes its outcome, all in one transaction.
    async fn complete_in_transaction(
        &self,
        task_id: &str,
        sources: &str,
        rows: &OutcomeRows,
        finished_at_ms: i64,
        duration_ms: i64,
    ) -> Result<bool, sqlx::Error> {
        let mut tx = self.writer.begin().await?;
        let updated = sqlx::query(&format!(
            "UPDATE deliberations SET status = '{completed}', finished_at_ms = $1, duration_ms = $2, \
             winner_id = $3, error = NULL, prompt_tokens = $4, completion_tokens = $5, calls = $6, \
             latency_ms = $7 WHERE task_id = $8 AND status IN ({sources}) RETURNING task_id",
            completed = DeliberationStatus::Completed.as_str(),
        ))
        .bind(finished_at_ms)
        .bind(duration_ms)
        .bind(rows.winner_id.clone())
        .bind(rows.usage.prompt_tokens)
        .bind(rows.usage.completion_tokens)
        .bind(rows.usage.calls)
        .bind(rows.usage.latency_ms)
        .bind(task_id.to_owned())
        .fetch_optional(&mut *tx)
        .await?;
        if updated.is_none() {
            tx.rollback().await?;
            return Ok(false);
        }
        Self::insert_outcome(&mut *tx, task_id, rows).await?;
        tx.commit().await?;
        Ok(true)
    }
}

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
    async fn create(&self, new: &NewDeliberation, lease: &Lease) -> Result<bool, StoreError> {
        let task_id = new.task_id.as_str();
        let inserted = sqlx::query(&format!(
            "INSERT INTO deliberations \
             (task_id, role, status, task_description, request, created_at_ms, owner, lease_until_ms) \
             VALUES ($1, $2, '{pending}', $3, $4, $5, $6, $7) ON CONFLICT (task_id) DO NOTHING RETURNING task_id",
            pending = DeliberationStatus::Pending.as_str(),
        ))
        .bind(new.task_id.clone())
        .bind(new.role.as_str().to_owned())
        .bind(new.task.description().to_owned())
        .bind(to_json(task_id, new)?)
        .bind(new.created_at_ms)
        .bind(lease.owner.clone())
        .bind(lease.until_ms)
        .fetch_optional(&self.writer)
        .await
        .map_err(|e| from_sqlx(task_id, e))?;
        Ok(inserted.is_some())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(task_id = %task_id), err)]
    async fn get(&self, task_id: &str) -> Result<Option<DeliberationRecord>, StoreError> {
        let to_err = |e| from_sqlx(task_id, e);
        let row =
            sqlx::query(&format!("SELECT {SUMMARY_COLUMNS}, progress FROM deliberations WHERE task_id = $1"))
                .bind(task_id.to_owned())
                .fetch_optional(&self.reader)
                .await
                .map_err(to_err)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let row = deliberation_row(&row, true).map_err(to_err)?;
        // The outcome rows are committed in the same transaction as the COMPLETED status, so
        // once that status is visible they are too.
        let outcome = if row.status()? == DeliberationStatus::Completed {
            Some(self.outcome_rows(task_id).await?)
        } else {
            None
        };
        row.into_record(outcome).map(Some)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(task_id = %task_id), err)]
    async fn mark_started(&self, task_id: &str, at_ms: i64) -> Result<bool, StoreError> {
        let target = DeliberationStatus::InProgress;
        let Some(sources) = sources_of(target) else {
            return Ok(false);
        };
        let updated = sqlx::query(&format!(
            "UPDATE deliberations SET status = '{target}', started_at_ms = $1 \
             WHERE task_id = $2 AND status IN ({sources}) RETURNING task_id",
            target = target.as_str(),
        ))
        .bind(at_ms)
        .bind(task_id.to_owned())
        .fetch_optional(&self.writer)
        .await
        .map_err(|e| from_sqlx(task_id, e))?;
        Ok(updated.is_some())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(task_id = %task_id, phase = %progress.phase()), err)]
    async fn save_progress(&self, task_id: &str, progress: &Deliberation) -> Result<bool, StoreError> {
        let updated = sqlx::query(&format!(
            "UPDATE deliberations SET progress = $1 WHERE task_id = $2 AND status = '{in_progress}' \
             RETURNING task_id",
            in_progress = DeliberationStatus::InProgress.as_str(),
        ))
        .bind(to_json(task_id, progress)?)
        .bind(task_id.to_owned())
        .fetch_optional(&self.writer)
        .await
        .map_err(|e| from_sqlx(task_id, e))?;
        Ok(updated.is_some())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(task_id = %task_id), err)]
    async fn complete(
        &self,
        task_id: &str,
        outcome: &DeliberationOutcome,
        finished_at_ms: i64,
        duration_ms: i64,
    ) -> Result<bool, StoreError> {
        let Some(sources) = sources_of(DeliberationStatus::Completed) else {
            return Ok(false);
        };
        let rows = OutcomeRows::from_outcome(task_id, outcome)?;
        self.complete_in_transaction(task_id, &sources, &rows, finished_at_ms, duration_ms)
            .await
            .map_err(|e| from_sqlx(task_id, e))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(task_id = %task_id, status = %status), err)]
    async fn finish_unsuccessfully(
        &self,
        task_id: &str,
        status: DeliberationStatus,
        error: &str,
        finished_at_ms: i64,
    ) -> Result<bool, StoreError> {
        use DeliberationStatus::{Cancelled, Failed, Interrupted, Timeout};
        if !matches!(status, Failed | Timeout | Cancelled | Interrupted) {
            tracing::warn!(%status, "refusing to finish a deliberation unsuccessfully with a non-failure status");
            return Ok(false);
        }
        let Some(sources) = sources_of(status) else {
            return Ok(false);
        };
        let updated = sqlx::query(&format!(
            "UPDATE deliberations SET status = '{target}', error = $1, finished_at_ms = $2 \
             WHERE task_id = $3 AND status IN ({sources}) RETURNING task_id",
            target = status.as_str(),
        ))
        .bind(error.to_owned())
        .bind(finished_at_ms)
        .bind(task_id.to_owned())
        .fetch_optional(&self.writer)
        .await
        .map_err(|e| from_sqlx(task_id, e))?;
        Ok(updated.is_some())
    }

    #[tracing::instrument(level = "debug", skip_all, err)]
    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        let limit = query.limit.clamp(1, MAX_PAGE_SIZE);
        let cursor = query.cursor.as_deref().map(Cursor::decode).transpose()?;
        let mut filter = ListFilter::default();
        if let Some(role) = query.role {
            filter.and("role =", Param::Text(role.as_str().to_owned()));
        }
        if let Some(status) = query.status {
            filter.and("status =", Param::Text(status.as_str().to_owned()));
        }
        if let Some(after) = query.created_after_ms {
            filter.and("created_at_ms >=", Param::Int(after));
        }
        if let Some(before) = query.created_before_ms {
            filter.and("created_at_ms <", Param::Int(before));
        }
        if let Some(cursor) = cursor {
            let n = filter.params.len();
            filter.conditions.push(format!(
                "(created_at_ms < ${} OR (created_at_ms = ${} AND task_id < ${}))",
                n + 1,
                n + 1,
                n + 2
            ));
            filter.params.push(Param::Int(cursor.created_at_ms));
            filter.params.push(Param::Text(cursor.task_id));
        }
        // One row more than asked tells whether another page exists.
        filter.params.push(Param::Int(i64::from(limit) + 1));
        let sql = format!(
            "SELECT {SUMMARY_COLUMNS} FROM deliberations{} ORDER BY created_at_ms DESC, task_id DESC LIMIT ${}",
            filter.where_clause(),
            filter.params.len()
        );
        let mut select = sqlx::query(&sql);
        for param in filter.params {
            select = match param {
                Param::Text(text) => select.bind(text),
                Param::Int(int) => select.bind(int),
            };
        }
        let rows = select.fetch_all(&self.reader).await.map_err(|e| from_sqlx(UNKNOWN_TASK, e))?;
        let mut items = Vec::with_capacity(rows.len());
        let mut next_cursor = None;
        for row in &rows {
            if items.len() == limit as usize {
                next_cursor = items.last().map(|last: &DeliberationRecord| {
                    Cursor {
                        created_at_ms: last.request.created_at_ms,
                        task_id: last.request.task_id.clone(),
                    }
                    .encode()
                });
                break;
            }
            let row = deliberation_row(row, false).map_err(|e| from_sqlx(UNKNOWN_TASK, e))?;
            items.push(row.into_record(None)?);
        }
        Ok(Page { items, next_cursor })
    }

    #[tracing::instrument(level = "debug", skip_all, fields(owner = %lease.owner), err)]
    async fn renew_leases(&self, lease: &Lease) -> Result<u64, StoreError> {
        let renewed = sqlx::query(&format!(
            "UPDATE deliberations SET lease_until_ms = $1 WHERE owner = $2 AND status IN ({UNFINISHED}) \
             RETURNING task_id"
        ))
        .bind(lease.until_ms)
        .bind(lease.owner.clone())
        .fetch_all(&self.writer)
        .await
        .map_err(|e| from_sqlx(UNKNOWN_TASK, e))?;
        Ok(renewed.len() as u64)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(owner = %lease.owner), err)]
    async fn claim_unfinished(
        &self,
        lease: &Lease,
        now_ms: i64,
        include_own: bool,
    ) -> Result<Vec<DeliberationRecord>, StoreError> {
        let own = if include_own { " OR owner = $1" } else { "" };
        // One statement: two servers claiming at once cannot both take a row.
        let claimed = sqlx::query(&format!(
            "UPDATE deliberations SET owner = $1, lease_until_ms = $2 \
             WHERE status IN ({UNFINISHED}) \
               AND (owner IS NULL OR lease_until_ms IS NULL OR lease_until_ms < $3{own}) \
             RETURNING {SUMMARY_COLUMNS}, progress"
        ))
        .bind(lease.owner.clone())
        .bind(lease.until_ms)
        .bind(now_ms)
        .fetch_all(&self.writer)
        .await
        .map_err(|e| from_sqlx(UNKNOWN_TASK, e))?;
        let mut records = claimed
            .iter()
            .map(|row| deliberation_row(row, true).map_err(|e| from_sqlx(UNKNOWN_TASK, e))?.into_record(None))
            .collect::<Result<Vec<_>, _>>()?;
        records.sort_by(|a, b| {
            (a.request.created_at_ms, &a.request.task_id).cmp(&(b.request.created_at_ms, &b.request.task_id))
        });
        for record in &records {
            tracing::info!(task_id = %record.request.task_id, "claimed an unfinished deliberation");
        }
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_changes_come_only_from_states_the_lifecycle_allows() {
        use DeliberationStatus::*;
        assert_eq!(sources_of(InProgress).as_deref(), Some("'PENDING'"));
        assert_eq!(sources_of(Cancelled).as_deref(), Some("'PENDING', 'IN_PROGRESS'"));
        assert_eq!(sources_of(Pending), None);
    }

    #[test]
    fn multi_row_placeholders_are_numbered_across_rows() {
        assert_eq!(values_placeholders(2, 3), "($1, $2, $3), ($4, $5, $6)");
    }

    #[test]
    fn list_conditions_number_their_parameters_in_order() {
        let mut filter = ListFilter::default();
        assert_eq!(filter.where_clause(), "");
        filter.and("role =", Param::Text("DEV".into()));
        filter.and("created_at_ms <", Param::Int(5));
        assert_eq!(filter.where_clause(), " WHERE role = $1 AND created_at_ms < $2");
        assert_eq!(filter.params.len(), 2);
    }
}
