//! The Deliberate use case: drives a deliberation from proposals to ranking.

use std::sync::Arc;
use std::time::Duration;

use orchestrator_domain::{
    Council, CouncilId, Deliberation, DeliberationOutcome, EarlyStop, ProfileName, Role, Rounds,
    ScoringWeights, Strategy, Task, TaskId,
};
use tokio::time::Instant;
use tracing::{Instrument, info, info_span, warn};

use crate::caller::Caller;
use crate::counters::Counters;
use crate::error::{ApplicationError, Result};
use crate::observability;
use crate::ports::{
    AgentBackend, Clock, CouncilStore, DeliberationRecord, DryRunner, IdGenerator, ProgressObserver,
    TestRunner,
};
use crate::seating::{Overrides, standing_seats};

/// Server-side settings of every deliberation.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliberationSettings {
    /// Deadline when the task sets no `timeout_seconds`.
    pub default_timeout: Duration,
    pub weights: ScoringWeights,
    /// Profile of the ARCHITECT agent that selects in Orchestrate; `None`: the first agent's.
    pub selection_profile: Option<ProfileName>,
    /// When the review rounds end early, for tasks that do not say (see [`EarlyStop`]).
    pub early_stop: EarlyStop,
    /// Council or cascade, for tasks that do not say (see [`Strategy`]).
    pub strategy: Strategy,
    /// Acceptance-test runs at once within one deliberation.
    pub test_concurrency: usize,
}

impl Default for DeliberationSettings {
    fn default() -> Self {
        Self {
            default_timeout: Duration::from_secs(300),
            weights: ScoringWeights::default(),
            selection_profile: None,
            early_stop: EarlyStop::TestsAndReviews,
            strategy: Strategy::Council,
            test_concurrency: 2,
        }
    }
}

/// A validated request to deliberate.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliberateCommand {
    /// Client-chosen id; generated when `None`.
    pub task_id: Option<TaskId>,
    pub role: Role,
    pub task: Task,
    pub rounds: Rounds,
    pub num_agents: usize,
    /// Agent `i` runs on `profiles[i % len]`; empty means the default profile.
    pub profiles: Vec<ProfileName>,
    /// Which of the above the client set; what it left unset comes from the role's standing
    /// council when it has one.
    pub overrides: Overrides,
    /// The planning service's story the work serves, when it came from a plan (kept with the
    /// deliberation and carried in its events).
    pub story_id: Option<String>,
}

/// A completed deliberation.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliberationReport {
    pub task_id: TaskId,
    pub role: Role,
    pub task: Task,
    /// Review rounds actually run (after the `max_iterations` cap).
    pub rounds: u32,
    pub started_at_ms: i64,
    pub duration_ms: u64,
    pub outcome: DeliberationOutcome,
    /// The standing council the agents were seated from; `None` for an ad-hoc council.
    pub council_id: Option<CouncilId>,
}

impl DeliberationReport {
    /// The report of a stored deliberation, as Deliberate answered it — `None` unless it is
    /// COMPLETED. A retried request is answered with it.
    #[must_use]
    pub fn from_record(record: &DeliberationRecord) -> Option<Self> {
        let outcome = record.outcome.clone()?;
        let task = record.request.task.clone();
        let rounds = record
            .progress
            .as_ref()
            .map_or_else(|| task.constraints().cap_rounds(record.request.rounds), Deliberation::rounds);
        Some(Self {
            task_id: record.request.task_id.clone(),
            role: record.request.role,
            task,
            rounds,
            started_at_ms: record.started_at_ms.unwrap_or(record.request.created_at_ms),
            duration_ms: record.duration_ms.and_then(|d| u64::try_from(d).ok()).unwrap_or_default(),
            outcome,
            council_id: record.council_id().cloned(),
        })
    }
}

/// Runs deliberations: every agent of a phase concurrently, the whole under one deadline.
pub struct Deliberate {
    backend: Option<Arc<dyn AgentBackend>>,
    dry_runner: Option<Arc<dyn DryRunner>>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGenerator>,
    counters: Arc<Counters>,
    settings: DeliberationSettings,
    councils: Option<Arc<dyn CouncilStore>>,
    test_runner: Option<Arc<dyn TestRunner>>,
}

