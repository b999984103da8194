//! The agent registry on both databases: [`CouncilStore`] over the same pools as the
//! deliberations, so agent records are computed in SQL from the stored results.
//!
//! Registry changes are serialised by the database: each runs in one write transaction that
//! first updates the single row of `registry_version` — PostgreSQL then holds that row's lock
//! until commit, SQLite its write lock — reads the registry, lets the domain apply the change
//! and writes the result back. Two servers changing the registry at once therefore apply one
//! change after the other, each to the registry the other left, and the domain's rules (one
//! council per role, agent ids unique service-wide) hold across them. The registry is small
//! (five roles, sixteen agents each at most), so a change rewrites it whole.

use orchestrator_application::ports::{
    CouncilRecord, CouncilStore, NewDeliberation, RegistryChange, RegistryRecords, StoreError,
};
use orchestrator_domain::{AgentId, CouncilId, DeliberationStatus, DomainError, Registry, TokenUsage};
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Type};

use crate::error::{Fault, corrupt_registry, from_sqlx};
use crate::registry_rows::{
    AgentTotalsRow, COUNCIL_COLUMNS, CouncilRow, CouncilStatusRow, CountRow, MEMBER_COLUMNS, MemberRow,
    RequestRow, ScoreSumRow, from_rows, to_rows,
};
use crate::sql_store::{Durability, SqlStore};
use crate::statement::Statement;

/// Rows per multi-row `INSERT`; a registry holds at most 80 agents.
const INSERT_CHUNK: usize = 100;

/// Standing-council deliberations, optionally created at or after `$1`, as a `WHERE` clause on
/// the `deliberations` table aliased `d`.
fn seated(since_ms: Option<i64>) -> &'static str {
    match since_ms {
        Some(_) => "d.council_id IS NOT NULL AND d.created_at_ms >= $1",
        None => "d.council_id IS NOT NULL",
    }
}

/// Usage columns summed as integers (PostgreSQL sums BIGINT as NUMERIC otherwise).
const USAGE_SUMS: &str = "CAST(SUM(p.prompt_tokens) AS BIGINT) AS prompt_tokens, \
     CAST(SUM(p.completion_tokens) AS BIGINT) AS completion_tokens, \
     CAST(SUM(p.calls) AS BIGINT) AS calls, CAST(SUM(p.latency_ms) AS BIGINT) AS latency_ms";

