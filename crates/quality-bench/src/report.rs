//! Rows of a run and what is written from them: a Markdown table, per-configuration totals.
//! (The CSV is [`crate::results_csv`].)

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
    /// Which way the deliberation went, as the server reported it (`council`,
    /// `cascade_first_answer`, `cascade_escalated`); empty when it failed, or in a CSV written
    /// before the server reported it.
    pub path: String,
    /// Reviews made, all rounds.
    pub reviews: i64,
    /// Reviews that gave a usable grade (a small model's review often has none).
    pub graded_reviews: i64,
}

/// The winner's acceptance-test counts as the server reported them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerTests {
    pub passed: i32,
    pub failed: i32,
    pub errored: i32,
}

/// The `path` of a cascade whose first answer passed.
pub const PATH_FIRST_ANSWER: &str = "cascade_first_answer";
/// The `path` of a cascade whose first answer failed, so the rest of the council joined.
pub const PATH_ESCALATED: &str = "cascade_escalated";

impl Row {
    pub fn tokens(&self) -> i64 {
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
    pub reviews: i64,
    pub graded_reviews: i64,
    /// Cascades that ended after the first answer.
    pub first_answers: usize,
    /// Cascades in which the rest of the council joined.
    pub escalations: usize,
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

    /// All the tokens spent over the problems solved: what one solved problem costs, failures
    /// included. `None` when nothing was solved.
    pub fn tokens_per_solved(&self) -> Option<f64> {
        (self.passed > 0).then(|| (self.prompt_tokens + self.completion_tokens) as f64 / self.passed as f64)
    }

    /// Share of reviews that gave a usable grade, in [0, 1]; `None` without reviews.
    pub fn graded_review_share(&self) -> Option<f64> {
        (self.reviews > 0).then(|| self.graded_reviews as f64 / self.reviews as f64)
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
                reviews: mine.iter().map(|r| r.reviews).sum(),
                graded_reviews: mine.iter().map(|r| r.graded_reviews).sum(),
                first_answers: mine.iter().filter(|r| r.path == PATH_FIRST_ANSWER).count(),
                escalations: mine.iter().filter(|r| r.path == PATH_ESCALATED).count(),
            }
        })
        .collect()
}

/// What the Markdown report says about the run itself.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub date: String,
    pub model: String,
    pub endpoint: String,
    /// `HumanEval/0..HumanEval/9`, or the range given.
    pub problems: String,
    /// The results files a merged report combines, in the order given; empty for a run.
    pub merged_from: Vec<String>,
}

