//! One durable pull consumer of the intake: set it up, pull its messages, hand each to the
//! use case, and settle it — ack, nak with a delay, or term with a dead letter (see
//! [`crate::verdict`] for which and why).
//!
//! Messages are handled concurrently, at most [`MAX_IN_FLIGHT`] at once, each on its own
//! task: a message that fails (or takes long) never holds up the next one. JetStream spreads
//! a durable pull consumer's messages over every replica that pulls from it, so replicas share
//! the work without knowing of each other. A message is acked only after every deliberation
//! it asks for is stored — never when the deliberation ends — and handling that outlasts a
//! third of the ack wait sends in-progress acks so it is not delivered twice meanwhile.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::consumer::pull::MessagesErrorKind;
use async_nats::jetstream::{self, AckKind};
use futures::StreamExt;
use orchestrator_application::{Caller, DeliberateCommand, Jobs};
use tokio::sync::Semaphore;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::dead_letter::DeadLetters;
use crate::error::{IntakeError, Result, chain};
use crate::plan::{PlanEvent, TaskTemplate};
use crate::verdict::{self, AckReason, Poison, Verdict};
use crate::{observability, request, streams};

/// Messages one consumer handles at once on this replica.
pub const MAX_IN_FLIGHT: usize = 8;
/// How often the pending gauge is refreshed from the consumer's info.
pub const PENDING_REFRESH: Duration = Duration::from_secs(10);
/// How long a pull request waits for messages before the client asks again.
const PULL_EXPIRES: Duration = Duration::from_secs(30);
/// How often the server confirms an open pull request, so a dead connection is noticed.
const PULL_HEARTBEAT: Duration = Duration::from_secs(5);
/// Longest wait before setting a consumer up again after a failure.
const SETUP_RETRY_MAX: Duration = Duration::from_secs(30);

/// What a consumer's messages hold.
#[derive(Debug)]
pub(crate) enum Source {
    /// Approved plans, read from the stream of that name.
    Plans { stream: String, template: TaskTemplate },
    /// Proto3-JSON `DeliberateRequest`s, read from whichever stream holds the subject.
    Requests,
}

impl Source {
    /// The commands a message asks for, every one validated before any is submitted.
    fn commands(&self, payload: &[u8]) -> Result<Vec<DeliberateCommand>, Poison> {
        match self {
            Self::Plans { template, .. } => PlanEvent::parse(payload)?.commands(template),
            Self::Requests => Ok(vec![request::command(payload)?]),
        }
    }

    async fn stream(
        &self,
        jetstream: &jetstream::Context,
        subject: &str,
    ) -> Result<jetstream::stream::Stream> {
        match self {
            Self::Plans { stream, .. } => streams::plan_stream(jetstream, stream, subject).await,
            Self::Requests => streams::request_stream(jetstream, subject).await,
        }
    }
}

/// One durable consumer and what its messages become.
#[derive(Debug)]
pub(crate) struct Lane {
    pub(crate) source: Source,
    pub(crate) subject: String,
    pub(crate) durable: String,
    pub(crate) dead_letter_subject: String,
    pub(crate) jobs: Arc<Jobs>,
    pub(crate) owner: Caller,
    pub(crate) ack_wait: Duration,
    pub(crate) max_deliver: u32,
}

/// Where a delivered message came from, for its dead letter and the logs.
#[derive(Debug)]
struct Delivery {
    subject: String,
    stream: String,
    sequence: u64,
    deliveries: u64,
}

/// How often handling sends an in-progress ack: a third of the ack wait, so two may be lost
/// before JetStream gives the message to someone else.
fn progress_interval(ack_wait: Duration) -> Duration {
    (ack_wait / 3).max(Duration::from_millis(100))
}

/// Runs `work`, calling `progress` every `every` until it is done: the in-progress acks of a
/// message whose handling takes long.
pub(crate) async fn with_progress<W, P, F>(every: Duration, mut progress: P, work: W) -> W::Output
where
    W: Future,
    P: FnMut() -> F,
    F: Future<Output = ()>,
{
    tokio::pin!(work);
    let mut ticks = tokio::time::interval_at(Instant::now() + every, every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            output = &mut work => return output,
            _ = ticks.tick() => progress().await,
        }
    }
}