fn usage(prompt: i64, completion: i64, calls: i64, latency: i64) -> TokenUsage {
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    TokenUsage {
        prompt_tokens: count(prompt),
        completion_tokens: count(completion),
        calls: count(calls),
        latency_ms: count(latency),
    }
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn agent_id(value: &str) -> Result<AgentId, StoreError> {
    AgentId::new(value)
        .map_err(|source| corrupt_registry(&format!("agent {value}"), invalid("agent_id", source)))
}

fn council_id(value: &str) -> Result<CouncilId, StoreError> {
    CouncilId::new(value)
        .map_err(|source| corrupt_registry(&format!("council {value}"), invalid("council_id", source)))
}

fn invalid(column: &'static str, source: DomainError) -> Fault {
    Fault::Invalid { column, source }
}

// The bounds repeat those of the `DeliberationStore` impl; see the note there on why they
// are not a named trait.
#[async_trait::async_trait]
impl<DB> CouncilStore for SqlStore<DB>
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
    #[tracing::instrument(level = "debug", skip_all, err)]
    async fn registry(&self) -> Result<Registry, StoreError> {
        let fail = |e| from_sqlx("reading the council registry", None, e);
        let mut tx = self.reader().begin().await.map_err(fail)?;
        let (councils, members) = registry_rows(&mut tx).await.map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        from_rows(councils, members)
    }

    #[tracing::instrument(level = "debug", skip_all, err)]
    async fn update(
        &self,
        change: &mut RegistryChange<'_>,
    ) -> Result<Result<Registry, DomainError>, StoreError> {
        let fail = |e| from_sqlx("changing the council registry", None, e);
        let mut writer = self.writer_at(Durability::PowerLoss).await.map_err(fail)?;
        let mut tx = sqlx::Connection::begin(&mut *writer).await.map_err(fail)?;
        // First, so the transaction holds the registry's write lock before it reads.
        sqlx::query("UPDATE registry_version SET version = version + 1 WHERE id = 1")
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        let (councils, members) = registry_rows(&mut tx).await.map_err(fail)?;
        let stored = from_rows(councils, members)?;
        let mut changed = stored.clone();
        if let Err(refused) = change(&mut changed) {
            tx.rollback().await.map_err(fail)?;
            return Ok(Err(refused));
        }
        if changed == stored {
            tx.rollback().await.map_err(fail)?;
            return Ok(Ok(changed));
        }
        let (councils, members) = to_rows(&changed)?;
        let write = async {
            sqlx::query("DELETE FROM council_agents").execute(&mut *tx).await?;
            sqlx::query("DELETE FROM councils").execute(&mut *tx).await?;
            for chunk in councils.chunks(INSERT_CHUNK) {
                let mut insert = Statement::new(format!("INSERT INTO councils ({COUNCIL_COLUMNS}) VALUES "));
                insert.push_values(chunk, |values, c| {
                    values
                        .push_bind(c.council_id.clone())
                        .push_bind(c.role.clone())
                        .push_bind(c.rounds)
                        .push_bind(c.created_at_ms);
                });
                let (sql, arguments) = insert.into_parts()?;
                sqlx::query_with(&sql, arguments).execute(&mut *tx).await?;
            }
            for chunk in members.chunks(INSERT_CHUNK) {
                let mut insert =
                    Statement::new(format!("INSERT INTO council_agents ({MEMBER_COLUMNS}) VALUES "));
                insert.push_values(chunk, |values, m| {
                    values
                        .push_bind(m.agent_id.clone())
                        .push_bind(m.council_id.clone())
                        .push_bind(m.seat)
                        .push_bind(m.role.clone())
                        .push_bind(m.profile.clone())
                        .push_bind(m.persona.clone())
                        .push_bind(m.capabilities.clone())
                        .push_bind(m.metadata.clone())
                        .push_bind(m.status.clone())
                        .push_bind(m.registered_at_ms);
                });
                let (sql, arguments) = insert.into_parts()?;
                sqlx::query_with(&sql, arguments).execute(&mut *tx).await?;
            }
            Ok::<_, sqlx::Error>(())
        };
        write.await.map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        Ok(Ok(changed))
    }

    #[tracing::instrument(level = "debug", skip_all, err)]
    async fn records(&self, since_ms: Option<i64>) -> Result<RegistryRecords, StoreError> {
        let fail = |e| from_sqlx("computing agent records", None, e);
        let completed = DeliberationStatus::Completed.as_str();
        let filter = seated(since_ms);
        let mut records = RegistryRecords::default();
        // Agents dropped from completed deliberations, counted per `column` (an agent or a council).
        let failures_by = async |column: &str| -> Result<Vec<CountRow>, StoreError> {
            let sql = format!(
                "SELECT {column} AS id, COUNT(*) AS n \
                 FROM agent_failures f JOIN deliberations d ON d.task_id = f.task_id \
                 WHERE {filter} AND d.status = '{completed}' GROUP BY {column}"
            );
            with_since(sqlx::query_as(&sql), since_ms).fetch_all(self.reader()).await.map_err(fail)
        };

        let totals: Vec<AgentTotalsRow> = with_since(
            sqlx::query_as(&format!(
                "SELECT p.agent_id AS agent_id, COUNT(*) AS ranked, \
                 CAST(SUM(CASE WHEN p.rank = 1 THEN 1 ELSE 0 END) AS BIGINT) AS wins, \
                 SUM(p.score) AS score_sum, {USAGE_SUMS} \
                 FROM proposals p JOIN deliberations d ON d.task_id = p.task_id \
                 WHERE {filter} AND d.status = '{completed}' GROUP BY p.agent_id"
            )),
            since_ms,
        )
        .fetch_all(self.reader())
        .await
        .map_err(fail)?;
        for row in totals {
            let record = records.agents.entry(agent_id(&row.agent_id)?).or_default();
            record.ranked = count(row.ranked);
            record.wins = count(row.wins);
            record.score_sum = row.score_sum;
            let u = row.usage;
            record.usage = usage(u.prompt_tokens, u.completion_tokens, u.calls, u.latency_ms);
        }

        let failures = failures_by("f.agent_id").await?;
        for row in failures {
            records.agents.entry(agent_id(&row.id)?).or_default().failures = count(row.n);
        }

        let statuses: Vec<CouncilStatusRow> = with_since(
            sqlx::query_as(&format!(
                "SELECT d.council_id AS council_id, d.status AS status, COUNT(*) AS n, \
                 CAST(SUM(d.prompt_tokens) AS BIGINT) AS prompt_tokens, \
                 CAST(SUM(d.completion_tokens) AS BIGINT) AS completion_tokens, \
                 CAST(SUM(d.calls) AS BIGINT) AS calls, CAST(SUM(d.latency_ms) AS BIGINT) AS latency_ms \
                 FROM deliberations d WHERE {filter} GROUP BY d.council_id, d.status"
            )),
            since_ms,
        )
        .fetch_all(self.reader())
        .await
        .map_err(fail)?;
        for row in statuses {
            let status = DeliberationStatus::parse(&row.status).map_err(|source| {
                corrupt_registry(&format!("council {}", row.council_id), invalid("status", source))
            })?;
            let record: &mut CouncilRecord =
                records.councils.entry(council_id(&row.council_id)?).or_default();
            match status {
                DeliberationStatus::Completed => {
                    record.completed = count(row.n);
                    record.usage = usage(
                        row.prompt_tokens.unwrap_or(0),
                        row.completion_tokens.unwrap_or(0),
                        row.calls.unwrap_or(0),
                        row.latency_ms.unwrap_or(0),
                    );
                }
                DeliberationStatus::Failed | DeliberationStatus::Timeout => {
                    record.unsuccessful += count(row.n)
                }
                _ => {}
            }
        }

        let winners: Vec<ScoreSumRow> = with_since(
            sqlx::query_as(&format!(
                "SELECT d.council_id AS id, SUM(p.score) AS score_sum \
                 FROM proposals p JOIN deliberations d ON d.task_id = p.task_id \
                 WHERE {filter} AND d.status = '{completed}' AND p.rank = 1 GROUP BY d.council_id"
            )),
            since_ms,
        )
        .fetch_all(self.reader())
        .await
        .map_err(fail)?;
        for row in winners {
            records.councils.entry(council_id(&row.id)?).or_default().winner_score_sum = row.score_sum;
        }

        let dropped = failures_by("d.council_id").await?;
        for row in dropped {
            records.councils.entry(council_id(&row.id)?).or_default().agent_failures = count(row.n);
        }

        // Who sits in a running deliberation now, whatever `since_ms` says.
        let running: Vec<RequestRow> = sqlx::query_as(&format!(
            "SELECT task_id, request FROM deliberations \
             WHERE council_id IS NOT NULL AND status = '{in_progress}'",
            in_progress = DeliberationStatus::InProgress.as_str(),
        ))
        .fetch_all(self.reader())
        .await
        .map_err(fail)?;
        for row in running {
            let request: NewDeliberation = serde_json::from_str(&row.request).map_err(|source| {
                StoreError::corrupt(row.task_id.clone(), Fault::Json { column: "request", source })
            })?;
            if let Some(seats) = request.seats {
                records.busy.extend(seats.council.agents().iter().map(|a| a.id.clone()));
            }
        }
        Ok(records)
    }
}

