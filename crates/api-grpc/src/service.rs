//! The tonic service: thin handlers that convert, call a use case and convert back.

use std::sync::Arc;

use futures::StreamExt;
use orchestrator_application::ports::{Clock, ProgressObserver};
use orchestrator_application::{
    Caller, Councils, CreateCouncilCommand, DeliberateCommand, GetStatus, Jobs, Orchestrate,
    OrchestrateCommand, RegisterAgentCommand,
};
use orchestrator_domain::Phase;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::{Instrument, Span, field, instrument};

use crate::convert;
use crate::convert::councils as council_convert;
use crate::error_mapping::to_status;
use crate::pb;
use crate::pb::orchestrator_service_server::OrchestratorService;

mod streaming;

use streaming::{StreamObserver, UpdateStream};

/// The use cases the API serves, wired by the server binary.
#[derive(Clone)]
pub struct OrchestratorApi {
    jobs: Arc<Jobs>,
    orchestrate: Arc<Orchestrate>,
    status: Arc<GetStatus>,
    clock: Arc<dyn Clock>,
    councils: Option<Arc<Councils>>,
}

impl std::fmt::Debug for OrchestratorApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrchestratorApi").field("jobs", &self.jobs).finish_non_exhaustive()
    }
}

impl OrchestratorApi {
    pub fn new(
        jobs: Arc<Jobs>,
        orchestrate: Arc<Orchestrate>,
        status: Arc<GetStatus>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self { jobs, orchestrate, status, clock, councils: None }
    }

    /// Serves the council registry RPCs (and the registry's numbers in GetMetrics) from
    /// `councils`; without it they answer FAILED_PRECONDITION.
    #[must_use]
    pub fn with_councils(mut self, councils: Arc<Councils>) -> Self {
        self.councils = Some(councils);
        self
    }

    fn councils(&self) -> Result<&Councils, Status> {
        self.councils.as_deref().ok_or_else(|| {
            Status::failed_precondition(
                "this server has no council registry: every deliberation seats an ad-hoc council",
            )
        })
    }
}

/// The caller the auth layer identified; anonymous when the service runs without it (tests
/// that mount the service alone).
fn caller_of<T>(request: &Request<T>) -> Caller {
    request.extensions().get::<Caller>().cloned().unwrap_or_else(Caller::anonymous)
}

/// Registry changes reach every principal's deliberations of a role, so with authentication
/// only admins make them; a server without authentication (loopback only) lets its anonymous
/// callers make them too.
fn may_change_registry<T>(request: &Request<T>) -> Result<(), Status> {
    let caller = caller_of(request);
    if caller.is_admin() || caller.is_unauthenticated() {
        Ok(())
    } else {
        Err(Status::permission_denied(format!(
            "{caller} may not change the council registry: that needs the admin scope"
        )))
    }
}

/// Puts a client-chosen task id (validated by then) on the handler's span; a generated id is on
/// the `job` span the deliberation runs in, a child of this one.
fn record_task_id(task_id: Option<&str>) {
    if let Some(task_id) = task_id {
        Span::current().record("task_id", task_id);
    }
}

#[tonic::async_trait]
impl OrchestratorService for OrchestratorApi {
    #[instrument(skip_all, fields(task_id = field::Empty))]
    async fn deliberate(
        &self,
        request: Request<pb::DeliberateRequest>,
    ) -> Result<Response<pb::DeliberateResponse>, Status> {
        let caller = caller_of(&request);
        let command = DeliberateCommand::try_from(request.into_inner()).map_err(to_status)?;
        record_task_id(command.task_id.as_deref());
        let report = self.jobs.run(&caller, command, None).await.map_err(to_status)?;
        Ok(Response::new(convert::deliberate_response(&report, self.clock.now_ms())))
    }

    #[instrument(skip_all, fields(task_id = field::Empty))]
    async fn orchestrate(
        &self,
        request: Request<pb::OrchestrateRequest>,
    ) -> Result<Response<pb::OrchestrateResponse>, Status> {
        let caller = caller_of(&request);
        let command = OrchestrateCommand::try_from(request.into_inner()).map_err(to_status)?;
        record_task_id(command.deliberate.task_id.as_deref());
        let report = self.orchestrate.execute(&caller, command, None).await.map_err(to_status)?;
        Ok(Response::new(convert::orchestrate_response(&report, self.clock.now_ms())))
    }

    type StreamDeliberationStream = UpdateStream;

