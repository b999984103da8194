//! What the early stop and the cascade cost and save, on a fake model whose correctness is
//! known: real deliberations through the gRPC server (SQLite, the real use cases), with a
//! fake agent backend and a fake test runner. Prints a Markdown table; asserts nothing. Run:
//! `cargo bench -p orchestrator-tests --bench cost`.
//!
//! The fake model (the same under every configuration: the same seeds decide every answer):
//!
//! * Task `i` of a run is "cost task i". The agent in seat `s` writes version 0 of its answer
//!   correct iff `roll(i, s, 0) < p`, where `roll` is SplitMix64 of `(i, s, version)` mod 100
//!   and `p` is the first-answer correctness (10, 50, 90 %).
//! * Revising a wrong version `v` gives a correct one iff `roll(i, s, v + 1) < REVISION_FIX`
//!   (30 %); a correct version stays correct.
//! * A cascade's later agents are shown the first answer and its failing tests; here that
//!   does not help them (they answer as they would have in a council) — the cascade gets no
//!   credit for the feedback it gives.
//! * Reviewers read the test report they are shown: 8/10 for code that passes every test,
//!   4/10 otherwise — reliable reviews, the best case for (c)'s `tests_and_reviews` stop.
//! * The acceptance tests are exact: they pass iff the code is correct, so "solved" (the
//!   winner's code is correct) is also what hidden tests would say.
//!
//! Configurations, as in the quality benchmark: (c) council N=3 R=1 with tests,
//! `early_stop = tests_and_reviews`; (d) the same with `early_stop = tests`; (e) a cascade,
//! `strategy = cascade`, `early_stop = tests`.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use futures::StreamExt;
use orchestrator_api_grpc::pb;
use orchestrator_api_grpc::pb::orchestrator_service_client::OrchestratorServiceClient;
use orchestrator_application::ports::{
    AgentBackend, AgentError, Completion, ReviewReply, Selection, TestRunner,
};
use orchestrator_domain::{
    AcceptanceTests, Agent, CaseOutcome, PeerScore, ProfileName, Review, Task, TestCase, TestLanguage,
    TestOutcome, TestReport, TokenUsage,
};
use orchestrator_server::{Application, Dependencies};
use tonic::transport::Channel;

/// Tasks per first-answer correctness and configuration.
const TASKS: u64 = 200;
/// First-answer correctness, in percent.
const FIRST_ANSWER_CORRECT: [u64; 3] = [10, 50, 90];
/// Chance, in percent, that revising a wrong answer makes it correct.
const REVISION_FIX: u64 = 30;
/// Deliberations in flight at once (the server runs 16).
const CONCURRENCY: usize = 8;

/// What a correct answer returns; the fake tests look for it.
const CORRECT: &str = "return 'correct'";
const WRONG: &str = "return 'wrong'";

/// SplitMix64 (Steele, Lea, Flood 2014): a fixed, well-mixed hash, the same on every machine
/// and Rust version (unlike `DefaultHasher`).
fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The die of task `task`, seat `seat`, answer version `version`: 0..100.
fn roll(task: u64, seat: usize, version: u64) -> u64 {
    splitmix64(splitmix64(splitmix64(task) ^ seat as u64) ^ version) % 100
}

/// The fake model at first-answer correctness `p` percent.
struct FakeModel {
    p: u64,
}

impl FakeModel {
    fn answer(task: u64, seat: usize, version: u64, correct: bool) -> String {
        format!(
            "Answer to cost task {task} from seat {seat}, version {version}.\n\
             ```python\ndef solve():\n    {}\n```\n",
            if correct { CORRECT } else { WRONG }
        )
    }

    /// `(task, version)` of an answer this model wrote.
    fn parse(answer: &str) -> (u64, u64) {
        let number_after = |label: &str| {
            answer
                .split(label)
                .nth(1)
                .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|digits| digits.parse().ok())
                .unwrap_or(0)
        };
        (number_after("cost task "), number_after("version "))
    }

    fn task_number(task: &Task) -> u64 {
        Self::parse(task.description()).0
    }

    fn usage() -> TokenUsage {
        TokenUsage { prompt_tokens: 400, completion_tokens: 120, ..TokenUsage::default() }
    }
}

