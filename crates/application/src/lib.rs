//! Use cases of the orchestrator and the ports they need.
//!
//! The use cases drive the pure [`orchestrator_domain::Deliberation`] state machine: they call
//! agents through the [`ports::AgentBackend`] port — every agent of a phase concurrently —,
//! record replies and failures, enforce the deadline and report progress. Adapters (LLM HTTP
//! clients, databases, the gRPC API) live in other crates and depend on this one, never the
//! reverse.
#![forbid(unsafe_code)]

pub mod caller;
pub mod councils;
pub mod counters;
pub mod deliberate;
pub mod error;
pub mod get_status;
pub mod jobs;
pub mod latency;
pub mod observability;
pub mod orchestrate;
pub mod ports;
pub mod seating;
#[cfg(any(test, feature = "mocks"))]
pub mod testing;

pub use caller::Caller;
pub use councils::{
    CouncilSelector, Councils, CreateCouncilCommand, DeclaredCouncil, RegisterAgentCommand, RegistryReport,
};
pub use counters::{Counters, CountersSnapshot};
pub use deliberate::{Deliberate, DeliberateCommand, DeliberationReport, DeliberationSettings};
pub use error::{ApplicationError, Result};
pub use get_status::{BACKEND_PROBE_TIMEOUT, GetStatus, StatusReport};
pub use jobs::{
    CancelOnDrop, JobSettings, Jobs, Recovery, ShutdownReport, StoreState, Submission, WatchUpdate,
    WatchUpdates,
};
pub use latency::LatencyHistogram;
pub use orchestrate::{Orchestrate, OrchestrateCommand, OrchestrationReport, SelectionMethod};
pub use seating::Overrides;
