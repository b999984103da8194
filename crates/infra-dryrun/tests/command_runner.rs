//! The command dry runner against real programs of this machine (python3, sh, sleep), in the
//! real bubblewrap sandbox. Tests that need the sandbox say SKIPPED and pass where there is
//! none, except in CI (`CI=true`), where they fail.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use orchestrator_application::ports::DryRunner;
use orchestrator_domain::{DryRunOutcome, Task, TaskConstraints};
use orchestrator_infra_dryrun::{CommandDryRunner, DryRunConfig, DryRunLimits};
use orchestrator_infra_sandbox::{Sandbox, SandboxUnavailable};

fn task() -> Task {
    Task::new("write python", TaskConstraints::default()).unwrap()
}

fn config(command: &[&str], timeout_secs: f64) -> DryRunConfig {
    DryRunConfig {
        command: command.iter().map(|s| (*s).to_owned()).collect(),
        languages: vec!["python".into(), "py".into()],
        file_extension: "py".into(),
        timeout_secs,
        max_concurrency: 2,
        unsandboxed: false,
        limits: DryRunLimits::default(),
    }
}

/// Whether this machine has a sandbox; says SKIPPED when not (and fails in CI).
fn sandbox_available() -> bool {
    match Sandbox::detect(config(&["true", "{file}"], 10.0).sandbox_limits()) {
        Ok(_) => true,
        Err(why) => {
            let how = match why {
                SandboxUnavailable::BwrapMissing => "apt-get install bubblewrap",
                _ => "allow unprivileged user namespaces",
            };
            orchestrator_test_support::skip("the bubblewrap sandbox", how, why);
            false
        }
    }
}

fn runner(command: &[&str], timeout_secs: f64) -> CommandDryRunner {
    CommandDryRunner::new(config(command, timeout_secs)).unwrap()
}

fn py_compile() -> CommandDryRunner {
    runner(&["python3", "-m", "py_compile", "{file}"], 20.0)
}

#[tokio::test]
async fn valid_python_passes_a_syntax_check() {
    if !sandbox_available() {
        return;
    }
    let outcome =
        py_compile().dry_run(&task(), "Here:\n```python\ndef add(a, b):\n    return a + b\n```\n").await;
    assert_eq!(outcome.passed(), Some(true), "{outcome:?}");
}

#[tokio::test]
async fn broken_python_fails_with_the_compiler_output() {
    if !sandbox_available() {
        return;
    }
    let outcome = py_compile().dry_run(&task(), "```py\ndef add(a, b)\n    return a + b\n```\n").await;
    let DryRunOutcome::Ran { passed, exit_code, output, message } = outcome else { panic!("not run") };
    assert!(!passed);
    assert_eq!(exit_code, 1);
    assert!(output.contains("SyntaxError"), "{output}");
    assert!(output.contains("/work/proposal.py"), "the code is checked inside the sandbox: {output}");
    assert_eq!(message, "python3 exited with 1");
}

#[tokio::test]
async fn every_matching_block_is_checked_together() {
    if !sandbox_available() {
        return;
    }
    let text = "```python\nx = 1\n```\nthen\n```python\ny = x +\n```\n";
    assert_eq!(py_compile().dry_run(&task(), text).await.passed(), Some(false));
}

#[tokio::test]
async fn without_a_matching_block_nothing_runs() {
    let outcome = py_compile().dry_run(&task(), "```sh\nrm -rf build\n```\nand prose").await;
    assert_eq!(outcome, DryRunOutcome::NotRun { reason: "not run: no python/py code block".into() });
}

#[tokio::test]
async fn the_exit_code_is_reported_and_the_environment_is_the_sandboxes() {
    if !sandbox_available() {
        return;
    }
    assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some(), "the test process has variables to hide");
    let probe = [
        "sh",
        "-c",
        "test -z \"$CARGO_MANIFEST_DIR\" && test \"$HOME\" = /work && test -s \"$0\" && exit 3",
        "{file}",
    ];
    let outcome = runner(&probe, 10.0).dry_run(&task(), "```python\npass\n```\n").await;
    let DryRunOutcome::Ran { passed, exit_code, .. } = outcome else { panic!("not run: {outcome:?}") };
    assert!(!passed);
    assert_eq!(exit_code, 3, "variables are not passed on, HOME is the work dir, and the code file is there");
}

