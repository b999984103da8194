//! Scoring: how check results and peer reviews become one number.
//!
//! Every weight lives in this file so the rule can be read, and changed, in one place.
//!
//! * **check score** in [0, 1] = weighted mean of the components that apply, each of weight 1
//!   except the acceptance tests: policy (1 clean, 0 any violation), lint
//!   (`1 − 0.5·errors − 0.1·warnings`, floored at 0), requirement coverage (covered / total,
//!   only when the task lists requirements), relevance (share of the task description's key
//!   terms the proposal mentions), dry run (1 passed, 0 failed, only when it ran) and
//!   **acceptance tests** (passed / all, weight [`TESTS_WEIGHT`], only when they ran). The tests
//!   outweigh the text checks together, so a proposal whose code passes beats one that only
//!   reads well.
//! * **peer score** = mean of the 0–10 grades the proposal received in the last review round
//!   that graded it, divided by 10. Reviews without a usable grade are left out.
//! * **final score** = `checks·check_score + peer·peer_score`, divided by the weights in use.
//!   A proposal without any usable grade while others have one is scored with
//!   [`missing_peer_prior`] (the lowest peer mean given, at most [`NEUTRAL_PEER_SCORE`]) so that
//!   having no usable review never pays; when nobody was graded (no review rounds), the final
//!   score is the check score alone (never an invented grade).

use serde::{Deserialize, Serialize};

use crate::checks::CheckSuite;
use crate::error::{DomainError, Result};
use crate::review::PeerScore;

/// Lint score lost per error.
pub const LINT_ERROR_PENALTY: f64 = 0.5;
/// Lint score lost per warning.
pub const LINT_WARNING_PENALTY: f64 = 0.1;
/// Weight of the acceptance-test pass rate in the check score; every other component weighs 1.
/// Ten is twice all the other components together (policy, lint, coverage, relevance, dry run):
/// execution is the backbone of the score. Tried with a scripted council: at 5, code passing
/// half its tests that peers graded 9/10 still beat code passing all of them graded 4/10; at 10
/// the passing code wins.
pub const TESTS_WEIGHT: f64 = 10.0;
/// A 0–10 grade halfway: the most a proposal without a usable grade is credited with.
pub const NEUTRAL_PEER_SCORE: f64 = 5.0;
/// The grade (0–10) every reviewer of a proposal must give it, with all its acceptance tests
/// passing, for the council to stop early.
pub const AGREEMENT_SCORE: f64 = 7.0;

/// A final score in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Score(f64);

impl Score {
    /// # Errors
    /// Field `score` when not finite or outside [0, 1].
    pub fn new(value: f64) -> Result<Self> {
        if value.is_finite() && (0.0..=1.0).contains(&value) {
            Ok(Self(value))
        } else {
            Err(DomainError::invalid("score", format!("must be within 0..=1, got {value}")))
        }
    }

    /// Clamps into [0, 1]; NaN becomes 0. Used for values computed from bounded inputs.
    fn clamped(value: f64) -> Self {
        if value.is_nan() { Self(0.0) } else { Self(value.clamp(0.0, 1.0)) }
    }

    pub fn value(self) -> f64 {
        self.0
    }
}

impl TryFrom<f64> for Score {
    type Error = DomainError;

    fn try_from(value: f64) -> Result<Self> {
        Self::new(value)
    }
}

impl From<Score> for f64 {
    fn from(score: Score) -> Self {
        score.0
    }
}

/// How much checks and peers each weigh in the final score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScoringWeights {
    checks: f64,
    peer: f64,
}

impl Default for ScoringWeights {
    /// Checks 0.6, peers 0.4: automatic checks are harder to game than a peer's opinion.
    fn default() -> Self {
        Self { checks: 0.6, peer: 0.4 }
    }
}

impl ScoringWeights {
    /// # Errors
    /// Field `scoring_weights` when a weight is negative or not finite, or both are 0.
    pub fn new(checks: f64, peer: f64) -> Result<Self> {
        let valid = |w: f64| w.is_finite() && w >= 0.0;
        if !valid(checks) || !valid(peer) || checks + peer <= 0.0 {
            return Err(DomainError::invalid(
                "scoring_weights",
                format!(
                    "weights must be finite, non-negative and not both 0, got checks={checks} peer={peer}"
                ),
            ));
        }
        Ok(Self { checks, peer })
    }

