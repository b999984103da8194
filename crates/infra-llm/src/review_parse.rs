//! Reading what a model answered to a review or a selection prompt.
//!
//! Small models answer the requested JSON loosely: wrapped in prose or code fences, with
//! trailing commas, cut off by the token limit, with the score as `"7"`, `7.5`, `"7/10"`, with
//! objects where strings were asked — or not as JSON at all. Parsing therefore goes from strict
//! to loose and never fails:
//!
//! 0. **The whole answer as one object**, which is what a server constraining the answer to its
//!    schema ([`crate::structured_output`]) returns: read directly when it holds a score (or a
//!    choice) and is not an echoed template.
//! 1. **JSON objects** found anywhere in the text (every `{`, brace-matched, string-aware), parsed
//!    as is or, failing that, repaired (trailing commas dropped, unterminated strings and
//!    brackets closed). The first object holding a known key is used; keys match
//!    case-insensitively and a few synonyms are accepted (`rating`, `feedback`, `reason`, …).
//! 2. **Prose**: `Score: 7`, `rating of 8/10`, `7 out of 10`, `80%` for reviews; `Candidate 2`,
//!    `I choose 2`, `"choice": 2` in broken JSON for selections.
//! 3. **Fallback**: the critique (or rationale) is the raw text, trimmed; score or choice `None`.
//!
//! ## Score rules
//! * A number with a denominator (`7/10`, `4/5`, `8 out of 10`) is rescaled to 0–10; a
//!   numerator above its denominator or a denominator of 0 gives no score. A percentage is
//!   divided by 10.
//! * A bare number in 0..=10 is taken as is — **except** a value strictly between 0 and 1,
//!   which is read as a 0–1 fraction and multiplied by 10 (`0.5` → 5): a grader using the
//!   0–10 scale we asked for practically never gives sub-1 decimals, while graders that slip
//!   into a 0–1 scale do so constantly. 0 and 1 themselves stay 0/10 and 1/10.
//! * Negative, above 10, not finite: no score (the review is kept, unscored — never guessed).
//!
//! ## Template echoes
//! Small models often answer with the JSON template the prompt showed
//! ([`REVIEW_JSON_TEMPLATE`]), placeholders and all — `{"score": <0-10>, "critique": "<what to
//! improve>", …}` — or fill in a number but keep the placeholder texts. That is not a grade:
//! a review whose texts are all placeholders (`<…>`, or a placeholder of the template without
//! its brackets) and which has at least one placeholder has **no score**, no issues, and the
//! critique [`TEMPLATE_ECHO_CRITIQUE`]. A placeholder score (`<0-10>`, `"0-10"`) is never read as
//! a number, whatever else the answer says. A real object after an echoed one is still used.
//! Selections are treated alike: `"choice": <1-3>` chooses nothing.
//!
//! ## Choice rules
//! Choices are 1-based in the prompt and in the answer, 0-based in [`ParsedSelection`]. A
//! choice outside `1..=k` (0 included) is `None`, and so is prose naming different candidates
//! without a decisive word (`choose`, `select`, `best`, …).

use std::ops::Range;
use std::sync::LazyLock;

use orchestrator_domain::PeerScore;
use regex::Regex;
use serde_json::{Map, Value};

use crate::prompts::REVIEW_JSON_TEMPLATE;

/// The critique of a review that only repeated the requested JSON template.
pub const TEMPLATE_ECHO_CRITIQUE: &str =
    "no review: the model repeated the requested JSON template instead of grading";
/// The rationale of a selection that only repeated the requested JSON template.
pub const TEMPLATE_ECHO_RATIONALE: &str =
    "no choice: the model repeated the requested JSON template instead of choosing";

/// Only the start of an answer is searched; a review is far shorter.
const MAX_SCANNED_BYTES: usize = 32 * 1024;
/// At most this many `{` are tried as the start of an object.
const MAX_OBJECT_STARTS: usize = 64;
/// At most this many issues are kept from one review.
const MAX_ISSUES: usize = 20;

const SCORE_KEYS: &[&str] = &["score", "rating", "grade", "overall_score", "mark"];
const CRITIQUE_KEYS: &[&str] = &[
    "critique",
    "feedback",
    "comment",
    "comments",
    "review",
    "summary",
    "explanation",
    "reason",
    "description",
];
const ISSUE_KEYS: &[&str] = &["issues", "problems", "concerns", "weaknesses"];
const CHOICE_KEYS: &[&str] =
    &["choice", "candidate", "winner", "selected", "selection", "best", "best_candidate", "answer"];
