//! [`OpenAiBackend`]: the [`AgentBackend`] port over OpenAI-compatible chat completions.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::join_all;
use orchestrator_application::ports::{AgentBackend, AgentError, Completion, ReviewReply, Selection};
use orchestrator_domain::{Agent, Escalation, ProfileName, Review, Task, TestOutcome, TokenUsage};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tracing::{Instrument, debug, info, info_span, trace, warn};

use crate::answer_schema::{self, AnswerSchema};
use crate::client::{ChatClient, ChatReply, ChatRequest, Message, ResponseFormat};
use crate::delimiters;
use crate::error::{LlmError, Result};
use crate::observability;
use crate::probe::{PROBE_TIMEOUT, ProfileProbe, probe_profile};
use crate::profile::{LlmProfile, ResolvedProfile};
use crate::prompts::{self, AnswerFormat, Prompt, PromptKind};
use crate::retry::RetryPolicy;
use crate::review_parse::{parse_review, parse_selection};
use crate::sampling::sampling;
use crate::structured_output::{Fallback, FormatMode, Negotiated, StructuredOutput};

/// Runs agents on OpenAI-compatible servers (vLLM, Ollama, llama.cpp server, OpenAI), one
/// model profile per configured name.
///
/// * One pooled HTTP client (rustls) is shared by every profile and call.
/// * Each profile has a semaphore of `max_concurrency` permits. A call holds **one permit for
///   its whole life — every attempt and the back-off between them** — so however many
///   deliberations run, a profile's server never sees more than `max_concurrency` of our
///   calls, and a server that asked us to back off is not refilled by queued callers meanwhile.
///   Waiting for a permit is not counted against the call's timeouts (the caller's deadline
///   bounds it).
/// * Each call is retried per [`crate::retry`]; dropping its future cancels the HTTP request,
///   the back-off or the wait for a permit, whichever is under way.
/// * Calls are traced in an `llm_call` span (profile, model, agent, seat, phase) with events
///   per attempt (attempt, status, latency_ms); keys never, prompts only at `trace` level.
/// * Nothing the server sends is repeated verbatim (see [`crate::redact`]): errors quote no
///   body — they name the profile, the HTTP status and a fixed phrase, never the URL — and
///   bodies reach only the `debug` log, redacted; the model's text is returned with the
///   profile's API key (should a proxy echo it) redacted and echoed prompt delimiters removed
///   ([`crate::delimiters`]).
/// * HTTP 401/403 is [`AgentError::Unauthorized`], a configuration fault, never retried.
/// * A completion cut at `max_tokens` (`finish_reason = "length"`) is returned with
///   [`Completion::truncated`] set.
/// * Reviews and selections ask for schema-constrained JSON as the profile's
///   `structured_output` says ([`crate::structured_output`]); `auto` settles on a mode per
///   profile and never fails a call that would work without one.
pub struct OpenAiBackend {
    client: ChatClient,
    profiles: BTreeMap<ProfileName, Arc<ProfileRuntime>>,
}

struct ProfileRuntime {
    profile: ResolvedProfile,
    permits: Semaphore,
    policy: RetryPolicy,
    /// What `structured_output = "auto"` settled on for this profile.
    negotiated: Negotiated,
}

impl fmt::Debug for OpenAiBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let profiles: Vec<&ResolvedProfile> = self.profiles.values().map(|p| &p.profile).collect();
        f.debug_struct("OpenAiBackend").field("profiles", &profiles).finish_non_exhaustive()
    }
}

impl OpenAiBackend {
    /// Validates every profile, reads API keys from the environment variables they name, and
    /// builds the shared HTTP client.
    ///
    /// # Errors
    /// [`LlmError::InvalidProfile`] naming `profiles.<name>.<field>` (or `profiles` when the map
    /// is empty); [`LlmError::Client`] when TLS cannot be set up.
    pub fn new(profiles: BTreeMap<ProfileName, LlmProfile>) -> Result<Self> {
        Self::with_env(profiles, &|var| std::env::var(var).ok())
    }

