//! Reading and managing stored deliberations: `list`, `get`, `cancel`, and the server's
//! `status`.

use std::fmt::Write as _;

use orchestrator_api_grpc::pb;
use orchestrator_application::ports::BackendHealth;

use super::args::{ListArgs, ShowArgs};
use super::render::{age, duration_of, render_task, status_name};
use super::terminal_text::{errln, out, outln};
use super::view::{BackendView, DeliberationView, ListView, StatusView, SummaryView, TaskStatusView};
use super::{Context, render};

/// `orchestrator list`: a page of deliberations, newest first, with a header; the command for
/// the next page on stderr.
///
/// # Errors
/// Connection failures and error statuses, formatted for a person.
pub(crate) async fn list(args: ListArgs, context: &Context) -> anyhow::Result<()> {
    let page = context
        .target
        .client()
        .await?
        .list_deliberations(args.request())
        .await
        .map_err(|s| context.target.failed(&s))?
        .into_inner();
    let next = Some(page.next_page_token.clone()).filter(|t| !t.is_empty());
    if context.json {
        return Context::print_json(&ListView {
            deliberations: page.deliberations.iter().map(SummaryView::of).collect(),
            next_page_token: next,
        });
    }
    let mut out = format!(
        "{:<36}  {:<9}  {:<11}  {:<12}  {:<14}  {:<20}  {}\n",
        "TASK ID", "ROLE", "STATUS", "CREATED", "DURATION", "WINNER", "TASK"
    );
    for d in &page.deliberations {
        let _ = writeln!(
            out,
            "{:<36}  {:<9}  {:<11}  {:<12}  {:<14}  {:<20}  {}",
            d.task_id,
            d.role,
            status_name(d.status()),
            age(d.created_at_ms),
            duration_of(d.status(), d.duration_ms, d.created_at_ms),
            if d.winner_id.is_empty() { "-" } else { &d.winner_id },
            render_task(&d.task_description, 60)
        );
    }
    out!("{out}");
    if page.deliberations.is_empty() {
        errln!(
            "no deliberations{}",
            if args.status.is_some() || args.role.is_some() { " match" } else { " yet" }
        );
    }
    if let Some(token) = next {
        errln!("more: orchestrator list --limit {} --page-token {token}", args.limit);
    }
    Ok(())
}

/// `orchestrator get <id>`.
///
/// # Errors
/// Connection failures and error statuses (NOT_FOUND for an unknown id), for a person.
pub(crate) async fn get(task_id: &str, show: ShowArgs, context: &Context) -> anyhow::Result<()> {
    let r = context
        .target
        .client()
        .await?
        .get_deliberation_result(pb::GetDeliberationResultRequest { task_id: task_id.to_owned() })
        .await
        .map_err(|s| context.target.failed(&s))?
        .into_inner();
    if context.json {
        return Context::print_json(&DeliberationView::of(&r));
    }
    out!("{}", render::deliberation(&r, show.show));
    Ok(())
}

/// `orchestrator cancel <id>`.
///
/// # Errors
/// Connection failures and error statuses, formatted for a person.
pub(crate) async fn cancel(task_id: String, context: &Context) -> anyhow::Result<()> {
    let r = context
        .target
        .client()
        .await?
        .cancel_deliberation(pb::CancelDeliberationRequest { task_id })
        .await
        .map_err(|s| context.target.failed(&s))?
        .into_inner();
    if context.json {
        return Context::print_json(&TaskStatusView {
            status: status_name(r.status()),
            task_id: r.task_id,
            created: None,
        });
    }
    outln!("{}: {}", r.task_id, status_name(r.status()));
    Ok(())
}

/// `orchestrator status`: the server's version, uptime and counters.
///
/// # Errors
/// Connection failures and error statuses, formatted for a person.
pub(crate) async fn status(context: &Context) -> anyhow::Result<()> {
    let status = context
        .target
        .client()
        .await?
        .get_status(pb::GetStatusRequest { include_stats: true })
        .await
        .map_err(|s| context.target.failed(&s))?
        .into_inner();
    let stats = status.stats.clone().unwrap_or_default();
    let view = StatusView {
        status: status.status.clone(),
        version: status.version.clone(),
        uptime_seconds: status.uptime_seconds,
        llm_configured: status.llm_configured,
        total_deliberations: stats.total_deliberations,
        failed_deliberations: stats.failed_deliberations,
        total_orchestrations: stats.total_orchestrations,
        running: stats.active_councils,
        mean_deliberation_ms: stats.avg_deliberation_time_ms,
        degraded_reason: status.degraded_reason.clone(),
        backends: status
            .backends
            .iter()
            .map(|b| BackendView {
                profile: b.profile.clone(),
                ok: b.ok,
                busy: BackendHealth::verdict_of(b.ok, b.reachable) == "busy",
                reachable: b.reachable,
                model_listed: b.model_listed,
                message: b.message.clone(),
            })
            .collect(),
    };
    if context.json {
        return Context::print_json(&view);
    }
    outln!(
        "status: {} (version {}, up {})",
        view.status,
        view.version,
        render::duration(view.uptime_seconds.saturating_mul(1000))
    );
    outln!(
        "llm configured: {}",
        if view.llm_configured { "yes" } else { "no: deliberations fail until a profile is set" }
    );
    outln!(
        "deliberations: {} ({} failed), orchestrations: {}, running: {}, mean {}",
        view.total_deliberations,
        view.failed_deliberations,
        view.total_orchestrations,
        view.running,
        render::duration(view.mean_deliberation_ms as i64)
    );
    if !view.degraded_reason.is_empty() {
        outln!("degraded: {}", view.degraded_reason);
    }
    for backend in &view.backends {
        outln!(
            "profile {:<12} {:<7} {}",
            backend.profile,
            BackendHealth::verdict_of(backend.ok, backend.reachable),
            backend.message
        );
    }
    Ok(())
}