const RATIONALE_KEYS: &[&str] = &["rationale", "reason", "reasoning", "why", "explanation", "justification"];

/// A review as read from a model's answer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ParsedReview {
    pub(crate) critique: String,
    pub(crate) score: Option<PeerScore>,
    pub(crate) issues: Vec<String>,
}

/// A selection as read from a model's answer; `choice` is 0-based.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParsedSelection {
    pub(crate) choice: Option<usize>,
    pub(crate) rationale: String,
}

/// Reads a review answer (see the module docs). Never fails, never panics.
pub(crate) fn parse_review(raw: &str) -> ParsedReview {
    let text = raw.trim();
    if let Some(object) = whole_object(text).filter(|o| has_any(o, SCORE_KEYS) && !is_template_echo(o)) {
        return review_of(&object, text);
    }
    let scanned = head(text);
    let objects: Vec<_> = json_objects_at(scanned).collect();
    let (echoes, reviews): (Vec<_>, Vec<_>) = objects.iter().partition(|(_, o)| is_template_echo(o));
    let reviews: Vec<&Map<String, Value>> = reviews.into_iter().map(|(_, o)| o).collect();
    let graded = reviews.iter().find(|o| has_any(o, SCORE_KEYS));
    let review =
        graded.or_else(|| reviews.iter().find(|o| has_any(o, CRITIQUE_KEYS) || has_any(o, ISSUE_KEYS)));
    if let Some(object) = review {
        return review_of(object, text);
    }
    // Prose is read around the echoed objects: a `"score": 0` of an echo is not a grade.
    let echo_ranges: Vec<Range<usize>> = echoes.iter().map(|(range, _)| range.clone()).collect();
    let outside = without_ranges(scanned, &echo_ranges);
    let unplaced = SCORE_PLACEHOLDER.replace_all(&outside, "");
    let score = score_in_prose(&unplaced);
    let critique = string_field(&outside, &CRITIQUE_FIELD);
    let echoed =
        !echoes.is_empty() || unplaced.len() != outside.len() || holds_template_placeholder(&outside);
    if echoed && score.is_none() && critique.is_none() {
        return ParsedReview { critique: TEMPLATE_ECHO_CRITIQUE.to_owned(), score: None, issues: Vec::new() };
    }
    ParsedReview { critique: critique.unwrap_or_else(|| text.to_owned()), score, issues: Vec::new() }
}

/// The review an object holds; `text` is the critique when the object has none.
fn review_of(object: &Map<String, Value>, text: &str) -> ParsedReview {
    let score = get(object, SCORE_KEYS).and_then(score_of_value);
    let critique = get(object, CRITIQUE_KEYS).map(text_of).filter(|c| !c.is_empty());
    let issues = get(object, ISSUE_KEYS).map(issues_of).unwrap_or_default();
    ParsedReview { critique: critique.unwrap_or_else(|| text.to_owned()), score, issues }
}

/// The answer parsed as one JSON object, when it is exactly that (step 0 of the module docs).
fn whole_object(text: &str) -> Option<Map<String, Value>> {
    (text.starts_with('{') && text.ends_with('}') && text.len() <= MAX_SCANNED_BYTES)
        .then(|| parse_object(text))
        .flatten()
}

/// Reads a selection answer among `candidates` candidates (see the module docs).
pub(crate) fn parse_selection(raw: &str, candidates: usize) -> ParsedSelection {
    let text = raw.trim();
    let whole = whole_object(text).filter(|o| has_any(o, CHOICE_KEYS));
    let scanned = head(text);
    if let Some(object) = whole.or_else(|| json_objects(scanned).find(|o| has_any(o, CHOICE_KEYS))) {
        return selection_of(&object, text, candidates);
    }
    let unplaced = CHOICE_PLACEHOLDER.replace_all(scanned, "");
    let choice = choice_in_prose(&unplaced).and_then(|n| to_index(n, candidates));
    let rationale = string_field(scanned, &RATIONALE_FIELD);
    if unplaced.len() != scanned.len() && choice.is_none() && rationale.is_none() {
        return ParsedSelection { choice: None, rationale: TEMPLATE_ECHO_RATIONALE.to_owned() };
    }
    ParsedSelection { choice, rationale: rationale.unwrap_or_else(|| text.to_owned()) }
}