    /// [`OpenAiBackend::new`] with environment look-ups supplied by the caller.
    pub(crate) fn with_env(
        profiles: BTreeMap<ProfileName, LlmProfile>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        if profiles.is_empty() {
            return Err(LlmError::invalid("profiles", "at least one model profile is required"));
        }
        let profiles = profiles
            .iter()
            .map(|(name, profile)| {
                let profile = profile.resolve(name, env)?;
                let policy = RetryPolicy::new(profile.max_retries, profile.timeout, profile.total_timeout);
                let permits = Semaphore::new(profile.max_concurrency);
                let negotiated = Negotiated::default();
                Ok((name.clone(), Arc::new(ProfileRuntime { profile, permits, policy, negotiated })))
            })
            .collect::<Result<BTreeMap<_, _>>>()?;
        Ok(Self { client: ChatClient::new()?, profiles })
    }

    /// The names of the configured profiles, in order.
    pub fn profile_names(&self) -> impl Iterator<Item = &ProfileName> {
        self.profiles.keys()
    }

    /// The structured-output mode review and select calls on `profile` are asked in: the
    /// profile's explicit mode, or what `auto` has settled on (`None` before its first call
    /// succeeded, or for an unknown profile). For operators and tests.
    pub fn structured_output_mode(&self, profile: &ProfileName) -> Option<FormatMode> {
        let runtime = self.profiles.get(profile)?;
        match runtime.profile.structured_output {
            StructuredOutput::Auto => runtime.negotiated.get(),
            explicit => explicit.plan(None).first().copied(),
        }
    }

    /// Asks every profile's server for its model list (`GET {base_url}/models`), all at once,
    /// each bounded by [`PROBE_TIMEOUT`]: whether it is reachable, takes the key and serves the
    /// model, with a hint when not. One probe per profile, in profile order.
    ///
    /// The result names servers: it is for operators' logs, not for clients.
    pub async fn probe(&self) -> Vec<ProfileProbe> {
        self.probe_within(PROBE_TIMEOUT).await
    }

    /// [`OpenAiBackend::probe`] with another bound than [`PROBE_TIMEOUT`]; returns within
    /// about `timeout` whatever the servers do.
    pub async fn probe_within(&self, timeout: Duration) -> Vec<ProfileProbe> {
        join_all(self.profiles.values().map(|runtime| probe_profile(&self.client, &runtime.profile, timeout)))
            .await
    }

