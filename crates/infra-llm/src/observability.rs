//! The metrics of model calls, named in one place.
//!
//! Recorded through the `metrics` facade (a no-op until the server installs a recorder). Labels
//! are the configured `profile` and `model` (a bounded set from the config file), the `phase`
//! of the prompt, and fixed outcome words; never anything a model server or a client sent.

use std::time::Duration;

use orchestrator_application::ports::AgentError;

use crate::profile::ResolvedProfile;
use crate::prompts::PromptKind;

/// Counter: model calls, by `profile`, `model`, `phase` and `outcome` (`ok`, `error`); a call
/// is every attempt of one prompt, retries included.
pub const LLM_CALLS: &str = "orchestrator_llm_calls_total";
/// Histogram: how long a call took (seconds), retries and back-off included, without the wait
/// for a concurrency permit; by `profile`, `model`, `phase`.
pub const LLM_CALL_DURATION: &str = "orchestrator_llm_call_duration_seconds";
/// Counter: tokens the server reported, by `profile`, `model` and `kind` (`prompt`,
/// `completion`).
pub const LLM_TOKENS: &str = "orchestrator_llm_tokens_total";
/// Counter: attempts after the first, by `profile`, `model`.
pub const LLM_RETRIES: &str = "orchestrator_llm_retries_total";
/// Counter: failed calls, by `profile`, `model` and `kind` (`unavailable`, `timeout`,
/// `rejected`, `invalid_response`, `unauthorized`, `unknown_profile`).
pub const LLM_ERRORS: &str = "orchestrator_llm_errors_total";

/// The `kind` label of a failed call.
fn error_kind(error: &AgentError) -> &'static str {
    match error {
        AgentError::Unavailable(_) => "unavailable",
        AgentError::Timeout(_) => "timeout",
        AgentError::Rejected(_) => "rejected",
        AgentError::InvalidResponse(_) => "invalid_response",
        AgentError::Unauthorized { .. } => "unauthorized",
        AgentError::UnknownProfile(_) => "unknown_profile",
    }
}

/// Counts a retry of a call on `profile`.
pub(crate) fn retried(profile: &ResolvedProfile) {
    metrics::counter!(LLM_RETRIES, "profile" => profile.name.to_string(), "model" => profile.model.clone())
        .increment(1);
}

/// Records one finished call: counted, timed, and its tokens or its error kind.
pub(crate) fn call_finished(
    profile: &ResolvedProfile,
    phase: PromptKind,
    elapsed: Duration,
    tokens: Result<(u64, u64), &AgentError>,
) {
    let name = profile.name.to_string();
    let model = profile.model.clone();
    let outcome = if tokens.is_ok() { "ok" } else { "error" };
    metrics::counter!(
        LLM_CALLS,
        "profile" => name.clone(),
        "model" => model.clone(),
        "phase" => phase.as_str(),
        "outcome" => outcome
    )
    .increment(1);
    metrics::histogram!(
        LLM_CALL_DURATION,
        "profile" => name.clone(),
        "model" => model.clone(),
        "phase" => phase.as_str()
    )
    .record(elapsed.as_secs_f64());
    match tokens {
        Ok((prompt, completion)) => {
            metrics::counter!(LLM_TOKENS, "profile" => name.clone(), "model" => model.clone(), "kind" => "prompt")
                .increment(prompt);
            metrics::counter!(LLM_TOKENS, "profile" => name, "model" => model, "kind" => "completion")
                .increment(completion);
        }
        Err(error) => {
            metrics::counter!(LLM_ERRORS, "profile" => name, "model" => model, "kind" => error_kind(error))
                .increment(1);
        }
    }
}
