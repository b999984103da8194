//! The three ways of asking the same model the same problem that the benchmark compares.

use orchestrator_api_grpc::pb;

use crate::error::{QualityError, Result};
use crate::humaneval::Problem;
use crate::solution::{acceptance_test_code, task_description};

/// One configuration of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Configuration {
    /// (a) one call: one agent, no review (N=1, R=0).
    Single,
    /// (b) a council of three with one review round, no tests (N=3, R=1).
    Council,
    /// (c) the same council with the visible tests as acceptance tests (N=3, R=1 + tests).
    CouncilWithTests,
}

impl Configuration {
    pub const ALL: [Configuration; 3] = [Self::Single, Self::Council, Self::CouncilWithTests];

    /// The letter used on the command line and in the tables.
    pub fn letter(self) -> char {
        match self {
            Self::Single => 'a',
            Self::Council => 'b',
            Self::CouncilWithTests => 'c',
        }
    }

    /// What it is, for tables and the chart.
    pub fn label(self) -> &'static str {
        match self {
            Self::Single => "one call (N=1, R=0)",
            Self::Council => "council (N=3, R=1)",
            Self::CouncilWithTests => "council + tests (N=3, R=1)",
        }
    }

    fn agents(self) -> i32 {
        match self {
            Self::Single => 1,
            Self::Council | Self::CouncilWithTests => 3,
        }
    }

    fn rounds(self) -> i32 {
        match self {
            Self::Single => 0,
            Self::Council | Self::CouncilWithTests => 1,
        }
    }

    /// Whether the visible tests travel with the task.
    pub fn sends_tests(self) -> bool {
        self == Self::CouncilWithTests
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
                ..Default::default()
            }),
            rounds: Some(self.rounds()),
            num_agents: Some(self.agents()),
            ..Default::default()
        }
    }
}

/// Parses `--configs a,b,c` (any non-empty subset, in the order given, no repeats).
///
/// # Errors
/// [`QualityError::InvalidArgument`] naming `configs`.
pub fn parse_configs(raw: &str) -> Result<Vec<Configuration>> {
    let invalid = |reason: String| QualityError::InvalidArgument { flag: "configs", reason };
    let mut chosen = Vec::new();
    for item in raw.split(',').map(str::trim).filter(|item| !item.is_empty()) {
        let config = Configuration::ALL
            .into_iter()
            .find(|c| item.len() == 1 && item.starts_with(c.letter()))
            .ok_or_else(|| invalid(format!("unknown configuration {item:?}; expected a, b or c")))?;
        if chosen.contains(&config) {
            return Err(invalid(format!("{item} is listed twice")));
        }
        chosen.push(config);
    }
    if chosen.is_empty() {
        return Err(invalid("name at least one of a, b, c".to_owned()));
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
    fn the_three_configurations_differ_only_in_council_size_rounds_and_tests() {
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
        assert_eq!(parse_configs("a,b,c").unwrap(), Configuration::ALL);
        assert_eq!(
            parse_configs(" c, a ").unwrap(),
            [Configuration::CouncilWithTests, Configuration::Single]
        );
        for bad in ["", "d", "a,a", "ab"] {
            assert!(parse_configs(bad).unwrap_err().to_string().starts_with("--configs: "), "{bad}");
        }
    }
}
