//! A problem's docstring examples as plain Python asserts: the visible acceptance tests.
//!
//! HumanEval writes examples in many ways: doctest (`>>> f(x)` then the value on the next
//! line) and inline (`f(x) == y`, `f(x) ➞ y`, `f(x) => y`, `f(x) returns y`, …). Parsing is
//! deliberately liberal and purely textual; every assert it produces is then run against the
//! reference solution in the sandbox ([`crate::grading::Grader::vet`]) and dropped unless it
//! passes, so a misparse (or one of HumanEval's few wrong examples) never becomes a test that
//! correct code fails. Examples that span lines are skipped.

/// Separators between a call and its expected value in inline examples, longest first.
const SEPARATORS: [&str; 10] =
    ["==>", "==", "=>", "➞", "->", "should return", "returns", "return", "=", "is"];

/// The docstring examples of `entry_point` in `prompt` as `assert` lines, deduplicated, in
/// order. Floats are compared with a tolerance of 1e-6.
pub fn visible_asserts(prompt: &str, entry_point: &str) -> Vec<String> {
    let signature = format!("def {entry_point}(");
    let Some(start) = prompt.find(&signature) else { return Vec::new() };
    let body = &prompt[start + signature.len()..];
    let lines: Vec<&str> = body.lines().map(str::trim).collect();
    let mut asserts: Vec<String> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let example = match line.strip_prefix(">>>") {
            Some(expression) => doctest_example(expression.trim(), &lines[i + 1..], entry_point),
            None => inline_example(line.trim_start_matches(['*', '-', ' ']), entry_point),
        };
        if let Some(assertion) = example.map(|(call, expected)| assertion(call, &expected))
            && !asserts.contains(&assertion)
        {
            asserts.push(assertion);
        }
    }
    asserts
}

/// `>>> f(x)` followed by one line holding the value (then a blank line, the next example or
/// the end of the docstring). A call followed by more text on its own line is an inline one.
fn doctest_example<'a>(
    expression: &'a str,
    rest: &[&'a str],
    entry_point: &str,
) -> Option<(&'a str, String)> {
    let end = call_end(expression, entry_point)?;
    if end < expression.len() {
        return inline_example(expression, entry_point);
    }
    let value = rest.first()?.trim_end_matches("\"\"\"").trim();
    let ends_there = rest.get(1).is_none_or(|next| {
        next.is_empty()
            || next.starts_with(">>>")
            || next.starts_with("\"\"\"")
            || rest[0].ends_with("\"\"\"")
    });
    if value.is_empty() || value.starts_with(">>>") || value.starts_with("\"\"\"") || !ends_there {
        return None;
    }
    Some((expression, value.to_owned()))
}

/// `f(x) <separator> value` on one line.
fn inline_example<'a>(line: &'a str, entry_point: &str) -> Option<(&'a str, String)> {
    let end = call_end(line, entry_point)?;
    let mut rest = line[end..].trim().trim_start_matches('#').trim();
    let separator = SEPARATORS.iter().find(|s| rest.starts_with(**s))?;
    rest = rest[separator.len()..].trim();
    let mut value = rest.to_owned();
    if value.ends_with('.') && !value[..value.len() - 1].ends_with(|c: char| c.is_ascii_digit()) {
        value.pop();
    }
    value = match value.as_str() {
        "true" => "True".to_owned(),
        "false" => "False".to_owned(),
        _ => value,
    };
    if value.is_empty() {
        return None;
    }
    Some((&line[..end], value))
}

/// The byte offset just past the call `entry_point(…)` that starts `text`, honouring string
/// literals; `None` when `text` does not start with such a call or it is not closed.
fn call_end(text: &str, entry_point: &str) -> Option<usize> {
    let after_name = text.strip_prefix(entry_point)?;
    if !after_name.starts_with('(') {
        return None;
    }
    let open = entry_point.len();
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (offset, c) in text[open..].char_indices() {
        if let Some(q) = quote {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                _ if c == q => quote = None,
                _ => {}
            }
            continue;
        }
        match c {
            '\'' | '"' => quote = Some(c),
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(open + offset + 1);
                }
            }
            _ => {}
        }
    }
    None
}

