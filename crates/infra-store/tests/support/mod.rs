//! What the store tests share: a database per test (SQLite in a temp dir, PostgreSQL in a
//! fresh schema) and a deliberation built with the real domain API.
#![allow(dead_code, reason = "each test crate uses a different part of the support code")]

use std::collections::BTreeMap;
use std::sync::Arc;

use orchestrator_application::ports::{CouncilStore, DeliberationStore, NewDeliberation, Outbox};
use orchestrator_domain::{
    Council, CouncilId, Deliberation, DeliberationOutcome, DryRunOutcome, PeerScore, Phase, ProfileName,
    Review, Role, Rounds, ScoringWeights, Task, TaskConstraints, TokenUsage,
};
use orchestrator_infra_store::{PostgresStore, SqliteStore, StoreOptions};
use sqlx::{Connection, Executor, PgConnection};

/// The contract suite checks behaviour, not timeouts: 200 writers queueing for a pool of 10
/// on a loaded CI machine may wait longer than the production default of a few seconds.
pub(crate) fn contract_options() -> StoreOptions {
    StoreOptions { acquire_timeout: std::time::Duration::from_secs(60), ..StoreOptions::default() }
}

/// The three ports a test database serves, each as the `Arc<dyn …>` the code under test takes.
pub(crate) trait TestDb {
    type Store: DeliberationStore + CouncilStore + Outbox + 'static;

    fn shared(&self) -> &Arc<Self::Store>;

    fn store(&self) -> Arc<dyn DeliberationStore> {
        self.shared().clone()
    }

    fn councils(&self) -> Arc<dyn CouncilStore> {
        self.shared().clone()
    }

    fn outbox(&self) -> Arc<dyn Outbox> {
        self.shared().clone()
    }
}

impl TestDb for SqliteDb {
    type Store = SqliteStore;

    fn shared(&self) -> &Arc<SqliteStore> {
        &self.store
    }
}

impl TestDb for PostgresDb {
    type Store = PostgresStore;

    fn shared(&self) -> &Arc<PostgresStore> {
        &self.store
    }
}

/// A SQLite store on a file in a temp dir that lives as long as this value.
pub(crate) struct SqliteDb {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) path: std::path::PathBuf,
    pub(crate) store: Arc<SqliteStore>,
}

impl SqliteDb {
    pub(crate) async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orchestrator.db");
        let store = Arc::new(SqliteStore::open(path.to_str().unwrap(), &contract_options()).await.unwrap());
        Self { dir, path, store }
    }
}

/// A PostgreSQL store in a schema of its own, dropped by [`PostgresDb::drop_schema`].
pub(crate) struct PostgresDb {
    pub(crate) url: String,
    pub(crate) schema: String,
    pub(crate) store: Arc<PostgresStore>,
}

impl PostgresDb {
    /// The test database, or `None` (after a note on stderr) when PostgreSQL is unreachable.
    ///
    /// # Panics
    /// When PostgreSQL is unreachable and `CI=true`: in CI a missing database is a failure.
    pub(crate) async fn new() -> Option<Self> {
        let url = orchestrator_test_support::services::pg_url();
        match PgConnection::connect(&url).await {
            Ok(conn) => {
                let _ = conn.close().await;
            }
            Err(error) => {
                let why = format!("{}: {error}", orchestrator_infra_store::redact_url(&url));
                orchestrator_test_support::skip("PostgreSQL", "set ORCHESTRATOR_TEST_PG_URL", why);
                return None;
            }
        }
        let schema = format!("store_test_{}", uuid::Uuid::new_v4().simple());
        let store = Arc::new(PostgresStore::connect(&url, Some(&schema), &contract_options()).await.unwrap());
        Some(Self { url, schema, store })
    }

    /// A second store on the same schema, as a restarted server opens it.
    pub(crate) async fn reopen(&self) -> Arc<PostgresStore> {
        Arc::new(
            PostgresStore::connect(&self.url, Some(&self.schema), &StoreOptions::default()).await.unwrap(),
        )
    }

