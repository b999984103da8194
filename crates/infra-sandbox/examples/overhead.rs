//! Measures what the sandbox adds to one short run: the median of 20 runs of
//! `/usr/bin/python3 -c pass` as a bare process, through the unsandboxed runner (same work dir,
//! output capture and supervision, no walls) and through the sandbox. The three are
//! interleaved so that load from elsewhere on the machine hits them alike.
//! `cargo run --release -p orchestrator-infra-sandbox --example overhead`
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use orchestrator_infra_sandbox::{Isolation, RunSpec, Sandbox, SandboxLimits, Unsandboxed};

const RUNS: usize = 20;

fn median(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples[samples.len() / 2].as_secs_f64() * 1e3
}

async fn timed_run(isolation: &Isolation) -> Duration {
    let spec = RunSpec {
        program: "/usr/bin/python3".into(),
        args: vec!["-c".into(), "pass".into()],
        ..RunSpec::default()
    };
    let started = Instant::now();
    let output = isolation.run(spec).await.unwrap();
    assert!(output.success(), "{output:?}");
    started.elapsed()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let started = Instant::now();
    let sandbox = Isolation::Sandboxed(Sandbox::detect(SandboxLimits::default()).unwrap());
    let detect = started.elapsed();
    let unsandboxed = Isolation::Unsandboxed(Unsandboxed::opt_in(SandboxLimits::default()).unwrap());
    let (mut bare, mut direct, mut sandboxed) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let started = Instant::now();
        let status =
            tokio::process::Command::new("/usr/bin/python3").args(["-c", "pass"]).status().await.unwrap();
        assert!(status.success());
        bare.push(started.elapsed());
        direct.push(timed_run(&unsandboxed).await);
        sandboxed.push(timed_run(&sandbox).await);
    }
    let (bare, direct, sandboxed) = (median(bare), median(direct), median(sandboxed));
    println!("/usr/bin/python3 -c pass, median of {RUNS} (ms):");
    println!("  bare process        {bare:>7.1}");
    println!("  unsandboxed runner  {direct:>7.1}");
    println!("  sandboxed runner    {sandboxed:>7.1}");
    println!("  sandbox overhead    {:>7.1} (sandboxed - unsandboxed runner)", sandboxed - direct);
    println!("Sandbox::detect (one probe run): {:.1} ms", detect.as_secs_f64() * 1e3);
}