fn assertion(call: &str, expected: &str) -> String {
    if is_float_literal(expected) {
        format!("assert abs({call} - ({expected})) < 1e-6")
    } else {
        format!("assert {call} == {expected}")
    }
}

fn is_float_literal(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    (digits.contains('.') || digits.contains(['e', 'E']))
        && digits.chars().next().is_some_and(|c| c.is_ascii_digit())
        && digits.parse::<f64>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doctest_examples_become_asserts_and_floats_get_a_tolerance() {
        let prompt = "from typing import List\n\n\ndef has_close(numbers: List[float], t: float) -> bool:\n    \"\"\" Doc.\n    >>> has_close([1.0, 2.0, 3.0], 0.5)\n    False\n    >>> has_close([1.0, 2.8], 0.3)\n    True\n    \"\"\"\n";
        assert_eq!(
            visible_asserts(prompt, "has_close"),
            ["assert has_close([1.0, 2.0, 3.0], 0.5) == False", "assert has_close([1.0, 2.8], 0.3) == True"]
        );
        let float =
            "def truncate(x: float) -> float:\n    \"\"\"\n    >>> truncate(3.5)\n    0.5\n    \"\"\"\n";
        assert_eq!(visible_asserts(float, "truncate"), ["assert abs(truncate(3.5) - (0.5)) < 1e-6"]);
    }

    #[test]
    fn strings_with_parentheses_and_values_closing_the_docstring_parse() {
        let prompt = "def f(s):\n    \"\"\"\n    >>> f('(()) ()')\n    ['(())', '()']\n    >>> f(\"a\\\")\")\n    0\"\"\"\n";
        assert_eq!(
            visible_asserts(prompt, "f"),
            ["assert f('(()) ()') == ['(())', '()']", "assert f(\"a\\\")\") == 0"]
        );
    }

    #[test]
    fn inline_examples_in_humaneval_styles() {
        let prompt = "def f(x):\n    '''\n    f([1, 2]) ➞ False\n    f(3) ==> True\n    * f(4) => [5]\n    f('hi') returns 'lm'\n    f(148) should return 16.\n    f(2) => true\n    f(9) == 3\n    f(7)   # returns \"db111db\"\n    '''\n";
        assert_eq!(
            visible_asserts(prompt, "f"),
            [
                "assert f([1, 2]) == False",
                "assert f(3) == True",
                "assert f(4) == [5]",
                "assert f('hi') == 'lm'",
                "assert abs(f(148) - (16.)) < 1e-6",
                "assert f(2) == True",
                "assert f(9) == 3",
                "assert f(7) == \"db111db\"",
            ]
        );
    }

    #[test]
    fn what_cannot_be_parsed_is_skipped() {
        let prompt = "def f(x):\n    \"\"\"\n    >>> f([\n    ... 1])\n    2\n    >>> f(1)\n    line one\n    line two\n\n    >>> g(1)\n    3\n    f(2) and more\n    f(1, 2\n    Write f() that returns\n    \"\"\"\n";
        assert!(visible_asserts(prompt, "f").is_empty(), "{:?}", visible_asserts(prompt, "f"));
        assert!(visible_asserts("def g():\n    pass\n", "f").is_empty());
    }

    #[test]
    fn examples_before_the_function_to_write_are_not_its_examples() {
        let prompt = "def helper(x):\n    \"\"\"\n    >>> f(1)\n    2\n    \"\"\"\n\n\ndef f(x):\n    \"\"\"\n    >>> f(2)\n    3\n    >>> f(2)\n    3\n    \"\"\"\n";
        assert_eq!(visible_asserts(prompt, "f"), ["assert f(2) == 3"]);
    }
}
