//! The command dry runner against real programs of this machine (python3, sh, sleep).
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use orchestrator_application::ports::DryRunner;
use orchestrator_domain::{DryRunOutcome, Task, TaskConstraints};
use orchestrator_infra_dryrun::{CommandDryRunner, DryRunConfig};

fn task() -> Task {
    Task::new("write python", TaskConstraints::default()).unwrap()
}

fn runner(command: &[&str], timeout_secs: f64) -> CommandDryRunner {
    CommandDryRunner::new(DryRunConfig {
        command: command.iter().map(|s| (*s).to_owned()).collect(),
        languages: vec!["python".into(), "py".into()],
        file_extension: "py".into(),
        timeout_secs,
        max_concurrency: 2,
    })
    .unwrap()
}

fn py_compile() -> CommandDryRunner {
    runner(&["python3", "-m", "py_compile", "{file}"], 20.0)
}

#[tokio::test]
async fn valid_python_passes_a_syntax_check() {
    let outcome =
        py_compile().dry_run(&task(), "Here:\n```python\ndef add(a, b):\n    return a + b\n```\n").await;
    assert_eq!(outcome.passed(), Some(true), "{outcome:?}");
}

#[tokio::test]
async fn broken_python_fails_with_the_compiler_output() {
    let outcome = py_compile().dry_run(&task(), "```py\ndef add(a, b)\n    return a + b\n```\n").await;
    let DryRunOutcome::Ran { passed, exit_code, output, message } = outcome else { panic!("not run") };
    assert!(!passed);
    assert_eq!(exit_code, 1);
    assert!(output.contains("SyntaxError"), "{output}");
    assert_eq!(message, "python3 exited with 1");
}

#[tokio::test]
async fn every_matching_block_is_checked_together() {
    let text = "```python\nx = 1\n```\nthen\n```python\ny = x +\n```\n";
    assert_eq!(py_compile().dry_run(&task(), text).await.passed(), Some(false));
}

#[tokio::test]
async fn without_a_matching_block_nothing_runs() {
    let outcome = py_compile().dry_run(&task(), "```sh\nrm -rf build\n```\nand prose").await;
    assert_eq!(outcome, DryRunOutcome::NotRun { reason: "not run: no python/py code block".into() });
}

#[tokio::test]
async fn the_exit_code_is_reported_and_the_environment_is_cleared() {
    assert!(std::env::var_os("HOME").is_some(), "the test process has a HOME to hide");
    let probe = ["sh", "-c", "test -z \"$HOME\" && test -s \"$0\" && exit 3", "{file}"];
    let outcome = runner(&probe, 10.0).dry_run(&task(), "```python\npass\n```\n").await;
    let DryRunOutcome::Ran { passed, exit_code, .. } = outcome else { panic!("not run: {outcome:?}") };
    assert!(!passed);
    assert_eq!(exit_code, 3, "HOME is not passed on, and the code file is there");
}

#[tokio::test]
async fn a_command_that_hangs_fails_at_the_timeout_and_is_killed() {
    let started = Instant::now();
    let outcome =
        runner(&["sh", "-c", "sleep 30", "{file}"], 0.3).dry_run(&task(), "```python\npass\n```\n").await;
    let DryRunOutcome::Ran { passed, message, .. } = outcome else { panic!("not run") };
    assert!(!passed);
    assert_eq!(message, "sh timed out after 300ms");
    assert!(started.elapsed() < Duration::from_secs(30), "did not wait for the command");
}

#[tokio::test]
async fn a_missing_program_is_not_the_proposals_fault() {
    let outcome =
        runner(&["no-such-checker-4711", "{file}"], 5.0).dry_run(&task(), "```python\npass\n```\n").await;
    let DryRunOutcome::NotRun { reason } = outcome else { panic!("ran") };
    assert!(reason.starts_with("not run: cannot start no-such-checker-4711"), "{reason}");
}
