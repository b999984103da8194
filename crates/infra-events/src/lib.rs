//! Deliberation lifecycle events on NATS: the adapter of the
//! [`EventPublisher`](orchestrator_application::ports::EventPublisher) port.
//!
//! Each event is one JSON message on `<prefix>.deliberation.<event>` (`submitted`, `started`,
//! `phase_completed`, `completed`, `ended`), with the task id in the payload and in the
//! `Orchestrator-Task-Id` header, so a subscriber can take `<prefix>.deliberation.>` or one
//! kind of event. Publishing is best effort: the client reconnects by itself, and a message
//! that cannot be sent is logged, never allowed to fail a deliberation.
#![forbid(unsafe_code)]

mod nats;

pub use nats::{CONNECT_TIMEOUT, EventsError, NatsPublisher};
