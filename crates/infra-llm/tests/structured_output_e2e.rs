//! Structured output on a real model: SmolLM2-135M behind llama-cpp-python's server (started by
//! `scripts/local-llm.sh`, URL in `ORCHESTRATOR_TEST_LLM_URL`). The same twenty small reviews
//! are asked with `structured_output = "auto"` and with `off`; with `auto` at least 90% must come
//! back graded. The share with `off` and the latency per review are printed, not asserted: a
//! test asserts behaviour, a benchmark prints numbers. In CI (`CI=true`) a missing model server
//! is a failure; elsewhere the test skips.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use orchestrator_application::ports::AgentBackend;
use orchestrator_domain::{Agent, AgentId, ProfileName, Role, Task, TaskConstraints, TestOutcome};
use orchestrator_infra_llm::{FormatMode, LlmProfile, OpenAiBackend, StructuredOutput};

/// Reviews asked per mode.
const REVIEWS: usize = 20;
/// The share of graded reviews `auto` must reach on the local model.
const REQUIRED_GRADED_SHARE: f64 = 0.9;

fn model_url() -> Option<String> {
    orchestrator_test_support::services::llm_url_or_skip()
}

/// Small tasks with a proposal each, some right and some wrong.
const CASES: [(&str, &str); 10] = [
    (
        "Write a Python function is_palindrome(s) that ignores case and spaces.",
        "def is_palindrome(s):\n    t = s.replace(' ', '').lower()\n    return t == t[::-1]",
    ),
    (
        "Write a Python function add(a, b) that returns the sum of two numbers.",
        "def add(a, b):\n    return a - b",
    ),
    ("Write a shell one-liner that counts lines in all *.rs files.", "find . -name '*.rs' | xargs wc -l"),
    (
        "Write a Rust function that reverses a string.",
        "fn rev(s: &str) -> String { s.chars().rev().collect() }",
    ),
    (
        "Write a Python function that returns the largest number of a list.",
        "def largest(xs):\n    return sorted(xs)[0]",
    ),
    (
        "Write a SQL query that counts users per country.",
        "SELECT country, COUNT(*) FROM users GROUP BY country;",
    ),
    (
        "Write a Python function fizzbuzz(n) printing 1..n with Fizz and Buzz.",
        "def fizzbuzz(n):\n    for i in range(n):\n        print(i)",
    ),
    (
        "Explain how to cache HTTP responses in a web application.",
        "Use a CDN and set Cache-Control headers; purge the cache on deploy.",
    ),
    ("Write a Python function is_prime(n).", "def is_prime(n):\n    return all(n % i for i in range(2, n))"),
    (
        "Write a Go function that sums a slice of ints.",
        "func sum(xs []int) int { t := 0; for _, x := range xs { t += x }; return t }",
    ),
];

fn task(description: &str, with_rubric: bool) -> Task {
    let constraints = if with_rubric {
        TaskConstraints::new(
            "correct, short, readable".into(),
            vec!["handle empty input".into()],
            BTreeMap::new(),
            0,
            0,
        )
        .expect("valid constraints")
    } else {
        TaskConstraints::default()
    };
    Task::new(description, constraints).expect("valid task")
}

fn reviewer(seat: usize) -> Agent {
    let role = [Role::Dev, Role::Qa, Role::Architect][seat % 3];
    Agent {
        id: AgentId::new(format!("reviewer-{seat}")).expect("valid id"),
        role,
        profile: ProfileName::default_profile(),
        seat,
        persona: None,
    }
}

fn backend(url: &str, mode: StructuredOutput) -> OpenAiBackend {
    let mut profile = LlmProfile::new(url, "smollm2");
    profile.max_tokens = 128;
    profile.timeout = Duration::from_secs(120);
    profile.total_timeout = Duration::from_secs(300);
    profile.max_concurrency = 1;
    profile.structured_output = mode;
    OpenAiBackend::new(BTreeMap::from([(ProfileName::default_profile(), profile)])).expect("valid profile")
}

/// Asks the [`REVIEWS`] reviews; returns how many were graded and the mean latency per call.
async fn graded_reviews(backend: &OpenAiBackend) -> (usize, Duration) {
    let started = Instant::now();
    let mut graded = 0;
    for i in 0..REVIEWS {
        let (description, proposal) = CASES[i % CASES.len()];
        let task = task(description, i >= CASES.len());
        let review = backend
            .review(&reviewer(i), &task, proposal, &TestOutcome::no_tests())
            .await
            .expect("a review call on the local model");
        graded += usize::from(review.score.is_some());
        let score = review.score.map_or_else(|| "none".to_owned(), |s| s.value().to_string());
        let critique: String = review.critique.chars().take(100).collect();
        eprintln!("  review {i:2}: score {score:>4} | {critique:?}");
    }
    let per_call = started.elapsed() / u32::try_from(REVIEWS).expect("a small count");
    (graded, per_call)
}

#[tokio::test]
async fn auto_structured_output_gets_nine_in_ten_reviews_graded_on_the_local_model() {
    let Some(url) = model_url() else { return };

    let auto = backend(&url, StructuredOutput::Auto);
    eprintln!("structured_output = auto:");
    let (auto_graded, auto_latency) = graded_reviews(&auto).await;
    let settled = auto.structured_output_mode(&ProfileName::default_profile());

    let off = backend(&url, StructuredOutput::Off);
    eprintln!("structured_output = off:");
    let (off_graded, off_latency) = graded_reviews(&off).await;

    eprintln!(
        "graded reviews on SmolLM2-135M: auto ({}) {auto_graded}/{REVIEWS}, {} ms per review; \
         off {off_graded}/{REVIEWS}, {} ms per review",
        settled.map_or("unsettled", FormatMode::as_str),
        auto_latency.as_millis(),
        off_latency.as_millis()
    );
    assert!(
        matches!(settled, Some(FormatMode::JsonSchema | FormatMode::JsonObject)),
        "auto settled on a constraining mode: {settled:?}"
    );
    let share = auto_graded as f64 / REVIEWS as f64;
    assert!(share >= REQUIRED_GRADED_SHARE, "only {auto_graded} of {REVIEWS} reviews graded under auto");
}
