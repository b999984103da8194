//! One call of an agent: its profile's permit, the structured-output modes tried in order,
//! the retry policy, and the cleaning of the answer before anyone sees it.

use std::sync::Arc;

use orchestrator_application::ports::AgentError;
use orchestrator_domain::{Agent, ProfileName, TokenUsage};
use tokio::time::Instant;
use tracing::{Instrument, debug, info, info_span, trace, warn};

use crate::answer_schema::AnswerSchema;
use crate::chat_wire::{ChatReply, ChatRequest, Message, ResponseFormat};
use crate::delimiters;
use crate::error::Result;
use crate::observability;
use crate::profile::ResolvedProfile;
use crate::prompts::{self, AnswerFormat, Prompt, PromptKind};
use crate::sampling::sampling;
use crate::structured_output::{Fallback, FormatMode, StructuredOutput};

use super::{OpenAiBackend, ProfileRuntime};

impl OpenAiBackend {
    /// The runtime of the profile `agent` runs on.
    pub(super) fn runtime(&self, agent: &Agent) -> Result<&Arc<ProfileRuntime>, AgentError> {
        self.profiles.get(&agent.profile).ok_or_else(|| AgentError::UnknownProfile(agent.profile.to_string()))
    }

    /// Sends one request for `agent` and returns the model's answer and token usage, with the
    /// structured-output mode it was asked in.
    ///
    /// For an [`Ask`] with a schema, the modes of the profile's
    /// [`StructuredOutput::plan`] are tried in order within this one call (and its one
    /// concurrency permit): under `auto`, a mode the server refuses, or whose answer is
    /// unusable, gives way to the next; the mode that worked is remembered for the profile and
    /// logged at `info` when that changes what is remembered.
    ///
    /// The answer's text is cleaned before anyone sees it: echoed delimiters stripped, the
    /// profile's key redacted. Errors name the profile (see [`with_profile`]).
    pub(super) async fn complete(&self, agent: &Agent, ask: Ask) -> Result<Answer, AgentError> {
        let runtime = self.runtime(agent)?;
        let profile = &runtime.profile;
        let span = info_span!(
            "llm_call",
            profile = %profile.name,
            model = %profile.model,
            agent = %agent.id,
            seat = agent.seat,
            phase = ask.phase.as_str(),
        );
        async move {
            let _permit = runtime
                .permits
                .acquire()
                .await
                .map_err(|_| AgentError::Unavailable("the backend is shutting down".into()))?;
            // Read after the wait for a permit, so that a call queued behind the first one
            // goes straight to what that one settled on.
            let plan = match &ask.structured {
                Some(_) => profile.structured_output.plan(runtime.negotiated.get()),
                None => &[FormatMode::Off],
            };
            let started = Instant::now();
            let result = self.in_modes(runtime, agent, &ask, plan).await;
            let elapsed = started.elapsed();
            let latency_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
            let tokens =
                result.as_ref().map(|answer| (answer.reply.prompt_tokens, answer.reply.completion_tokens));
            observability::call_finished(profile, ask.phase, elapsed, tokens);
            match &result {
                Ok(Answer { reply, mode }) => {
                    if reply.truncated() {
                        info!(max_tokens = profile.max_tokens, "completion cut at max_tokens");
                    }
                    info!(
                        latency_ms,
                        prompt_tokens = reply.prompt_tokens,
                        completion_tokens = reply.completion_tokens,
                        finish_reason = reply.finish_reason_for_logs(),
                        structured_output = mode.as_str(),
                        "llm call succeeded"
                    );
                }
                Err(error) => warn!(latency_ms, %error, "llm call failed"),
            }
            result
        }
        .instrument(span)
        .await
    }

    /// Tries the modes of `plan` in order (see [`OpenAiBackend::complete`]); the last mode's
    /// failure, or a failure that is no reason to try another mode, is the call's.
    async fn in_modes(
        &self,
        runtime: &ProfileRuntime,
        agent: &Agent,
        ask: &Ask,
        plan: &[FormatMode],
    ) -> Result<Answer, AgentError> {
        let profile = &runtime.profile;
        let mut modes = plan.iter().copied().peekable();
        while let Some(mode) = modes.next() {
            match self.exchange(runtime, agent, ask, mode).await {
                Ok(reply) => {
                    if ask.structured.is_some()
                        && profile.structured_output == StructuredOutput::Auto
                        && runtime.negotiated.settle(mode)
                    {
                        info!(
                            structured_output = mode.as_str(),
                            "structured output mode settled for the profile"
                        );
                    }
                    return Ok(Answer { reply, mode });
                }
                Err(failure) => match (failure.fallback, modes.peek()) {
                    (Some(reason), Some(next)) => {
                        observability::structured_output_fell_back(profile, mode, reason);
                        debug!(
                            from = mode.as_str(),
                            to = next.as_str(),
                            reason = reason.as_str(),
                            error = %failure.error,
                            "structured output mode did not work; trying the next"
                        );
                    }
                    _ => return Err(failure.error),
                },
            }
        }
        // A plan is never empty (see `StructuredOutput::plan`), so the loop returned.
        Err(AgentError::InvalidResponse("no request was made".into()))
    }

