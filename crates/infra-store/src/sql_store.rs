//! The store logic both databases share: statements, transactions and lifecycle guards.
//!
//! [`SqlStore`] is generic over the sqlx [`Database`]; the SQL is written once in the dialect
//! common to SQLite and PostgreSQL (`ON CONFLICT`, `RETURNING`, row values). Statements with a
//! fixed shape use `$n` parameters; those whose shape depends on the call (filters, multi-row
//! inserts) are built with [`Statement`], which writes placeholders in each dialect. What
//! differs — opening, pragmas, pool sizes, migrations — lives in `sqlite.rs` and `postgres.rs`.
//!
//! Lifecycle rules are enforced by the database, not by a read-then-write: every status change
//! is one `UPDATE … WHERE status IN (<states that may become the target>)`, the allowed sources
//! being derived from [`DeliberationStatus::can_become`]. Two racing changes (cancel and
//! complete) therefore cannot both apply: the second finds no matching row and reports `false`.
//!
//! Every text bound to a statement goes through [`storable`] (see `text.rs`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use orchestrator_application::ports::{
    Claim, ClaimScope, DeliberationEvent, DeliberationRecord, DeliberationStore, Fence, Lease, ListQuery,
    NewDeliberation, Page, PageCursor, StoreError, StoredSelection, UnsuccessfulEnd,
};
use orchestrator_domain::{Deliberation, DeliberationOutcome, DeliberationStatus};
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Row, Type};

use crate::error::{Fault, from_sqlx};
use crate::file_lock::ExclusiveFile;
use crate::outbox::StoredEvent;
use crate::rows::{
    DELIBERATION_COLUMNS, DeliberationRow, FAILURE_COLUMNS, FailureRow, OutcomeRows, PROPOSAL_COLUMNS,
    ProposalRow, REVIEW_COLUMNS, ReviewRow,
};
use crate::snapshot::snapshot;
use crate::statement::Statement;
use crate::text::{storable, to_json};
use crate::writer::{Writer, WriterGuard};

/// Rows per multi-row `INSERT`, far below either database's bind-parameter limit.
const INSERT_CHUNK: usize = 100;

/// The statuses of deliberations that may still run, as an SQL list.
const UNFINISHED: &str = "'PENDING', 'IN_PROGRESS'";

/// A [`DeliberationStore`] over an sqlx connection pool; see [`crate::SqliteStore`] and
/// [`crate::PostgresStore`] for how to open one.
///
/// Writes go through `writer`, reads through `reader`. For PostgreSQL they are the same pool;
/// a SQLite file gets one writer connection held for good (it has a single writer anyway, and
/// queueing for it instead of in SQLite's lock means no `SQLITE_BUSY`; see `writer.rs`)
/// beside a reader pool that WAL lets run concurrently with it.
#[derive(Debug, Clone)]
pub struct SqlStore<DB: Database> {
    writer: Writer<DB>,
    reader: Pool<DB>,
    /// The longest [`DeliberationStore::ping`] waits for an answer.
    ping_timeout: Duration,
    /// Whether other processes may reach the database (see [`Hold`]).
    hold: Hold,
    /// How a write commits at each [`Durability`]; `None`: every commit is as durable as the
    /// database makes it (PostgreSQL: its server, not this process, holds the data).
    commit_levels: Option<CommitLevels>,
    /// The level the (single) writer connection is set to now, so it is set only on a change:
    /// a setting is a round trip to SQLite's connection thread. A connection the pool replaced
    /// starts at its connect options' level (the durable one), which only ever makes a commit
    /// more durable than asked.
    commit_level: Arc<std::sync::atomic::AtomicU8>,
}

/// What a commit must survive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Durability {
    /// The end of this process (`kill -9`): a saved phase — on a crash at most the phase in
    /// flight is lost anyway, so a power cut that also loses the last saved ones costs a few
    /// agent calls again, never a result.
    ProcessCrash,
    /// A power cut too: what a client is told is stored (a submission, a result, an end).
    PowerLoss,
}

