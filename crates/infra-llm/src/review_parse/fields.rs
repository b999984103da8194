//! Reading one field of an answer — a score, a choice, a critique, issues — from a JSON value
//! or, failing that, from prose, by the rules in the module docs of `review_parse`.

use std::sync::LazyLock;

use orchestrator_domain::PeerScore;
use regex::Regex;
use serde_json::{Map, Value};

use super::*;

pub(super) fn has_any(object: &Map<String, Value>, keys: &[&str]) -> bool {
    get(object, keys).is_some()
}

/// The value of the first of `keys` present (case-insensitive, in the order of `keys`).
pub(super) fn get<'a>(object: &'a Map<String, Value>, keys: &[&str]) -> Option<&'a Value> {
    keys.iter().find_map(|key| {
        object.iter().find(|(k, v)| k.trim().eq_ignore_ascii_case(key) && !v.is_null()).map(|(_, v)| v)
    })
}

/// A value as text: strings as they are, structures flattened to their leaves.
pub(super) fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) if is_placeholder(s.trim()) => String::new(),
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        Value::Array(items) => join_texts(items.iter()),
        Value::Object(map) => join_texts(map.values()),
    }
}

/// Whether `text` is a placeholder of the prompt's template (`<problem>`, or a placeholder of
/// [`REVIEW_JSON_TEMPLATE`] without its brackets) echoed back.
pub(super) fn is_placeholder(text: &str) -> bool {
    let bracketed = text.len() >= 2
        && text.starts_with('<')
        && text.ends_with('>')
        && !text[1..text.len() - 1].contains(['<', '>']);
    bracketed || TEMPLATE_PLACEHOLDERS.iter().any(|p| text.eq_ignore_ascii_case(p))
}

pub(super) fn join_texts<'a>(values: impl Iterator<Item = &'a Value>) -> String {
    values.map(text_of).filter(|t| !t.is_empty()).collect::<Vec<_>>().join("; ")
}

pub(super) fn issues_of(value: &Value) -> Vec<String> {
    let items: Vec<String> = match value {
        Value::Array(items) => items.iter().map(text_of).collect(),
        other => vec![text_of(other)],
    };
    items.into_iter().filter(|i| !i.is_empty()).take(MAX_ISSUES).collect()
}

pub(super) static CRITIQUE_FIELD: LazyLock<Regex> = LazyLock::new(|| string_field_regex("critique"));
pub(super) static RATIONALE_FIELD: LazyLock<Regex> = LazyLock::new(|| string_field_regex("rationale"));

pub(super) fn string_field_regex(key: &str) -> Regex {
    Regex::new(&format!(r#"(?i)"{key}"\s*:\s*("(?:[^"\\]|\\.)*")"#)).expect("literal regex is valid")
}

/// A string field of broken JSON, e.g. `"critique": "…"` in an object that would not parse.
pub(super) fn string_field(text: &str, field: &Regex) -> Option<String> {
    let quoted = field.captures(text)?.get(1)?.as_str();
    let value: String = serde_json::from_str(quoted).ok()?;
    Some(value.trim().to_owned()).filter(|v| !v.is_empty() && !is_placeholder(v))
}

pub(super) fn score_of_value(value: &Value) -> Option<PeerScore> {
    match value {
        Value::Number(n) => normalize(n.as_f64()?, None, false),
        Value::String(s) => score_in_text(s),
        _ => None,
    }
}

/// A score written on its own (`"7"`, `"7.5/10"`, `"80%"`), or else anywhere in prose.
pub(super) fn score_in_text(text: &str) -> Option<PeerScore> {
    static ALONE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?i)^\s*(-?\d+(?:\.\d+)?)\s*(?:(?:/|out\s+of)\s*(\d+(?:\.\d+)?))?\s*(%)?\s*$")
            .expect("literal regex is valid")
    });
    match ALONE.captures(text) {
        Some(c) => number_score(c.get(1), c.get(2), c.get(3).is_some()),
        None => score_in_prose(text),
    }
}