#[async_trait]
impl AgentBackend for FakeModel {
    fn has_profile(&self, _profile: &ProfileName) -> bool {
        true
    }

    async fn propose(&self, agent: &Agent, task: &Task) -> Result<Completion, AgentError> {
        let number = Self::task_number(task);
        let correct = roll(number, agent.seat, 0) < self.p;
        Ok(Completion {
            text: Self::answer(number, agent.seat, 0, correct),
            usage: Self::usage(),
            truncated: false,
        })
    }

    async fn review(
        &self,
        _agent: &Agent,
        _task: &Task,
        _proposal: &str,
        tests: &TestOutcome,
    ) -> Result<ReviewReply, AgentError> {
        let grade = if tests.passed() == Some(true) { 8.0 } else { 4.0 };
        Ok(ReviewReply {
            critique: "graded on the test report".into(),
            score: Some(PeerScore::new(grade).map_err(|e| AgentError::InvalidResponse(e.to_string()))?),
            issues: Vec::new(),
            usage: Self::usage(),
        })
    }

    async fn revise(
        &self,
        agent: &Agent,
        _task: &Task,
        current: &str,
        _tests: &TestOutcome,
        _reviews: &[Review],
    ) -> Result<Completion, AgentError> {
        let (number, version) = Self::parse(current);
        let next = version + 1;
        let correct = current.contains(CORRECT) || roll(number, agent.seat, next) < REVISION_FIX;
        Ok(Completion {
            text: Self::answer(number, agent.seat, next, correct),
            usage: Self::usage(),
            truncated: false,
        })
    }

    async fn select(
        &self,
        _agent: &Agent,
        _task: &Task,
        _candidates: &[String],
    ) -> Result<Selection, AgentError> {
        Ok(Selection { choice: Some(0), rationale: "unused by Deliberate".into(), usage: Self::usage() })
    }
}

/// Exact acceptance tests: pass iff the answer is correct.
struct FakeTests;

#[async_trait]
impl TestRunner for FakeTests {
    fn supports(&self, language: TestLanguage) -> bool {
        language == TestLanguage::Python
    }

    fn can_run(&self) -> bool {
        true
    }