/// The selection an object holding a choice key makes; `text` is the rationale when the object
/// has none.
fn selection_of(object: &Map<String, Value>, text: &str, candidates: usize) -> ParsedSelection {
    let choice = get(object, CHOICE_KEYS).and_then(choice_of_value).and_then(|n| to_index(n, candidates));
    let rationale = get(object, RATIONALE_KEYS).map(text_of).filter(|r| !r.is_empty());
    if choice.is_none() && rationale.is_none() && get(object, CHOICE_KEYS).is_some_and(is_placeholder_value) {
        return ParsedSelection { choice: None, rationale: TEMPLATE_ECHO_RATIONALE.to_owned() };
    }
    ParsedSelection { choice, rationale: rationale.unwrap_or_else(|| text.to_owned()) }
}

/// A 1-based choice among `candidates` as a 0-based index; `None` outside `1..=candidates`.
fn to_index(choice: u64, candidates: usize) -> Option<usize> {
    usize::try_from(choice).ok().filter(|n| (1..=candidates).contains(n)).map(|n| n - 1)
}

/// The placeholders of [`REVIEW_JSON_TEMPLATE`] without their brackets, lowercased:
/// `0-10`, `what to improve`, `problem`.
static TEMPLATE_PLACEHOLDERS: LazyLock<Vec<String>> = LazyLock::new(|| {
    Regex::new(r"<([^<>]+)>")
        .expect("literal regex is valid")
        .captures_iter(REVIEW_JSON_TEMPLATE)
        .map(|c| c[1].trim().to_lowercase())
        .collect()
});

/// A score given as a placeholder: `"score": <0-10>`, `"score": "<anything>"`, `"score": 0-10`.
static SCORE_PLACEHOLDER: LazyLock<Regex> = LazyLock::new(|| {
    let template = TEMPLATE_PLACEHOLDERS.iter().map(|p| regex::escape(p)).collect::<Vec<_>>().join("|");
    Regex::new(&format!(r#"(?i)"score"\s*:\s*"?\s*(?:<[^<>"\n]{{0,40}}>|(?:{template})\b)\s*"?"#))
        .expect("escaped placeholders make a valid regex")
});

/// A choice given as a placeholder: `"choice": <1-3>`.
static CHOICE_PLACEHOLDER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)"choice"\s*:\s*"?\s*<[^<>"\n]{0,40}>\s*"?"#).expect("literal regex is valid")
});

/// Whether an object is the review template echoed: it holds a placeholder and no real text.
fn is_template_echo(object: &Map<String, Value>) -> bool {
    let mut placeholder = get(object, SCORE_KEYS).is_some_and(is_placeholder_value);
    let mut real = false;
    for value in [get(object, CRITIQUE_KEYS), get(object, ISSUE_KEYS)].into_iter().flatten() {
        visit_leaves(value, &mut |leaf| match leaf {
            Value::String(s) if is_placeholder(s.trim()) => placeholder = true,
            Value::String(s) if s.trim().is_empty() => {}
            Value::Null => {}
            _ => real = true,
        });
    }
    placeholder && !real
}

fn visit_leaves(value: &Value, visit: &mut dyn FnMut(&Value)) {
    match value {
        Value::Array(items) => items.iter().for_each(|v| visit_leaves(v, visit)),
        Value::Object(map) => map.values().for_each(|v| visit_leaves(v, visit)),
        leaf => visit(leaf),
    }
}

fn is_placeholder_value(value: &Value) -> bool {
    matches!(value, Value::String(s) if is_placeholder(s.trim()))
}

/// Whether `text` quotes one of the template's placeholders, e.g. `"<what to improve>"`.
fn holds_template_placeholder(text: &str) -> bool {
    let lower = text.to_lowercase();
    TEMPLATE_PLACEHOLDERS.iter().any(|p| lower.contains(&format!("\"<{p}>\"")))
}

fn head(text: &str) -> &str {
    if text.len() <= MAX_SCANNED_BYTES {
        return text;
    }
    let mut cut = MAX_SCANNED_BYTES;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    &text[..cut]
}

mod fields;
mod json_scan;

