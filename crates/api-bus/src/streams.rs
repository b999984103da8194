//! The streams and durable consumers the intake reads from, set up without disturbing what
//! others own: a stream is created only when absent, never updated when present (another
//! service may own it with retention of its own); the durable consumers are the intake's, so
//! their delivery limits follow the settings.

use std::time::Duration;

use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::context::{GetStreamByNameErrorKind, GetStreamErrorKind};
use async_nats::jetstream::{self, stream};
use tracing::{info, warn};

use crate::error::{IntakeError, Result, chain};
use crate::settings::PLAN_STREAM_SUBJECTS;
use crate::subjects::covers;

/// The stream created for bus requests when no stream holds their subject.
pub const REQUEST_STREAM: &str = "ORCHESTRATOR_REQUESTS";

fn stream_error(stream: &str, action: &'static str) -> impl FnOnce(async_nats::Error) -> IntakeError {
    let stream = stream.to_owned();
    move |source| IntakeError::Stream { stream, action, source }
}

/// The stream named `name`, created with `subjects` when absent; never altered when present.
///
/// # Errors
/// [`IntakeError::Stream`] when it cannot be read or created (JetStream unreachable, or the
/// subjects overlap another stream's).
pub(crate) async fn present_or_created(
    jetstream: &jetstream::Context,
    name: &str,
    subjects: Vec<String>,
) -> Result<stream::Stream> {
    match jetstream.get_stream(name).await {
        Ok(stream) => Ok(stream),
        Err(error) if matches!(error.kind(), GetStreamErrorKind::JetStream(e) if e.error_code() == ErrorCode::STREAM_NOT_FOUND) =>
        {
            let config =
                stream::Config { name: name.to_owned(), subjects: subjects.clone(), ..Default::default() };
            let stream =
                jetstream.create_stream(config).await.map_err(|e| stream_error(name, "create")(e.into()))?;
            info!(stream = name, ?subjects, "created the stream (it was absent)");
            Ok(stream)
        }
        Err(error) => Err(stream_error(name, "read")(error.into())),
    }
}

/// The stream of plan events: `intake.stream`, created with subjects `planning.>` when absent
/// (just `intake.subject` when that lies outside `planning.>`).
///
/// # Errors
/// See [`present_or_created`].
pub(crate) async fn plan_stream(
    jetstream: &jetstream::Context,
    name: &str,
    subject: &str,
) -> Result<stream::Stream> {
    let subjects = if covers(PLAN_STREAM_SUBJECTS, subject) {
        PLAN_STREAM_SUBJECTS.to_owned()
    } else {
        subject.to_owned()
    };
    present_or_created(jetstream, name, vec![subjects]).await
}

/// The name of the stream that holds `subject`, if any.
///
/// # Errors
/// [`IntakeError::Stream`] when JetStream cannot be asked.
pub(crate) async fn holding(jetstream: &jetstream::Context, subject: &str) -> Result<Option<String>> {
    match jetstream.stream_by_subject(subject).await {
        Ok(name) => Ok(Some(name)),
        Err(error) if error.kind() == GetStreamByNameErrorKind::NotFound => Ok(None),
        Err(error) => Err(stream_error(subject, "look up the stream holding")(error.into())),
    }
}

/// The stream of bus requests: whichever stream holds `subject` (the server's events stream
/// on `orchestration.>` does with the default prefix), else [`REQUEST_STREAM`] on just it.
///
/// # Errors
/// See [`present_or_created`].
pub(crate) async fn request_stream(jetstream: &jetstream::Context, subject: &str) -> Result<stream::Stream> {
    match holding(jetstream, subject).await? {
        Some(name) => jetstream.get_stream(&name).await.map_err(|e| stream_error(&name, "read")(e.into())),
        None => present_or_created(jetstream, REQUEST_STREAM, vec![subject.to_owned()]).await,
    }
}

/// The durable pull consumer `durable` of `stream`, filtered to `subject`: created when
/// absent, its ack wait and delivery limit brought to the settings when present. Starts from
/// the oldest message the stream holds, so nothing published before the first start is
/// missed (a repeat maps to stored task ids and changes nothing).
///
/// # Errors
/// [`IntakeError::Consumer`] when it can be neither created nor read.
pub(crate) async fn durable_consumer(
    stream: &stream::Stream,
    durable: &str,
    subject: &str,
    ack_wait: Duration,
    max_deliver: u32,
) -> Result<PullConsumer> {
    let config = pull::Config {
        durable_name: Some(durable.to_owned()),
        filter_subject: subject.to_owned(),
        deliver_policy: DeliverPolicy::All,
        ack_policy: AckPolicy::Explicit,
        ack_wait,
        max_deliver: i64::from(max_deliver),
        ..Default::default()
    };
    let stream_name = stream.cached_info().config.name.clone();
    let failed = |source: async_nats::Error| IntakeError::Consumer {
        stream: stream_name.clone(),
        durable: durable.to_owned(),
        source,
    };
    let refused = match stream.create_consumer(config).await {
        Ok(consumer) => return Ok(consumer),
        Err(refused) => refused,
    };
    // An existing durable whose settings cannot change (its filter, say): keep consuming it
    // as it is, but say so.
    let Ok(consumer) = stream.get_consumer::<pull::Config>(durable).await else {
        return Err(failed(refused.into()));
    };
    let existing = &consumer.cached_info().config;
    warn!(
        stream = %stream_name,
        durable,
        refused = %chain(&refused),
        filter_subject = %existing.filter_subject,
        max_deliver = existing.max_deliver,
        ack_wait = ?existing.ack_wait,
        "the durable consumer exists with settings that could not be updated; consuming it as it is"
    );
    Ok(consumer)
}
