//! The benchmark loop: every problem under every configuration, graded, written as it goes.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use orchestrator_api_grpc::pb;
use tracing::{info, warn};

use crate::configs::Configuration;
use crate::error::{QualityError, Result};
use crate::examples::visible_asserts;
use orchestrator_domain::excerpt;

use crate::grading::Grader;
use crate::humaneval::Problem;
use crate::orchestrator::Orchestrator;
use crate::outputs::{self, Outputs, create_dir};
use crate::report::{Row, RunInfo, ServerTests};
use crate::solution::python_code;

/// What to run and where to write it.
#[derive(Debug, Clone)]
pub struct Plan {
    pub problems: Vec<Problem>,
    pub configs: Vec<Configuration>,
    /// Bound on one deliberation, sent with every task.
    pub deliberation_timeout: Duration,
    /// Results go here: `results.csv`, `results.md`, `results.svg`, `answers/`.
    pub out_dir: PathBuf,
    pub info: RunInfo,
}

/// Runs the plan: per problem, the visible tests are parsed and vetted, then each
/// configuration deliberates and its winner is graded on the hidden tests. Results are
/// rewritten after every row, so an interrupted run keeps what it measured.
///
/// The configurations take turns going first (problem i starts with configuration i mod n):
/// a model server that caches prompts (llama.cpp does) answers a repeated prompt faster, and
/// a fixed order would hand that gain to the same configuration every time.
///
/// # Errors
/// Sandbox runs that could not be carried out and unwritable outputs; a failed deliberation
/// is a row, not an error.
pub async fn run(
    plan: &Plan,
    orchestrator: &mut Orchestrator,
    grader: &Grader,
) -> Result<(Vec<Row>, Outputs)> {
    create_dir(&plan.out_dir)?;
    let mut rows = Vec::with_capacity(plan.problems.len() * plan.configs.len());
    let timeout_secs = i32::try_from(plan.deliberation_timeout.as_secs()).unwrap_or(i32::MAX);
    for (index, problem) in plan.problems.iter().enumerate() {
        let visible = grader.vet(problem, visible_asserts(&problem.prompt, &problem.entry_point)).await?;
        for config in rotated(&plan.configs, index) {
            let request = config.request(problem, &visible, timeout_secs);
            let row = deliberate_and_grade(
                orchestrator,
                grader,
                problem,
                config,
                request,
                visible.len(),
                &plan.out_dir,
            )
            .await?;
            info!(
                problem = problem.task_id,
                n = index + 1,
                of = plan.problems.len(),
                config = %config.letter(),
                passed = row.passed,
                calls = row.calls,
                path = row.path,
                tokens = row.prompt_tokens + row.completion_tokens,
                wall_s = format!("{:.1}", row.wall.as_secs_f64()),
                detail = row.error.as_deref().unwrap_or(&row.detail),
                "graded"
            );
            rows.push(row);
            write_outputs(plan, &rows)?;
        }
    }
    let outputs = write_outputs(plan, &rows)?;
    Ok((rows, outputs))
}

/// `configs` starting at `index` modulo their count.
fn rotated(configs: &[Configuration], index: usize) -> Vec<Configuration> {
    let mut order = configs.to_vec();
    let count = order.len();
    if count > 0 {
        order.rotate_left(index % count);
    }
    order
}

async fn deliberate_and_grade(
    orchestrator: &mut Orchestrator,
    grader: &Grader,
    problem: &Problem,
    config: Configuration,
    request: pb::DeliberateRequest,
    visible_tests: usize,
    out_dir: &Path,
) -> Result<Row> {
    let started = Instant::now();
    let answer = orchestrator.client.deliberate(request).await;
    let wall = started.elapsed();
    let mut row = Row {
        config,
        task_id: problem.task_id.clone(),
        visible_tests,
        passed: false,
        detail: String::new(),
        prompt_tokens: 0,
        completion_tokens: 0,
        calls: 0,
        calls_saved: 0,
        wall,
        server_tests: None,
        error: None,
        path: String::new(),
        reviews: 0,
        graded_reviews: 0,
    };
    let response = match answer {
        Ok(response) => response.into_inner(),
        Err(status) => {
            warn!(problem = problem.task_id, config = %config.letter(), code = ?status.code(), "deliberation failed");
            row.error = Some(format!("{:?}: {}", status.code(), excerpt(status.message(), 200)));
            return Ok(row);
        }
    };
    if let Some(usage) = response.usage {
        row.prompt_tokens = usage.prompt_tokens;
        row.completion_tokens = usage.completion_tokens;
        row.calls = usage.calls;
        row.calls_saved = usage.calls_saved;
    }
    row.path.clone_from(&response.path);
    row.reviews = i64::from(response.reviews);
    row.graded_reviews = i64::from(response.graded_reviews);
    let winner = response
        .results
        .iter()
        .find(|r| r.proposal.as_ref().is_some_and(|p| p.author_id == response.winner_id))
        .or(response.results.first());
    let Some(winner) = winner else {
        row.error = Some(format!("no proposal survived ({} failures)", response.failures.len()));
        return Ok(row);
    };
    row.server_tests = winner.tests.as_ref().filter(|t| t.ran).map(|t| ServerTests {
        passed: t.passed,
        failed: t.failed,
        errored: t.errored,
    });
    let content = winner.proposal.as_ref().map_or("", |p| p.content.as_str());
    let code = python_code(content);
    save_answer(out_dir, config, &problem.task_id, content)?;
    let verdict = grader.grade(problem, code.as_deref()).await?;
    row.passed = verdict.passed;
    row.detail = verdict.detail;
    Ok(row)
}