/// `score: 7`, `rating of 8/10`, `Grade - 80%`, or a bare `7/10` / `7 out of 10`.
pub(super) fn score_in_prose(text: &str) -> Option<PeerScore> {
    static KEYWORD: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r"(?i)\b(?:score|rating|grade|rated?)\b[^0-9\n-]{0,15}?(-?\d+(?:\.\d+)?)(?:\s*(?:/|out\s+of)\s*(\d+(?:\.\d+)?))?(\s*%)?",
        )
        .expect("literal regex is valid")
    });
    static OUT_OF_TEN: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?i)(-?\d+(?:\.\d+)?)\s*(?:/|out\s+of)\s*(10)\b").expect("literal regex is valid")
    });
    if let Some(c) = KEYWORD.captures(text) {
        return number_score(c.get(1), c.get(2), c.get(3).is_some());
    }
    OUT_OF_TEN.captures(text).and_then(|c| number_score(c.get(1), c.get(2), false))
}

pub(super) fn number_score(
    value: Option<regex::Match<'_>>,
    denominator: Option<regex::Match<'_>>,
    percent: bool,
) -> Option<PeerScore> {
    let value: f64 = value?.as_str().parse().ok()?;
    let denominator = match denominator {
        Some(d) => Some(d.as_str().parse::<f64>().ok()?),
        None => None,
    };
    normalize(value, denominator, percent)
}

/// Applies the score rules of the module docs.
pub(super) fn normalize(value: f64, denominator: Option<f64>, percent: bool) -> Option<PeerScore> {
    if !value.is_finite() || value < 0.0 {
        return None;
    }
    let scaled = match denominator {
        Some(d) if !(d.is_finite() && d > 0.0) || value > d => return None,
        Some(d) => value / d * 10.0,
        None if percent => value / 10.0,
        None if value > 0.0 && value < 1.0 => value * 10.0,
        None => value,
    };
    let rounded = (scaled * 100.0).round() / 100.0;
    PeerScore::new(rounded).ok()
}

pub(super) fn choice_of_value(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => {
            n.as_u64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0).map(|f| f as u64))
        }
        Value::String(s) if is_placeholder(s.trim()) => None,
        Value::String(s) => {
            static FIRST_NUMBER: LazyLock<Regex> =
                LazyLock::new(|| Regex::new(r"\d+").expect("literal regex is valid"));
            FIRST_NUMBER.find(s)?.as_str().parse().ok()
        }
        _ => None,
    }
}

/// `I choose 2`, `selected: candidate #3`, `Candidate 2 is the best`, `Candidate 2` named alone,
/// or an answer that is just a number.
pub(super) fn choice_in_prose(text: &str) -> Option<u64> {
    static DECISIVE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r"(?i)\b(?:choose|chose|choosing|choice|select|selected|selecting|pick|picked|prefer|recommend|winner|best)\b[^0-9\n]{0,30}?(\d+)",
        )
        .expect("literal regex is valid")
    });
    static NAMED_BEST: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?i)\bcandidate\s*#?\s*(\d+)\s+(?:is|would\s+be|seems)\s+(?:the\s+)?(?:best|strongest|winner|most)")
            .expect("literal regex is valid")
    });
    static MENTION: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"(?i)\bcandidate\s*#?\s*(\d+)").expect("literal regex is valid"));
    static ALONE: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^\s*#?(\d+)\s*[.)]?\s*$").expect("literal regex is valid"));

    let number = |c: regex::Captures<'_>| c.get(1)?.as_str().parse::<u64>().ok();
    if let Some(n) = NAMED_BEST.captures(text).and_then(number) {
        return Some(n);
    }
    if let Some(n) = DECISIVE.captures(text).and_then(number) {
        return Some(n);
    }
    let mut mentioned = MENTION.captures_iter(text).filter_map(number);
    if let Some(first) = mentioned.next() {
        return mentioned.all(|n| n == first).then_some(first);
    }
    ALONE.captures(text).and_then(number)
}
