//! The metrics the use cases record, named in one place.
//!
//! Recorded through the `metrics` facade: without an installed recorder (tests, a server
//! without `metrics_listen`) every call is a no-op, so the use cases never depend on an
//! exporter. The server installs the Prometheus one and documents every name in its README.
//! Label values come from closed sets (roles, statuses, phases), never from client input, so
//! the number of series stays bounded.

use std::time::Duration;

use orchestrator_domain::{DeliberationStatus, Phase, Role};

/// Counter: deliberations that ended, by `role` and final `status` (`COMPLETED`, `FAILED`,
/// `TIMEOUT`, `CANCELLED`, `INTERRUPTED`).
pub const DELIBERATIONS: &str = "orchestrator_deliberations_total";
/// Histogram: how long a deliberation ran (seconds), by `role` and `outcome` (`completed`,
/// `failed`, `timeout`); cancelled runs are not timed.
pub const DELIBERATION_DURATION: &str = "orchestrator_deliberation_duration_seconds";
/// Histogram: how long one phase of a deliberation took (seconds), by `role` and `phase`
/// (`propose`, `review`, `revise`, `score`); one sample per phase per round.
pub const PHASE_DURATION: &str = "orchestrator_phase_duration_seconds";
/// Counter: peer reviews of completed deliberations, by `role` and `graded` (`true` when the
/// review gave a usable grade): their ratio is the share of reviews that decided anything.
pub const REVIEWS: &str = "orchestrator_reviews_total";
/// Histogram: per completed deliberation with reviews, the share of them that gave a grade
/// (0..1), by `role`.
pub const GRADED_SHARE: &str = "orchestrator_graded_review_share";
/// Counter: completed deliberations by `path` (`council`, `cascade_first_answer`,
/// `cascade_escalated`).
pub const PATHS: &str = "orchestrator_deliberation_paths_total";
/// Gauge: deliberations running now (holding one of `max_running` slots).
pub const JOBS_RUNNING: &str = "orchestrator_jobs_running";
/// Gauge: deliberations admitted and waiting for a slot.
pub const JOBS_QUEUED: &str = "orchestrator_jobs_queued";

/// Counts a deliberation that ended with `status`.
pub fn deliberation_ended(role: Role, status: DeliberationStatus) {
    metrics::counter!(DELIBERATIONS, "role" => role.as_str(), "status" => status.as_str()).increment(1);
}

/// Times a deliberation run; `outcome` is `completed`, `failed` or `timeout`.
pub fn deliberation_ran(role: Role, outcome: &'static str, elapsed: Duration) {
    metrics::histogram!(DELIBERATION_DURATION, "role" => role.as_str(), "outcome" => outcome)
        .record(elapsed.as_secs_f64());
}

/// Times one phase of a deliberation; the `phase` label is its action (`propose`, `review`,
/// `revise`, `score`).
pub fn phase_ran(role: Role, phase: Phase, elapsed: Duration) {
    metrics::histogram!(PHASE_DURATION, "role" => role.as_str(), "phase" => phase.action())
        .record(elapsed.as_secs_f64());
}

/// Counts the reviews of a completed deliberation, graded or not, and which way it went.
pub fn deliberation_completed(role: Role, path: orchestrator_domain::Path, reviews: usize, graded: usize) {
    let ungraded = reviews.saturating_sub(graded);
    metrics::counter!(REVIEWS, "role" => role.as_str(), "graded" => "true").increment(graded as u64);
    metrics::counter!(REVIEWS, "role" => role.as_str(), "graded" => "false").increment(ungraded as u64);
    if reviews > 0 {
        metrics::histogram!(GRADED_SHARE, "role" => role.as_str()).record(graded as f64 / reviews as f64);
    }
    metrics::counter!(PATHS, "path" => path.as_str()).increment(1);
}

/// How much work the job runner holds right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JobLoad {
    /// Deliberations holding a slot.
    pub running: usize,
    /// Deliberations admitted and waiting for a slot.
    pub queued: usize,
}

/// Sets the job gauges; the server calls it on every scrape, so they are never stale.
pub fn job_load(load: JobLoad) {
    metrics::gauge!(JOBS_RUNNING).set(load.running as f64);
    metrics::gauge!(JOBS_QUEUED).set(load.queued as f64);
}
