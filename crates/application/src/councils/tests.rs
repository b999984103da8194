use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use orchestrator_domain::{Council, DeliberationStatus, PeerScore, Task, TaskConstraints, TokenUsage};

use super::*;
use crate::counters::Counters;
use crate::deliberate::{Deliberate, DeliberateCommand, DeliberationSettings};
use crate::jobs::{JobSettings, Jobs, Recovery};
use crate::ports::{
    Completion, DeliberationStore, Lease, MockAgentBackend, MockClock, MockIdGenerator, NewDeliberation,
    NoProgress, ReviewReply,
};
use crate::seating::Overrides;
use crate::testing::{InMemoryStore, revising_by_appending};

/// A backend with the profiles `default`, `fast` and `big` whose agents propose
/// "plan of <agent id>" and grade every proposal 7; it logs who was called on which profile
/// with which persona.
fn backend(calls: Arc<Mutex<Vec<String>>>) -> MockAgentBackend {
    let mut backend = MockAgentBackend::new();
    backend.expect_has_profile().returning(|p| ["default", "fast", "big"].contains(&p.as_str()));
    let log = Arc::clone(&calls);
    backend.expect_propose().returning(move |agent, _| {
        let persona = agent.persona.as_ref().map_or("-", Persona::as_str);
        log.lock().unwrap().push(format!("{} on {} as {persona}", agent.id, agent.profile));
        Ok(Completion {
            text: format!("plan of {}", agent.id),
            usage: TokenUsage { prompt_tokens: 10, completion_tokens: 5, ..TokenUsage::default() },
            truncated: false,
        })
    });
    backend.expect_review().returning(|_, _, _, _| {
        Ok(ReviewReply {
            critique: "ok".into(),
            score: Some(PeerScore::new(7.0).unwrap()),
            ..Default::default()
        })
    });
    revising_by_appending(&mut backend);
    backend
}

struct Fixture {
    store: Arc<InMemoryStore>,
    councils: Councils,
    deliberate: Arc<Deliberate>,
    calls: Arc<Mutex<Vec<String>>>,
}

/// A clock stopped at `now_ms`.
fn clock_at(now_ms: i64) -> Arc<MockClock> {
    let mut clock = MockClock::new();
    clock.expect_now_ms().return_const(now_ms);
    Arc::new(clock)
}

/// An id generator that always answers `id`.
fn ids_always(id: &str) -> Arc<MockIdGenerator> {
    let mut ids = MockIdGenerator::new();
    ids.expect_new_id().return_const(id.to_owned());
    Arc::new(ids)
}

fn fixture() -> Fixture {
    let store = Arc::new(InMemoryStore::default());
    let calls = Arc::new(Mutex::new(Vec::new()));
    let backend: Arc<dyn AgentBackend> = Arc::new(backend(Arc::clone(&calls)));
    let clock: Arc<dyn Clock> = clock_at(5_000);
    let mut ids = MockIdGenerator::new();
    let counter = AtomicUsize::new(0);
    ids.expect_new_id().returning(move || format!("id-{}", counter.fetch_add(1, Ordering::SeqCst)));
    let ids: Arc<dyn IdGenerator> = Arc::new(ids);
    let deliberate = Deliberate::new(
        Some(Arc::clone(&backend)),
        Arc::clone(&clock),
        Arc::clone(&ids),
        Arc::new(Counters::new(0)),
        DeliberationSettings::default(),
    )
    .with_councils(store.clone());
    let councils = Councils::new(store.clone(), Some(backend), clock, ids);
    Fixture { store, councils, deliberate: Arc::new(deliberate), calls }
}

fn profile(name: &str) -> ProfileName {
    ProfileName::new(name).unwrap()
}

fn agent(id: &str) -> AgentId {
    AgentId::new(id).unwrap()
}

