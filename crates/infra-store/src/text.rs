//! The one change the store makes to text it writes: U+0000 becomes U+FFFD.
//!
//! PostgreSQL refuses U+0000 (NUL) in `TEXT` — a model that emits one would make the write
//! fail — while SQLite stores it. So that both databases accept every deliberation and read
//! back the same text, every string the store writes, including the strings inside the JSON
//! documents it keeps, has U+0000 replaced by U+FFFD (the replacement character). Nothing
//! else is escaped or altered. Task ids are bound as they are: their rule (`TaskId`) admits no
//! U+0000, so there is nothing to map.

use serde::Serialize;

use orchestrator_application::ports::StoreError;

use crate::error::{Fault, corrupt};

const NUL: char = '\0';
const REPLACEMENT: &str = "\u{FFFD}";

/// `text` as stored: U+0000 replaced by U+FFFD.
pub(crate) fn storable(text: &str) -> String {
    text.replace(NUL, REPLACEMENT)
}

/// `value` as the JSON text stored for it, with U+0000 replaced in every string and key.
///
/// # Errors
/// [`StoreError::Corrupt`] if serde refuses (it does not for the domain types).
pub(crate) fn to_json<T: Serialize>(
    task_id: &str,
    what: &'static str,
    value: &T,
) -> Result<String, StoreError> {
    let fail = |source| corrupt(task_id, Fault::Serialize { what, source });
    let json = serde_json::to_string(value).map_err(fail)?;
    // serde_json writes U+0000 as the escape `\u0000`; only then is the slower pass needed.
    if !json.contains("\\u0000") {
        return Ok(json);
    }
    let value = serde_json::to_value(value).map_err(fail)?;
    serde_json::to_string(&without_nul(value)).map_err(fail)
}

fn without_nul(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(text) => Value::String(storable(&text)),
        Value::Array(items) => Value::Array(items.into_iter().map(without_nul).collect()),
        Value::Object(fields) => Value::Object(
            fields.into_iter().map(|(key, value)| (storable(&key), without_nul(value))).collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn nul_becomes_the_replacement_character_and_nothing_else_changes() {
        assert_eq!(storable("a\0b\0"), "a\u{FFFD}b\u{FFFD}");
        assert_eq!(storable("tab\t, quote \" and \\u0000 stay"), "tab\t, quote \" and \\u0000 stay");
    }

    #[test]
    fn json_documents_lose_nul_in_strings_and_keys_but_keep_escaped_backslashes() {
        let doc =
            BTreeMap::from([("k\0".to_owned(), vec!["x\0y".to_owned(), "\\u0000 literally".to_owned()])]);
        let json = to_json("t", "test document", &doc).unwrap();
        let back: BTreeMap<String, Vec<String>> = serde_json::from_str(&json).unwrap();
        let expected = BTreeMap::from([(
            "k\u{FFFD}".to_owned(),
            vec!["x\u{FFFD}y".to_owned(), "\\u0000 literally".to_owned()],
        )]);
        assert_eq!(back, expected);
        let plain = BTreeMap::from([("k".to_owned(), vec!["\\u0000 literally".to_owned()])]);
        assert_eq!(to_json("t", "test document", &plain).unwrap(), serde_json::to_string(&plain).unwrap());
    }
}
