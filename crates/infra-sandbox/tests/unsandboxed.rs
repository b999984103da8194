//! The explicit opt-out: no walls, but still a fresh work dir, a cleared environment, the wall
//! timeout and the output cap. Needs only `sh`.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Duration;

use orchestrator_infra_sandbox::{Isolation, RunSpec, SandboxLimits, Termination, Unsandboxed};

fn sh(script: &str) -> RunSpec {
    RunSpec {
        program: "sh".into(),
        args: vec!["-c".into(), script.into(), "{workdir}".into()],
        ..RunSpec::default()
    }
}

#[tokio::test]
async fn an_unsandboxed_run_works_in_a_fresh_dir_that_is_deleted_afterwards() {
    let isolation = Isolation::Unsandboxed(Unsandboxed::opt_in(SandboxLimits::default()).unwrap());
    assert!(!isolation.is_sandboxed());
    let mut spec =
        sh("echo \"$0\"; pwd; echo \"$HOME\"; cat data.txt; echo \"${CARGO_MANIFEST_DIR:-cleared}\"");
    spec.files.push(("data.txt".into(), b"given\n".to_vec()));
    let output = isolation.run(spec).await.unwrap();
    assert!(output.success(), "{output:?}");
    let text = output.stdout.text();
    let lines: Vec<&str> = text.lines().collect();
    let work_dir = PathBuf::from(lines[0]);
    assert!(work_dir.to_str().unwrap().contains("orchestrator-sandbox-"), "{text}");
    assert_eq!(lines[1..], [lines[0], lines[0], "given", "cleared"]);
    assert!(!work_dir.exists(), "the work dir is deleted");
}

#[tokio::test]
async fn an_unsandboxed_run_still_ends_at_the_wall_timeout() {
    let limits = SandboxLimits { wall_timeout: Duration::from_millis(300), ..SandboxLimits::default() };
    let runner = Unsandboxed::opt_in(limits).unwrap();
    let output = runner.run(sh("exec sleep 30")).await.unwrap();
    assert_eq!(output.termination, Termination::TimedOut, "{output:?}");
}

#[test]
fn opting_out_still_validates_the_limits() {
    let error =
        Unsandboxed::opt_in(SandboxLimits { max_output_bytes: 0, ..SandboxLimits::default() }).unwrap_err();
    assert_eq!(error.to_string(), "sandbox.max_output_bytes: must be within 1 B..=64 MiB");
}
