//! Structured output: asking the model server to constrain review and selection answers to a
//! JSON Schema, so that even a 135M-parameter model writes a grade we can read.
//!
//! A profile says how ([`StructuredOutput`], key `structured_output`):
//!
//! * `json_schema` — OpenAI's structured outputs,
//!   `{"type": "json_schema", "json_schema": {"name", "strict": true, "schema"}}`; served by
//!   OpenAI, vLLM (guided decoding), llama.cpp's server and Ollama's OpenAI API.
//! * `json_object` — JSON mode with the schema beside it, `{"type": "json_object", "schema"}`:
//!   llama-cpp-python's server (0.3.x refuses `json_schema`) and llama.cpp's server turn the
//!   schema into a grammar; servers that only know plain JSON mode ignore it.
//! * `off` — no `response_format`: the prompt alone asks for JSON and
//!   [`review_parse`](crate::review_parse) reads what comes.
//! * `auto` (the default) — each [`FormatMode`] in that order, within the same call, moving on
//!   when the server refuses the request because of its `response_format` (see
//!   [`refuses_format`]) or answers with nothing usable, until one works; the first mode that
//!   worked is remembered per profile ([`Negotiated`]) and tried first by every later call. So
//!   `auto` never fails a call that would have worked without a `response_format`: at worst it
//!   sends one or two more requests once, which a refusing server answers at once.
//!
//! Explicit modes do not probe: a server refusing them fails the call, as any 4xx does. In every
//! mode a refusal of the format is not retried (the same request would get the same answer);
//! each mode tried has the profile's retries and timeouts of its own.

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};

use reqwest::StatusCode;
use serde::{Deserialize, Deserializer};

/// How a profile asks for structured answers on review and selection calls (config key
/// `structured_output`; see the module docs). Proposals and revisions are always free text.
///
/// Read from a string (TOML, or an environment variable through the server's config loader);
/// an unknown value is refused with the list of known ones (and without itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StructuredOutput {
    /// Probe `json_schema`, then `json_object`, then none; remember what worked.
    #[default]
    Auto,
    /// Always OpenAI structured outputs (`response_format.type = "json_schema"`).
    JsonSchema,
    /// Always JSON mode with the schema beside it (`response_format.type = "json_object"`).
    JsonObject,
    /// Never send a `response_format`.
    Off,
}

impl StructuredOutput {
    /// The config spelling, for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::JsonSchema => "json_schema",
            Self::JsonObject => "json_object",
            Self::Off => "off",
        }
    }

    /// The modes a call tries, in order, given what the profile settled on so far.
    ///
    /// `Auto` starts at the remembered mode (or `json_schema` before anything is remembered)
    /// and goes down the list from there; an explicit mode is the only one tried.
    pub(crate) fn plan(self, settled: Option<FormatMode>) -> &'static [FormatMode] {
        const ALL: &[FormatMode] = &[FormatMode::JsonSchema, FormatMode::JsonObject, FormatMode::Off];
        match self {
            Self::Auto => {
                let start = settled.map_or(0, |mode| mode as usize);
                &ALL[start..]
            }
            Self::JsonSchema => &ALL[0..1],
            Self::JsonObject => &ALL[1..2],
            Self::Off => &ALL[2..3],
        }
    }
}

impl<'de> Deserialize<'de> for StructuredOutput {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = String::deserialize(deserializer)?;
        [Self::Auto, Self::JsonSchema, Self::JsonObject, Self::Off]
            .into_iter()
            .find(|mode| mode.as_str() == value.trim())
            // The value is not repeated: the server's config errors never echo a file's text.
            .ok_or_else(|| serde::de::Error::custom("expected auto, json_schema, json_object or off"))
    }
}

impl fmt::Display for StructuredOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `response_format` one request carries; the discriminants order them from most to least
/// constraining, which is the order `auto` tries them in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FormatMode {
    /// `{"type": "json_schema", …}`.
    JsonSchema = 0,
    /// `{"type": "json_object", "schema": …}`.
    JsonObject = 1,
    /// No `response_format`.
    Off = 2,
}

impl FormatMode {
    /// The metric label and log value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::JsonSchema => "json_schema",
            Self::JsonObject => "json_object",
            Self::Off => "off",
        }
    }

    fn from_stored(value: u8) -> Option<Self> {
        match value {
            1 => Some(Self::JsonSchema),
            2 => Some(Self::JsonObject),
            3 => Some(Self::Off),
            _ => None,
        }
    }

    /// Stored as discriminant + 1, so 0 means "nothing settled yet".
    fn stored(self) -> u8 {
        self as u8 + 1
    }
}

/// Why `auto` gave up a mode within a call and tried the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fallback {
    /// The server refused the request, likely for its `response_format` ([`refuses_format`]).
    Refused,
    /// The server accepted it but its answer was unusable (empty, not a chat completion).
    Unusable,
}

impl Fallback {
    /// The metric label and log value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Refused => "refused",
            Self::Unusable => "unusable",
        }
    }
}

