//! [`OpenAiBackend`]: the [`AgentBackend`] port over OpenAI-compatible chat completions.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::join_all;
use orchestrator_application::ports::{AgentBackend, AgentError, Completion, ReviewReply, Selection};
use orchestrator_domain::{Agent, Escalation, ProfileName, Review, Task, TestOutcome};
use tokio::sync::Semaphore;
use tracing::debug;

use crate::answer_schema::{self};
use crate::client::ChatClient;
use crate::error::{LlmError, Result};
use crate::observability;
use crate::probe::{PROBE_TIMEOUT, ProfileProbe, probe_profile};
use crate::profile::{LlmProfile, ResolvedProfile};
use crate::prompts::{self, PromptKind};
use crate::retry::RetryPolicy;
use crate::review_parse::{parse_review, parse_selection};
use crate::structured_output::{FormatMode, Negotiated, StructuredOutput};

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

mod exchange;

use exchange::{Answer, Ask, usage};

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