/// Keeps the winner's answer for inspection: `answers/<config>/<task>.md`.
fn save_answer(out_dir: &Path, config: Configuration, task_id: &str, content: &str) -> Result<()> {
    let dir = out_dir.join("answers").join(config.letter().to_string());
    create_dir(&dir)?;
    let path = dir.join(format!("{}.md", task_id.replace(['/', '\\'], "_")));
    outputs::write_file(&path, content)
}

/// Writes the rows so far, ordered by problem, then configuration (they arrive in turn order).
fn write_outputs(plan: &Plan, rows: &[Row]) -> Result<Outputs> {
    let mut ordered = rows.to_vec();
    ordered.sort_by_key(|row| {
        (
            plan.problems.iter().position(|p| p.task_id == row.task_id),
            plan.configs.iter().position(|&c| c == row.config),
        )
    });
    outputs::write(&plan.out_dir, &plan.info, &plan.configs, &ordered)
}

/// `--check`: a row for every problem under every configuration, none of them a failed
/// deliberation. Says nothing about quality.
///
/// # Errors
/// [`QualityError::Check`] listing what is missing or failed.
pub fn check(plan: &Plan, rows: &[Row]) -> Result<()> {
    let task_ids: Vec<&str> = plan.problems.iter().map(|p| p.task_id.as_str()).collect();
    check_rows(&task_ids, &plan.configs, rows)
}

/// [`check`] for any list of problems (a merged table: the problems it has rows for).
///
/// # Errors
/// [`QualityError::Check`] listing what is missing or failed.
pub fn check_rows<S: AsRef<str>>(task_ids: &[S], configs: &[Configuration], rows: &[Row]) -> Result<()> {
    let mut problems = Vec::new();
    for task_id in task_ids.iter().map(AsRef::as_ref) {
        for &config in configs {
            let mine: Vec<&Row> =
                rows.iter().filter(|r| r.task_id == task_id && r.config == config).collect();
            match mine.as_slice() {
                [row] => {
                    if let Some(error) = &row.error {
                        problems.push(format!("{task_id} ({}): {error}", config.letter()));
                    }
                }
                other => problems.push(format!(
                    "{task_id} ({}): {} rows instead of 1",
                    config.letter(),
                    other.len()
                )),
            }
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(QualityError::Check(problems.join("; "))) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(task_id: &str) -> Problem {
        Problem {
            task_id: task_id.into(),
            prompt: "def f():\n".into(),
            canonical_solution: "    return 1\n".into(),
            test: "def check(candidate):\n    assert candidate() == 1\n".into(),
            entry_point: "f".into(),
        }
    }

    fn plan() -> Plan {
        Plan {
            problems: vec![problem("HumanEval/0"), problem("HumanEval/1")],
            configs: vec![Configuration::Single, Configuration::CouncilWithTests],
            deliberation_timeout: Duration::from_secs(60),
            out_dir: PathBuf::from("unused"),
            info: RunInfo {
                date: "2026-11-26".into(),
                model: "m".into(),
                endpoint: "e".into(),
                problems: "p".into(),
                merged_from: Vec::new(),
            },
        }
    }

    fn row(task_id: &str, config: Configuration) -> Row {
        Row {
            config,
            task_id: task_id.into(),
            visible_tests: 0,
            passed: false,
            detail: "failed: AssertionError".into(),
            prompt_tokens: 1,
            completion_tokens: 1,
            calls: 1,
            calls_saved: 0,
            wall: Duration::from_millis(1),
            server_tests: None,
            error: None,
            path: String::new(),
            reviews: 0,
            graded_reviews: 0,
        }
    }

    #[test]
    fn configurations_take_turns_going_first() {
        let all = Configuration::ALL;
        let firsts: Vec<Configuration> = (0..4).map(|i| rotated(&all, i)[0]).collect();
        assert_eq!(firsts, [all[0], all[1], all[2], all[3]]);
        assert_eq!(rotated(&all[..3], 1), [all[1], all[2], all[0]]);
        assert_eq!(rotated(&all, 5), all, "a full turn");
        assert!(rotated(&[], 3).is_empty());
    }

    #[test]
    fn check_wants_one_row_per_problem_and_configuration_whatever_the_quality() {
        let plan = plan();
        let mut rows: Vec<Row> =
            plan.problems.iter().flat_map(|p| plan.configs.iter().map(|&c| row(&p.task_id, c))).collect();
        check(&plan, &rows).unwrap();

        rows[3].error = Some("DeadlineExceeded: deliberation timed out".into());
        let duplicate = rows[0].clone();
        rows.remove(1);
        rows.push(duplicate);
        let error = check(&plan, &rows).unwrap_err().to_string();
        assert_eq!(
            error,
            "check failed: HumanEval/0 (a): 2 rows instead of 1; HumanEval/0 (c): 0 rows instead of 1; \
             HumanEval/1 (c): DeadlineExceeded: deliberation timed out"
        );
    }
}