fn create(role: Role, agents: usize, profiles: &[&str], rounds: i64) -> CreateCouncilCommand {
    CreateCouncilCommand {
        role,
        num_agents: agents,
        profiles: profiles.iter().map(|p| profile(p)).collect(),
        profiles_field: "config.model_profiles",
        rounds: Rounds::new(rounds).unwrap(),
        persona: None,
    }
}

fn register(id: &str, role: Role, profile_name: Option<&str>) -> RegisterAgentCommand {
    RegisterAgentCommand {
        agent_id: agent(id),
        role,
        profile: profile_name.map(profile),
        persona: None,
        capabilities: Capabilities::default(),
        metadata: AgentMetadata::default(),
    }
}

fn deliberation(role: Role, overrides: Overrides) -> DeliberateCommand {
    DeliberateCommand {
        task_id: None,
        role,
        task: Task::new("Design a rate limiter", TaskConstraints::default()).unwrap(),
        rounds: Rounds::new(1).unwrap(),
        num_agents: Council::DEFAULT_AGENTS,
        profiles: vec![],
        overrides,
        story_id: None,
    }
}

fn ids(council: &StandingCouncil) -> Vec<(&str, &str)> {
    council.members().iter().map(|m| (m.id.as_str(), m.profile.as_str())).collect()
}

#[tokio::test]
async fn create_seats_generated_agents_on_cycled_profiles_once_per_role() {
    let f = fixture();
    let council = f.councils.create(create(Role::Qa, 3, &["fast", "big"], 2)).await.unwrap();
    assert_eq!(council.id().as_str(), "id-0");
    assert_eq!(ids(&council), [("qa-1", "fast"), ("qa-2", "big"), ("qa-3", "fast")]);
    assert_eq!((council.rounds().get(), council.created_at_ms()), (2, 5_000));

    let err = f.councils.create(create(Role::Qa, 1, &[], 1)).await.unwrap_err();
    assert!(matches!(err, ApplicationError::Conflict { ref field, .. } if field == "role"), "{err:?}");
    let err = f.councils.create(create(Role::Dev, 2, &["fast", "gpu"], 1)).await.unwrap_err();
    assert_eq!(err.to_string(), "config.model_profiles[1]: unknown model profile \"gpu\"");
    let single =
        CreateCouncilCommand { profiles_field: "config.model_profile", ..create(Role::Dev, 1, &["gpu"], 1) };
    assert_eq!(
        f.councils.create(single).await.unwrap_err().to_string(),
        "config.model_profile: unknown model profile \"gpu\""
    );
    assert_eq!(f.councils.list(None).await.unwrap().len(), 1, "refused creations stored nothing");
}

#[tokio::test]
async fn register_creates_the_role_council_then_joins_it_and_refuses_bad_input() {
    let f = fixture();
    let first = f.councils.register(register("alice", Role::Dev, Some("fast"))).await.unwrap();
    let second = f.councils.register(register("bob", Role::Dev, None)).await.unwrap();
    assert_eq!(first.id(), second.id());
    assert_eq!(ids(&second), [("alice", "fast"), ("bob", "default")]);
    assert_eq!(second.rounds(), Rounds::DEFAULT);

    let err = f.councils.register(register("alice", Role::Qa, None)).await.unwrap_err();
    assert!(matches!(err, ApplicationError::Conflict { ref field, .. } if field == "agent_id"), "{err:?}");
    let err = f.councils.register(register("carol", Role::Dev, Some("gpu"))).await.unwrap_err();
    assert_eq!(err.to_string(), "capabilities.model_profile: unknown model profile \"gpu\"");
    assert!(f.councils.list(Some(Role::Qa)).await.unwrap().is_empty());

    let unconfigured = Councils::new(f.store.clone(), None, clock_at(0), ids_always("x"));
    let err = unconfigured.register(register("dave", Role::Dev, None)).await.unwrap_err();
    assert!(matches!(err, ApplicationError::BackendNotConfigured), "{err:?}");
}

