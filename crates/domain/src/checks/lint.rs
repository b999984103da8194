//! Lint check: structure, size and whether the proposal addresses every requirement.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::excerpt::excerpt;

/// Largest proposal that still passes lint, in bytes.
pub const MAX_PROPOSAL_BYTES: usize = 64 * 1024;
/// Proposals shorter than this (in characters) draw a warning: they rarely solve anything.
pub const MIN_USEFUL_CHARS: usize = 40;
/// Lines longer than this draw a warning.
pub const MAX_LINE_CHARS: usize = 400;
/// Share of a requirement's keywords a proposal must mention for it to count as addressed.
pub const COVERAGE_THRESHOLD: f64 = 0.5;
/// A line of the proposal sharing at least this share of its word triples with the prompt
/// (task description, requirements) is a restatement, not the proposal's own substance.
pub const COPIED_LINE_SHARE: f64 = 0.6;
/// The lint error of an answer the model stopped at its token limit.
pub const TRUNCATED_ERROR: &str = "answer was cut off at the model's token limit (finish_reason = length)";
/// How many of the task description's first distinct key terms relevance is measured on.
pub const RELEVANCE_TERMS: usize = 20;
/// Below this share of the task's key terms a proposal draws a warning: it is probably about
/// something else (small models answer "please provide your project" with confidence).
pub const RELEVANCE_WARNING: f64 = 0.3;

/// How many of the task's requirements a proposal addresses.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RequirementCoverage {
    pub total: usize,
    pub covered: usize,
    /// Indices (into the task's requirements) of those not addressed.
    pub missing: Vec<usize>,
}

impl RequirementCoverage {
    /// Covered share in [0, 1], or `None` when the task lists no requirement.
    pub fn ratio(&self) -> Option<f64> {
        (self.total > 0).then(|| self.covered as f64 / self.total as f64)
    }
}

/// Errors fail the check; warnings only lower the score.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LintResult {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    pub coverage: RequirementCoverage,
    /// Share in [0, 1] of the task description's key terms the proposal mentions; `None` when
    /// the description has no key term.
    #[serde(default)]
    pub relevance: Option<f64>,
}

impl LintResult {
    pub fn passed(&self) -> bool {
        self.errors.is_empty()
    }

    /// Flags an answer cut off at the model's token limit: an error, since its end (often the
    /// code) is missing.
    pub fn flag_truncated(&mut self) {
        if !self.errors.iter().any(|e| e == TRUNCATED_ERROR) {
            self.errors.push(TRUNCATED_ERROR.to_owned());
        }
    }
}

/// Lints a proposal against the task's description and requirements.
pub fn lint(content: &str, task_description: &str, requirements: &[String]) -> LintResult {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();

    if content.trim().is_empty() {
        errors.push("proposal is empty".to_owned());
    } else if content.trim().chars().count() < MIN_USEFUL_CHARS {
        warnings.push(format!("proposal is very short (under {MIN_USEFUL_CHARS} characters)"));
    }
    if content.len() > MAX_PROPOSAL_BYTES {
        errors
            .push(format!("proposal is {} bytes, more than the {MAX_PROPOSAL_BYTES} allowed", content.len()));
    }
    if let Some(line) = unclosed_fence(content) {
        errors.push(format!("code fence opened at line {line} is never closed"));
    }
    let long_lines = content.lines().filter(|l| l.chars().count() > MAX_LINE_CHARS).count();
    if long_lines > 0 {
        warnings.push(format!("{long_lines} line(s) longer than {MAX_LINE_CHARS} characters"));
    }
    let placeholders = content
        .lines()
        .filter(|l| l.contains("TODO") || l.contains("FIXME") || l.contains("unimplemented!"))
        .count();
    if placeholders > 0 {
        warnings.push(format!("{placeholders} placeholder line(s) (TODO/FIXME/unimplemented!)"));
    }

    // Coverage and relevance come from the proposal's own substance: lines restating the task
    // or its requirements do not count (small models open by copying the prompt).
    let own = own_text(content, task_description, requirements);
    let vocabulary = vocabulary(&own);
    let coverage = coverage(&own, &vocabulary, requirements);
    for &index in &coverage.missing {
        errors.push(format!(
            "requirement {} not addressed: {}",
            index + 1,
            excerpt(&requirements[index], 80)
        ));
    }
    let relevance = relevance(&vocabulary, task_description);
    if let Some(share) = relevance.filter(|share| *share < RELEVANCE_WARNING) {
        warnings.push(format!("proposal mentions {:.0}% of the task's key terms", share * 100.0));
    }
    LintResult { errors, warnings, coverage, relevance }
}

