//! The ways of asking the same model the same problem that the benchmark compares.

use orchestrator_api_grpc::pb;

use crate::error::{QualityError, Result};
use crate::humaneval::Problem;
use crate::solution::{acceptance_test_code, task_description};

/// One configuration of the comparison.
///
/// Every configuration that could depend on the server's `early_stop` or `strategy` names
/// them in the request, so a row measures the configuration, not the server it ran on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Configuration {
    /// (a) one call: one agent, no review (N=1, R=0).
    Single,
    /// (b) a council of three with one review round, no tests (N=3, R=1).
    Council,
    /// (c) the same council with the visible tests as acceptance tests (N=3, R=1 + tests),
    /// stopping early only after a review round agreed on a passing proposal
    /// (`early_stop = tests_and_reviews`).
    CouncilWithTests,
    /// (d) the council with tests that stops as soon as a proposal version passes every
    /// visible test (`early_stop = tests`): no reviews or revisions after that.
    CouncilStopOnTests,
    /// (e) a cascade: one agent answers first and the rest of the council (N=3, R=1) joins
    /// only when that answer fails a visible test (`strategy = cascade`, `early_stop = tests`).
    Cascade,
}

impl Configuration {
    pub const ALL: [Configuration; 5] =
        [Self::Single, Self::Council, Self::CouncilWithTests, Self::CouncilStopOnTests, Self::Cascade];

    /// The letter used on the command line and in the tables.
    pub fn letter(self) -> char {
        match self {
            Self::Single => 'a',
            Self::Council => 'b',
            Self::CouncilWithTests => 'c',
            Self::CouncilStopOnTests => 'd',
            Self::Cascade => 'e',
        }
    }

    /// The configuration written as `letter` (as [`Configuration::letter`] writes it).
    pub fn from_letter(letter: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| letter.len() == 1 && letter.starts_with(c.letter()))
    }

    /// What it is, for tables and the chart.
    pub fn label(self) -> &'static str {
        match self {
            Self::Single => "one call (N=1, R=0)",
            Self::Council => "council (N=3, R=1)",
            Self::CouncilWithTests => "council + tests (N=3, R=1)",
            Self::CouncilStopOnTests => "council + tests, early_stop=tests",
            Self::Cascade => "cascade (N=3, R=1, tests)",
        }
    }

    fn agents(self) -> i32 {
        match self {
            Self::Single => 1,
            Self::Council | Self::CouncilWithTests | Self::CouncilStopOnTests | Self::Cascade => 3,
        }
    }

    fn rounds(self) -> i32 {
        match self {
            Self::Single => 0,
            Self::Council | Self::CouncilWithTests | Self::CouncilStopOnTests | Self::Cascade => 1,
        }
    }

    /// Whether the visible tests travel with the task.
    pub fn sends_tests(self) -> bool {
        matches!(self, Self::CouncilWithTests | Self::CouncilStopOnTests | Self::Cascade)
    }

    /// The `early_stop` sent; empty for (a) and (b), which send no tests (without tests
    /// nothing stops early, whatever the mode).
    pub fn early_stop(self) -> &'static str {
        match self {
            Self::Single | Self::Council => "",
            Self::CouncilWithTests => "tests_and_reviews",
            Self::CouncilStopOnTests | Self::Cascade => "tests",
        }
    }

    /// The `strategy` sent: `cascade` for (e), `council` for every other (a server whose
    /// default is the cascade would otherwise turn (c) and (d) into (e)).
    pub fn strategy(self) -> &'static str {
        match self {
            Self::Cascade => "cascade",
            Self::Single | Self::Council | Self::CouncilWithTests | Self::CouncilStopOnTests => "council",
        }
    }

    /// The request for `problem`: the task, and the visible asserts as acceptance tests when
    /// this configuration sends tests and there are any.
    pub fn request(
        self,
        problem: &Problem,
        visible_asserts: &[String],
        timeout_secs: i32,
    ) -> pb::DeliberateRequest {
        let acceptance_tests =
            (self.sends_tests() && !visible_asserts.is_empty()).then(|| pb::AcceptanceTests {
                language: "python".to_owned(),
                code: acceptance_test_code(problem, visible_asserts),
            });
        pb::DeliberateRequest {
            task_description: task_description(problem),
            role: "DEV".to_owned(),
            constraints: Some(pb::TaskConstraints {
                rubric: "Correctness first: the function must return the right result for every input \
                         the docstring describes. Then simplicity."
                    .to_owned(),
                timeout_seconds: timeout_secs,
                acceptance_tests,
                early_stop: self.early_stop().to_owned(),
                strategy: self.strategy().to_owned(),
                ..Default::default()
            }),
            rounds: Some(self.rounds()),
            num_agents: Some(self.agents()),
            ..Default::default()
        }
    }
}

/// The configurations a run compares unless `--configs` says otherwise: the table —
/// one call against the council with tests under each way of stopping early. (b) stays
/// available; without tests it can only cost more than (c) and decides no default.
pub const DEFAULT_CONFIGS: &str = "a,c,d,e";