#[tokio::test]
async fn list_filters_by_role() {
    let f = fixture();
    f.councils.create(create(Role::Dev, 1, &[], 1)).await.unwrap();
    f.councils.create(create(Role::Data, 2, &[], 1)).await.unwrap();
    let roles =
        |councils: Vec<StandingCouncil>| councils.iter().map(StandingCouncil::role).collect::<Vec<_>>();
    assert_eq!(roles(f.councils.list(None).await.unwrap()), [Role::Dev, Role::Data]);
    assert_eq!(roles(f.councils.list(Some(Role::Data)).await.unwrap()), [Role::Data]);
    assert!(f.councils.list(Some(Role::Qa)).await.unwrap().is_empty());
}

#[tokio::test]
async fn unregister_drain_and_delete_name_their_errors() {
    let f = fixture();
    let council = f.councils.create(create(Role::Dev, 2, &[], 1)).await.unwrap();
    let err = f.councils.unregister(&agent("ghost"), None).await.unwrap_err();
    assert!(matches!(err, ApplicationError::Missing { ref field, .. } if field == "agent_id"), "{err:?}");
    let err = f.councils.unregister(&agent("dev-1"), Some(Role::Qa)).await.unwrap_err();
    assert_eq!(err.to_string(), "role: agent \"dev-1\" is DEV, not QA");

    let (_, drained) = f.councils.set_status(&agent("dev-1"), AgentStatus::Draining).await.unwrap();
    assert_eq!(drained.status, AgentStatus::Draining);
    let err = f.councils.unregister(&agent("dev-2"), None).await.unwrap_err();
    assert!(
        matches!(err, ApplicationError::FailedPrecondition(ref m) if m.starts_with("status: ")),
        "{err:?}"
    );
    let (council_id, removed) = f.councils.unregister(&agent("dev-1"), Some(Role::Dev)).await.unwrap();
    assert_eq!((&council_id, removed.id.as_str()), (council.id(), "dev-1"));
    let err = f.councils.unregister(&agent("dev-2"), None).await.unwrap_err();
    assert!(
        matches!(err, ApplicationError::FailedPrecondition(ref m) if m.starts_with("agent_id: ")),
        "{err:?}"
    );

    let err = f.councils.delete(&CouncilSelector::Role(Role::Qa)).await.unwrap_err();
    assert!(matches!(err, ApplicationError::Missing { ref field, .. } if field == "role"), "{err:?}");
    let deleted = f.councils.delete(&CouncilSelector::Id(council.id().clone())).await.unwrap();
    assert_eq!(deleted.members().len(), 1);
    let err = f.councils.delete(&CouncilSelector::Id(council.id().clone())).await.unwrap_err();
    assert!(matches!(err, ApplicationError::Missing { ref field, .. } if field == "council_id"), "{err:?}");
    f.councils.register(register("dev-2", Role::Dev, None)).await.unwrap();
}

#[tokio::test]
async fn declared_councils_are_created_once_and_left_alone_afterwards() {
    let f = fixture();
    let declared = DeclaredCouncil {
        role: Role::Architect,
        rounds: Rounds::new(0).unwrap(),
        agents: vec![
            (agent("arch-a"), profile("fast"), Some(Persona::new("You think in interfaces.").unwrap())),
            (agent("arch-b"), profile("big"), None),
        ],
    };
    assert_eq!(f.councils.declare(std::slice::from_ref(&declared)).await.unwrap(), [Role::Architect]);
    let before = f.councils.list(None).await.unwrap();
    assert_eq!(ids(&before[0]), [("arch-a", "fast"), ("arch-b", "big")]);
    assert!(!before[0].peer_review());

    // A restart declares it again: nothing is created, not even with a changed declaration.
    let changed = DeclaredCouncil { rounds: Rounds::new(3).unwrap(), ..declared.clone() };
    assert!(f.councils.declare(&[declared, changed]).await.unwrap().is_empty());
    assert_eq!(f.councils.list(None).await.unwrap(), before);

    let taken = DeclaredCouncil {
        role: Role::Qa,
        rounds: Rounds::DEFAULT,
        agents: vec![(agent("arch-a"), profile("fast"), None)],
    };
    let err = f.councils.declare(&[taken]).await.unwrap_err();
    assert!(matches!(err, ApplicationError::Conflict { ref field, .. } if field == "agent_id"), "{err:?}");
}

