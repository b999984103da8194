//! The statements every write of the port shares: an event beside its state change, an
//! outcome's rows, and why a fenced write matched nothing.

use orchestrator_application::ports::{Fence, Lease, NewDeliberation, StoreError};
use orchestrator_domain::{DeliberationStatus, TaskId};
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Row, Type};

use crate::error::from_sqlx;
use crate::outbox::StoredEvent;
use crate::rows::{
    FAILURE_COLUMNS, FailureRow, OutcomeRows, PROPOSAL_COLUMNS, ProposalRow, REVIEW_COLUMNS, ReviewRow,
};
use crate::statement::Statement;
use crate::text::{storable, to_json};

use super::*;

/// Who holds a row now, read when a fenced write matched nothing.
#[derive(Debug, sqlx::FromRow)]
struct HolderRow {
    status: String,
    owner: String,
    lease_epoch: i64,
}

// A second impl block with the bounds its helpers need (see the note above the trait impl).
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
    /// Why a write under `fence` matched no row: `Err(LeaseLost)` when the row is unfinished
    /// and held by another claim; `Ok(false)` when the lifecycle refused it (or no row).
    pub(super) async fn refusal(&self, task_id: &TaskId, fence: Option<&Fence>) -> Result<bool, StoreError> {
        let Some(fence) = fence else { return Ok(false) };
        let holder: Option<HolderRow> = sqlx::query_as(
            "SELECT status, COALESCE(owner, '') AS owner, lease_epoch FROM deliberations WHERE task_id = $1",
        )
        .bind(task_id.to_string())
        .fetch_optional(
            &mut *self
                .writer
                .acquire()
                .await
                .map_err(|e| from_sqlx("checking the lease of", Some(task_id), e))?,
        )
        .await
        .map_err(|e| from_sqlx("checking the lease of", Some(task_id), e))?;
        let Some(holder) = holder else { return Ok(false) };
        let unfinished = DeliberationStatus::parse(&holder.status).is_ok_and(|s| !s.is_terminal());
        if unfinished && (holder.owner != storable(&fence.owner) || holder.lease_epoch != fence.epoch) {
            tracing::warn!(task_id = %task_id, owner = %holder.owner, epoch = holder.lease_epoch, "write refused: another claim holds the deliberation");
            return Err(StoreError::LeaseLost { task_id: task_id.clone() });
        }
        Ok(false)
    }

    /// The `columns` of every row of `table` that belongs to `task_id`, ordered by `order`.
    pub(super) async fn rows_of<R>(
        &self,
        columns: &str,
        table: &str,
        order: &str,
        task_id: &str,
    ) -> Result<Vec<R>, StoreError>
    where
        R: for<'r> sqlx::FromRow<'r, DB::Row> + Send + Unpin,
    {
        sqlx::query_as(&format!("SELECT {columns} FROM {table} WHERE task_id = $1 ORDER BY {order}"))
            .bind(task_id.to_string())
            .fetch_all(&self.reader)
            .await
            .map_err(|e| from_sqlx("reading", Some(task_id), e))
    }

    /// Stores `event` as the deliberation's event number `seq` in the outbox, in `tx`.
    pub(super) async fn insert_event(
        tx: &mut DB::Connection,
        task_id: &str,
        seq: i64,
        event: &StoredEvent,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO outbox (task_id, seq, event, payload, created_at_ms) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(task_id.to_string())
        .bind(seq)
        .bind(event.name.to_owned())
        .bind(event.payload.clone())
        .bind(event.at_ms)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    /// Runs the status change `update` — an `UPDATE … RETURNING event_seq` that adds `bump` to
    /// `event_seq` — and, when it matched, stores `event` under the returned number, in one
    /// transaction; without an event, the change alone. Whether it matched. `durability` says
    /// what the commit must survive (see [`Durability`]).
    pub(super) async fn change_with_event<'q>(
        &self,
        update: sqlx::query::Query<'q, DB, DB::Arguments<'q>>,
        task_id: &str,
        event: Option<&StoredEvent>,
        durability: Durability,
    ) -> Result<bool, sqlx::Error> {
        let mut connection = self.writer_at(durability).await?;
        let changed = Self::change_on(&mut connection, update, task_id, event).await?;
        connection.finished();
        Ok(changed)
    }

    /// Runs a fenced change of one row at `durability`: binds `$2` to `$5` of `update` (task id,
    /// the fence's owner and epoch, whether `event` comes with it) — `$1` is the caller's —
    /// stores the event beside it, and says why it matched nothing (see [`Self::refusal`]).
    pub(super) async fn fenced_change<'q>(
        &self,
        update: sqlx::query::Query<'q, DB, DB::Arguments<'q>>,
        task_id: &TaskId,
        fence: &Fence,
        event: Option<&StoredEvent>,
        operation: &'static str,
    ) -> Result<bool, StoreError> {
        let update = update
            .bind(task_id.to_string())
            .bind(storable(&fence.owner))
            .bind(fence.epoch)
            .bind(i64::from(event.is_some()));
        let updated = self
            .change_with_event(update, task_id, event, Durability::ProcessCrash)
            .await
            .map_err(|e| from_sqlx(operation, Some(task_id), e))?;
        if updated { Ok(true) } else { self.refusal(task_id, Some(fence)).await }
    }

    pub(super) async fn change_on<'q>(
        connection: &mut DB::Connection,
        update: sqlx::query::Query<'q, DB, DB::Arguments<'q>>,
        task_id: &str,
        event: Option<&StoredEvent>,
    ) -> Result<bool, sqlx::Error> {
        let Some(event) = event else {
            return Ok(update.fetch_optional(&mut *connection).await?.is_some());
        };
        let mut tx = sqlx::Connection::begin(connection).await?;
        let Some(row) = update.fetch_optional(&mut *tx).await? else {
            tx.rollback().await?;
            return Ok(false);
        };
        let seq: i64 = row.try_get("event_seq")?;
        Self::insert_event(&mut tx, task_id, seq, event).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Stores `new` under `lease` — PENDING, or IN_PROGRESS from `started_at_ms` — with
    /// `event` when given, committed at `durability`; `false` when its task id is stored
    /// already.
    pub(super) async fn insert_new(
        &self,
        new: &NewDeliberation,
        lease: &Lease,
        started_at_ms: Option<i64>,
        event: Option<&StoredEvent>,
        durability: Durability,
    ) -> Result<bool, StoreError> {
        let task_id = &new.task_id;
        let status = match started_at_ms {
            Some(_) => DeliberationStatus::InProgress,
            None => DeliberationStatus::Pending,
        };
        let sql = format!(
            "INSERT INTO deliberations \
             (task_id, role, status, task_description, request, created_at_ms, owner, lease_until_ms, principal, \
              council_id, event_seq, started_at_ms) \
             VALUES ($1, $2, '{status}', $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (task_id) DO NOTHING \
             RETURNING event_seq",
            status = status.as_str(),
        );
        let insert = sqlx::query(&sql)
            .bind(task_id.to_string())
            .bind(new.role.as_str().to_owned())
            .bind(storable(new.task.description()))
            .bind(to_json(task_id, "request", new)?)
            .bind(new.created_at_ms)
            .bind(storable(&lease.owner))
            .bind(lease.until_ms)
            .bind(storable(&new.principal))
            .bind(new.council_id().map(|id| storable(id.as_str())))
            .bind(i64::from(event.is_some()))
            .bind(started_at_ms);
        self.change_with_event(insert, task_id, event, durability)
            .await
            .map_err(|e| from_sqlx("creating", Some(task_id), e))
    }

    /// Inserts the rows of an outcome (ranked proposals, their reviews, failures) in `tx`.
    pub(super) async fn insert_outcome(
        tx: &mut DB::Connection,
        task_id: &str,
        rows: &OutcomeRows,
    ) -> Result<(), sqlx::Error> {
        for chunk in OutcomeChunk::all(rows) {
            let mut insert = Statement::new(format!("INSERT INTO {} VALUES ", chunk.table()));
            push_outcome_values(&mut insert, task_id, chunk);
            let (sql, arguments) = insert.into_parts()?;
            sqlx::query_with(&sql, arguments).execute(&mut *tx).await?;
        }
        Ok(())
    }

    /// A status in `sources` → COMPLETED under `fence`, with the outcome's `rows` and `event`,
    /// as one statement of data-modifying `WITH` queries (only where [`writes_in_one_statement`]).
    /// Whether the row matched: without a match nothing is inserted either.
    ///
    /// A transaction is a round trip to the server for `BEGIN`, for each statement and for
    /// `COMMIT`, and on the server a wake-up of its backend for each; at zero model latency
    /// those were most of a deliberation's database time. One statement is its own
    /// transaction: all of it commits or none, as the transaction did.
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
        let mut statement = Statement::<DB>::new("WITH updated AS (");
        let completion = Completion { task_id, fence, sources, finished_at_ms, duration_ms, rows };
        push_completion(&mut statement, &completion, event.is_some());
        statement.push(")");
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

/// Whether `DB` runs data-modifying `WITH` queries (PostgreSQL does, SQLite does not, and
/// keeps its round trips inside this process anyway), so a completion can be one statement.
pub(super) fn writes_in_one_statement<DB: Database>() -> bool {
    DB::NAME == "PostgreSQL"
}

/// What a completion writes to the deliberation's own row.
pub(super) struct Completion<'a> {
    pub(super) task_id: &'a str,
    pub(super) fence: &'a Fence,
    /// The statuses it may complete from, as an SQL list.
    pub(super) sources: &'a str,
    pub(super) finished_at_ms: i64,
    pub(super) duration_ms: i64,
    pub(super) rows: &'a OutcomeRows,
}

