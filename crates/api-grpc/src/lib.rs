//! The `orchestrator.v1` gRPC API.
//!
//! [`pb`] holds the types generated from `proto/` at build time. [`convert`] turns requests
//! into validated commands (every error names the field) and results into messages; [`status`]
//! maps application errors to gRPC status codes in one exhaustive place; [`service`] is the
//! thin tonic service; [`router`] assembles it with health and reflection.
#![forbid(unsafe_code)]

pub mod convert;
pub mod error_mapping;
pub mod layers;
pub mod router;
pub mod service;

/// Types and service traits generated from `proto/orchestrator/v1/orchestrator.proto`.
#[allow(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used
)]
pub mod pb {
    tonic::include_proto!("orchestrator.v1");

    /// Encoded descriptor set of the orchestrator protos, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/orchestrator_descriptor.bin"));
}

pub use layers::{AuthLayer, Authentication, RequestErrorsLayer, TokenFileError, TokenSet};
pub use router::{ApiServices, grpc_router};
pub use service::OrchestratorApi;