/// `content` without the lines copied from the prompt: a line of four words or more sharing at
/// least [`COPIED_LINE_SHARE`] of its word triples with the task description or a requirement,
/// or a shorter line equal (in words) to a line of the prompt, such as a requirement repeated
/// as a bullet.
fn own_text(content: &str, task_description: &str, requirements: &[String]) -> String {
    let prompt_lines: Vec<Vec<String>> = task_description
        .lines()
        .chain(requirements.iter().map(String::as_str))
        .map(|line| words(line).collect::<Vec<_>>())
        .filter(|line| !line.is_empty())
        .collect();
    let triples: BTreeSet<&[String]> = prompt_lines.iter().flat_map(|line| line.windows(3)).collect();
    let mut in_code = false;
    content
        .lines()
        .filter(|line| {
            let trimmed = line.trim_start();
            if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
                in_code = !in_code;
                return true;
            }
            // A statement inside a code block (a function signature the task spelled out) is
            // the proposal's code, even when it repeats the task; prose and docstrings are not.
            if in_code && trimmed.contains(['(', ')', '[', ']', '{', '}', '=']) {
                return true;
            }
            let mut line_words: Vec<String> = words(line).collect();
            // A list marker ("1.", "2)") is not a word of the restated text.
            if line_words.first().is_some_and(|w| w.chars().all(|c| c.is_ascii_digit())) {
                line_words.remove(0);
            }
            if line_words.is_empty() {
                return true;
            }
            if line_words.len() < 4 {
                return !prompt_lines.contains(&line_words);
            }
            let own_triples = line_words.windows(3).count();
            let copied = line_words.windows(3).filter(|t| triples.contains(t)).count();
            (copied as f64) < COPIED_LINE_SHARE * own_triples as f64
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The 1-based line of a code fence that is opened and never closed.
fn unclosed_fence(content: &str) -> Option<usize> {
    let mut open: Option<(usize, char, usize)> = None;
    for (index, line) in content.lines().enumerate() {
        let trimmed = line.trim_start();
        let Some(marker) = trimmed.chars().next().filter(|c| *c == '`' || *c == '~') else {
            continue;
        };
        let run = trimmed.chars().take_while(|c| *c == marker).count();
        if run < 3 {
            continue;
        }
        match open {
            None => open = Some((index + 1, marker, run)),
            // A closing fence uses the same marker, at least as long, with nothing after it.
            Some((_, m, len)) if m == marker && run >= len && trimmed[run..].trim().is_empty() => open = None,
            Some(_) => {}
        }
    }
    open.map(|(line, _, _)| line)
}

const STOPWORDS: &[&str] = &[
    "the", "and", "for", "with", "that", "this", "must", "should", "shall", "will", "are", "not", "all",
    "any", "each", "every", "from", "into", "have", "has", "its", "use", "using", "when", "then", "than",
    "only", "also", "been", "can", "per", "via", "you", "your", "our", "their", "they", "them", "there",
    "where", "which", "who", "what", "how", "make", "sure", "ensure", "support", "supports", "provide",
    "provides", "need", "needs", "able", "least", "most",
];

fn stem(word: &str) -> &str {
    for suffix in ["ing", "ed", "es", "s"] {
        if let Some(stripped) = word.strip_suffix(suffix)
            && stripped.len() >= 3
        {
            return stripped;
        }
    }
    word
}

fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase)
}