    /// One request in `mode`, with the profile's retries.
    async fn exchange(
        &self,
        runtime: &ProfileRuntime,
        agent: &Agent,
        ask: &Ask,
        mode: FormatMode,
    ) -> Result<ChatReply, ModeFailure> {
        let profile = &runtime.profile;
        let (prompt, response_format) = match (&ask.structured, mode) {
            (Some(structured), FormatMode::JsonSchema | FormatMode::JsonObject) => {
                (&structured.prompt, ResponseFormat::new(mode, &structured.schema))
            }
            _ => (&ask.free, None),
        };
        let sends_format = response_format.is_some();
        let sampling = sampling(profile.temperature, agent.seat, ask.phase);
        trace!(system = %prompt.system, user = %prompt.user, "prompt");
        debug!(
            prompt_chars = prompt.system.len() + prompt.user.len(),
            temperature = sampling.temperature,
            seed = sampling.seed,
            structured_output = mode.as_str(),
            "sending"
        );
        let request = ChatRequest {
            model: &profile.model,
            messages: vec![
                Message { role: "system", content: prompt.system.clone() },
                Message { role: "user", content: prompt.user.clone() },
            ],
            temperature: sampling.temperature,
            max_tokens: profile.max_tokens,
            seed: sampling.seed,
            response_format,
            stream: false,
        };
        let body = serde_json::to_vec(&request).map_err(|e| ModeFailure {
            error: AgentError::InvalidResponse(format!("cannot encode the request: {e}")),
            fallback: None,
        })?;
        let outcome = runtime
            .policy
            .run(|attempt| {
                let body = body.clone();
                if attempt.number > 1 {
                    observability::retried(profile);
                }
                async move {
                    let reply = self
                        .client
                        .attempt(profile, body, attempt.timeout)
                        .instrument(tracing::debug_span!("attempt", attempt = attempt.number))
                        .await;
                    match reply {
                        Ok(reply) => Ok(Ok(reply)),
                        // A refused format is not retried: the same request gets the same no.
                        Err(failure) if sends_format && failure.format_refusal => Ok(Err(failure.error)),
                        Err(failure) => Err(failure),
                    }
                }
            })
            .await;
        let failure = |error: AgentError, fallback: Option<Fallback>| ModeFailure {
            error: with_profile(error, &profile.name),
            fallback,
        };
        match outcome {
            Ok(Ok(reply)) => clean(reply, profile).map_err(|error| {
                let fallback = sends_format.then_some(Fallback::Unusable);
                failure(error, fallback)
            }),
            Ok(Err(refused)) => Err(failure(refused, Some(Fallback::Refused))),
            Err(error) => {
                let unusable = sends_format && matches!(error, AgentError::InvalidResponse(_));
                Err(failure(error, unusable.then_some(Fallback::Unusable)))
            }
        }
    }
}

/// What one call asks: the free-text prompt, and for reviews and selections the schema the
/// answer must follow with the prompt that goes with a constrained answer.
pub(super) struct Ask {
    phase: PromptKind,
    free: Prompt,
    structured: Option<Structured>,
}

/// The schema-constrained form of an [`Ask`].
struct Structured {
    prompt: Prompt,
    schema: AnswerSchema,
}

impl Ask {
    /// A free-text call (proposals, revisions).
    pub(super) fn free(phase: PromptKind, prompt: Prompt, agent: &Agent) -> Self {
        Self { phase, free: prompts::with_persona(prompt, agent.persona.as_ref()), structured: None }
    }

    /// A call whose answer has a schema; `prompt` builds the prompt for either answer format.
    pub(super) fn structured(
        phase: PromptKind,
        prompt: impl Fn(AnswerFormat) -> Prompt,
        schema: AnswerSchema,
        agent: &Agent,
    ) -> Self {
        let persona = agent.persona.as_ref();
        Self {
            phase,
            free: prompts::with_persona(prompt(AnswerFormat::Template), persona),
            structured: Some(Structured {
                prompt: prompts::with_persona(prompt(AnswerFormat::Schema), persona),
                schema,
            }),
        }
    }
}

/// A reply, and the structured-output mode it was asked in.
pub(super) struct Answer {
    pub(super) reply: ChatReply,
    pub(super) mode: FormatMode,
}

/// How a request in one structured-output mode failed.
struct ModeFailure {
    error: AgentError,
    /// Why the next mode may succeed where this one failed; `None` when it would fail alike.
    fallback: Option<Fallback>,
}

/// The model's text as we return it: echoed prompt delimiters stripped, the profile's API key
/// redacted (a proxy may echo the request into the completion; the text is data we store and
/// return, so the key must not reach it). Other secret-looking text is left alone: it may be
/// legitimate content (a hash, a base64 test vector).
///
/// # Errors
/// `InvalidResponse` when nothing is left, e.g. an answer of delimiters only.
fn clean(mut reply: ChatReply, profile: &ResolvedProfile) -> Result<ChatReply, AgentError> {
    let stripped = delimiters::strip(&reply.text);
    if profile.redactor.holds_key(&stripped) {
        warn!("the model's answer contained the profile's API key; it was redacted");
    }
    reply.text = profile.redactor.model_text(&stripped);
    if reply.text.trim().is_empty() {
        return Err(AgentError::InvalidResponse("the model returned only prompt delimiters".into()));
    }
    Ok(reply)
}

/// Prefixes `profile "<name>": ` to messages from the server's side, so an operator reading a
/// client's error knows which profile to look at; variants that carry their own context
/// (timeouts, unknown or unauthorized profiles) are returned as they are.
fn with_profile(error: AgentError, profile: &ProfileName) -> AgentError {
    let named = |message: String| format!("profile \"{profile}\": {message}");
    match error {
        AgentError::Unavailable(m) => AgentError::Unavailable(named(m)),
        AgentError::Rejected(m) => AgentError::Rejected(named(m)),
        AgentError::InvalidResponse(m) => AgentError::InvalidResponse(named(m)),
        other
        @ (AgentError::Timeout(_) | AgentError::UnknownProfile(_) | AgentError::Unauthorized { .. }) => other,
    }
}

pub(super) fn usage(reply: &ChatReply) -> TokenUsage {
    TokenUsage {
        prompt_tokens: reply.prompt_tokens,
        completion_tokens: reply.completion_tokens,
        ..TokenUsage::default()
    }
}
