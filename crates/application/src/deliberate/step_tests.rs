//! Each agent's step is reported as its call lands, before its phase ends.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use orchestrator_domain::{AgentId, PeerScore, TaskConstraints};

use super::*;
use crate::ports::{AgentError, AgentStep, StepKind};
use crate::ports::{Completion, MockClock, MockIdGenerator, ReviewReply, Selection};
use orchestrator_domain::{Agent, Phase, Review, TestOutcome, TokenUsage};

/// How long one call waits: seat 0 is the slowest, so calls land in the reverse of seat order.
const UNIT: Duration = Duration::from_millis(100);

/// Answers after `(agents - seat) * UNIT`; seat 1 fails its revision.
struct Staggered {
    agents: usize,
}

impl Staggered {
    async fn wait(&self, agent: &Agent) {
        tokio::time::sleep(UNIT * u32::try_from(self.agents - agent.seat).unwrap()).await;
    }

    fn usage(agent: &Agent) -> TokenUsage {
        TokenUsage { prompt_tokens: 100, completion_tokens: agent.seat as u64, ..TokenUsage::default() }
    }
}

#[async_trait]
impl AgentBackend for Staggered {
    fn has_profile(&self, _profile: &ProfileName) -> bool {
        true
    }

    async fn propose(&self, agent: &Agent, _task: &Task) -> std::result::Result<Completion, AgentError> {
        self.wait(agent).await;
        let text = format!("Token bucket per API key, seat {}.", agent.seat);
        Ok(Completion { text, usage: Self::usage(agent), truncated: false })
    }

    async fn review(
        &self,
        agent: &Agent,
        _task: &Task,
        _proposal: &str,
        _tests: &TestOutcome,
    ) -> std::result::Result<ReviewReply, AgentError> {
        self.wait(agent).await;
        Ok(ReviewReply {
            critique: "fine".into(),
            score: Some(PeerScore::new(6.0).unwrap()),
            issues: vec![],
            usage: Self::usage(agent),
        })
    }

    async fn revise(
        &self,
        agent: &Agent,
        _task: &Task,
        current: &str,
        _tests: &TestOutcome,
        _reviews: &[Review],
    ) -> std::result::Result<Completion, AgentError> {
        self.wait(agent).await;
        if agent.seat == 1 {
            return Err(AgentError::Unavailable("the model went away".into()));
        }
        Ok(Completion { text: current.to_owned(), usage: Self::usage(agent), truncated: false })
    }

    async fn select(
        &self,
        _agent: &Agent,
        _task: &Task,
        _candidates: &[String],
    ) -> std::result::Result<Selection, AgentError> {
        Err(AgentError::Unavailable("no selection here".into()))
    }
}

/// What the observer saw, with when (paused time: exact).
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Step { at: Duration, step: AgentStep },
    Phase { at: Duration, phase: String },
}

struct Recording {
    started: Instant,
    seen: Mutex<Vec<Seen>>,
}

#[async_trait]
impl ProgressObserver for Recording {
    async fn phase_completed(&self, _task_id: &orchestrator_domain::TaskId, d: &Deliberation) {
        let at = self.started.elapsed();
        self.seen.lock().unwrap().push(Seen::Phase { at, phase: d.phase().to_string() });
    }

    async fn agent_step(&self, task_id: &orchestrator_domain::TaskId, step: &AgentStep) {
        assert_eq!(task_id, "t-1");
        let at = self.started.elapsed();
        self.seen.lock().unwrap().push(Seen::Step { at, step: step.clone() });
    }
}

fn use_case(agents: usize) -> Deliberate {
    let mut clock = MockClock::new();
    clock.expect_now_ms().return_const(1_000_i64);
    let mut ids = MockIdGenerator::new();
    ids.expect_new_id().return_const("generated-id".to_owned());
    Deliberate::new(
        Some(Arc::new(Staggered { agents })),
        Arc::new(clock),
        Arc::new(ids),
        Arc::new(Counters::new(0)),
        DeliberationSettings { early_stop: EarlyStop::Off, ..DeliberationSettings::default() },
    )
}

fn command() -> DeliberateCommand {
    let constraints = TaskConstraints::new(String::new(), vec![], BTreeMap::new(), 0, 0).unwrap();
    DeliberateCommand {
        task_id: Some(orchestrator_domain::TaskId::new("t-1").unwrap()),
        role: Role::Dev,
        task: Task::new("Design a rate limiter", constraints).unwrap(),
        rounds: Rounds::new(1).unwrap(),
        num_agents: 3,
        profiles: vec![],
        overrides: crate::Overrides::ALL,
        story_id: None,
    }
}

fn step(at_units: u32, agent: &str, phase: &str, kind: StepKind, tokens: u64) -> Seen {
    Seen::Step {
        at: UNIT * at_units,
        step: AgentStep {
            agent_id: AgentId::new(agent).unwrap(),
            phase: Phase::parse(phase).unwrap(),
            kind,
            tokens,
        },
    }
}

fn phase(at_units: u32, phase: &str) -> Seen {
    Seen::Phase { at: UNIT * at_units, phase: phase.into() }
}

#[tokio::test(start_paused = true)]
async fn each_agents_step_is_reported_as_its_call_lands_before_the_phase_ends() {
    let recording = Recording { started: Instant::now(), seen: Mutex::new(Vec::new()) };
    let report = use_case(3).execute(command(), &recording).await.unwrap();

    let reviewed =
        |target: &str| StepKind::Reviewed { target: AgentId::new(target).unwrap(), score: Some(6.0) };
    let dropped =
        StepKind::Dropped { reason: AgentError::Unavailable("the model went away".into()).to_string() };
    let seen = recording.seen.into_inner().unwrap();
    // Seat 2 (dev-3) answers after one unit, seat 0 (dev-1) after three: every step lands on
    // its own, the phase only when the slowest is in.
    assert_eq!(
        seen,
        [
            step(1, "dev-3", "proposing", StepKind::Proposed, 102),
            step(2, "dev-2", "proposing", StepKind::Proposed, 101),
            step(3, "dev-1", "proposing", StepKind::Proposed, 100),
            phase(3, "reviewing (round 1)"),
            step(4, "dev-3", "reviewing (round 1)", reviewed("dev-1"), 102),
            step(5, "dev-2", "reviewing (round 1)", reviewed("dev-3"), 101),
            step(6, "dev-1", "reviewing (round 1)", reviewed("dev-2"), 100),
            phase(6, "revising (round 1)"),
            step(7, "dev-3", "revising (round 1)", StepKind::Revised, 102),
            step(8, "dev-2", "revising (round 1)", dropped, 0),
            step(9, "dev-1", "revising (round 1)", StepKind::Revised, 100),
            phase(9, "scoring"),
            phase(9, "completed"),
        ]
    );
    assert_eq!(report.outcome.results.len(), 2, "dev-2 was dropped");
}
