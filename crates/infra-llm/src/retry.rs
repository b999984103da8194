//! The retry policy: which failures are worth another attempt, and how long to wait first.
//!
//! * An attempt reports whether its failure is transient ([`Retry::After`]: connect errors,
//!   timeouts, HTTP 408, 429 and 5xx) or final ([`Retry::Never`]: other 4xx, unusable bodies).
//! * Transient failures are retried up to `max_retries` times. The wait before retry `n`
//!   (1-based) is drawn with *full jitter* from `[0, min(max_delay, base_delay · 2^(n−1))]`, so
//!   callers that failed together do not come back together; a server's `Retry-After` replaces
//!   the draw, capped at `retry_after_cap`.
//! * The whole call is bounded by `total_budget`: each attempt's timeout is cut to what is left
//!   of it, and a retry whose wait would end past it is not made.
//! * Waiting is `tokio::time::sleep`, so tests drive the policy on paused time, and dropping the
//!   future at any point abandons the call.
//!
//! When the policy gives up on a transient `Unavailable`, the error says how many attempts were
//! made; a final error is returned as the attempt reported it.

use std::future::Future;
use std::time::Duration;

use orchestrator_application::ports::AgentError;
use tokio::time::Instant;
use tracing::warn;

/// First back-off ceiling.
pub const BASE_DELAY: Duration = Duration::from_millis(250);
/// Largest back-off ceiling.
pub const MAX_DELAY: Duration = Duration::from_secs(8);
/// Longest `Retry-After` honoured; a server asking for more gets this.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(30);

/// Whether a failed attempt may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Transient; `Some` carries the server's `Retry-After`.
    After(Option<Duration>),
    /// Final: another attempt would fail the same way.
    Never,
}

/// How one attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AttemptError {
    pub(crate) error: AgentError,
    pub(crate) retry: Retry,
    /// The server's answer may be a refusal of the request's `response_format` (see
    /// [`crate::structured_output::refuses_format`]); the policy itself ignores it.
    pub(crate) format_refusal: bool,
}

impl AttemptError {
    pub(crate) fn transient(error: AgentError, retry_after: Option<Duration>) -> Self {
        Self { error, retry: Retry::After(retry_after), format_refusal: false }
    }

    pub(crate) fn final_(error: AgentError) -> Self {
        Self { error, retry: Retry::Never, format_refusal: false }
    }

    pub(crate) fn with_format_refusal(self, format_refusal: bool) -> Self {
        Self { format_refusal, ..self }
    }
}

/// What an attempt is told: its 1-based number and how long it may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Attempt {
    pub(crate) number: u32,
    pub(crate) timeout: Duration,
}

/// Bounded retries with exponential back-off and full jitter (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct RetryPolicy {
    pub(crate) max_retries: u32,
    pub(crate) attempt_timeout: Duration,
    pub(crate) total_budget: Duration,
    pub(crate) base_delay: Duration,
    pub(crate) max_delay: Duration,
    pub(crate) retry_after_cap: Duration,
    /// Draws a wait from `[0, ceiling]`; replaced by a deterministic one in tests.
    pub(crate) jitter: fn(Duration) -> Duration,
}

impl RetryPolicy {
    /// The policy for a profile's limits, with the crate's delays and random jitter.
    pub(crate) fn new(max_retries: u32, attempt_timeout: Duration, total_budget: Duration) -> Self {
        Self {
            max_retries,
            attempt_timeout,
            total_budget,
            base_delay: BASE_DELAY,
            max_delay: MAX_DELAY,
            retry_after_cap: RETRY_AFTER_CAP,
            jitter: full_jitter,
        }
    }