#[tokio::test]
async fn prepare_seats_the_standing_council_with_its_profiles_personas_and_rounds() {
    let f = fixture();
    f.councils.create(create(Role::Dev, 3, &["fast", "big"], 2)).await.unwrap();
    let persona = Persona::new("You always ask for a rollback plan.").unwrap();
    f.councils
        .register(RegisterAgentCommand {
            persona: Some(persona.clone()),
            ..register("ops", Role::Devops, Some("big"))
        })
        .await
        .unwrap();

    let (_, d) = f.deliberate.prepare(deliberation(Role::Dev, Overrides::default())).await.unwrap();
    let seats: Vec<_> = d.council().agents().iter().map(|a| (a.id.as_str(), a.profile.as_str())).collect();
    assert_eq!(seats, [("dev-1", "fast"), ("dev-2", "big"), ("dev-3", "fast")]);
    assert_eq!(d.council().id().map(CouncilId::as_str), Some("id-0"));
    assert_eq!(d.rounds(), 2, "the council's default rounds");

    let explicit = Overrides { rounds: true, council: false };
    let (_, d) = f.deliberate.prepare(deliberation(Role::Dev, explicit)).await.unwrap();
    assert_eq!((d.rounds(), d.council().len()), (1, 3), "the request's rounds win");

    let (_, d) = f.deliberate.prepare(deliberation(Role::Dev, Overrides::ALL)).await.unwrap();
    assert_eq!(d.council().id(), None, "an explicit council is ad hoc");
    assert_eq!(d.council().agents()[0].profile.as_str(), "default");

    let (_, d) = f.deliberate.prepare(deliberation(Role::Qa, Overrides::default())).await.unwrap();
    assert_eq!((d.council().id(), d.council().len()), (None, 3), "a role without a council seats ad hoc");

    let report =
        f.deliberate.execute(deliberation(Role::Devops, Overrides::default()), &NoProgress).await.unwrap();
    assert_eq!(report.outcome.winner().agent.id.as_str(), "ops");
    assert_eq!(report.council_id.as_ref().map(CouncilId::as_str), Some("id-1"));
    assert_eq!(*f.calls.lock().unwrap(), ["ops on big as You always ask for a rollback plan."]);
}

#[tokio::test]
async fn draining_agents_are_not_seated_in_new_deliberations() {
    let f = fixture();
    f.councils.create(create(Role::Dev, 3, &[], 1)).await.unwrap();
    f.councils.set_status(&agent("dev-2"), AgentStatus::Draining).await.unwrap();
    let (_, d) = f.deliberate.prepare(deliberation(Role::Dev, Overrides::default())).await.unwrap();
    let seated: Vec<_> = d.council().agents().iter().map(|a| (a.id.as_str(), a.seat)).collect();
    assert_eq!(seated, [("dev-1", 0), ("dev-3", 1)]);
}

#[tokio::test]
async fn a_standing_council_on_a_profile_no_longer_configured_is_refused() {
    let f = fixture();
    f.councils.create(create(Role::Dev, 1, &["big"], 1)).await.unwrap();
    let mut narrow = MockAgentBackend::new();
    narrow.expect_has_profile().returning(|p| p.as_str() == "default");
    let deliberate = Deliberate::new(
        Some(Arc::new(narrow)),
        clock_at(0),
        ids_always("t"),
        Arc::new(Counters::new(0)),
        DeliberationSettings::default(),
    )
    .with_councils(f.store.clone());
    let err = deliberate.prepare(deliberation(Role::Dev, Overrides::default())).await.unwrap_err();
    assert!(
        matches!(err, ApplicationError::FailedPrecondition(ref m) if m.contains("model profile \"big\", which is not configured")),
        "{err:?}"
    );
}

