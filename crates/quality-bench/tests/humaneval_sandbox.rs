//! The grading pipeline on the real HumanEval data in the real sandbox: every reference
//! solution passes its hidden tests, wrong code fails them, and the visible tests parsed from
//! the docstrings hold for the reference. Needs bubblewrap and the data set (fetched by
//! scripts/humaneval-data.sh); without either the tests say SKIPPED and pass, except in CI
//! (`CI=true`), where they fail.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use orchestrator_quality_bench::Grader;
use orchestrator_quality_bench::examples::visible_asserts;
use orchestrator_quality_bench::humaneval::{self, Problem};
use orchestrator_quality_bench::solution::python_code;

fn skip(why: &str) {
    assert!(std::env::var("CI").as_deref() != Ok("true"), "CI must be able to grade HumanEval: {why}");
    eprintln!("SKIPPED: {why}");
}

/// The sandbox and the problems, or `None` after saying SKIPPED.
async fn setup() -> Option<(Grader, Vec<Problem>)> {
    let grader = match Grader::detect() {
        Ok(grader) => grader,
        Err(why) => {
            skip(&why.to_string());
            return None;
        }
    };
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let problems = match humaneval::fetch(&workspace).await.and_then(|path| humaneval::load(&path)) {
        Ok(problems) => problems,
        Err(why) => {
            skip(&format!("HumanEval is not available: {why}"));
            return None;
        }
    };
    assert_eq!(problems.len(), 164);
    Some((grader, problems))
}

#[tokio::test]
async fn reference_solutions_pass_the_hidden_tests_and_wrong_code_fails() {
    let Some((grader, problems)) = setup().await else { return };
    let mut failures = Vec::new();
    for problem in &problems {
        // The reference as a model would send it: the whole function in a python fence.
        let answer = format!("Here it is:\n```python\n{}\n```\n", problem.reference_program());
        let verdict = grader.grade(problem, python_code(&answer).as_deref()).await.unwrap();
        if !verdict.passed {
            failures.push(format!("{}: {}", problem.task_id, verdict.detail));
        }
    }
    assert!(failures.is_empty(), "{failures:?}");

    let problem = &problems[0];
    let wrong = format!("def {}(*args):\n    return None\n", problem.entry_point);
    let verdict = grader.grade(problem, Some(&wrong)).await.unwrap();
    assert!(!verdict.passed);
    assert!(verdict.detail.starts_with("failed: AssertionError"), "{}", verdict.detail);
    let verdict = grader.grade(problem, None).await.unwrap();
    assert_eq!((verdict.passed, verdict.detail.as_str()), (false, "no python code block"));
    let endless = format!("def {}(*args):\n    while True:\n        pass\n", problem.entry_point);
    assert!(!grader.grade(problem, Some(&endless)).await.unwrap().passed);
}

#[tokio::test]
async fn visible_tests_hold_for_the_reference_and_most_problems_have_some() {
    let Some((grader, problems)) = setup().await else { return };
    let mut with_tests = 0;
    let mut parsed = 0;
    let mut kept = 0;
    for problem in &problems {
        let candidates = visible_asserts(&problem.prompt, &problem.entry_point);
        parsed += candidates.len();
        let vetted = grader.vet(problem, candidates.clone()).await.unwrap();
        assert!(vetted.iter().all(|a| candidates.contains(a)));
        kept += vetted.len();
        if !vetted.is_empty() {
            with_tests += 1;
        }
    }
    eprintln!(
        "visible tests: {kept} of {parsed} parsed asserts hold; {with_tests} of 164 problems have some"
    );
    assert!(with_tests >= 120, "only {with_tests} problems got visible tests");

    let add = problems.iter().find(|p| p.task_id == "HumanEval/53").unwrap();
    let vetted = grader
        .vet(add, vec!["assert add(2, 3) == 5".into(), "assert add(2, 3) == 6".into(), "assert add(".into()])
        .await
        .unwrap();
    assert_eq!(vetted, ["assert add(2, 3) == 5"], "a wrong or broken assert is dropped");
}
