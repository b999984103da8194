//! The code of a winning proposal, and the programs that grade it.

use orchestrator_infra_dryrun::code_blocks::code_blocks;

use crate::humaneval::Problem;

/// Code-fence languages taken as Python; the empty one is a bare fence, which small models
/// write as often as a labelled one.
const PYTHON_FENCES: [&str; 4] = ["python", "py", "python3", ""];

/// The Python code of a proposal: its closed ```python (or bare) fenced blocks, joined. `None`
/// when it has none: prose is not graded as code.
pub fn python_code(content: &str) -> Option<String> {
    let languages: Vec<String> = PYTHON_FENCES.iter().map(|l| (*l).to_owned()).collect();
    let blocks = code_blocks(content, &languages);
    if blocks.iter().all(|block| block.trim().is_empty()) {
        return None;
    }
    Some(blocks.join("\n"))
}

/// The program that grades `code` on the hidden tests: the prompt's preamble (imports and
/// helpers the tests may call), the code, the problem's `check` and the call of it on the
/// entry point. Exit status 0 means every hidden test passed.
pub fn hidden_test_program(problem: &Problem, code: &str) -> String {
    format!("{}\n{}\n\n{}\n\ncheck({})\n", problem.preamble(), code, problem.test, problem.entry_point)
}

/// The visible tests as the orchestrator receives them: asserts that import the function from
/// the proposal's code (`solution`).
pub fn acceptance_test_code(problem: &Problem, asserts: &[String]) -> String {
    format!("from solution import {}\n\n{}\n", problem.entry_point, asserts.join("\n"))
}

/// A program that runs the reference solution and then each candidate assert on its own,
/// printing `ok <index>` for those that hold: how visible tests are vetted.
pub fn vetting_program(problem: &Problem, asserts: &[String]) -> String {
    // A JSON string is a valid Python string literal, so the asserts travel as data.
    let literals: Vec<String> =
        asserts.iter().map(|a| serde_json::Value::String(a.clone()).to_string()).collect();
    format!(
        "{}\n\n__asserts = [{}]\nfor __i, __src in enumerate(__asserts):\n    try:\n        exec(__src, globals())\n        print('ok', __i)\n    except BaseException:\n        pass\n",
        problem.reference_program(),
        literals.join(", ")
    )
}

/// The indices `vetting_program` reported as holding.
pub fn vetted_indices(stdout: &str) -> Vec<usize> {
    stdout.lines().filter_map(|line| line.strip_prefix("ok ")?.trim().parse().ok()).collect()
}

/// The task description sent for a problem: the prompt, and the answer format.
pub fn task_description(problem: &Problem) -> String {
    format!(
        "Complete the Python function `{}` below. Answer with the complete function (its \
         signature, its body and any imports it needs) in a single ```python code block.\n\n\
         ```python\n{}```",
        problem.entry_point, problem.prompt
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem() -> Problem {
        Problem {
            task_id: "HumanEval/0".into(),
            prompt: "from typing import List\n\n\ndef add(xs: List[int]) -> int:\n    \"\"\"Sum.\n    >>> add([1, 2])\n    3\n    \"\"\"\n".into(),
            canonical_solution: "    return sum(xs)\n".into(),
            test: "def check(candidate):\n    assert candidate([2, 2]) == 4\n".into(),
            entry_point: "add".into(),
        }
    }

    #[test]
    fn python_and_bare_fences_are_code_prose_is_not() {
        let answer =
            "Here:\n```python\ndef add(xs):\n    return sum(xs)\n```\nand\n```\nX = 1\n```\n```sh\nls\n```\n";
        assert_eq!(python_code(answer).unwrap(), "def add(xs):\n    return sum(xs)\n\nX = 1\n");
        assert_eq!(python_code("def add(xs): return sum(xs)"), None);
        assert_eq!(python_code("```python\n\n```"), None);
        assert_eq!(python_code("```python\ndef cut_off(xs):\n"), None, "an unclosed block is not code");
    }

    #[test]
    fn the_grading_program_keeps_the_preamble_and_calls_check_on_the_entry_point() {
        let program = hidden_test_program(&problem(), "def add(xs):\n    return sum(xs)\n");
        assert!(program.starts_with("from typing import List\n"));
        assert!(program.contains("def check(candidate)"));
        assert!(program.trim_end().ends_with("check(add)"));
        assert!(!program.contains("return sum(xs)\n    \"\"\""), "the reference solution is not in it");
    }

    #[test]
    fn visible_tests_import_the_function_from_the_solution() {
        let code = acceptance_test_code(&problem(), &["assert add([1, 2]) == 3".into()]);
        assert_eq!(code, "from solution import add\n\nassert add([1, 2]) == 3\n");
    }

    #[test]
    fn vetting_runs_each_assert_alone_on_the_reference() {
        let asserts = ["assert add([1, 2]) == 3".to_owned(), "assert add([\"x\"]) == 'q'".to_owned()];
        let program = vetting_program(&problem(), &asserts);
        assert!(program.contains("    return sum(xs)\n"));
        assert!(program.contains(r#""assert add([\"x\"]) == 'q'""#));
        assert_eq!(vetted_indices("ok 0\nnoise\nok 2\n"), [0, 2]);
    }
}
