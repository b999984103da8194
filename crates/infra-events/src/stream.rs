//! The stream that keeps the events: created when absent with the settings below, never
//! altered when present — an operator may have tuned it, and changing a live stream's limits
//! can delete messages.

use std::time::Duration;

use async_nats::jetstream::{
    self,
    context::GetStreamErrorKind,
    stream::{Config, DiscardPolicy, RetentionPolicy, StorageType},
};
use tracing::{info, warn};

use crate::error::{EventsError, Result};
use crate::settings::EventsSettings;

/// How long the stream keeps an event.
const MAX_AGE: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// How many events the stream keeps (the oldest go first).
const MAX_MESSAGES: i64 = 50_000;
/// How long the stream remembers a `Nats-Msg-Id` to drop a second copy. An event the stream
/// stored whose acknowledgement was lost is sent again once NATS is back; it is recognised as
/// a copy only within this window of the first one, so the window is longer than most broker
/// outages (the issue asks for at least 2 minutes; remembering ids costs little at our rates).
const DUPLICATE_WINDOW: Duration = Duration::from_secs(10 * 60);

/// The stream's JetStream error code for "stream not found".
const STREAM_NOT_FOUND: async_nats::jetstream::ErrorCode = async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND;

/// The configuration of a stream created by the relay: every subject under the prefix, on
/// disk, limits retention.
pub(crate) fn stream_config(settings: &EventsSettings) -> Config {
    Config {
        name: settings.stream().to_owned(),
        description: Some("Deliberation lifecycle events, relayed from the orchestrator's outbox".to_owned()),
        subjects: vec![format!("{}.>", settings.prefix())],
        storage: StorageType::File,
        retention: RetentionPolicy::Limits,
        discard: DiscardPolicy::Old,
        max_age: MAX_AGE,
        max_messages: MAX_MESSAGES,
        duplicate_window: DUPLICATE_WINDOW,
        ..Config::default()
    }
}

/// Makes sure the events stream of `settings` exists on `client`'s JetStream (created as the
/// relay would create it, never altered when present). For the server to call before starting
/// anything else that reads or creates streams on the events' subjects (the bus intake): the
/// relay creates it only once it relays, and a second creator with overlapping subjects would
/// make the first creation fail.
///
/// # Errors
/// As the relay's own creation.
pub async fn ensure_events_stream(client: &async_nats::Client, settings: &EventsSettings) -> Result<()> {
    ensure_stream(&jetstream::new(client.clone()), settings).await
}

/// Makes sure the stream exists: reads it, creates it when absent, and warns when an existing
/// one does not take the events' subjects (their publishes will fail until an operator fixes
/// it — the relay does not change a stream it did not create).
///
/// # Errors
/// [`EventsError::StreamInfo`] or [`EventsError::CreateStream`] when JetStream does not
/// answer or refuses.
pub(crate) async fn ensure_stream(js: &jetstream::Context, settings: &EventsSettings) -> Result<()> {
    let name = settings.stream();
    match js.get_stream(name).await {
        Ok(stream) => {
            let subjects = &stream.cached_info().config.subjects;
            let published = format!("{}.deliberation.*", settings.prefix());
            if !subjects.iter().any(|filter| covers(filter, &published)) {
                warn!(
                    stream = name,
                    ?subjects,
                    needed = published,
                    "the events stream exists but does not take the events' subjects; left as it is"
                );
            }
            Ok(())
        }
        Err(error) if matches!(error.kind(), GetStreamErrorKind::JetStream(ref e) if e.error_code() == STREAM_NOT_FOUND) =>
        {
            let config = stream_config(settings);
            let subjects = config.subjects.clone();
            js.create_stream(config)
                .await
                .map_err(|source| EventsError::CreateStream { stream: name.to_owned(), source })?;
            info!(stream = name, ?subjects, "created the events stream");
            Ok(())
        }
        Err(source) => Err(EventsError::StreamInfo { stream: name.to_owned(), source }),
    }
}

/// Whether every subject matching `pattern` matches the stream subject `filter` (NATS
/// wildcards: `*` one token, `>` one or more trailing tokens).
fn covers(filter: &str, pattern: &str) -> bool {
    let mut filter = filter.split('.');
    let mut pattern = pattern.split('.');
    loop {
        match (filter.next(), pattern.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(p)) if p != ">" => {}
            (Some(f), Some(p)) if f == p && p != "*" && p != ">" => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_covers_a_pattern_when_it_takes_every_subject_the_pattern_can_be() {
        let published = "orchestration.deliberation.*";
        for filter in [">", "orchestration.>", "orchestration.deliberation.>", "*.deliberation.*", published]
        {
            assert!(covers(filter, published), "{filter}");
        }
        for filter in [
            "orchestration.deliberation.completed",
            "orchestration.deliberation",
            "orchestration.*",
            "other.>",
            "orchestration.deliberation.*.x",
        ] {
            assert!(!covers(filter, published), "{filter}");
        }
    }

    #[test]
    fn a_created_stream_keeps_a_week_of_up_to_50000_events_on_disk_deduplicated() {
        let settings = EventsSettings::new("nats://h:4222", "orchestration").unwrap();
        let config = stream_config(&settings);
        assert_eq!(config.name, "ORCHESTRATOR_EVENTS");
        assert_eq!(config.subjects, ["orchestration.>"]);
        assert_eq!((config.storage, config.retention), (StorageType::File, RetentionPolicy::Limits));
        assert_eq!((config.max_age, config.max_messages), (MAX_AGE, 50_000));
        assert!(config.duplicate_window >= Duration::from_secs(120));
    }
}
