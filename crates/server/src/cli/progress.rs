//! Live progress of a deliberation on stderr: one line per phase as it starts, one per agent's
//! step as it lands (proposed, reviewed, revised, tests run, dropped — with that call's
//! tokens), elapsed time and tokens so far; above an `indicatif` spinner and bar when stderr is
//! a terminal, as plain lines otherwise (logs, CI, pipes).
//!
//! Steps come from WatchDeliberation; phases from the stored deliberation (sent by
//! WatchDeliberation, or polled with GetDeliberationResult), which the server saves after
//! every phase. A phase is shown once, in order: when a poll finds the deliberation
//! further along than the last one did, the phases it went through in between are shown too
//! (a deliberation runs them all, in this order), so a fast deliberation prints the same lines
//! as a slow one.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use orchestrator_api_grpc::pb;
use orchestrator_domain::Phase;
use orchestrator_server::control_chars::printable;

use super::render::{count, duration, is_final, status_name};
use super::terminal_text::errln;

/// How progress is shown.
enum Output {
    /// Nothing (`--quiet`).
    Quiet,
    /// One line per event on stderr.
    Lines,
    /// Lines above a spinner and a bar of phases.
    Bar(ProgressBar),
    /// Kept in memory, for tests.
    #[cfg(test)]
    Memory(std::cell::RefCell<Vec<String>>),
}

/// What has been shown of one deliberation.
pub(crate) struct Progress {
    output: Output,
    started: Instant,
    /// The phases the deliberation goes through, by their names in the `phase` tag.
    plan: Vec<String>,
    /// How many phases of `plan` have been shown.
    shown: usize,
    queued_shown: bool,
    failures_shown: usize,
    /// Agents whose drop was shown as a step, so the stored failure is not shown again.
    dropped_shown: std::collections::HashSet<String>,
    /// A phase the plan did not foresee (a newer server), shown once.
    last_unplanned: Option<String>,
    ended: bool,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("plan", &self.plan)
            .field("shown", &self.shown)
            .finish_non_exhaustive()
    }
}

/// The phases of a deliberation with `rounds` review rounds, as the `phase` tag names them.
fn plan(rounds: u32) -> Vec<String> {
    Phase::plan(rounds).iter().map(Phase::to_string).collect()
}

/// Most characters of the spinner line's message. With the rest of the line (spinner, elapsed
/// time, a 20-column bar, `n/m`) the line stays under 70 columns: a full-width line would
/// wrap when the terminal echoes `^C` at its end, and the spinner, cleared one row short,
/// would stay frozen above the Ctrl-C prompt.
const MAX_BAR_MESSAGE: usize = 30;

/// The spinner line's message: printable, cut to [`MAX_BAR_MESSAGE`] characters.
fn bar_message(text: &str) -> String {
    let text = printable(text);
    if text.chars().count() <= MAX_BAR_MESSAGE {
        return text.into_owned();
    }
    let cut: String = text.chars().take(MAX_BAR_MESSAGE - 1).collect();
    format!("{cut}…")
}

/// What a phase does, for the line that announces it; a phase this client does not know (a
/// newer server's) is shown as named.
fn describe(phase: &str) -> String {
    match Phase::parse(phase) {
        Some(known) => format!("{phase}: {}", known.describe()),
        None => phase.to_owned(),
    }
}

impl Progress {
    /// Progress timed from `started`; a spinner when stderr is a terminal, unless `quiet`.
    pub(crate) fn new(started: Instant, quiet: bool) -> Self {
        let output = if quiet {
            Output::Quiet
        } else if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(1).with_elapsed(started.elapsed());
            if let Ok(style) =
                ProgressStyle::with_template("{spinner} [{elapsed}] {bar:20.cyan/blue} {pos}/{len} {msg}")
            {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.enable_steady_tick(Duration::from_millis(120));
            Output::Bar(bar)
        } else {
            Output::Lines
        };
        Self {
            output,
            started,
            plan: plan(1),
            shown: 0,
            queued_shown: false,
            failures_shown: 0,
            dropped_shown: std::collections::HashSet::new(),
            last_unplanned: None,
            ended: false,
        }
    }

