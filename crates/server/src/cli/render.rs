//! Results, statuses and durations as a person reads them: the ranked table, the winner with
//! its checks and reviews, `in progress` rather than `InProgress`, `1m 05s` rather than
//! `65000 ms`, and elapsed time (never `0 ms`) for work that has not ended.

use std::fmt::Write as _;

use orchestrator_api_grpc::pb;
use orchestrator_server::control_chars::printable;

use super::args::Show;

/// A status as people say it.
pub(crate) fn status_name(status: pb::DeliberationStatus) -> &'static str {
    match status {
        pb::DeliberationStatus::Unknown => "unknown",
        pb::DeliberationStatus::Pending => "pending",
        pb::DeliberationStatus::InProgress => "in progress",
        pb::DeliberationStatus::Completed => "completed",
        pb::DeliberationStatus::Failed => "failed",
        pb::DeliberationStatus::Timeout => "timed out",
        pb::DeliberationStatus::Cancelled => "cancelled",
        pb::DeliberationStatus::Interrupted => "interrupted",
    }
}

/// Whether a deliberation in this status will change no more.
pub(crate) fn is_final(status: pb::DeliberationStatus) -> bool {
    !matches!(
        status,
        pb::DeliberationStatus::Pending
            | pb::DeliberationStatus::InProgress
            | pb::DeliberationStatus::Unknown
    )
}

/// Milliseconds since the Unix epoch, by this machine's clock.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// `850 ms`, `12.3 s`, `4m 05s`, `2h 03m`.
pub(crate) fn duration(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{}m {:02}s", ms / 60_000, (ms / 1000) % 60)
    } else {
        format!("{}h {:02}m", ms / 3_600_000, (ms / 60_000) % 60)
    }
}

/// How long a deliberation took, or for one that has not ended, how long it has been going.
/// A final deliberation without a recorded duration (stored by an older server) shows `-`.
pub(crate) fn duration_of(status: pb::DeliberationStatus, duration_ms: i64, created_at_ms: i64) -> String {
    if duration_ms > 0 {
        duration(duration_ms)
    } else if is_final(status) {
        "-".to_owned()
    } else if created_at_ms > 0 {
        format!("{} so far", duration(now_ms() - created_at_ms))
    } else {
        "-".to_owned()
    }
}

/// `5 s ago`, `3m 10s ago`.
pub(crate) fn age(created_at_ms: i64) -> String {
    if created_at_ms <= 0 {
        return "-".to_owned();
    }
    format!("{} ago", duration(now_ms() - created_at_ms))
}