/// Parses `--configs a,c,d,e` (any non-empty subset, in the order given, no repeats).
///
/// # Errors
/// [`QualityError::InvalidArgument`] naming `configs`.
pub fn parse_configs(raw: &str) -> Result<Vec<Configuration>> {
    let invalid = |reason: String| QualityError::InvalidArgument { flag: "configs", reason };
    let mut chosen = Vec::new();
    for item in raw.split(',').map(str::trim).filter(|item| !item.is_empty()) {
        let config = Configuration::from_letter(item)
            .ok_or_else(|| invalid(format!("unknown configuration {item:?}; expected a, b, c, d or e")))?;
        if chosen.contains(&config) {
            return Err(invalid(format!("{item} is listed twice")));
        }
        chosen.push(config);
    }
    if chosen.is_empty() {
        return Err(invalid("name at least one of a, b, c, d, e".to_owned()));
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem() -> Problem {
        Problem {
            task_id: "HumanEval/53".into(),
            prompt: "def add(x, y):\n    \"\"\"\n    >>> add(2, 3)\n    5\n    \"\"\"\n".into(),
            canonical_solution: "    return x + y\n".into(),
            test: "def check(candidate):\n    assert candidate(1, 1) == 2\n".into(),
            entry_point: "add".into(),
        }
    }

    #[test]
    fn a_b_and_c_differ_only_in_council_size_rounds_and_tests() {
        let asserts = vec!["assert add(2, 3) == 5".to_owned()];
        let single = Configuration::Single.request(&problem(), &asserts, 600);
        let council = Configuration::Council.request(&problem(), &asserts, 600);
        let tested = Configuration::CouncilWithTests.request(&problem(), &asserts, 600);
        assert_eq!((single.num_agents, single.rounds), (Some(1), Some(0)));
        assert_eq!((council.num_agents, council.rounds), (Some(3), Some(1)));
        assert_eq!((tested.num_agents, tested.rounds), (Some(3), Some(1)));
        assert_eq!(single.task_description, tested.task_description);
        assert!(single.constraints.unwrap().acceptance_tests.is_none());
        assert!(council.constraints.unwrap().acceptance_tests.is_none());
        let tests = tested.constraints.unwrap().acceptance_tests.unwrap();
        assert_eq!(tests.language, "python");
        assert_eq!(tests.code, "from solution import add\n\nassert add(2, 3) == 5\n");
        let untested = Configuration::CouncilWithTests.request(&problem(), &[], 600);
        assert!(untested.constraints.unwrap().acceptance_tests.is_none(), "no examples: no tests");
    }

    #[test]
    fn configs_parse_from_letters() {
        assert_eq!(parse_configs("a,b,c,d,e").unwrap(), Configuration::ALL);
        assert_eq!(
            parse_configs(DEFAULT_CONFIGS).unwrap(),
            [
                Configuration::Single,
                Configuration::CouncilWithTests,
                Configuration::CouncilStopOnTests,
                Configuration::Cascade
            ]
        );
        assert_eq!(
            parse_configs(" c, a ").unwrap(),
            [Configuration::CouncilWithTests, Configuration::Single]
        );
        for bad in ["", "f", "a,a", "ab", "de"] {
            assert!(parse_configs(bad).unwrap_err().to_string().starts_with("--configs: "), "{bad}");
        }
    }

    #[test]
    fn letters_round_trip() {
        for config in Configuration::ALL {
            assert_eq!(Configuration::from_letter(&config.letter().to_string()), Some(config));
        }
        assert_eq!(Configuration::from_letter("x"), None);
        assert_eq!(Configuration::from_letter(""), None);
    }

    #[test]
    fn the_early_stop_and_the_strategy_travel_with_every_configuration_that_has_tests() {
        let asserts = vec!["assert add(2, 3) == 5".to_owned()];
        let constraints = |config: Configuration| {
            let request = config.request(&problem(), &asserts, 600);
            assert_eq!((request.num_agents, request.rounds), (Some(3), Some(1)), "{config:?}");
            request.constraints.unwrap()
        };
        let tested = constraints(Configuration::CouncilWithTests);
        assert_eq!((tested.early_stop.as_str(), tested.strategy.as_str()), ("tests_and_reviews", "council"));
        let stop = constraints(Configuration::CouncilStopOnTests);
        assert_eq!((stop.early_stop.as_str(), stop.strategy.as_str()), ("tests", "council"));
        let cascade = constraints(Configuration::Cascade);
        assert_eq!((cascade.early_stop.as_str(), cascade.strategy.as_str()), ("tests", "cascade"));
        for with_tests in [tested, stop, cascade] {
            assert_eq!(
                with_tests.acceptance_tests.unwrap().code,
                "from solution import add\n\nassert add(2, 3) == 5\n"
            );
        }
        let untested = constraints(Configuration::Council);
        assert_eq!((untested.early_stop.as_str(), untested.strategy.as_str()), ("", "council"));
        assert!(untested.acceptance_tests.is_none());
        let single = Configuration::Single.request(&problem(), &asserts, 600).constraints.unwrap();
        assert_eq!((single.early_stop.as_str(), single.strategy.as_str()), ("", "council"));
    }
}