fn keywords(requirement: &str) -> BTreeSet<String> {
    words(requirement)
        .filter(|w| w.chars().count() >= 3 && !STOPWORDS.contains(&w.as_str()))
        .map(|w| stem(&w).to_owned())
        .collect()
}

/// The stemmed, lower-cased words of a text.
fn vocabulary(content: &str) -> BTreeSet<String> {
    words(content).map(|w| stem(&w).to_owned()).collect()
}

/// Share of the description's first [`RELEVANCE_TERMS`] distinct key terms found in the proposal.
fn relevance(vocabulary: &BTreeSet<String>, task_description: &str) -> Option<f64> {
    let mut terms = Vec::new();
    for word in words(task_description).filter(|w| w.chars().count() >= 3 && !STOPWORDS.contains(&w.as_str()))
    {
        let term = stem(&word).to_owned();
        if !terms.contains(&term) {
            terms.push(term);
            if terms.len() == RELEVANCE_TERMS {
                break;
            }
        }
    }
    (!terms.is_empty())
        .then(|| terms.iter().filter(|t| vocabulary.contains(*t)).count() as f64 / terms.len() as f64)
}

/// A requirement is addressed when the proposal mentions at least half of its keywords
/// (stemmed, case-insensitive); one without keywords must appear verbatim.
fn coverage(content: &str, vocabulary: &BTreeSet<String>, requirements: &[String]) -> RequirementCoverage {
    let lowered = content.to_lowercase();
    let missing: Vec<usize> = requirements
        .iter()
        .enumerate()
        .filter(|(_, requirement)| {
            let keys = keywords(requirement);
            if keys.is_empty() {
                return !lowered.contains(&requirement.to_lowercase());
            }
            let hits = keys.iter().filter(|k| vocabulary.contains(*k)).count();
            (hits as f64) < COVERAGE_THRESHOLD * keys.len() as f64
        })
        .map(|(index, _)| index)
        .collect();
    RequirementCoverage { total: requirements.len(), covered: requirements.len() - missing.len(), missing }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reqs(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    const GOOD: &str = "Add an index on users.email and paginate the listing with a keyset cursor.";
    const TASK: &str = "Paginate the users listing";

    #[test]
    fn well_formed_proposal_passes() {
        let result = lint(GOOD, TASK, &[]);
        assert!(result.passed(), "{result:?}");
        assert!(result.warnings.is_empty());
        assert_eq!(result.coverage.ratio(), None);
    }

    #[test]
    fn empty_proposal_is_an_error() {
        assert_eq!(lint(" \n", TASK, &[]).errors, ["proposal is empty"]);
    }

    #[test]
    fn short_proposal_is_a_warning() {
        let result = lint("paginate with a cursor", TASK, &[]);
        assert!(result.passed());
        assert_eq!(result.warnings, ["proposal is very short (under 40 characters)"]);
    }

    #[test]
    fn unclosed_code_fence_is_an_error_with_its_line() {
        let result = lint(&format!("{GOOD}\n```rust\nfn main() {{}}\n"), TASK, &[]);
        assert_eq!(result.errors, ["code fence opened at line 2 is never closed"]);
        assert!(lint(&format!("{GOOD}\n```rust\nfn main() {{}}\n```\n"), TASK, &[]).passed());
        assert!(lint(&format!("{GOOD}\n~~~~\n```\nnested\n```\n~~~~\n"), TASK, &[]).passed());
    }

    #[test]
    fn oversized_proposal_is_an_error() {
        let result = lint(&"a".repeat(MAX_PROPOSAL_BYTES + 1), TASK, &[]);
        assert!(result.errors.iter().any(|e| e.contains("more than the 65536 allowed")), "{result:?}");
    }

    #[test]
    fn placeholders_and_long_lines_are_warnings() {
        let text = format!("{GOOD}\n// TODO: the rest\n{}", "x".repeat(MAX_LINE_CHARS + 1));
        let result = lint(&text, TASK, &[]);
        assert!(result.passed());
        assert_eq!(result.warnings.len(), 2, "{result:?}");
    }

    #[test]
    fn requirements_are_counted_covered_or_missing() {
        let requirements = reqs(&["Paginate the users listing", "Encrypt backups at rest", "p95 < 50ms"]);
        let result = lint(GOOD, TASK, &requirements);
        assert_eq!(result.coverage.total, 3);
        assert_eq!(result.coverage.covered, 1);
        assert_eq!(result.coverage.missing, [1, 2]);
        assert_eq!(
            result.errors,
            [
                "requirement 2 not addressed: Encrypt backups at rest",
                "requirement 3 not addressed: p95 < 50ms"
            ]
        );
    }

    #[test]
    fn relevance_measures_the_task_terms_the_proposal_mentions() {
        let result = lint(GOOD, "Paginate the users listing efficiently", &[]);
        assert_eq!(result.relevance, Some(0.75), "paginate, users, listing of 4 terms");
        assert!(result.warnings.is_empty());
        let off_topic = lint("I'm ready to assist. Please provide your project details.", TASK, &[]);
        assert_eq!(off_topic.relevance, Some(0.0));
        assert_eq!(off_topic.warnings, ["proposal mentions 0% of the task's key terms"]);
        assert!(off_topic.passed(), "a warning, not an error");
        assert_eq!(lint(GOOD, "do it", &[]).relevance, None);
    }

    /// Captured from SmolLM2-135M on "Write a Python function that reverses a string": it
    /// restates the task and the requirements, then writes code that addresses neither.
    const RESTATING_ANSWER: &str = "Task: Write a Python function that reverses a string.\n\n\
        Requirements:\n1. Handle empty input\n2. Include unit tests\n\n\
        Here is the code:\n```python\ndef reverse(s):\n    return s[::-1]\n```";

    #[test]
    fn restating_the_task_and_requirements_is_not_coverage() {
        let task = "Write a Python function that reverses a string";
        let requirements = reqs(&["Handle empty input", "Include unit tests"]);
        let result = lint(RESTATING_ANSWER, task, &requirements);
        assert_eq!(result.coverage.covered, 0, "{result:?}");
        assert_eq!(result.coverage.missing, [0, 1]);
        // The same points made in its own words count.
        let own = format!(
            "{RESTATING_ANSWER}\nAn empty input string returns an empty string; unit tests cover both cases."
        );
        let result = lint(&own, task, &requirements);
        assert_eq!(result.coverage.covered, 2, "{result:?}");
    }

    #[test]
    fn code_repeating_the_signature_the_task_gave_is_the_proposals_own() {
        // HumanEval-style task: the prompt spells out the signature and the docstring.
        let task = "def add(a: int, b: int) -> int:\n    \"\"\"Add two numbers a and b together and return the sum\"\"\"";
        let answer = "```python\ndef add(a: int, b: int) -> int:\n    \"\"\"Add two numbers a and b together and return the sum\"\"\"\n    total = a + b\n    return total\n```";
        let own = own_text(answer, task, &[]);
        assert!(own.contains("def add(a: int, b: int) -> int:"), "{own}");
        assert!(!own.contains("Add two numbers"), "the copied docstring is not its own: {own}");
    }

    #[test]
    fn a_truncated_answer_is_flagged_once_as_an_error() {
        // Captured from SmolLM2-135M at max_tokens: the function stops mid-expression.
        let cut = "Here is a function that reverses a string:\n\n```python\ndef reverse(s):\n    return s[";
        let mut result = lint(cut, "Reverse a string", &[]);
        result.flag_truncated();
        result.flag_truncated();
        assert!(!result.passed());
        assert_eq!(result.errors.iter().filter(|e| *e == TRUNCATED_ERROR).count(), 1, "{result:?}");
    }

    #[test]
    fn requirement_matching_ignores_case_and_plural() {
        let result =
            lint("We add database MIGRATION scripts and a rollback.", TASK, &reqs(&["database migrations"]));
        assert!(result.passed(), "{result:?}");
        assert_eq!(result.coverage.ratio(), Some(1.0));
    }
}