#[tokio::test]
async fn a_command_that_hangs_fails_at_the_timeout_and_is_killed() {
    if !sandbox_available() {
        return;
    }
    let started = Instant::now();
    let outcome =
        runner(&["sh", "-c", "sleep 30", "{file}"], 0.5).dry_run(&task(), "```python\npass\n```\n").await;
    let DryRunOutcome::Ran { passed, message, .. } = outcome else { panic!("not run: {outcome:?}") };
    assert!(!passed);
    assert_eq!(message, "sh timed out after 500ms");
    assert!(started.elapsed() < Duration::from_secs(30), "did not wait for the command");
}

#[tokio::test]
async fn an_endless_loop_is_stopped_at_the_configured_cpu_limit() {
    if !sandbox_available() {
        return;
    }
    let limited = DryRunConfig {
        limits: DryRunLimits { cpu_time_secs: Some(1), ..DryRunLimits::default() },
        ..config(&["python3", "{file}"], 20.0)
    };
    let outcome = CommandDryRunner::new(limited)
        .unwrap()
        .dry_run(&task(), "```python\nwhile True:\n    pass\n```\n")
        .await;
    let DryRunOutcome::Ran { passed, message, .. } = outcome else { panic!("not run: {outcome:?}") };
    assert!(!passed);
    assert_eq!(message, "python3 was stopped at its CPU time limit (signal 24)");
}

#[tokio::test]
async fn a_missing_program_is_not_the_proposals_fault() {
    if !sandbox_available() {
        return;
    }
    let outcome =
        runner(&["no-such-checker-4711", "{file}"], 5.0).dry_run(&task(), "```python\npass\n```\n").await;
    let DryRunOutcome::NotRun { reason } = outcome else { panic!("ran") };
    assert!(reason.starts_with("not run: cannot start no-such-checker-4711"), "{reason}");
}

#[tokio::test]
async fn model_code_cannot_read_and_print_a_host_file() {
    if !sandbox_available() {
        return;
    }
    // A stand-in for the orchestrator's database, readable by anyone on the host.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let database = dir.path().join("orchestrator.db");
    std::fs::write(&database, "api_key=sk-very-secret-4711").unwrap();
    std::fs::set_permissions(&database, std::fs::Permissions::from_mode(0o644)).unwrap();
    let escape = format!(
        "```python\n\
         import glob, os\n\
         for path in [{database:?}, '/root/.bashrc', *glob.glob('/tmp/**', recursive=True)]:\n\
         \x20   try:\n\
         \x20       print(path, open(path).read())\n\
         \x20   except OSError as e:\n\
         \x20       print(path, 'unreadable', type(e).__name__)\n\
         ```\n"
    );
    let outcome = runner(&["python3", "{file}"], 20.0).dry_run(&task(), &escape).await;
    let DryRunOutcome::Ran { output, .. } = outcome else { panic!("not run: {outcome:?}") };
    assert!(!output.contains("sk-very-secret-4711"), "{output}");
    assert!(output.contains("orchestrator.db unreadable FileNotFoundError"), "{output}");
}

#[tokio::test]
async fn without_a_sandbox_the_code_is_never_run_and_the_reason_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let command = ["sh", "-c", "touch \"$1\"", "{file}", marker.to_str().unwrap()];
    let runner =
        CommandDryRunner::with_isolation(config(&command, 5.0), Err(SandboxUnavailable::BwrapMissing))
            .unwrap();
    let outcome = runner.dry_run(&task(), "```python\npass\n```\n").await;
    assert_eq!(
        outcome,
        DryRunOutcome::NotRun {
            reason:
                "not run: no sandbox (bubblewrap (bwrap) is not installed; install the bubblewrap package)"
                    .into()
        }
    );
    assert!(!marker.exists(), "the command ran");
}

#[tokio::test]
async fn the_unsandboxed_opt_in_runs_the_command_directly() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    // Only outside the sandbox can the command write to the host's temp dir.
    let command = ["sh", "-c", "test \"$HOME\" != /work && touch \"$1\"", "{file}", marker.to_str().unwrap()];
    let runner = CommandDryRunner::new(DryRunConfig { unsandboxed: true, ..config(&command, 5.0) }).unwrap();
    let outcome = runner.dry_run(&task(), "```python\npass\n```\n").await;
    assert_eq!(outcome.passed(), Some(true), "{outcome:?}");
    assert!(marker.exists());
}
