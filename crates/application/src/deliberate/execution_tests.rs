//! Execution feedback in the loop, with a scripted backend and a scripted test runner.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use orchestrator_domain::{
    AcceptanceTests, CaseOutcome, Escalation, Path, PeerScore, TaskConstraints, TestCase, TestLanguage,
    TestReport,
};

use super::*;
use crate::ports::AgentError;
use crate::ports::{Completion, MockClock, MockIdGenerator, NoProgress, ReviewReply, Selection};
use orchestrator_domain::{Agent, Review, TestOutcome};

const BUGGY: &str = "Adds two numbers.\n```python\ndef add(a, b):\n    return abs(a) + abs(b)\n```";
const CORRECT: &str = "Adds two numbers.\n```python\ndef add(a, b):\n    return a + b\n```";
/// Reads beautifully to the reviewers, never passes.
const ELOQUENT: &str = "An elegant, well documented, production ready adder with thorough error handling.\n```python\ndef add(a, b):\n    return 0\n```";

/// Passes code containing `return a + b`; otherwise `test_negative` fails.
struct ScriptedRunner {
    runs: AtomicU64,
}

#[async_trait]
impl TestRunner for ScriptedRunner {
    fn supports(&self, language: TestLanguage) -> bool {
        language == TestLanguage::Python
    }

    fn can_run(&self) -> bool {
        true
    }

    async fn run(&self, _tests: &AcceptanceTests, content: &str) -> TestOutcome {
        self.runs.fetch_add(1, Ordering::SeqCst);
        let negative = if content.contains("return a + b") {
            TestCase::new("test_negative", CaseOutcome::Passed, "", "")
        } else {
            TestCase::new(
                "test_negative",
                CaseOutcome::Failed,
                "assert add(-1, -1) == -2",
                "File \"acceptance_tests.py\", line 5, in test_negative\nAssertionError",
            )
        };
        TestOutcome::Ran(TestReport::from_cases(
            vec![TestCase::new("test_positive", CaseOutcome::Passed, "", ""), negative],
            "",
        ))
    }
}

/// dev-1 proposes buggy code and fixes it when revising; dev-2 proposes eloquent code that never
/// passes and keeps it. Reviewers grade eloquence: 9 for dev-2's, 4 for the rest.
#[derive(Default)]
struct Scripted {
    calls: AtomicU64,
    /// (reviewer, report shown) of every review call.
    reviews_seen: Mutex<Vec<(String, String)>>,
    /// (author, report shown) of every revision call.
    revisions_seen: Mutex<Vec<(String, String)>>,
    /// Grade given to code that passes (to test the early stop).
    grade_of_passing: Option<f64>,
    /// Revising correct code breaks it (to test that the better version is kept).
    breaks_correct_code: bool,
    /// dev-1 proposes correct code (to test a cascade's first answer).
    first_is_correct: bool,
    /// (agent, first answer, its report) of every proposal made after a cascade escalated.
    escalations_seen: Mutex<Vec<(String, String, String)>>,
}

#[async_trait]
impl AgentBackend for Scripted {
    fn has_profile(&self, _profile: &ProfileName) -> bool {
        true
    }