    async fn run(&self, _tests: &AcceptanceTests, content: &str) -> TestOutcome {
        let outcome = if content.contains(CORRECT) { CaseOutcome::Passed } else { CaseOutcome::Failed };
        let message = if outcome == CaseOutcome::Passed { "" } else { "assert solve() == 'correct'" };
        TestOutcome::Ran(TestReport::from_cases(vec![TestCase::new("test_solve", outcome, message, "")], ""))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Config {
    C,
    D,
    E,
}

impl Config {
    const ALL: [Config; 3] = [Config::C, Config::D, Config::E];

    fn name(self) -> &'static str {
        match self {
            Config::C => "(c) council + tests, tests_and_reviews",
            Config::D => "(d) council + tests, early_stop=tests",
            Config::E => "(e) cascade, early_stop=tests",
        }
    }

    fn request(self, task: u64) -> pb::DeliberateRequest {
        let (early_stop, strategy) = match self {
            Config::C => ("tests_and_reviews", "council"),
            Config::D => ("tests", "council"),
            Config::E => ("tests", "cascade"),
        };
        pb::DeliberateRequest {
            task_description: format!("cost task {task}: write solve() returning the right value"),
            role: "DEV".into(),
            constraints: Some(pb::TaskConstraints {
                acceptance_tests: Some(pb::AcceptanceTests {
                    language: "python".into(),
                    code: "from solution import solve\n\nassert solve() == 'correct'\n".into(),
                }),
                early_stop: early_stop.into(),
                strategy: strategy.into(),
                ..Default::default()
            }),
            rounds: Some(1),
            num_agents: Some(3),
            ..Default::default()
        }
    }
}

/// Totals of one configuration at one correctness.
#[derive(Debug, Default, Clone)]
struct Tally {
    solved: u64,
    calls: i64,
    calls_saved: i64,
    paths: BTreeMap<String, u64>,
}

impl Tally {
    fn calls_per_task(&self) -> f64 {
        self.calls as f64 / TASKS as f64
    }
}

async fn deliberate(client: &mut OrchestratorServiceClient<Channel>, config: Config, task: u64) -> Tally {
    let response =
        client.deliberate(config.request(task)).await.expect("deliberation completes").into_inner();
    let winner = response
        .results
        .iter()
        .find_map(|r| r.proposal.as_ref().filter(|p| p.author_id == response.winner_id))
        .expect("a winner");
    let usage = response.usage.unwrap_or_default();
    Tally {
        solved: u64::from(winner.content.contains(CORRECT)),
        calls: usage.calls,
        calls_saved: usage.calls_saved,
        paths: BTreeMap::from([(response.path, 1)]),
    }
}

async fn run(p: u64, config: Config) -> Tally {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let config_file = orchestrator_server::Config {
        max_running: 16,
        queue_capacity: 256,
        ..orchestrator_tests::test_config(&data_dir)
    };
    let deps = Dependencies {
        backend: Some(Arc::new(FakeModel { p })),
        test_runner: Some(Arc::new(FakeTests)),
        ..Dependencies::system()
    };
    let app = Application::build_with(config_file, deps).await.expect("server builds");
    let addr = app.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    let client = OrchestratorServiceClient::connect(format!("http://{addr}")).await.expect("client connects");
    let tallies: Vec<Tally> = futures::stream::iter(0..TASKS)
        .map(|task| {
            let mut client = client.clone();
            async move { deliberate(&mut client, config, task).await }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let _ = stop.send(());
    server.await.expect("server task").expect("server stopped cleanly");
    tallies.into_iter().fold(Tally::default(), |mut total, one| {
        total.solved += one.solved;
        total.calls += one.calls;
        total.calls_saved += one.calls_saved;
        for (path, count) in one.paths {
            *total.paths.entry(path).or_default() += count;
        }
        total
    })
}

fn paths(tally: &Tally) -> String {
    let count = |path: &str| tally.paths.get(path).copied().unwrap_or(0);
    if count("council") == TASKS {
        "council".to_owned()
    } else {
        format!("{} first answer / {} escalated", count("cascade_first_answer"), count("cascade_escalated"))
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let started = Instant::now();
    let results: BTreeMap<(u64, Config), Tally> = runtime.block_on(async {
        let mut results = BTreeMap::new();
        for p in FIRST_ANSWER_CORRECT {
            for config in Config::ALL {
                results.insert((p, config), run(p, config).await);
            }
        }
        results
    });
    println!(
        "Fake model: {TASKS} tasks per row, N=3 R=1, first answer correct with p, a revision fixes \
         wrong code with {REVISION_FIX}%; the same seeds under every configuration.\n"
    );
    println!(
        "| first answer correct | configuration | tasks solved | calls / task | calls saved / task | paths |"
    );
    println!("|---|---|---|---|---|---|");
    for ((p, config), tally) in &results {
        println!(
            "| {p}% | {} | {}/{TASKS} | {:.2} | {:.2} | {} |",
            config.name(),
            tally.solved,
            tally.calls_per_task(),
            tally.calls_saved as f64 / TASKS as f64,
            paths(tally),
        );
    }
    let (c, e) = (&results[&(50, Config::C)], &results[&(50, Config::E)]);
    let ratio = e.calls_per_task() / c.calls_per_task();
    let holds = ratio <= 0.5 && e.solved >= c.solved;
    println!(
        "\ncascade at 50%: {:.2} calls/task vs (c) {:.2} → ratio {ratio:.2} (criterion ≤ 0.50); solved {} vs (c) {} → criterion {}",
        e.calls_per_task(),
        c.calls_per_task(),
        e.solved,
        c.solved,
        if holds { "holds" } else { "DOES NOT hold" },
    );
    println!("({} deliberations in {:.1} s)", results.len() as u64 * TASKS, started.elapsed().as_secs_f64());
}
