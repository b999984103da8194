//! The JSON Schemas of the answers we parse — a review, a selection — sent as the request's
//! `response_format` when the profile asks for structured output (see
//! [`structured_output`](crate::structured_output)).
//!
//! They are kept small, for the smallest model we run (SmolLM2-135M) as much as for the
//! servers: every property required, no other properties (what OpenAI's `strict` mode demands),
//! the grade first so that an answer cut at `max_tokens` still holds it. Only keywords that
//! OpenAI's strict mode, vLLM and llama.cpp's grammar converters all honour are used: `enum`
//! for the bounded integers (llama-cpp-python 0.3 ignores `minimum`/`maximum`, so a grammar
//! from them would allow `85`) and `maxItems` for lists; no `maxLength`, which OpenAI's strict
//! mode does not list, so texts are bounded by the profile's `max_tokens` instead.
//!
//! The property names are those the prompts ask for ([`prompts`](crate::prompts)) and that
//! [`review_parse`](crate::review_parse) reads first.

use serde::Serialize;

/// Most issues a review may list under a schema; a tiny model asked for a list otherwise
/// repeats items until the token limit.
pub const MAX_SCHEMA_ISSUES: usize = 5;

/// A named JSON Schema of an answer.
///
/// Built from typed parts rather than a `serde_json::Value`, whose maps sort their keys: the
/// order of `properties` is the order grammar-based servers make the model write them in, and
/// the grade must come first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct AnswerSchema {
    /// The `json_schema.name` OpenAI requires (`[a-zA-Z0-9_-]{1,64}`).
    #[serde(skip)]
    pub(crate) name: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    properties: Properties,
    required: &'static [&'static str],
    #[serde(rename = "additionalProperties")]
    additional_properties: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
enum Properties {
    Review { score: Property, critique: Property, issues: Property },
    Selection { choice: Property, rationale: Property },
}

/// One property's schema: the few keywords used here (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct Property {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(rename = "enum", skip_serializing_if = "Option::is_none")]
    one_of: Option<Vec<usize>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    items: Option<Box<Property>>,
    #[serde(rename = "maxItems", skip_serializing_if = "Option::is_none")]
    max_items: Option<usize>,
}

impl Property {
    fn text() -> Self {
        Self { kind: "string", one_of: None, items: None, max_items: None }
    }

    fn integer_in(values: impl IntoIterator<Item = usize>) -> Self {
        Self { kind: "integer", one_of: Some(values.into_iter().collect()), ..Self::text() }
    }

    fn texts(max_items: usize) -> Self {
        Self { kind: "array", items: Some(Box::new(Self::text())), max_items: Some(max_items), one_of: None }
    }
}

/// `{"score": 0..=10, "critique": "…", "issues": ["…", at most five]}`.
pub(crate) fn review() -> AnswerSchema {
    AnswerSchema {
        name: "review",
        kind: "object",
        properties: Properties::Review {
            score: Property::integer_in(0..=10),
            critique: Property::text(),
            issues: Property::texts(MAX_SCHEMA_ISSUES),
        },
        required: &["score", "critique", "issues"],
        additional_properties: false,
    }
}

/// `{"choice": 1..=candidates, "rationale": "…"}`, the choice 1-based as the prompt numbers
/// the candidates.
pub(crate) fn selection(candidates: usize) -> AnswerSchema {
    AnswerSchema {
        name: "selection",
        kind: "object",
        properties: Properties::Selection {
            choice: Property::integer_in(1..=candidates.max(1)),
            rationale: Property::text(),
        },
        required: &["choice", "rationale"],
        additional_properties: false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, Value, json};

    use super::*;
    use crate::prompts::REVIEW_JSON_TEMPLATE;

    fn json_of(schema: &AnswerSchema) -> Value {
        serde_json::to_value(schema).unwrap()
    }

    fn property_names(schema: &AnswerSchema) -> Vec<String> {
        json_of(schema)["properties"].as_object().unwrap().keys().cloned().collect()
    }

    #[test]
    fn the_review_schema_asks_for_the_templates_fields_and_requires_them_all() {
        let unplaced = REVIEW_JSON_TEMPLATE.replace("<0-10>", "0");
        let template: Map<String, Value> = serde_json::from_str(&unplaced).unwrap();
        let schema = review();
        let mut names = property_names(&schema);
        let mut expected: Vec<String> = template.keys().cloned().collect();
        names.sort();
        expected.sort();
        assert_eq!(names, expected);
        assert_eq!(json_of(&schema)["required"], json!(["score", "critique", "issues"]));
        assert_eq!(json_of(&schema)["additionalProperties"], json!(false));
    }

    #[test]
    fn the_grade_is_the_first_property_written() {
        let text = serde_json::to_string(&review()).unwrap();
        assert!(
            text.starts_with(r#"{"type":"object","properties":{"score":{"type":"integer","enum":[0,1,2,3,4,5,6,7,8,9,10]},"critique":{"type":"string"},"issues":{"type":"array","items":{"type":"string"},"maxItems":5}},"#),
            "{text}"
        );
        let text = serde_json::to_string(&selection(2)).unwrap();
        assert_eq!(
            text,
            r#"{"type":"object","properties":{"choice":{"type":"integer","enum":[1,2]},"rationale":{"type":"string"}},"required":["choice","rationale"],"additionalProperties":false}"#
        );
    }

    #[test]
    fn scores_and_choices_are_enumerated_so_every_grammar_bounds_them() {
        let choices = |k| json_of(&selection(k))["properties"]["choice"]["enum"].clone();
        assert_eq!(
            json_of(&review())["properties"]["score"]["enum"],
            json!([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
        );
        assert_eq!(choices(3), json!([1, 2, 3]));
        assert_eq!(choices(0), json!([1]), "never an empty enum");
    }

    #[test]
    fn names_are_valid_openai_schema_names() {
        for schema in [review(), selection(2)] {
            assert!(!schema.name.is_empty() && schema.name.len() <= 64);
            assert!(schema.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
        }
    }
}
