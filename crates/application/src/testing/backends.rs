//! Agent backends for this crate's own tests: a scripted mock and one whose calls sleep.

/// A mock backend whose agents propose "… plan <agent id>" and revise by appending
/// "(revised)"; tests add their own review and select expectations.
pub(crate) fn scripted_backend() -> crate::ports::MockAgentBackend {
    use crate::ports::Completion;
    use orchestrator_domain::TokenUsage;

    let mut backend = crate::ports::MockAgentBackend::new();
    backend.expect_has_profile().return_const(true);
    backend.expect_propose().returning(|agent, _| {
        Ok(Completion {
            text: format!("Rate limit per API key with a token bucket — plan {}", agent.id),
            usage: TokenUsage::default(),
            truncated: false,
        })
    });
    revising_by_appending(&mut backend);
    backend
}

/// Makes `backend`'s agents revise by appending "(revised)" to what they proposed.
pub(crate) fn revising_by_appending(backend: &mut crate::ports::MockAgentBackend) {
    use crate::ports::Completion;
    use orchestrator_domain::TokenUsage;

    backend.expect_revise().returning(|_, _, current, _, _| {
        Ok(Completion {
            text: format!("{current} (revised)"),
            usage: TokenUsage::default(),
            truncated: false,
        })
    });
}

pub(crate) use sleeping::SleepingBackend;

mod sleeping {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use async_trait::async_trait;
    use orchestrator_domain::{Agent, PeerScore, ProfileName, Review, Task, TestOutcome, TokenUsage};

    use crate::ports::{AgentBackend, AgentError, Completion, ReviewReply, Selection};

    /// What a [`SleepingBackend`] agent proposes.
    fn sleeping_answer(agent: &Agent) -> String {
        format!(
            "Token bucket per API key, rate limit enforced at the gateway. Written by seat {}.",
            agent.seat
        )
    }

    /// A backend whose every call sleeps, counting calls started, in flight, finished and
    /// abandoned; `failing()` makes every call fail after its sleep.
    #[derive(Default)]
    pub(crate) struct SleepingBackend {
        delay: Option<Duration>,
        fail: bool,
        pub(crate) in_flight: AtomicUsize,
        pub(crate) max_in_flight: AtomicUsize,
        pub(crate) started: AtomicUsize,
        pub(crate) finished: AtomicUsize,
        pub(crate) abandoned: Arc<AtomicUsize>,
    }

    struct CallGuard<'a> {
        backend: &'a SleepingBackend,
        done: bool,
    }

    impl Drop for CallGuard<'_> {
        fn drop(&mut self) {
            self.backend.in_flight.fetch_sub(1, Ordering::SeqCst);
            if !self.done {
                self.backend.abandoned.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    impl SleepingBackend {
        pub(crate) fn new(delay: Duration) -> Self {
            Self { delay: Some(delay), ..Self::default() }
        }

        pub(crate) fn failing(self) -> Self {
            Self { fail: true, ..self }
        }

        async fn call(&self) -> Result<(), AgentError> {
            self.started.fetch_add(1, Ordering::SeqCst);
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_in_flight.fetch_max(now, Ordering::SeqCst);
            let mut guard = CallGuard { backend: self, done: false };
            tokio::time::sleep(self.delay.unwrap_or_default()).await;
            guard.done = true;
            self.finished.fetch_add(1, Ordering::SeqCst);
            if self.fail { Err(AgentError::Unavailable("down".into())) } else { Ok(()) }
        }
    }

    #[async_trait]
    impl AgentBackend for SleepingBackend {
        fn has_profile(&self, _profile: &ProfileName) -> bool {
            true
        }

        async fn propose(&self, agent: &Agent, _task: &Task) -> Result<Completion, AgentError> {
            self.call().await?;
            Ok(Completion {
                text: sleeping_answer(agent),
                usage: TokenUsage { prompt_tokens: 10, completion_tokens: 20, ..Default::default() },
                truncated: false,
            })
        }

        async fn review(
            &self,
            _agent: &Agent,
            _task: &Task,
            _proposal: &str,
            _tests: &TestOutcome,
        ) -> Result<ReviewReply, AgentError> {
            self.call().await?;
            Ok(ReviewReply {
                critique: "fine".into(),
                score: Some(PeerScore::new(7.0).map_err(|e| AgentError::InvalidResponse(e.to_string()))?),
                ..Default::default()
            })
        }

        async fn revise(
            &self,
            agent: &Agent,
            _task: &Task,
            _current: &str,
            _tests: &TestOutcome,
            _reviews: &[Review],
        ) -> Result<Completion, AgentError> {
            self.call().await?;
            Ok(Completion {
                text: format!("{} Revised.", sleeping_answer(agent)),
                usage: TokenUsage::default(),
                truncated: false,
            })
        }

        async fn select(
            &self,
            _agent: &Agent,
            _task: &Task,
            _candidates: &[String],
        ) -> Result<Selection, AgentError> {
            self.call().await?;
            Ok(Selection { choice: Some(0), rationale: "best".into(), usage: TokenUsage::default() })
        }
    }
}
