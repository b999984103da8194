//! Running model-written code: only ever inside the sandbox (`orchestrator-infra-sandbox`).

use std::time::Duration;

use orchestrator_domain::excerpt;
use orchestrator_infra_sandbox::{RunSpec, Sandbox, SandboxLimits, Termination, WORK_DIR_PLACEHOLDER};
use serde::Serialize;

use crate::error::{QualityError, Result};
use crate::humaneval::Problem;
use crate::solution::{hidden_test_program, vetted_indices, vetting_program};

/// Wall time one grading run may take; HumanEval's checks run in well under a second.
pub const GRADING_TIMEOUT: Duration = Duration::from_secs(20);

/// A winner's result on the hidden tests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub passed: bool,
    /// `passed`, `no python code block`, `failed: <last line of the error>`, `timed out`, ….
    pub detail: String,
}

/// Grades code in the sandbox. There is no way to make one without a working sandbox, so
/// model-written code is never run unsandboxed here.
#[derive(Debug)]
pub struct Grader {
    sandbox: Sandbox,
}

impl Grader {
    /// Probes the sandbox (blocks briefly).
    ///
    /// # Errors
    /// [`QualityError::NoSandbox`] saying why there is none.
    pub fn detect() -> Result<Self> {
        let limits = SandboxLimits { wall_timeout: GRADING_TIMEOUT, ..SandboxLimits::default() };
        let sandbox = Sandbox::detect(limits).map_err(|source| QualityError::NoSandbox { source })?;
        Ok(Self { sandbox })
    }

    async fn run_python(&self, program: String) -> Result<orchestrator_infra_sandbox::RunOutput> {
        let spec = RunSpec {
            program: "python3".to_owned(),
            args: vec!["-I".to_owned(), format!("{WORK_DIR_PLACEHOLDER}/program.py")],
            files: vec![("program.py".into(), program.into_bytes())],
            env: Vec::new(),
        };
        self.sandbox.run(spec).await.map_err(|source| QualityError::Sandbox { source })
    }

    /// The candidate asserts that hold for the reference solution, in order.
    ///
    /// # Errors
    /// [`QualityError::Sandbox`] when the run could not be carried out.
    pub async fn vet(&self, problem: &Problem, candidates: Vec<String>) -> Result<Vec<String>> {
        if candidates.is_empty() {
            return Ok(candidates);
        }
        let output = self.run_python(vetting_program(problem, &candidates)).await?;
        let kept = vetted_indices(&output.stdout.text());
        Ok(candidates.into_iter().enumerate().filter(|(i, _)| kept.contains(i)).map(|(_, a)| a).collect())
    }

    /// Runs `code` against the problem's hidden `check`; `None` (no code) fails.
    ///
    /// # Errors
    /// [`QualityError::Sandbox`] when the run could not be carried out.
    pub async fn grade(&self, problem: &Problem, code: Option<&str>) -> Result<Verdict> {
        let Some(code) = code else {
            return Ok(Verdict { passed: false, detail: "no python code block".to_owned() });
        };
        let output = self.run_python(hidden_test_program(problem, code)).await?;
        let detail = match output.termination {
            Termination::Exited if output.success() => "passed".to_owned(),
            Termination::Exited => {
                let stderr = output.stderr.text();
                let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no error output");
                format!("failed: {}", excerpt(last.trim(), 120))
            }
            Termination::TimedOut => format!("timed out after {} s", GRADING_TIMEOUT.as_secs()),
            Termination::CpuLimit => "stopped at the CPU limit".to_owned(),
            Termination::OutputLimit => "stopped: too much output".to_owned(),
            other => format!("killed ({other:?})"),
        };
        Ok(Verdict { passed: output.success(), detail })
    }
}
