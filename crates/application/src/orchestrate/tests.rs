use std::collections::BTreeMap;
use std::sync::Arc;

use orchestrator_domain::{PeerScore, Role, Rounds, Task, TaskConstraints};

use super::*;
use crate::counters::Counters;
use crate::deliberate::{Deliberate, DeliberationSettings};
use crate::jobs::JobSettings;
use crate::ports::{AgentError, MockAgentBackend, MockClock, MockIdGenerator, ReviewReply, Selection};
use crate::testing::tid;
use crate::testing::{InMemoryStore, scripted_backend};

fn orchestrate(backend: MockAgentBackend) -> Orchestrate {
    orchestrate_testing(backend, None)
}

fn orchestrate_testing(
    backend: MockAgentBackend,
    runner: Option<Arc<dyn crate::ports::TestRunner>>,
) -> Orchestrate {
    let mut clock = MockClock::new();
    clock.expect_now_ms().return_const(1_000_i64);
    let clock: Arc<dyn crate::ports::Clock> = Arc::new(clock);
    let mut ids = MockIdGenerator::new();
    ids.expect_new_id().return_const("generated-id".to_owned());
    let deliberate = Deliberate::new(
        Some(Arc::new(backend)),
        Arc::clone(&clock),
        Arc::new(ids),
        Arc::new(Counters::new(0)),
        DeliberationSettings::default(),
    );
    let deliberate = Arc::new(match runner {
        Some(runner) => deliberate.with_test_runner(runner),
        None => deliberate,
    });
    Orchestrate::new(Arc::new(Jobs::new(
        deliberate,
        Arc::new(InMemoryStore::default()),
        clock,
        JobSettings::default(),
    )))
}

fn command(agents: usize) -> DeliberateCommand {
    let constraints = TaskConstraints::new(String::new(), vec![], BTreeMap::new(), 0, 0).unwrap();
    DeliberateCommand {
        task_id: None,
        role: Role::Architect,
        task: Task::new("Design a rate limiter", constraints).unwrap(),
        rounds: Rounds::new(1).unwrap(),
        num_agents: agents,
        profiles: vec![],
        overrides: crate::Overrides::ALL,
        story_id: None,
    }
}

/// The scripted backend whose every review grades 6/10.
fn grading_backend() -> MockAgentBackend {
    let mut backend = scripted_backend();
    backend.expect_review().returning(|_, _, _, _| {
        Ok(ReviewReply {
            critique: "ok".into(),
            score: Some(PeerScore::new(6.0).unwrap()),
            ..Default::default()
        })
    });
    backend
}

fn orchestrate_with(
    select: impl Fn() -> Result<Selection, AgentError> + Send + Sync + 'static,
) -> Orchestrate {
    let mut backend = grading_backend();
    backend
        .expect_select()
        .withf(|agent, _, candidates| agent.role == Role::Architect && candidates.len() == 3)
        .returning(move |_, _, _| select());
    orchestrate(backend)
}

fn orchestrate_command(architect_selection: bool) -> OrchestrateCommand {
    OrchestrateCommand { deliberate: command(4), architect_selection }
}

#[tokio::test]
async fn architect_choice_among_top_three_wins() {
    let orchestrate = orchestrate_with(|| {
        Ok(Selection { choice: Some(2), rationale: "simplest".into(), usage: TokenUsage::default() })
    });
    let report = orchestrate
        .execute(&crate::caller::Caller::anonymous(), orchestrate_command(true), None)
        .await
        .unwrap();
    assert_eq!(report.candidates, 3);
    assert_eq!(report.winner, 2);
    assert_eq!(report.method, SelectionMethod::Architect);
    assert_eq!(report.rationale, "simplest");
    assert_eq!(report.selection_usage.calls, 1);
}

#[tokio::test]
async fn unusable_architect_answer_falls_back_to_the_score_and_says_so() {
    let orchestrate = orchestrate_with(|| {
        Ok(Selection { choice: None, rationale: "hmm".into(), usage: TokenUsage::default() })
    });
    let report = orchestrate
        .execute(&crate::caller::Caller::anonymous(), orchestrate_command(true), None)
        .await
        .unwrap();
    assert_eq!((report.winner, report.method), (0, SelectionMethod::Score));
    assert!(report.rationale.contains("named no valid candidate"), "{}", report.rationale);

    let orchestrate = orchestrate_with(|| Err(AgentError::Unavailable("down".into())));
    let report = orchestrate
        .execute(&crate::caller::Caller::anonymous(), orchestrate_command(true), None)
        .await
        .unwrap();
    assert_eq!((report.winner, report.method), (0, SelectionMethod::Score));
    assert!(
        report.rationale.contains("architect selection failed (backend unavailable: down)"),
        "{}",
        report.rationale
    );
}

#[tokio::test]
async fn without_architect_selection_the_top_score_wins_and_no_selection_call_is_made() {
    let mut backend = scripted_backend();
    backend.expect_review().returning(|_, _, _, _| Ok(ReviewReply::default()));
    backend.expect_select().never();
    let orchestrate = orchestrate(backend);
    let report = orchestrate
        .execute(&crate::caller::Caller::anonymous(), orchestrate_command(false), None)
        .await
        .unwrap();
    assert_eq!((report.winner, report.method), (0, SelectionMethod::Score));
}

