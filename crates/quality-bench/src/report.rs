//! Rows of a run and what is written from them: CSV, a Markdown table, per-configuration
//! totals.

use std::fmt::Write as _;
use std::time::Duration;

use orchestrator_application::LatencyHistogram;

use crate::configs::Configuration;

/// One problem under one configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub config: Configuration,
    pub task_id: String,
    /// Visible tests (vetted docstring examples) the problem has; sent only by (c).
    pub visible_tests: usize,
    /// The winner passed the hidden tests.
    pub passed: bool,
    /// The grading detail, or the deliberation's error.
    pub detail: String,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub calls: i64,
    /// Calls an early stop spared, as the server reported them.
    pub calls_saved: i64,
    /// Around the Deliberate RPC, as the client saw it.
    pub wall: Duration,
    /// Whether the server reported running the acceptance tests on the winner, and its counts.
    pub server_tests: Option<ServerTests>,
    /// The deliberation failed (gRPC status); the row then counts as not passed.
    pub error: Option<String>,
}

/// The winner's acceptance-test counts as the server reported them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerTests {
    pub passed: i32,
    pub failed: i32,
    pub errored: i32,
}

impl Row {
    fn tokens(&self) -> i64 {
        self.prompt_tokens + self.completion_tokens
    }
}

/// Totals of one configuration over a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub config: Configuration,
    pub problems: usize,
    pub passed: usize,
    pub errors: usize,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub calls: i64,
    pub wall: Duration,
    pub wall_p50_ms: f64,
    pub wall_p95_ms: f64,
    /// Rows where the server ran the acceptance tests on the winner.
    pub server_tested: usize,
}

impl Summary {
    /// Share of problems whose winner passed the hidden tests, in [0, 1].
    pub fn pass_at_1(&self) -> f64 {
        if self.problems == 0 { 0.0 } else { self.passed as f64 / self.problems as f64 }
    }

    fn per_problem(&self, total: f64) -> f64 {
        if self.problems == 0 { 0.0 } else { total / self.problems as f64 }
    }

    pub fn tokens_per_problem(&self) -> f64 {
        self.per_problem((self.prompt_tokens + self.completion_tokens) as f64)
    }

    pub fn calls_per_problem(&self) -> f64 {
        self.per_problem(self.calls as f64)
    }

    pub fn wall_secs_per_problem(&self) -> f64 {
        self.per_problem(self.wall.as_secs_f64())
    }
}

/// Totals per configuration, in `configs` order.
pub fn summarise(rows: &[Row], configs: &[Configuration]) -> Vec<Summary> {
    configs
        .iter()
        .map(|&config| {
            let mine: Vec<&Row> = rows.iter().filter(|r| r.config == config).collect();
            let mut latencies = LatencyHistogram::default();
            for row in &mine {
                latencies.record(row.wall);
            }
            Summary {
                config,
                problems: mine.len(),
                passed: mine.iter().filter(|r| r.passed).count(),
                errors: mine.iter().filter(|r| r.error.is_some()).count(),
                prompt_tokens: mine.iter().map(|r| r.prompt_tokens).sum(),
                completion_tokens: mine.iter().map(|r| r.completion_tokens).sum(),
                calls: mine.iter().map(|r| r.calls).sum(),
                wall: mine.iter().map(|r| r.wall).sum(),
                wall_p50_ms: latencies.percentile_ms(50.0),
                wall_p95_ms: latencies.percentile_ms(95.0),
                server_tested: mine.iter().filter(|r| r.server_tests.is_some()).count(),
            }
        })
        .collect()
}

/// One CSV line per row, with a header.
pub fn csv(rows: &[Row]) -> String {
    let mut out = String::from(
        "config,task_id,visible_tests,passed,prompt_tokens,completion_tokens,calls,calls_saved,wall_ms,\
         server_tests_ran,server_tests_passed,server_tests_failed,server_tests_errored,error,detail\n",
    );
    for row in rows {
        let (ran, passed, failed, errored) = match row.server_tests {
            Some(t) => (true, t.passed.to_string(), t.failed.to_string(), t.errored.to_string()),
            None => (false, String::new(), String::new(), String::new()),
        };
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            row.config.letter(),
            csv_field(&row.task_id),
            row.visible_tests,
            row.passed,
            row.prompt_tokens,
            row.completion_tokens,
            row.calls,
            row.calls_saved,
            row.wall.as_millis(),
            ran,
            passed,
            failed,
            errored,
            csv_field(row.error.as_deref().unwrap_or("")),
            csv_field(&row.detail),
        );
    }
    out
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// What the Markdown report says about the run itself.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub date: String,
    pub model: String,
    pub endpoint: String,
    /// `HumanEval/0..HumanEval/9`, or the range given.
    pub problems: String,
}

/// The per-configuration table (the one for the README).
pub fn summary_table(summaries: &[Summary]) -> String {
    let mut out = String::from(
        "| configuration | pass@1 | passed | tokens / problem | calls / problem | wall s / problem | wall p50 / p95 s | errors |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for s in summaries {
        let _ = writeln!(
            out,
            "| ({}) {} | {:.1}% | {}/{} | {:.0} | {:.1} | {:.1} | {:.1} / {:.1} | {} |",
            s.config.letter(),
            s.config.label(),
            s.pass_at_1() * 100.0,
            s.passed,
            s.problems,
            s.tokens_per_problem(),
            s.calls_per_problem(),
            s.wall_secs_per_problem(),
            s.wall_p50_ms / 1000.0,
            s.wall_p95_ms / 1000.0,
            s.errors,
        );
    }
    out
}

