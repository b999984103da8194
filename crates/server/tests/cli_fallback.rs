//! The CLI against a server older than WatchDeliberation (it answers UNIMPLEMENTED): `watch`
//! falls back to polling GetDeliberationResult and shows the phases. The server here is a fake
//! that answers only GetDeliberationResult, from a script.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use orchestrator_api_grpc::pb;
use orchestrator_api_grpc::pb::orchestrator_service_server::{
    OrchestratorService, OrchestratorServiceServer,
};
use tonic::codegen::tokio_stream::Empty;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

/// Answers GetDeliberationResult with the next state of a one-agent deliberation (proposing,
/// scoring, completed); everything else is UNIMPLEMENTED, as on a server without the RPC.
#[derive(Default)]
struct OldServer {
    reads: AtomicUsize,
}

type Answer<T> = Result<Response<T>, Status>;

fn unimplemented<T>() -> Answer<T> {
    Err(Status::unimplemented("not on this server"))
}

fn state(status: pb::DeliberationStatus, phase: Option<&str>) -> pb::GetDeliberationResultResponse {
    let mut tags = HashMap::from([("rounds".to_owned(), "0".to_owned())]);
    if let Some(phase) = phase {
        tags.insert("phase".to_owned(), phase.to_owned());
    }
    pb::GetDeliberationResultResponse {
        task_id: "old-1".into(),
        status: status.into(),
        role: "DEV".into(),
        metadata: Some(pb::OrchestratorMetadata { tags, ..Default::default() }),
        duration_ms: 1500,
        ..Default::default()
    }
}

#[tonic::async_trait]
impl OrchestratorService for OldServer {
    type StreamDeliberationStream = Empty<Result<pb::DeliberationUpdate, Status>>;
    type WatchDeliberationStream = Empty<Result<pb::DeliberationUpdate, Status>>;

    async fn get_deliberation_result(
        &self,
        _request: Request<pb::GetDeliberationResultRequest>,
    ) -> Answer<pb::GetDeliberationResultResponse> {
        let answer = match self.reads.fetch_add(1, Ordering::SeqCst) {
            0 => state(pb::DeliberationStatus::InProgress, Some("proposing")),
            1 => state(pb::DeliberationStatus::InProgress, Some("scoring")),
            _ => state(pb::DeliberationStatus::Completed, None),
        };
        Ok(Response::new(answer))
    }

    async fn watch_deliberation(
        &self,
        _request: Request<pb::WatchDeliberationRequest>,
    ) -> Answer<Self::WatchDeliberationStream> {
        unimplemented()
    }

    async fn stream_deliberation(
        &self,
        _r: Request<pb::DeliberateRequest>,
    ) -> Answer<Self::StreamDeliberationStream> {
        unimplemented()
    }

    async fn deliberate(&self, _r: Request<pb::DeliberateRequest>) -> Answer<pb::DeliberateResponse> {
        unimplemented()
    }

    async fn orchestrate(&self, _r: Request<pb::OrchestrateRequest>) -> Answer<pb::OrchestrateResponse> {
        unimplemented()
    }

    async fn register_agent(
        &self,
        _r: Request<pb::RegisterAgentRequest>,
    ) -> Answer<pb::RegisterAgentResponse> {
        unimplemented()
    }

    async fn create_council(
        &self,
        _r: Request<pb::CreateCouncilRequest>,
    ) -> Answer<pb::CreateCouncilResponse> {
        unimplemented()
    }

    async fn list_councils(&self, _r: Request<pb::ListCouncilsRequest>) -> Answer<pb::ListCouncilsResponse> {
        unimplemented()
    }

    async fn unregister_agent(
        &self,
        _r: Request<pb::UnregisterAgentRequest>,
    ) -> Answer<pb::UnregisterAgentResponse> {
        unimplemented()
    }

    async fn get_status(&self, _r: Request<pb::GetStatusRequest>) -> Answer<pb::GetStatusResponse> {
        unimplemented()
    }

    async fn get_metrics(&self, _r: Request<pb::GetMetricsRequest>) -> Answer<pb::GetMetricsResponse> {
        unimplemented()
    }

    async fn submit_deliberation(
        &self,
        _r: Request<pb::DeliberateRequest>,
    ) -> Answer<pb::SubmitDeliberationResponse> {
        unimplemented()
    }

    async fn list_deliberations(
        &self,
        _r: Request<pb::ListDeliberationsRequest>,
    ) -> Answer<pb::ListDeliberationsResponse> {
        unimplemented()
    }

    async fn cancel_deliberation(
        &self,
        _r: Request<pb::CancelDeliberationRequest>,
    ) -> Answer<pb::CancelDeliberationResponse> {
        unimplemented()
    }

    async fn delete_council(
        &self,
        _r: Request<pb::DeleteCouncilRequest>,
    ) -> Answer<pb::DeleteCouncilResponse> {
        unimplemented()
    }

    async fn set_agent_status(
        &self,
        _r: Request<pb::SetAgentStatusRequest>,
    ) -> Answer<pb::SetAgentStatusResponse> {
        unimplemented()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_polls_a_server_without_watch_deliberation_and_shows_its_phases() {
    let incoming = TcpIncoming::bind(([127, 0, 0, 1], 0).into()).unwrap();
    let port = incoming.local_addr().unwrap().port();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(OrchestratorServiceServer::new(OldServer::default()))
            .serve_with_incoming(incoming),
    );

    let output = tokio::task::spawn_blocking(move || {
        support::cli()
            .args(["watch", "old-1"])
            .env("ORCHESTRATOR_ADDR", format!("http://127.0.0.1:{port}"))
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    server.abort();

    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(output.status.success(), "{stderr}");
    let mut from = 0;
    for needle in ["watching old-1", "proposing: ", "scoring: ", "completed in 1.5 s"] {
        let at =
            stderr[from..].find(needle).unwrap_or_else(|| panic!("{needle:?} missing in order:\n{stderr}"));
        from += at + needle.len();
    }
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.starts_with("task old-1 (DEV): completed in "), "{stdout}");
}
