//! Finding JSON objects in a model's free text: every `{` brace-matched (string-aware), an
//! object cut off by the token limit closed, trailing commas dropped.

use std::ops::Range;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value};

use super::*;

/// Every JSON object in `text`, outermost first, parsed strictly or after repair.
pub(super) fn json_objects(text: &str) -> impl Iterator<Item = Map<String, Value>> + '_ {
    json_objects_at(text).map(|(_, object)| object)
}

/// [`json_objects`] with the byte range each object spans in `text`.
pub(super) fn json_objects_at(text: &str) -> impl Iterator<Item = (Range<usize>, Map<String, Value>)> + '_ {
    text.match_indices('{').take(MAX_OBJECT_STARTS).filter_map(move |(start, _)| {
        let candidate = object_at(text, start);
        let object = parse_object(&candidate).or_else(|| parse_object(&repair(&candidate)))?;
        // A repaired object may have had closers added past the end of the text.
        Some((start..(start + candidate.len()).min(text.len()), object))
    })
}

/// `text` without the given byte ranges (which may nest or overlap).
pub(super) fn without_ranges(text: &str, ranges: &[Range<usize>]) -> String {
    let mut kept = String::with_capacity(text.len());
    let mut at = 0;
    let mut sorted = ranges.to_vec();
    sorted.sort_by_key(|r| r.start);
    for range in sorted {
        if range.start > at {
            kept.push_str(&text[at..range.start]);
        }
        at = at.max(range.end);
    }
    kept.push_str(&text[at.min(text.len())..]);
    kept
}

pub(super) fn parse_object(text: &str) -> Option<Map<String, Value>> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}

/// The object starting at `start` (a `{`): up to its matching brace, or — when the text ends
/// first, as when the token limit cut the answer — to the end with the missing closers added.
pub(super) fn object_at(text: &str, start: usize) -> String {
    let mut closers = Vec::new();
    let mut in_string = false;
    let mut escaped = false;
    for (offset, byte) in text.as_bytes()[start..].iter().enumerate() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' => closers.push('}'),
            b'[' => closers.push(']'),
            b'}' | b']' => {
                closers.pop();
                if closers.is_empty() {
                    return text[start..=start + offset].to_owned();
                }
            }
            _ => {}
        }
    }
    let mut object = text[start..].trim_end().to_owned();
    if in_string {
        if escaped {
            object.pop();
        }
        object.push('"');
    }
    object.extend(closers.iter().rev());
    object
}

/// Drops the trailing commas small models leave before `}` and `]`.
pub(super) fn repair(object: &str) -> String {
    static TRAILING_COMMA: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r",\s*([}\]])").expect("literal regex is valid"));
    TRAILING_COMMA.replace_all(object, "$1").into_owned()
}
