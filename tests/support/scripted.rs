//! A scripted agent backend: deterministic text, grades and choices, with failures on demand.
//! Test code only — the server never runs it.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use orchestrator_application::ports::{AgentBackend, AgentError, Completion, ReviewReply, Selection};
use orchestrator_domain::{Agent, PeerScore, ProfileName, Review, Task, TestOutcome, TokenUsage};

/// Writes proposals that cover the task's requirements, grades them by seat, and can be told
/// to fail some agents or to take its time.
#[derive(Default)]
pub struct ScriptedBackend {
    failing: BTreeSet<String>,
    profiles: Option<BTreeSet<String>>,
    delay: Duration,
    python: bool,
    pub calls: AtomicUsize,
    pub prompts: Mutex<Vec<String>>,
}

impl ScriptedBackend {
    pub fn new() -> Self {
        Self::default()
    }

    /// Agents with these ids fail every call.
    pub fn failing(mut self, ids: &[&str]) -> Self {
        self.failing = ids.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    /// Only these profiles exist (default: any).
    pub fn with_profiles(mut self, names: &[&str]) -> Self {
        self.profiles = Some(names.iter().map(|s| (*s).to_owned()).collect());
        self
    }

    /// Proposals carry a Python block: valid from even seats, a syntax error from odd seats.
    pub fn with_python(mut self) -> Self {
        self.python = true;
        self
    }

    /// Every call sleeps this long first.
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    async fn enter(&self, agent: &Agent, what: String) -> Result<TokenUsage, AgentError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.prompts.lock().expect("prompt log").push(what);
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        if self.failing.contains(agent.id.as_str()) {
            return Err(AgentError::Unavailable(format!("scripted failure of {}", agent.id)));
        }
        Ok(TokenUsage { prompt_tokens: 100, completion_tokens: 50, ..TokenUsage::default() })
    }
}

#[async_trait]
impl AgentBackend for ScriptedBackend {
    fn has_profile(&self, profile: &ProfileName) -> bool {
        self.profiles.as_ref().is_none_or(|p| p.contains(profile.as_str()))
    }

    async fn propose(&self, agent: &Agent, task: &Task) -> Result<Completion, AgentError> {
        let usage = self.enter(agent, format!("propose {} {}", agent.id, task.description())).await?;
        // Each covered requirement in its own words (its words reordered): the lint check does
        // not count requirements merely copied from the prompt.
        let covered: Vec<String> = task
            .constraints()
            .requirements()
            .iter()
            .take(agent.seat + 1)
            .map(|requirement| {
                let mut words: Vec<&str> = requirement.split_whitespace().collect();
                words.sort_unstable();
                words.join(" ")
            })
            .collect();
        let mut text = format!(
            "Proposal from seat {} on {}: {}\nAddresses: {}",
            agent.seat,
            agent.profile,
            task.description(),
            covered.join("; ")
        );
        if self.python {
            let colon = if agent.seat.is_multiple_of(2) { ":" } else { "" };
            text.push_str(&format!("\n```python\ndef limit(key){colon}\n    return key\n```\n"));
        }
        Ok(Completion { text, usage, truncated: false })
    }

    async fn review(
        &self,
        agent: &Agent,
        _task: &Task,
        proposal: &str,
        _tests: &TestOutcome,
    ) -> Result<ReviewReply, AgentError> {
        let usage = self.enter(agent, format!("review {}", agent.id)).await?;
        let grade = 5.0 + (proposal.len() % 5) as f64;
        Ok(ReviewReply {
            critique: format!("{} finds the plan sound; tighten error handling", agent.id),
            score: Some(PeerScore::new(grade).map_err(|e| AgentError::InvalidResponse(e.to_string()))?),
            issues: vec!["error handling".into()],
            usage,
        })
    }

    async fn revise(
        &self,
        agent: &Agent,
        _task: &Task,
        current: &str,
        _tests: &TestOutcome,
        reviews: &[Review],
    ) -> Result<Completion, AgentError> {
        let usage = self.enter(agent, format!("revise {}", agent.id)).await?;
        Ok(Completion {
            text: format!("{current}\nRevised after {} review(s): error handling added.", reviews.len()),
            usage,
            truncated: false,
        })
    }

    async fn select(
        &self,
        agent: &Agent,
        _task: &Task,
        candidates: &[String],
    ) -> Result<Selection, AgentError> {
        let usage = self.enter(agent, format!("select {} of {}", agent.id, candidates.len())).await?;
        Ok(Selection {
            choice: Some(candidates.len() - 1),
            rationale: "the last candidate is the most cautious".into(),
            usage,
        })
    }
}
