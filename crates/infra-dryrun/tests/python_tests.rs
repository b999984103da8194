//! The Python acceptance-test runner against the real bubblewrap sandbox and python3. Tests
//! that need the sandbox say SKIPPED and pass where there is none, except in CI (`CI=true`),
//! where they fail.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use orchestrator_application::ports::TestRunner;
use orchestrator_domain::{AcceptanceTests, CaseOutcome, TestOutcome};
use orchestrator_infra_dryrun::PythonTestRunner;
use orchestrator_infra_dryrun::acceptance::test_limits;
use orchestrator_infra_sandbox::{Sandbox, SandboxLimits, SandboxUnavailable};

/// The sandbox, or SKIPPED (a failure in CI).
fn sandbox(limits: SandboxLimits) -> Option<Sandbox> {
    match Sandbox::detect(limits) {
        Ok(sandbox) => Some(sandbox),
        Err(why) => {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "CI must have a working sandbox: {why}");
            match why {
                SandboxUnavailable::BwrapMissing => eprintln!("SKIPPED: bubblewrap not installed"),
                why => eprintln!("SKIPPED: no sandbox on this machine: {why}"),
            }
            None
        }
    }
}

fn runner() -> Option<PythonTestRunner> {
    sandbox(test_limits()).map(|s| PythonTestRunner::with_sandbox(Ok(s), 2))
}

const TESTS: &str = "from solution import add\n\
assert add(1, 2) == 3\n\
\n\
def test_negative():\n    assert add(-1, -1) == -2, 'negatives add up'\n\
\n\
def test_zero():\n    assert add(0, 0) == 0\n";

fn tests() -> AcceptanceTests {
    AcceptanceTests::new("python", TESTS.into()).unwrap()
}

/// SmolLM2-style answer: prose, then the code in a python block.
const CORRECT: &str = "Here is a simple function that adds two numbers:\n\n```python\ndef add(a, b):\n    return a + b\n```\n\nThis function returns the sum.";
/// The same, with a bug that only negative numbers show.
const BUGGY: &str = "```python\ndef add(a, b):\n    return abs(a) + abs(b)\n```";

#[tokio::test]
async fn a_correct_solution_passes_every_test() {
    let Some(runner) = runner() else { return };
    let outcome = runner.run(&tests(), CORRECT).await;
    let report = outcome.report().unwrap_or_else(|| panic!("{outcome:?}"));
    assert_eq!((report.passed, report.failed, report.errored), (3, 0, 0), "{report:?}");
    assert_eq!(outcome.passed(), Some(true));
    let names: Vec<_> = report.cases.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["assert line 2", "test_negative", "test_zero"]);
}

#[tokio::test]
async fn a_failing_test_is_reported_with_its_name_message_and_traceback() {
    let Some(runner) = runner() else { return };
    let outcome = runner.run(&tests(), BUGGY).await;
    let report = outcome.report().unwrap_or_else(|| panic!("{outcome:?}"));
    assert_eq!((report.passed, report.failed, report.errored), (2, 1, 0), "{report:?}");
    let failed = report.failures().next().unwrap();
    assert_eq!(failed.name, "test_negative");
    assert_eq!(failed.outcome, CaseOutcome::Failed);
    assert_eq!(failed.message, "negatives add up");
    assert!(
        failed.traceback.contains("acceptance_tests.py\", line 5, in test_negative"),
        "{}",
        failed.traceback
    );
    assert!(!failed.traceback.contains("harness.py"), "harness frames are trimmed: {}", failed.traceback);
    assert!(outcome.render().contains("FAILED test_negative: negatives add up"));
}

#[tokio::test]
async fn prose_that_is_not_code_errors_on_import() {
    let Some(runner) = runner() else { return };
    let outcome = runner.run(&tests(), "I'm ready to help. Please provide the function you want.").await;
    let report = outcome.report().unwrap_or_else(|| panic!("{outcome:?}"));
    assert_eq!((report.passed, report.errored), (0, 1), "{report:?}");
    assert_eq!(report.cases[0].name, "import solution");
    assert!(report.cases[0].message.starts_with("SyntaxError"), "{report:?}");
}

#[tokio::test]
async fn code_that_never_ends_is_stopped_and_errors() {
    let limits = SandboxLimits {
        cpu_time: Duration::from_secs(1),
        wall_timeout: Duration::from_secs(5),
        ..test_limits()
    };
    let Some(sandbox) = sandbox(limits) else { return };
    let runner = PythonTestRunner::with_sandbox(Ok(sandbox), 1);
    let outcome = runner.run(&tests(), "```python\nwhile True:\n    pass\n```").await;
    let report = outcome.report().unwrap_or_else(|| panic!("{outcome:?}"));
    assert_eq!((report.passed, report.errored), (0, 1), "{report:?}");
    assert!(
        report.cases[0].message.contains("CPU time limit") || report.cases[0].message.contains("timed out"),
        "{report:?}"
    );
}

#[tokio::test]
async fn the_code_has_no_network_and_cannot_write_outside_its_work_dir() {
    let Some(runner) = runner() else { return };
    let probe = "```python\nimport socket\n\ndef add(a, b):\n    return a + b\n\ndef reach():\n    s = socket.create_connection(('127.0.0.1', 8089), timeout=2)\n    return 'reached'\n\ndef write():\n    open('/etc/owned', 'w').write('x')\n```";
    let tests = AcceptanceTests::new(
        "python",
        "from solution import reach, write\n\ndef test_network():\n    reach()\n\ndef test_write():\n    write()\n".into(),
    )
    .unwrap();
    let outcome = runner.run(&tests, probe).await;
    let report = outcome.report().unwrap_or_else(|| panic!("{outcome:?}"));
    assert_eq!((report.passed, report.errored), (0, 2), "{report:?}");
}

#[tokio::test]
async fn without_a_sandbox_nothing_runs() {
    let runner = PythonTestRunner::with_sandbox(Err(SandboxUnavailable::BwrapMissing), 1);
    assert!(!runner.can_run());
    assert_eq!(runner.run(&tests(), CORRECT).await, TestOutcome::no_sandbox());
}