/// The statements that set a connection's commit durability.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CommitLevels {
    pub(crate) process_crash: &'static str,
    pub(crate) power_loss: &'static str,
}

impl CommitLevels {
    fn statement(self, durability: Durability) -> &'static str {
        match durability {
            Durability::ProcessCrash => self.process_crash,
            Durability::PowerLoss => self.power_loss,
        }
    }
}

/// Who else may reach a store's database.
#[derive(Debug, Clone)]
pub(crate) enum Hold {
    /// Other servers may share it (PostgreSQL).
    Shared,
    /// An in-memory database: nobody else can see it.
    Memory,
    /// A file this process holds the exclusive lock of, until the store is closed (or the
    /// last clone dropped).
    File(Arc<std::sync::Mutex<Option<ExclusiveFile>>>),
}

impl<DB: Database> SqlStore<DB> {
    pub(crate) fn from_pools(
        writer: Writer<DB>,
        reader: Pool<DB>,
        ping_timeout: Duration,
        hold: Hold,
    ) -> Self {
        Self {
            writer,
            reader,
            ping_timeout,
            hold,
            commit_levels: None,
            commit_level: Arc::new(std::sync::atomic::AtomicU8::new(Durability::PowerLoss as u8)),
        }
    }

    /// Commits at these levels instead of the database's one (see [`Durability`]).
    pub(crate) fn with_commit_levels(mut self, levels: CommitLevels) -> Self {
        self.commit_levels = Some(levels);
        self
    }

    /// The pool reads go through.
    pub(crate) fn reader(&self) -> &Pool<DB> {
        &self.reader
    }
}

impl<DB> SqlStore<DB>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
{
    /// The writer connection, set to commit at `durability` (see [`Durability`]). Every write
    /// goes through it: the pool's single SQLite connection keeps the last level set.
    pub(crate) async fn writer_at(&self, durability: Durability) -> Result<WriterGuard<DB>, sqlx::Error> {
        let mut connection = self.writer.acquire().await?;
        if let Some(levels) = self.commit_levels {
            let wanted = durability as u8;
            if self.commit_level.load(std::sync::atomic::Ordering::SeqCst) != wanted {
                sqlx::query(levels.statement(durability)).execute(&mut *connection).await?;
                self.commit_level.store(wanted, std::sync::atomic::Ordering::SeqCst);
            }
        }
        Ok(connection)
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
    async fn refusal(&self, task_id: &str, fence: Option<&Fence>) -> Result<bool, StoreError> {
        let Some(fence) = fence else { return Ok(false) };
        let holder: Option<HolderRow> = sqlx::query_as(
            "SELECT status, COALESCE(owner, '') AS owner, lease_epoch FROM deliberations WHERE task_id = $1",
        )
        .bind(task_id.to_owned())
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
            tracing::warn!(task_id, owner = %holder.owner, epoch = holder.lease_epoch, "write refused: another claim holds the deliberation");
            return Err(StoreError::LeaseLost { task_id: task_id.to_owned() });
        }
        Ok(false)
    }

    /// The `columns` of every row of `table` that belongs to `task_id`, ordered by `order`.
    async fn rows_of<R>(
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
            .bind(task_id.to_owned())
            .fetch_all(&self.reader)
            .await
            .map_err(|e| from_sqlx("reading", Some(task_id), e))
    }

    /// Stores `event` as the deliberation's event number `seq` in the outbox, in `tx`.
    async fn insert_event(
        tx: &mut DB::Connection,
        task_id: &str,
        seq: i64,
        event: &StoredEvent,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO outbox (task_id, seq, event, payload, created_at_ms) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(task_id.to_owned())
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
    async fn change_with_event<'q>(
        &self,
        update: sqlx::query::Query<'q, DB, DB::Arguments<'q>>,
        task_id: &str,
        event: Option<&StoredEvent>,
        durability: Durability,
    ) -> Result<bool, sqlx::Error> {
        let mut connection = self.writer_at(durability).await?;
        Self::change_on(&mut connection, update, task_id, event).await
    }

