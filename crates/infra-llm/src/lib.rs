//! Agent backends over OpenAI-compatible chat-completions APIs (vLLM, Ollama, llama.cpp
//! server, OpenAI): the adapter that turns the application's
//! [`AgentBackend`](orchestrator_application::ports::AgentBackend) port into HTTP calls to real
//! language models.
//!
//! * [`profile`] — [`LlmProfile`]: where a model is served and how to call it (config file form).
//! * [`backend`] — [`OpenAiBackend`]: the port implementation; per-profile concurrency limits.
//! * [`probe`] — [`ProfileProbe`]: is each profile's server up, taking our key, serving the model.
//! * [`client`] — one HTTP exchange: the wire format and lenient response parsing.
//! * [`redact`] — the one place where what a server sent is made safe to repeat (keys, URLs).
//! * [`retry`] — timeouts, bounded retries, exponential back-off with full jitter, `Retry-After`.
//! * [`structured_output`] — asking servers for schema-constrained answers; `auto` probing.
//! * [`answer_schema`] — the JSON Schemas of review and selection answers.
//! * [`prompts`] — every prompt, per role and phase.
//! * [`delimiters`] — the `<<<` … `>>>` framing of prompts, stripped when a model echoes it.
//! * [`review_parse`] — reading reviews and selections out of loosely formatted model output.
//! * [`sampling`] — temperature and seed per council seat, so agents on one model differ.
//! * [`observability`] — the metric names of model calls (calls, latency, tokens, retries, errors).
//! * [`error`] — [`LlmError`], why a backend could not be built.
#![forbid(unsafe_code)]

pub mod answer_schema;
pub mod backend;
mod chat_wire;
pub mod client;
pub mod delimiters;
pub mod error;
pub mod observability;
pub mod probe;
pub mod profile;
pub mod prompts;
pub mod redact;
pub mod retry;
pub mod review_parse;
pub mod sampling;
pub mod structured_output;

pub use backend::OpenAiBackend;
pub use error::{LlmError, Result};
pub use probe::{PROBE_TIMEOUT, ProfileProbe};
pub use profile::LlmProfile;
pub use structured_output::{FormatMode, StructuredOutput};
