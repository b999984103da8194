use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use orchestrator_domain::{DeliberationStatus, Role, Rounds, Task, TaskConstraints};

use super::*;
use crate::counters::Counters;
use crate::deliberate::DeliberationSettings;
use crate::deliberate::{Deliberate, DeliberateCommand};
use crate::error::ApplicationError;
use crate::jobs::Recovery;
use crate::ports::{Clock, NewDeliberation};
use crate::ports::{MockClock, MockIdGenerator};
use crate::testing::tid;
use crate::testing::{InMemoryStore, SleepingBackend};

fn anon() -> crate::caller::Caller {
    crate::caller::Caller::anonymous()
}

const STEP: Duration = Duration::from_secs(1);

fn jobs_with(backend: Arc<SleepingBackend>, store: Arc<InMemoryStore>, settings: JobSettings) -> Arc<Jobs> {
    let mut clock = MockClock::new();
    clock.expect_now_ms().return_const(5_000_i64);
    let clock: Arc<dyn Clock> = Arc::new(clock);
    let mut ids = MockIdGenerator::new();
    let counter = AtomicUsize::new(0);
    ids.expect_new_id().returning(move || format!("gen-{}", counter.fetch_add(1, Ordering::SeqCst)));
    let deliberate = Arc::new(Deliberate::new(
        Some(backend),
        Arc::clone(&clock),
        Arc::new(ids),
        Arc::new(Counters::new(0)),
        DeliberationSettings::default(),
    ));
    Arc::new(Jobs::new(deliberate, store, clock, settings))
}

fn command(task_id: &str, timeout_seconds: i64) -> DeliberateCommand {
    let constraints =
        TaskConstraints::new(String::new(), vec![], BTreeMap::new(), timeout_seconds, 0).unwrap();
    DeliberateCommand {
        task_id: Some(orchestrator_domain::TaskId::new(task_id).unwrap()),
        role: Role::Data,
        task: Task::new("Design the ingestion queue", constraints).unwrap(),
        rounds: Rounds::new(1).unwrap(),
        num_agents: 2,
        profiles: vec![],
        overrides: crate::Overrides::ALL,
        story_id: None,
    }
}

/// Waits on the paused clock until `done` holds: the condition is checked after every
/// millisecond of (auto-advanced) time, for at most a paused hour.
async fn until(what: &str, done: impl Fn() -> bool) {
    for _ in 0..3_600_000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("never happened: {what}");
}

