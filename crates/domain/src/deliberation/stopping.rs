//! When a deliberation spends fewer calls than its rounds allow: the early stop and the
//! cascade. Both are decided by the task's acceptance tests — code that passes every test the
//! task came with needs no more reviews — so a task without tests runs every round of a plain
//! council whatever is configured.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use std::collections::BTreeSet;

use super::{Deliberation, Phase};
use crate::agent::AgentId;
use crate::checks::{CheckSuite, DryRunOutcome, TestOutcome};
use crate::error::{DomainError, Result};
use crate::review::Review;
use crate::scoring::AGREEMENT_SCORE;

/// When the review rounds end before their number is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EarlyStop {
    /// Every round runs.
    Off,
    /// As soon as some proposal version passes every acceptance test, no further call is made
    /// (no review, no revision): the passing versions are ranked by their checks and whatever
    /// grades exist.
    Tests,
    /// After a review round in which some proposal passed every acceptance test and every
    /// review of it graded it at least [`AGREEMENT_SCORE`].
    #[default]
    TestsAndReviews,
}

impl EarlyStop {
    pub const ALL: [EarlyStop; 3] = [EarlyStop::Off, EarlyStop::Tests, EarlyStop::TestsAndReviews];

    /// The mode named `raw` (`off`, `tests`, `tests_and_reviews`).
    ///
    /// # Errors
    /// `Invalid` on field `early_stop` for any other name.
    pub fn parse(raw: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|mode| mode.as_str() == raw).ok_or_else(|| {
            DomainError::invalid(
                "early_stop",
                format!("must be off, tests or tests_and_reviews, got {raw:?}"),
            )
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EarlyStop::Off => "off",
            EarlyStop::Tests => "tests",
            EarlyStop::TestsAndReviews => "tests_and_reviews",
        }
    }
}

impl fmt::Display for EarlyStop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Reads a mode as written now (`"tests"`), or as snapshots saved before modes existed wrote
/// it: a boolean (`true` was today's `tests_and_reviews`).
impl<'de> Deserialize<'de> for EarlyStop {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Flag(bool),
            Name(String),
        }
        match Written::deserialize(deserializer)? {
            Written::Flag(true) => Ok(EarlyStop::TestsAndReviews),
            Written::Flag(false) => Ok(EarlyStop::Off),
            Written::Name(name) => EarlyStop::parse(&name).map_err(serde::de::Error::custom),
        }
    }
}

/// How a council spends its calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Every agent proposes at once, then the review rounds.
    #[default]
    Council,
    /// One agent proposes first; if its answer passes every acceptance test (and the policy
    /// and lint checks) the deliberation ends after that one call, otherwise the rest of the
    /// council joins, shown the first answer's failing tests. Without tests, a plain council.
    Cascade,
}

impl Strategy {
    pub const ALL: [Strategy; 2] = [Strategy::Council, Strategy::Cascade];

    /// The strategy named `raw` (`council`, `cascade`).
    ///
    /// # Errors
    /// `Invalid` on field `strategy` for any other name.
    pub fn parse(raw: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|strategy| strategy.as_str() == raw).ok_or_else(|| {
            DomainError::invalid("strategy", format!("must be council or cascade, got {raw:?}"))
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Council => "council",
            Strategy::Cascade => "cascade",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which way a deliberation went, as its result reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Path {
    /// Every agent proposed at once (a council, or a cascade without tests).
    #[default]
    Council,
    /// A cascade whose first answer passed: one call.
    CascadeFirstAnswer,
    /// A cascade whose first answer failed: the rest of the council joined.
    CascadeEscalated,
}

impl Path {
    pub const ALL: [Path; 3] = [Path::Council, Path::CascadeFirstAnswer, Path::CascadeEscalated];

    /// The path named `raw`, as [`Path::as_str`] writes it.
    ///
    /// # Errors
    /// `Invalid` on field `path` for any other name.
    pub fn parse(raw: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|path| path.as_str() == raw)
            .ok_or_else(|| DomainError::invalid("path", format!("unknown deliberation path {raw:?}")))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Path::Council => "council",
            Path::CascadeFirstAnswer => "cascade_first_answer",
            Path::CascadeEscalated => "cascade_escalated",
        }
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a cascade stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "stage")]
pub enum Cascade {
    /// Only `first` proposes.
    FirstAnswer { first: AgentId },
    /// `first`'s answer did not pass: the rest of the council was asked.
    Escalated { first: AgentId },
}

impl Cascade {
    pub fn first(&self) -> &AgentId {
        match self {
            Cascade::FirstAnswer { first } | Cascade::Escalated { first } => first,
        }
    }