    async fn change_on<'q>(
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

    /// Inserts the rows of an outcome (ranked proposals, their reviews, failures) in `tx`.
    async fn insert_outcome(
        tx: &mut DB::Connection,
        task_id: &str,
        rows: &OutcomeRows,
    ) -> Result<(), sqlx::Error> {
        for chunk in rows.proposals.chunks(INSERT_CHUNK) {
            let mut insert =
                Statement::new(format!("INSERT INTO proposals (task_id, {PROPOSAL_COLUMNS}) VALUES "));
            insert.push_values(chunk, |values, p| {
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
            });
            let (sql, arguments) = insert.into_parts()?;
            sqlx::query_with(&sql, arguments).execute(&mut *tx).await?;
        }
        for chunk in rows.reviews.chunks(INSERT_CHUNK) {
            let mut insert =
                Statement::new(format!("INSERT INTO reviews (task_id, {REVIEW_COLUMNS}) VALUES "));
            insert.push_values(chunk, |values, r| {
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
            });
            let (sql, arguments) = insert.into_parts()?;
            sqlx::query_with(&sql, arguments).execute(&mut *tx).await?;
        }
        for chunk in rows.failures.chunks(INSERT_CHUNK) {
            let mut insert =
                Statement::new(format!("INSERT INTO agent_failures (task_id, {FAILURE_COLUMNS}) VALUES "));
            insert.push_values(chunk, |values, f| {
                values
                    .push_bind(task_id.to_owned())
                    .push_bind(f.ordinal)
                    .push_bind(f.agent_id.clone())
                    .push_bind(f.phase.clone())
                    .push_bind(f.round)
                    .push_bind(f.reason.clone());
            });
            let (sql, arguments) = insert.into_parts()?;
            sqlx::query_with(&sql, arguments).execute(&mut *tx).await?;
        }
        Ok(())
    }
}