    /// Prints one line of progress (with the elapsed time) on stderr. Above the bar it is
    /// indicatif that writes, not [`errln!`]: `text` is made [`printable`] here for both.
    pub(crate) fn line(&self, text: &str) {
        let text = printable(text);
        let elapsed = self.started.elapsed().as_millis();
        let elapsed = i64::try_from(elapsed).unwrap_or(i64::MAX);
        let stamp =
            if elapsed < 100_000 { format!("{:.1}s", elapsed as f64 / 1000.0) } else { duration(elapsed) };
        let line = format!("[{stamp:>7}] {text}");
        match &self.output {
            Output::Quiet => {}
            Output::Lines => errln!("{line}"),
            Output::Bar(bar) => bar.println(line),
            #[cfg(test)]
            Output::Memory(lines) => lines.borrow_mut().push(text.into_owned()),
        }
    }

    /// Shows what changed since the last observation.
    pub(crate) fn observe(&mut self, r: &pb::GetDeliberationResultResponse) {
        if self.ended {
            return;
        }
        let tags = r.metadata.as_ref().map(|m| &m.tags);
        if self.shown == 0
            && let Some(rounds) = tags.and_then(|t| t.get("rounds")).and_then(|v| v.parse::<u32>().ok())
        {
            self.plan = plan(rounds);
        }
        let u = r.usage.unwrap_or_default();
        let so_far = if u.calls > 0 {
            format!(
                " ({} call(s), {} tokens so far)",
                count(u.calls),
                count(u.prompt_tokens + u.completion_tokens)
            )
        } else {
            String::new()
        };
        let status = r.status();
        match status {
            pb::DeliberationStatus::Pending | pb::DeliberationStatus::Unknown if !self.queued_shown => {
                self.queued_shown = true;
                self.line("pending: waiting to start");
            }
            pb::DeliberationStatus::InProgress => {
                let phase = tags.and_then(|t| t.get("phase")).map_or("proposing", String::as_str);
                self.reach(phase, &so_far);
            }
            pb::DeliberationStatus::Completed => {
                self.reach_end(&so_far);
            }
            _ => {}
        }
        for f in r.failures.iter().skip(self.failures_shown) {
            if self.dropped_shown.contains(&f.agent_id) {
                continue;
            }
            let round = if f.round > 0 { format!(" (round {})", f.round) } else { String::new() };
            self.line(&format!("dropped {} during {}{round}: {}", f.agent_id, f.phase, f.reason));
        }
        self.failures_shown = self.failures_shown.max(r.failures.len());
        if is_final(status) {
            let took =
                if r.duration_ms > 0 { format!(" in {}", duration(r.duration_ms)) } else { String::new() };
            let mut end =
                format!("{}{took}, {}", status_name(status), super::render::usage(r.usage.as_ref()));
            if !r.error_message.is_empty() {
                end.push_str(": ");
                end.push_str(&r.error_message);
            }
            self.line(&end);
            self.finish();
        } else {
            self.update_bar(&so_far);
        }
    }

    /// Shows one agent's step, after the line of the phase it belongs to.
    pub(crate) fn step(&mut self, step: &pb::AgentStep) {
        if self.ended {
            return;
        }
        self.reach(&step.phase, "");
        let tokens = if step.tokens > 0 {
            format!(" ({} tokens)", count(i64::try_from(step.tokens).unwrap_or(i64::MAX)))
        } else {
            String::new()
        };
        let what = match step.kind.as_str() {
            "proposed" | "revised" => format!("{}{tokens}", step.kind),
            "reviewed" if step.has_score => format!("reviewed {}: {}/10{tokens}", step.target, step.score),
            "reviewed" => format!("reviewed {}{tokens}", step.target),
            "tests" => {
                let mut counts = format!("tests: {} passed, {} failed", step.tests_passed, step.tests_failed);
                if step.tests_errored > 0 {
                    counts.push_str(&format!(", {} errored", step.tests_errored));
                }
                counts
            }
            "dropped" => {
                self.dropped_shown.insert(step.agent_id.clone());
                format!("dropped ({}): {}", step.phase, step.reason)
            }
            other => other.to_owned(),
        };
        self.line(&format!("  {} {what}", step.agent_id));
    }

