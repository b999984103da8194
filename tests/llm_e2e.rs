//! End to end on a real model: the server configured to an OpenAI-compatible llama.cpp server
//! running SmolLM2-135M on CPU (`scripts/local-llm.sh`, URL in `ORCHESTRATOR_TEST_LLM_URL`).
//! In CI (`CI=true`) a missing model server is a failure; elsewhere these tests skip.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use orchestrator_api_grpc::pb;
use orchestrator_infra_llm::LlmProfile;
use orchestrator_server::startup::llm_backend;
use orchestrator_tests::{TestApp, spawn_app_with};

fn model_url() -> Option<String> {
    orchestrator_test_support::services::llm_url_or_skip()
}

/// Two profiles on the local model: different sampling, so one council can mix them.
async fn app(url: &str) -> TestApp {
    let mut default = LlmProfile::new(url, "smollm2");
    default.max_tokens = 256;
    default.timeout = Duration::from_secs(120);
    default.total_timeout = Duration::from_secs(300);
    default.max_concurrency = 2;
    let mut creative = default.clone();
    creative.temperature = 1.1;
    creative.max_tokens = 200;
    let profiles = BTreeMap::from([("default".to_owned(), default), ("creative".to_owned(), creative)]);
    let configured =
        orchestrator_server::Config { profiles, default_timeout_secs: 900, ..Default::default() };
    let backend = llm_backend(&configured).unwrap();
    assert!(backend.is_some());
    spawn_app_with(
        move |c| orchestrator_server::Config {
            profiles: configured.profiles,
            default_timeout_secs: 900,
            ..c
        },
        backend,
    )
    .await
}

