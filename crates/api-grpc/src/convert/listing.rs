//! Stored deliberations on the wire: ListDeliberations paging and filters, a stored record, a
//! submission, and the one mapping of a status to its wire value.

use std::collections::HashMap;

use orchestrator_application::ports::{DeliberationRecord, ListQuery};
use orchestrator_application::{ApplicationError, Submission};
use orchestrator_domain::{DeliberationStatus, DomainError, Role, TokenUsage, excerpt};

use super::results::{council_tag, failure, result, total_usage};
use super::{invalid, narrow};
use crate::pb;

/// Page of ListDeliberations when the request sets none; the largest is the store's
/// [`ListQuery::MAX_LIMIT`].
pub const DEFAULT_PAGE_SIZE: u32 = 20;

/// Status on the wire.
pub fn wire_status(s: DeliberationStatus) -> pb::DeliberationStatus {
    match s {
        DeliberationStatus::Pending => pb::DeliberationStatus::Pending,
        DeliberationStatus::InProgress => pb::DeliberationStatus::InProgress,
        DeliberationStatus::Completed => pb::DeliberationStatus::Completed,
        DeliberationStatus::Failed => pb::DeliberationStatus::Failed,
        DeliberationStatus::Timeout => pb::DeliberationStatus::Timeout,
        DeliberationStatus::Cancelled => pb::DeliberationStatus::Cancelled,
        DeliberationStatus::Interrupted => pb::DeliberationStatus::Interrupted,
    }
}

fn status_filter(raw: i32) -> Result<Option<DeliberationStatus>, ApplicationError> {
    let wire = pb::DeliberationStatus::try_from(raw)
        .map_err(|_| invalid("status_filter", format!("unknown status value {raw}")))?;
    Ok(DeliberationStatus::ALL.into_iter().find(|s| wire_status(*s) == wire))
}

/// ListDeliberations paging and filters.
///
/// # Errors
/// Field `page_size`, `role_filter` or `status_filter` when invalid.
pub fn list_query(r: pb::ListDeliberationsRequest) -> Result<ListQuery, ApplicationError> {
    let limit = match r.page_size {
        0 => DEFAULT_PAGE_SIZE,
        n if n < 0 => return Err(invalid("page_size", format!("must not be negative, got {n}"))),
        n => (n as u32).min(ListQuery::MAX_LIMIT),
    };
    let role = match r.role_filter.trim() {
        "" => None,
        raw => Some(Role::parse(raw).map_err(|e| match e {
            DomainError::Invalid { reason, .. } => invalid("role_filter", reason),
            other => other.into(),
        })?),
    };
    let bound = |v: i64| (v > 0).then_some(v);
    Ok(ListQuery {
        role,
        status: status_filter(r.status_filter)?,
        created_after_ms: bound(r.created_after_ms),
        created_before_ms: bound(r.created_before_ms),
        principal: None,
        limit,
        cursor: (!r.page_token.is_empty()).then_some(r.page_token),
    })
}

