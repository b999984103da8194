//! The metrics of model calls, named in one place.
//!
//! Recorded through the `metrics` facade (a no-op until the server installs a recorder). Labels
//! are the configured `profile` and `model` (a bounded set from the config file), the `phase`
//! of the prompt, and fixed outcome words; never anything a model server or a client sent.

use std::time::Duration;

use orchestrator_application::ports::AgentError;

use crate::profile::ResolvedProfile;
use crate::prompts::PromptKind;
use crate::structured_output::{Fallback, FormatMode};

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

/// Counter: reviews answered (calls that returned a review, graded or not), by `profile`,
/// `model` and `structured_output`, the mode the answer was asked in (`json_schema`,
/// `json_object`, `off`; see [`crate::structured_output`]).
pub const LLM_REVIEWS: &str = "orchestrator_llm_reviews_total";
/// Counter: of [`LLM_REVIEWS`], those whose answer held a grade, by the same labels; divided by
/// it, the share of graded reviews. Both series are created with the first review, so the
/// share reads 0, not "no data", while nothing is graded.
pub const LLM_REVIEWS_GRADED: &str = "orchestrator_llm_reviews_graded_total";
/// Counter: structured-output modes given up within a call under `auto`, by `profile`,
/// `model`, `structured_output` (the mode given up) and `reason` (`refused`: the server
/// refused the request; `unusable`: it answered with nothing usable).
pub const LLM_STRUCTURED_OUTPUT_FALLBACKS: &str = "orchestrator_llm_structured_output_fallbacks_total";

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

/// Counts a review answered in `mode`, and whether it held a grade.
pub(crate) fn review_answered(profile: &ResolvedProfile, mode: FormatMode, graded: bool) {
    let labels = [
        ("profile", profile.name.to_string()),
        ("model", profile.model.clone()),
        ("structured_output", mode.as_str().to_owned()),
    ];
    metrics::counter!(LLM_REVIEWS, &labels).increment(1);
    metrics::counter!(LLM_REVIEWS_GRADED, &labels).increment(u64::from(graded));
}

/// Counts a structured-output mode given up within a call.
pub(crate) fn structured_output_fell_back(profile: &ResolvedProfile, mode: FormatMode, reason: Fallback) {
    metrics::counter!(
        LLM_STRUCTURED_OUTPUT_FALLBACKS,
        "profile" => profile.name.to_string(),
        "model" => profile.model.clone(),
        "structured_output" => mode.as_str(),
        "reason" => reason.as_str()
    )
    .increment(1);
}
