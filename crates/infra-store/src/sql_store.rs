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
//! Every text bound to a statement goes through [`storable`] (see `text.rs`), task ids aside:
//! their rule admits nothing it would change.

use std::sync::Arc;
use std::time::Duration;

use orchestrator_domain::DeliberationStatus;
use sqlx::{Database, Executor, IntoArguments, Pool};

use crate::file_lock::ExclusiveFile;
use crate::writer::{Writer, WriterGuard};

/// Rows per multi-row `INSERT`, far below either database's bind-parameter limit.
const INSERT_CHUNK: usize = 100;

/// The statuses of deliberations that may still run, as an SQL list.
const UNFINISHED: &str = "'PENDING', 'IN_PROGRESS'";

/// A [`DeliberationStore`](orchestrator_application::ports::DeliberationStore) over an sqlx
/// connection pool; see [`crate::SqliteStore`] and
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
    /// How the single writer connection is set to commit at each [`Durability`] (SQLite);
    /// `None`: the writer picks a connection opened at the level asked for (PostgreSQL: see
    /// `writer.rs`), or there is one level only (an in-memory database).
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
    /// agent calls again, never a result — and a deliberation nobody was told of yet.
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
        let mut connection = self.writer.acquire_at(durability).await?;
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

mod deliberation_store;
mod leases;
mod statements;

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
    fn completions_are_one_statement_on_postgresql_only() {
        // A renamed dialect would quietly fall back to the transaction; this says so.
        assert!(statements::writes_in_one_statement::<sqlx::Postgres>());
        assert!(!statements::writes_in_one_statement::<sqlx::Sqlite>());
    }
}