fn task() -> pb::DeliberateRequest {
    pb::DeliberateRequest {
        task_description: "Write a Python function is_palindrome(s) that ignores case and spaces.".into(),
        role: "DEV".into(),
        constraints: Some(pb::TaskConstraints {
            rubric: "correct, short, readable".into(),
            requirements: vec!["ignore case".into(), "handle the empty string".into()],
            ..Default::default()
        }),
        rounds: Some(1),
        num_agents: Some(3),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_real_model_deliberates_and_orchestrates() {
    let Some(url) = model_url() else { return };
    let mut app = app(&url).await;

    let response = app.client.deliberate(task()).await.unwrap().into_inner();
    assert!(response.failures.is_empty(), "{:?}", response.failures);
    assert_eq!(response.results.len(), 3);
    for result in &response.results {
        let proposal = result.proposal.as_ref().unwrap();
        assert!(!proposal.content.trim().is_empty());
        assert_eq!(proposal.revisions.len(), 1, "the first version is kept as a revision");
        assert_ne!(proposal.revisions[0], proposal.content, "the revision is new model text");
        assert_eq!(result.reviews.len(), 1);
        assert!(!result.reviews[0].critique.trim().is_empty());
        assert!(result.usage.unwrap().completion_tokens > 0);
    }
    let usage = response.usage.unwrap();
    assert!(usage.prompt_tokens > 0 && usage.completion_tokens > 0, "{usage:?}");
    assert_eq!(usage.calls, 9);
    let authors: Vec<_> =
        response.results.iter().map(|r| r.proposal.as_ref().unwrap().author_id.clone()).collect();
    assert!(authors.contains(&response.winner_id));
    assert_eq!(response.results[0].proposal.as_ref().unwrap().author_id, response.winner_id);
    eprintln!("deliberation on SmolLM2: {} ms, {usage:?}", response.duration_ms);

    let orchestrated = app
        .client
        .orchestrate(pb::OrchestrateRequest {
            task_description: "Write a shell one-liner that counts lines in all *.rs files.".into(),
            role: "DEVOPS".into(),
            options: Some(pb::OrchestratorOptions {
                enable_architect_selection: true,
                enable_peer_review: true,
                ..Default::default()
            }),
            num_agents: Some(3),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let winner = orchestrated.winner.unwrap();
    assert!(orchestrated.candidates.contains(&winner));
    assert!(["architect", "score"].contains(&orchestrated.selection_method.as_str()));
    assert!(!orchestrated.selection_rationale.is_empty());
    eprintln!("selection: {} — {}", orchestrated.selection_method, orchestrated.selection_rationale);
}

/// Tasks deliberated on the local model for the share of graded peer reviews: different ones,
/// since the same task gets the same answers (seeds are fixed per seat).
const GRADED_SHARE_TASKS: [&str; 3] = [
    "Write a Python function is_palindrome(s) that ignores case and spaces.",
    "Write a Python function add(a, b) that returns the sum of two numbers.",
    "Write a Python function largest(xs) that returns the largest number of a list.",
];

#[tokio::test]
async fn peer_reviews_on_the_local_model_are_graded_nine_times_in_ten() {
    let Some(url) = model_url() else { return };
    let mut app = app(&url).await;
    let (mut graded, mut reviews) = (0, 0);
    for description in GRADED_SHARE_TASKS {
        let request = pb::DeliberateRequest { task_description: description.into(), ..task() };
        let response = app.client.deliberate(request).await.unwrap().into_inner();
        for review in response.results.iter().flat_map(|r| &r.reviews) {
            reviews += 1;
            graded += usize::from(review.score.is_some());
            let critique: String = review.critique.chars().take(80).collect();
            eprintln!("  score {:?} | {critique:?}", review.score);
        }
    }
    eprintln!("graded peer reviews on SmolLM2 (structured_output = auto): {graded}/{reviews}");
    assert!(reviews >= 2 * GRADED_SHARE_TASKS.len(), "too few reviews to judge: {reviews}");
    assert!(graded * 10 >= reviews * 9, "only {graded} of {reviews} peer reviews graded");
}

#[tokio::test]
async fn one_council_can_mix_model_profiles() {
    let Some(url) = model_url() else { return };
    let mut app = app(&url).await;
    let request = pb::DeliberateRequest {
        num_agents: Some(2),
        agent_profiles: vec!["default".into(), "creative".into()],
        ..task()
    };
    let response = app.client.deliberate(request).await.unwrap().into_inner();
    assert!(response.failures.is_empty(), "{:?}", response.failures);
    let profiles: BTreeSet<_> =
        response.results.iter().map(|r| r.proposal.as_ref().unwrap().model_profile.clone()).collect();
    assert_eq!(profiles, BTreeSet::from(["default".to_owned(), "creative".to_owned()]));
    assert!(response.results.iter().all(|r| !r.proposal.as_ref().unwrap().content.trim().is_empty()));
}

const ADD_TESTS: &str = "from solution import add\n\
assert add(1, 2) == 3\n\
\n\
def test_negative():\n    assert add(-1, -1) == -2\n";

/// Counts of a wire report, for comparing with a rerun.
fn counts(report: &pb::TestReport) -> (bool, i32, i32, i32) {
    (report.ran, report.passed, report.failed, report.errored)
}

fn rerun_counts(outcome: &orchestrator_domain::TestOutcome) -> (bool, i32, i32, i32) {
    let wire = orchestrator_api_grpc::convert::test_report(outcome);
    counts(&wire)
}

#[tokio::test]
async fn a_real_model_gets_its_code_run_and_the_results_match_a_rerun() {
    use orchestrator_application::ports::TestRunner;
    let Some(url) = model_url() else { return };
    let mut app = app(&url).await;
    let request = pb::DeliberateRequest {
        task_description: "Write a Python function add(a, b) that returns the sum of two numbers.".into(),
        role: "DEV".into(),
        constraints: Some(pb::TaskConstraints {
            acceptance_tests: Some(pb::AcceptanceTests { language: "python".into(), code: ADD_TESTS.into() }),
            ..Default::default()
        }),
        rounds: Some(1),
        num_agents: Some(2),
        ..Default::default()
    };
    let response = app.client.deliberate(request).await.unwrap().into_inner();
    assert!(!response.results.is_empty(), "{:?}", response.failures);

    // Rerun every version's code through the same sandboxed adapter, here in the test.
    let runner = orchestrator_infra_dryrun::PythonTestRunner::detect();
    let tests = orchestrator_domain::AcceptanceTests::new("python", ADD_TESTS.into()).unwrap();
    for result in &response.results {
        let proposal = result.proposal.as_ref().unwrap();
        let reported = result.tests.as_ref().unwrap();
        assert_eq!(result.revision_tests.len(), proposal.revisions.len());
        let rerun = runner.run(&tests, &proposal.content).await;
        assert_eq!(
            counts(reported),
            rerun_counts(&rerun),
            "{}: {reported:?} vs {rerun:?}",
            proposal.author_id
        );
        for (earlier, content) in result.revision_tests.iter().zip(&proposal.revisions) {
            let rerun = runner.run(&tests, content).await;
            assert_eq!(counts(earlier), rerun_counts(&rerun), "{}: an earlier version", proposal.author_id);
        }
        eprintln!(
            "{}: {} (revisions: {:?})\n{}\n--- its answer:\n{}",
            proposal.author_id,
            reported.message,
            result.revision_tests.iter().map(|t| t.message.clone()).collect::<Vec<_>>(),
            reported.report,
            proposal.content
        );
    }
    eprintln!("calls {} saved {}", response.usage.unwrap().calls, response.usage.unwrap().calls_saved);
}
