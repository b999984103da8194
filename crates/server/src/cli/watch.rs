//! Following a deliberation by id until it ends.
//!
//! `watch` (and `deliberate`, after submitting) opens WatchDeliberation, which sends the stored
//! state, then each agent's step as it lands and the state after each phase, and ends with the
//! final state; closing it leaves the deliberation running. A server without that RPC
//! (UNIMPLEMENTED) is polled instead with GetDeliberationResult, which it updates after every
//! phase: quickly at first, then backing off to twice a second while nothing changes, and
//! quickly again after a change. Polling shows phases, not agents' steps. (StreamDeliberation
//! cannot follow an existing deliberation: it starts one, and cancels it when its client goes
//! away.)

use std::process::ExitCode;
use std::time::{Duration, Instant};

use orchestrator_api_grpc::pb;

use super::args::ShowArgs;
use super::progress::Progress;
use super::render::{self, is_final, now_ms};
use super::target::{Client, Target};
use super::terminal_text::{errln, out};
use super::view::DeliberationView;
use super::{Context, Interrupts};

const FIRST_POLL: Duration = Duration::from_millis(100);
const SLOWEST_POLL: Duration = Duration::from_millis(500);

/// What can be seen of a deliberation's progress; a change resets the back-off.
fn fingerprint(r: &pb::GetDeliberationResultResponse) -> (i32, Option<String>, usize, i64) {
    let phase = r.metadata.as_ref().and_then(|m| m.tags.get("phase")).cloned();
    (r.status, phase, r.failures.len(), r.usage.map_or(0, |u| u.calls))
}

/// [`follow`] until the deliberation ends (`Some`) or Ctrl-C (`None`); the progress line is
/// finished either way, so what comes next starts on a clean line.
pub(crate) async fn follow_or_interrupted(
    client: Client,
    target: &Target,
    task_id: &str,
    progress: &mut Progress,
    interrupts: &mut Interrupts,
) -> Option<anyhow::Result<pb::GetDeliberationResultResponse>> {
    let outcome = {
        let followed = follow(client, target, task_id, progress);
        tokio::pin!(followed);
        tokio::select! {
            outcome = &mut followed => Some(outcome),
            () = interrupts.next() => None,
        }
    };
    progress.finish();
    outcome
}

/// Follows `task_id` until it ends, showing its progress step by step (or phase by phase, by
/// polling, from a server without WatchDeliberation); returns its final state.
///
/// # Errors
/// An error status (NOT_FOUND for an unknown id), formatted for a person.
pub(crate) async fn follow(
    mut client: Client,
    target: &Target,
    task_id: &str,
    progress: &mut Progress,
) -> anyhow::Result<pb::GetDeliberationResultResponse> {
    let request = pb::WatchDeliberationRequest { task_id: task_id.to_owned() };
    match client.watch_deliberation(request).await {
        Ok(updates) => {
            let mut updates = updates.into_inner();
            while let Some(update) = updates.message().await.map_err(|s| target.failed(&s))? {
                if let Some(step) = &update.agent_step {
                    progress.step(step);
                }
                if let Some(state) = update.state {
                    progress.observe(&state);
                    if is_final(state.status()) {
                        return Ok(state);
                    }
                }
            }
            // Ended without a final state (its server stopped and left it to resume): poll.
        }
        Err(status) if status.code() == tonic::Code::Unimplemented => {}
        Err(status) => return Err(target.failed(&status)),
    }
    poll(client, target, task_id, progress).await
}

/// Polls `task_id` until it ends, showing its progress; returns its final state.
async fn poll(
    mut client: Client,
    target: &Target,
    task_id: &str,
    progress: &mut Progress,
) -> anyhow::Result<pb::GetDeliberationResultResponse> {
    let mut wait = FIRST_POLL;
    let mut last = None;
    loop {
        let r = client
            .get_deliberation_result(pb::GetDeliberationResultRequest { task_id: task_id.to_owned() })
            .await
            .map_err(|s| target.failed(&s))?
            .into_inner();
        progress.observe(&r);
        if is_final(r.status()) {
            return Ok(r);
        }
        let seen = fingerprint(&r);
        wait = if last.as_ref() == Some(&seen) { (wait * 3 / 2).min(SLOWEST_POLL) } else { FIRST_POLL };
        last = Some(seen);
        tokio::time::sleep(wait).await;
    }
}

/// Prints a final deliberation (text or JSON); exit 0 only when it completed.
pub(crate) fn print_final(
    r: &pb::GetDeliberationResultResponse,
    show: ShowArgs,
    context: &Context,
) -> anyhow::Result<ExitCode> {
    if context.json {
        Context::print_json(&DeliberationView::of(r))?;
    } else {
        out!("{}", render::deliberation(r, show.show));
    }
    Ok(if r.status() == pb::DeliberationStatus::Completed { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// `orchestrator watch <id>`: progress until it ends, then the result. Ctrl-C stops watching
/// and leaves the deliberation running.
///
/// # Errors
/// Connection failures and error statuses, formatted for a person.
pub(crate) async fn watch(task_id: &str, show: ShowArgs, context: &Context) -> anyhow::Result<ExitCode> {
    let mut interrupts = Interrupts::listen();
    let mut client = context.target.client().await?;
    let first = client
        .get_deliberation_result(pb::GetDeliberationResultRequest { task_id: task_id.to_owned() })
        .await
        .map_err(|s| context.target.failed(&s))?
        .into_inner();
    if is_final(first.status()) {
        return print_final(&first, show, context);
    }
    let age = u64::try_from(now_ms() - first.created_at_ms).unwrap_or(0);
    let started = Instant::now().checked_sub(Duration::from_millis(age)).unwrap_or_else(Instant::now);
    let mut progress = Progress::new(started, false);
    progress.line(&format!(
        "watching {task_id} ({}, {})",
        if first.role.is_empty() { "-" } else { &first.role },
        render::status_name(first.status())
    ));
    let outcome =
        follow_or_interrupted(client, &context.target, task_id, &mut progress, &mut interrupts).await;
    match outcome {
        Some(outcome) => print_final(&outcome?, show, context),
        None => {
            errln!("stopped watching; {task_id} keeps running. Again: orchestrator watch {task_id}");
            Ok(ExitCode::from(130))
        }
    }
}
