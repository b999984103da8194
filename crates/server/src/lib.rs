//! Wiring of the orchestrator: configuration, adapters into use cases, startup and shutdown.
//!
//! `main.rs` only loads [`Config`] and calls [`Application::build`] then
//! [`Application::run_until`], so tests start the very same server on port 0.
#![forbid(unsafe_code)]

pub mod adapters;
pub mod backend_check;
pub mod bus;
pub mod config;
pub mod control_chars;
pub mod error;
pub mod prometheus;
pub mod security;
pub mod serving;
pub mod signals;
pub mod startup;
pub mod system;
pub mod telemetry;
pub mod tls;

pub use config::{AuthMode, Config, LogFormat};
pub use error::ServerError;
pub use startup::{Application, Dependencies, shutdown_signal};