use fields::*;
use json_scan::*;

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn score(raw: &str) -> Option<f64> {
        parse_review(raw).score.map(PeerScore::value)
    }

    fn choice(raw: &str) -> Option<usize> {
        parse_selection(raw, 3).choice
    }

    #[test]
    fn strict_json_review() {
        let r = parse_review(
            r#"{"score": 7, "critique": "Solid, but no tests.", "issues": ["no tests", "naming"]}"#,
        );
        assert_eq!(r.score.map(PeerScore::value), Some(7.0));
        assert_eq!(r.critique, "Solid, but no tests.");
        assert_eq!(r.issues, vec!["no tests", "naming"]);
    }

    #[test]
    fn schema_constrained_answers_are_read_whole() {
        // Shapes SmolLM2-135M wrote under llama-cpp-python's grammar of the review schema.
        let r = parse_review(
            r#"{ "score" : 3, "critique" : "Could use built-in functions." , "issues" : ["error","remarks"] }"#,
        );
        assert_eq!(r.score.map(PeerScore::value), Some(3.0));
        assert_eq!(
            (r.critique.as_str(), r.issues.clone()),
            ("Could use built-in functions.", vec!["error".to_owned(), "remarks".to_owned()])
        );
        let r = parse_review(r#"{"score":0,"critique":"1","issues":[]}"#);
        assert_eq!((r.score.map(PeerScore::value), r.critique.as_str()), (Some(0.0), "1"));
        // A whole answer that is an echoed template is still no grade.
        assert_eq!(
            parse_review(r#"{"score": 0, "critique": "<what to improve>", "issues": ["<problem>"]}"#),
            echo()
        );
        assert_eq!(
            parse_selection(r#"{"choice": 2, "rationale": "It has tests."}"#, 3),
            ParsedSelection { choice: Some(1), rationale: "It has tests.".into() }
        );
    }

    #[test]
    fn a_schema_answer_cut_at_the_token_limit_keeps_its_grade() {
        let r = parse_review(r#"{ "score": 7, "critique": "The loop never ends because the ind"#);
        assert_eq!(r.score.map(PeerScore::value), Some(7.0));
        assert_eq!(r.critique, "The loop never ends because the ind");
    }

    #[test]
    fn json_inside_prose_or_code_fences() {
        let r = parse_review(
            "Here is my review:\n```json\n{\"score\": 6, \"critique\": \"ok\", \"issues\": []}\n```\nThanks!",
        );
        assert_eq!((r.score.map(PeerScore::value), r.critique.as_str()), (Some(6.0), "ok"));
        let r = parse_review("Sure. {\"score\": 8, \"critique\": \"fine\"} Hope it helps.");
        assert_eq!(
            (r.score.map(PeerScore::value), r.critique.as_str(), r.issues.len()),
            (Some(8.0), "fine", 0)
        );
    }

    #[test]
    fn score_as_string_float_or_fraction() {
        assert_eq!(score(r#"{"score": "7", "critique": "c"}"#), Some(7.0));
        assert_eq!(score(r#"{"score": 7.5, "critique": "c"}"#), Some(7.5));
        assert_eq!(score(r#"{"score": "7/10", "critique": "c"}"#), Some(7.0));
        assert_eq!(score(r#"{"score": "4 out of 5", "critique": "c"}"#), Some(8.0));
        assert_eq!(score(r#"{"Score": "80%", "critique": "c"}"#), Some(8.0));
        assert_eq!(score(r#"{"rating": "Score: 9", "feedback": "c"}"#), Some(9.0));
    }

    #[test]
    fn score_in_prose() {
        assert_eq!(score("7/10"), Some(7.0));
        assert_eq!(score("I'd give it 8 out of 10. Missing tests."), Some(8.0));
        assert_eq!(score("Score: 7\nThe proposal is fine."), Some(7.0));
        assert_eq!(score("**Rating**: 6.5/10"), Some(6.5));
        assert_eq!(score("Overall score of 3"), Some(3.0));
        assert_eq!(score("It has 3 requirements and 2 bugs."), None);
    }

    #[test]
    fn fraction_scale_and_out_of_range_scores() {
        assert_eq!(score(r#"{"score": 0.5}"#), Some(5.0));
        assert_eq!(score(r#"{"score": 0.75}"#), Some(7.5));
        assert_eq!(score(r#"{"score": 0}"#), Some(0.0));
        assert_eq!(score(r#"{"score": 1}"#), Some(1.0));
        assert_eq!(score(r#"{"score": 10}"#), Some(10.0));
        assert_eq!(score(r#"{"score": -2}"#), None);
        assert_eq!(score(r#"{"score": 11}"#), None);
        assert_eq!(score(r#"{"score": 85}"#), None);
        assert_eq!(score(r#"{"score": "12/10"}"#), None);
        assert_eq!(score(r#"{"score": "5/0"}"#), None);
        assert_eq!(score("Score: -3"), None);
        assert_eq!(score(r#"{"score": true}"#), None);
        assert_eq!(score(r#"{"score": "high"}"#), None);
    }

    #[test]
    fn garbage_falls_back_to_raw_critique_without_score() {
        let r = parse_review("  The code looks nice I guess  ");
        assert_eq!(
            r,
            ParsedReview { critique: "The code looks nice I guess".into(), score: None, issues: vec![] }
        );
        let r = parse_review("{{{{ ]]] \"");
        assert_eq!((r.score, r.issues.len()), (None, 0));
        assert_eq!(r.critique, "{{{{ ]]] \"");
    }

    #[test]
    fn real_small_model_output_with_objects_and_trailing_comma() {
        // Verbatim from SmolLM2-135M on the review prompt.
        let raw = "Here is a JSON-based implementation of the function:\n```json\n{\n    \"score\": 1,\n    \"critique\": {\n        \"description\": \"The original function returns an error message.\",\n        \"type\": \"Error\"\n    },\n    \"issues\": [\n        {\n            \"id\": \"error_1024835697\",\n            \"description\": \"Cannot reverse a non-string value\"\n        },\n    ]\n}\n```";
        let r = parse_review(raw);
        assert_eq!(r.score.map(PeerScore::value), Some(1.0));
        // Objects are flattened to their leaves (in whichever key order serde_json keeps).
        for part in ["The original function returns an error message.", "Error"] {
            assert!(r.critique.contains(part), "{}", r.critique);
        }
        assert_eq!(r.issues.len(), 1);
        for part in ["Cannot reverse a non-string value", "error_1024835697"] {
            assert!(r.issues[0].contains(part), "{:?}", r.issues);
        }
    }

    #[test]
    fn truncated_json_is_closed_and_read() {
        let r = parse_review("{\"score\": 6, \"critique\": \"Good start but the loop never");
        assert_eq!(r.score.map(PeerScore::value), Some(6.0));
        assert_eq!(r.critique, "Good start but the loop never");
        let r = parse_review("{\"score\": 4, \"issues\": [\"a\", \"b");
        assert_eq!(r.issues, vec!["a", "b"]);
    }

    #[test]
    fn broken_json_still_yields_score_and_critique_fields() {
        let r = parse_review(r#"{"score": 7/10, "critique": "Needs \"tests\"", "issues": [oops]}"#);
        assert_eq!(r.score.map(PeerScore::value), Some(7.0));
        assert_eq!(r.critique, "Needs \"tests\"");
    }

    #[test]
    fn json_without_critique_keeps_the_raw_text_and_nested_objects_are_found() {
        let raw = r#"{"score": 5}"#;
        assert_eq!(parse_review(raw).critique, raw);
        // An object holding a score wins over an outer one that only has a critique synonym.
        for raw in [
            r#"{"review": {"score": 9, "critique": "great"}}"#,
            r#"{"result": {"score": 9, "critique": "great"}}"#,
        ] {
            let r = parse_review(raw);
            assert_eq!((r.score.map(PeerScore::value), r.critique.as_str()), (Some(9.0), "great"), "{raw}");
        }
    }

    #[test]
    fn echoed_template_placeholders_are_dropped() {
        let r = parse_review(
            r#"{"score": 0.5, "critique": ["<what to improve>"], "issues": ["<problem>", "real one"]}"#,
        );
        assert_eq!(r.score.map(PeerScore::value), Some(5.0));
        assert_eq!(
            r.critique,
            r#"{"score": 0.5, "critique": ["<what to improve>"], "issues": ["<problem>", "real one"]}"#
        );
        assert_eq!(r.issues, vec!["real one"]);
    }

    fn echo() -> ParsedReview {
        ParsedReview { critique: TEMPLATE_ECHO_CRITIQUE.into(), score: None, issues: vec![] }
    }

    #[test]
    fn the_template_constant_has_the_placeholders_the_parser_looks_for() {
        assert_eq!(*TEMPLATE_PLACEHOLDERS, vec!["0-10", "what to improve", "problem"]);
    }

    #[test]
    fn the_echoed_review_template_is_not_a_grade() {
        let t = REVIEW_JSON_TEMPLATE;
        for raw in [
            t.to_owned(),
            format!("```json\n{t}\n```"),
            format!("Your JSON review:\n{t}"),
            t.replace("<0-10>", "0"),
            t.replace("<0-10>", "5"),
            t.replace("<0-10>", "\"<0-10>\""),
            t.replace("<0-10>", "0-10"),
            t.replace("<0-10>", "\"0-10\""),
            t.replace("<what to improve>", "<problem>"),
            t.replace("<0-10>", "0").replace("<what to improve>", "what to improve"),
            format!("{t}\n{t}"),
        ] {
            assert_eq!(parse_review(&raw), echo(), "{raw}");
        }
    }

    #[test]
    fn captured_small_model_template_echoes_are_not_grades() {
        // Shapes seen from SmolLM2-135M on the review prompt.
        for raw in [
            "{\"score\": <0-10>, \"critique\": \"<problem>\", \"issues\": [\"<problem>\"]}",
            "```json\n{\n  \"score\": 0,\n  \"critique\": \"<what to improve>\",\n  \"issues\": [\n    \"<problem>\"\n  ]\n}\n```",
            "Here is the JSON review:\n{\"score\": 10, \"critique\": \"<what to improve>\", \"issues\": [\"<problem>\", \"<problem>\"],}",
        ] {
            assert_eq!(parse_review(raw), echo(), "{raw}");
        }
    }

    #[test]
    fn a_critique_list_of_template_placeholders_is_not_a_grade_whatever_the_score() {
        // Captured from SmolLM2-135M reviewing a Python proposal with its test report: a number
        // filled in, the texts left as the template's placeholders.
        for raw in [
            "{\"score\": 8, \"critique\": [\"<problem>\"], \"issues\": [\"<problem>\"]}",
            "Here is my review of the proposal:\n\n```json\n{\n  \"score\": 9,\n  \"critique\": [\"<problem>\"],\n  \"issues\": []\n}\n```",
        ] {
            assert_eq!(parse_review(raw), echo(), "{raw}");
        }
    }

    #[test]
    fn a_real_review_next_to_an_echo_is_still_read() {
        let t = REVIEW_JSON_TEMPLATE;
        for raw in [
            format!("{t}\n{{\"score\": 6, \"critique\": \"Needs tests\"}}"),
            format!("{}\n{{\"score\": 6, \"critique\": \"Needs tests\"}}", t.replace("<0-10>", "0")),
        ] {
            let r = parse_review(&raw);
            assert_eq!(
                (r.score.map(PeerScore::value), r.critique.as_str()),
                (Some(6.0), "Needs tests"),
                "{raw}"
            );
        }
        let r = parse_review(&format!("{t}\nScore: 7 - it misses tests"));
        assert_eq!(r.score.map(PeerScore::value), Some(7.0));
    }

    #[test]
    fn a_placeholder_score_with_a_real_critique_keeps_the_critique_without_a_grade() {
        for raw in [
            r#"{"score": "<0-10>", "critique": "Misses the empty string"}"#,
            r#"{"score": <0-10>, "critique": "Misses the empty string"}"#,
        ] {
            let r = parse_review(raw);
            assert_eq!((r.score, r.critique.as_str()), (None, "Misses the empty string"), "{raw}");
        }
    }

    #[test]
    fn the_echoed_selection_template_chooses_nothing() {
        use orchestrator_domain::{Role, Task, TaskConstraints};
        let task = Task::new("t", TaskConstraints::default()).unwrap();
        let prompt = crate::prompts::select(
            Role::Dev,
            &task,
            &["a".into(), "b".into(), "c".into()],
            crate::prompts::AnswerFormat::Template,
        );
        let template = prompt.user.lines().nth(1).unwrap().to_owned();
        assert!(template.starts_with("{\"choice\""), "{template}");
        for raw in
            [template.clone(), template.replace("<1-3>", "\"<1-3>\""), format!("```json\n{template}\n```")]
        {
            assert_eq!(
                parse_selection(&raw, 3),
                ParsedSelection { choice: None, rationale: TEMPLATE_ECHO_RATIONALE.into() },
                "{raw}"
            );
        }
        assert_eq!(choice(&template.replace("<1-3>", "2")), Some(1));
    }

    #[test]
    fn issues_accept_a_single_string_and_drop_empties() {
        let r = parse_review(r#"{"score": 5, "critique": "c", "issues": "one thing"}"#);
        assert_eq!(r.issues, vec!["one thing"]);
        let r = parse_review(r#"{"score": 5, "critique": "c", "issues": ["", "  ", "x", 3]}"#);
        assert_eq!(r.issues, vec!["x", "3"]);
    }

    #[test]
    fn selection_from_json() {
        assert_eq!(
            parse_selection(r#"{"choice": 2, "rationale": "clearer"}"#, 3),
            ParsedSelection { choice: Some(1), rationale: "clearer".into() }
        );
        assert_eq!(choice(r#"{"choice": "2"}"#), Some(1));
        assert_eq!(choice(r#"{"choice": "Candidate 3"}"#), Some(2));
        assert_eq!(choice(r#"{"choice": 1.0}"#), Some(0));
        assert_eq!(choice("```json\n{\"Choice\": 1, \"reason\": \"x\"}\n```"), Some(0));
    }

    #[test]
    fn selection_out_of_range_is_none() {
        assert_eq!(choice(r#"{"choice": 0}"#), None);
        assert_eq!(choice(r#"{"choice": 4}"#), None);
        assert_eq!(choice(r#"{"choice": -1}"#), None);
        assert_eq!(choice(r#"{"choice": 1.5}"#), None);
        assert_eq!(choice("I choose 7"), None);
        assert_eq!(choice(r#"{"choice": 99999999999999999999999}"#), None);
    }

    #[test]
    fn selection_from_prose() {
        assert_eq!(choice("Candidate 2"), Some(1));
        assert_eq!(choice("I choose 2 because it is simpler."), Some(1));
        assert_eq!(choice("I would select candidate #3."), Some(2));
        assert_eq!(choice("Candidate 1 is weak. Candidate 3 is the best overall."), Some(2));
        assert_eq!(choice("Candidate 2 handles errors; candidate 2 also has tests."), Some(1));
        assert_eq!(choice("3"), Some(2));
        assert_eq!(choice(r#"{"choice": 2, "rationale": "broken"#), Some(1));
        assert_eq!(choice(r#""choice": 3, "rationale": "x" }}"#), Some(2));
    }

    #[test]
    fn ambiguous_or_garbage_selection_is_none_with_raw_rationale() {
        assert_eq!(choice("Candidate 1 has tests, candidate 2 is faster."), None);
        let s = parse_selection("  no idea  ", 3);
        assert_eq!(s, ParsedSelection { choice: None, rationale: "no idea".into() });
        assert_eq!(choice(""), None);
    }

    proptest! {
        #[test]
        fn review_parsing_never_panics_and_scores_stay_in_range(raw in any::<String>()) {
            let r = parse_review(&raw);
            if let Some(score) = r.score {
                prop_assert!((0.0..=10.0).contains(&score.value()));
            }
            prop_assert!(r.issues.len() <= MAX_ISSUES);
        }

        #[test]
        fn review_parsing_survives_json_like_noise(raw in r#"[{}\[\]",:0-9a-z .\\/%-]{0,200}"#) {
            let r = parse_review(&raw);
            if let Some(score) = r.score {
                prop_assert!((0.0..=10.0).contains(&score.value()));
            }
        }

        #[test]
        fn any_numeric_score_is_kept_only_within_range(value in -1000.0f64..1000.0) {
            let r = parse_review(&format!(r#"{{"score": {value}, "critique": "c"}}"#));
            match r.score {
                Some(score) => prop_assert!((0.0..=10.0).contains(&score.value()) && (0.0..=10.0).contains(&value)),
                None => prop_assert!(!(0.0..=10.0).contains(&value)),
            }
        }

        #[test]
        fn selection_parsing_never_panics_and_stays_in_range(raw in any::<String>(), k in 0usize..6) {
            let s = parse_selection(&raw, k);
            if let Some(index) = s.choice {
                prop_assert!(index < k);
            }
        }

        #[test]
        fn selection_parsing_survives_json_like_noise(raw in r#"[{}\[\]",:0-9a-z #]{0,200}"#, k in 1usize..5) {
            if let Some(index) = parse_selection(&raw, k).choice {
                prop_assert!(index < k);
            }
        }
    }
}
