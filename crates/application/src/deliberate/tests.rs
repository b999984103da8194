use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use orchestrator_domain::{PeerScore, TaskConstraints};

use super::*;
use crate::ports::AgentError;
use crate::ports::{Completion, MockAgentBackend, MockClock, MockIdGenerator, NoProgress, ReviewReply};
use crate::testing::{SleepingBackend, scripted_backend};
use orchestrator_domain::{Agent, Phase, TokenUsage};

const SLEEP: Duration = Duration::from_secs(2);

fn task(timeout_seconds: i64) -> Task {
    let constraints = TaskConstraints::new(
        "correct, simple".into(),
        vec!["rate limit per API key".into()],
        BTreeMap::new(),
        timeout_seconds,
        0,
    )
    .unwrap();
    Task::new("Design a rate limiter", constraints).unwrap()
}

fn command(agents: usize, rounds: i64) -> DeliberateCommand {
    DeliberateCommand {
        task_id: Some(orchestrator_domain::TaskId::new("t-1").unwrap()),
        role: Role::Dev,
        task: task(0),
        rounds: Rounds::new(rounds).unwrap(),
        num_agents: agents,
        profiles: vec![],
        overrides: crate::Overrides::ALL,
        story_id: None,
    }
}

fn use_case(backend: Option<Arc<dyn AgentBackend>>) -> Deliberate {
    let mut clock = MockClock::new();
    clock.expect_now_ms().return_const(1_000_i64);
    let mut ids = MockIdGenerator::new();
    ids.expect_new_id().return_const("generated-id".to_owned());
    Deliberate::new(
        backend,
        Arc::new(clock),
        Arc::new(ids),
        Arc::new(Counters::new(0)),
        DeliberationSettings::default(),
    )
}

fn answer(agent: &Agent) -> String {
    format!("Token bucket per API key, rate limit enforced at the gateway. Written by seat {}.", agent.seat)
}

#[tokio::test(start_paused = true)]
async fn agents_of_each_phase_run_concurrently() {
    let backend = Arc::new(SleepingBackend::new(SLEEP));
    let deliberate = use_case(Some(backend.clone()));
    let started = Instant::now();

    let report = deliberate.execute(command(5, 1), &NoProgress).await.unwrap();

    // Propose, review, revise: three phases of five agents each take one sleep, not fifteen.
    assert_eq!(started.elapsed(), 3 * SLEEP);
    assert_eq!(backend.max_in_flight.load(Ordering::SeqCst), 5);
    assert_eq!(backend.finished.load(Ordering::SeqCst), 15);
    assert_eq!(report.outcome.results.len(), 5);
    assert!(report.duration_ms >= 6_000);
}

#[tokio::test(start_paused = true)]
async fn three_rounds_take_seven_phases() {
    let backend = Arc::new(SleepingBackend::new(SLEEP));
    let deliberate = use_case(Some(backend.clone()));
    let started = Instant::now();
    let report = deliberate.execute(command(3, 3), &NoProgress).await.unwrap();
    assert_eq!(started.elapsed(), 7 * SLEEP);
    assert_eq!(report.rounds, 3);
    let winner = report.outcome.winner();
    assert_eq!(winner.reviews.len(), 3);
    assert_eq!(winner.proposal.revisions().len(), 3);
    assert_eq!(winner.peer_score, Some(7.0));
    // Every call counted: 1 proposal + 3 reviews written + 3 revisions per agent.
    assert_eq!(report.outcome.usage.calls, 21);
    assert_eq!(report.outcome.usage.prompt_tokens, 30);
}

