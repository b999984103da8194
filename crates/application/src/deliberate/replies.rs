//! How the calls of one phase are awaited and their replies recorded: concurrently, each
//! agent's step reported as it lands, the replies recorded in seat order, a failed call
//! dropping its agent with the reason.

use futures::stream::{FuturesUnordered, StreamExt};
use orchestrator_domain::{Agent, Deliberation, Phase, TaskId, TokenUsage};
use tokio::time::Instant;
use tracing::debug;

use crate::error::Result;
use crate::ports::{AgentError, AgentStep, ProgressObserver, StepKind};

/// Where a round reports each agent's step: the task id and the observer.
pub(super) type Report<'a> = (&'a TaskId, &'a dyn ProgressObserver);

/// One agent's call of a phase: the agent, its reply or error, and what it cost.
pub(super) type Reply<T> = (Agent, std::result::Result<T, AgentError>, TokenUsage);

/// Longest excerpt of a dropped agent's error in its step.
const REASON_EXCERPT_CHARS: usize = 160;

/// Awaits every call of a phase at once and reports each agent's step as its call lands;
/// returns the replies in the order of `calls`, so the deliberation records them the same
/// way however the calls raced.
pub(super) async fn gather<T, F>(
    calls: impl IntoIterator<Item = F>,
    phase: Phase,
    (task_id, observer): Report<'_>,
    landed: impl Fn(&T) -> StepKind,
) -> Vec<Reply<T>>
where
    F: Future<Output = Reply<T>>,
{
    let mut pending: FuturesUnordered<_> =
        calls.into_iter().enumerate().map(|(i, call)| async move { (i, call.await) }).collect();
    let mut replies = Vec::with_capacity(pending.len());
    while let Some((i, (agent, result, usage))) = pending.next().await {
        let kind = match &result {
            Ok(reply) => landed(reply),
            Err(error) => StepKind::Dropped {
                reason: orchestrator_domain::excerpt(&error.to_string(), REASON_EXCERPT_CHARS),
            },
        };
        let step = AgentStep { agent_id: agent.id.clone(), phase, kind, tokens: usage.total_tokens() };
        observer.agent_step(task_id, &step).await;
        replies.push((i, (agent, result, usage)));
    }
    replies.sort_by_key(|(i, _)| *i);
    replies.into_iter().map(|(_, reply)| reply).collect()
}

/// Records the replies of one phase: every call's usage, then each reply, or the failure that
/// drops its agent.
pub(super) fn record_replies<T>(
    d: &mut Deliberation,
    replies: Vec<Reply<T>>,
    mut record: impl FnMut(&mut Deliberation, &Agent, T) -> orchestrator_domain::Result<()>,
) -> Result<()> {
    for (agent, result, usage) in replies {
        d.record_usage(&agent.id, usage);
        match result {
            Ok(reply) => record(d, &agent, reply)?,
            Err(error) => fail(d, &agent, &error)?,
        }
    }
    Ok(())
}

fn fail(d: &mut Deliberation, agent: &Agent, error: &AgentError) -> Result<()> {
    debug!(agent = %agent.id, phase = %d.phase(), %error, "agent dropped");
    match error.misconfigured_profile() {
        Some(profile) => d.record_misconfiguration(&agent.id, profile, error.to_string())?,
        None => d.record_failure(&agent.id, error.to_string())?,
    }
    Ok(())
}

/// Awaits a backend call and returns its result with the usage it cost: the reply's tokens,
/// one call, and the time waited (failed calls cost a call and their time too).
pub(super) async fn timed<T>(
    call: impl Future<Output = std::result::Result<T, AgentError>>,
    tokens: impl Fn(&T) -> TokenUsage,
) -> (std::result::Result<T, AgentError>, TokenUsage) {
    let started = Instant::now();
    let result = call.await;
    let mut usage = result.as_ref().map(&tokens).unwrap_or_default();
    usage.calls = 1;
    usage.latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    (result, usage)
}