    /// Shows every phase of the plan up to and including `phase`.
    fn reach(&mut self, phase: &str, so_far: &str) {
        match self.plan.iter().position(|p| p == phase) {
            Some(index) => {
                while self.shown <= index {
                    let suffix = if self.shown == index { so_far } else { "" };
                    self.line(&format!("{}{suffix}", describe(&self.plan[self.shown])));
                    self.shown += 1;
                }
            }
            None if self.last_unplanned.as_deref() != Some(phase) => {
                self.line(&format!("{}{so_far}", describe(phase)));
                self.last_unplanned = Some(phase.to_owned());
            }
            None => {}
        }
    }

    /// Shows the phases a completed deliberation went through that were not shown yet.
    fn reach_end(&mut self, so_far: &str) {
        if let Some(last) = self.plan.last().cloned() {
            self.reach(&last, so_far);
        }
    }

    fn update_bar(&self, so_far: &str) {
        if let Output::Bar(bar) = &self.output {
            bar.set_length(u64::try_from(self.plan.len()).unwrap_or(1));
            bar.set_position(u64::try_from(self.shown.saturating_sub(1)).unwrap_or(0));
            let current =
                self.shown.checked_sub(1).and_then(|i| self.plan.get(i)).map_or("queued", String::as_str);
            bar.set_message(bar_message(&format!("{current}{so_far}")));
        }
    }