    #[instrument(skip_all, fields(task_id = field::Empty))]
    async fn stream_deliberation(
        &self,
        request: Request<pb::DeliberateRequest>,
    ) -> Result<Response<Self::StreamDeliberationStream>, Status> {
        let caller = caller_of(&request);
        let command = DeliberateCommand::try_from(request.into_inner()).map_err(to_status)?;
        record_task_id(command.task_id.as_deref());
        let (tx, rx) = mpsc::channel(32);
        let (open, opened) = tokio::sync::watch::channel(false);
        let observer: Arc<dyn ProgressObserver> = Arc::new(StreamObserver::new(tx.clone(), opened));
        // Refuse bad or unserviceable requests with a status, before the stream opens; the
        // deliberation is prepared and stored once, here.
        let begun = self.jobs.begin(&caller, command, Some(observer)).await.map_err(to_status)?;
        let _ = tx.send(Ok(convert::watch::phase_update(Phase::Proposing, begun.rounds()))).await;
        let _ = open.send(true);
        let span = Span::current();
        let streamed = streaming::stream_outcome(begun, caller, tx);
        // The stream outlives the handler; its span keeps the RPC's context (and task id).
        tokio::spawn(streamed.instrument(span));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type WatchDeliberationStream = UpdateStream;

    /// Follows a deliberation; the stream only reads, so dropping it leaves the work running.
    #[instrument(skip_all, fields(task_id = field::Empty))]
    async fn watch_deliberation(
        &self,
        request: Request<pb::WatchDeliberationRequest>,
    ) -> Result<Response<Self::WatchDeliberationStream>, Status> {
        let caller = caller_of(&request);
        let task_id = convert::required_task_id(&request.into_inner().task_id).map_err(to_status)?;
        record_task_id(Some(&task_id));
        let updates = self.jobs.watch(&caller, &task_id).await.map_err(to_status)?;
        let clock = Arc::clone(&self.clock);
        let updates = updates.map(move |update| {
            update.map(|u| convert::watch::watch_update(&u, clock.now_ms())).map_err(to_status)
        });
        Ok(Response::new(Box::pin(updates)))
    }

    #[instrument(skip_all, fields(task_id = field::Empty))]
    async fn get_deliberation_result(
        &self,
        request: Request<pb::GetDeliberationResultRequest>,
    ) -> Result<Response<pb::GetDeliberationResultResponse>, Status> {
        let caller = caller_of(&request);
        let task_id = convert::required_task_id(&request.into_inner().task_id).map_err(to_status)?;
        record_task_id(Some(&task_id));
        let record = self.jobs.get(&caller, &task_id).await.map_err(to_status)?;
        Ok(Response::new(convert::record_response(&record, self.clock.now_ms())))
    }

    #[instrument(skip_all)]
    async fn register_agent(
        &self,
        request: Request<pb::RegisterAgentRequest>,
    ) -> Result<Response<pb::RegisterAgentResponse>, Status> {
        may_change_registry(&request)?;
        let councils = self.councils()?;
        let command = RegisterAgentCommand::try_from(request.into_inner()).map_err(to_status)?;
        let agent_id = command.agent_id.clone();
        let council = councils.register(command).await.map_err(to_status)?;
        Ok(Response::new(pb::RegisterAgentResponse {
            success: true,
            message: format!("registered {agent_id} on the {} council {}", council.role(), council.id()),
            council_id: council.id().to_string(),
        }))
    }

    #[instrument(skip_all)]
    async fn create_council(
        &self,
        request: Request<pb::CreateCouncilRequest>,
    ) -> Result<Response<pb::CreateCouncilResponse>, Status> {
        may_change_registry(&request)?;
        let councils = self.councils()?;
        let command = CreateCouncilCommand::try_from(request.into_inner()).map_err(to_status)?;
        let council = councils.create(command).await.map_err(to_status)?;
        Ok(Response::new(council_convert::created(&council)))
    }

    async fn list_councils(
        &self,
        request: Request<pb::ListCouncilsRequest>,
    ) -> Result<Response<pb::ListCouncilsResponse>, Status> {
        let councils = self.councils()?;
        let request = request.into_inner();
        let role = council_convert::list_filter(&request).map_err(to_status)?;
        let listed = councils.list(role).await.map_err(to_status)?;
        Ok(Response::new(pb::ListCouncilsResponse {
            councils: listed
                .iter()
                .map(|c| council_convert::council_info(c, request.include_agents))
                .collect(),
        }))
    }

    #[instrument(skip_all)]
    async fn unregister_agent(
        &self,
        request: Request<pb::UnregisterAgentRequest>,
    ) -> Result<Response<pb::UnregisterAgentResponse>, Status> {
        may_change_registry(&request)?;
        let councils = self.councils()?;
        let (agent_id, role) = council_convert::unregister(&request.into_inner()).map_err(to_status)?;
        let (council_id, _) = councils.unregister(&agent_id, role).await.map_err(to_status)?;
        Ok(Response::new(pb::UnregisterAgentResponse {
            success: true,
            message: format!(
                "unregistered {agent_id} from council {council_id}; deliberations it sits in keep it until they end"
            ),
        }))
    }

    #[instrument(skip_all)]
    async fn delete_council(
        &self,
        request: Request<pb::DeleteCouncilRequest>,
    ) -> Result<Response<pb::DeleteCouncilResponse>, Status> {
        may_change_registry(&request)?;
        let councils = self.councils()?;
        let which = council_convert::delete_selector(&request.into_inner()).map_err(to_status)?;
        let council = councils.delete(&which).await.map_err(to_status)?;
        Ok(Response::new(pb::DeleteCouncilResponse {
            success: true,
            message: format!(
                "deleted the {} council {}; deliberations seated from it keep their agents",
                council.role(),
                council.id()
            ),
            council_id: council.id().to_string(),
            agent_ids: council.members().iter().map(|m| m.id.to_string()).collect(),
        }))
    }

    #[instrument(skip_all)]
    async fn set_agent_status(
        &self,
        request: Request<pb::SetAgentStatusRequest>,
    ) -> Result<Response<pb::SetAgentStatusResponse>, Status> {
        may_change_registry(&request)?;
        let councils = self.councils()?;
        let (agent_id, status) = council_convert::set_status(&request.into_inner()).map_err(to_status)?;
        let (council_id, member) = councils.set_status(&agent_id, status).await.map_err(to_status)?;
        Ok(Response::new(pb::SetAgentStatusResponse {
            agent: Some(council_convert::agent_info(&council_id, &member)),
        }))
    }

    async fn get_status(
        &self,
        request: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::GetStatusResponse>, Status> {
        let caller = caller_of(&request);
        let report = self.status.execute(&caller, request.into_inner().include_stats).await;
        Ok(Response::new(convert::status_response(&report)))
    }

    async fn get_metrics(
        &self,
        request: Request<pb::GetMetricsRequest>,
    ) -> Result<Response<pb::GetMetricsResponse>, Status> {
        let caller = caller_of(&request);
        let range = request.into_inner().time_range_ms;
        if range < 0 {
            return Err(Status::invalid_argument(format!(
                "time_range_ms: must not be negative, got {range}"
            )));
        }
        let mut metrics = convert::metrics_response(&self.status.counters_for(&caller));
        if let Some(councils) = &self.councils {
            let since = (range > 0).then(|| self.clock.now_ms().saturating_sub(range));
            let report = councils.report(since).await.map_err(to_status)?;
            council_convert::add_registry(&mut metrics, &report);
        }
        Ok(Response::new(metrics))
    }

    #[instrument(skip_all, fields(task_id = field::Empty))]
    async fn submit_deliberation(
        &self,
        request: Request<pb::DeliberateRequest>,
    ) -> Result<Response<pb::SubmitDeliberationResponse>, Status> {
        let caller = caller_of(&request);
        let command = DeliberateCommand::try_from(request.into_inner()).map_err(to_status)?;
        record_task_id(command.task_id.as_deref());
        let submission = self.jobs.submit(&caller, command).await.map_err(to_status)?;
        Ok(Response::new(convert::submission(&submission)))
    }

    async fn list_deliberations(
        &self,
        request: Request<pb::ListDeliberationsRequest>,
    ) -> Result<Response<pb::ListDeliberationsResponse>, Status> {
        let caller = caller_of(&request);
        let query = convert::list_query(request.into_inner()).map_err(to_status)?;
        let page = self.jobs.list(&caller, &query).await.map_err(to_status)?;
        Ok(Response::new(pb::ListDeliberationsResponse {
            deliberations: page.items.iter().map(convert::summary).collect(),
            next_page_token: page.next_cursor.unwrap_or_default(),
        }))
    }

    #[instrument(skip_all, fields(task_id = field::Empty))]
    async fn cancel_deliberation(
        &self,
        request: Request<pb::CancelDeliberationRequest>,
    ) -> Result<Response<pb::CancelDeliberationResponse>, Status> {
        let caller = caller_of(&request);
        let task_id = convert::required_task_id(&request.into_inner().task_id).map_err(to_status)?;
        record_task_id(Some(&task_id));
        let status = self.jobs.cancel(&caller, &task_id).await.map_err(to_status)?;
        Ok(Response::new(pb::CancelDeliberationResponse {
            task_id: task_id.into_string(),
            status: convert::wire_status(status).into(),
        }))
    }
}
