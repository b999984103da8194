//! One table from several partial runs: the full HumanEval takes hours on a small CPU model,
//! so it is run in pieces (`--range`) and their `results.csv` files are combined.

use std::collections::BTreeMap;

use crate::configs::Configuration;
use crate::report::Row;

/// Where a problem sorts: by its number (`HumanEval/12` → 12), then by its id; ids without a
/// number sort last.
fn problem_key(task_id: &str) -> (u64, String) {
    let number = task_id.rsplit('/').next().and_then(|n| n.parse().ok()).unwrap_or(u64::MAX);
    (number, task_id.to_owned())
}

/// The rows of `runs` as one table: one row per problem per configuration, the row of a later
/// run replacing an earlier run's for the same pair (a problem re-run after a failure wins).
/// Ordered by problem number, then configuration.
pub fn merge(runs: impl IntoIterator<Item = Vec<Row>>) -> Vec<Row> {
    let mut merged: BTreeMap<((u64, String), Configuration), Row> = BTreeMap::new();
    for row in runs.into_iter().flatten() {
        merged.insert((problem_key(&row.task_id), row.config), row);
    }
    merged.into_values().collect()
}

/// The configurations that have rows, in the order of the tables ((a) first).
pub fn configs_of(rows: &[Row]) -> Vec<Configuration> {
    Configuration::ALL.into_iter().filter(|c| rows.iter().any(|r| r.config == *c)).collect()
}

/// The problems that have rows, in problem order, each once.
pub fn problems_of(rows: &[Row]) -> Vec<String> {
    let mut keys: Vec<(u64, String)> = rows.iter().map(|r| problem_key(&r.task_id)).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter().map(|(_, id)| id).collect()
}

/// `HumanEval/0 to HumanEval/163 (164 problems)` for the report's header ("to": a merge may
/// have gaps, which `--check` lists).
pub fn problems_label(problems: &[String]) -> String {
    match (problems.first(), problems.last()) {
        (Some(first), Some(last)) if problems.len() > 1 => {
            format!("{first} to {last} ({} problems)", problems.len())
        }
        (Some(only), _) => format!("{only} (1 problem)"),
        _ => "none".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::row;

    #[test]
    fn a_later_run_replaces_an_earlier_row_and_the_problems_add_up() {
        let first = vec![
            row(Configuration::Single, "HumanEval/0", false, 10),
            row(Configuration::Cascade, "HumanEval/0", false, 10),
            row(Configuration::Single, "HumanEval/10", true, 10),
        ];
        let second = vec![
            row(Configuration::Cascade, "HumanEval/0", true, 20),
            row(Configuration::Single, "HumanEval/2", true, 20),
        ];
        let merged = merge([first, second]);
        let keys: Vec<(&str, char, bool)> =
            merged.iter().map(|r| (r.task_id.as_str(), r.config.letter(), r.passed)).collect();
        assert_eq!(
            keys,
            [
                ("HumanEval/0", 'a', false),
                ("HumanEval/0", 'e', true),
                ("HumanEval/2", 'a', true),
                ("HumanEval/10", 'a', true)
            ],
            "one row per pair, the later one kept, ordered by problem number"
        );
        assert_eq!(merged[1].wall.as_millis(), 20);
        assert_eq!(configs_of(&merged), [Configuration::Single, Configuration::Cascade]);
        let problems = problems_of(&merged);
        assert_eq!(problems, ["HumanEval/0", "HumanEval/2", "HumanEval/10"]);
        assert_eq!(problems_label(&problems), "HumanEval/0 to HumanEval/10 (3 problems)");
        assert_eq!(problems_label(&problems[..1]), "HumanEval/0 (1 problem)");
    }

    #[test]
    fn the_same_run_twice_merges_to_itself() {
        let run = vec![
            row(Configuration::Single, "HumanEval/1", true, 10),
            row(Configuration::CouncilWithTests, "HumanEval/1", false, 10),
        ];
        assert_eq!(merge([run.clone(), run.clone()]), run);
    }
}