/// Every council and every seat of the registry, read in one transaction (`tx`): a change
/// committing between the two reads cannot pair the councils of one registry with the agents
/// of another.
async fn registry_rows<DB>(
    tx: &mut sqlx::Transaction<'_, DB>,
) -> Result<(Vec<CouncilRow>, Vec<MemberRow>), sqlx::Error>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'r> CouncilRow: sqlx::FromRow<'r, DB::Row>,
    for<'r> MemberRow: sqlx::FromRow<'r, DB::Row>,
{
    let councils =
        sqlx::query_as(&format!("SELECT {COUNCIL_COLUMNS} FROM councils")).fetch_all(&mut **tx).await?;
    let members =
        sqlx::query_as(&format!("SELECT {MEMBER_COLUMNS} FROM council_agents")).fetch_all(&mut **tx).await?;
    Ok((councils, members))
}

/// Binds `$1` to `since_ms` when the query filters by it.
fn with_since<'q, DB, O>(
    query: sqlx::query::QueryAs<'q, DB, O, DB::Arguments<'q>>,
    since_ms: Option<i64>,
) -> sqlx::query::QueryAs<'q, DB, O, DB::Arguments<'q>>
where
    DB: Database,
    i64: Encode<'q, DB> + Type<DB>,
{
    match since_ms {
        Some(since) => query.bind(since),
        None => query,
    }
}