    /// Takes the spinner off the terminal; later lines print plainly.
    pub(crate) fn finish(&mut self) {
        self.ended = true;
        if let Output::Bar(bar) = &self.output {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn in_memory() -> Progress {
        let mut progress = Progress::new(Instant::now(), true);
        progress.output = Output::Memory(std::cell::RefCell::new(Vec::new()));
        progress
    }

    fn lines(progress: &Progress) -> Vec<String> {
        match &progress.output {
            Output::Memory(lines) => lines.borrow().clone(),
            _ => unreachable!("in memory"),
        }
    }

    fn state(
        status: pb::DeliberationStatus,
        phase: Option<&str>,
        calls: i64,
    ) -> pb::GetDeliberationResultResponse {
        let mut tags = HashMap::from([("rounds".to_owned(), "1".to_owned())]);
        if let Some(phase) = phase {
            tags.insert("phase".to_owned(), phase.to_owned());
        }
        pb::GetDeliberationResultResponse {
            task_id: "t".into(),
            status: status.into(),
            metadata: Some(pb::OrchestratorMetadata { tags, ..Default::default() }),
            usage: Some(pb::TokenUsage {
                calls,
                prompt_tokens: 10 * calls,
                completion_tokens: calls,
                latency_ms: 0,
                calls_saved: 0,
            }),
            duration_ms: 1200,
            ..Default::default()
        }
    }

    /// `state` after dev-2 timed out in round 1's `phase`.
    fn timed_out(
        mut state: pb::GetDeliberationResultResponse,
        phase: &str,
    ) -> pb::GetDeliberationResultResponse {
        state.failures.push(pb::AgentFailure {
            agent_id: "dev-2".into(),
            phase: phase.into(),
            reason: "timed out".into(),
            round: 1,
        });
        state
    }

    #[test]
    fn a_deliberation_seen_only_at_its_end_shows_every_phase_once_in_order() {
        let mut progress = in_memory();
        progress.observe(&state(pb::DeliberationStatus::Completed, None, 9));
        let shown = lines(&progress);
        let phases: Vec<&str> = shown.iter().map(|l| l.split(':').next().unwrap()).collect();
        assert_eq!(
            phases,
            [
                "proposing",
                "reviewing (round 1)",
                "revising (round 1)",
                "scoring",
                "completed in 1.2 s, 9 call(s), 99 tokens"
            ]
        );
    }

    #[test]
    fn each_phase_is_shown_once_with_the_tokens_so_far_and_dropped_agents_as_they_come() {
        let mut progress = in_memory();
        progress.observe(&state(pb::DeliberationStatus::Pending, None, 0));
        progress.observe(&state(pb::DeliberationStatus::InProgress, None, 0));
        progress.observe(&state(pb::DeliberationStatus::InProgress, Some("reviewing (round 1)"), 3));
        let dropped =
            timed_out(state(pb::DeliberationStatus::InProgress, Some("reviewing (round 1)"), 3), "review");
        progress.observe(&dropped);
        progress.observe(&dropped);
        let shown = lines(&progress);
        assert_eq!(
            shown,
            [
                "pending: waiting to start",
                "proposing: each agent writes a proposal",
                "reviewing (round 1): agents review each other's proposals (3 call(s), 33 tokens so far)",
                "dropped dev-2 during review (round 1): timed out",
            ]
        );
    }

    #[test]
    fn each_agents_step_shows_under_its_phase_and_a_drop_shows_once() {
        let step = |agent: &str, phase: &str, kind: &str| pb::AgentStep {
            agent_id: agent.into(),
            phase: phase.into(),
            kind: kind.into(),
            tokens: 412,
            ..Default::default()
        };
        let mut progress = in_memory();
        progress.observe(&state(pb::DeliberationStatus::InProgress, None, 0));
        progress.step(&step("dev-2", "proposing", "proposed"));
        progress.step(&pb::AgentStep {
            target: "dev-1".into(),
            score: 6.5,
            has_score: true,
            ..step("dev-3", "reviewing (round 1)", "reviewed")
        });
        progress.step(&pb::AgentStep {
            tests_passed: 2,
            tests_failed: 1,
            tokens: 0,
            ..step("dev-1", "reviewing (round 1)", "tests")
        });
        progress.step(&pb::AgentStep {
            reason: "timed out".into(),
            tokens: 0,
            ..step("dev-2", "revising (round 1)", "dropped")
        });
        progress.observe(&timed_out(
            state(pb::DeliberationStatus::InProgress, Some("revising (round 1)"), 5),
            "revise",
        ));
        assert_eq!(
            lines(&progress),
            [
                "proposing: each agent writes a proposal",
                "  dev-2 proposed (412 tokens)",
                "reviewing (round 1): agents review each other's proposals",
                "  dev-3 reviewed dev-1: 6.5/10 (412 tokens)",
                "  dev-1 tests: 2 passed, 1 failed",
                "revising (round 1): agents revise after the reviews",
                "  dev-2 dropped (revising (round 1)): timed out",
            ]
        );
    }

    #[test]
    fn what_a_server_says_shows_without_the_control_characters_a_terminal_would_act_on() {
        let mut progress = in_memory();
        progress.observe(&state(pb::DeliberationStatus::InProgress, Some("proposing"), 0));
        progress.step(&pb::AgentStep {
            agent_id: "dev-1".into(),
            phase: "proposing".into(),
            kind: "dropped".into(),
            reason: "timed out\x1b]0;pwned\x07\r\u{9b}2J\u{202e}, gave up".into(),
            ..Default::default()
        });
        progress.observe(&pb::GetDeliberationResultResponse {
            error_message: "every agent failed\x1b[2J".into(),
            ..state(pb::DeliberationStatus::Failed, None, 0)
        });
        assert_eq!(
            lines(&progress)[1..],
            [
                "  dev-1 dropped (proposing): timed out]0;pwned2J, gave up",
                "failed in 1.2 s, 0 call(s), 0 tokens: every agent failed[2J"
            ]
        );
    }

    #[test]
    fn the_plan_is_the_domain_plan_spelled_as_the_server_spells_phases() {
        assert_eq!(plan(1), ["proposing", "reviewing (round 1)", "revising (round 1)", "scoring"]);
        assert_eq!(plan(0), ["proposing", "scoring"]);
    }

    #[test]
    fn the_spinner_message_is_short_enough_that_an_echoed_ctrl_c_never_wraps_its_line() {
        let long = "reviewing (round 1) (12 call(s), 12,345 tokens so far)";
        let shown = bar_message(long);
        assert_eq!(shown.chars().count(), MAX_BAR_MESSAGE);
        assert!(shown.starts_with("reviewing (round 1) (12 ca") && shown.ends_with('…'), "{shown}");
        assert_eq!(bar_message("scoring"), "scoring");
    }

    #[test]
    fn an_end_without_a_duration_reads_without_one() {
        let mut progress = in_memory();
        progress.observe(&pb::GetDeliberationResultResponse {
            duration_ms: 0,
            ..state(pb::DeliberationStatus::Interrupted, None, 0)
        });
        assert_eq!(lines(&progress), ["interrupted, 0 call(s), 0 tokens"]);
    }

    #[test]
    fn phases_are_described_for_people() {
        assert_eq!(describe("revising (round 1)"), "revising (round 1): agents revise after the reviews");
        assert_eq!(describe("something new"), "something new");
    }
}