impl std::fmt::Debug for Deliberate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deliberate")
            .field("backend_configured", &self.backend.is_some())
            .field("dry_runner_configured", &self.dry_runner.is_some())
            .field("councils_configured", &self.councils.is_some())
            .field("test_runner_configured", &self.test_runner.is_some())
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Deliberate {
    /// `backend: None` means no LLM is configured: every request is then refused with
    /// [`ApplicationError::BackendNotConfigured`] rather than answered with invented text.
    pub fn new(
        backend: Option<Arc<dyn AgentBackend>>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdGenerator>,
        counters: Arc<Counters>,
        settings: DeliberationSettings,
    ) -> Self {
        Self { backend, clock, ids, counters, settings, dry_runner: None, councils: None, test_runner: None }
    }

    /// Dry-runs every proposal with this runner when scoring. Without one, each proposal's
    /// dry run is reported as not configured.
    #[must_use]
    pub fn with_dry_runner(mut self, runner: Arc<dyn DryRunner>) -> Self {
        self.dry_runner = Some(runner);
        self
    }

    /// Runs every proposal version against the task's acceptance tests with this runner.
    /// Without one, tasks with tests report "not run: no sandbox" for every proposal.
    #[must_use]
    pub fn with_test_runner(mut self, runner: Arc<dyn TestRunner>) -> Self {
        self.test_runner = Some(runner);
        self
    }

    /// Seats the role's standing council from this registry in every deliberation whose
    /// request does not choose its own council.
    #[must_use]
    pub fn with_councils(mut self, councils: Arc<dyn CouncilStore>) -> Self {
        self.councils = Some(councils);
        self
    }

    pub fn backend_configured(&self) -> bool {
        self.backend.is_some()
    }

    pub fn settings(&self) -> &DeliberationSettings {
        &self.settings
    }

    /// The counters this use case reports to.
    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    /// The configured backend.
    ///
    /// # Errors
    /// [`ApplicationError::BackendNotConfigured`] when there is none.
    pub fn backend(&self) -> Result<&dyn AgentBackend> {
        self.backend.as_deref().ok_or(ApplicationError::BackendNotConfigured)
    }

    /// Checks a command against this server (backend present, profiles known), seats the
    /// council — the role's standing council unless the command chose its own — and returns
    /// the task id with the deliberation ready to run.
    ///
    /// # Errors
    /// `BackendNotConfigured`; `InvalidArgument` on `agent_profiles` or `num_agents`;
    /// `FailedPrecondition` when a standing council's profile is gone; `Store`.
    pub async fn prepare(&self, command: DeliberateCommand) -> Result<(TaskId, Deliberation)> {
        let backend = self.backend()?;
        if let Some((council, rounds)) = standing_seats(self.councils.as_deref(), backend, &command).await? {
            let task_id = self.task_id_for(command.task_id)?;
            return Ok((task_id, self.configured(Deliberation::new(council, command.task, rounds))));
        }
        if let Some(unknown) = command.profiles.iter().find(|p| !backend.has_profile(p)) {
            return Err(ApplicationError::InvalidArgument {
                field: "agent_profiles".into(),
                reason: format!("unknown model profile \"{unknown}\""),
            });
        }
        if command.profiles.is_empty() && !backend.has_profile(&ProfileName::default_profile()) {
            return Err(ApplicationError::InvalidArgument {
                field: "agent_profiles".into(),
                reason: "no default model profile is configured; name one".into(),
            });
        }
        let council = Council::assemble(command.role, command.num_agents, &command.profiles)?;
        let task_id = self.task_id_for(command.task_id)?;
        Ok((task_id, self.configured(Deliberation::new(council, command.task, command.rounds))))
    }

    /// The id a client chose, or a new one from the id generator (held to the same rule: an id
    /// generator that broke it would be a bug, refused here rather than stored).
    fn task_id_for(&self, chosen: Option<TaskId>) -> Result<TaskId> {
        match chosen {
            Some(task_id) => Ok(task_id),
            None => Ok(TaskId::new(self.ids.new_id())?),
        }
    }

    /// A new deliberation with the early stop and strategy its task asks for, or the
    /// server's. They are kept with it, so a resumed deliberation goes on as it began.
    fn configured(&self, mut deliberation: Deliberation) -> Deliberation {
        let constraints = deliberation.task().constraints();
        let early_stop = constraints.early_stop().unwrap_or(self.settings.early_stop);
        let strategy = constraints.strategy().unwrap_or(self.settings.strategy);
        deliberation.set_early_stop(early_stop);
        if strategy == Strategy::Cascade {
            deliberation.start_cascade();
        }
        deliberation
    }

    /// The deadline of a deliberation that starts now.
    pub fn deadline_for(&self, deliberation: &Deliberation) -> (Duration, Instant) {
        let timeout = deliberation.task().constraints().timeout().unwrap_or(self.settings.default_timeout);
        (timeout, Instant::now() + timeout)
    }

    /// Prepares and runs a deliberation to completion.
    ///
    /// # Errors
    /// See [`Deliberate::prepare`] and [`Deliberate::run`].
    pub async fn execute(
        &self,
        command: DeliberateCommand,
        observer: &dyn ProgressObserver,
    ) -> Result<DeliberationReport> {
        let (task_id, deliberation) = self.prepare(command).await?;
        let (timeout, deadline) = self.deadline_for(&deliberation);
        self.run(&task_id, Caller::ANONYMOUS, deliberation, timeout, deadline, observer).await
    }

    /// Runs a prepared deliberation until it completes or `deadline` passes.
    ///
    /// Dropping the returned future cancels every outstanding agent call.
    ///
    /// # Errors
    /// `AllAgentsFailed` when no proposal survives, `DeadlineExceeded` at the deadline.
    pub async fn run(
        &self,
        task_id: &TaskId,
        principal: &str,
        mut deliberation: Deliberation,
        timeout: Duration,
        deadline: Instant,
        observer: &dyn ProgressObserver,
    ) -> Result<DeliberationReport> {
        let backend = self.backend()?;
        let role = deliberation.council().role();
        let rounds = deliberation.rounds();
        let started_at_ms = self.clock.now_ms();
        let started = Instant::now();
        let span = info_span!("deliberation", task_id = %task_id, role = %role, agents = deliberation.council().len(), rounds);

        let driven =
            tokio::time::timeout_at(deadline, self.drive(backend, task_id, &mut deliberation, observer))
                .instrument(span)
                .await;
        let elapsed = started.elapsed();
        let result = match driven {
            Ok(driven) => driven,
            Err(_elapsed) => {
                // The finished proposals are kept, scored and ranked as they stand.
                let partial = deliberation.partial_outcome(&self.settings.weights).map(Box::new);
                Err(ApplicationError::DeadlineExceeded { timeout, phase: deliberation.phase(), partial })
            }
        };
        let outcome_label = match &result {
            Ok(_) => "completed",
            Err(ApplicationError::DeadlineExceeded { .. }) => "timeout",
            Err(_) => "failed",
        };
        observability::deliberation_ran(role, outcome_label, elapsed);
        self.counters.record_deliberation(principal, role, elapsed, result.is_ok());
        self.counters.record_agent_calls(principal, &deliberation.total_usage());
        if let Ok(outcome) = &result {
            let (reviews, graded) = outcome.review_counts();
            observability::deliberation_completed(role, outcome.path, reviews, graded);
        }
        match &result {
            Ok(outcome) => info!(
                task_id = %task_id,
                path = %outcome.path,
                winner = %outcome.winner().agent.id,
                duration_ms = elapsed.as_millis() as u64,
                failures = outcome.failures.len(),
                calls_saved = outcome.calls_saved,
                "deliberation completed"
            ),
            Err(error) => warn!(task_id = %task_id, %error, "deliberation failed"),
        }
        let outcome = result?;
        Ok(DeliberationReport {
            task_id: task_id.to_owned(),
            role,
            task: deliberation.task().clone(),
            rounds,
            started_at_ms,
            duration_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX).max(1),
            outcome,
            council_id: deliberation.council().id().cloned(),
        })
    }
}

mod replies;
mod rounds;

#[cfg(test)]
mod execution_tests;
#[cfg(test)]
mod step_tests;
#[cfg(test)]
mod tests;