    pub fn path(&self) -> Path {
        match self {
            Cascade::FirstAnswer { .. } => Path::CascadeFirstAnswer,
            Cascade::Escalated { .. } => Path::CascadeEscalated,
        }
    }
}

/// What the agents that join a cascade are shown: the first answer and how it fared.
#[derive(Debug, Clone, PartialEq)]
pub struct Escalation {
    pub first_answer: String,
    pub tests: TestOutcome,
}

/// Whether `tests` passed every acceptance test (a run with no failure and no error).
pub(crate) fn passes(tests: Option<&TestOutcome>) -> bool {
    tests.and_then(TestOutcome::passed) == Some(true)
}

/// Whether an answer is good enough to end a cascade: every acceptance test passed and the
/// policy and lint checks hold.
pub(crate) fn good_enough(content: &str, task: &crate::task::Task, tests: Option<&TestOutcome>) -> bool {
    let checks = CheckSuite::run(content, task, DryRunOutcome::NotRun { reason: "not run".to_owned() });
    passes(tests) && checks.policy.passed() && checks.lint.passed()
}

impl Deliberation {
    /// Sets when the review rounds end early ([`EarlyStop::Off`] by default); the calls
    /// skipped are counted in [`calls_saved`](Self::calls_saved).
    pub fn set_early_stop(&mut self, mode: EarlyStop) {
        self.state.early_stop = mode;
    }

    /// When the review rounds end early.
    pub fn early_stop(&self) -> EarlyStop {
        self.state.early_stop
    }

    /// Makes this a cascade, before anyone proposed: only the first agent is asked to propose
    /// (see [`Strategy::Cascade`]). Returns whether it applies — a cascade needs acceptance
    /// tests to judge the first answer by, and a council of two or more.
    pub fn start_cascade(&mut self) -> bool {
        let fresh = self.state.phase == Phase::Proposing
            && self.state.proposals.is_empty()
            && self.state.dropped.is_empty();
        let judged = self.state.task.constraints().acceptance_tests().is_some();
        let Some(first) = self.state.council.agents().first().map(|a| a.id.clone()) else { return false };
        if !fresh || !judged || self.state.council.len() < 2 || self.state.cascade.is_some() {
            return self.state.cascade.is_some();
        }
        self.state.pending = BTreeSet::from([first.clone()]);
        self.state.cascade = Some(Cascade::FirstAnswer { first });
        true
    }

    /// Which way the deliberation went (so far).
    pub fn path(&self) -> Path {
        self.state.cascade.as_ref().map_or(Path::Council, Cascade::path)
    }

    /// What the agents joining an escalated cascade are shown: the first answer and its tests
    /// (`None` outside that proposing stage, or when the first agent gave no answer).
    pub fn escalation(&self) -> Option<Escalation> {
        let Some(Cascade::Escalated { first }) = &self.state.cascade else { return None };
        if self.state.phase != Phase::Proposing {
            return None;
        }
        let answer = self.proposal(first)?;
        Some(Escalation { first_answer: answer.content().to_owned(), tests: self.shown_tests(answer) })
    }

    /// Backend calls the early stop spared so far (0 when every round ran).
    pub fn calls_saved(&self) -> u64 {
        self.state.calls_saved
    }