/// What `auto` settled on for one profile, shared by all its calls: nothing yet, or the mode
/// that last worked after every more constraining one failed. It only ever moves down the list
/// (`json_schema` → `json_object` → off): a server that refused a mode once is not asked for it
/// again until the process restarts.
#[derive(Debug, Default)]
pub(crate) struct Negotiated(AtomicU8);

impl Negotiated {
    /// The mode settled on, if any call has succeeded yet.
    pub(crate) fn get(&self) -> Option<FormatMode> {
        FormatMode::from_stored(self.0.load(Ordering::Acquire))
    }

    /// Records that `mode` worked; returns whether that changed what is remembered (so the
    /// change is logged once, whichever concurrent call made it). A more constraining mode
    /// than the one remembered does not replace it.
    pub(crate) fn settle(&self, mode: FormatMode) -> bool {
        let previous = self.0.fetch_max(mode.stored(), Ordering::AcqRel);
        previous < mode.stored()
    }
}

/// How much of an error body [`refuses_format`] looks at.
const SCANNED_BODY_BYTES: usize = 4096;

/// Whether a failed answer says the request was refused, possibly for its `response_format`:
/// HTTP 400 or 422 (what OpenAI, vLLM and llama.cpp answer to a format they do not support),
/// or another failure status (llama-cpp-python answers 500 to a `response_format` type it does
/// not know) whose body names `response_format` or `json_schema`.
///
/// This only decides whether `auto` tries the next mode; the body is never shown to anyone,
/// and a wrong guess costs one more request, never a call that would have worked.
pub(crate) fn refuses_format(status: StatusCode, body: &[u8]) -> bool {
    match status.as_u16() {
        400 | 422 => true,
        401 | 403 | 404 | 408 | 429 => false,
        400..=599 => {
            let head = &body[..body.len().min(SCANNED_BODY_BYTES)];
            let text = String::from_utf8_lossy(head).to_ascii_lowercase();
            text.contains("response_format") || text.contains("json_schema")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_starts_at_json_schema_then_at_what_it_settled_on() {
        use FormatMode::{JsonObject, JsonSchema, Off};
        let auto = StructuredOutput::Auto;
        assert_eq!(auto.plan(None), [JsonSchema, JsonObject, Off]);
        assert_eq!(auto.plan(Some(JsonSchema)), [JsonSchema, JsonObject, Off]);
        assert_eq!(auto.plan(Some(JsonObject)), [JsonObject, Off]);
        assert_eq!(auto.plan(Some(Off)), [Off]);
    }

    #[test]
    fn explicit_modes_try_only_themselves_whatever_was_settled() {
        for settled in [None, Some(FormatMode::Off)] {
            assert_eq!(StructuredOutput::JsonSchema.plan(settled), [FormatMode::JsonSchema]);
            assert_eq!(StructuredOutput::JsonObject.plan(settled), [FormatMode::JsonObject]);
            assert_eq!(StructuredOutput::Off.plan(settled), [FormatMode::Off]);
        }
    }

    #[test]
    fn negotiation_only_moves_down_and_reports_changes_once() {
        let negotiated = Negotiated::default();
        assert_eq!(negotiated.get(), None);
        assert!(negotiated.settle(FormatMode::JsonObject));
        assert!(!negotiated.settle(FormatMode::JsonObject), "no change, no second log");
        assert!(!negotiated.settle(FormatMode::JsonSchema), "never back up the list");
        assert_eq!(negotiated.get(), Some(FormatMode::JsonObject));
        assert!(negotiated.settle(FormatMode::Off));
        assert_eq!(negotiated.get(), Some(FormatMode::Off));
    }

    #[test]
    fn refusals_are_400_422_or_a_failure_naming_the_parameter() {
        let refuses =
            |code: u16, body: &str| refuses_format(StatusCode::from_u16(code).unwrap(), body.as_bytes());
        assert!(refuses(400, "context length exceeded"));
        assert!(refuses(422, ""));
        // llama-cpp-python 0.3 on {"type": "json_schema"}.
        assert!(refuses(
            500,
            r#"{"error":{"message":"1 validation error:\n  {'type': 'literal_error', 'loc': ('body', 'response_format', 'type')"}}"#
        ));
        assert!(refuses(501, "JSON_SCHEMA is not supported"));
        assert!(!refuses(500, "CUDA out of memory"));
        assert!(!refuses(503, "loading model"));
        for code in [401, 403, 404, 408, 429] {
            assert!(!refuses(code, "response_format"), "{code}");
        }
        assert!(!refuses(200, "response_format"));
    }

    #[test]
    fn config_values_are_snake_case() {
        #[derive(Deserialize)]
        struct Holder {
            mode: StructuredOutput,
        }
        for (text, mode) in [
            ("auto", StructuredOutput::Auto),
            ("json_schema", StructuredOutput::JsonSchema),
            ("json_object", StructuredOutput::JsonObject),
            ("off", StructuredOutput::Off),
        ] {
            let holder: Holder = toml::from_str(&format!("mode = \"{text}\"")).unwrap();
            assert_eq!(holder.mode, mode);
            assert_eq!(mode.to_string(), text);
        }
        let error = toml::from_str::<Holder>("mode = \"json\"").err().unwrap().to_string();
        assert!(error.contains("json_schema"), "the error lists the values: {error}");
    }
}