/// A stored deliberation as a GetDeliberationResult response.
pub fn record_response(record: &DeliberationRecord, now_ms: i64) -> pb::GetDeliberationResultResponse {
    let (results, failures, usage_total, calls_saved) = match (&record.outcome, &record.progress) {
        (Some(outcome), _) => (
            outcome.results.iter().map(result).collect(),
            outcome.failures.clone(),
            outcome.usage,
            outcome.calls_saved,
        ),
        (None, Some(progress)) => (Vec::new(), progress.failures().to_vec(), progress.total_usage(), 0),
        (None, None) => (Vec::new(), Vec::new(), TokenUsage::default(), 0),
    };
    let mut tags = HashMap::from([
        ("role".to_owned(), record.request.role.to_string()),
        ("num_agents".to_owned(), record.request.num_agents.to_string()),
        ("rounds".to_owned(), record.request.rounds.to_string()),
        ("council_id".to_owned(), council_tag(record.council_id())),
    ]);
    // A completed deliberation's last saved phase is the one before its completion (which
    // stores the outcome, not the finished aggregate).
    let phase = match (record.status, &record.progress) {
        (DeliberationStatus::Completed, _) => Some(orchestrator_domain::Phase::Completed),
        (_, progress) => progress.as_ref().map(orchestrator_domain::Deliberation::phase),
    };
    if let Some(phase) = phase {
        tags.insert("phase".to_owned(), phase.to_string());
    }
    pb::GetDeliberationResultResponse {
        task_id: record.request.task_id.to_string(),
        status: wire_status(record.status).into(),
        results,
        winner_id: record.winner_id.clone().unwrap_or_default(),
        duration_ms: record.duration_ms.unwrap_or_default(),
        error_message: record.error.clone().unwrap_or_default(),
        metadata: Some(pb::OrchestratorMetadata {
            orchestrator_version: env!("CARGO_PKG_VERSION").to_owned(),
            timestamp_ms: now_ms,
            execution_id: record.request.task_id.to_string(),
            tags,
        }),
        failures: failures.iter().map(failure).collect(),
        usage: Some(total_usage(&usage_total, calls_saved)),
        role: record.request.role.to_string(),
        created_at_ms: record.request.created_at_ms,
        partial: record.status == DeliberationStatus::Timeout && record.outcome.is_some(),
        selection_method: record.selection.as_ref().map(|s| s.method.clone()).unwrap_or_default(),
        selection_rationale: record.selection.as_ref().map(|s| s.rationale.clone()).unwrap_or_default(),
        path: record.outcome.as_ref().map(|o| o.path.as_str().to_owned()).unwrap_or_default(),
        reviews: narrow(record.outcome.as_ref().map_or(0, |o| o.review_counts().0)),
        graded_reviews: narrow(record.outcome.as_ref().map_or(0, |o| o.review_counts().1)),
    }
}

/// One line of ListDeliberations.
pub fn summary(record: &DeliberationRecord) -> pb::DeliberationSummary {
    pb::DeliberationSummary {
        task_id: record.request.task_id.to_string(),
        role: record.request.role.to_string(),
        status: wire_status(record.status).into(),
        created_at_ms: record.request.created_at_ms,
        duration_ms: record.duration_ms.unwrap_or_default(),
        winner_id: record.winner_id.clone().unwrap_or_default(),
        task_description: excerpt(record.request.task.description(), 200),
        error_message: record.error.clone().unwrap_or_default(),
    }
}

/// A submission as a SubmitDeliberation response.
pub fn submission(s: &Submission) -> pb::SubmitDeliberationResponse {
    pb::SubmitDeliberationResponse {
        task_id: s.task_id.to_string(),
        status: wire_status(s.status).into(),
        created: s.created,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator_domain::Role;

    #[test]
    fn list_query_defaults_clamps_and_validates() {
        let q = list_query(pb::ListDeliberationsRequest::default()).unwrap();
        assert_eq!((q.limit, q.role, q.status, q.cursor), (20, None, None, None));
        let q = list_query(pb::ListDeliberationsRequest {
            page_size: 500,
            role_filter: "qa".into(),
            status_filter: pb::DeliberationStatus::Completed.into(),
            created_after_ms: 10,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            (q.limit, q.role, q.status, q.created_after_ms),
            (100, Some(Role::Qa), Some(DeliberationStatus::Completed), Some(10))
        );
        let err =
            list_query(pb::ListDeliberationsRequest { page_size: -1, ..Default::default() }).unwrap_err();
        assert_eq!(err.to_string(), "page_size: must not be negative, got -1");
        let err =
            list_query(pb::ListDeliberationsRequest { role_filter: "CEO".into(), ..Default::default() })
                .unwrap_err();
        assert!(err.to_string().starts_with("role_filter: unknown role \"CEO\""), "{err}");
        let err =
            list_query(pb::ListDeliberationsRequest { status_filter: 42, ..Default::default() }).unwrap_err();
        assert_eq!(err.to_string(), "status_filter: unknown status value 42");
    }

    #[test]
    fn every_status_has_its_own_wire_value() {
        let wire: std::collections::BTreeSet<i32> =
            DeliberationStatus::ALL.iter().map(|s| wire_status(*s) as i32).collect();
        assert_eq!(wire.len(), DeliberationStatus::ALL.len());
        assert!(!wire.contains(&0), "UNKNOWN is never sent");
    }
}
