//! Leases on unfinished deliberations: renewing the ones a server runs, claiming the ones
//! nobody holds (or whose holder stopped renewing) in one statement, so two servers never
//! both take a row.

use orchestrator_application::ports::{Claim, ClaimScope, DeliberationRecord, Lease, StoreError};
use orchestrator_domain::TaskId;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Row, Type};

use crate::error::from_sqlx;
use crate::rows::{DELIBERATION_COLUMNS, DeliberationRow};
use crate::statement::Statement;
use crate::text::storable;

use super::*;

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
    /// Moves the lease of `owner`'s unfinished rows (or of `only` among them) to `until_ms`.
    #[tracing::instrument(level = "debug", skip_all, fields(owner = %lease.owner), err)]
    pub(super) async fn renew(
        &self,
        lease: &Lease,
        only: Option<&[TaskId]>,
    ) -> Result<Vec<TaskId>, StoreError> {
        if only.is_some_and(<[TaskId]>::is_empty) {
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
                renew.push(if i == 0 { "" } else { ", " }).push_bind(task_id.to_string());
            }
            renew.push(")");
        }
        renew.push(" RETURNING task_id");
        let fail = |e| from_sqlx("renewing leases", None, e);
        let (sql, arguments) = renew.into_parts().map_err(fail)?;
        let mut writer = self.writer_at(Durability::PowerLoss).await.map_err(fail)?;
        let renewed = sqlx::query_with(&sql, arguments).fetch_all(&mut *writer).await.map_err(fail)?;
        writer.finished();
        renewed
            .iter()
            .map(|row| {
                let task_id = row.try_get::<String, _>("task_id").map_err(fail)?;
                TaskId::new(task_id.clone()).map_err(|error| StoreError::corrupt(task_id, error))
            })
            .collect()
    }

    /// Takes unfinished rows `claim` allows, moving each to a new lease epoch.
    #[tracing::instrument(level = "debug", skip_all, fields(owner = %lease.owner), err)]
    pub(super) async fn claim(
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
                statement.push(" AND task_id <> ").push_bind(task_id.to_string());
            }
            if let Some(only) = claim.only {
                statement.push(" AND task_id = ").push_bind(only.to_string());
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
}