    pub fn checks(&self) -> f64 {
        self.checks
    }

    pub fn peer(&self) -> f64 {
        self.peer
    }

    /// Combines a check score and an optional peer mean (0–10) into the final score.
    pub fn combine(&self, check_score: Score, peer_mean: Option<f64>) -> Score {
        match peer_mean {
            Some(peer) if self.peer > 0.0 => Score::clamped(
                (self.checks * check_score.value() + self.peer * (peer / PeerScore::MAX))
                    / (self.checks + self.peer),
            ),
            _ => check_score,
        }
    }
}

/// The check part of the score (see the module docs).
pub fn check_score(suite: &CheckSuite) -> Score {
    // (value, weight) of each component that applies.
    let mut parts = vec![(if suite.policy.passed() { 1.0 } else { 0.0 }, 1.0)];
    let lint = 1.0
        - LINT_ERROR_PENALTY * suite.lint.errors.len() as f64
        - LINT_WARNING_PENALTY * suite.lint.warnings.len() as f64;
    parts.push((lint.max(0.0), 1.0));
    if let Some(ratio) = suite.lint.coverage.ratio() {
        parts.push((ratio, 1.0));
    }
    if let Some(relevance) = suite.lint.relevance {
        parts.push((relevance, 1.0));
    }
    if let Some(passed) = suite.dry_run.passed() {
        parts.push((if passed { 1.0 } else { 0.0 }, 1.0));
    }
    if let Some(rate) = suite.tests.pass_rate() {
        parts.push((rate, TESTS_WEIGHT));
    }
    let weights: f64 = parts.iter().map(|(_, w)| w).sum();
    Score::clamped(parts.iter().map(|(v, w)| v * w).sum::<f64>() / weights)
}

/// The peer mean (0–10) credited to a proposal without a usable grade, given the means of the
/// graded ones: the lowest of them, at most [`NEUTRAL_PEER_SCORE`]; `None` when nobody was
/// graded (then every proposal stands on its checks alone).
pub fn missing_peer_prior(graded_means: impl IntoIterator<Item = f64>) -> Option<f64> {
    graded_means
        .into_iter()
        .fold(None, |low: Option<f64>, m| Some(low.map_or(m, |l| l.min(m))))
        .map(|low| low.min(NEUTRAL_PEER_SCORE))
}