    /// The back-off ceiling before retry `retry` (1-based): `min(max, base · 2^(retry−1))`.
    pub(crate) fn ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.saturating_sub(1)).unwrap_or(u32::MAX);
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }

    /// The wait before retry `retry`: the server's `Retry-After` (capped) when it sent one,
    /// otherwise a jittered draw below the back-off ceiling.
    pub(crate) fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(after) => after.min(self.retry_after_cap),
            None => (self.jitter)(self.ceiling(retry)).min(self.ceiling(retry)),
        }
    }

    /// Runs `attempt` until it succeeds, fails for good, or the policy gives up.
    ///
    /// # Errors
    /// The last attempt's error; a transient `Unavailable` is reworded to name the attempts.
    pub(crate) async fn run<T, F, Fut>(&self, mut attempt: F) -> Result<T, AgentError>
    where
        F: FnMut(Attempt) -> Fut,
        Fut: Future<Output = Result<T, AttemptError>>,
    {
        let started = Instant::now();
        let mut number = 1;
        loop {
            let remaining = self.total_budget.saturating_sub(started.elapsed());
            let timeout = self.attempt_timeout.min(remaining);
            let failure = match attempt(Attempt { number, timeout }).await {
                Ok(value) => return Ok(value),
                Err(failure) => failure,
            };
            let Retry::After(retry_after) = failure.retry else {
                return Err(failure.error);
            };
            if number > self.max_retries {
                return Err(gave_up(failure.error, number, "retries exhausted"));
            }
            let delay = self.delay(number, retry_after);
            if started.elapsed() + delay >= self.total_budget {
                return Err(gave_up(failure.error, number, "total timeout reached"));
            }
            warn!(
                attempt = number,
                delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                retry_after = retry_after.is_some(),
                error = %failure.error,
                "transient failure; retrying"
            );
            tokio::time::sleep(delay).await;
            number += 1;
        }
    }
}

fn gave_up(error: AgentError, attempts: u32, why: &str) -> AgentError {
    match error {
        AgentError::Unavailable(reason) if attempts > 1 => {
            AgentError::Unavailable(format!("gave up after {attempts} attempts ({why}): {reason}"))
        }
        other => other,
    }
}

