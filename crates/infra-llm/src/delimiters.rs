//! The delimiters prompts wrap embedded texts in, and removing them when a model echoes them.
//!
//! [`prompts`](crate::prompts) shows a proposal, a candidate or the agent's own draft between
//! an [`OPEN`] and a [`CLOSE`] line. Small models copy that framing into their answer — seen on
//! SmolLM2: proposals stored as `<<<\ndef f(): ...\n>>>`, or opened with a labelled
//! `<<< PROPOSAL` — and those markers would then be shown to the next reviewer and returned to
//! the client. [`strip`] removes them:
//!
//! * **Delimiter lines, anywhere**: a line that is only `<<<` or `>>>`, or `<<<` followed by a
//!   short label (`<<< PROPOSAL`, `<<<Candidate 2:`). A `>>>` line keeps its label only when
//!   the label is in capitals (`>>> END`), so Python doctest lines such as `>>> f(1)` or
//!   `>>> x` stay. Git conflict markers (`<<<<<<<`) are not delimiters.
//! * **Inline markers at the ends**: an answer starting `<<<def f():` loses its `<<<`; its
//!   ending `>>>` is removed only when such an opening marker was, since code may end with a
//!   nested generic (`Vec<Vec<u8>>>`).
//!
//! Nothing else is touched; the result is trimmed (and, when lines were removed, its line
//! endings are `\n`).

use std::sync::LazyLock;

use regex::Regex;

/// Opens an embedded text in a prompt.
pub(crate) const OPEN: &str = "<<<";
/// Closes an embedded text in a prompt.
pub(crate) const CLOSE: &str = ">>>";

/// `text` without echoed delimiters (see the module docs), trimmed.
pub(crate) fn strip(text: &str) -> String {
    static OPEN_LINE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(&format!(
            r"^{}(?:[^<>]\s*[\p{{L}}\p{{N}} _#\-]{{0,40}}?)?\s*:?\s*(?:{})?$",
            regex::escape(OPEN),
            regex::escape(CLOSE)
        ))
        .expect("literal regex is valid")
    });
    static CLOSE_LINE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(&format!(r"^{}(?:\s*[\p{{Lu}} _#\-]{{0,40}}?)?\s*:?$", regex::escape(CLOSE)))
            .expect("literal regex is valid")
    });
    let is_delimiter = |line: &str| {
        let line = line.trim();
        line == OPEN || line == CLOSE || OPEN_LINE.is_match(line) || CLOSE_LINE.is_match(line)
    };
    let joined;
    let mut body = text.trim();
    if body.lines().any(is_delimiter) {
        joined = body.lines().filter(|line| !is_delimiter(line)).collect::<Vec<_>>().join("\n");
        body = joined.trim();
    }
    if let Some(rest) = body.strip_prefix(OPEN).filter(|rest| !rest.starts_with('<')) {
        body = rest.strip_suffix(CLOSE).unwrap_or(rest).trim();
    }
    body.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proposal_wrapped_in_bare_delimiters_is_unwrapped() {
        assert_eq!(strip("<<<\ndef f():\n    return 1\n>>>"), "def f():\n    return 1");
        assert_eq!(strip("  <<<  \r\n\r\nfn f() {}\r\n  >>>\n"), "fn f() {}");
    }

    #[test]
    fn labelled_opening_lines_are_removed() {
        for raw in [
            "<<< PROPOSAL\nUse a token bucket.\n>>>",
            "<<<PROPOSAL\nUse a token bucket.",
            "<<< Proposal:\nUse a token bucket.\n>>> END",
            "<<< Candidate 2:\nUse a token bucket.",
            "<<< PROPOSAL >>>\nUse a token bucket.",
        ] {
            assert_eq!(strip(raw), "Use a token bucket.", "{raw:?}");
        }
    }

    #[test]
    fn echoed_delimiters_inside_the_answer_are_removed() {
        let raw = "Here is my revised proposal:\n<<<\n1. Reverse by graphemes.\n>>>\n\n<<<\n2. Test the empty string.\n>>>";
        assert_eq!(
            strip(raw),
            "Here is my revised proposal:\n1. Reverse by graphemes.\n\n2. Test the empty string."
        );
    }

    #[test]
    fn inline_markers_at_the_ends_are_removed_in_pairs() {
        assert_eq!(strip("<<<def f(): pass>>>"), "def f(): pass");
        assert_eq!(strip("<<< def f(): pass"), "def f(): pass");
        // Without an opening marker, a trailing `>>>` is code.
        assert_eq!(strip("type T = Vec<Vec<Vec<u8>>>"), "type T = Vec<Vec<Vec<u8>>>");
    }

    #[test]
    fn doctests_shift_operators_and_conflict_markers_are_kept() {
        let doctest = ">>> reverse('abc')\n'cba'\n>>> x\n1";
        assert_eq!(strip(doctest), doctest);
        assert_eq!(strip("x = y >>> 2; z = a << b"), "x = y >>> 2; z = a << b");
        let conflict = "<<<<<<< HEAD\na\n=======\nb\n>>>>>>> branch";
        assert_eq!(strip(conflict), conflict);
        assert_eq!(strip("echo <<< \"here string\""), "echo <<< \"here string\"");
    }

    #[test]
    fn a_captured_proposal_opening_with_the_delimiter_keeps_its_code_fence() {
        // Captured from SmolLM2-135M on a task with acceptance tests: the answer repeats the
        // prompt's framing around its code.
        let raw = "<<<\n```python\ndef add(a, b):\n    return a + b\n```\n>>>";
        assert_eq!(strip(raw), "```python\ndef add(a, b):\n    return a + b\n```");
        let raw = "<<< Proposal:\nHere is the function:\n```python\ndef add(a, b):\n    return a + b\n```";
        assert!(!strip(raw).contains("<<<"), "{}", strip(raw));
    }

    #[test]
    fn an_answer_of_delimiters_only_becomes_empty() {
        assert_eq!(strip("<<<\n>>>"), "");
        assert_eq!(strip("<<< PROPOSAL\n\n>>>"), "");
    }
}