/// The whole Markdown report: what was run, the summary, and every row.
pub fn markdown(info: &RunInfo, summaries: &[Summary], rows: &[Row]) -> String {
    let mut out = format!(
        "# Quality benchmark\n\n{} · model `{}` at {} · problems {}\n\n",
        info.date, info.model, info.endpoint, info.problems
    );
    out.push_str(&summary_table(summaries));
    let tested: usize = summaries.iter().filter(|s| s.config.sends_tests()).map(|s| s.server_tested).sum();
    let sent: usize = summaries.iter().filter(|s| s.config.sends_tests()).map(|s| s.problems).sum();
    if sent > 0 {
        let _ = writeln!(
            out,
            "\nThe server reported running the acceptance tests on the winner in {tested} of {sent} (c) rows."
        );
    }
    out.push_str(
        "\npass@1: the winning proposal's code passes the problem's hidden `check`, run in the sandbox. \
         Tokens and calls are the deliberation's totals; wall time is the Deliberate RPC as the client saw it.\n\n\
         | problem | config | visible tests | hidden tests | tokens | calls | wall s | server tests (p/f/e) | detail |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for row in rows {
        let server = row
            .server_tests
            .map_or_else(|| "not run".to_owned(), |t| format!("{}/{}/{}", t.passed, t.failed, t.errored));
        let detail = row.error.as_deref().unwrap_or(&row.detail).replace('|', "\\|").replace('\n', " ");
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {:.1} | {} | {} |",
            row.task_id,
            row.config.letter(),
            row.visible_tests,
            if row.passed { "pass" } else { "fail" },
            row.tokens(),
            row.calls,
            row.wall.as_secs_f64(),
            server,
            detail,
        );
    }
    out
}

/// Today's UTC date as `YYYY-MM-DD` from seconds since the epoch (days-to-civil conversion,
/// proleptic Gregorian calendar).
pub fn utc_date(unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64 + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn row(config: Configuration, task: &str, passed: bool, wall_ms: u64) -> Row {
        Row {
            config,
            task_id: task.into(),
            visible_tests: 2,
            passed,
            detail: if passed { "passed".into() } else { "failed: AssertionError, at \"x\"".into() },
            prompt_tokens: 100,
            completion_tokens: 50,
            calls: if config == Configuration::Single { 1 } else { 9 },
            calls_saved: 0,
            wall: Duration::from_millis(wall_ms),
            server_tests: None,
            error: None,
        }
    }

    #[test]
    fn summaries_count_per_configuration() {
        let rows = vec![
            row(Configuration::Single, "HumanEval/0", true, 1000),
            row(Configuration::Single, "HumanEval/1", false, 3000),
            row(Configuration::Council, "HumanEval/0", true, 9000),
            Row {
                error: Some("DEADLINE_EXCEEDED".into()),
                ..row(Configuration::Council, "HumanEval/1", false, 1)
            },
        ];
        let summaries = summarise(&rows, &[Configuration::Single, Configuration::Council]);
        assert_eq!(summaries[0].problems, 2);
        assert_eq!(summaries[0].passed, 1);
        assert!((summaries[0].pass_at_1() - 0.5).abs() < 1e-9);
        assert!((summaries[0].tokens_per_problem() - 150.0).abs() < 1e-9);
        assert!((summaries[0].wall_secs_per_problem() - 2.0).abs() < 1e-9);
        assert_eq!(summaries[1].errors, 1);
        assert!((summaries[1].calls_per_problem() - 9.0).abs() < 1e-9);
        let table = summary_table(&summaries);
        assert!(table.contains("| (a) one call (N=1, R=0) | 50.0% | 1/2 | 150 | 1.0 | 2.0 |"), "{table}");
    }

    #[test]
    fn csv_has_a_row_per_problem_and_quotes_what_needs_it() {
        let rows = vec![row(Configuration::CouncilWithTests, "HumanEval/3", false, 1500)];
        let csv = csv(&rows);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("config,task_id,"));
        assert_eq!(
            lines[1],
            "c,HumanEval/3,2,false,100,50,9,0,1500,false,,,,,\"failed: AssertionError, at \"\"x\"\"\""
        );
    }

    #[test]
    fn the_markdown_report_names_the_run_and_escapes_pipes() {
        let info = RunInfo {
            date: "2026-11-26".into(),
            model: "smollm2".into(),
            endpoint: "http://127.0.0.1:8089/v1".into(),
            problems: "HumanEval/0..HumanEval/1".into(),
        };
        let rows = vec![Row {
            detail: "failed: a | b".into(),
            ..row(Configuration::Single, "HumanEval/0", false, 10)
        }];
        let text = markdown(&info, &summarise(&rows, &[Configuration::Single]), &rows);
        assert!(text.contains("2026-11-26 · model `smollm2`"));
        assert!(
            text.contains("| HumanEval/0 | a | 2 | fail | 150 | 1 | 0.0 | not run | failed: a \\| b |"),
            "{text}"
        );
    }

    #[test]
    fn utc_dates_from_unix_seconds() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(951_782_400), "2000-02-29");
        assert_eq!(utc_date(1_795_651_200), "2026-11-26");
    }
}
