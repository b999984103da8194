//! A deliberation driven in process, with agents of your own and the in-memory store: no gRPC,
//! no database, no model server. The door for using the use cases as a library.
//!
//! ```text
//! cargo run -p orchestrator-application --example in_process --features mocks
//! ```
//!
//! The agents here are a few lines of Rust ([`RuleAgents`]): replace them with calls to your own
//! model, tool or human-in-the-loop — anything that implements [`AgentBackend`] — and the same
//! council, review rounds, checks, scoring and ranking run over them.
#![allow(clippy::print_stdout)] // an example prints its result

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use orchestrator_application::ports::{
    AgentBackend, AgentError, Clock, Completion, IdGenerator, ReviewReply, Selection,
};
use orchestrator_application::testing::InMemoryStore;
use orchestrator_application::{
    Caller, Counters, Deliberate, DeliberateCommand, DeliberationSettings, JobSettings, Jobs, Overrides,
};
use orchestrator_domain::{
    Agent, PeerScore, ProfileName, Review, Role, Rounds, Task, TaskConstraints, TestOutcome, TokenUsage,
};

/// Agents that answer by rule: each seat proposes a different design, a reviewer grades a
/// proposal by how many of the task's requirements it names, and a revision adds what the
/// reviews said was missing.
struct RuleAgents;

const DESIGNS: [&str; 3] = [
    "Limit requests per API key with a token bucket kept in Redis; return 429 with Retry-After when it is empty.",
    "Limit requests per API key with a fixed window counter.",
    "Put a reverse proxy in front of the API.",
];

fn usage() -> TokenUsage {
    TokenUsage { prompt_tokens: 0, completion_tokens: 0, calls: 1, latency_ms: 0 }
}

#[async_trait]
impl AgentBackend for RuleAgents {
    fn has_profile(&self, _profile: &ProfileName) -> bool {
        true
    }

    async fn propose(&self, agent: &Agent, _task: &Task) -> Result<Completion, AgentError> {
        let text = DESIGNS[agent.seat % DESIGNS.len()].to_owned();
        Ok(Completion { text, usage: usage(), truncated: false })
    }

    async fn review(
        &self,
        _agent: &Agent,
        task: &Task,
        proposal: &str,
        _tests: &TestOutcome,
    ) -> Result<ReviewReply, AgentError> {
        let requirements = task.constraints().requirements();
        let missing: Vec<String> = requirements
            .iter()
            .filter(|r| !proposal.to_lowercase().contains(&r.to_lowercase()))
            .cloned()
            .collect();
        let met = requirements.len() - missing.len();
        let grade = 10.0 * met as f64 / requirements.len().max(1) as f64;
        Ok(ReviewReply {
            critique: format!("addresses {met} of {} requirements", requirements.len()),
            score: PeerScore::new(grade).ok(),
            issues: missing.iter().map(|r| format!("does not mention \"{r}\"")).collect(),
            usage: usage(),
        })
    }

    async fn revise(
        &self,
        _agent: &Agent,
        task: &Task,
        current: &str,
        _tests: &TestOutcome,
        _reviews: &[Review],
    ) -> Result<Completion, AgentError> {
        let mut text = current.to_owned();
        for requirement in task.constraints().requirements() {
            if !text.to_lowercase().contains(&requirement.to_lowercase()) {
                text.push_str(&format!(" It will {requirement}."));
            }
        }
        Ok(Completion { text, usage: usage(), truncated: false })
    }

    async fn select(
        &self,
        _agent: &Agent,
        _task: &Task,
        _candidates: &[String],
    ) -> Result<Selection, AgentError> {
        Ok(Selection { choice: Some(0), rationale: "the first is best".to_owned(), usage: usage() })
    }
}

/// The wall clock.
struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
    }
}

/// Ids `run-1`, `run-2`, …
#[derive(Default)]
struct Counter(AtomicU64);

impl IdGenerator for Counter {
    fn new_id(&self) -> String {
        format!("run-{}", self.0.fetch_add(1, Ordering::SeqCst) + 1)
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let deliberate = Deliberate::new(
        Some(Arc::new(RuleAgents)),
        Arc::clone(&clock),
        Arc::new(Counter::default()),
        Arc::new(Counters::new(clock.now_ms())),
        DeliberationSettings::default(),
    );
    let store = Arc::new(InMemoryStore::default());
    let jobs = Arc::new(Jobs::new(Arc::new(deliberate), store, clock, JobSettings::default()));

    let constraints = TaskConstraints::new(
        "Correctness first, then operability.".to_owned(),
        vec!["limit requests per API key".to_owned(), "return 429 with Retry-After".to_owned()],
        Default::default(),
        0,
        0,
    )?;
    let command = DeliberateCommand {
        task_id: None,
        role: Role::Dev,
        task: Task::new("Add rate limiting to the public REST API", constraints)?,
        rounds: Rounds::new(1)?,
        num_agents: 3,
        profiles: Vec::new(),
        overrides: Overrides::ALL,
        story_id: None,
    };
    let report = jobs.run(&Caller::anonymous(), command, None).await?;

    println!(
        "deliberation {} ({} agents, {} round)",
        report.task_id,
        report.outcome.results.len(),
        report.rounds
    );
    for result in &report.outcome.results {
        let peer = result.peer_score.map_or_else(|| "-".to_owned(), |p| format!("{p:.1}/10"));
        println!(
            "#{} {} score {:.2} (peers {peer}): {}",
            result.rank,
            result.agent.id,
            result.score.value(),
            result.proposal.content()
        );
    }
    Ok(())
}
