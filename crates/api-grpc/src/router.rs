//! The whole gRPC surface: the orchestrator service, health and reflection.

use tonic::service::Routes;
use tonic_health::ServingStatus;

use crate::pb;
use crate::pb::orchestrator_service_server::OrchestratorServiceServer;
use crate::service::OrchestratorApi;

/// Largest request accepted: a 64 KiB task plus constraints fits many times over.
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;
/// Largest response sent: 16 agents × 64 KiB proposals with 5 revisions each, and reviews.
pub const MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;

/// The services to mount, plus the health reporter to flip on shutdown.
#[derive(Debug)]
pub struct ApiServices {
    pub routes: Routes,
    pub health: tonic_health::server::HealthReporter,
}

/// Builds the orchestrator service with `grpc.health.v1.Health` (SERVING for the service and
/// for "") and server reflection v1 and v1alpha, so `grpcurl list` works without proto files.
///
/// # Errors
/// When the embedded descriptor sets cannot be read (a build problem).
pub async fn grpc_router(api: OrchestratorApi) -> Result<ApiServices, tonic_reflection::server::Error> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<OrchestratorServiceServer<OrchestratorApi>>().await;
    health.set_service_status("", ServingStatus::Serving).await;

    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let orchestrator = OrchestratorServiceServer::new(api)
        .max_decoding_message_size(MAX_REQUEST_BYTES)
        .max_encoding_message_size(MAX_RESPONSE_BYTES);
    let routes = Routes::new(orchestrator)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);
    Ok(ApiServices { routes, health })
}