/// Appends `UPDATE deliberations … RETURNING event_seq`: the row of `completion` becomes
/// COMPLETED with its totals, under its fence, its event number raised when `with_event`.
pub(super) fn push_completion<'q, DB>(
    statement: &mut Statement<'q, DB>,
    completion: &Completion<'_>,
    with_event: bool,
) where
    DB: Database,
    i64: Encode<'q, DB> + Type<DB>,
    String: Encode<'q, DB> + Type<DB>,
    Option<String>: Encode<'q, DB>,
{
    let Completion { task_id, fence, sources, finished_at_ms, duration_ms, rows } = completion;
    statement
        .push(&format!(
            "UPDATE deliberations SET status = '{completed}', error = NULL, finished_at_ms = ",
            completed = DeliberationStatus::Completed.as_str(),
        ))
        .push_bind(*finished_at_ms)
        .push(", duration_ms = ")
        .push_bind(*duration_ms)
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
        .push_bind(i64::from(with_event))
        .push(" WHERE task_id = ")
        .push_bind((*task_id).to_owned())
        .push(&format!(" AND status IN ({sources}) AND owner = "))
        .push_bind(storable(&fence.owner))
        .push(" AND lease_epoch = ")
        .push_bind(fence.epoch)
        .push(" RETURNING event_seq");
}

