//! The chat-completions wire format: the request we send (messages, sampling, the response
//! format asked for) and how a reply is read — leniently, since real servers differ (see
//! `client.rs` for what an unusable one becomes).

use orchestrator_application::ports::AgentError;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use tracing::debug;

use crate::answer_schema::AnswerSchema;
use crate::profile::ResolvedProfile;
use crate::structured_output::FormatMode;

/// One message of the conversation sent to the model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Message {
    pub(crate) role: &'static str,
    pub(crate) content: String,
}

/// `response_format` of the request: how the server is asked to constrain the answer (see
/// [`crate::structured_output`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum ResponseFormat<'a> {
    /// OpenAI's structured outputs: `{"type": "json_schema", "json_schema": {"name", "strict",
    /// "schema"}}`.
    JsonSchema { json_schema: NamedSchema<'a> },
    /// JSON mode with the schema beside it, `{"type": "json_object", "schema": …}`, which
    /// llama-cpp-python and llama.cpp's server turn into a grammar.
    JsonObject { schema: &'a AnswerSchema },
}

/// The `json_schema` member of [`ResponseFormat::JsonSchema`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct NamedSchema<'a> {
    name: &'static str,
    strict: bool,
    schema: &'a AnswerSchema,
}

impl<'a> ResponseFormat<'a> {
    /// What `mode` sends for `schema`; `None` for [`FormatMode::Off`].
    pub(crate) fn new(mode: FormatMode, schema: &'a AnswerSchema) -> Option<Self> {
        match mode {
            FormatMode::JsonSchema => Some(Self::JsonSchema {
                json_schema: NamedSchema { name: schema.name, strict: true, schema },
            }),
            FormatMode::JsonObject => Some(Self::JsonObject { schema }),
            FormatMode::Off => None,
        }
    }
}

/// The request body of `POST /chat/completions`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct ChatRequest<'a> {
    pub(crate) model: &'a str,
    pub(crate) messages: Vec<Message>,
    pub(crate) temperature: f64,
    pub(crate) max_tokens: u32,
    pub(crate) seed: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) response_format: Option<ResponseFormat<'a>>,
    pub(crate) stream: bool,
}

/// What a successful exchange yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChatReply {
    pub(crate) text: String,
    pub(crate) prompt_tokens: u64,
    pub(crate) completion_tokens: u64,
    /// `None` when the server did not say (or said something that is not a string).
    pub(crate) finish_reason: Option<String>,
}

impl ChatReply {
    /// Whether the model stopped at the token limit, its text cut off.
    pub(crate) fn truncated(&self) -> bool {
        self.finish_reason.as_deref() == Some("length")
    }

    /// The finish reason as our logs may show it: a server's own value is data, so anything
    /// but the reasons OpenAI-compatible servers document is shown as `other`.
    pub(crate) fn finish_reason_for_logs(&self) -> &'static str {
        match self.finish_reason.as_deref() {
            None => "unknown",
            Some("stop") => "stop",
            Some("length") => "length",
            Some("content_filter") => "content_filter",
            Some("tool_calls") => "tool_calls",
            Some("function_call") => "function_call",
            Some("eos" | "eos_token") => "eos",
            Some(_) => "other",
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ChatResponse {
    #[serde(deserialize_with = "null_as_default")]
    choices: Vec<Choice>,
    usage: Option<Usage>,
    error: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Choice {
    message: Option<ResponseMessage>,
    /// Some servers put the text here (legacy completions shape).
    text: Option<String>,
    finish_reason: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ResponseMessage {
    content: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Usage {
    #[serde(deserialize_with = "lenient_count")]
    prompt_tokens: u64,
    #[serde(deserialize_with = "lenient_count")]
    completion_tokens: u64,
}

fn null_as_default<'de, D, T>(deserializer: D) -> std::result::Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// A token count as servers send it: integer, float, string or null; anything unusable is 0.
fn lenient_count<'de, D: Deserializer<'de>>(deserializer: D) -> std::result::Result<u64, D::Error> {
    let value = Value::deserialize(deserializer)?;
    Ok(match value {
        Value::Number(n) => {
            n.as_u64().or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)).unwrap_or(0)
        }
        Value::String(s) => s.trim().parse().unwrap_or(0),
        _ => 0,
    })
}

/// What an unusable 2xx reply is called in errors; the reason in parentheses follows.
pub(crate) const NOT_A_CHAT_COMPLETION: &str = "the reply is not a chat completion";

/// Parses a 2xx body into a reply. The text is returned as the model wrote it; the caller
/// cleans it (delimiters, the key).
///
/// # Errors
/// `InvalidResponse` when the body is not JSON, has no choice, or the first choice has no text.
/// The message is [`NOT_A_CHAT_COMPLETION`] with a structural reason and quotes none of the
/// body (serde_json's own messages quote values: `invalid type: string "…"`); the body and
/// serde_json's message go, redacted, to the `debug` log.
pub(crate) fn parse_reply(
    body: &[u8],
    profile: &ResolvedProfile,
) -> std::result::Result<ChatReply, AgentError> {
    let unusable = |reason: String, detail: Option<String>| {
        debug!(
            profile = %profile.name,
            reason = %reason,
            detail = detail.as_deref().map(|d| profile.redactor.excerpt_text(d)),
            body = %profile.redactor.excerpt(body),
            "unusable chat completion"
        );
        AgentError::InvalidResponse(format!("{NOT_A_CHAT_COMPLETION} ({reason})"))
    };
    let response: ChatResponse =
        serde_json::from_slice(body).map_err(|e| unusable(json_fault(&e), Some(e.to_string())))?;
    let Some(choice) = response.choices.into_iter().next() else {
        let reason = if response.error.is_some() {
            "no choices; the server sent an error object"
        } else {
            "no choices"
        };
        return Err(unusable(reason.to_owned(), None));
    };
    let text = choice.message.and_then(|m| m.content).map(content_text).or(choice.text).unwrap_or_default();
    let text = text.trim();
    if text.is_empty() {
        return Err(AgentError::InvalidResponse("the model returned empty content".into()));
    }
    let usage = response.usage.unwrap_or_default();
    Ok(ChatReply {
        text: text.to_owned(),
        prompt_tokens: usage.prompt_tokens,
        completion_tokens: usage.completion_tokens,
        finish_reason: choice.finish_reason.and_then(|r| r.as_str().map(str::to_owned)),
    })
}

/// Why serde_json refused a body, in words of our own: its category and where, never the
/// offending value.
fn json_fault(error: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let (line, column) = (error.line(), error.column());
    match error.classify() {
        Category::Syntax => format!("not valid JSON at line {line} column {column}"),
        Category::Eof => "the JSON ends early".to_owned(),
        Category::Data => format!("a value has the wrong type at line {line} column {column}"),
        Category::Io => "the body could not be read".to_owned(),
    }
}

/// `content` is a string, or (newer APIs) a list of parts whose `text` fields are joined.
fn content_text(content: Value) -> String {
    match content {
        Value::String(text) => text,
        Value::Array(parts) => parts
            .iter()
            .filter_map(|part| part.get("text").and_then(Value::as_str).or_else(|| part.as_str()))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}