    /// Whether some proposal passed every acceptance test and every review of it this round
    /// graded it at least [`AGREEMENT_SCORE`] (a review without a grade is no agreement).
    pub(super) fn agreed_on_a_passing_proposal(&self, round: u32) -> bool {
        self.state.proposals.iter().any(|p| {
            let reviews: Vec<&Review> =
                self.state.reviews.iter().filter(|r| r.round == round && &r.target == p.author()).collect();
            self.tests_of(p).and_then(TestOutcome::passed) == Some(true)
                && !reviews.is_empty()
                && reviews.iter().all(|r| r.score.is_some_and(|s| s.value() >= AGREEMENT_SCORE))
        })
    }

    /// A cascade's first answer is in (or its agent failed): scoring when it is good enough,
    /// otherwise the rest of the council is asked, still proposing.
    pub(super) fn after_first_answer(&mut self, first: AgentId) -> Phase {
        let answer = self.proposal(&first);
        let good = answer.is_some_and(|a| good_enough(a.content(), &self.state.task, self.tests_of(a)));
        if good {
            // The council would have made every other proposal and every round's calls.
            let others = self.state.council.len().saturating_sub(1) as u64;
            let council = self.state.council.len() as u64;
            let rounds = u64::from(self.state.rounds);
            self.state.calls_saved = others + if council >= 2 { rounds * 2 * council } else { 0 };
            self.enter(Phase::Scoring);
            return Phase::Scoring;
        }
        self.state.cascade = Some(Cascade::Escalated { first: first.clone() });
        self.state.pending = self
            .state
            .council
            .agents()
            .iter()
            .map(|a| a.id.clone())
            .filter(|id| *id != first && !self.state.dropped.contains(id))
            .collect();
        Phase::Proposing
    }

    /// Whether some surviving proposal's current version passed every acceptance test.
    pub(super) fn some_version_passes(&self) -> bool {
        self.state.proposals.iter().any(|p| passes(self.tests_of(p)))
    }

    /// The review and revision calls of rounds `from..=rounds`, had nobody dropped out.
    pub(super) fn calls_of_rounds_from(&self, from: u32) -> u64 {
        let survivors = self.state.proposals.len() as u64;
        let rounds = u64::from((self.state.rounds + 1).saturating_sub(from));
        if survivors >= 2 { rounds * 2 * survivors } else { 0 }
    }

    /// The calls the rest of the deliberation would have made after review round `round`,
    /// had nobody dropped out: this round's revisions (one per reviewed author), then a review
    /// and a revision per survivor in each later round.
    pub(super) fn calls_skipped_from(&self, round: u32) -> u64 {
        let survivors = self.state.proposals.len() as u64;
        let revisions = self
            .state
            .proposals
            .iter()
            .filter(|p| self.state.reviews.iter().any(|r| r.round == round && &r.target == p.author()))
            .count() as u64;
        let later_rounds = u64::from(self.state.rounds.saturating_sub(round));
        let later = if survivors >= 2 { later_rounds * 2 * survivors } else { 0 };
        revisions + later
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_and_strategies_parse_by_name_and_refuse_others_naming_the_field() {
        for mode in EarlyStop::ALL {
            assert_eq!(EarlyStop::parse(mode.as_str()).unwrap(), mode);
        }
        let err = EarlyStop::parse("sometimes").unwrap_err().to_string();
        assert!(err.contains("early_stop") && err.contains("sometimes"), "{err}");
        assert_eq!(Strategy::parse("cascade").unwrap(), Strategy::Cascade);
        assert!(Strategy::parse("swarm").unwrap_err().to_string().contains("strategy"));
    }

    #[test]
    fn an_early_stop_saved_as_a_flag_reads_back_as_its_mode() {
        let read = |json: &str| serde_json::from_str::<EarlyStop>(json).unwrap();
        assert_eq!(read("true"), EarlyStop::TestsAndReviews);
        assert_eq!(read("false"), EarlyStop::Off);
        assert_eq!(read("\"tests\""), EarlyStop::Tests);
        assert_eq!(serde_json::to_string(&EarlyStop::Tests).unwrap(), "\"tests\"");
        assert!(serde_json::from_str::<EarlyStop>("\"never\"").is_err());
    }
}