    async fn propose(&self, agent: &Agent, _task: &Task) -> std::result::Result<Completion, AgentError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let text = match agent.seat {
            0 if self.first_is_correct => CORRECT,
            0 => BUGGY,
            1 => ELOQUENT,
            _ => CORRECT,
        };
        Ok(Completion { text: text.to_owned(), ..Completion::default() })
    }

    async fn propose_after(
        &self,
        agent: &Agent,
        task: &Task,
        escalation: &Escalation,
    ) -> std::result::Result<Completion, AgentError> {
        let seen = (agent.id.to_string(), escalation.first_answer.clone(), escalation.tests.render());
        self.escalations_seen.lock().unwrap().push(seen);
        self.propose(agent, task).await
    }

    async fn review(
        &self,
        agent: &Agent,
        _task: &Task,
        proposal: &str,
        tests: &TestOutcome,
    ) -> std::result::Result<ReviewReply, AgentError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.reviews_seen.lock().unwrap().push((agent.id.to_string(), tests.render()));
        let grade = match (proposal.contains("elegant"), tests.passed(), self.grade_of_passing) {
            (true, _, _) => 9.0,
            (false, Some(true), Some(grade)) => grade,
            _ => 4.0,
        };
        Ok(ReviewReply {
            critique: "ok".into(),
            score: Some(PeerScore::new(grade).unwrap()),
            ..Default::default()
        })
    }

    async fn revise(
        &self,
        agent: &Agent,
        _task: &Task,
        current: &str,
        tests: &TestOutcome,
        _reviews: &[Review],
    ) -> std::result::Result<Completion, AgentError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.revisions_seen.lock().unwrap().push((agent.id.to_string(), tests.render()));
        let text = match current {
            BUGGY => CORRECT,
            CORRECT if self.breaks_correct_code => BUGGY,
            _ => current,
        };
        Ok(Completion { text: text.to_owned(), ..Completion::default() })
    }

    async fn select(
        &self,
        _agent: &Agent,
        _task: &Task,
        _candidates: &[String],
    ) -> std::result::Result<Selection, AgentError> {
        Err(AgentError::Unavailable("no selection here".into()))
    }
}

fn tested_command(agents: usize, rounds: i64) -> DeliberateCommand {
    let tests = AcceptanceTests::new(
        "python",
        "from solution import add\n\ndef test_positive():\n    assert add(1, 2) == 3\n\ndef test_negative():\n    assert add(-1, -1) == -2\n".into(),
    )
    .unwrap();
    let constraints = TaskConstraints::new(String::new(), vec![], BTreeMap::new(), 0, 0)
        .unwrap()
        .with_acceptance_tests(tests);
    DeliberateCommand {
        task_id: Some(orchestrator_domain::TaskId::new("t-1").unwrap()),
        role: Role::Dev,
        task: Task::new("Write add(a, b) in Python", constraints).unwrap(),
        rounds: Rounds::new(rounds).unwrap(),
        num_agents: agents,
        profiles: vec![],
        overrides: crate::Overrides::ALL,
        story_id: None,
    }
}

/// The use case over `backend` and `runner`, with the early stop on (`tests_and_reviews`) or off.
fn deliberate(backend: Arc<Scripted>, runner: Option<Arc<ScriptedRunner>>, early_stop: bool) -> Deliberate {
    let early_stop = if early_stop { EarlyStop::TestsAndReviews } else { EarlyStop::Off };
    deliberate_with(backend, runner, DeliberationSettings { early_stop, ..DeliberationSettings::default() })
}

fn deliberate_with(
    backend: Arc<Scripted>,
    runner: Option<Arc<ScriptedRunner>>,
    settings: DeliberationSettings,
) -> Deliberate {
    let mut clock = MockClock::new();
    clock.expect_now_ms().return_const(1_000_i64);
    let mut ids = MockIdGenerator::new();
    ids.expect_new_id().return_const("generated-id".to_owned());
    let use_case =
        Deliberate::new(Some(backend), Arc::new(clock), Arc::new(ids), Arc::new(Counters::new(0)), settings);
    match runner {
        Some(runner) => use_case.with_test_runner(runner),
        None => use_case,
    }
}

fn runner() -> Arc<ScriptedRunner> {
    Arc::new(ScriptedRunner { runs: AtomicU64::new(0) })
}

