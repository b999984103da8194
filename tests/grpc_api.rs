//! The real server over gRPC with a scripted backend: the deliberation vertical slice.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns panic on purpose

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use orchestrator_api_grpc::pb;
use orchestrator_tests::{ScriptedBackend, spawn_app};
use tonic::Code;

fn request(role: &str) -> pb::DeliberateRequest {
    pb::DeliberateRequest {
        task_description: "Add rate limiting to the public REST API".into(),
        role: role.into(),
        constraints: Some(pb::TaskConstraints {
            rubric: "correctness, operability".into(),
            requirements: vec!["limit requests per API key".into(), "return 429 with Retry-After".into()],
            metadata: HashMap::from([("team".into(), "platform".into())]),
            max_iterations: 0,
            timeout_seconds: 30,
            acceptance_tests: None,
            early_stop: String::new(),
            strategy: String::new(),
        }),
        rounds: None,
        num_agents: None,
        task_id: String::new(),
        agent_profiles: vec![],
    }
}

fn scripted() -> Option<Arc<dyn orchestrator_application::ports::AgentBackend>> {
    Some(Arc::new(ScriptedBackend::new()))
}

#[tokio::test]
async fn deliberate_returns_every_ranked_proposal_and_the_winner() {
    let mut app = spawn_app(scripted()).await;

    let response = app.client.deliberate(request("DEV")).await.unwrap().into_inner();

    assert_eq!(response.results.len(), 3);
    let ranks: Vec<i32> = response.results.iter().map(|r| r.rank).collect();
    assert_eq!(ranks, [1, 2, 3]);
    let winner = response.results[0].proposal.as_ref().unwrap();
    assert_eq!(response.winner_id, winner.author_id);
    assert!(response.duration_ms > 0);
    assert!(!response.task_id.is_empty());
    let scores: Vec<f64> = response.results.iter().map(|r| r.score).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    for result in &response.results {
        let proposal = result.proposal.as_ref().unwrap();
        assert_eq!(proposal.author_role, "DEV");
        assert!(proposal.author_id.starts_with("dev-"));
        assert_eq!(proposal.revisions.len(), 1, "one round, one revision");
        assert_eq!(result.reviews.len(), 1);
        assert!((0.0..=1.0).contains(&result.score));
        let checks = result.checks.as_ref().unwrap();
        assert!(checks.policy.as_ref().unwrap().passed);
        assert!(!checks.dryrun.as_ref().unwrap().ran);
    }
    // The scripted agent at seat 0 covers only the first requirement: the lint check says so.
    let seat0 = response.results.iter().find(|r| r.proposal.as_ref().unwrap().author_id == "dev-1").unwrap();
    let lint = seat0.checks.as_ref().unwrap().lint.as_ref().unwrap();
    assert!(!lint.passed);
    assert!(lint.errors.iter().any(|e| e.contains("requirement 2 not addressed")), "{lint:?}");
    assert_ne!(response.winner_id, "dev-1");
    let metadata = response.metadata.unwrap();
    assert_eq!(metadata.orchestrator_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(metadata.tags["llm_calls"], "9");
    assert_eq!(response.usage.unwrap().prompt_tokens, 900);
}

#[tokio::test]
async fn rounds_zero_one_and_three_give_that_many_revisions() {
    let mut app = spawn_app(scripted()).await;
    for rounds in [0, 1, 3] {
        let response = app
            .client
            .deliberate(pb::DeliberateRequest { rounds: Some(rounds), ..request("QA") })
            .await
            .unwrap()
            .into_inner();
        for result in &response.results {
            assert_eq!(result.proposal.as_ref().unwrap().revisions.len(), rounds as usize, "rounds {rounds}");
            assert_eq!(result.reviews.len(), rounds as usize, "rounds {rounds}");
        }
        assert_eq!(response.metadata.unwrap().tags["rounds"], rounds.to_string());
    }
}

#[tokio::test]
async fn every_role_deliberates_and_is_counted_in_status() {
    let mut app = spawn_app(scripted()).await;
    for role in ["dev", "QA", "Architect", "DEVOPS", "data"] {
        let response = app
            .client
            .deliberate(pb::DeliberateRequest { num_agents: Some(2), ..request(role) })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(response.results.len(), 2);
        let author = response.results[0].proposal.as_ref().unwrap();
        assert_eq!(author.author_role, role.to_ascii_uppercase());
        assert!(author.author_id.starts_with(&role.to_ascii_lowercase()));
    }
    let status =
        app.client.get_status(pb::GetStatusRequest { include_stats: true }).await.unwrap().into_inner();
    assert_eq!(status.status, "SERVING");
    assert!(status.llm_configured);
    let stats = status.stats.unwrap();
    assert_eq!(stats.total_deliberations, 5);
    for role in ["DEV", "QA", "ARCHITECT", "DEVOPS", "DATA"] {
        assert_eq!(stats.role_counts[role], 1, "{role}");
    }
    assert!(stats.avg_deliberation_time_ms > 0.0);
}

#[tokio::test]
async fn num_agents_zero_means_three_and_sixteen_is_allowed() {
    let mut app = spawn_app(scripted()).await;
    let response = app
        .client
        .deliberate(pb::DeliberateRequest { num_agents: Some(0), ..request("DEV") })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.results.len(), 3);
    let response = app
        .client
        .deliberate(pb::DeliberateRequest { num_agents: Some(16), ..request("DEV") })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.results.len(), 16);
}

