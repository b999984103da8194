//! Deliberation lifecycle events on NATS JetStream: the relay of the transactional outbox.
//!
//! Every state change of a deliberation stores the event that reports it in the outbox, in the
//! same transaction (see [`orchestrator_application::ports::Outbox`]). This crate publishes
//! those events: one [`JetStreamRelay`] per server, of which exactly one at a time relays (it
//! holds the relay lease), publishes the oldest unsent events — each deliberation's in order — on
//! `<prefix>.deliberation.<event>` with `Nats-Msg-Id: <task_id>:<event>:<seq>`, and marks them
//! sent only once the stream acknowledged them. A broker that is away holds up nothing: the
//! events wait in the (bounded) outbox and go out, each once, when it returns; the relay stops
//! within a bound whether or not NATS answers.
//!
//! - [`settings`]: what the relay needs from the configuration, validated.
//! - [`relay`]: the loop — lease, publish, mark sent, bound the outbox.
//! - [`handle`]: what the server keeps — the relay's status and its stop.
//! - [`observability`]: the metrics it records.
#![forbid(unsafe_code)]

mod backoff;
mod error;
pub mod handle;
pub mod observability;
mod publish;
pub mod relay;
pub mod settings;
mod stream;

pub use error::{EventsError, Result};
pub use handle::{Acknowledged, RelayHandle, RelayWatch};
pub use relay::JetStreamRelay;
pub use settings::{DEFAULT_PREFIX, DEFAULT_STREAM, EventsSettings};
pub use stream::ensure_events_stream;