#[tokio::test]
async fn the_architect_never_overrules_the_only_proposal_that_passes_its_tests() {
    use orchestrator_domain::{
        AcceptanceTests, CaseOutcome, TestCase, TestLanguage, TestOutcome, TestReport,
    };
    let mut backend = grading_backend();
    backend.expect_select().never();
    let mut runner = crate::ports::MockTestRunner::new();
    runner.expect_supports().return_const(true);
    runner.expect_can_run().return_const(true);
    runner.expect_run().returning(|_, content| {
        let outcome =
            if content.contains("plan architect-2") { CaseOutcome::Passed } else { CaseOutcome::Failed };
        TestOutcome::Ran(TestReport::from_cases(vec![TestCase::new("test_limit", outcome, "", "")], ""))
    });
    let mut cmd = command(4);
    let tests = AcceptanceTests::new("python", "def test_limit():\n    assert True\n".into()).unwrap();
    assert_eq!(tests.language(), TestLanguage::Python);
    let constraints = cmd.task.constraints().clone().with_acceptance_tests(tests);
    cmd.task = Task::new(cmd.task.description(), constraints).unwrap();
    let report = orchestrate_testing(backend, Some(Arc::new(runner)))
        .execute(
            &crate::caller::Caller::anonymous(),
            OrchestrateCommand { deliberate: cmd, architect_selection: true },
            None,
        )
        .await
        .unwrap();
    assert_eq!(report.candidates, 1);
    assert_eq!((report.winner, report.method), (0, SelectionMethod::Score));
    assert_eq!(report.rationale, "only the best candidate passed every acceptance test; chose it");
    assert_eq!(report.deliberation.outcome.winner().agent.id.as_str(), "architect-2");
}

#[tokio::test]
async fn a_retry_answers_the_stored_choice_without_asking_the_architect_again() {
    let mut backend = grading_backend();
    // Asked once: the retry must not ask again (and might otherwise choose another winner).
    backend.expect_select().times(1).returning(|_, _, _| {
        Ok(Selection { choice: Some(1), rationale: "clearest".into(), usage: TokenUsage::default() })
    });
    let orchestrate = orchestrate(backend);
    let caller = crate::caller::Caller::anonymous();
    let mut retried = orchestrate_command(true);
    retried.deliberate.task_id = Some(orchestrator_domain::TaskId::new("orchestrated").unwrap());
    let first = orchestrate.execute(&caller, retried.clone(), None).await.unwrap();
    let again = orchestrate.execute(&caller, retried, None).await.unwrap();
    assert_eq!(
        (again.winner, again.method, again.rationale.as_str()),
        (1, SelectionMethod::Architect, "clearest")
    );
    assert_eq!(
        again.deliberation.outcome.results[again.winner],
        first.deliberation.outcome.results[first.winner]
    );
    // GetDeliberationResult names the chosen proposal, not the rank-1 one.
    let record = orchestrate.jobs.get(&caller, &tid("orchestrated")).await.unwrap();
    let chosen = first.deliberation.outcome.results[1].agent.id.to_string();
    assert_eq!(record.winner_id.as_deref(), Some(chosen.as_str()));
    let stored = record.selection.unwrap();
    assert_eq!((stored.method.as_str(), stored.winner_id.as_str()), ("architect", chosen.as_str()));
}

#[tokio::test]
async fn the_architect_uses_the_configured_selection_profile_else_the_first_seated_agents() {
    for (configured, expected) in [(Some("judge"), "judge"), (None, "default")] {
        let mut backend = scripted_backend();
        backend.expect_review().returning(|_, _, _, _| Ok(ReviewReply::default()));
        backend
            .expect_select()
            .withf(move |agent, _, _| agent.profile.as_str() == expected)
            .times(1)
            .returning(|_, _, _| {
                Ok(Selection { choice: Some(0), rationale: "ok".into(), usage: TokenUsage::default() })
            });
        let mut clock = MockClock::new();
        clock.expect_now_ms().return_const(1_000_i64);
        let clock: Arc<dyn crate::ports::Clock> = Arc::new(clock);
        let mut ids = MockIdGenerator::new();
        ids.expect_new_id().return_const("generated-id".to_owned());
        let settings = DeliberationSettings {
            selection_profile: configured.map(|p| ProfileName::new(p).unwrap()),
            ..DeliberationSettings::default()
        };
        let deliberate = Arc::new(Deliberate::new(
            Some(Arc::new(backend)),
            Arc::clone(&clock),
            Arc::new(ids),
            Arc::new(Counters::new(0)),
            settings,
        ));
        let jobs = Jobs::new(deliberate, Arc::new(InMemoryStore::default()), clock, JobSettings::default());
        let orchestrate = Orchestrate::new(Arc::new(jobs));
        let report = orchestrate
            .execute(&crate::caller::Caller::anonymous(), orchestrate_command(true), None)
            .await
            .unwrap();
        assert_eq!(report.method, SelectionMethod::Architect, "{configured:?}");
    }
}