/// Jobs over the fixture's deliberate use case and store.
fn jobs(f: &Fixture) -> Arc<Jobs> {
    Arc::new(Jobs::new(Arc::clone(&f.deliberate), f.store.clone(), clock_at(5_000), JobSettings::default()))
}

#[tokio::test]
async fn a_submitted_deliberation_stores_its_seats_and_resumes_with_them_after_the_council_changed() {
    let f = fixture();
    let council = f.councils.create(create(Role::Data, 2, &["fast"], 0)).await.unwrap();
    let (task_id, d) = f.deliberate.prepare(deliberation(Role::Data, Overrides::default())).await.unwrap();
    let request = NewDeliberation {
        task_id: task_id.clone(),
        role: Role::Data,
        task: d.task().clone(),
        rounds: 1,
        num_agents: 3,
        profiles: vec![],
        created_at_ms: 1,
        principal: "team-a".into(),
        seats: None,
        story_id: None,
    }
    .with_seats(&d);
    assert_eq!((request.rounds, request.num_agents), (1, 3), "what the client sent stays");
    assert_eq!(request.seats.as_ref().map(|s| s.rounds), Some(0), "the council's rounds");
    assert_eq!(request.council_id(), Some(council.id()));

    // The process that stored it died before running it; meanwhile the council changed.
    f.store.create(&request, &Lease { owner: "dead".into(), until_ms: 0 }, None).await.unwrap();
    f.councils.register(register("late-joiner", Role::Data, None)).await.unwrap();
    f.councils.unregister(&agent("data-1"), None).await.unwrap();

    let jobs = jobs(&f);
    assert_eq!(jobs.recover().await.unwrap(), Recovery { resumed: 1, interrupted: 0 });
    jobs.shutdown(Duration::from_secs(5)).await;
    let record = f.store.get(&task_id).await.unwrap().unwrap();
    assert_eq!(record.status, DeliberationStatus::Completed);
    let mut authors: Vec<_> =
        record.outcome.unwrap().results.iter().map(|r| r.agent.id.to_string()).collect();
    authors.sort();
    assert_eq!(authors, ["data-1", "data-2"], "the seats it was submitted with");
    assert_eq!(record.request.council_id(), Some(council.id()));
}

#[tokio::test]
async fn records_count_each_agent_of_standing_deliberations_only() {
    let f = fixture();
    f.councils.create(create(Role::Qa, 2, &[], 0)).await.unwrap();
    let jobs = jobs(&f);
    for _ in 0..3 {
        jobs.run(&crate::Caller::anonymous(), deliberation(Role::Qa, Overrides::default()), None)
            .await
            .unwrap();
    }
    jobs.run(&crate::Caller::anonymous(), deliberation(Role::Qa, Overrides::ALL), None).await.unwrap();
    let report = f.councils.report(None).await.unwrap();
    let qa1 = &report.records.agents[&agent("qa-1")];
    let qa2 = &report.records.agents[&agent("qa-2")];
    assert_eq!((qa1.deliberations(), qa2.deliberations()), (3, 3), "the ad-hoc qa-1 and qa-2 do not count");
    assert_eq!(qa1.wins + qa2.wins, 3);
    let council = &report.records.councils[report.registry.councils()[0].id()];
    assert_eq!((council.completed, council.success_rate()), (3, Some(1.0)));
    assert_eq!(council.usage.prompt_tokens, 3 * 2 * 10);
    assert!(report.records.busy.is_empty());
    assert!(f.councils.report(Some(6_000)).await.unwrap().records.agents.is_empty(), "all created at 5000");
}