    pub(crate) async fn drop_schema(self) {
        self.store.close().await;
        let mut conn = PgConnection::connect(&self.url).await.unwrap();
        conn.execute(format!("DROP SCHEMA \"{}\" CASCADE", self.schema).as_str()).await.unwrap();
        conn.close().await.unwrap();
    }
}

/// The lease tests create deliberations under: node "test-node", far in the future.
pub(crate) fn lease() -> orchestrator_application::ports::Lease {
    orchestrator_application::ports::Lease { owner: "test-node".into(), until_ms: i64::MAX / 2 }
}

/// The fence of a deliberation created under [`lease`] and never claimed since.
pub(crate) fn fence() -> orchestrator_application::ports::Fence {
    orchestrator_application::ports::Fence::created_by("test-node")
}

/// An unsuccessful end without a duration or partial results.
pub(crate) fn end(
    status: orchestrator_domain::DeliberationStatus,
    error: &str,
    finished_at_ms: i64,
) -> orchestrator_application::ports::UnsuccessfulEnd<'_> {
    orchestrator_application::ports::UnsuccessfulEnd {
        status,
        error,
        finished_at_ms,
        duration_ms: None,
        partial: None,
    }
}

/// A request as a client would submit it.
pub(crate) fn request(task_id: &str, role: Role, created_at_ms: i64) -> NewDeliberation {
    noted_request(task_id, role, created_at_ms, "")
}

/// [`request`] with `note` appended to the task description.
pub(crate) fn noted_request(task_id: &str, role: Role, created_at_ms: i64, note: &str) -> NewDeliberation {
    NewDeliberation {
        task_id: orchestrator_application::testing::tid(task_id),
        role,
        task: task(note),
        rounds: 2,
        num_agents: 4,
        profiles: vec![ProfileName::new("fast").unwrap(), ProfileName::new("slow").unwrap()],
        created_at_ms,
        principal: "anonymous".to_owned(),
        seats: None,
        story_id: None,
    }
}

fn task(note: &str) -> Task {
    let constraints = TaskConstraints::new(
        "Correctness first, then clarity.".to_owned(),
        vec!["retry with exponential backoff".to_owned(), "idempotent requests".to_owned()],
        BTreeMap::from([
            ("repo".to_owned(), "orchestrator".to_owned()),
            ("ticket".to_owned(), "OPS-7".to_owned()),
        ]),
        600,
        2,
    )
    .unwrap();
    Task::new(format!("Design a retry policy for the payment client.{note}"), constraints).unwrap()
}

/// A deliberation run to completion with the domain API.
pub(crate) struct Finished {
    /// The aggregate as it stood after the first review round (a saved phase).
    pub(crate) mid: Deliberation,
    /// The aggregate after `finish`.
    pub(crate) last: Deliberation,
    pub(crate) outcome: DeliberationOutcome,
}

/// Four agents, two review rounds: the fourth fails to propose, one reviewer gives no usable
/// grade in round 1, every survivor revises twice, two dry runs ran (one failed).
pub(crate) fn finished_deliberation(role: Role) -> Finished {
    noted_deliberation(role, "")
}

/// [`finished_deliberation`] with `note` appended to the task description, every proposal,
/// critique, issue, failure reason and dry-run output.
pub(crate) fn noted_deliberation(role: Role, note: &str) -> Finished {
    let profiles = [ProfileName::new("fast").unwrap(), ProfileName::new("slow").unwrap()];
    run(Council::assemble(role, 4, &profiles).unwrap(), note)
}

/// [`finished_deliberation`] with the four agents seated from the standing council `council_id`.
pub(crate) fn standing_deliberation(role: Role, council_id: &str) -> Finished {
    let profiles = [ProfileName::new("fast").unwrap(), ProfileName::new("slow").unwrap()];
    let council =
        Council::assemble(role, 4, &profiles).unwrap().seated_from(CouncilId::new(council_id).unwrap());
    run(council, "")
}