/// Rows of one outcome table.
pub(super) enum OutcomeChunk<'r> {
    Proposals(&'r [ProposalRow]),
    Reviews(&'r [ReviewRow]),
    Failures(&'r [FailureRow]),
}

impl<'r> OutcomeChunk<'r> {
    /// The rows of `rows`, at most [`INSERT_CHUNK`] to a chunk, in the order they may be
    /// inserted (a review after the proposal it is about).
    pub(super) fn all(rows: &'r OutcomeRows) -> Vec<Self> {
        let proposals = rows.proposals.chunks(INSERT_CHUNK).map(Self::Proposals);
        let reviews = rows.reviews.chunks(INSERT_CHUNK).map(Self::Reviews);
        let failures = rows.failures.chunks(INSERT_CHUNK).map(Self::Failures);
        proposals.chain(reviews).chain(failures).collect()
    }

    /// The table and its columns (`task_id` first), as SQL.
    pub(super) fn table(&self) -> String {
        match self {
            Self::Proposals(_) => format!("proposals (task_id, {PROPOSAL_COLUMNS})"),
            Self::Reviews(_) => format!("reviews (task_id, {REVIEW_COLUMNS})"),
            Self::Failures(_) => format!("agent_failures (task_id, {FAILURE_COLUMNS})"),
        }
    }
}

/// Appends `(…), (…)`: one tuple of values per row of `chunk`, `task_id` first.
pub(super) fn push_outcome_values<'q, DB>(
    statement: &mut Statement<'q, DB>,
    task_id: &str,
    chunk: OutcomeChunk<'_>,
) where
    DB: Database,
    i64: Encode<'q, DB> + Type<DB>,
    f64: Encode<'q, DB> + Type<DB>,
    String: Encode<'q, DB> + Type<DB>,
    Option<f64>: Encode<'q, DB>,
{
    match chunk {
        OutcomeChunk::Proposals(chunk) => statement.push_values(chunk, |values, p| {
            values
                .push_bind(task_id.to_owned())
                .push_bind(p.ordinal)
                .push_bind(p.rank)
                .push_bind(p.agent_id.clone())
                .push_bind(p.agent_role.clone())
                .push_bind(p.profile.clone())
                .push_bind(p.seat)
                .push_bind(p.author.clone())
                .push_bind(p.content.clone())
                .push_bind(p.revisions.clone())
                .push_bind(p.created_at_ms)
                .push_bind(p.checks.clone())
                .push_bind(p.check_score)
                .push_bind(p.peer_score)
                .push_bind(p.score)
                .push_bind(p.usage.prompt_tokens)
                .push_bind(p.usage.completion_tokens)
                .push_bind(p.usage.calls)
                .push_bind(p.usage.latency_ms);
        }),
        OutcomeChunk::Reviews(chunk) => statement.push_values(chunk, |values, r| {
            values
                .push_bind(task_id.to_owned())
                .push_bind(r.proposal_agent_id.clone())
                .push_bind(r.ordinal)
                .push_bind(r.reviewer.clone())
                .push_bind(r.target.clone())
                .push_bind(r.round)
                .push_bind(r.score)
                .push_bind(r.critique.clone())
                .push_bind(r.issues.clone());
        }),
        OutcomeChunk::Failures(chunk) => statement.push_values(chunk, |values, f| {
            values
                .push_bind(task_id.to_owned())
                .push_bind(f.ordinal)
                .push_bind(f.agent_id.clone())
                .push_bind(f.phase.clone())
                .push_bind(f.round)
                .push_bind(f.reason.clone());
        }),
    }
}