#[tokio::test]
async fn a_failing_proposal_whose_revision_passes_ranks_its_author_first() {
    let backend = Arc::new(Scripted::default());
    let runner = runner();
    let report = deliberate(Arc::clone(&backend), Some(Arc::clone(&runner)), true)
        .execute(tested_command(2, 1), &NoProgress)
        .await
        .unwrap();
    let winner = report.outcome.winner();
    assert_eq!(winner.agent.id.as_str(), "dev-1", "the fixed code beats the eloquent failure");
    assert_eq!(winner.checks.tests.passed(), Some(true));
    assert_eq!(winner.checks.revision_tests.len(), 1);
    assert_eq!(winner.checks.revision_tests[0].passed(), Some(false), "its first version failed");
    let runner_up = &report.outcome.results[1];
    assert_eq!(runner_up.agent.id.as_str(), "dev-2");
    assert!(runner_up.peer_score > winner.peer_score, "peers preferred the eloquent one");
    // Two first versions and two revisions were run.
    assert_eq!(runner.runs.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn a_revision_that_breaks_passing_code_gives_way_to_the_passing_version() {
    // dev-3 proposes correct code and breaks it when revising.
    let backend = Arc::new(Scripted { breaks_correct_code: true, ..Scripted::default() });
    let runner = runner();
    let report = deliberate(Arc::clone(&backend), Some(Arc::clone(&runner)), false)
        .execute(tested_command(3, 1), &NoProgress)
        .await
        .unwrap();
    let dev3 = report.outcome.results.iter().find(|r| r.agent.id.as_str() == "dev-3").unwrap();
    assert_eq!(dev3.proposal.content(), CORRECT, "the passing version is the final one");
    assert_eq!(dev3.proposal.revisions(), [CORRECT, BUGGY], "the broken revision stays in the history");
    assert_eq!(dev3.checks.tests.passed(), Some(true));
    let history: Vec<_> = dev3.checks.revision_tests.iter().map(TestOutcome::passed).collect();
    assert_eq!(history, [Some(true), Some(false)]);
    assert_eq!(runner.runs.load(Ordering::SeqCst), 6, "the kept version is not run again");
}

#[tokio::test]
async fn reviewers_see_the_failing_tests_of_the_proposal_they_review() {
    let backend = Arc::new(Scripted::default());
    deliberate(Arc::clone(&backend), Some(runner()), true)
        .execute(tested_command(2, 1), &NoProgress)
        .await
        .unwrap();
    let seen = backend.reviews_seen.lock().unwrap().clone();
    // dev-2 reviews dev-1's buggy code in round 1.
    let (_, report) = seen.iter().find(|(reviewer, _)| reviewer == "dev-2").unwrap();
    assert!(report.contains("FAILED test_negative: assert add(-1, -1) == -2"), "{report}");
    assert!(report.starts_with("1 passed, 1 failed, 0 errored"), "{report}");
}

#[tokio::test]
async fn authors_revise_with_their_own_failures() {
    let backend = Arc::new(Scripted::default());
    deliberate(Arc::clone(&backend), Some(runner()), true)
        .execute(tested_command(2, 1), &NoProgress)
        .await
        .unwrap();
    let seen = backend.revisions_seen.lock().unwrap().clone();
    let (_, own) = seen.iter().find(|(author, _)| author == "dev-1").unwrap();
    assert!(own.contains("FAILED test_negative: assert add(-1, -1) == -2"), "{own}");
    assert!(own.contains("line 5, in test_negative"), "the traceback comes along: {own}");
}

#[tokio::test]
async fn without_a_runner_tests_are_not_run_and_say_why() {
    let backend = Arc::new(Scripted::default());
    let report = deliberate(Arc::clone(&backend), None, true)
        .execute(tested_command(2, 1), &NoProgress)
        .await
        .unwrap();
    for result in &report.outcome.results {
        assert_eq!(result.checks.tests, TestOutcome::no_sandbox());
        assert_eq!(result.checks.revision_tests, [TestOutcome::no_sandbox()]);
    }
    assert_eq!(report.outcome.calls_saved, 0);
}

#[tokio::test]
async fn early_stop_saves_exactly_the_calls_it_reports() {
    // Three agents, three rounds; dev-3 proposes passing code that every reviewer grades 8.
    let full = Arc::new(Scripted { grade_of_passing: Some(8.0), ..Scripted::default() });
    let all_rounds = deliberate(Arc::clone(&full), Some(runner()), false)
        .execute(tested_command(3, 3), &NoProgress)
        .await
        .unwrap();
    assert_eq!(all_rounds.outcome.calls_saved, 0);
    let calls_without = full.calls.load(Ordering::SeqCst);
    assert_eq!(calls_without, 3 + 3 * (3 + 3));

    let stopped = Arc::new(Scripted { grade_of_passing: Some(8.0), ..Scripted::default() });
    let early = deliberate(Arc::clone(&stopped), Some(runner()), true)
        .execute(tested_command(3, 3), &NoProgress)
        .await
        .unwrap();
    let calls_with = stopped.calls.load(Ordering::SeqCst);
    assert_eq!(calls_with, 3 + 3, "proposals and one review round");
    assert_eq!(early.outcome.usage.calls, calls_with);
    assert_eq!(early.outcome.calls_saved, calls_without - calls_with);
    assert_eq!(early.outcome.winner().agent.id.as_str(), "dev-3");
}

#[tokio::test]
async fn an_answer_cut_at_the_token_limit_is_flagged_in_lint() {
    let mut backend = crate::ports::MockAgentBackend::new();
    backend.expect_has_profile().return_const(true);
    backend.expect_propose().returning(|agent, _| {
        // Captured from SmolLM2-135M at max_tokens: the code stops mid-expression.
        let cut = agent.seat == 0;
        let text = if cut {
            "Here is a function that adds two numbers:\n\n```python\ndef add(a, b):\n    return a +"
                .to_owned()
        } else {
            CORRECT.to_owned()
        };
        Ok(Completion { text, truncated: cut, ..Completion::default() })
    });
    let mut clock = MockClock::new();
    clock.expect_now_ms().return_const(1_000_i64);
    let mut ids = MockIdGenerator::new();
    ids.expect_new_id().return_const("generated-id".to_owned());
    let use_case = Deliberate::new(
        Some(Arc::new(backend)),
        Arc::new(clock),
        Arc::new(ids),
        Arc::new(Counters::new(0)),
        DeliberationSettings::default(),
    );
    let report = use_case.execute(tested_command(2, 0), &NoProgress).await.unwrap();
    let cut = report.outcome.results.iter().find(|r| r.agent.id.as_str() == "dev-1").unwrap();
    assert!(
        cut.checks.lint.errors.iter().any(|e| e == orchestrator_domain::checks::TRUNCATED_ERROR),
        "{:?}",
        cut.checks.lint
    );
    assert_eq!(report.outcome.winner().agent.id.as_str(), "dev-2");
}

fn settings(early_stop: EarlyStop, strategy: Strategy) -> DeliberationSettings {
    DeliberationSettings { early_stop, strategy, ..DeliberationSettings::default() }
}

#[tokio::test]
async fn the_tests_stop_makes_no_call_once_a_proposal_passes() {
    // dev-3 proposes passing code: no review, no revision of any of the three rounds.
    let backend = Arc::new(Scripted::default());
    let report =
        deliberate_with(Arc::clone(&backend), Some(runner()), settings(EarlyStop::Tests, Strategy::Council))
            .execute(tested_command(3, 3), &NoProgress)
            .await
            .unwrap();
    assert_eq!(backend.calls.load(Ordering::SeqCst), 3, "the three proposals only");
    assert_eq!(report.outcome.usage.calls, 3);
    assert_eq!(report.outcome.calls_saved, 3 * (3 + 3), "three rounds of reviews and revisions");
    assert_eq!(report.outcome.winner().agent.id.as_str(), "dev-3", "the passing version wins");
    assert_eq!(report.outcome.path, Path::Council);
}

#[tokio::test]
async fn a_task_can_ask_for_its_own_early_stop_and_strategy() {
    let backend = Arc::new(Scripted { first_is_correct: true, ..Scripted::default() });
    let mut command = tested_command(3, 1);
    let constraints = command.task.constraints().clone().with_strategy(Some(Strategy::Cascade));
    command.task = Task::new(command.task.description(), constraints).unwrap();
    let report =
        deliberate_with(Arc::clone(&backend), Some(runner()), settings(EarlyStop::Off, Strategy::Council))
            .execute(command, &NoProgress)
            .await
            .unwrap();
    assert_eq!(report.outcome.path, Path::CascadeFirstAnswer, "the task's strategy, not the server's");
}

#[tokio::test]
async fn a_cascade_whose_first_answer_passes_ends_after_that_one_call() {
    let backend = Arc::new(Scripted { first_is_correct: true, ..Scripted::default() });
    let report =
        deliberate_with(Arc::clone(&backend), Some(runner()), settings(EarlyStop::Off, Strategy::Cascade))
            .execute(tested_command(3, 1), &NoProgress)
            .await
            .unwrap();
    assert_eq!(backend.calls.load(Ordering::SeqCst), 1);
    assert_eq!(report.outcome.path, Path::CascadeFirstAnswer);
    assert_eq!(report.outcome.results.len(), 1);
    assert_eq!(report.outcome.calls_saved, 2 + 3 + 3, "two proposals and a round of reviews and revisions");
    assert_eq!(report.outcome.winner().checks.tests.passed(), Some(true));
}

#[tokio::test]
async fn a_cascade_whose_first_answer_fails_brings_in_the_council_shown_the_failing_tests() {
    let backend = Arc::new(Scripted::default());
    let report =
        deliberate_with(Arc::clone(&backend), Some(runner()), settings(EarlyStop::Off, Strategy::Cascade))
            .execute(tested_command(3, 1), &NoProgress)
            .await
            .unwrap();
    assert_eq!(report.outcome.path, Path::CascadeEscalated);
    assert_eq!(report.outcome.results.len(), 3);
    // 3 proposals (one first), then a full round: 3 reviews and 3 revisions.
    assert_eq!(backend.calls.load(Ordering::SeqCst), 3 + 3 + 3);
    let seen = backend.escalations_seen.lock().unwrap().clone();
    let joined: Vec<&str> = seen.iter().map(|(agent, _, _)| agent.as_str()).collect();
    assert_eq!(joined, ["dev-2", "dev-3"], "the rest of the council joined");
    for (_, first_answer, report) in &seen {
        assert_eq!(first_answer, BUGGY);
        assert!(report.contains("FAILED test_negative"), "{report}");
    }
}

#[tokio::test]
async fn an_escalated_cascade_with_the_tests_stop_ends_once_a_joiner_passes() {
    let backend = Arc::new(Scripted::default());
    let report =
        deliberate_with(Arc::clone(&backend), Some(runner()), settings(EarlyStop::Tests, Strategy::Cascade))
            .execute(tested_command(3, 2), &NoProgress)
            .await
            .unwrap();
    assert_eq!(backend.calls.load(Ordering::SeqCst), 3, "dev-1 first, then dev-2 and dev-3; dev-3 passes");
    assert_eq!(report.outcome.path, Path::CascadeEscalated);
    assert_eq!(report.outcome.winner().agent.id.as_str(), "dev-3");
    assert_eq!(report.outcome.calls_saved, 2 * (3 + 3));
}

#[tokio::test]
async fn a_cascade_without_tests_is_a_plain_council() {
    let backend = Arc::new(Scripted { first_is_correct: true, ..Scripted::default() });
    let mut command = tested_command(2, 0);
    command.task = Task::new("Write add(a, b)", TaskConstraints::default()).unwrap();
    let report =
        deliberate_with(Arc::clone(&backend), Some(runner()), settings(EarlyStop::Tests, Strategy::Cascade))
            .execute(command, &NoProgress)
            .await
            .unwrap();
    assert_eq!(report.outcome.path, Path::Council);
    assert_eq!(backend.calls.load(Ordering::SeqCst), 2, "both agents proposed at once");
}