/// [`request`] for a deliberation seated from the standing council of `finished`.
pub(crate) fn standing_request(
    task_id: &str,
    role: Role,
    created_at_ms: i64,
    finished: &Finished,
) -> NewDeliberation {
    request(task_id, role, created_at_ms).with_seats(&finished.last)
}

/// [`finished_deliberation`] at the largest council: 16 agents, 3 rounds.
pub(crate) fn large_deliberation(role: Role) -> Finished {
    let profiles = [ProfileName::new("fast").unwrap(), ProfileName::new("slow").unwrap()];
    run_rounds(Council::assemble(role, 16, &profiles).unwrap(), 3, "")
}

fn run(council: Council, note: &str) -> Finished {
    run_rounds(council, 2, note)
}

fn run_rounds(council: Council, rounds: i64, note: &str) -> Finished {
    let ids: Vec<_> = council.agents().iter().map(|a| a.id.clone()).collect();
    let mut d = Deliberation::new(council, task(note), Rounds::new(rounds).unwrap());
    let usage = |n: u64| TokenUsage {
        prompt_tokens: 100 * n,
        completion_tokens: 40 * n,
        calls: 1,
        latency_ms: 250 * n,
    };

    for agent in d.proposal_requests() {
        d.record_usage(&agent.id, usage(agent.seat as u64 + 1));
        if agent.seat == 3 {
            d.record_failure(&agent.id, format!("backend timed out after 120s{note}")).unwrap();
        } else {
            let content = format!(
                "Proposal by {}: retry with exponential backoff and full jitter, cap at 5 attempts, and send \
                 an idempotency key so idempotent requests are safe to repeat.\n\n```rust\nfn delay(n: u32) -> u64 {{ 100 << n }}\n```{note}",
                agent.id
            );
            d.record_proposal(&agent.id, content, 1_000 + agent.seat as i64).unwrap();
        }
    }
    let mut mid = None;
    while let Ok(phase) = d.advance() {
        match phase {
            Phase::Reviewing { round } => {
                for a in d.review_assignments() {
                    let score = if round == 1 && a.reviewer.seat == 0 {
                        None
                    } else {
                        Some(
                            PeerScore::new(5.5 + (a.reviewer.seat % 4) as f64 + 0.1 * f64::from(round))
                                .unwrap(),
                        )
                    };
                    d.record_usage(&a.reviewer.id, usage(1));
                    d.record_review(Review {
                        reviewer: a.reviewer.id.clone(),
                        target: a.target.clone(),
                        round,
                        critique: format!(
                            "round {round}: {} should bound the total retry time{note}",
                            a.target
                        ),
                        score,
                        issues: vec!["no overall deadline".to_owned(), format!("round {round} nit{note}")],
                    })
                    .unwrap();
                }
            }
            Phase::Revising { round } => {
                if round == 1 {
                    mid = Some(d.clone());
                }
                for r in d.revision_requests() {
                    d.record_usage(&r.author.id, usage(2));
                    d.record_revision(
                        &r.author.id,
                        format!("{}\n\nRevision {round}: add a 30s deadline.", r.current),
                    )
                    .unwrap();
                }
            }
            Phase::Scoring => break,
            Phase::Proposing | Phase::Completed => unreachable!("advance never returns {phase}"),
        }
    }
    let dry_runs = BTreeMap::from([
        (
            ids[0].clone(),
            DryRunOutcome::Ran {
                passed: true,
                exit_code: 0,
                output: format!("ok: 3 passed{note}"),
                message: "passed".into(),
            },
        ),
        (
            ids[1].clone(),
            DryRunOutcome::Ran {
                passed: false,
                exit_code: 101,
                output: "panicked".into(),
                message: "failed".into(),
            },
        ),
    ]);
    let outcome = d.finish(dry_runs, &ScoringWeights::default()).unwrap();
    Finished { mid: mid.unwrap(), last: d, outcome }
}
