//! Standing councils over gRPC: the registry's lifecycle, deliberations seated from it, request
//! overrides, registry changes during a running deliberation, agent records in GetMetrics and
//! every bad input named.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns panic on purpose

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::StreamExt;
use orchestrator_api_grpc::pb;
use orchestrator_application::ports::{AgentBackend, AgentError, Completion, ReviewReply, Selection};
use orchestrator_domain::{Agent, ProfileName, Review, Task, TestOutcome};
use orchestrator_tests::{ScriptedBackend, TestApp, spawn_app, wait_until_done};
use tokio::sync::{Semaphore, mpsc};
use tonic::Code;

/// A call the backend received: phase, agent, profile, persona.
type Call = (String, String, String, Option<String>);

/// The scripted backend (profiles `default`, `fast`, `big`), recording who was called on which
/// profile with which persona; with a gate, every proposal first announces itself and then
/// waits for a permit.
struct Recording {
    inner: ScriptedBackend,
    calls: Mutex<Vec<Call>>,
    gate: Option<(mpsc::UnboundedSender<String>, Semaphore)>,
}

impl Recording {
    fn new(inner: ScriptedBackend) -> Self {
        Self {
            inner: inner.with_profiles(&["default", "fast", "big"]),
            calls: Mutex::new(Vec::new()),
            gate: None,
        }
    }

    /// Proposals announce their agent on the returned channel and wait for a permit.
    fn gated(inner: ScriptedBackend) -> (Self, mpsc::UnboundedReceiver<String>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self { gate: Some((tx, Semaphore::new(0))), ..Self::new(inner) }, rx)
    }

    fn release(&self, permits: usize) {
        if let Some((_, gate)) = &self.gate {
            gate.add_permits(permits);
        }
    }

    fn record(&self, phase: &str, agent: &Agent) {
        self.calls.lock().unwrap().push((
            phase.to_owned(),
            agent.id.to_string(),
            agent.profile.to_string(),
            agent.persona.as_ref().map(ToString::to_string),
        ));
    }

    fn calls(&self, phase: &str) -> Vec<Call> {
        self.calls.lock().unwrap().iter().filter(|c| c.0 == phase).cloned().collect()
    }
}

#[async_trait]
impl AgentBackend for Recording {
    fn has_profile(&self, profile: &ProfileName) -> bool {
        self.inner.has_profile(profile)
    }

    async fn propose(&self, agent: &Agent, task: &Task) -> Result<Completion, AgentError> {
        self.record("propose", agent);
        if let Some((announce, gate)) = &self.gate {
            let _ = announce.send(agent.id.to_string());
            gate.acquire().await.unwrap().forget();
        }
        self.inner.propose(agent, task).await
    }

    async fn review(
        &self,
        agent: &Agent,
        task: &Task,
        proposal: &str,
        tests: &TestOutcome,
    ) -> Result<ReviewReply, AgentError> {
        self.record("review", agent);
        self.inner.review(agent, task, proposal, tests).await
    }

    async fn revise(
        &self,
        agent: &Agent,
        task: &Task,
        current: &str,
        tests: &TestOutcome,
        reviews: &[Review],
    ) -> Result<Completion, AgentError> {
        self.record("revise", agent);
        self.inner.revise(agent, task, current, tests, reviews).await
    }

    async fn select(
        &self,
        agent: &Agent,
        task: &Task,
        candidates: &[String],
    ) -> Result<Selection, AgentError> {
        self.record("select", agent);
        self.inner.select(agent, task, candidates).await
    }
}

