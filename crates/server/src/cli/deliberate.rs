//! `deliberate` and `submit`.
//!
//! `deliberate` submits (SubmitDeliberation, with a task id chosen here), prints the id at
//! once, then follows the stored deliberation (see [`super::watch`]) and prints its result.
//! Submitting rather than calling StreamDeliberation is what lets Ctrl-C leave the work running:
//! a stream's deliberation is cancelled when its client goes away. On Ctrl-C a person at a
//! terminal is asked whether to cancel it; without a terminal on stdin nothing is asked and it
//! keeps running. Either way the commands to follow it are printed.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Instant;

use orchestrator_api_grpc::pb;

use super::args::TaskArgs;
use super::progress::Progress;
use super::render::status_name;
use super::seating;
use super::target::{Client, Target};
use super::terminal_text::{err, errln, outln};
use super::view::TaskStatusView;
use super::watch::{follow_or_interrupted, print_final};
use super::{Context, Interrupts};

/// Exit status after Ctrl-C, as shells report a command ended by SIGINT.
const INTERRUPTED: u8 = 130;

async fn submit_request(
    client: &mut Client,
    args: &TaskArgs,
    target: &Target,
) -> anyhow::Result<pb::SubmitDeliberationResponse> {
    let request = args.request(args.task_id())?;
    client.submit_deliberation(request).await.map(tonic::Response::into_inner).map_err(|s| target.failed(&s))
}

/// `orchestrator submit`: starts it in the background and prints its id — only the id on
/// stdout, so `id=$(orchestrator submit …)` works; what happened to it goes to stderr.
///
/// # Errors
/// Connection failures and error statuses, formatted for a person.
pub(crate) async fn submit(args: TaskArgs, context: &Context) -> anyhow::Result<()> {
    let mut client = context.target.client().await?;
    let submitted = submit_request(&mut client, &args, &context.target).await?;
    if context.json {
        return Context::print_json(&TaskStatusView {
            status: status_name(submitted.status()),
            task_id: submitted.task_id,
            created: Some(submitted.created),
        });
    }
    let what = if submitted.created { "submitted" } else { "already exists" };
    outln!("{}", submitted.task_id);
    errln!("{} {what} ({})", submitted.task_id, status_name(submitted.status()));
    errln!("follow it: orchestrator watch {id}   result: orchestrator get {id}", id = submitted.task_id);
    Ok(())
}

/// `orchestrator deliberate`: submit, print the id, follow, print the result.
///
/// # Errors
/// Connection failures and error statuses, formatted for a person.
pub(crate) async fn deliberate(args: TaskArgs, context: &Context) -> anyhow::Result<ExitCode> {
    let mut interrupts = Interrupts::listen();
    let mut client = context.target.client().await?;
    let started = Instant::now();
    let seating = seating::predict(&mut client, &args).await;
    let submitted = submit_request(&mut client, &args, &context.target).await?;
    let task_id = submitted.task_id.clone();
    let role = args.role.to_ascii_uppercase();
    let again = if submitted.created { "" } else { ", already submitted before: following it" };
    errln!("task {task_id} ({role}, {}, {}{again})", seating.describe(), seating.rounds(args.rounds));
    if let Some(warning) = seating.warning(&role) {
        errln!("{warning}");
    }

    let mut progress = Progress::new(started, args.quiet);
    let outcome =
        follow_or_interrupted(client.clone(), &context.target, &task_id, &mut progress, &mut interrupts)
            .await;
    match outcome {
        Some(outcome) => {
            let outcome = outcome?;
            if !args.quiet {
                for line in seating::seated(&outcome, seating.expected()) {
                    errln!("{line}");
                }
            }
            print_final(&outcome, args.show, context)
        }
        None => interrupted(&mut client, &task_id, &mut interrupts, context).await,
    }
}

/// After Ctrl-C: cancel or leave running (asked only at a terminal), then say how to follow.
async fn interrupted(
    client: &mut Client,
    task_id: &str,
    interrupts: &mut Interrupts,
    context: &Context,
) -> anyhow::Result<ExitCode> {
    let cancel = if std::io::stdin().is_terminal() {
        ask_cancel(interrupts).await
    } else {
        errln!("\ninterrupted; stdin is not a terminal, so {task_id} is left running");
        false
    };
    let status = if cancel {
        let cancelled = client
            .cancel_deliberation(pb::CancelDeliberationRequest { task_id: task_id.to_owned() })
            .await
            .map_err(|s| context.target.failed(&s))?
            .into_inner();
        errln!("{task_id}: {}", status_name(cancelled.status()));
        cancelled.status()
    } else {
        errln!("{task_id} keeps running on the server");
        pb::DeliberationStatus::InProgress
    };
    if !cancel {
        errln!("follow it:  orchestrator watch {task_id}");
    }
    errln!("its result: orchestrator get {task_id}");
    if context.json {
        Context::print_json(&TaskStatusView {
            task_id: task_id.to_owned(),
            status: status_name(status),
            created: None,
        })?;
    }
    Ok(ExitCode::from(INTERRUPTED))
}

/// Asks on the terminal; anything but `c`/`cancel` (or a second Ctrl-C) leaves it running.
async fn ask_cancel(interrupts: &mut Interrupts) -> bool {
    err!("\ncancel the deliberation or leave it running? [c/L] ");
    // A plain thread, not the blocking pool: the runtime waits for the pool on exit, and a
    // read left unanswered after a second Ctrl-C must not keep the process alive.
    let (tx, answer) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = tx.send(std::io::stdin().read_line(&mut line).map(|_| line));
    });
    tokio::select! {
        answer = answer => matches!(
            answer.ok().and_then(Result::ok).map(|a| a.trim().to_ascii_lowercase()).as_deref(),
            Some("c" | "cancel")
        ),
        () = interrupts.next() => {
            errln!();
            false
        }
    }
}