/// Mean of the usable grades, or `None` when there is none.
pub fn peer_mean(scores: impl IntoIterator<Item = PeerScore>) -> Option<f64> {
    let (sum, count) = scores.into_iter().fold((0.0, 0usize), |(s, n), p| (s + p.value(), n + 1));
    (count > 0).then(|| sum / count as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::{DryRunOutcome, LintResult, PolicyResult, RequirementCoverage, TestOutcome};

    fn suite(
        violations: usize,
        errors: usize,
        warnings: usize,
        coverage: Option<(usize, usize)>,
        dry: Option<bool>,
    ) -> CheckSuite {
        let coverage = coverage
            .map(|(covered, total)| RequirementCoverage {
                total,
                covered,
                missing: (covered..total).collect(),
            })
            .unwrap_or_default();
        CheckSuite {
            policy: PolicyResult { violations: vec!["v".into(); violations] },
            lint: LintResult {
                errors: vec!["e".into(); errors],
                warnings: vec!["w".into(); warnings],
                coverage,
                relevance: None,
            },
            dry_run: match dry {
                None => DryRunOutcome::not_configured(),
                Some(passed) => {
                    DryRunOutcome::Ran { passed, exit_code: 0, output: String::new(), message: String::new() }
                }
            },
            tests: TestOutcome::no_tests(),
            revision_tests: Vec::new(),
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn clean_suite_scores_one() {
        assert!(close(check_score(&suite(0, 0, 0, None, None)).value(), 1.0));
    }

    #[test]
    fn policy_violation_zeroes_its_component() {
        assert!(close(check_score(&suite(1, 0, 0, None, None)).value(), 0.5));
    }

    #[test]
    fn lint_penalties_and_coverage_average_in() {
        // policy 1, lint 1 - 0.5 - 0.1 = 0.4, coverage 1/2 → mean 0.6333…
        let s = check_score(&suite(0, 1, 1, Some((1, 2)), None)).value();
        assert!(close(s, (1.0 + 0.4 + 0.5) / 3.0), "{s}");
    }

    #[test]
    fn relevance_counts_as_a_component() {
        let mut s = suite(0, 0, 0, None, None);
        s.lint.relevance = Some(0.25);
        assert!(close(check_score(&s).value(), (1.0 + 1.0 + 0.25) / 3.0));
    }

    #[test]
    fn dry_run_counts_only_when_it_ran() {
        assert!(close(check_score(&suite(0, 0, 0, None, Some(false))).value(), 2.0 / 3.0));
        assert!(close(check_score(&suite(0, 0, 0, None, Some(true))).value(), 1.0));
    }

    #[test]
    fn default_weights_mix_checks_and_peers_sixty_forty() {
        let w = ScoringWeights::default();
        let s = w.combine(Score::new(1.0).unwrap(), Some(5.0)).value();
        assert!(close(s, 0.6 + 0.4 * 0.5), "{s}");
    }

    #[test]
    fn without_graded_reviews_the_check_score_stands_alone() {
        let w = ScoringWeights::default();
        assert!(close(w.combine(Score::new(0.7).unwrap(), None).value(), 0.7));
    }

    #[test]
    fn passing_tests_outweigh_every_text_check() {
        use crate::checks::{CaseOutcome, TestCase, TestReport};
        let report = |outcome| {
            TestOutcome::Ran(TestReport::from_cases(vec![TestCase::new("test_f", outcome, "", "")], ""))
        };
        // Reads poorly: a policy violation, two lint errors, no requirement covered.
        let mut passing = suite(1, 2, 0, Some((0, 1)), None);
        passing.tests = report(CaseOutcome::Passed);
        // Reads perfectly, fails its test.
        let mut failing = suite(0, 0, 0, Some((1, 1)), None);
        failing.tests = report(CaseOutcome::Failed);
        let (pass, fail) = (check_score(&passing).value(), check_score(&failing).value());
        assert!(close(pass, 10.0 / 13.0), "{pass}");
        assert!(close(fail, 3.0 / 13.0), "{fail}");
        let w = ScoringWeights::default();
        assert!(w.combine(check_score(&passing), Some(5.0)) > w.combine(check_score(&failing), Some(7.0)));
    }

    #[test]
    fn tests_that_did_not_run_are_no_component() {
        let mut s = suite(0, 0, 0, None, None);
        s.tests = TestOutcome::no_sandbox();
        assert!(close(check_score(&s).value(), 1.0));
    }

    #[test]
    fn a_missing_grade_is_credited_with_the_lowest_given_at_most_neutral() {
        assert_eq!(missing_peer_prior([]), None);
        assert_eq!(missing_peer_prior([8.0, 6.0, 9.0]), Some(NEUTRAL_PEER_SCORE));
        assert_eq!(missing_peer_prior([8.0, 2.5]), Some(2.5));
    }

    #[test]
    fn weights_are_validated() {
        assert!(ScoringWeights::new(-1.0, 1.0).is_err());
        assert!(ScoringWeights::new(0.0, 0.0).is_err());
        assert!(ScoringWeights::new(f64::NAN, 1.0).is_err());
        let w = ScoringWeights::new(1.0, 3.0).unwrap();
        assert!(close(w.combine(Score::new(0.0).unwrap(), Some(10.0)).value(), 0.75));
    }

    #[test]
    fn peer_mean_ignores_nothing_it_is_given_and_is_none_when_empty() {
        assert_eq!(peer_mean([]), None);
        let scores = [PeerScore::new(4.0).unwrap(), PeerScore::new(8.0).unwrap()];
        assert_eq!(peer_mean(scores), Some(6.0));
    }

    #[test]
    fn score_bounds_are_enforced() {
        assert!(Score::new(1.01).is_err());
        assert!(Score::new(-0.01).is_err());
        assert!(Score::new(f64::NAN).is_err());
    }
}