/// `1234567` as `1,234,567`.
pub(crate) fn count(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// The first line of a task, cut to `max` characters of what a terminal shows of it.
pub(crate) fn render_task(task: &str, max: usize) -> String {
    let first = printable(task.lines().next().unwrap_or_default());
    if first.chars().count() > max {
        let cut: String = first.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    } else {
        first.into_owned()
    }
}

/// `9 calls, 1,234 tokens` (prompt plus completion).
pub(crate) fn usage(usage: Option<&pb::TokenUsage>) -> String {
    let u = usage.copied().unwrap_or_default();
    format!("{} call(s), {} tokens", count(u.calls), count(u.prompt_tokens + u.completion_tokens))
}

/// One check of a proposal: its name, whether it passed, and what it said.
pub(crate) struct CheckLine {
    pub(crate) name: String,
    /// `None`: not run.
    pub(crate) passed: Option<bool>,
    pub(crate) detail: String,
}

/// Every check of a suite, in a fixed order: policy, lint, dry run, then the others (the
/// acceptance tests among them).
pub(crate) fn check_lines(checks: Option<&pb::CheckSuite>) -> Vec<CheckLine> {
    let Some(checks) = checks else { return Vec::new() };
    let mut lines = Vec::new();
    if let Some(p) = &checks.policy {
        let detail = if p.violations.is_empty() { p.message.clone() } else { p.violations.join("; ") };
        lines.push(CheckLine { name: "policy".into(), passed: Some(p.passed), detail });
    }
    if let Some(l) = &checks.lint {
        let mut detail = format!("{} error(s), {} warning(s)", l.error_count, l.warning_count);
        if let Some(first) = l.errors.first() {
            let _ = write!(detail, ": {first}");
        }
        lines.push(CheckLine { name: "lint".into(), passed: Some(l.passed), detail });
    }
    if let Some(d) = &checks.dryrun {
        let detail = if d.ran {
            let output = d.output.lines().next().unwrap_or_default();
            format!("exit {} {}", d.exit_code, if d.message.is_empty() { output } else { &d.message })
        } else {
            d.message.strip_prefix("not run: ").unwrap_or(&d.message).to_owned()
        };
        lines.push(CheckLine { name: "dry run".into(), passed: d.ran.then_some(d.passed), detail });
    }
    for c in checks.additional_checks.iter().filter(|c| applies(c)) {
        lines.push(CheckLine {
            name: c.check_type.clone(),
            passed: Some(c.passed),
            detail: format!("{} (score {:.2})", c.message, c.score),
        });
    }
    lines
}

/// Whether a check says anything: a requirements check of a task that lists none (`0/0
/// requirements addressed`) is no check, and no part of the score either.
fn applies(check: &pb::CheckResult) -> bool {
    !(check.check_type == "requirements" && check.details.get("total").is_some_and(|total| total == "0"))
}

/// Whether a proposal's acceptance tests ran, and if so whether every one passed.
fn tests_passed(result: &pb::DeliberationResult) -> Option<bool> {
    result.tests.as_ref().filter(|t| t.ran).map(|t| t.failed + t.errored == 0)
}

/// `0.83 3/4`: the check score and how many checks that ran passed — the acceptance tests
/// (all of them passing) counted as one check, as they are the heaviest part of the score.
fn checks_cell(result: &pb::DeliberationResult) -> String {
    let lines = check_lines(result.checks.as_ref());
    let ran: Vec<bool> = lines.iter().filter_map(|l| l.passed).chain(tests_passed(result)).collect();
    let passed = ran.iter().filter(|p| **p).count();
    format!("{:.2} {passed}/{}", result.check_score, ran.len())
}

/// `2/3`: acceptance tests passed of those run; `-` when they did not run.
fn tests_cell(result: &pb::DeliberationResult) -> String {
    match result.tests.as_ref().filter(|t| t.ran) {
        Some(t) => format!("{}/{}", t.passed, t.passed + t.failed + t.errored),
        None => "-".to_owned(),
    }
}

/// The ranked table.
pub(crate) fn ranking(results: &[pb::DeliberationResult]) -> String {
    let mut out = format!(
        "{:<5} {:<20} {:<12} {:>6} {:>9} {:>6} {:>5}\n",
        "RANK", "AUTHOR", "PROFILE", "SCORE", "CHECKS", "TESTS", "PEER"
    );
    for r in results {
        let p = r.proposal.clone().unwrap_or_default();
        let peer = r.peer_score.map_or_else(|| "-".to_owned(), |s| format!("{s:.1}"));
        let _ = writeln!(
            out,
            "{:<5} {:<20} {:<12} {:>6.3} {:>9} {:>6} {:>5}",
            r.rank,
            p.author_id,
            p.model_profile,
            r.score,
            checks_cell(r),
            tests_cell(r),
            peer
        );
    }
    out
}

/// One proposal in full: its content, checks and the reviews it received.
pub(crate) fn proposal(result: &pb::DeliberationResult, title: &str) -> String {
    let p = result.proposal.clone().unwrap_or_default();
    let mut out = format!(
        "\n{title} {} ({}): rank {}, score {:.3}\n\n{}\n",
        p.author_id,
        if p.model_profile.is_empty() { "default" } else { &p.model_profile },
        result.rank,
        result.score,
        p.content.trim_end()
    );
    let lines = check_lines(result.checks.as_ref());
    if !lines.is_empty() {
        out.push_str("\nchecks:\n");
        for l in &lines {
            let verdict = match l.passed {
                Some(true) => "passed",
                Some(false) => "FAILED",
                None => "not run",
            };
            let _ = writeln!(out, "  {:<13} {:<8} {}", l.name, verdict, l.detail.trim());
        }
    }
    if let Some(tests) = result.tests.as_ref().filter(|t| t.ran || !t.message.is_empty()) {
        out.push_str(&test_lines(tests, &result.revision_tests));
    }
    if !result.reviews.is_empty() {
        let _ = writeln!(out, "\nreviews ({}):", result.reviews.len());
        for r in &result.reviews {
            let score = r.score.map_or_else(|| "no score".to_owned(), |s| format!("{s:.1}/10"));
            let critique = r.critique.lines().next().unwrap_or_default();
            let _ = writeln!(out, "  round {} {:<20} {:<9} {critique}", r.round, r.reviewer_id, score);
        }
    }
    out
}

/// How a test report reads: `passed (3 passed)`, `FAILED (1 passed, 2 failed)`, `not run
/// (no sandbox)` — the server's "not run: " said once.
fn tests_verdict(t: &pb::TestReport) -> String {
    let verdict = match (t.ran, t.failed + t.errored) {
        (false, _) => "not run",
        (true, 0) => "passed",
        (true, _) => "FAILED",
    };
    let message = t.message.trim();
    let message = message.strip_prefix("not run:").map_or(message, str::trim);
    if message.is_empty() { verdict.to_owned() } else { format!("{verdict} ({message})") }
}

/// The acceptance tests of a proposal's final version (each failing case with its message),
/// then how every earlier version fared.
fn test_lines(tests: &pb::TestReport, revisions: &[pb::TestReport]) -> String {
    let mut out = format!("\nacceptance tests: {}\n", tests_verdict(tests));
    for case in tests.cases.iter().filter(|c| c.outcome != "passed") {
        let _ = writeln!(
            out,
            "  {:<8} {} {}",
            case.outcome,
            case.name,
            case.message.lines().next().unwrap_or_default()
        );
    }
    for (version, t) in revisions.iter().enumerate() {
        let _ = writeln!(out, "  version {version}: {}", tests_verdict(t));
    }
    out
}

/// A stored deliberation: the header, dropped agents, the ranking, then the winner (or, with
/// `--show all`, every proposal).
pub(crate) fn deliberation(r: &pb::GetDeliberationResultResponse, show: Show) -> String {
    let status = r.status();
    let when = if is_final(status) {
        // A duration is stored with every end; one stored by an older server may lack it.
        if r.duration_ms > 0 { format!(" in {}", duration(r.duration_ms)) } else { String::new() }
    } else {
        let phase = r.metadata.as_ref().and_then(|m| m.tags.get("phase"));
        let phase = phase.map_or_else(String::new, |p| format!(", {p}"));
        let elapsed = if r.created_at_ms > 0 { duration(now_ms() - r.created_at_ms) } else { "-".to_owned() };
        format!(" for {elapsed}{phase}")
    };
    let mut out = format!(
        "task {} ({}): {}{when}, {}\n",
        r.task_id,
        if r.role.is_empty() { "-" } else { &r.role },
        status_name(status),
        usage(r.usage.as_ref())
    );
    if !r.error_message.is_empty() {
        let _ = writeln!(out, "error: {}", r.error_message);
    }
    for f in &r.failures {
        let round = if f.round > 0 { format!(" (round {})", f.round) } else { String::new() };
        let _ = writeln!(out, "dropped {} during {}{round}: {}", f.agent_id, f.phase, f.reason);
    }
    if r.results.is_empty() {
        if !is_final(status) {
            let _ = writeln!(out, "no results yet: follow it with `orchestrator watch {}`", r.task_id);
        }
        return out;
    }
    out.push('\n');
    out.push_str(&ranking(&r.results));
    match show {
        Show::All => {
            for result in &r.results {
                let title = if result.rank == 1 { "winner" } else { "proposal" };
                out.push_str(&proposal(result, title));
            }
        }
        Show::Winner => {
            if let Some(winner) =
                r.results.iter().find(|x| x.proposal.as_ref().is_some_and(|p| p.author_id == r.winner_id))
            {
                out.push_str(&proposal(winner, "winner"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn durations_read_like_a_person_would_say_them() {
        assert_eq!(duration(850), "850 ms");
        assert_eq!(duration(12_340), "12.3 s");
        assert_eq!(duration(65_000), "1m 05s");
        assert_eq!(duration(7_380_000), "2h 03m");
    }

    #[test]
    fn unfinished_work_shows_time_so_far_never_zero() {
        let created = now_ms() - 5_000;
        let shown = duration_of(pb::DeliberationStatus::InProgress, 0, created);
        assert!(shown.ends_with(" so far") && shown.starts_with('5'), "{shown}");
        assert_eq!(duration_of(pb::DeliberationStatus::Completed, 1500, created), "1.5 s");
        assert_eq!(duration_of(pb::DeliberationStatus::Cancelled, 0, created), "-");
    }

    #[test]
    fn statuses_have_human_names() {
        assert_eq!(status_name(pb::DeliberationStatus::InProgress), "in progress");
        assert_eq!(status_name(pb::DeliberationStatus::Timeout), "timed out");
    }

    #[test]
    fn a_task_is_cut_by_what_a_terminal_shows_of_it() {
        assert_eq!(render_task("\x1b]0;pwned\x07abc\u{9b}2J\r\u{202e}def\nsecond line", 9), "]0;pwned…");
        assert_eq!(render_task("ab\x1b[2J\u{202e}c\rd", 8), "ab[2Jcd");
    }

    #[test]
    fn counts_group_thousands() {
        assert_eq!(count(0), "0");
        assert_eq!(count(1234), "1,234");
        assert_eq!(count(1_234_567), "1,234,567");
    }

    #[test]
    fn the_winner_shows_its_checks_and_reviews() {
        let result = pb::DeliberationResult {
            proposal: Some(pb::Proposal {
                author_id: "agent-0".into(),
                content: "fn x() {}".into(),
                ..Default::default()
            }),
            checks: Some(pb::CheckSuite {
                policy: Some(pb::PolicyResult { passed: true, ..Default::default() }),
                dryrun: Some(pb::DryRunResult {
                    ran: false,
                    message: "not run: no sandbox".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            score: 0.9,
            rank: 1,
            reviews: vec![pb::Review {
                reviewer_id: "agent-1".into(),
                round: 1,
                critique: "fine".into(),
                score: Some(7.0),
                ..Default::default()
            }],
            check_score: 1.0,
            peer_score: Some(7.0),
            usage: None,
            tests: Some(pb::TestReport {
                ran: true,
                passed: 1,
                failed: 1,
                message: "1 passed, 1 failed".into(),
                cases: vec![pb::TestCaseResult {
                    name: "test_empty".into(),
                    outcome: "failed".into(),
                    message: "assert x('') == 0".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            revision_tests: vec![pb::TestReport {
                ran: false,
                message: "not run: no sandbox".into(),
                ..Default::default()
            }],
        };
        let text = proposal(&result, "winner");
        assert!(text.contains("acceptance tests: FAILED (1 passed, 1 failed)"), "{text}");
        assert!(text.contains("failed   test_empty assert x('') == 0"), "{text}");
        assert!(text.contains("version 0: not run (no sandbox)"), "{text}");
        assert!(!text.contains("not run not run") && !text.contains("not run: "), "{text}");
        assert!(text.contains("dry run       not run  no sandbox"), "{text}");
        assert!(text.contains("round 1 agent-1") && text.contains("7.0/10"), "{text}");
        // The policy check passed, the acceptance tests (1 of 2) did not: one of two checks.
        let table = ranking(&[result]);
        assert!(table.contains("1.00 1/2    1/2"), "{table}");
    }

    #[test]
    fn a_task_without_tests_or_requirements_reads_so_once() {
        let no_tests = pb::TestReport {
            ran: false,
            message: "not run: the task has no acceptance tests".into(),
            ..Default::default()
        };
        let text = test_lines(&no_tests, &[]);
        assert_eq!(text, "\nacceptance tests: not run (the task has no acceptance tests)\n");
        let requirements = |covered: &str, total: &str| pb::CheckResult {
            check_type: "requirements".into(),
            passed: covered == total,
            score: 1.0,
            message: format!("{covered}/{total} requirements addressed"),
            details: HashMap::from([("covered".into(), covered.into()), ("total".into(), total.into())]),
        };
        let suite =
            |check: pb::CheckResult| pb::CheckSuite { additional_checks: vec![check], ..Default::default() };
        assert!(check_lines(Some(&suite(requirements("0", "0")))).is_empty(), "0/0 is no check");
        let lines = check_lines(Some(&suite(requirements("2", "2"))));
        assert_eq!(lines[0].detail, "2/2 requirements addressed (score 1.00)");
    }

    #[test]
    fn failing_acceptance_tests_count_among_the_checks_and_show_in_their_own_column() {
        let result = pb::DeliberationResult {
            rank: 1,
            check_score: 0.46,
            checks: Some(pb::CheckSuite {
                policy: Some(pb::PolicyResult { passed: true, ..Default::default() }),
                lint: Some(pb::LintResult { passed: true, ..Default::default() }),
                ..Default::default()
            }),
            tests: Some(pb::TestReport { ran: true, passed: 1, failed: 2, ..Default::default() }),
            ..Default::default()
        };
        let table = ranking(&[result]);
        assert!(table.lines().next().unwrap().contains("CHECKS  TESTS"), "{table}");
        assert!(table.contains("0.46 2/3    1/3"), "{table}");
    }

    #[test]
    fn an_end_without_a_duration_says_no_duration_rather_than_in_dash() {
        let ended = |duration_ms| pb::GetDeliberationResultResponse {
            task_id: "t".into(),
            role: "DEV".into(),
            status: pb::DeliberationStatus::Interrupted.into(),
            duration_ms,
            ..Default::default()
        };
        let text = deliberation(&ended(0), Show::Winner);
        assert!(text.starts_with("task t (DEV): interrupted, 0 call(s)"), "{text}");
        let text = deliberation(&ended(1500), Show::Winner);
        assert!(text.starts_with("task t (DEV): interrupted in 1.5 s, 0 call(s)"), "{text}");
    }
}