#[tokio::test]
async fn bad_input_is_rejected_naming_the_field() {
    let mut app = spawn_app(scripted()).await;
    let cases: Vec<(pb::DeliberateRequest, &str)> = vec![
        (request("FOO"), "role: unknown role \"FOO\"; expected one of DEV, QA, ARCHITECT, DEVOPS, DATA"),
        (request(""), "role: is required"),
        (
            pb::DeliberateRequest { task_description: "   ".into(), ..request("DEV") },
            "task_description: must not be empty",
        ),
        (
            pb::DeliberateRequest { task_description: "x".repeat(64 * 1024 + 1), ..request("DEV") },
            "task_description: must be at most 65536 bytes",
        ),
        (
            pb::DeliberateRequest { num_agents: Some(17), ..request("DEV") },
            "num_agents: must be within 1..=16",
        ),
        (
            pb::DeliberateRequest { num_agents: Some(-2), ..request("DEV") },
            "num_agents: must be within 1..=16",
        ),
        (pb::DeliberateRequest { rounds: Some(6), ..request("DEV") }, "rounds: must be within 0..=5, got 6"),
        (
            pb::DeliberateRequest { task_id: "no spaces please".into(), ..request("DEV") },
            "task_id: invalid character",
        ),
        (
            pb::DeliberateRequest {
                constraints: Some(pb::TaskConstraints {
                    requirements: vec!["ok".into(), "".into()],
                    ..Default::default()
                }),
                ..request("DEV")
            },
            "constraints.requirements[1]: must not be blank",
        ),
        (
            pb::DeliberateRequest {
                constraints: Some(pb::TaskConstraints { timeout_seconds: -1, ..Default::default() }),
                ..request("DEV")
            },
            "constraints.timeout_seconds: must not be negative",
        ),
        (
            pb::DeliberateRequest {
                constraints: Some(pb::TaskConstraints { max_iterations: -1, ..Default::default() }),
                ..request("DEV")
            },
            "constraints.max_iterations: must not be negative",
        ),
        (
            pb::DeliberateRequest { agent_profiles: vec!["a/b".into()], ..request("DEV") },
            "agent_profiles[0]: invalid character",
        ),
    ];
    for (bad, expected) in cases {
        let status = app.client.deliberate(bad).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{expected}: {status:?}");
        assert!(status.message().starts_with(expected), "expected {expected:?}, got {:?}", status.message());
    }
    let status = app
        .client
        .orchestrate(pb::OrchestrateRequest {
            task_description: "x".into(),
            role: "DEV".into(),
            options: Some(pb::OrchestratorOptions { deliberation_rounds: 6, ..Default::default() }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().starts_with("options.deliberation_rounds: must be within 0..=5"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn unknown_profile_is_rejected() {
    let mut app = spawn_app(Some(Arc::new(ScriptedBackend::new().with_profiles(&["default", "fast"])))).await;
    let status = app
        .client
        .deliberate(pb::DeliberateRequest {
            agent_profiles: vec!["fast".into(), "huge".into()],
            ..request("DEV")
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), "agent_profiles: unknown model profile \"huge\"");
    let response = app
        .client
        .deliberate(pb::DeliberateRequest {
            agent_profiles: vec!["fast".into(), "default".into()],
            ..request("DEV")
        })
        .await
        .unwrap()
        .into_inner();
    let profiles: Vec<_> =
        response.results.iter().map(|r| r.proposal.as_ref().unwrap().model_profile.clone()).collect();
    assert_eq!(profiles.iter().filter(|p| *p == "fast").count(), 2);
    assert_eq!(profiles.iter().filter(|p| *p == "default").count(), 1);
}

#[tokio::test]
async fn without_a_backend_deliberations_fail_precondition_and_say_how_to_configure() {
    let mut app = spawn_app(None).await;
    let status = app.client.deliberate(request("DEV")).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(status.message().contains("ORCHESTRATOR_LLM_BASE_URL"), "{}", status.message());
    let status = app
        .client
        .orchestrate(pb::OrchestrateRequest {
            task_description: "x".into(),
            role: "DEV".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    // Validation still comes first: a bad request is a bad request.
    assert_eq!(app.client.deliberate(request("FOO")).await.unwrap_err().code(), Code::InvalidArgument);
    let status = app.client.get_status(pb::GetStatusRequest::default()).await.unwrap().into_inner();
    assert_eq!(status.status, "SERVING");
    assert!(!status.llm_configured);
    assert!(status.stats.is_none());
}

#[tokio::test]
async fn failed_agents_are_reported_and_never_ranked() {
    let mut app = spawn_app(Some(Arc::new(ScriptedBackend::new().failing(&["dev-2"])))).await;
    let response = app.client.deliberate(request("DEV")).await.unwrap().into_inner();
    assert_eq!(response.results.len(), 2);
    assert!(response.results.iter().all(|r| r.proposal.as_ref().unwrap().author_id != "dev-2"));
    assert_eq!(response.failures.len(), 1);
    assert_eq!(response.failures[0].agent_id, "dev-2");
    assert_eq!(response.failures[0].phase, "propose");
    assert!(response.failures[0].reason.contains("scripted failure"));
}

#[tokio::test]
async fn every_agent_failing_is_unavailable() {
    let mut app = spawn_app(Some(Arc::new(ScriptedBackend::new().failing(&["qa-1", "qa-2"])))).await;
    let status = app
        .client
        .deliberate(pb::DeliberateRequest { num_agents: Some(2), ..request("QA") })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(status.message().starts_with("every agent failed: qa-1 (propose)"), "{}", status.message());
}

#[tokio::test]
async fn deadline_is_enforced_over_the_whole_deliberation() {
    let backend = ScriptedBackend::new().with_delay(std::time::Duration::from_millis(700));
    let mut app = spawn_app(Some(Arc::new(backend))).await;
    let mut req = request("DEV");
    req.constraints.as_mut().unwrap().timeout_seconds = 1;
    let status = app.client.deliberate(req).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert!(status.message().contains("1s deadline while reviewing (round 1)"), "{}", status.message());
}

#[tokio::test]
async fn orchestrate_selects_among_the_top_three_with_the_architect() {
    let mut app = spawn_app(scripted()).await;
    let response = app
        .client
        .orchestrate(pb::OrchestrateRequest {
            task_id: "orch-1".into(),
            task_description: "Split the monolith's billing module".into(),
            role: "ARCHITECT".into(),
            options: Some(pb::OrchestratorOptions {
                enable_architect_selection: true,
                enable_peer_review: true,
                ..Default::default()
            }),
            num_agents: Some(4),
            case_id: "case-9".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.candidates.len(), 3);
    assert_eq!(response.execution_id, "orch-1");
    assert_eq!(response.selection_method, "architect");
    assert_eq!(response.selection_rationale, "the last candidate is the most cautious");
    let winner = response.winner.unwrap();
    assert_eq!(winner, response.candidates[2]);
    assert!(response.duration_ms > 0);

    let response = app
        .client
        .orchestrate(pb::OrchestrateRequest {
            task_description: "Same again".into(),
            role: "dev".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.selection_method, "score");
    assert_eq!(response.winner.unwrap(), response.candidates[0]);
    let status =
        app.client.get_status(pb::GetStatusRequest { include_stats: true }).await.unwrap().into_inner();
    assert_eq!(status.stats.unwrap().total_orchestrations, 2);
}

#[tokio::test]
async fn stream_deliberation_reports_progress_then_every_result() {
    let mut app = spawn_app(scripted()).await;
    let mut stream = app.client.stream_deliberation(request("DEVOPS")).await.unwrap().into_inner();
    let mut updates = Vec::new();
    while let Some(update) = stream.next().await {
        updates.push(update.unwrap());
    }
    let statuses: Vec<_> = updates.iter().map(|u| u.status.as_str()).collect();
    assert_eq!(
        statuses,
        ["generating", "reviewing", "reviewing", "scoring", "scoring", "scoring", "complete"]
    );
    let progress: Vec<_> = updates.iter().map(|u| u.progress_percent).collect();
    assert!(progress.windows(2).all(|w| w[0] <= w[1]), "{progress:?}");
    assert_eq!(*progress.last().unwrap(), 100);
    let ranks: Vec<_> = updates.iter().filter_map(|u| u.partial_result.as_ref()).map(|r| r.rank).collect();
    assert_eq!(ranks, [1, 2, 3]);
}

#[tokio::test]
async fn stream_rejects_bad_input_up_front() {
    let mut app = spawn_app(scripted()).await;
    let status = app.client.stream_deliberation(request("NOPE")).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn metrics_reflect_completed_deliberations() {
    let mut app = spawn_app(scripted()).await;
    app.client.deliberate(request("DATA")).await.unwrap();
    let metrics = app.client.get_metrics(pb::GetMetricsRequest::default()).await.unwrap().into_inner();
    let performance = metrics.performance.unwrap();
    assert!(performance.avg_deliberation_ms > 0.0);
    assert!(performance.p50_latency_ms > 0.0 && performance.p99_latency_ms >= performance.p50_latency_ms);
    let agents = metrics.agents.unwrap();
    assert_eq!(agents.agents_per_role["DATA"], 3);
    assert_eq!((agents.total_agents, agents.active_agents), (3, 0));
    assert_eq!(metrics.councils.unwrap().total_councils, 1);
}

#[tokio::test]
async fn health_reports_serving_for_the_server_and_the_service() {
    let app = spawn_app(scripted()).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(app.channel().await);
    for service in ["", "orchestrator.v1.OrchestratorService"] {
        let response = health
            .check(tonic_health::pb::HealthCheckRequest { service: service.into() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            response.status(),
            tonic_health::pb::health_check_response::ServingStatus::Serving,
            "{service:?}"
        );
    }
}

#[tokio::test]
async fn reflection_v1_and_v1alpha_list_the_services() {
    use tonic_reflection::pb::{v1, v1alpha};
    let app = spawn_app(scripted()).await;

    let mut client = v1::server_reflection_client::ServerReflectionClient::new(app.channel().await);
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(String::new())),
    };
    let mut responses =
        client.server_reflection_info(futures::stream::iter([request])).await.unwrap().into_inner();
    let response = responses.next().await.unwrap().unwrap();
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        response.message_response
    else {
        panic!("unexpected reflection answer");
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&"orchestrator.v1.OrchestratorService".to_owned()), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health".to_owned()), "{names:?}");

    let mut client = v1alpha::server_reflection_client::ServerReflectionClient::new(app.channel().await);
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
            "orchestrator.v1.OrchestratorService".into(),
        )),
    };
    let mut responses =
        client.server_reflection_info(futures::stream::iter([request])).await.unwrap().into_inner();
    let response = responses.next().await.unwrap().unwrap();
    assert!(matches!(
        response.message_response,
        Some(v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(ref fds)) if !fds.file_descriptor_proto.is_empty()
    ));
}

#[tokio::test]
async fn shutdown_stops_the_server_and_refuses_new_calls() {
    let app = spawn_app(scripted()).await;
    let addr = app.addr;
    app.stop().await;
    let connect =
        pb::orchestrator_service_client::OrchestratorServiceClient::connect(format!("http://{addr}")).await;
    assert!(connect.is_err(), "server still accepting after shutdown");
}

#[tokio::test]
async fn a_configured_dry_run_really_checks_the_code_and_fails_broken_code() {
    let backend = Some(Arc::new(ScriptedBackend::new().with_python())
        as Arc<dyn orchestrator_application::ports::AgentBackend>);
    let dry_run = orchestrator_infra_dryrun::DryRunConfig {
        command: vec!["python3".into(), "-m".into(), "py_compile".into(), "{file}".into()],
        languages: vec!["python".into()],
        file_extension: "py".into(),
        timeout_secs: 20.0,
        max_concurrency: 2,
        unsandboxed: false,
        limits: Default::default(),
    };
    let mut app = orchestrator_tests::spawn_app_with(
        move |c| orchestrator_server::Config { dry_run: Some(dry_run), ..c },
        backend,
    )
    .await;
    let response = app
        .client
        .deliberate(pb::DeliberateRequest { num_agents: Some(2), rounds: Some(0), ..request("DEV") })
        .await
        .unwrap()
        .into_inner();
    let dry_run_of = |author: &str| {
        let result =
            response.results.iter().find(|r| r.proposal.as_ref().unwrap().author_id == author).unwrap();
        (result.checks.as_ref().unwrap().dryrun.clone().unwrap(), result.checks.as_ref().unwrap().all_passed)
    };
    let (valid, _) = dry_run_of("dev-1");
    assert!(valid.ran && valid.passed, "{valid:?}");
    let (broken, all_passed) = dry_run_of("dev-2");
    assert!(broken.ran && !broken.passed, "{broken:?}");
    assert_eq!(broken.exit_code, 1);
    assert!(broken.output.contains("SyntaxError"), "{}", broken.output);
    assert!(!all_passed);
}