#[tokio::test(start_paused = true)]
async fn submitted_job_runs_in_the_background_and_is_saved_phase_by_phase() {
    let store = Arc::new(InMemoryStore::default());
    let jobs = jobs_with(Arc::new(SleepingBackend::new(STEP)), Arc::clone(&store), JobSettings::default());

    let submission = jobs.submit(&anon(), command("job-1", 0)).await.unwrap();
    assert_eq!(
        submission,
        Submission { task_id: tid("job-1"), status: DeliberationStatus::Pending, created: true }
    );

    until("job-1 starts", || store.status("job-1") == DeliberationStatus::InProgress).await;
    jobs.until_idle().await;

    let record = jobs.get(&anon(), &tid("job-1")).await.unwrap();
    assert_eq!(record.status, DeliberationStatus::Completed);
    assert_eq!(record.outcome.as_ref().unwrap().results.len(), 2);
    assert!(record.winner_id.is_some());
    // reviewing, revising, scoring; the completion itself stores the final state.
    assert_eq!(store.saves.load(Ordering::SeqCst), 3);
    assert_eq!(record.progress.unwrap().reviews().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn the_same_task_id_never_starts_a_second_deliberation() {
    let store = Arc::new(InMemoryStore::default());
    let backend = Arc::new(SleepingBackend::new(STEP));
    let jobs = jobs_with(Arc::clone(&backend), Arc::clone(&store), JobSettings::default());
    assert!(jobs.submit(&anon(), command("same", 0)).await.unwrap().created);
    let again = jobs.submit(&anon(), command("same", 0)).await.unwrap();
    assert!(!again.created);
    jobs.until_idle().await;
    assert_eq!(backend.started.load(Ordering::SeqCst), 6, "one deliberation of 2 agents × 3 phases");
    let replay = jobs.run(&anon(), command("same", 0), None).await.unwrap();
    assert_eq!(replay.task_id, "same");
    assert_eq!(replay.outcome, jobs.get(&anon(), &tid("same")).await.unwrap().outcome.unwrap());
    assert_eq!(backend.started.load(Ordering::SeqCst), 6, "a retry is answered from storage");
    jobs.submit(&anon(), command("pending", 0)).await.unwrap();
    jobs.cancel(&anon(), &tid("pending")).await.unwrap();
    let err = jobs.run(&anon(), command("pending", 0), None).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "task_id \"pending\" already exists with status CANCELLED; read it with GetDeliberationResult"
    );
}

#[tokio::test(start_paused = true)]
async fn beyond_running_and_queued_capacity_submissions_are_refused_and_not_stored() {
    let store = Arc::new(InMemoryStore::default());
    let jobs = jobs_with(
        Arc::new(SleepingBackend::new(STEP)),
        Arc::clone(&store),
        JobSettings { max_running: 1, queue_capacity: 1, ..JobSettings::default() },
    );
    jobs.submit(&anon(), command("a", 0)).await.unwrap();
    jobs.submit(&anon(), command("b", 0)).await.unwrap();
    let err = jobs.submit(&anon(), command("c", 0)).await.unwrap_err();
    assert!(matches!(err, ApplicationError::ResourceExhausted(_)), "{err:?}");
    assert!(store.get(&tid("c")).await.unwrap().is_none());
    until("a starts", || store.status("a") == DeliberationStatus::InProgress).await;
    assert_eq!(store.status("b"), DeliberationStatus::Pending, "waits for the only slot");
    jobs.until_idle().await;
    assert_eq!(store.status("b"), DeliberationStatus::Completed);
    assert!(jobs.submit(&anon(), command("c", 0)).await.unwrap().created, "capacity is given back");
}

#[tokio::test(start_paused = true)]
async fn no_principal_holds_more_than_its_share_of_the_queue() {
    let store = Arc::new(InMemoryStore::default());
    let jobs = jobs_with(
        Arc::new(SleepingBackend::new(STEP)),
        Arc::clone(&store),
        JobSettings { max_running: 1, queue_capacity: 3, queue_share: 0.5, ..JobSettings::default() },
    );
    let (alice, bob) = (crate::caller::Caller::new("alice", false), crate::caller::Caller::new("bob", false));
    jobs.submit(&alice, command("alice-1", 0)).await.unwrap();
    jobs.submit(&alice, command("alice-2", 0)).await.unwrap();
    let err = jobs.submit(&alice, command("alice-3", 0)).await.unwrap_err();
    assert!(matches!(err, ApplicationError::ResourceExhausted(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "alice already has 2 deliberations running or queued, its share of the queue \
         (queue_share 0.5 of 4 places); retry once some have ended"
    );
    assert!(store.get(&tid("alice-3")).await.unwrap().is_none(), "nothing stored");
    // Another principal still gets the rest of the queue.
    jobs.submit(&bob, command("bob-1", 0)).await.unwrap();
    jobs.submit(&bob, command("bob-2", 0)).await.unwrap();
    jobs.until_idle().await;
    assert!(jobs.submit(&alice, command("alice-3", 0)).await.unwrap().created, "the share is given back");
    jobs.until_idle().await;
}

#[tokio::test(start_paused = true)]
async fn the_unauthenticated_caller_has_the_whole_queue() {
    let store = Arc::new(InMemoryStore::default());
    let jobs = jobs_with(
        Arc::new(SleepingBackend::new(STEP)),
        Arc::clone(&store),
        JobSettings { max_running: 1, queue_capacity: 3, queue_share: 0.5, ..JobSettings::default() },
    );
    for task_id in ["a", "b", "c", "d"] {
        jobs.submit(&anon(), command(task_id, 0)).await.unwrap();
    }
    let err = jobs.submit(&anon(), command("e", 0)).await.unwrap_err();
    assert!(err.to_string().contains("4 deliberations are already running or queued"), "{err}");
    jobs.until_idle().await;
}

#[tokio::test(start_paused = true)]
async fn cancel_stops_queued_and_running_deliberations() {
    let store = Arc::new(InMemoryStore::default());
    let backend = Arc::new(SleepingBackend::new(STEP));
    let jobs = jobs_with(
        Arc::clone(&backend),
        Arc::clone(&store),
        JobSettings { max_running: 1, queue_capacity: 4, ..JobSettings::default() },
    );
    jobs.submit(&anon(), command("running", 0)).await.unwrap();
    jobs.submit(&anon(), command("queued", 0)).await.unwrap();
    until("running starts", || store.status("running") == DeliberationStatus::InProgress).await;

    assert_eq!(jobs.cancel(&anon(), &tid("queued")).await.unwrap(), DeliberationStatus::Cancelled);
    assert_eq!(jobs.cancel(&anon(), &tid("running")).await.unwrap(), DeliberationStatus::Cancelled);
    jobs.until_idle().await;

    assert_eq!(store.status("queued"), DeliberationStatus::Cancelled);
    assert_eq!(store.status("running"), DeliberationStatus::Cancelled);
    for task_id in ["queued", "running"] {
        let record = jobs.get(&anon(), &tid(task_id)).await.unwrap();
        assert!(record.duration_ms.is_some_and(|ms| ms > 0), "{task_id}: {:?}", record.duration_ms);
    }
    assert_eq!(backend.started.load(Ordering::SeqCst), 2, "only the first proposals were ever started");
    let err = jobs.cancel(&anon(), &tid("running")).await.unwrap_err();
    assert_eq!(err.to_string(), "deliberation running already ended as CANCELLED");
    assert!(matches!(
        jobs.cancel(&anon(), &tid("nope")).await.unwrap_err(),
        ApplicationError::NotFound { .. }
    ));
}

#[tokio::test(start_paused = true)]
async fn deadline_and_failures_end_in_timeout_and_failed() {
    let store = Arc::new(InMemoryStore::default());
    let jobs =
        jobs_with(Arc::new(SleepingBackend::new(10 * STEP)), Arc::clone(&store), JobSettings::default());
    let err = jobs.run(&anon(), command("slow", 5), None).await.unwrap_err();
    assert!(matches!(err, ApplicationError::DeadlineExceeded { .. }));
    let record = jobs.get(&anon(), &tid("slow")).await.unwrap();
    assert_eq!(record.status, DeliberationStatus::Timeout);
    assert_eq!(record.error.as_deref(), Some("deliberation exceeded its 5s deadline while proposing"));

    let failing = Arc::new(SleepingBackend::new(STEP).failing());
    let jobs = jobs_with(failing, Arc::clone(&store), JobSettings::default());
    assert!(jobs.run(&anon(), command("broken", 0), None).await.is_err());
    let record = jobs.get(&anon(), &tid("broken")).await.unwrap();
    assert_eq!(record.status, DeliberationStatus::Failed);
    assert!(record.error.unwrap().starts_with("every agent failed"));
}

#[tokio::test(start_paused = true)]
async fn a_waiting_caller_that_goes_away_cancels_its_deliberation() {
    let store = Arc::new(InMemoryStore::default());
    let jobs = jobs_with(Arc::new(SleepingBackend::new(STEP)), Arc::clone(&store), JobSettings::default());
    let waited = tokio::time::timeout(STEP / 2, jobs.run(&anon(), command("impatient", 0), None)).await;
    assert!(waited.is_err());
    until("the dropped caller's deliberation is cancelled", || {
        store.status("impatient") == DeliberationStatus::Cancelled
    })
    .await;
}

/// The lease of a process that died long ago.
fn dead_lease() -> crate::ports::Lease {
    crate::ports::Lease { owner: "previous-node".into(), until_ms: 0 }
}

fn previous_fence() -> crate::ports::Fence {
    crate::ports::Fence::created_by("previous-node")
}

fn no_resume() -> JobSettings {
    JobSettings { resume_unfinished: false, ..JobSettings::default() }
}

#[tokio::test(start_paused = true)]
async fn shutdown_waits_for_the_grace_period_then_interrupts_when_not_resuming() {
    let store = Arc::new(InMemoryStore::default());
    let jobs = jobs_with(Arc::new(SleepingBackend::new(STEP)), Arc::clone(&store), no_resume());
    jobs.submit(&anon(), command("quick", 0)).await.unwrap();
    jobs.submit(&anon(), command("long", 600)).await.unwrap();
    // Both need three steps; a grace of one interrupts both.
    jobs.shutdown(STEP).await;
    assert_eq!(store.status("quick"), DeliberationStatus::Interrupted);
    for task_id in ["quick", "long"] {
        let record = jobs.get(&anon(), &tid(task_id)).await.unwrap();
        assert!(record.duration_ms.is_some_and(|ms| ms > 0), "{task_id}: {:?}", record.duration_ms);
    }
    assert_eq!(
        jobs.get(&anon(), &tid("long")).await.unwrap().error.as_deref(),
        Some("the server is shutting down")
    );

    let jobs = jobs_with(Arc::new(SleepingBackend::new(STEP)), Arc::clone(&store), no_resume());
    jobs.submit(&anon(), command("done-in-time", 0)).await.unwrap();
    jobs.shutdown(10 * STEP).await;
    assert_eq!(store.status("done-in-time"), DeliberationStatus::Completed);
}

#[tokio::test(start_paused = true)]
async fn shutdown_leaves_running_work_to_resume_and_the_next_start_finishes_it() {
    let store = Arc::new(InMemoryStore::default());
    let first = Arc::new(SleepingBackend::new(STEP));
    let jobs = jobs_with(Arc::clone(&first), Arc::clone(&store), JobSettings::default());
    jobs.submit(&anon(), command("queued", 0)).await.unwrap();
    let waiting = {
        let jobs = Arc::clone(&jobs);
        tokio::spawn(async move { jobs.run(&anon(), command("waiting", 0), None).await })
    };
    // Proposals (one step) are in and saved; the reviews are under way.
    let reviewing = |task_id| store.saved_phase(task_id).is_some_and(|p| p.action() == "review");
    until("both saved their proposals", || reviewing("queued") && reviewing("waiting")).await;
    jobs.shutdown(Duration::ZERO).await;
    let err = waiting.await.unwrap().unwrap_err();
    assert!(matches!(err, ApplicationError::ShuttingDown { resumable: true }), "{err:?}");
    assert_eq!(store.status("waiting"), DeliberationStatus::InProgress, "left as saved");
    assert_eq!(
        store.get(&tid("waiting")).await.unwrap().unwrap().progress.unwrap().phase().action(),
        "review"
    );

    let second = Arc::new(SleepingBackend::new(STEP));
    let jobs = jobs_with(Arc::clone(&second), Arc::clone(&store), JobSettings::default());
    assert_eq!(jobs.recover().await.unwrap(), Recovery { resumed: 2, interrupted: 0 });
    jobs.until_idle().await;
    for task_id in ["queued", "waiting"] {
        let record = jobs.get(&anon(), &tid(task_id)).await.unwrap();
        assert_eq!(record.status, DeliberationStatus::Completed, "{task_id}");
        let outcome = record.outcome.unwrap();
        assert!(outcome.results.iter().all(|r| r.proposal.revisions().len() == 1));
    }
    // Before: 2 × (2 proposals + 2 reviews cut short). After: each resumed from its saved
    // review phase, 2 reviews + 2 revisions; starting over would have been 6 calls each.
    assert_eq!(first.started.load(Ordering::SeqCst), 8);
    assert_eq!(second.started.load(Ordering::SeqCst), 8);
}

fn orphan(task_id: &str) -> NewDeliberation {
    NewDeliberation {
        task_id: tid(task_id),
        role: Role::Qa,
        task: Task::new("x", TaskConstraints::default()).unwrap(),
        rounds: 1,
        num_agents: 3,
        profiles: vec![],
        created_at_ms: 1,
        principal: crate::caller::Caller::ANONYMOUS.to_owned(),
        seats: None,
        story_id: None,
    }
}

#[tokio::test]
async fn recover_interrupts_what_a_dead_process_left_when_not_resuming() {
    let store = Arc::new(InMemoryStore::default());
    let jobs = jobs_with(Arc::new(SleepingBackend::new(Duration::ZERO)), Arc::clone(&store), no_resume());
    store.create(&orphan("orphan"), &dead_lease(), None).await.unwrap();
    store.mark_started(&tid("orphan"), &previous_fence(), 2, None).await.unwrap();
    assert_eq!(jobs.recover().await.unwrap(), Recovery { resumed: 0, interrupted: 1 });
    let record = jobs.get(&anon(), &tid("orphan")).await.unwrap();
    assert_eq!(record.status, DeliberationStatus::Interrupted);
    assert_eq!(record.error.as_deref(), Some("the server stopped before this deliberation finished"));
    assert_eq!(record.duration_ms, Some(5_000 - 2), "finished (the clock's 5000) − started (2)");
}

#[test]
fn every_end_has_a_duration_from_its_start_or_else_its_creation() {
    use super::execution::end_duration_ms;
    assert_eq!(end_duration_ms(1_000, Some(1_500), 4_000), 2_500, "ran: finished − started");
    assert_eq!(end_duration_ms(1_000, None, 4_000), 3_000, "never started: finished − created");
    assert_eq!(end_duration_ms(4_000, None, 4_000), 1, "never 0, which reads as none");
}

#[tokio::test]
async fn recover_never_takes_a_live_lease_even_under_this_nodes_own_name() {
    // Another process of the same name holds "live" until 9 000 (the clock says 5 000).
    let store = Arc::new(InMemoryStore::default());
    let settings = JobSettings { node_id: "host".into(), ..JobSettings::default() };
    let jobs = jobs_with(Arc::new(SleepingBackend::new(Duration::ZERO)), Arc::clone(&store), settings);
    let live = crate::ports::Lease { owner: "host".into(), until_ms: 9_000 };
    store.create(&orphan("live"), &live, None).await.unwrap();
    store.create(&orphan("dead"), &dead_lease(), None).await.unwrap();
    assert_eq!(jobs.recover().await.unwrap(), Recovery { resumed: 1, interrupted: 0 });
    jobs.shutdown(Duration::from_secs(5)).await;
    assert_eq!(store.status("live"), DeliberationStatus::Pending, "left to its holder");
    assert_eq!(store.status("dead"), DeliberationStatus::Completed);
}

#[tokio::test]
async fn recover_on_a_store_held_exclusively_takes_every_unfinished_deliberation() {
    // Nobody else can reach this store: a lease that has not run out was left by a dead process.
    let store = Arc::new(InMemoryStore::default());
    store.exclusive.store(true, Ordering::SeqCst);
    let jobs =
        jobs_with(Arc::new(SleepingBackend::new(Duration::ZERO)), Arc::clone(&store), JobSettings::default());
    let crashed = crate::ports::Lease { owner: "crashed-process".into(), until_ms: 9_000 };
    store.create(&orphan("left"), &crashed, None).await.unwrap();
    assert_eq!(jobs.recover().await.unwrap(), Recovery { resumed: 1, interrupted: 0 });
    jobs.shutdown(Duration::from_secs(5)).await;
    assert_eq!(store.status("left"), DeliberationStatus::Completed);
}

#[tokio::test]
async fn recover_restarts_unsaved_work_and_refuses_what_it_cannot_run() {
    let store = Arc::new(InMemoryStore::default());
    let jobs =
        jobs_with(Arc::new(SleepingBackend::new(Duration::ZERO)), Arc::clone(&store), JobSettings::default());
    store.create(&orphan("orphan"), &dead_lease(), None).await.unwrap();
    store.mark_started(&tid("orphan"), &previous_fence(), 2, None).await.unwrap();
    store.create(&NewDeliberation { rounds: 9, ..orphan("corrupt") }, &dead_lease(), None).await.unwrap();
    assert_eq!(jobs.recover().await.unwrap(), Recovery { resumed: 1, interrupted: 1 });
    jobs.shutdown(Duration::from_secs(5)).await;
    assert_eq!(store.status("orphan"), DeliberationStatus::Completed);
    let corrupt = jobs.get(&anon(), &tid("corrupt")).await.unwrap();
    assert_eq!(corrupt.status, DeliberationStatus::Interrupted);
    assert!(corrupt.error.unwrap().ends_with("not resumed: rounds: must be within 0..=5, got 9"));
}

#[tokio::test]
async fn progress_that_cannot_be_restored_ends_interrupted_with_the_reason_not_a_panic() {
    let store = Arc::new(InMemoryStore::default());
    let jobs =
        jobs_with(Arc::new(SleepingBackend::new(Duration::ZERO)), Arc::clone(&store), JobSettings::default());
    store.create(&orphan("future"), &dead_lease(), None).await.unwrap();
    store.mark_started(&tid("future"), &previous_fence(), 2, None).await.unwrap();
    store.spoil_progress("future", "saved progress has unknown snapshot version 7");
    assert_eq!(jobs.recover().await.unwrap(), Recovery { resumed: 0, interrupted: 1 });
    let record = jobs.get(&anon(), &tid("future")).await.unwrap();
    assert_eq!(record.status, DeliberationStatus::Interrupted);
    assert_eq!(
        record.error.as_deref(),
        Some(
            "the server stopped before this deliberation finished; not resumed: its saved progress cannot be \
             restored (saved progress has unknown snapshot version 7)"
        )
    );
}

#[tokio::test(start_paused = true)]
async fn a_resumed_deliberation_keeps_its_original_deadline() {
    let store = Arc::new(InMemoryStore::default());
    // The clock says 5 s have passed since "late" started; its deadline is 3 s.
    let jobs = jobs_with(Arc::new(SleepingBackend::new(STEP)), Arc::clone(&store), JobSettings::default());
    store
        .create(&NewDeliberation { task: command("late", 3).task, ..orphan("late") }, &dead_lease(), None)
        .await
        .unwrap();
    store.mark_started(&tid("late"), &previous_fence(), 0, None).await.unwrap();
    jobs.recover().await.unwrap();
    jobs.shutdown(Duration::from_secs(60)).await;
    let record = jobs.get(&anon(), &tid("late")).await.unwrap();
    assert_eq!(record.status, DeliberationStatus::Timeout);
    assert_eq!(record.error.as_deref(), Some("deliberation exceeded its 3s deadline while proposing"));
}

/// The events `store`'s outbox holds for `task_id`, named (with their sequence numbers
/// checked to count 1, 2, 3…).
fn announced(store: &InMemoryStore, task_id: &str) -> Vec<String> {
    let messages: Vec<_> = store.outbox_messages().into_iter().filter(|m| m.task_id == task_id).collect();
    let seqs: Vec<i64> = messages.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (1..=messages.len() as i64).collect::<Vec<_>>(), "numbered in order");
    messages
        .iter()
        .map(|m| {
            let event: serde_json::Value = serde_json::from_str(&m.payload).unwrap();
            assert_eq!(event["event"], m.event.as_str());
            assert_eq!(event["event_type"], format!("orchestration.deliberation.{}", m.event));
            match m.event.as_str() {
                "phase_completed" => format!("phase:{}", event["phase"].as_str().unwrap()),
                "ended" => format!("ended:{}", event["status"].as_str().unwrap()),
                other => other.to_owned(),
            }
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn every_step_of_a_deliberation_is_stored_in_the_outbox_once_with_its_change() {
    let store = Arc::new(InMemoryStore::default());
    let relay = Arc::new(tokio::sync::Notify::new());
    let jobs = jobs_with(Arc::new(SleepingBackend::new(STEP)), Arc::clone(&store), JobSettings::default());
    let jobs = Arc::new(Arc::into_inner(jobs).unwrap().with_events(Arc::clone(&relay)));

    let told = DeliberateCommand { story_id: Some("story-7".into()), ..command("told", 0) };
    jobs.run(&anon(), told, None).await.unwrap();
    assert_eq!(
        announced(&store, "told"),
        [
            "submitted",
            "started",
            "phase:reviewing (round 1)",
            "phase:revising (round 1)",
            "phase:scoring",
            "completed"
        ]
    );
    tokio::time::timeout(Duration::from_millis(1), relay.notified()).await.expect("the relay was woken");
    let completed = store.outbox_messages().into_iter().find(|m| m.event == "completed").unwrap();
    let completed: serde_json::Value = serde_json::from_str(&completed.payload).unwrap();
    assert_eq!(completed["story_id"], "story-7", "the story is carried");
    assert_eq!(completed["role"], "DATA");
    let decisions = completed["decisions"].as_array().unwrap();
    assert_eq!(decisions.len(), 2);
    assert_eq!(decisions[0]["rank"], 1);
    assert_eq!(decisions[0]["winner"], true);
    assert_eq!(decisions[0]["author"], completed["winner_id"]);
    assert!(decisions[0].get("content").is_none(), "no proposal text");

    jobs.submit(&anon(), command("dropped", 0)).await.unwrap();
    until("dropped starts", || store.status("dropped") == DeliberationStatus::InProgress).await;
    jobs.cancel(&anon(), &tid("dropped")).await.unwrap();
    jobs.until_idle().await;
    assert_eq!(
        announced(&store, "dropped"),
        ["submitted", "started", "ended:CANCELLED"],
        "the cancel is told once"
    );
}

/// Only a deliberation nobody has been told of — its caller waits, no event announces it —
/// may be stored less durably (see `DeliberationStore::create_awaited`).
#[tokio::test(start_paused = true)]
async fn only_an_awaited_unannounced_deliberation_is_stored_as_awaited() {
    let store = Arc::new(InMemoryStore::default());
    let jobs = jobs_with(Arc::new(SleepingBackend::new(STEP)), Arc::clone(&store), JobSettings::default());
    let awaited = || store.awaited_creates.load(Ordering::SeqCst);

    jobs.submit(&anon(), command("told", 0)).await.unwrap();
    jobs.until_idle().await;
    assert_eq!(awaited(), 0, "a submission's caller is told it is stored");

    jobs.run(&anon(), command("waited", 0), None).await.unwrap();
    assert_eq!(awaited(), 1, "a waiting caller hears of nothing before the result");
    assert_eq!(store.status("waited"), DeliberationStatus::Completed);

    let relay = Arc::new(tokio::sync::Notify::new());
    let announcing =
        jobs_with(Arc::new(SleepingBackend::new(STEP)), Arc::clone(&store), JobSettings::default());
    let announcing = Arc::new(Arc::into_inner(announcing).unwrap().with_events(relay));
    announcing.run(&anon(), command("announced", 0), None).await.unwrap();
    assert_eq!(awaited(), 1, "an event announces the submission");
    assert_eq!(announced(&store, "announced").first().map(String::as_str), Some("submitted"));
}

/// A waited-for deliberation with a slot free is stored as started, in one write; without
/// one it is stored PENDING and waits, as any other.
#[tokio::test(start_paused = true)]
async fn an_awaited_deliberation_with_a_free_slot_is_stored_started() {
    let store = Arc::new(InMemoryStore::default());
    let settings = JobSettings { max_running: 1, queue_capacity: 2, ..JobSettings::default() };
    let jobs = jobs_with(Arc::new(SleepingBackend::new(STEP)), Arc::clone(&store), settings);

    let first = jobs.begin(&anon(), command("first", 0), None).await.unwrap();
    assert_eq!(store.status("first"), DeliberationStatus::InProgress, "stored started: the slot was free");
    let second = jobs.begin(&anon(), command("second", 0), None).await.unwrap();
    assert_eq!(store.status("second"), DeliberationStatus::Pending, "the one slot is taken");

    let caller = anon();
    let (first, second) = tokio::join!(first.outcome(&caller), second.outcome(&caller));
    assert_eq!(first.unwrap().task_id, "first");
    assert_eq!(second.unwrap().task_id, "second");
    for task_id in ["first", "second"] {
        let record = jobs.get(&anon(), &tid(task_id)).await.unwrap();
        assert_eq!(record.status, DeliberationStatus::Completed, "{task_id}");
        assert!(record.started_at_ms.is_some(), "{task_id}");
    }
}

#[tokio::test(start_paused = true)]
async fn without_events_nothing_is_stored_in_the_outbox() {
    let store = Arc::new(InMemoryStore::default());
    let jobs = jobs_with(Arc::new(SleepingBackend::new(STEP)), Arc::clone(&store), JobSettings::default());
    jobs.run(&anon(), command("quiet", 0), None).await.unwrap();
    assert!(store.outbox_messages().is_empty());
}

/// A clock the test moves by hand.
#[derive(Default)]
struct HandClock(std::sync::atomic::AtomicI64);

impl crate::ports::Clock for HandClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A node named `name` with a 3 s lease on the shared `store`, reading time from `clock`, its
/// agents answering after `delay`: the nodes of the lease and outage tests.
fn node_on(
    name: &str,
    store: &Arc<InMemoryStore>,
    clock: &Arc<HandClock>,
    delay: Duration,
) -> (Arc<Jobs>, Arc<SleepingBackend>) {
    let settings =
        JobSettings { node_id: name.into(), lease: Duration::from_secs(3), ..JobSettings::default() };
    node_with(settings, store, clock, delay)
}

/// [`node_on`] with its own settings.
fn node_with(
    settings: JobSettings,
    store: &Arc<InMemoryStore>,
    clock: &Arc<HandClock>,
    delay: Duration,
) -> (Arc<Jobs>, Arc<SleepingBackend>) {
    let mut ids = MockIdGenerator::new();
    ids.expect_new_id().return_const("unused".to_owned());
    let backend = Arc::new(SleepingBackend::new(delay));
    let deliberate = Arc::new(Deliberate::new(
        Some(backend.clone()),
        clock.clone(),
        Arc::new(ids),
        Arc::new(Counters::new(0)),
        DeliberationSettings::default(),
    ));
    (Arc::new(Jobs::new(deliberate, store.clone(), clock.clone(), settings)), backend)
}

// Real time: b's agents take a minute, so b stays busy for the whole test; a's take 10 ms.
#[tokio::test]
async fn a_submission_without_a_free_slot_here_is_stored_for_any_server_to_take() {
    let store = Arc::new(InMemoryStore::default());
    let clock = Arc::new(HandClock::default());
    clock.0.store(1_000, Ordering::SeqCst);
    let sharing = |name: &str| JobSettings {
        node_id: name.into(),
        max_running: 1,
        lease: Duration::from_secs(3),
        share_submissions: true,
        ..JobSettings::default()
    };
    let (a, a_backend) = node_with(sharing("node-a"), &store, &clock, Duration::from_millis(10));
    let (b, _) = node_with(sharing("node-b"), &store, &clock, Duration::from_secs(60));
    let a = Arc::new(Arc::into_inner(a).unwrap().with_events(Arc::new(tokio::sync::Notify::new())));

    for task_id in ["first", "second", "third"] {
        let submitted = a.submit(&anon(), command(task_id, 0)).await.unwrap();
        assert_eq!(submitted.status, DeliberationStatus::Pending);
    }
    let shared: Vec<String> =
        store.outbox_messages().into_iter().filter(|m| m.event == "submitted").map(|m| m.task_id).collect();
    assert_eq!(shared, ["first", "second", "third"], "every submission is announced");

    // b has a slot: it takes the work announced for it; a server without one takes nothing.
    assert!(b.take(&tid("second")).await.unwrap());
    assert!(!a.take(&tid("first")).await.unwrap(), "a runs it already (it had a free slot)");
    assert!(!b.take(&tid("third")).await.unwrap(), "b has no free slot now");
    assert!(!a.take(&tid("second")).await.unwrap(), "b holds it");
    // Once "first" ends, a's free slot takes the oldest shared work by itself: "third".
    a.until_idle().await;
    assert_eq!(store.status("first"), DeliberationStatus::Completed);
    assert_eq!(store.status("third"), DeliberationStatus::Completed, "taken when a's slot came free");
    assert!(store.owner("third").starts_with("node-a"));
    assert!(store.owner("second").starts_with("node-b"));
    assert_eq!(a_backend.started.load(Ordering::SeqCst), 12, "a ran two deliberations of 6 calls, once each");
    b.shutdown(Duration::ZERO).await;
}

#[tokio::test(start_paused = true)]
async fn a_takeover_takes_only_what_the_node_can_start() {
    let store = Arc::new(InMemoryStore::default());
    let clock = Arc::new(HandClock::default());
    clock.0.store(10_000, Ordering::SeqCst);
    let settings = JobSettings { node_id: "survivor".into(), max_running: 2, ..JobSettings::default() };
    let (survivor, _) = node_with(settings, &store, &clock, STEP);
    for task_id in ["d1", "d2", "d3", "d4", "d5"] {
        store.create(&command_record(task_id), &dead_lease(), None).await.unwrap();
    }
    assert_eq!(survivor.recover().await.unwrap(), Recovery { resumed: 2, interrupted: 0 });
    let mine: Vec<_> =
        ["d1", "d2", "d3", "d4", "d5"].into_iter().filter(|id| store.owner(id) == "survivor").collect();
    assert_eq!(mine, ["d1", "d2"], "the oldest two; the rest is left to others");
    survivor.shutdown(Duration::from_secs(60)).await;
}

#[tokio::test(start_paused = true)]
async fn a_live_nodes_work_is_left_alone_until_its_lease_runs_out() {
    let store = Arc::new(InMemoryStore::default());
    let clock = Arc::new(HandClock::default());
    clock.0.store(1_000, Ordering::SeqCst);
    let (jobs, backend) = node_on("node-b", &store, &clock, Duration::ZERO);
    let theirs = crate::ports::Lease { owner: "node-a".into(), until_ms: 4_000 };
    store.create(&command_record("theirs"), &theirs, None).await.unwrap();

    assert_eq!(jobs.recover().await.unwrap(), Recovery::default(), "node-a's lease still holds");
    let held = tokio::time::Instant::now() + Duration::from_secs(3);
    let held = jobs.maintain_once(held).await;
    jobs.until_idle().await;
    assert_eq!(store.status("theirs"), DeliberationStatus::Pending, "still node-a's");
    assert_eq!(backend.started.load(Ordering::SeqCst), 0);

    clock.0.store(5_000, Ordering::SeqCst); // node-a stopped renewing
    jobs.maintain_once(held).await;
    jobs.until_idle().await;
    assert_eq!(store.status("theirs"), DeliberationStatus::Completed, "taken over by node-b");
    assert_eq!(store.owner("theirs"), "node-b");
    jobs.shutdown(Duration::from_secs(1)).await;
}

fn command_record(task_id: &str) -> NewDeliberation {
    NewDeliberation { task: command(task_id, 0).task, role: Role::Data, num_agents: 2, ..orphan(task_id) }
}

#[tokio::test(start_paused = true)]
async fn a_result_the_store_cannot_take_is_never_answered_ok_and_is_stored_once_it_returns() {
    let store = Arc::new(InMemoryStore::default());
    let settings = JobSettings { write_retry: 5 * STEP, ..JobSettings::default() };
    let jobs = jobs_with(Arc::new(SleepingBackend::new(STEP)), Arc::clone(&store), settings);
    let waiting = {
        let jobs = Arc::clone(&jobs);
        tokio::spawn(async move { jobs.run(&anon(), command("unstored", 0), None).await })
    };
    until("proposals saved", || store.saved_phase("unstored").is_some()).await;
    store.down.store(true, Ordering::SeqCst);
    let probed = jobs.probe_store_once().await;
    assert!(
        matches!(&probed, StoreState::Unreachable { cause } if cause.contains("the store is down")),
        "{probed:?}"
    );
    assert_eq!(*jobs.store_state().borrow(), probed, "health follows the probe");

    // The deliberation finishes while the store is down: its result is retried, then kept.
    let err = waiting.await.unwrap().unwrap_err();
    assert!(
        matches!(&err, ApplicationError::ResultNotStored { task_id } if task_id == "unstored"),
        "{err:?}"
    );
    assert!(err.to_string().contains("unstored"));
    assert_eq!(store.status("unstored"), DeliberationStatus::InProgress, "never told OK, never stored");

    // The store returns: the next probe reports it and stores the kept result.
    store.down.store(false, Ordering::SeqCst);
    assert_eq!(jobs.probe_store_once().await, StoreState::Serving);
    assert!(jobs.store_state().borrow().is_serving());
    let record = jobs.get(&anon(), &tid("unstored")).await.unwrap();
    assert_eq!(record.status, DeliberationStatus::Completed);
    assert!(record.duration_ms.is_some_and(|ms| ms > 0));
    assert!(jobs.repair_ids().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_node_that_lost_its_lease_stops_and_only_the_new_holder_stores_a_result() {
    let store = Arc::new(InMemoryStore::default());
    let clock = Arc::new(HandClock::default());
    clock.0.store(1_000, Ordering::SeqCst);
    let node = |name: &str| node_on(name, &store, &clock, STEP);
    let (node_a, _) = node("node-a");
    let (node_b, backend_b) = node("node-b");
    let running_on_a = {
        let node_a = Arc::clone(&node_a);
        tokio::spawn(async move { node_a.run(&anon(), command("contested", 0), None).await })
    };
    until("node-a runs it", || store.status_if_any("contested") == Some(DeliberationStatus::InProgress))
        .await;

    // node-a pauses past its lease (its clock reading is the shared one): node-b takes over.
    clock.0.store(10_000, Ordering::SeqCst);
    node_b.maintain_once(tokio::time::Instant::now()).await;
    assert_eq!(store.owner("contested"), "node-b");

    // node-a's next write is refused; it stops its run at once and answers UNAVAILABLE-worthy.
    let err = running_on_a.await.unwrap().unwrap_err();
    assert!(matches!(&err, ApplicationError::LeaseLost { task_id } if task_id == "contested"), "{err:?}");
    node_b.until_idle().await;
    let record = node_b.get(&anon(), &tid("contested")).await.unwrap();
    assert_eq!(record.status, DeliberationStatus::Completed, "exactly one result: node-b's");
    assert_eq!(backend_b.started.load(Ordering::SeqCst), 6, "node-b ran it from the start");

    // A node never claims what it runs itself.
    node_b.submit(&anon(), command("own", 0)).await.unwrap();
    clock.0.store(100_000, Ordering::SeqCst);
    node_b.maintain_once(tokio::time::Instant::now()).await;
    node_b.until_idle().await;
    assert_eq!(
        store.get(&tid("own")).await.unwrap().unwrap().lease_epoch,
        0,
        "never re-claimed while running"
    );
    assert_eq!(store.status("own"), DeliberationStatus::Completed);
}

#[tokio::test(start_paused = true)]
async fn a_deliberation_out_of_time_keeps_its_finished_proposals_ranked_as_partial() {
    let store = Arc::new(InMemoryStore::default());
    let jobs = jobs_with(Arc::new(SleepingBackend::new(STEP)), Arc::clone(&store), JobSettings::default());
    // Proposals take one step, reviews another: a 2 s deadline falls during the reviews... of
    // round one; the proposals are in.
    let err = jobs.run(&anon(), command("late", 2), None).await.unwrap_err();
    let ApplicationError::DeadlineExceeded { partial: Some(partial), .. } = &err else { panic!("{err:?}") };
    assert_eq!(partial.results.len(), 2);
    let record = jobs.get(&anon(), &tid("late")).await.unwrap();
    assert_eq!(record.status, DeliberationStatus::Timeout);
    let kept = record.outcome.expect("partial results are stored");
    assert_eq!(kept.results.len(), 2);
    assert_eq!(kept.results.iter().map(|r| r.rank).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(record.winner_id.as_deref(), Some(kept.results[0].agent.id.as_str()));
    assert!(record.duration_ms.is_some_and(|ms| ms > 0), "a real duration");
}

#[tokio::test(start_paused = true)]
async fn shutdown_refuses_new_work_and_reports_what_it_stopped() {
    let store = Arc::new(InMemoryStore::default());
    let jobs = jobs_with(Arc::new(SleepingBackend::new(STEP)), Arc::clone(&store), no_resume());
    jobs.submit(&anon(), command("long", 600)).await.unwrap();
    let started = tokio::time::Instant::now();
    let shutdown = {
        let jobs = Arc::clone(&jobs);
        tokio::spawn(async move { jobs.shutdown(2 * STEP).await })
    };
    until("draining", || jobs.is_draining()).await;
    let refused = jobs.submit(&anon(), command("late", 0)).await.unwrap_err();
    assert!(matches!(refused, ApplicationError::ShuttingDown { .. }), "{refused:?}");
    let report = shutdown.await.unwrap();
    assert!(started.elapsed() >= 2 * STEP, "the whole grace period was given");
    assert_eq!(report, ShutdownReport { drained: false, left_resumable: 0, interrupted: 1, unrepaired: 0 });
    assert_eq!(store.status("long"), DeliberationStatus::Interrupted);
}

#[tokio::test(start_paused = true)]
async fn a_second_signal_cuts_the_grace_short_and_leaves_running_work_to_resume() {
    let store = Arc::new(InMemoryStore::default());
    let jobs = jobs_with(Arc::new(SleepingBackend::new(STEP)), Arc::clone(&store), JobSettings::default());
    jobs.submit(&anon(), command("long", 600)).await.unwrap();
    until("it runs", || store.status("long") == DeliberationStatus::InProgress).await;
    let started = tokio::time::Instant::now();
    let (second, now) = tokio::sync::oneshot::channel::<()>();
    let shutdown = {
        let jobs = Arc::clone(&jobs);
        tokio::spawn(async move {
            jobs.shutdown_unless_sooner(3600 * STEP, async move {
                let _ = now.await;
            })
            .await
        })
    };
    until("draining", || jobs.is_draining()).await;
    second.send(()).unwrap();
    let report = shutdown.await.unwrap();
    assert!(started.elapsed() < 3600 * STEP, "it did not wait for the grace period");
    assert_eq!(report, ShutdownReport { drained: false, left_resumable: 1, interrupted: 0, unrepaired: 0 });
    assert_eq!(store.status("long"), DeliberationStatus::InProgress, "left as saved, to resume");
    assert_eq!(
        report.summary(),
        "deliberations stopped before they finished: 1 left to resume at the next start"
    );
}

#[test]
fn the_shutdown_summary_says_what_its_numbers_say() {
    let report = |drained, left_resumable, interrupted| ShutdownReport {
        drained,
        left_resumable,
        interrupted,
        unrepaired: 0,
    };
    assert_eq!(report(true, 0, 0).summary(), "every deliberation finished within the grace period");
    assert_eq!(
        report(false, 2, 1).summary(),
        "deliberations stopped before they finished: 2 left to resume at the next start, 1 stored INTERRUPTED"
    );
    assert!(!report(false, 1, 0).summary().contains("every deliberation"));
}

#[tokio::test(start_paused = true)]
async fn a_store_outage_longer_than_the_lease_stops_the_run_and_the_node_resumes_it_afterwards() {
    let store = Arc::new(InMemoryStore::default());
    let clock = Arc::new(HandClock::default());
    clock.0.store(1_000, Ordering::SeqCst);
    let lease = Duration::from_secs(3);
    let (jobs, _backend) = node_on("solo", &store, &clock, STEP);
    jobs.submit(&anon(), command("blip", 0)).await.unwrap();
    until("blip starts", || store.status("blip") == DeliberationStatus::InProgress).await;

    // The database goes away for longer than the lease: the renewal cannot vouch for the run
    // any more, so the node stops it rather than risk a second runner.
    store.down.store(true, Ordering::SeqCst);
    let held = tokio::time::Instant::now() + lease;
    let held = jobs.maintain_once(held).await;
    assert!(!jobs.runs.lock().unwrap().is_empty(), "still within the lease");
    tokio::time::sleep(lease).await;
    let held = jobs.maintain_once(held).await;
    until("the run stopped", || jobs.runs.lock().unwrap().is_empty()).await;

    // The database returns: the node takes its own unfinished row back and finishes it.
    store.down.store(false, Ordering::SeqCst);
    clock.0.store(60_000, Ordering::SeqCst);
    jobs.maintain_once(held).await;
    jobs.until_idle().await;
    let record = jobs.get(&anon(), &tid("blip")).await.unwrap();
    assert_eq!(record.status, DeliberationStatus::Completed);
    assert_eq!(record.lease_epoch, 1, "taken back under a new epoch");
}

#[tokio::test(start_paused = true)]
async fn a_deliberation_not_run_here_is_watched_from_the_store_until_it_ends() {
    use futures::StreamExt;
    let store = Arc::new(InMemoryStore::default());
    let jobs = jobs_with(Arc::new(SleepingBackend::new(Duration::ZERO)), Arc::clone(&store), no_resume());
    store.create(&orphan("elsewhere"), &dead_lease(), None).await.unwrap();
    let status = |update: Option<Result<WatchUpdate, ApplicationError>>| match update {
        Some(Ok(WatchUpdate::State(record))) => record.status,
        other => panic!("expected a state, got {other:?}"),
    };

    let mut updates = jobs.watch(&anon(), &tid("elsewhere")).await.unwrap();
    assert_eq!(status(updates.next().await), DeliberationStatus::Pending, "the stored state first");
    store.mark_started(&tid("elsewhere"), &previous_fence(), 2, None).await.unwrap();
    assert_eq!(status(updates.next().await), DeliberationStatus::InProgress, "read back from the store");
    jobs.cancel(&anon(), &tid("elsewhere")).await.unwrap();
    assert_eq!(status(updates.next().await), DeliberationStatus::Cancelled, "its end last");
    assert!(updates.next().await.is_none());

    let mut ended = jobs.watch(&anon(), &tid("elsewhere")).await.unwrap();
    assert_eq!(status(ended.next().await), DeliberationStatus::Cancelled);
    assert!(ended.next().await.is_none(), "an ended deliberation: one update");
}

#[tokio::test(start_paused = true)]
async fn a_deliberation_run_here_is_watched_step_by_step_and_a_watcher_going_away_changes_nothing() {
    use futures::StreamExt;
    let store = Arc::new(InMemoryStore::default());
    let jobs = jobs_with(Arc::new(SleepingBackend::new(STEP)), Arc::clone(&store), JobSettings::default());
    jobs.submit(&anon(), command("here", 0)).await.unwrap();

    let mut dropped_early = jobs.watch(&anon(), &tid("here")).await.unwrap();
    assert!(matches!(dropped_early.next().await, Some(Ok(WatchUpdate::State(_)))));
    drop(dropped_early);

    let updates: Vec<WatchUpdate> =
        jobs.watch(&anon(), &tid("here")).await.unwrap().map(Result::unwrap).collect().await;
    let steps: Vec<String> = updates
        .iter()
        .filter_map(|u| match u {
            WatchUpdate::Step(step) => Some(step.phase.to_string()),
            WatchUpdate::State(_) => None,
        })
        .collect();
    // Two agents propose, review and revise: six steps, phase by phase.
    assert_eq!(
        steps,
        [
            "proposing",
            "proposing",
            "reviewing (round 1)",
            "reviewing (round 1)",
            "revising (round 1)",
            "revising (round 1)"
        ]
    );
    match updates.last() {
        Some(WatchUpdate::State(record)) => assert_eq!(record.status, DeliberationStatus::Completed),
        other => panic!("the final state last, got {other:?}"),
    }
    assert_eq!(store.status("here"), DeliberationStatus::Completed);
}