fn request(role: &str) -> pb::DeliberateRequest {
    pb::DeliberateRequest {
        task_description: "Add rate limiting to the public REST API".into(),
        role: role.into(),
        constraints: Some(pb::TaskConstraints {
            requirements: vec!["limit requests per API key".into(), "return 429 with Retry-After".into()],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn register(agent_id: &str, role: &str, profile: &str, persona: &str) -> pb::RegisterAgentRequest {
    pb::RegisterAgentRequest {
        agent_id: agent_id.into(),
        role: role.into(),
        capabilities: Some(pb::AgentCapabilities { model_profile: profile.into(), ..Default::default() }),
        persona: persona.into(),
        ..Default::default()
    }
}

const ALICE_PERSONA: &str = "You favour boring technology.";

/// Registers alice (fast, with a persona), bob (big) and carol (fast) on the DEV council and
/// returns its id.
async fn dev_council(app: &mut TestApp) -> String {
    let alice = app.client.register_agent(register("alice", "DEV", "fast", ALICE_PERSONA)).await.unwrap();
    let council_id = alice.into_inner().council_id;
    for (id, profile) in [("bob", "big"), ("carol", "fast")] {
        let joined = app.client.register_agent(register(id, "DEV", profile, "")).await.unwrap().into_inner();
        assert_eq!(joined.council_id, council_id);
    }
    council_id
}

fn authors(results: &[pb::DeliberationResult]) -> BTreeMap<String, String> {
    results
        .iter()
        .map(|r| {
            let p = r.proposal.as_ref().unwrap();
            (p.author_id.clone(), p.model_profile.clone())
        })
        .collect()
}

fn expected_dev_seats() -> BTreeMap<String, String> {
    [("alice", "fast"), ("bob", "big"), ("carol", "fast")]
        .into_iter()
        .map(|(a, p)| (a.into(), p.into()))
        .collect()
}

fn tag<'a>(metadata: Option<&'a pb::OrchestratorMetadata>, key: &str) -> &'a str {
    metadata.unwrap().tags[key].as_str()
}

fn assert_status(result: Result<impl std::fmt::Debug, tonic::Status>, code: Code, message_start: &str) {
    let status = result.unwrap_err();
    assert_eq!(status.code(), code, "{}", status.message());
    assert!(
        status.message().starts_with(message_start),
        "{:?} does not start with {message_start:?}",
        status.message()
    );
}

#[tokio::test]
async fn the_registry_lifecycle_over_grpc() {
    let mut app = spawn_app(Some(Arc::new(Recording::new(ScriptedBackend::new())))).await;
    let c = &mut app.client;

    let created = c
        .create_council(pb::CreateCouncilRequest {
            role: "qa".into(),
            num_agents: 3,
            config: Some(pb::CouncilConfig {
                deliberation_rounds: 2,
                model_profiles: vec!["fast".into(), "big".into()],
                persona: "You think in failure modes.".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (created.agents_created, created.agent_ids.clone()),
        (3, vec!["qa-1".into(), "qa-2".into(), "qa-3".into()])
    );
    assert_status(
        c.create_council(pb::CreateCouncilRequest { role: "QA".into(), ..Default::default() }).await,
        Code::AlreadyExists,
        "role: QA has a standing council already",
    );

    let registered = c.register_agent(register("alice", "DEV", "", "")).await.unwrap().into_inner();
    assert!(registered.success && !registered.council_id.is_empty());
    assert_ne!(registered.council_id, created.council_id);
    assert!(registered.message.contains("alice"), "{}", registered.message);

    let listed = c.list_councils(pb::ListCouncilsRequest::default()).await.unwrap().into_inner().councils;
    let summary: Vec<_> = listed.iter().map(|i| (i.role.as_str(), i.num_agents, i.agents.len())).collect();
    assert_eq!(summary, [("DEV", 1, 0), ("QA", 3, 0)], "agents only when asked");
    let qa = &listed[1];
    assert_eq!(
        (qa.council_id.as_str(), qa.model.as_str(), qa.deliberation_rounds, qa.enable_peer_review),
        (created.council_id.as_str(), "big,fast", 2, true)
    );
    let with_agents = c
        .list_councils(pb::ListCouncilsRequest { role_filter: "qa".into(), include_agents: true })
        .await
        .unwrap()
        .into_inner()
        .councils;
    assert_eq!(with_agents.len(), 1);
    let agents: Vec<_> = with_agents[0]
        .agents
        .iter()
        .map(|a| {
            (
                a.agent_id.as_str(),
                a.capabilities.as_ref().unwrap().model_profile.as_str(),
                a.status.as_str(),
                a.persona.as_str(),
            )
        })
        .collect();
    assert_eq!(
        agents,
        [
            ("qa-1", "fast", "ACTIVE", "You think in failure modes."),
            ("qa-2", "big", "ACTIVE", "You think in failure modes."),
            ("qa-3", "fast", "ACTIVE", "You think in failure modes.")
        ]
    );
    let data =
        c.list_councils(pb::ListCouncilsRequest { role_filter: "DATA".into(), include_agents: true }).await;
    assert!(data.unwrap().into_inner().councils.is_empty());

    let drained = c
        .set_agent_status(pb::SetAgentStatusRequest { agent_id: "qa-2".into(), status: "draining".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(drained.agent.unwrap().status, "DRAINING");
    let removed =
        c.unregister_agent(pb::UnregisterAgentRequest { agent_id: "qa-2".into(), role: "QA".into() }).await;
    assert!(removed.unwrap().into_inner().success);
    assert_status(
        c.unregister_agent(pb::UnregisterAgentRequest { agent_id: "alice".into(), role: String::new() })
            .await,
        Code::FailedPrecondition,
        "agent_id: \"alice\" is the last agent of council",
    );

    let deleted = c
        .delete_council(pb::DeleteCouncilRequest {
            council_id: created.council_id.clone(),
            role: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.agent_ids, ["qa-1", "qa-3"]);
    let deleted =
        c.delete_council(pb::DeleteCouncilRequest { council_id: String::new(), role: "dev".into() }).await;
    assert_eq!(deleted.unwrap().into_inner().agent_ids, ["alice"]);
    assert!(
        c.list_councils(pb::ListCouncilsRequest::default()).await.unwrap().into_inner().councils.is_empty()
    );
    assert_status(
        c.delete_council(pb::DeleteCouncilRequest {
            council_id: created.council_id.clone(),
            role: String::new(),
        })
        .await,
        Code::NotFound,
        "council_id: no council",
    );
}

#[tokio::test]
async fn every_bad_input_answers_its_code_with_the_field_named() {
    let mut app = spawn_app(Some(Arc::new(Recording::new(ScriptedBackend::new())))).await;
    let c = &mut app.client;
    c.register_agent(register("taken", "DATA", "", "")).await.unwrap();

    let create = |role: &str, num_agents: i32, config: Option<pb::CouncilConfig>| pb::CreateCouncilRequest {
        role: role.into(),
        num_agents,
        config,
    };
    let config = |f: fn(&mut pb::CouncilConfig)| {
        let mut c = pb::CouncilConfig { enable_peer_review: true, ..Default::default() };
        f(&mut c);
        Some(c)
    };
    for (request, code, start) in [
        (create("", 3, None), Code::InvalidArgument, "role: is required"),
        (create("CEO", 3, None), Code::InvalidArgument, "role: unknown role \"CEO\""),
        (create("DEV", 17, None), Code::InvalidArgument, "num_agents: must be within 1..=16, got 17"),
        (create("DEV", -1, None), Code::InvalidArgument, "num_agents: must be within 1..=16, got -1"),
        (
            create("DEV", 2, config(|c| c.deliberation_rounds = 6)),
            Code::InvalidArgument,
            "config.deliberation_rounds: must be within 0..=5",
        ),
        (
            create("DEV", 2, config(|c| c.model_profile = "gpu".into())),
            Code::InvalidArgument,
            "config.model_profile: unknown model profile \"gpu\"",
        ),
        (
            create("DEV", 2, config(|c| c.model_profiles = vec!["fast".into(), "gpu".into()])),
            Code::InvalidArgument,
            "config.model_profiles[1]: unknown model profile \"gpu\"",
        ),
        (
            create("DEV", 2, config(|c| c.persona = "\u{1}".into())),
            Code::InvalidArgument,
            "config.persona: invalid control character",
        ),
        (create("DATA", 2, None), Code::AlreadyExists, "role: DATA has a standing council already"),
    ] {
        assert_status(c.create_council(request).await, code, start);
    }

    let caps = |f: fn(&mut pb::AgentCapabilities)| {
        let mut caps = pb::AgentCapabilities::default();
        f(&mut caps);
        pb::RegisterAgentRequest {
            agent_id: "x".into(),
            role: "DEV".into(),
            capabilities: Some(caps),
            ..Default::default()
        }
    };
    for (request, code, start) in [
        (register("", "DEV", "", ""), Code::InvalidArgument, "agent_id: must not be empty"),
        (register("a b", "DEV", "", ""), Code::InvalidArgument, "agent_id: invalid character ' '"),
        (register("x", "nope", "", ""), Code::InvalidArgument, "role: unknown role \"nope\""),
        (
            register("x", "DEV", "gpu", ""),
            Code::InvalidArgument,
            "capabilities.model_profile: unknown model profile \"gpu\"",
        ),
        (
            register("x", "DEV", "a/b", ""),
            Code::InvalidArgument,
            "capabilities.model_profile: invalid character '/'",
        ),
        (register("x", "DEV", "", " "), Code::InvalidArgument, "persona: must not be blank"),
        (
            caps(|c| c.max_concurrent_tasks = -1),
            Code::InvalidArgument,
            "capabilities.max_concurrent_tasks: must be within",
        ),
        (
            caps(|c| c.supported_tasks = vec![String::new()]),
            Code::InvalidArgument,
            "capabilities.supported_tasks[0]: must not be blank",
        ),
        (
            register("taken", "DEV", "", ""),
            Code::AlreadyExists,
            "agent_id: agent \"taken\" is registered already, on the DATA council",
        ),
    ] {
        assert_status(c.register_agent(request).await, code, start);
    }
    let many = (0..33).map(|i| (format!("k{i}"), "v".to_owned())).collect::<HashMap<_, _>>();
    assert_status(
        c.register_agent(pb::RegisterAgentRequest { metadata: many, ..register("x", "DEV", "", "") }).await,
        Code::InvalidArgument,
        "metadata: at most 32 entries",
    );

    let unregister = |agent_id: &str, role: &str| pb::UnregisterAgentRequest {
        agent_id: agent_id.into(),
        role: role.into(),
    };
    assert_status(
        c.unregister_agent(unregister("ghost", "")).await,
        Code::NotFound,
        "agent_id: no registered agent \"ghost\"",
    );
    assert_status(
        c.unregister_agent(unregister("taken", "QA")).await,
        Code::InvalidArgument,
        "role: agent \"taken\" is DATA, not QA",
    );
    assert_status(
        c.unregister_agent(unregister("taken", "")).await,
        Code::FailedPrecondition,
        "agent_id: \"taken\" is the last agent",
    );
    assert_status(
        c.unregister_agent(unregister("", "")).await,
        Code::InvalidArgument,
        "agent_id: must not be empty",
    );

    let list =
        |role_filter: &str| pb::ListCouncilsRequest { role_filter: role_filter.into(), include_agents: true };
    assert_status(
        c.list_councils(list("admins")).await,
        Code::InvalidArgument,
        "role_filter: unknown role \"admins\"",
    );

    let delete = |council_id: &str, role: &str| pb::DeleteCouncilRequest {
        council_id: council_id.into(),
        role: role.into(),
    };
    assert_status(c.delete_council(delete("", "")).await, Code::InvalidArgument, "council_id: is required");
    assert_status(
        c.delete_council(delete("c", "DEV")).await,
        Code::InvalidArgument,
        "council_id: set council_id or role, not both",
    );
    assert_status(c.delete_council(delete("nope", "")).await, Code::NotFound, "council_id: no council nope");
    assert_status(
        c.delete_council(delete("", "QA")).await,
        Code::NotFound,
        "role: QA has no standing council",
    );

    let status = |agent_id: &str, status: &str| pb::SetAgentStatusRequest {
        agent_id: agent_id.into(),
        status: status.into(),
    };
    assert_status(
        c.set_agent_status(status("taken", "BUSY")).await,
        Code::InvalidArgument,
        "status: unknown agent status \"BUSY\"",
    );
    assert_status(
        c.set_agent_status(status("ghost", "DRAINING")).await,
        Code::NotFound,
        "agent_id: no registered agent",
    );
    assert_status(
        c.set_agent_status(status("taken", "DRAINING")).await,
        Code::FailedPrecondition,
        "status: council",
    );

    assert_status(
        c.get_metrics(pb::GetMetricsRequest { metric_type: String::new(), time_range_ms: -1 }).await,
        Code::InvalidArgument,
        "time_range_ms: must not be negative",
    );
}

#[tokio::test]
async fn every_deliberation_rpc_seats_exactly_the_standing_councils_agents_and_profiles() {
    let backend = Arc::new(Recording::new(ScriptedBackend::new()));
    let mut app = spawn_app(Some(backend.clone())).await;
    let council_id = dev_council(&mut app).await;

    let response = app.client.deliberate(request("DEV")).await.unwrap().into_inner();
    assert_eq!(authors(&response.results), expected_dev_seats());
    assert_eq!(tag(response.metadata.as_ref(), "council_id"), council_id);
    assert_eq!(tag(response.metadata.as_ref(), "rounds"), "1", "the council's default rounds");
    for result in &response.results {
        let p = result.proposal.as_ref().unwrap();
        assert!(
            p.content.contains(&format!(" on {}:", p.model_profile)),
            "ran on its profile: {}",
            p.content
        );
    }
    let proposals: BTreeSet<_> = backend.calls("propose").into_iter().collect();
    let expected: BTreeSet<Call> =
        [("alice", "fast", Some(ALICE_PERSONA.to_owned())), ("bob", "big", None), ("carol", "fast", None)]
            .into_iter()
            .map(|(a, p, persona)| ("propose".to_owned(), a.to_owned(), p.to_owned(), persona))
            .collect();
    assert_eq!(proposals, expected, "the backend was called for exactly the council's agents");
    let reviewers: BTreeSet<_> = backend.calls("review").into_iter().map(|c| c.1).collect();
    assert_eq!(reviewers, ["alice", "bob", "carol"].map(String::from).into());

    let stored = app
        .client
        .get_deliberation_result(pb::GetDeliberationResultRequest { task_id: response.task_id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(authors(&stored.results), expected_dev_seats(), "stored results name the real agents");
    assert_eq!(tag(stored.metadata.as_ref(), "council_id"), council_id);

    let orchestrated = app
        .client
        .orchestrate(pb::OrchestrateRequest {
            task_description: "Add rate limiting to the public REST API".into(),
            role: "DEV".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let candidates: BTreeSet<_> =
        orchestrated.candidates.iter().map(|r| r.proposal.as_ref().unwrap().author_id.clone()).collect();
    assert_eq!(candidates, ["alice", "bob", "carol"].map(String::from).into());
    assert_eq!(tag(orchestrated.metadata.as_ref(), "council_id"), council_id);

    let mut stream = app.client.stream_deliberation(request("dev")).await.unwrap().into_inner();
    let mut streamed = BTreeSet::new();
    while let Some(update) = stream.next().await {
        let update = update.unwrap();
        if let Some(partial) = update.partial_result {
            streamed.insert(partial.proposal.unwrap().author_id);
        }
    }
    assert_eq!(streamed, ["alice", "bob", "carol"].map(String::from).into());

    let submitted = app.client.submit_deliberation(request("DEV")).await.unwrap().into_inner();
    let done = wait_until_done(&mut app, &submitted.task_id).await;
    assert_eq!(authors(&done.results), expected_dev_seats());
}

#[tokio::test]
async fn a_request_choosing_its_council_or_rounds_overrides_the_standing_council_for_that_deliberation() {
    let mut app = spawn_app(Some(Arc::new(Recording::new(ScriptedBackend::new())))).await;
    let council_id = dev_council(&mut app).await;

    let sized = app
        .client
        .deliberate(pb::DeliberateRequest { num_agents: Some(2), ..request("DEV") })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<_> = authors(&sized.results).into_keys().collect();
    assert_eq!(ids, ["dev-1", "dev-2"]);
    assert_eq!(tag(sized.metadata.as_ref(), "council_id"), "ad-hoc");

    let profiled = app
        .client
        .deliberate(pb::DeliberateRequest { agent_profiles: vec!["big".into()], ..request("DEV") })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(profiled.results.len(), 3);
    assert!(profiled.results.iter().all(|r| r.proposal.as_ref().unwrap().model_profile == "big"));
    assert_eq!(tag(profiled.metadata.as_ref(), "council_id"), "ad-hoc");

    let no_review = app
        .client
        .deliberate(pb::DeliberateRequest { rounds: Some(0), ..request("DEV") })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(authors(&no_review.results), expected_dev_seats(), "rounds alone keeps the council");
    assert_eq!(tag(no_review.metadata.as_ref(), "council_id"), council_id);
    assert!(no_review.results.iter().all(|r| r.reviews.is_empty()));

    // The next request without overrides is seated from the council again.
    let again = app.client.deliberate(request("DEV")).await.unwrap().into_inner();
    assert_eq!(authors(&again.results), expected_dev_seats());
}

#[tokio::test]
async fn registry_changes_during_a_running_deliberation_leave_it_intact() {
    let (backend, mut entered) = Recording::gated(ScriptedBackend::new());
    let backend = Arc::new(backend);
    let mut app = spawn_app(Some(backend.clone())).await;
    dev_council(&mut app).await;

    let mut client = app.client.clone();
    let running = tokio::spawn(async move { client.deliberate(request("DEV")).await });
    let mut seated = BTreeSet::new();
    for _ in 0..3 {
        seated.insert(entered.recv().await.unwrap());
    }
    assert_eq!(seated, ["alice", "bob", "carol"].map(String::from).into());

    // While its agents are proposing, bob leaves and dave joins.
    app.client
        .unregister_agent(pb::UnregisterAgentRequest { agent_id: "bob".into(), role: "DEV".into() })
        .await
        .unwrap();
    app.client.register_agent(register("dave", "DEV", "big", "")).await.unwrap();
    backend.release(3);
    let response = running.await.unwrap().unwrap().into_inner();
    assert_eq!(authors(&response.results), expected_dev_seats(), "the seats it started with");
    let reviewers: BTreeSet<_> = backend.calls("review").into_iter().map(|c| c.1).collect();
    assert!(reviewers.contains("bob") && !reviewers.contains("dave"), "{reviewers:?}");

    // The next deliberation is seated from the changed council.
    let mut client = app.client.clone();
    let next = tokio::spawn(async move { client.deliberate(request("DEV")).await });
    for _ in 0..3 {
        entered.recv().await.unwrap();
    }
    backend.release(3);
    let response = next.await.unwrap().unwrap().into_inner();
    let ids: Vec<_> = authors(&response.results).into_keys().collect();
    assert_eq!(ids, ["alice", "carol", "dave"]);

    // Deleting the council mid-deliberation leaves that one intact too.
    let mut client = app.client.clone();
    let last = tokio::spawn(async move { client.deliberate(request("DEV")).await });
    for _ in 0..3 {
        entered.recv().await.unwrap();
    }
    app.client
        .delete_council(pb::DeleteCouncilRequest { council_id: String::new(), role: "DEV".into() })
        .await
        .unwrap();
    backend.release(3);
    let response = last.await.unwrap().unwrap().into_inner();
    let ids: Vec<_> = authors(&response.results).into_keys().collect();
    assert_eq!(ids, ["alice", "carol", "dave"]);
}

#[tokio::test]
async fn metrics_after_k_deliberations_give_each_agents_count_wins_and_mean_score() {
    const K: usize = 4;
    let backend = Arc::new(Recording::new(ScriptedBackend::new().failing(&["carol"])));
    let mut app = spawn_app(Some(backend)).await;
    let council_id = dev_council(&mut app).await;

    let mut scores: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut wins: BTreeMap<String, i64> = BTreeMap::new();
    let mut winner_scores = Vec::new();
    for _ in 0..K {
        let response = app.client.deliberate(request("DEV")).await.unwrap().into_inner();
        assert_eq!(response.failures.len(), 1);
        for r in &response.results {
            scores.entry(r.proposal.as_ref().unwrap().author_id.clone()).or_default().push(r.score);
        }
        *wins.entry(response.winner_id).or_default() += 1;
        winner_scores.push(response.results[0].score);
    }
    // One ad-hoc deliberation whose agents share no id with the council's: it does not count.
    app.client.deliberate(pb::DeliberateRequest { num_agents: Some(2), ..request("DEV") }).await.unwrap();

    let metrics = app.client.get_metrics(pb::GetMetricsRequest::default()).await.unwrap().into_inner();
    let per_agent = metrics.agents.unwrap().per_agent;
    let by_id: BTreeMap<_, _> = per_agent.iter().map(|a| (a.agent_id.as_str(), a)).collect();
    assert_eq!(by_id.keys().copied().collect::<Vec<_>>(), ["alice", "bob", "carol"]);
    for id in ["alice", "bob"] {
        let a = by_id[id];
        let record = a.record.unwrap();
        let expected_mean = scores[id].iter().sum::<f64>() / K as f64;
        assert_eq!(
            (a.council_id.as_str(), a.status.as_str(), a.busy),
            (council_id.as_str(), "ACTIVE", false)
        );
        assert_eq!((record.deliberations, record.failures), (K as i64, 0), "{id}");
        assert_eq!(record.wins, wins.get(id).copied().unwrap_or(0), "{id}");
        assert!(
            (record.mean_score.unwrap() - expected_mean).abs() < 1e-9,
            "{id}: {record:?} vs {expected_mean}"
        );
        let usage = record.usage.unwrap();
        // Each deliberation: a proposal, a review and a revision of 100 + 50 tokens each.
        assert_eq!(
            (usage.calls, usage.prompt_tokens, usage.completion_tokens),
            (3 * K as i64, 300 * K as i64, 150 * K as i64),
            "{id}"
        );
        assert!(record.mean_response_ms.is_some());
    }
    assert_eq!(by_id["alice"].record.unwrap().wins + by_id["bob"].record.unwrap().wins, K as i64);
    let carol = by_id["carol"].record.unwrap();
    assert_eq!(
        (carol.deliberations, carol.wins, carol.failures, carol.mean_score),
        (K as i64, 0, K as i64, None)
    );

    let health = &metrics.councils.unwrap().health_per_council[&council_id];
    assert_eq!((health.status.as_str(), health.available_agents, health.busy_agents), ("AVAILABLE", 3, 0));
    assert_eq!((health.role.as_str(), health.success_rate), ("DEV", 1.0));
    let performance = health.performance.unwrap();
    assert_eq!(
        (performance.deliberations, performance.wins, performance.failures),
        (K as i64, K as i64, K as i64)
    );
    let winner_mean = winner_scores.iter().sum::<f64>() / K as f64;
    assert!((performance.mean_score.unwrap() - winner_mean).abs() < 1e-9, "{performance:?} vs {winner_mean}");
    assert_eq!(
        performance.usage.unwrap().calls,
        7 * K as i64,
        "2 × 3 calls of the survivors and carol's failed call"
    );
}

/// Sends `authorization: Bearer <token>` on every call.
#[derive(Clone)]
struct Bearer(&'static str);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let value: tonic::metadata::MetadataValue<_> = format!("Bearer {}", self.0).parse().unwrap();
        request.metadata_mut().insert("authorization", value);
        Ok(request)
    }
}

#[tokio::test]
async fn with_authentication_only_admins_change_the_registry_and_everyone_reads_it() {
    const ALICE: &str = "alice-token-0123456789";
    const OPS: &str = "ops-token-0123456789abc";
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("alice {ALICE}\nops {OPS} admin\n")).unwrap();
    let app = orchestrator_tests::spawn_app_with(
        move |c| orchestrator_server::Config { auth_tokens_file: Some(tokens), ..c },
        Some(Arc::new(Recording::new(ScriptedBackend::new()))),
    )
    .await;
    let as_token = |token| {
        let channel = app.channel();
        async move {
            pb::orchestrator_service_client::OrchestratorServiceClient::with_interceptor(
                channel.await,
                Bearer(token),
            )
        }
    };
    let mut alice = as_token(ALICE).await;
    let mut ops = as_token(OPS).await;

    let denied = "alice may not change the council registry";
    assert_status(alice.register_agent(register("a", "DEV", "", "")).await, Code::PermissionDenied, denied);
    assert_status(
        alice.create_council(pb::CreateCouncilRequest { role: "DEV".into(), ..Default::default() }).await,
        Code::PermissionDenied,
        denied,
    );
    let council_id = ops.register_agent(register("a", "DEV", "", "")).await.unwrap().into_inner().council_id;
    ops.register_agent(register("b", "DEV", "", "")).await.unwrap();
    let unregister = pb::UnregisterAgentRequest { agent_id: "a".into(), role: String::new() };
    assert_status(alice.unregister_agent(unregister.clone()).await, Code::PermissionDenied, denied);
    let drain = pb::SetAgentStatusRequest { agent_id: "a".into(), status: "DRAINING".into() };
    assert_status(alice.set_agent_status(drain).await, Code::PermissionDenied, denied);
    let delete = pb::DeleteCouncilRequest { council_id: council_id.clone(), role: String::new() };
    assert_status(alice.delete_council(delete.clone()).await, Code::PermissionDenied, denied);

    // Reading is open to every authenticated caller, and a non-admin's deliberation is seated too.
    let listed = alice.list_councils(pb::ListCouncilsRequest::default()).await.unwrap().into_inner();
    assert_eq!(listed.councils[0].council_id, council_id);
    let response = alice.deliberate(request("DEV")).await.unwrap().into_inner();
    assert_eq!(authors(&response.results).into_keys().collect::<Vec<_>>(), ["a", "b"]);
    let metrics = alice.get_metrics(pb::GetMetricsRequest::default()).await.unwrap().into_inner();
    assert_eq!(metrics.agents.unwrap().per_agent.len(), 2);

    ops.unregister_agent(unregister).await.unwrap();
    ops.delete_council(delete).await.unwrap();
}