/// The per-configuration table (the one for the README).
pub fn summary_table(summaries: &[Summary]) -> String {
    let mut out = String::from(
        "| configuration | pass@1 | passed | tokens / problem | tokens / solved | calls / problem | wall s / problem | wall p50 / p95 s | graded reviews | cascade paths | errors |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for s in summaries {
        let per_solved = s.tokens_per_solved().map_or_else(|| "—".to_owned(), |t| format!("{t:.0}"));
        let graded = s.graded_review_share().map_or_else(
            || "—".to_owned(),
            |share| format!("{:.0}% ({}/{})", share * 100.0, s.graded_reviews, s.reviews),
        );
        let paths = if s.config == Configuration::Cascade || s.first_answers + s.escalations > 0 {
            format!("{} first answer / {} escalated", s.first_answers, s.escalations)
        } else {
            "—".to_owned()
        };
        let _ = writeln!(
            out,
            "| ({}) {} | {:.1}% | {}/{} | {:.0} | {} | {:.1} | {:.1} | {:.1} / {:.1} | {} | {} | {} |",
            s.config.letter(),
            s.config.label(),
            s.pass_at_1() * 100.0,
            s.passed,
            s.problems,
            s.tokens_per_problem(),
            per_solved,
            s.calls_per_problem(),
            s.wall_secs_per_problem(),
            s.wall_p50_ms / 1000.0,
            s.wall_p95_ms / 1000.0,
            graded,
            paths,
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
    if !info.merged_from.is_empty() {
        let _ = writeln!(
            out,
            "Merged from {}: for each problem and configuration, the row of the last file that has one.\n",
            info.merged_from.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", ")
        );
    }
    out.push_str(&summary_table(summaries));
    let tested: usize = summaries.iter().filter(|s| s.config.sends_tests()).map(|s| s.server_tested).sum();
    let sent: usize = summaries.iter().filter(|s| s.config.sends_tests()).map(|s| s.problems).sum();
    if sent > 0 {
        let _ = writeln!(
            out,
            "\nThe server reported running the acceptance tests on the winner in {tested} of {sent} rows with tests ((c), (d), (e))."
        );
    }
    out.push_str(
        "\npass@1: the winning proposal's code passes the problem's hidden `check`, run in the sandbox. \
         Tokens and calls are the deliberation's totals; wall time is the Deliberate RPC as the client saw it. \
         Tokens / solved: all the tokens of a configuration over the problems it solved. \
         Graded reviews: reviews that gave a usable grade, of those made.\n\n\
         | problem | config | visible tests | hidden tests | tokens | calls | wall s | server tests (p/f/e) | path | graded / reviews | detail |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for row in rows {
        let server = row
            .server_tests
            .map_or_else(|| "not run".to_owned(), |t| format!("{}/{}/{}", t.passed, t.failed, t.errored));
        let detail = row.error.as_deref().unwrap_or(&row.detail).replace('|', "\\|").replace('\n', " ");
        let path = if row.path.is_empty() { "—" } else { row.path.as_str() };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {:.1} | {} | {} | {}/{} | {} |",
            row.task_id,
            row.config.letter(),
            row.visible_tests,
            if row.passed { "pass" } else { "fail" },
            row.tokens(),
            row.calls,
            row.wall.as_secs_f64(),
            server,
            path,
            row.graded_reviews,
            row.reviews,
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
pub(crate) mod tests {
    use super::*;

    /// A row of `config` on `task`: 150 tokens, 1 call for (a) and 9 (3 reviews, 2 graded)
    /// for the others.
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
            path: if config == Configuration::Single { String::new() } else { "council".into() },
            reviews: if config == Configuration::Single { 0 } else { 3 },
            graded_reviews: if config == Configuration::Single { 0 } else { 2 },
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
        assert!(
            table.contains("| (a) one call (N=1, R=0) | 50.0% | 1/2 | 150 | 300 | 1.0 | 2.0 |"),
            "{table}"
        );
        assert!(table.contains("| 67% (4/6) | — | 1 |"), "graded reviews of (b), no cascade: {table}");
    }

    #[test]
    fn tokens_per_solved_spreads_every_token_over_the_problems_solved() {
        let rows = vec![
            row(Configuration::Cascade, "HumanEval/0", true, 10),
            row(Configuration::Cascade, "HumanEval/1", false, 10),
            row(Configuration::Cascade, "HumanEval/2", false, 10),
            row(Configuration::Single, "HumanEval/0", false, 10),
        ];
        let summaries = summarise(&rows, &[Configuration::Cascade, Configuration::Single]);
        assert_eq!(summaries[0].tokens_per_solved(), Some(450.0), "3 × 150 tokens over 1 solved");
        assert_eq!(summaries[1].tokens_per_solved(), None, "nothing solved");
        assert_eq!(summaries[1].graded_review_share(), None, "no reviews");
        let table = summary_table(&summaries);
        assert!(table.contains("| 150 | — | 1.0 |"), "a dash when nothing was solved: {table}");
    }

    #[test]
    fn the_path_mix_of_the_cascade_is_counted() {
        let rows = vec![
            Row { path: PATH_FIRST_ANSWER.into(), ..row(Configuration::Cascade, "HumanEval/0", true, 10) },
            Row { path: PATH_ESCALATED.into(), ..row(Configuration::Cascade, "HumanEval/1", true, 10) },
            Row { path: PATH_ESCALATED.into(), ..row(Configuration::Cascade, "HumanEval/2", false, 10) },
            Row {
                error: Some("Unavailable".into()),
                ..row(Configuration::Cascade, "HumanEval/3", false, 10)
            },
        ];
        let summary = &summarise(&rows, &[Configuration::Cascade])[0];
        assert_eq!((summary.first_answers, summary.escalations), (1, 2));
        let table = summary_table(std::slice::from_ref(summary));
        assert!(table.contains("| 1 first answer / 2 escalated | 1 |"), "{table}");
    }

    #[test]
    fn the_markdown_report_names_the_run_and_escapes_pipes() {
        let info = RunInfo {
            date: "2026-11-26".into(),
            model: "smollm2".into(),
            endpoint: "http://127.0.0.1:8089/v1".into(),
            problems: "HumanEval/0..HumanEval/1".into(),
            merged_from: Vec::new(),
        };
        let rows = vec![Row {
            detail: "failed: a | b".into(),
            ..row(Configuration::Single, "HumanEval/0", false, 10)
        }];
        let text = markdown(&info, &summarise(&rows, &[Configuration::Single]), &rows);
        assert!(text.contains("2026-11-26 · model `smollm2`"));
        assert!(
            text.contains(
                "| HumanEval/0 | a | 2 | fail | 150 | 1 | 0.0 | not run | — | 0/0 | failed: a \\| b |"
            ),
            "{text}"
        );
        assert!(!text.contains("Merged from"));
        let merged = RunInfo { merged_from: vec!["x/results.csv".into(), "y/results.csv".into()], ..info };
        let text = markdown(&merged, &summarise(&rows, &[Configuration::Single]), &rows);
        assert!(text.contains("Merged from `x/results.csv`, `y/results.csv`: "), "{text}");
    }

    #[test]
    fn utc_dates_from_unix_seconds() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(951_782_400), "2000-02-29");
        assert_eq!(utc_date(1_795_651_200), "2026-11-26");
    }
}
