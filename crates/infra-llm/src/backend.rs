//! [`OpenAiBackend`]: the [`AgentBackend`] port over OpenAI-compatible chat completions.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::join_all;
use orchestrator_application::ports::{AgentBackend, AgentError, Completion, ReviewReply, Selection};
use orchestrator_domain::{Agent, ProfileName, Review, Task, TestOutcome, TokenUsage};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tracing::{Instrument, debug, info, info_span, trace, warn};

use crate::client::{ChatClient, ChatReply, ChatRequest, Message, ResponseFormat};
use crate::delimiters;
use crate::error::{LlmError, Result};
use crate::observability;
use crate::probe::{PROBE_TIMEOUT, ProfileProbe, probe_profile};
use crate::profile::{LlmProfile, ResolvedProfile};
use crate::prompts::{self, Prompt, PromptKind};
use crate::retry::RetryPolicy;
use crate::review_parse::{parse_review, parse_selection};
use crate::sampling::sampling;

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
pub struct OpenAiBackend {
    client: ChatClient,
    profiles: BTreeMap<ProfileName, Arc<ProfileRuntime>>,
}

struct ProfileRuntime {
    profile: ResolvedProfile,
    permits: Semaphore,
    policy: RetryPolicy,
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
                Ok((name.clone(), Arc::new(ProfileRuntime { profile, permits, policy })))
            })
            .collect::<Result<BTreeMap<_, _>>>()?;
        Ok(Self { client: ChatClient::new()?, profiles })
    }

    /// The names of the configured profiles, in order.
    pub fn profile_names(&self) -> impl Iterator<Item = &ProfileName> {
        self.profiles.keys()
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

    /// Sends one prompt for `agent` in `phase` and returns the model's answer and token usage.
    ///
    /// The answer's text is cleaned before anyone sees it: echoed delimiters stripped, the
    /// profile's key redacted. Errors name the profile (see [`with_profile`]).
    async fn complete(
        &self,
        agent: &Agent,
        phase: PromptKind,
        prompt: Prompt,
    ) -> Result<ChatReply, AgentError> {
        let prompt = prompts::with_persona(prompt, agent.persona.as_ref());
        let runtime = self
            .profiles
            .get(&agent.profile)
            .ok_or_else(|| AgentError::UnknownProfile(agent.profile.to_string()))?;
        let profile = &runtime.profile;
        let span = info_span!(
            "llm_call",
            profile = %profile.name,
            model = %profile.model,
            agent = %agent.id,
            seat = agent.seat,
            phase = phase.as_str(),
        );
        async move {
            let sampling = sampling(profile.temperature, agent.seat, phase);
            let json =
                profile.response_format_json && matches!(phase, PromptKind::Review | PromptKind::Select);
            trace!(system = %prompt.system, user = %prompt.user, "prompt");
            debug!(
                prompt_chars = prompt.system.len() + prompt.user.len(),
                temperature = sampling.temperature,
                seed = sampling.seed,
                "sending"
            );
            let request = ChatRequest {
                model: &profile.model,
                messages: vec![
                    Message { role: "system", content: prompt.system },
                    Message { role: "user", content: prompt.user },
                ],
                temperature: sampling.temperature,
                max_tokens: profile.max_tokens,
                seed: sampling.seed,
                response_format: json.then_some(ResponseFormat::JSON_OBJECT),
                stream: false,
            };
            let body = serde_json::to_vec(&request)
                .map_err(|e| AgentError::InvalidResponse(format!("cannot encode the request: {e}")))?;

            let _permit = runtime
                .permits
                .acquire()
                .await
                .map_err(|_| AgentError::Unavailable("the backend is shutting down".into()))?;
            let started = Instant::now();
            let result = runtime
                .policy
                .run(|attempt| {
                    let body = body.clone();
                    if attempt.number > 1 {
                        observability::retried(profile);
                    }
                    async move {
                        self.client
                            .attempt(profile, body, attempt.timeout)
                            .instrument(tracing::debug_span!("attempt", attempt = attempt.number))
                            .await
                    }
                })
                .await
                .and_then(|reply| clean(reply, profile))
                .map_err(|error| with_profile(error, &profile.name));
            let elapsed = started.elapsed();
            let latency_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
            let tokens = result.as_ref().map(|reply| (reply.prompt_tokens, reply.completion_tokens));
            observability::call_finished(profile, phase, elapsed, tokens);
            match &result {
                Ok(reply) => {
                    if reply.truncated() {
                        info!(max_tokens = profile.max_tokens, "completion cut at max_tokens");
                    }
                    info!(
                        latency_ms,
                        prompt_tokens = reply.prompt_tokens,
                        completion_tokens = reply.completion_tokens,
                        finish_reason = reply.finish_reason_for_logs(),
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
        let reply = self.complete(agent, PromptKind::Propose, prompts::propose(agent.role, task)).await?;
        Ok(Completion { usage: usage(&reply), truncated: reply.truncated(), text: reply.text })
    }

    async fn review(
        &self,
        agent: &Agent,
        task: &Task,
        proposal: &str,
        tests: &TestOutcome,
    ) -> Result<ReviewReply, AgentError> {
        let reply = self
            .complete(agent, PromptKind::Review, prompts::review(agent.role, task, proposal, tests))
            .await?;
        let parsed = parse_review(&reply.text);
        if parsed.score.is_none() {
            debug!(agent = %agent.id, "review held no usable score");
        }
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
        let reply = self.complete(agent, PromptKind::Revise, prompt).await?;
        Ok(Completion { usage: usage(&reply), truncated: reply.truncated(), text: reply.text })
    }

    async fn select(
        &self,
        agent: &Agent,
        task: &Task,
        candidates: &[String],
    ) -> Result<Selection, AgentError> {
        let reply =
            self.complete(agent, PromptKind::Select, prompts::select(agent.role, task, candidates)).await?;
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