#[tokio::test(start_paused = true)]
async fn deadline_ends_the_deliberation_and_names_the_phase() {
    let backend = Arc::new(SleepingBackend::new(Duration::from_secs(10)));
    let deliberate = use_case(Some(backend.clone()));
    let mut cmd = command(3, 1);
    cmd.task = task(15);
    let started = Instant::now();

    let err = deliberate.execute(cmd, &NoProgress).await.unwrap_err();

    assert_eq!(started.elapsed(), Duration::from_secs(15));
    assert_eq!(
        err.to_string(),
        "deliberation exceeded its 15s deadline while reviewing (round 1); the proposals finished by then are \
         kept as partial results (GetDeliberationResult)"
    );
    // The three reviews in flight at the deadline were abandoned, not awaited.
    assert_eq!(backend.abandoned.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_future_cancels_outstanding_calls() {
    let backend = Arc::new(SleepingBackend::new(Duration::from_secs(60)));
    let deliberate = Arc::new(use_case(Some(backend.clone())));
    let running = {
        let deliberate = Arc::clone(&deliberate);
        tokio::spawn(async move { deliberate.execute(command(4, 1), &NoProgress).await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(backend.in_flight.load(Ordering::SeqCst), 4);

    running.abort();
    assert!(running.await.unwrap_err().is_cancelled());

    assert_eq!(backend.in_flight.load(Ordering::SeqCst), 0);
    assert_eq!(backend.abandoned.load(Ordering::SeqCst), 4);
    assert_eq!(backend.finished.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn review_assignment_rotates_and_hides_the_author() {
    let mut backend = scripted_backend();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    backend.expect_review().returning(move |agent, _, proposal, _| {
        log.lock().unwrap().push((agent.id.to_string(), proposal.to_owned()));
        Ok(ReviewReply {
            critique: "ok".into(),
            score: Some(PeerScore::new(5.0).unwrap()),
            ..Default::default()
        })
    });
    let deliberate = use_case(Some(Arc::new(backend)));

    deliberate.execute(command(3, 2), &NoProgress).await.unwrap();

    let seen = seen.lock().unwrap().clone();
    let reviewed = |reviewer: &str, round: usize| -> String {
        seen.iter().filter(|(r, _)| r == reviewer).nth(round).unwrap().1.clone()
    };
    // Round 1: dev-1 reviews dev-2's plan; round 2: dev-1 reviews dev-3's (revised) plan.
    assert!(reviewed("dev-1", 0).ends_with("plan dev-2"), "{seen:?}");
    assert!(reviewed("dev-1", 1).contains("plan dev-3"), "{seen:?}");
    assert!(reviewed("dev-3", 0).ends_with("plan dev-1"), "{seen:?}");
    assert!(reviewed("dev-3", 1).contains("plan dev-2"), "{seen:?}");
    assert_eq!(seen.len(), 6);
}

#[tokio::test]
async fn failing_agent_is_dropped_and_reported_not_replaced() {
    let mut backend = MockAgentBackend::new();
    backend.expect_has_profile().return_const(true);
    backend.expect_propose().returning(|agent, _| {
        if agent.id.as_str() == "dev-2" {
            Err(AgentError::Unavailable("connection refused".into()))
        } else {
            Ok(Completion { text: answer(agent), usage: TokenUsage::default(), truncated: false })
        }
    });
    backend
        .expect_review()
        .returning(|_, _, _, _| Ok(ReviewReply { critique: "ok".into(), ..Default::default() }));
    backend.expect_revise().returning(|_, _, c, _, _| {
        Ok(Completion { text: c.to_owned(), usage: TokenUsage::default(), truncated: false })
    });
    let deliberate = use_case(Some(Arc::new(backend)));

    let report = deliberate.execute(command(3, 1), &NoProgress).await.unwrap();

    let authors: Vec<_> = report.outcome.results.iter().map(|r| r.agent.id.to_string()).collect();
    assert_eq!(authors.len(), 2);
    assert!(!authors.contains(&"dev-2".to_owned()));
    assert_eq!(report.outcome.failures.len(), 1);
    assert_eq!(report.outcome.failures[0].agent.as_str(), "dev-2");
    assert_eq!(report.outcome.failures[0].phase, Phase::Proposing);
    assert_eq!(report.outcome.failures[0].reason, "backend unavailable: connection refused");
}

#[tokio::test]
async fn every_agent_failing_is_an_error_listing_each_failure() {
    let mut backend = MockAgentBackend::new();
    backend.expect_has_profile().return_const(true);
    backend.expect_propose().returning(|_, _| Err(AgentError::Timeout(Duration::from_secs(3))));
    let deliberate = use_case(Some(Arc::new(backend)));

    let err = deliberate.execute(command(2, 1), &NoProgress).await.unwrap_err();

    let ApplicationError::AllAgentsFailed { failures } = &err else { panic!("unexpected {err:?}") };
    assert_eq!(failures.len(), 2);
    assert_eq!(
        err.to_string(),
        "every agent failed: dev-1 (propose): timed out after 3000ms; dev-2 (propose): timed out after 3000ms"
    );
    assert_eq!(deliberate.counters.snapshot().failed_deliberations, 1);
}

#[tokio::test]
async fn every_agent_refused_credentials_is_a_configuration_fault_naming_the_profile() {
    let mut backend = MockAgentBackend::new();
    backend.expect_has_profile().return_const(true);
    backend.expect_propose().returning(|agent, _| {
        Err(AgentError::Unauthorized { profile: agent.profile.to_string(), status: 401, key_sent: true })
    });
    let deliberate = use_case(Some(Arc::new(backend)));

    let err = deliberate.execute(command(2, 1), &NoProgress).await.unwrap_err();

    let ApplicationError::BackendMisconfigured { profiles, failures } = &err else {
        panic!("unexpected {err:?}")
    };
    assert_eq!(profiles, &["default".to_owned()]);
    assert_eq!(failures.len(), 2);
    assert!(err.to_string().contains("profile(s) \"default\""), "{err}");
}

#[tokio::test]
async fn a_configuration_fault_among_other_failures_is_still_all_agents_failed() {
    let mut backend = MockAgentBackend::new();
    backend.expect_has_profile().return_const(true);
    backend.expect_propose().returning(|agent, _| {
        if agent.id.as_str() == "dev-1" {
            Err(AgentError::Unauthorized { profile: agent.profile.to_string(), status: 403, key_sent: false })
        } else {
            Err(AgentError::Timeout(Duration::from_secs(3)))
        }
    });
    let deliberate = use_case(Some(Arc::new(backend)));

    let err = deliberate.execute(command(2, 1), &NoProgress).await.unwrap_err();

    assert!(matches!(err, ApplicationError::AllAgentsFailed { .. }), "{err:?}");
}

#[tokio::test]
async fn without_a_backend_nothing_is_invented() {
    let deliberate = use_case(None);
    let err = deliberate.execute(command(3, 1), &NoProgress).await.unwrap_err();
    assert!(matches!(err, ApplicationError::BackendNotConfigured));
    assert!(err.to_string().contains("ORCHESTRATOR_LLM_BASE_URL"));
}

#[tokio::test]
async fn unknown_profiles_are_rejected_before_any_call() {
    let mut backend = MockAgentBackend::new();
    backend.expect_has_profile().returning(|p| p.as_str() == "default");
    backend.expect_propose().never();
    let deliberate = use_case(Some(Arc::new(backend)));
    let mut cmd = command(2, 1);
    cmd.profiles = vec![ProfileName::new("default").unwrap(), ProfileName::new("gpt-9").unwrap()];
    let err = deliberate.execute(cmd, &NoProgress).await.unwrap_err();
    assert_eq!(err.to_string(), "agent_profiles: unknown model profile \"gpt-9\"");
}

#[tokio::test]
async fn generated_task_id_is_used_when_none_is_given() {
    let deliberate = use_case(Some(Arc::new(SleepingBackend::default())));
    let mut cmd = command(2, 0);
    cmd.task_id = None;
    assert_eq!(deliberate.execute(cmd, &NoProgress).await.unwrap().task_id, "generated-id");
}

#[tokio::test]
async fn progress_is_reported_after_every_phase() {
    #[derive(Default)]
    struct Phases(std::sync::Mutex<Vec<String>>);
    #[async_trait]
    impl ProgressObserver for Phases {
        async fn phase_completed(&self, task_id: &orchestrator_domain::TaskId, d: &Deliberation) {
            self.0.lock().unwrap().push(format!("{task_id}:{}", d.phase()));
        }
    }
    let phases = Phases::default();
    let deliberate = use_case(Some(Arc::new(SleepingBackend::default())));
    deliberate.execute(command(2, 1), &phases).await.unwrap();
    assert_eq!(
        *phases.0.lock().unwrap(),
        ["t-1:reviewing (round 1)", "t-1:revising (round 1)", "t-1:scoring", "t-1:completed"]
    );
}

#[tokio::test]
async fn a_restored_deliberation_continues_from_its_saved_phase() {
    let mut backend = MockAgentBackend::new();
    backend.expect_has_profile().return_const(true);
    backend.expect_propose().never();
    backend.expect_review().times(3).returning(|_, _, _, _| {
        Ok(ReviewReply {
            critique: "ok".into(),
            score: Some(PeerScore::new(8.0).unwrap()),
            ..Default::default()
        })
    });
    backend.expect_revise().times(3).returning(|_, _, c, _, _| {
        Ok(Completion { text: format!("{c} v2"), usage: TokenUsage::default(), truncated: false })
    });
    let deliberate = use_case(Some(Arc::new(backend)));
    let (task_id, mut saved) = deliberate.prepare(command(3, 1)).await.unwrap();
    for agent in saved.proposal_requests() {
        saved.record_proposal(&agent.id, answer(&agent), 0).unwrap();
    }
    saved.advance().unwrap();

    let (timeout, deadline) = deliberate.deadline_for(&saved);
    let report = deliberate.run(&task_id, "alice", saved, timeout, deadline, &NoProgress).await.unwrap();

    assert_eq!(report.outcome.results.len(), 3);
    for result in &report.outcome.results {
        assert_eq!(result.proposal.revisions().len(), 1);
        assert!(result.proposal.content().ends_with(" v2"));
        assert_eq!(result.peer_score, Some(8.0));
    }
}
