//! The bus intake: a driving adapter, beside the gRPC one, through which other services hand
//! the orchestrator work over NATS JetStream.
//!
//! Approved plans (`planning.plan.approved`) become one submitted deliberation per role, and
//! proto3-JSON `DeliberateRequest`s (`orchestration.request`) one each — built into the same
//! `DeliberateCommand` as the RPC builds and submitted through the same
//! [`Jobs::submit`](orchestrator_application::Jobs::submit), so validation and storage are
//! never re-implemented. A message is acked once what it asks for is stored, nak'd with a
//! delay while that cannot be done, and dead-lettered when it never can.
//!
//! One idea a file:
//! * [`settings`] — the `[intake]` table and its defaults;
//! * [`intake`] — start in the background, stop on a token;
//! * [`consumer`] — one durable pull consumer: pull, handle, settle;
//! * [`streams`] — the streams and consumers, created only when absent;
//! * [`plan`] — plan events, the task id of each role, the task template;
//! * [`request`] — proto3 JSON into the RPC's request and its validation;
//! * [`verdict`] — ack, nak or term, and the mapping from the application's errors;
//! * [`dead_letter`] — the copy of a message given up on;
//! * [`observability`] — the metrics;
//! * `subjects` — subject and name syntax;
//! * [`error`] — what can fail setting up and talking to JetStream.
#![forbid(unsafe_code)]

pub mod consumer;
pub mod dead_letter;
pub mod error;
pub mod intake;
pub mod observability;
pub mod plan;
pub mod request;
pub mod settings;
pub mod streams;
pub(crate) mod subjects;
pub mod verdict;

pub use dead_letter::DeadLetter;
pub use error::{IntakeError, Result};
pub use intake::{BusIntake, IntakeHandle, NatsConnection};
pub use plan::{PlanEvent, TaskTemplate};
pub use settings::IntakeSettings;
pub use verdict::{Poison, PoisonKind, Verdict};