impl Lane {
    /// Consumes until `stop` is cancelled, setting the consumer up again (with back-off)
    /// whenever NATS or JetStream fails. Messages in hand are settled on their own tasks in
    /// `tasks`, so they finish after this returns.
    pub(crate) async fn run(
        self: Arc<Self>,
        jetstream: jetstream::Context,
        stop: CancellationToken,
        tasks: TaskTracker,
    ) {
        let mut failures = 0_u64;
        loop {
            match self.consume(&jetstream, &stop, &tasks, &mut failures).await {
                Ok(()) => {
                    info!(consumer = %self.durable, "stopped taking messages");
                    return;
                }
                Err(error) => {
                    failures += 1;
                    let delay = verdict::backoff(failures).min(SETUP_RETRY_MAX);
                    warn!(
                        consumer = %self.durable,
                        error = %chain(&error),
                        retry_in = ?delay,
                        "the intake cannot consume; trying again"
                    );
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    /// Sets the consumer up and pulls from it until `stop` (`Ok`) or a failure (`Err`).
    async fn consume(
        self: &Arc<Self>,
        jetstream: &jetstream::Context,
        stop: &CancellationToken,
        tasks: &TaskTracker,
        failures: &mut u64,
    ) -> Result<()> {
        let pull_error =
            |source: async_nats::Error| IntakeError::Pull { durable: self.durable.clone(), source };
        let setup = async {
            let stream = self.source.stream(jetstream, &self.subject).await?;
            let consumer = streams::durable_consumer(
                &stream,
                &self.durable,
                &self.subject,
                self.ack_wait,
                self.max_deliver,
            )
            .await?;
            let stored = streams::holding(jetstream, &self.dead_letter_subject).await?.is_some();
            let messages = consumer
                .stream()
                .max_messages_per_batch(MAX_IN_FLIGHT)
                .expires(PULL_EXPIRES)
                .heartbeat(PULL_HEARTBEAT)
                .messages()
                .await
                .map_err(|e| pull_error(e.into()))?;
            let dead_letters = DeadLetters::new(&self.dead_letter_subject, jetstream, stored);
            Ok::<_, IntakeError>((stream.cached_info().config.name.clone(), consumer, messages, dead_letters))
        };
        let (stream, consumer, mut messages, dead_letters) = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            setup = setup => setup?,
        };
        *failures = 0;
        info!(consumer = %self.durable, stream, subject = %self.subject, "taking messages from the bus");
        let dead_letters = Arc::new(dead_letters);
        let _pending = self.watch_pending(consumer, stop, tasks).drop_guard();
        let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        loop {
            let permit = tokio::select! {
                () = stop.cancelled() => return Ok(()),
                permit = Arc::clone(&permits).acquire_owned() => permit,
            };
            // The semaphore is never closed; if it were, there would be nothing left to do.
            let Ok(permit) = permit else { return Ok(()) };
            let next = tokio::select! {
                () = stop.cancelled() => return Ok(()),
                next = messages.next() => next,
            };
            match next {
                Some(Ok(message)) => {
                    let lane = Arc::clone(self);
                    let dead_letters = Arc::clone(&dead_letters);
                    let span = info_span!("intake", consumer = %self.durable);
                    tasks.spawn(
                        async move {
                            lane.handle(message, &dead_letters).await;
                            drop(permit);
                        }
                        .instrument(span),
                    );
                }
                // The client pulls again by itself once the connection is back.
                Some(Err(error)) if error.kind() == MessagesErrorKind::MissingHeartbeat => {
                    debug!(consumer = %self.durable, "missed a pull heartbeat (is NATS reachable?)");
                }
                Some(Err(error)) => return Err(pull_error(error.into())),
                None => return Err(pull_error("the message stream ended".into())),
            }
        }
    }

    /// Refreshes the pending gauge every [`PENDING_REFRESH`] until the returned token (a child
    /// of `stop`) is cancelled.
    fn watch_pending(
        &self,
        consumer: PullConsumer,
        stop: &CancellationToken,
        tasks: &TaskTracker,
    ) -> CancellationToken {
        let done = stop.child_token();
        let until = done.clone();
        let durable = self.durable.clone();
        tasks.spawn(async move {
            let mut ticks = tokio::time::interval(PENDING_REFRESH);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = until.cancelled() => return,
                    _ = ticks.tick() => {}
                }
                // Raced against the stop: with NATS away a request waits for its timeout
                // (5 s), which would hold the intake's shutdown that long.
                let info = tokio::select! {
                    () = until.cancelled() => return,
                    info = consumer.get_info() => info,
                };
                match info {
                    Ok(info) => observability::pending(&durable, info.num_pending),
                    Err(error) => {
                        debug!(consumer = %durable, error = %chain(&error), "cannot read the consumer's info")
                    }
                }
            }
        });
        done
    }

    /// Handles one message and settles it.
    async fn handle(&self, message: jetstream::Message, dead_letters: &DeadLetters) {
        let delivery = match message.info() {
            Ok(info) => Delivery {
                subject: message.subject.to_string(),
                stream: info.stream.to_owned(),
                sequence: info.stream_sequence,
                deliveries: u64::try_from(info.delivered).unwrap_or(1).max(1),
            },
            Err(_) => Delivery {
                subject: message.subject.to_string(),
                stream: String::new(),
                sequence: 0,
                deliveries: 1,
            },
        };
        let progress = || async {
            if let Err(error) = message.ack_with(AckKind::Progress).await {
                debug!(error = %chain(&*error), "could not send an in-progress ack");
            }
        };
        let verdict =
            with_progress(progress_interval(self.ack_wait), progress, self.process(&message.payload))
                .await
                .on_delivery(delivery.deliveries, self.max_deliver);
        self.settle(&message, verdict, &delivery, dead_letters).await;
    }

    /// Submits what the message asks for, role by role, and says what to do with it. Poison
    /// in any part stops everything before anything is submitted; a transient failure of
    /// one part naks the whole message (the parts stored already are found again on the
    /// redelivery and change nothing).
    async fn process(&self, payload: &[u8]) -> Verdict {
        let commands = match self.source.commands(payload) {
            Ok(commands) => commands,
            Err(poison) => return Verdict::Term(poison),
        };
        let mut acked = AckReason::Duplicate;
        for command in commands {
            let task_id = command.task_id.as_deref().unwrap_or_default().to_owned();
            let story_id = command.story_id.clone();
            match self.jobs.submit(&self.owner, command).await {
                Ok(submission) => {
                    info!(
                        task_id = %submission.task_id,
                        story_id,
                        created = submission.created,
                        status = %submission.status,
                        "took a deliberation from the bus"
                    );
                    if submission.created {
                        acked = AckReason::Stored;
                    }
                }
                Err(error) => match verdict::of_submit_error(&error) {
                    Verdict::Ack(AckReason::Conflict) => {
                        warn!(task_id, error = %error, "the task id holds a different request; the stored one stands");
                        if acked == AckReason::Duplicate {
                            acked = AckReason::Conflict;
                        }
                    }
                    refused => {
                        warn!(task_id, error = %chain(&error), outcome = refused.outcome(), reason = refused.reason(), "cannot submit");
                        return refused;
                    }
                },
            }
        }
        Verdict::Ack(acked)
    }
}

mod settle;

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn long_handling_sends_in_progress_acks_before_the_ack_wait_runs_out() {
        let sent = AtomicUsize::new(0);
        let every = progress_interval(Duration::from_secs(30));
        assert_eq!(every, Duration::from_secs(10));
        let output = with_progress(
            every,
            || async {
                sent.fetch_add(1, Ordering::SeqCst);
            },
            async {
                tokio::time::sleep(Duration::from_secs(35)).await;
                "stored"
            },
        )
        .await;
        assert_eq!(output, "stored");
        assert_eq!(sent.load(Ordering::SeqCst), 3, "at 10 s, 20 s and 30 s");
    }

    #[tokio::test(start_paused = true)]
    async fn quick_handling_sends_none() {
        let sent = AtomicUsize::new(0);
        with_progress(
            Duration::from_secs(10),
            || async {
                sent.fetch_add(1, Ordering::SeqCst);
            },
            async {},
        )
        .await;
        assert_eq!(sent.load(Ordering::SeqCst), 0);
    }
}
