//! The `--json` documents: what scripts read, kept apart from the wire types so the CLI's
//! output is stable, uses the same status names as the text output, and says `null` rather
//! than a proto default where a value is absent.

use orchestrator_api_grpc::pb;
use serde::Serialize;

use super::render::{check_lines, is_final, now_ms, status_name};

#[derive(Debug, Serialize)]
pub(crate) struct UsageView {
    pub(crate) calls: i64,
    pub(crate) prompt_tokens: i64,
    pub(crate) completion_tokens: i64,
    pub(crate) latency_ms: i64,
}

impl UsageView {
    pub(crate) fn of(usage: Option<&pb::TokenUsage>) -> Self {
        let u = usage.copied().unwrap_or_default();
        Self {
            calls: u.calls,
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            latency_ms: u.latency_ms,
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct CheckView {
    pub(crate) name: String,
    /// `null`: not run.
    pub(crate) passed: Option<bool>,
    pub(crate) detail: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct ReviewView {
    pub(crate) reviewer_id: String,
    pub(crate) round: i32,
    pub(crate) score: Option<f64>,
    pub(crate) critique: String,
    pub(crate) issues: Vec<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct ResultView {
    pub(crate) rank: i32,
    pub(crate) author_id: String,
    pub(crate) model_profile: String,
    pub(crate) score: f64,
    pub(crate) check_score: f64,
    pub(crate) peer_score: Option<f64>,
    pub(crate) content: String,
    pub(crate) revisions: Vec<String>,
    pub(crate) checks: Vec<CheckView>,
    pub(crate) all_checks_passed: bool,
    pub(crate) reviews: Vec<ReviewView>,
    pub(crate) usage: UsageView,
}

impl ResultView {
    fn of(r: &pb::DeliberationResult) -> Self {
        let p = r.proposal.clone().unwrap_or_default();
        Self {
            rank: r.rank,
            author_id: p.author_id,
            model_profile: p.model_profile,
            score: r.score,
            check_score: r.check_score,
            peer_score: r.peer_score,
            content: p.content,
            revisions: p.revisions,
            checks: check_lines(r.checks.as_ref())
                .into_iter()
                .map(|c| CheckView { name: c.name, passed: c.passed, detail: c.detail })
                .collect(),
            all_checks_passed: r.checks.as_ref().is_some_and(|c| c.all_passed),
            reviews: r
                .reviews
                .iter()
                .map(|v| ReviewView {
                    reviewer_id: v.reviewer_id.clone(),
                    round: v.round,
                    score: v.score,
                    critique: v.critique.clone(),
                    issues: v.issues.clone(),
                })
                .collect(),
            usage: UsageView::of(r.usage.as_ref()),
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct FailureView {
    pub(crate) agent_id: String,
    pub(crate) phase: String,
    pub(crate) round: i32,
    pub(crate) reason: String,
}

/// A deliberation, as `get`, `watch` and `deliberate` print it.
#[derive(Debug, Serialize)]
pub(crate) struct DeliberationView {
    pub(crate) task_id: String,
    pub(crate) role: String,
    /// `pending`, `in progress`, `completed`, `failed`, `timed out`, `cancelled`, `interrupted`.
    pub(crate) status: &'static str,
    pub(crate) finished: bool,
    /// The current phase while it runs.
    pub(crate) phase: Option<String>,
    pub(crate) created_at_ms: i64,
    /// How long it took; for unfinished work, how long it has been going; `null` when it
    /// ended without running (cancelled while pending).
    pub(crate) duration_ms: Option<i64>,
    pub(crate) winner_id: Option<String>,
    pub(crate) error: Option<String>,
    pub(crate) failures: Vec<FailureView>,
    pub(crate) usage: UsageView,
    /// Ranked, best first.
    pub(crate) results: Vec<ResultView>,
}

impl DeliberationView {
    pub(crate) fn of(r: &pb::GetDeliberationResultResponse) -> Self {
        let finished = is_final(r.status());
        Self {
            task_id: r.task_id.clone(),
            role: r.role.clone(),
            status: status_name(r.status()),
            finished,
            phase: r.metadata.as_ref().and_then(|m| m.tags.get("phase")).filter(|_| !finished).cloned(),
            created_at_ms: r.created_at_ms,
            duration_ms: elapsed_or(finished, r.duration_ms, r.created_at_ms),
            winner_id: Some(r.winner_id.clone()).filter(|w| !w.is_empty()),
            error: Some(r.error_message.clone()).filter(|e| !e.is_empty()),
            failures: r
                .failures
                .iter()
                .map(|f| FailureView {
                    agent_id: f.agent_id.clone(),
                    phase: f.phase.clone(),
                    round: f.round,
                    reason: f.reason.clone(),
                })
                .collect(),
            usage: UsageView::of(r.usage.as_ref()),
            results: r.results.iter().map(ResultView::of).collect(),
        }
    }
}

fn elapsed_or(finished: bool, duration_ms: i64, created_at_ms: i64) -> Option<i64> {
    if duration_ms > 0 {
        Some(duration_ms)
    } else if finished || created_at_ms <= 0 {
        None
    } else {
        Some((now_ms() - created_at_ms).max(0))
    }
}

/// One line of `list`.
#[derive(Debug, Serialize)]
pub(crate) struct SummaryView {
    pub(crate) task_id: String,
    pub(crate) role: String,
    pub(crate) status: &'static str,
    pub(crate) created_at_ms: i64,
    /// As in [`DeliberationView::duration_ms`].
    pub(crate) duration_ms: Option<i64>,
    pub(crate) winner_id: Option<String>,
    pub(crate) task: String,
    pub(crate) error: Option<String>,
}

impl SummaryView {
    pub(crate) fn of(d: &pb::DeliberationSummary) -> Self {
        let finished = is_final(d.status());
        Self {
            task_id: d.task_id.clone(),
            role: d.role.clone(),
            status: status_name(d.status()),
            created_at_ms: d.created_at_ms,
            duration_ms: elapsed_or(finished, d.duration_ms, d.created_at_ms),
            winner_id: Some(d.winner_id.clone()).filter(|w| !w.is_empty()),
            task: d.task_description.clone(),
            error: Some(d.error_message.clone()).filter(|e| !e.is_empty()),
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct ListView {
    pub(crate) deliberations: Vec<SummaryView>,
    /// Pass to `--page-token` for the next page; `null` on the last page.
    pub(crate) next_page_token: Option<String>,
}

/// What `submit` and `cancel` did.
#[derive(Debug, Serialize)]
pub(crate) struct TaskStatusView {
    pub(crate) task_id: String,
    pub(crate) status: &'static str,
    /// `submit`: false when the task id existed and nothing new was started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) created: Option<bool>,
}

#[derive(Debug, Serialize)]
pub(crate) struct StatusView {
    pub(crate) status: String,
    pub(crate) version: String,
    pub(crate) uptime_seconds: i64,
    pub(crate) llm_configured: bool,
    pub(crate) total_deliberations: i64,
    pub(crate) failed_deliberations: i64,
    pub(crate) total_orchestrations: i64,
    pub(crate) running: i64,
    pub(crate) mean_deliberation_ms: f64,
    /// Why the server is degraded (its store unreachable); empty while serving.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) degraded_reason: String,
    /// Each model profile as the server just probed it.
    pub(crate) backends: Vec<BackendView>,
}

/// One model profile's probe, as GetStatus reports it.
#[derive(Debug, Serialize)]
pub(crate) struct BackendView {
    pub(crate) profile: String,
    pub(crate) ok: bool,
    /// Usable but busy: it took the connection and has not answered yet (`ok`, not
    /// `reachable`).
    pub(crate) busy: bool,
    pub(crate) reachable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) model_listed: Option<bool>,
    pub(crate) message: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct HealthView {
    pub(crate) addr: String,
    /// `SERVING`, `NOT_SERVING`, `UNKNOWN`, `SERVICE_UNKNOWN`, or `UNREACHABLE`.
    pub(crate) status: String,
    pub(crate) serving: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}