// The bounds below say "DB runs this file's SQL with i64, f64 and text values". They are
// written once, on this single impl block, rather than named by a helper trait (`trait
// SqlDialect: Database where … {}` with a blanket impl): Rust does not carry a trait's
// where-clauses to the places that use it as a bound (rust-lang/rust#20671), so every
// `DB: SqlDialect` would fail to compile unless it repeated them all. For the same reason the
// code that needs the bounds lives in these methods, not in generic helpers with a second copy.
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
        let task_id = storable(&new.task_id);
        let event = event.map(|event| StoredEvent::of(&task_id, event)).transpose()?;
        let sql = format!(
            "INSERT INTO deliberations \
             (task_id, role, status, task_description, request, created_at_ms, owner, lease_until_ms, principal, \
              council_id, event_seq) \
             VALUES ($1, $2, '{pending}', $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (task_id) DO NOTHING \
             RETURNING event_seq",
            pending = DeliberationStatus::Pending.as_str(),
        );
        let insert = sqlx::query(&sql)
            .bind(task_id.clone())
            .bind(new.role.as_str().to_owned())
            .bind(storable(new.task.description()))
            .bind(to_json(&task_id, "request", new)?)
            .bind(new.created_at_ms)
            .bind(storable(&lease.owner))
            .bind(lease.until_ms)
            .bind(storable(&new.principal))
            .bind(new.council_id().map(|id| storable(id.as_str())))
            .bind(i64::from(event.is_some()));
        self.change_with_event(insert, &task_id, event.as_ref(), Durability::PowerLoss)
            .await
            .map_err(|e| from_sqlx("creating", Some(&task_id), e))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(task_id = %task_id), err)]
    async fn get(&self, task_id: &str) -> Result<Option<DeliberationRecord>, StoreError> {
        let task_id = storable(task_id);
        let fail = |e| from_sqlx("reading", Some(&task_id), e);
        let row: Option<DeliberationRow> = sqlx::query_as(&format!(
            "SELECT {DELIBERATION_COLUMNS}, progress FROM deliberations WHERE task_id = $1"
        ))
        .bind(task_id.clone())
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
            self.rows_of::<ProposalRow>(PROPOSAL_COLUMNS, "proposals", "ordinal", &task_id),
            self.rows_of::<ReviewRow>(REVIEW_COLUMNS, "reviews", "proposal_agent_id, ordinal", &task_id),
            self.rows_of::<FailureRow>(FAILURE_COLUMNS, "agent_failures", "ordinal", &task_id),
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
        task_id: &str,
        fence: &Fence,
        at_ms: i64,
        event: Option<&DeliberationEvent>,
    ) -> Result<bool, StoreError> {
        let target = DeliberationStatus::InProgress;
        let Some(sources) = sources_of(target) else {
            return Ok(false);
        };
        let task_id = storable(task_id);
        let event = event.map(|event| StoredEvent::of(&task_id, event)).transpose()?;
        let sql = format!(
            "UPDATE deliberations SET status = '{target}', started_at_ms = $1, event_seq = event_seq + $5 \
             WHERE task_id = $2 AND status IN ({sources}) AND owner = $3 AND lease_epoch = $4 RETURNING event_seq",
            target = target.as_str(),
        );
        let update = sqlx::query(&sql)
            .bind(at_ms)
            .bind(task_id.clone())
            .bind(storable(&fence.owner))
            .bind(fence.epoch)
            .bind(i64::from(event.is_some()));
        let updated = self
            .change_with_event(update, &task_id, event.as_ref(), Durability::ProcessCrash)
            .await
            .map_err(|e| from_sqlx("starting", Some(&task_id), e))?;
        if updated { Ok(true) } else { self.refusal(&task_id, Some(fence)).await }
    }

    #[tracing::instrument(level = "debug", skip_all, fields(task_id = %task_id, phase = %progress.phase()), err)]
    async fn save_progress(
        &self,
        task_id: &str,
        fence: &Fence,
        progress: &Deliberation,
        event: Option<&DeliberationEvent>,
    ) -> Result<bool, StoreError> {
        let task_id = storable(task_id);
        let event = event.map(|event| StoredEvent::of(&task_id, event)).transpose()?;
        let sql = format!(
            "UPDATE deliberations SET progress = $1, event_seq = event_seq + $5 WHERE task_id = $2 \
             AND status = '{in_progress}' AND owner = $3 AND lease_epoch = $4 RETURNING event_seq",
            in_progress = DeliberationStatus::InProgress.as_str(),
        );
        let update = sqlx::query(&sql)
            .bind(to_json(&task_id, "progress", &snapshot(progress))?)
            .bind(task_id.clone())
            .bind(storable(&fence.owner))
            .bind(fence.epoch)
            .bind(i64::from(event.is_some()));
        let updated = self
            .change_with_event(update, &task_id, event.as_ref(), Durability::ProcessCrash)
            .await
            .map_err(|e| from_sqlx("saving progress of", Some(&task_id), e))?;
        if updated { Ok(true) } else { self.refusal(&task_id, Some(fence)).await }
    }

    #[tracing::instrument(level = "debug", skip_all, fields(task_id = %task_id), err)]
    async fn complete(
        &self,
        task_id: &str,
        fence: &Fence,
        outcome: &DeliberationOutcome,
        finished_at_ms: i64,
        duration_ms: i64,
        event: Option<&DeliberationEvent>,
    ) -> Result<bool, StoreError> {
        let Some(sources) = sources_of(DeliberationStatus::Completed) else {
            return Ok(false);
        };
        let task_id = storable(task_id);
        let event = event.map(|event| StoredEvent::of(&task_id, event)).transpose()?;
        let rows = OutcomeRows::from_outcome(&task_id, outcome)?;
        // The status change and the outcome rows commit together or not at all.
        let transaction = async {
            let mut writer = self.writer_at(Durability::PowerLoss).await?;
            let mut tx = sqlx::Connection::begin(&mut *writer).await?;
            let updated = sqlx::query(&format!(
                "UPDATE deliberations SET status = '{completed}', finished_at_ms = $1, duration_ms = $2, \
                 winner_id = $3, error = NULL, prompt_tokens = $4, completion_tokens = $5, calls = $6, \
                 latency_ms = $7, calls_saved = $11, event_seq = event_seq + $12, path = $13 WHERE task_id = $8 \
                 AND status IN ({sources}) AND owner = $9 AND lease_epoch = $10 RETURNING event_seq",
                completed = DeliberationStatus::Completed.as_str(),
            ))
            .bind(finished_at_ms)
            .bind(duration_ms)
            .bind(rows.winner_id.clone())
            .bind(rows.usage.prompt_tokens)
            .bind(rows.usage.completion_tokens)
            .bind(rows.usage.calls)
            .bind(rows.usage.latency_ms)
            .bind(task_id.clone())
            .bind(storable(&fence.owner))
            .bind(fence.epoch)
            .bind(rows.calls_saved)
            .bind(i64::from(event.is_some()))
            .bind(rows.path.clone())
            .fetch_optional(&mut *tx)
            .await?;
            let Some(updated) = updated else {
                tx.rollback().await?;
                return Ok(false);
            };
            Self::insert_outcome(&mut tx, &task_id, &rows).await?;
            if let Some(event) = &event {
                Self::insert_event(&mut tx, &task_id, updated.try_get("event_seq")?, event).await?;
            }
            tx.commit().await?;
            Ok(true)
        };
        let applied = transaction.await.map_err(|e| from_sqlx("completing", Some(&task_id), e))?;
        if applied { Ok(true) } else { self.refusal(&task_id, Some(fence)).await }
    }

    #[tracing::instrument(level = "debug", skip_all, fields(task_id = %task_id, status = %end.status), err)]
    async fn finish_unsuccessfully(
        &self,
        task_id: &str,
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
        let task_id = storable(task_id);
        let event = event.map(|event| StoredEvent::of(&task_id, event)).transpose()?;
        let rows = match end.partial {
            Some(partial) if status == Timeout => Some(OutcomeRows::from_outcome(&task_id, partial)?),
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
                .bind(task_id.clone())
                .bind(i64::from(event.is_some()))
                .bind(rows.as_ref().map(|rows| rows.path.clone()));
            if let Some(fence) = fence {
                update = update.bind(storable(&fence.owner)).bind(fence.epoch);
            }
            let Some(updated) = update.fetch_optional(&mut *tx).await? else {
                tx.rollback().await?;
                return Ok(false);
            };
            if let Some(rows) = &rows {
                Self::insert_outcome(&mut tx, &task_id, rows).await?;
            }
            if let Some(event) = &event {
                Self::insert_event(&mut tx, &task_id, updated.try_get("event_seq")?, event).await?;
            }
            tx.commit().await?;
            Ok(true)
        };
        let applied = transaction.await.map_err(|e| from_sqlx("finishing", Some(&task_id), e))?;
        if applied { Ok(true) } else { self.refusal(&task_id, fence).await }
    }

    #[tracing::instrument(level = "debug", skip_all, fields(task_id = %task_id), err)]
    async fn save_selection(&self, task_id: &str, selection: &StoredSelection) -> Result<bool, StoreError> {
        let task_id = storable(task_id);
        let updated = sqlx::query(&format!(
            "UPDATE deliberations SET selection = $1, winner_id = $2 \
             WHERE task_id = $3 AND status = '{completed}' AND selection IS NULL RETURNING task_id",
            completed = DeliberationStatus::Completed.as_str(),
        ))
        .bind(to_json(&task_id, "selection", selection)?)
        .bind(storable(&selection.winner_id))
        .bind(task_id.clone())
        .fetch_optional(
            &mut *self
                .writer_at(Durability::PowerLoss)
                .await
                .map_err(|e| from_sqlx("saving the selection of", Some(&task_id), e))?,
        )
        .await
        .map_err(|e| from_sqlx("saving the selection of", Some(&task_id), e))?;
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

    #[tracing::instrument(level = "debug", skip_all, fields(owner = %lease.owner), err)]
    async fn renew_leases(&self, lease: &Lease, only: Option<&[String]>) -> Result<Vec<String>, StoreError> {
        if only.is_some_and(<[String]>::is_empty) {
            return Ok(Vec::new());
        }
        let mut renew = Statement::new("UPDATE deliberations SET lease_until_ms = ");
        renew
            .push_bind(lease.until_ms)
            .push(" WHERE owner = ")
            .push_bind(storable(&lease.owner))
            .push(&format!(" AND status IN ({UNFINISHED})"));
        if let Some(task_ids) = only {
            renew.push(" AND task_id IN (");
            for (i, task_id) in task_ids.iter().enumerate() {
                renew.push(if i == 0 { "" } else { ", " }).push_bind(storable(task_id));
            }
            renew.push(")");
        }
        renew.push(" RETURNING task_id");
        let fail = |e| from_sqlx("renewing leases", None, e);
        let (sql, arguments) = renew.into_parts().map_err(fail)?;
        let mut writer = self.writer_at(Durability::PowerLoss).await.map_err(fail)?;
        let renewed = sqlx::query_with(&sql, arguments).fetch_all(&mut *writer).await.map_err(fail)?;
        renewed.iter().map(|row| row.try_get::<String, _>("task_id").map_err(fail)).collect()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(owner = %lease.owner), err)]
    async fn claim_unfinished(
        &self,
        lease: &Lease,
        now_ms: i64,
        claim: &Claim<'_>,
    ) -> Result<Vec<DeliberationRecord>, StoreError> {
        let owner = storable(&lease.owner);
        // The rows `claim` allows, as a condition on `deliberations`.
        let claimable = |statement: &mut Statement<DB>| {
            statement.push(&format!("status IN ({UNFINISHED})"));
            if claim.scope == ClaimScope::Expired {
                statement
                    .push(" AND (owner IS NULL OR lease_until_ms IS NULL OR lease_until_ms < ")
                    .push_bind(now_ms)
                    .push(")");
            }
            for task_id in claim.running {
                statement.push(" AND task_id <> ").push_bind(storable(task_id));
            }
            if let Some(only) = claim.only {
                statement.push(" AND task_id = ").push_bind(storable(only));
            }
        };
        // One statement: two servers claiming at once cannot both take a row (the outer
        // condition is checked again on each row it updates). Each claim moves the row to a
        // new epoch, fencing off whoever held it before.
        let mut statement = Statement::new("UPDATE deliberations SET owner = ");
        statement
            .push_bind(owner.clone())
            .push(", lease_until_ms = ")
            .push_bind(lease.until_ms)
            .push(", lease_epoch = lease_epoch + 1 WHERE ");
        claimable(&mut statement);
        if claim.limit != usize::MAX {
            statement.push(" AND task_id IN (SELECT task_id FROM deliberations WHERE ");
            claimable(&mut statement);
            statement
                .push(" ORDER BY created_at_ms, task_id LIMIT ")
                .push_bind(i64::try_from(claim.limit).unwrap_or(i64::MAX))
                .push(")");
        }
        statement.push(&format!(" RETURNING {DELIBERATION_COLUMNS}, progress"));
        let claim = statement;
        let fail = |e| from_sqlx("claiming unfinished deliberations", None, e);
        let (sql, arguments) = claim.into_parts().map_err(fail)?;
        let claimed: Vec<DeliberationRow> = sqlx::query_as_with(&sql, arguments)
            .fetch_all(&mut *self.writer_at(Durability::PowerLoss).await.map_err(fail)?)
            .await
            .map_err(fail)?;
        let mut records =
            claimed.into_iter().map(|row| row.into_record(None)).collect::<Result<Vec<_>, _>>()?;
        records.sort_by(|a, b| {
            (a.request.created_at_ms, &a.request.task_id).cmp(&(b.request.created_at_ms, &b.request.task_id))
        });
        for record in &records {
            tracing::info!(task_id = %record.request.task_id, "claimed an unfinished deliberation");
        }
        Ok(records)
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
}