    /// The runtime of the profile `agent` runs on.
    fn runtime(&self, agent: &Agent) -> Result<&Arc<ProfileRuntime>, AgentError> {
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
    async fn complete(&self, agent: &Agent, ask: Ask) -> Result<Answer, AgentError> {
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
struct Ask {
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
    fn free(phase: PromptKind, prompt: Prompt, agent: &Agent) -> Self {
        Self { phase, free: prompts::with_persona(prompt, agent.persona.as_ref()), structured: None }
    }

    /// A call whose answer has a schema; `prompt` builds the prompt for either answer format.
    fn structured(
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
struct Answer {
    reply: ChatReply,
    mode: FormatMode,
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

fn usage(reply: &ChatReply) -> TokenUsage {
    TokenUsage {
        prompt_tokens: reply.prompt_tokens,
        completion_tokens: reply.completion_tokens,
        ..TokenUsage::default()
    }
}

#[async_trait]
impl AgentBackend for OpenAiBackend {
    fn has_profile(&self, profile: &ProfileName) -> bool {
        self.profiles.contains_key(profile)
    }

    async fn propose(&self, agent: &Agent, task: &Task) -> Result<Completion, AgentError> {
        let ask = Ask::free(PromptKind::Propose, prompts::propose(agent.role, task), agent);
        let reply = self.complete(agent, ask).await?.reply;
        Ok(Completion { usage: usage(&reply), truncated: reply.truncated(), text: reply.text })
    }

    async fn propose_after(
        &self,
        agent: &Agent,
        task: &Task,
        escalation: &Escalation,
    ) -> Result<Completion, AgentError> {
        let prompt = prompts::propose_after(agent.role, task, &escalation.first_answer, &escalation.tests);
        let ask = Ask::free(PromptKind::Propose, prompt, agent);
        let reply = self.complete(agent, ask).await?.reply;
        Ok(Completion { usage: usage(&reply), truncated: reply.truncated(), text: reply.text })
    }

    async fn review(
        &self,
        agent: &Agent,
        task: &Task,
        proposal: &str,
        tests: &TestOutcome,
    ) -> Result<ReviewReply, AgentError> {
        let ask = Ask::structured(
            PromptKind::Review,
            |format| prompts::review(agent.role, task, proposal, tests, format),
            answer_schema::review(),
            agent,
        );
        let Answer { reply, mode } = self.complete(agent, ask).await?;
        let parsed = parse_review(&reply.text);
        if parsed.score.is_none() {
            debug!(agent = %agent.id, structured_output = mode.as_str(), "review held no usable score");
        }
        observability::review_answered(&self.runtime(agent)?.profile, mode, parsed.score.is_some());
        // `score` is `Some` exactly when the answer held a grade: callers count graded reviews
        // by it.
        Ok(ReviewReply {
            critique: parsed.critique,
            score: parsed.score,
            issues: parsed.issues,
            usage: usage(&reply),
        })
    }

    async fn revise(
        &self,
        agent: &Agent,
        task: &Task,
        current: &str,
        tests: &TestOutcome,
        reviews: &[Review],
    ) -> Result<Completion, AgentError> {
        let prompt = prompts::revise(agent.role, task, current, tests, reviews);
        let reply = self.complete(agent, Ask::free(PromptKind::Revise, prompt, agent)).await?.reply;
        Ok(Completion { usage: usage(&reply), truncated: reply.truncated(), text: reply.text })
    }

    async fn select(
        &self,
        agent: &Agent,
        task: &Task,
        candidates: &[String],
    ) -> Result<Selection, AgentError> {
        let ask = Ask::structured(
            PromptKind::Select,
            |format| prompts::select(agent.role, task, candidates, format),
            answer_schema::selection(candidates.len()),
            agent,
        );
        let reply = self.complete(agent, ask).await?.reply;
        let parsed = parse_selection(&reply.text, candidates.len());
        Ok(Selection { choice: parsed.choice, rationale: parsed.rationale, usage: usage(&reply) })
    }
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;

    fn profiles(profile: LlmProfile) -> BTreeMap<ProfileName, LlmProfile> {
        BTreeMap::from([(ProfileName::default_profile(), profile)])
    }

    #[test]
    fn an_empty_profile_map_is_refused() {
        let error = OpenAiBackend::new(BTreeMap::new()).unwrap_err();
        assert_eq!(error.to_string(), "profiles: at least one model profile is required");
    }

    #[test]
    fn the_first_invalid_profile_is_named() {
        let error = OpenAiBackend::new(profiles(LlmProfile::new("http://h/v1", ""))).unwrap_err();
        assert_eq!(error.to_string(), "profiles.default.model: must not be empty");
    }

    #[test]
    fn has_profile_answers_from_the_configuration() {
        let backend = OpenAiBackend::new(profiles(LlmProfile::new("http://h/v1", "m"))).unwrap();
        assert!(backend.has_profile(&ProfileName::default_profile()));
        assert!(!backend.has_profile(&ProfileName::new("other").unwrap()));
        assert_eq!(backend.profile_names().count(), 1);
    }

    #[test]
    fn debug_of_the_backend_hides_keys_from_any_source() {
        let mut profile = LlmProfile::new("http://h/v1", "m");
        profile.api_key_env = Some("TEST_KEY_VAR".into());
        let env = |var: &str| (var == "TEST_KEY_VAR").then(|| "sk-env-secret-987".to_owned());
        let backend = OpenAiBackend::with_env(profiles(profile), &env).unwrap();
        let text = format!("{backend:?} {backend:#?}");
        assert!(!text.contains("sk-env-secret-987"), "{text}");
        assert!(text.contains("has_api_key: true"), "{text}");

        let mut profile = LlmProfile::new("http://h/v1", "m");
        profile.api_key = Some(SecretString::from("sk-direct-secret-654"));
        let backend = OpenAiBackend::new(profiles(profile)).unwrap();
        assert!(!format!("{backend:?}").contains("sk-direct-secret-654"));
    }
}