/// A uniform draw from `[0, ceiling]`.
fn full_jitter(ceiling: Duration) -> Duration {
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(fastrand::u64(0..=nanos))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    fn policy(max_retries: u32) -> RetryPolicy {
        RetryPolicy {
            jitter: |ceiling| ceiling,
            ..RetryPolicy::new(max_retries, Duration::from_secs(10), Duration::from_secs(600))
        }
    }

    fn unavailable() -> AttemptError {
        AttemptError::transient(AgentError::Unavailable("HTTP 503".into()), None)
    }

    /// Runs the policy over scripted attempt outcomes; returns the result and, per attempt,
    /// when it started (relative to the start) and the timeout it was given.
    async fn script(
        policy: &RetryPolicy,
        outcomes: Vec<Result<&'static str, AttemptError>>,
    ) -> (Result<&'static str, AgentError>, Vec<(Duration, Duration)>) {
        let start = Instant::now();
        let seen = Mutex::new(Vec::new());
        let outcomes = Mutex::new(outcomes.into_iter());
        let result = policy
            .run(|attempt| {
                seen.lock().unwrap().push((start.elapsed(), attempt.timeout));
                let next = outcomes.lock().unwrap().next().expect("the policy made an unscripted attempt");
                assert_eq!(attempt.number as usize, seen.lock().unwrap().len());
                async move { next }
            })
            .await;
        (result, seen.into_inner().unwrap())
    }

    #[test]
    fn ceilings_double_from_the_base_up_to_the_cap() {
        let p = policy(3);
        let ceilings: Vec<u64> = (1..=7).map(|n| p.ceiling(n).as_millis() as u64).collect();
        assert_eq!(ceilings, vec![250, 500, 1000, 2000, 4000, 8000, 8000]);
        assert_eq!(p.ceiling(200), MAX_DELAY);
    }

    #[test]
    fn full_jitter_stays_within_the_ceiling() {
        let p = RetryPolicy::new(3, Duration::from_secs(1), Duration::from_secs(10));
        for retry in 1..=6 {
            for _ in 0..200 {
                assert!(p.delay(retry, None) <= p.ceiling(retry));
            }
        }
        assert_eq!(full_jitter(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn retry_after_replaces_the_draw_and_is_capped() {
        let p = policy(3);
        assert_eq!(p.delay(1, Some(Duration::from_secs(7))), Duration::from_secs(7));
        assert_eq!(p.delay(1, Some(Duration::from_secs(3600))), RETRY_AFTER_CAP);
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_retried_after_growing_delays() {
        let (result, attempts) =
            script(&policy(3), vec![Err(unavailable()), Err(unavailable()), Ok("done")]).await;
        assert_eq!(result, Ok("done"));
        let starts: Vec<u128> = attempts.iter().map(|(at, _)| at.as_millis()).collect();
        assert_eq!(starts, vec![0, 250, 750]);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_waited_exactly() {
        let rate_limited =
            AttemptError::transient(AgentError::Unavailable("HTTP 429".into()), Some(Duration::from_secs(5)));
        let (result, attempts) = script(&policy(3), vec![Err(rate_limited), Ok("done")]).await;
        assert_eq!(result, Ok("done"));
        assert_eq!(attempts[1].0, Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_max_retries_naming_the_attempts() {
        let (result, attempts) =
            script(&policy(2), vec![Err(unavailable()), Err(unavailable()), Err(unavailable())]).await;
        assert_eq!(attempts.len(), 3);
        assert_eq!(
            result,
            Err(AgentError::Unavailable("gave up after 3 attempts (retries exhausted): HTTP 503".into()))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn final_failures_are_not_retried() {
        let rejected = AttemptError::final_(AgentError::Rejected("HTTP 400".into()));
        let (result, attempts) = script(&policy(3), vec![Err(rejected)]).await;
        assert_eq!(attempts.len(), 1);
        assert_eq!(result, Err(AgentError::Rejected("HTTP 400".into())));
    }

    #[tokio::test(start_paused = true)]
    async fn zero_retries_returns_the_first_error_unchanged() {
        let timeout = AttemptError::transient(AgentError::Timeout(Duration::from_secs(10)), None);
        let (result, attempts) = script(&policy(0), vec![Err(timeout)]).await;
        assert_eq!(attempts.len(), 1);
        assert_eq!(result, Err(AgentError::Timeout(Duration::from_secs(10))));
    }

    #[tokio::test(start_paused = true)]
    async fn total_budget_cuts_attempt_timeouts_and_stops_retries() {
        let p = RetryPolicy { total_budget: Duration::from_secs(12), ..policy(5) };
        let slow = || {
            AttemptError::transient(AgentError::Unavailable("HTTP 502".into()), Some(Duration::from_secs(4)))
        };
        let (result, attempts) = script(&p, vec![Err(slow()), Err(slow()), Err(slow())]).await;
        // Attempts start at 0, 4 and 8 s; a retry at 12 s would end at the budget, so none is made.
        let timeline: Vec<(u64, u64)> = attempts.iter().map(|(at, t)| (at.as_secs(), t.as_secs())).collect();
        assert_eq!(timeline, vec![(0, 10), (4, 8), (8, 4)]);
        let error = result.unwrap_err().to_string();
        assert!(error.contains("gave up after 3 attempts (total timeout reached)"), "{error}");
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_the_run_abandons_the_back_off() {
        let p = policy(3);
        let calls = Mutex::new(0);
        let run = p.run(|_| {
            *calls.lock().unwrap() += 1;
            async {
                Err::<(), _>(AttemptError::transient(
                    AgentError::Unavailable("x".into()),
                    Some(Duration::from_secs(20)),
                ))
            }
        });
        assert!(tokio::time::timeout(Duration::from_secs(5), run).await.is_err());
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(*calls.lock().unwrap(), 1);
    }
}
