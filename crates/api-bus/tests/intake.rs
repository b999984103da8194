//! Drills of the bus intake against a real JetStream (`nats-server -js` of each test's own)
//! and real `Jobs`: plans and requests in, stored deliberations, acks, naks and dead letters
//! out. Every wait is on an event (the store, the consumer's info, a dead letter), bounded.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream::stream;
use orchestrator_api_bus::IntakeSettings;
use orchestrator_domain::{DeliberationStatus, Role};
use support::{Bus, Replica, next_dead_letter, plan, settings};

const STREAM: &str = "PLANNING_EVENTS";
const DURABLE: &str = "orch-planning-plan-approved";
const SUBJECT: &str = "planning.plan.approved";
const REQUESTS: &str = "orchestration.request";
const REQUEST_DURABLE: &str = "orch-orchestration-request";
const DEAD_LETTERS: &str = "orchestration.intake.dead_letter";

fn status_is_live(status: DeliberationStatus) -> bool {
    matches!(status, DeliberationStatus::Pending | DeliberationStatus::InProgress)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_plans_of_two_roles_make_forty_deliberations_and_the_same_plans_again_make_none_more() {
    let Some(bus) = Bus::start().await else { return };
    // Two replicas pull from the one durable consumer and share the work.
    let first = bus.replica(settings());
    let second = bus.replica(settings());
    bus.consumer(STREAM, DURABLE).await;

    for round in 0..2 {
        for i in 0..20 {
            bus.publish(SUBJECT, plan(&format!("p-{i}"), &format!("story-{i}"), &["DEV", "qa"])).await;
        }
        bus.settled(STREAM, DURABLE, 20 * (round + 1)).await;
        bus.until_stored(40).await;
    }

    let stored = bus.stored().await;
    assert_eq!(stored.len(), 40, "the same plans again store nothing new");
    for i in 0..20 {
        for role in [Role::Dev, Role::Qa] {
            let task_id = format!("plan-p-{i}-{role}");
            let record = stored
                .iter()
                .find(|r| r.request.task_id.as_str() == task_id)
                .expect("each role's deliberation");
            assert_eq!(record.request.role, role);
            assert_eq!(record.request.story_id.as_deref(), Some(format!("story-{i}").as_str()));
            assert_eq!(record.request.principal, "fleet");
            assert!(record.request.task.description().contains(&format!("Plan p-{i} of story story-{i}")));
            assert!(status_is_live(record.status), "{task_id} is {}", record.status);
        }
    }
    // Each deliberation was created by exactly one replica (and runs there).
    let admitted = |replica: &Replica| {
        let load = replica.jobs.load();
        load.running + load.queued
    };
    assert_eq!(admitted(&first) + admitted(&second), 40);
    first.stop().await;
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_is_dead_lettered_with_its_reason_and_the_next_message_is_handled() {
    let Some(bus) = Bus::start().await else { return };
    let replica = bus.replica(settings());
    bus.consumer(STREAM, DURABLE).await;
    let mut letters = bus.dead_letters(DEAD_LETTERS).await;

    let bad_role = plan("p-bad", "story-b", &["DEV", "CHEF"]);
    bus.publish(SUBJECT, "not json").await;
    bus.publish(SUBJECT, bad_role.clone()).await;
    bus.publish(SUBJECT, plan("p-good", "story-g", &["ARCHITECT"])).await;

    let mut dead = [next_dead_letter(&mut letters).await, next_dead_letter(&mut letters).await];
    dead.sort_by_key(|letter| letter.stream_sequence);
    let [not_json, unknown_role] = dead;
    assert!(not_json.reason.starts_with("not JSON: "), "{}", not_json.reason);
    assert_eq!(
        (not_json.subject.as_str(), not_json.stream.as_str(), not_json.stream_sequence, not_json.deliveries),
        (SUBJECT, STREAM, 1, 1)
    );
    assert_eq!((not_json.payload.as_str(), not_json.payload_bytes), ("not json", 8));
    assert_eq!(
        unknown_role.reason,
        "roles[1]: unknown role \"CHEF\"; expected one of DEV, QA, ARCHITECT, DEVOPS, DATA"
    );
    assert_eq!(unknown_role.payload, bad_role);

    bus.settled(STREAM, DURABLE, 3).await;
    let stored = bus.stored().await;
    assert_eq!(stored.len(), 1, "no role of a plan with an unknown role is stored");
    assert_eq!(stored[0].request.task_id, "plan-p-good-ARCHITECT");
    replica.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_outage_naks_the_plan_and_it_is_stored_once_the_store_is_back() {
    let Some(bus) = Bus::start().await else { return };
    let replica = bus.replica(settings());
    bus.consumer(STREAM, DURABLE).await;

    bus.store.down.store(true, Ordering::SeqCst);
    bus.publish(SUBJECT, plan("p-outage", "story-o", &["DEV", "QA"])).await;
    support::until("the plan is nak'd and delivered again", || async {
        bus.consumer(STREAM, DURABLE).await.delivered.consumer_sequence >= 2
    })
    .await;
    let info = bus.consumer(STREAM, DURABLE).await;
    assert_eq!(info.ack_floor.stream_sequence, 0, "never acked without a stored row");
    assert!(bus.store.status_if_any("plan-p-outage-DEV").is_none());

    bus.store.down.store(false, Ordering::SeqCst);
    bus.until_stored(2).await;
    bus.settled(STREAM, DURABLE, 1).await;
    assert_eq!(bus.stored().await.len(), 2);
    replica.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_reaches_max_deliver_is_dead_lettered_instead_of_nakd() {
    let Some(bus) = Bus::start().await else { return };
    let replica = bus.replica(IntakeSettings { max_deliver: 2, ..settings() });
    assert_eq!(bus.consumer(STREAM, DURABLE).await.config.max_deliver, 2);
    let mut letters = bus.dead_letters(DEAD_LETTERS).await;

    bus.store.down.store(true, Ordering::SeqCst);
    let doomed = plan("p-doomed", "story-d", &["DEV"]);
    bus.publish(SUBJECT, doomed.clone()).await;
    let letter = next_dead_letter(&mut letters).await;
    assert_eq!(
        letter.reason,
        "not handled in 2 deliveries (intake.max_deliver); last failure: storage failed"
    );
    assert_eq!((letter.deliveries, letter.stream_sequence, letter.payload.as_str()), (2, 1, doomed.as_str()));

    bus.settled(STREAM, DURABLE, 1).await;
    bus.store.down.store(false, Ordering::SeqCst);
    assert!(bus.stored().await.is_empty());
    replica.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bus_request_is_stored_and_bad_ones_are_dead_lettered_naming_the_field() {
    let Some(bus) = Bus::start().await else { return };
    // The server's events stream holds orchestration.> with the default prefix: requests and
    // dead letters are read from and stored in it.
    let events = stream::Config {
        name: "ORCHESTRATOR_EVENTS".into(),
        subjects: vec!["orchestration.>".into()],
        ..Default::default()
    };
    bus.jetstream.create_stream(events).await.expect("the events stream");
    let replica = bus.replica(settings());
    bus.consumer("ORCHESTRATOR_EVENTS", REQUEST_DURABLE).await;
    let mut letters = bus.dead_letters(DEAD_LETTERS).await;

    bus.publish(
        REQUESTS,
        r#"{"taskId":"bus-1","taskDescription":"Design the cache","role":"dev","numAgents":2}"#,
    )
    .await;
    bus.publish(REQUESTS, r#"{"taskDescription":"Design the cache","role":"DEV"}"#).await;
    bus.publish(REQUESTS, r#"{"task_id":"bus-2","task_description":"Design the cache","role":"CHEF"}"#).await;

    let mut dead = [next_dead_letter(&mut letters).await, next_dead_letter(&mut letters).await];
    dead.sort_by_key(|letter| letter.stream_sequence);
    assert!(dead[0].reason.starts_with("task_id: is required"), "{}", dead[0].reason);
    assert_eq!(
        dead[1].reason,
        "role: unknown role \"CHEF\"; expected one of DEV, QA, ARCHITECT, DEVOPS, DATA"
    );
    assert!(dead.iter().all(|letter| letter.subject == REQUESTS && letter.stream == "ORCHESTRATOR_EVENTS"));

    bus.until_stored(1).await;
    let stored = bus.stored().await;
    assert_eq!(stored.len(), 1);
    let record = &stored[0];
    assert_eq!((record.request.task_id.as_str(), record.request.role), ("bus-1", Role::Dev));
    assert_eq!((record.request.num_agents, record.request.principal.as_str()), (2, "fleet"));
    assert_eq!(record.request.story_id, None);

    let events = bus.jetstream.get_stream("ORCHESTRATOR_EVENTS").await.expect("the events stream");
    events
        .get_last_raw_message_by_subject(DEAD_LETTERS)
        .await
        .expect("dead letters are stored in the stream");
    assert!(
        bus.jetstream.get_stream("ORCHESTRATOR_REQUESTS").await.is_err(),
        "no second stream on the subject"
    );
    replica.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_or_repeated_request_changes_nothing() {
    let Some(bus) = Bus::start().await else { return };
    let replica = bus.replica(settings());
    bus.consumer("ORCHESTRATOR_REQUESTS", REQUEST_DURABLE).await;
    let requests = bus.stream("ORCHESTRATOR_REQUESTS").await;
    assert_eq!(requests.config.subjects, vec![REQUESTS.to_owned()], "created on just the request subject");

    let request = r#"{"taskId":"bus-1","taskDescription":"Design the cache","role":"QA"}"#;
    bus.store.down.store(true, Ordering::SeqCst);
    bus.publish(REQUESTS, request).await;
    support::until("the request is nak'd and delivered again", || async {
        bus.consumer("ORCHESTRATOR_REQUESTS", REQUEST_DURABLE).await.delivered.consumer_sequence >= 2
    })
    .await;
    bus.store.down.store(false, Ordering::SeqCst);
    bus.until_stored(1).await;

    bus.publish(REQUESTS, request).await;
    bus.publish(REQUESTS, r#"{"taskId":"bus-1","taskDescription":"Something else","role":"QA"}"#).await;
    bus.settled("ORCHESTRATOR_REQUESTS", REQUEST_DURABLE, 3).await;
    let stored = bus.stored().await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].request.task.description(), "Design the cache", "the stored request stands");
    replica.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plan_stream_is_created_with_the_planning_subjects_when_absent() {
    let Some(bus) = Bus::start().await else { return };
    let replica = bus.replica(settings());
    bus.consumer(STREAM, DURABLE).await;
    assert_eq!(bus.stream(STREAM).await.config.subjects, vec!["planning.>".to_owned()]);
    replica.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_stream_that_exists_is_left_as_it_is() {
    let Some(bus) = Bus::start().await else { return };
    let owned = stream::Config {
        name: STREAM.into(),
        subjects: vec![SUBJECT.into(), "planning.story.>".into()],
        max_messages: 1000,
        max_age: Duration::from_secs(3600),
        description: Some("owned by the planning service".into()),
        ..Default::default()
    };
    let before =
        bus.jetstream.create_stream(owned).await.expect("the planning stream").cached_info().config.clone();
    let replica = bus.replica(settings());
    bus.consumer(STREAM, DURABLE).await;
    bus.publish(SUBJECT, plan("p-1", "story-1", &["DEVOPS"])).await;
    bus.until_stored(1).await;
    assert_eq!(bus.stream(STREAM).await.config, before, "never altered");
    replica.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_returns_at_once_while_nats_is_down_and_the_intake_connects_when_it_is_up() {
    let Some(mut bus) = Bus::start().await else { return };
    bus.server.kill();
    let replica = Replica::start(bus.server.url(), &bus.store, settings());
    bus.server.restart();
    bus.consumer(STREAM, DURABLE).await;
    bus.publish(SUBJECT, plan("p-late", "story-l", &["DATA"])).await;
    bus.until_stored(1).await;
    replica.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_intake_goes_on_taking_plans_after_nats_restarts() {
    let Some(mut bus) = Bus::start().await else { return };
    // A short ack wait: an ack the killed server had not written to disk yet comes back as a
    // redelivery after it.
    let replica =
        Replica::start(bus.server.url(), &bus.store, IntakeSettings { ack_wait_secs: 2, ..settings() });
    bus.consumer(STREAM, DURABLE).await;
    bus.publish(SUBJECT, plan("p-before", "story-1", &["DEV"])).await;
    bus.until_stored(1).await;

    bus.server.kill();
    bus.server.restart();
    bus.consumer(STREAM, DURABLE).await;
    bus.publish(SUBJECT, plan("p-after", "story-2", &["DEV"])).await;
    bus.until_stored(2).await;
    bus.settled(STREAM, DURABLE, 2).await;
    assert_eq!(bus.stored().await.len(), 2, "a redelivery after the restart changes nothing");
    replica.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_while_nats_is_down_returns_at_once() {
    let Some(mut bus) = Bus::start().await else { return };
    bus.server.kill();
    let replica = Replica::start(bus.server.url(), &bus.store, settings());
    replica.stop().await;
}
