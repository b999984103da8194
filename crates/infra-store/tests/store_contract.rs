//! The behaviour every `DeliberationStore` promises, run against SQLite (a temp file),
//! PostgreSQL (`ORCHESTRATOR_TEST_PG_URL`, default the local server's `test` database, one
//! fresh schema per test) and the in-memory fake the application's tests use, so that fake
//! cannot drift from the real stores. Without a reachable PostgreSQL its tests are skipped
//! with a `SKIPPED:` line, except under `CI=true`, where they fail.

#![allow(clippy::unwrap_used, reason = "test code: a failed step should fail the test loudly")]

mod support;

/// Runs each contract function once per store.
macro_rules! contract_tests {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            use crate::support::TestDb as _;

            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let db = crate::support::SqliteDb::new().await;
                    crate::contract::$test(db.store()).await;
                }
            )*
        }

        mod postgres {
            use crate::support::TestDb as _;

            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let Some(db) = crate::support::PostgresDb::new().await else { return };
                    crate::contract::$test(db.store()).await;
                    db.drop_schema().await;
                }
            )*
        }

        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let store = std::sync::Arc::new(orchestrator_application::testing::InMemoryStore::default());
                    crate::contract::$test(store).await;
                }
            )*
        }
    };
}

contract_tests!(
    completed_deliberation_round_trips_every_field,
    an_awaited_deliberation_is_stored_pending_or_already_started,
    a_sixteen_agent_outcome_commits_whole_once_and_only_under_its_fence,
    progress_is_saved_only_while_in_progress,
    status_changes_follow_the_lifecycle,
    racing_cancel_and_complete_apply_exactly_one,
    create_is_idempotent,
    get_of_unknown_id_is_none,
    list_filters_by_role_status_and_time,
    principals_are_stored_and_listing_filters_by_them,
    list_pages_newest_first_without_gaps_or_duplicates,
    list_rejects_a_malformed_cursor,
    list_clamps_the_page_size,
    claiming_takes_only_unfinished_work_nobody_live_holds,
    a_claim_takes_at_most_its_limit_oldest_first_or_only_the_named_one,
    two_hundred_concurrent_deliberations_complete_and_are_all_listed,
    nul_characters_are_stored_as_replacement_characters,
    ping_answers_while_the_store_is_open,
    a_timeout_keeps_its_partial_results_and_a_selection_is_stored_once,
);

/// Runs each outbox contract function once per store, with the store's two ports.
macro_rules! outbox_contract_tests {
    ($($test:ident),* $(,)?) => {
        mod sqlite_outbox {
            use crate::support::TestDb as _;

            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let db = crate::support::SqliteDb::new().await;
                    crate::outbox::$test(db.store(), db.outbox()).await;
                }
            )*
        }

        mod postgres_outbox {
            use crate::support::TestDb as _;

            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let Some(db) = crate::support::PostgresDb::new().await else { return };
                    crate::outbox::$test(db.store(), db.outbox()).await;
                    db.drop_schema().await;
                }
            )*
        }

        mod memory_outbox {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let store = std::sync::Arc::new(orchestrator_application::testing::InMemoryStore::default());
                    crate::outbox::$test(store.clone(), store).await;
                }
            )*
        }
    };
}

outbox_contract_tests!(
    events_are_stored_with_the_change_they_report_numbered_per_deliberation,
    concurrent_saves_each_apply_under_their_own_fence_with_their_own_event,
    one_relay_holds_the_lease_and_a_stale_one_cannot_mark_anything_sent,
    the_outbox_is_bounded_by_dropping_the_oldest,
);

mod outbox {
    use std::sync::Arc;

    use orchestrator_application::ports::{
        DeliberationEvent, DeliberationStore, EventKind, Fence, Outbox, StoreError,
    };
    use orchestrator_application::testing::tid;
    use orchestrator_domain::{DeliberationStatus, Phase, Role};

    use crate::support::{end, fence, finished_deliberation, lease, request};

    fn event(task_id: &str, kind: EventKind) -> DeliberationEvent {
        DeliberationEvent::new(task_id, Some("story-1"), Role::Dev, 1_000, kind)
    }

    /// `(task_id, seq, event)` of every unsent event, in outbox order.
    async fn unsent(outbox: &dyn Outbox) -> Vec<(String, i64, String)> {
        outbox.unsent(100).await.unwrap().into_iter().map(|m| (m.task_id, m.seq, m.event)).collect()
    }

    /// Saved phases of many deliberations at once, on connections handed from write to write:
    /// each applies, and stores its event, only under its own fence; a stale one is told so.
    pub(crate) async fn concurrent_saves_each_apply_under_their_own_fence_with_their_own_event(
        store: Arc<dyn DeliberationStore>,
        outbox: Arc<dyn Outbox>,
    ) {
        let finished = finished_deliberation(Role::Dev);
        let ids: Vec<String> = (0..40).map(|n| format!("many-{n:02}")).collect();
        for id in &ids {
            assert!(store.create(&request(id, Role::Dev, 1), &lease(), None).await.unwrap());
            assert!(store.mark_started(&tid(id), &fence(), 2, None).await.unwrap());
        }
        let stale = Fence { epoch: fence().epoch + 7, ..fence() };
        let saves = ids.iter().enumerate().map(|(n, id)| {
            let store = Arc::clone(&store);
            let progress = finished.mid.clone();
            let fence = if n % 5 == 0 { stale.clone() } else { fence() };
            let phase = event(id, EventKind::PhaseCompleted { phase: Phase::Scoring });
            let id = id.clone();
            tokio::spawn(async move {
                // Twice in a row: the second numbered after the first.
                let first = store.save_progress(&tid(&id), &fence, &progress, Some(&phase)).await;
                let second = store.save_progress(&tid(&id), &fence, &progress, Some(&phase)).await;
                (id, first, second)
            })
        });
        let mut applied = 0;
        for joined in futures::future::join_all(saves).await {
            let (id, first, second) = joined.unwrap();
            let stale_one = id.ends_with('0') || id.ends_with('5');
            if stale_one {
                assert!(matches!(first, Err(StoreError::LeaseLost { .. })), "{id}: {first:?}");
                assert!(matches!(second, Err(StoreError::LeaseLost { .. })), "{id}: {second:?}");
                assert_eq!(store.get(&tid(&id)).await.unwrap().unwrap().progress, None, "{id}");
            } else {
                assert!(first.unwrap() && second.unwrap(), "{id}");
                assert_eq!(
                    store.get(&tid(&id)).await.unwrap().unwrap().progress.as_ref(),
                    Some(&finished.mid)
                );
                applied += 1;
            }
        }
        assert_eq!(applied, 32);
        let mut events = unsent(outbox.as_ref()).await;
        events.sort();
        let expected: Vec<(String, i64, String)> = ids
            .iter()
            .filter(|id| !(id.ends_with('0') || id.ends_with('5')))
            .flat_map(|id| [1, 2].map(|seq| (id.clone(), seq, "phase_completed".to_owned())))
            .collect();
        assert_eq!(events, expected);
    }

    pub(crate) async fn events_are_stored_with_the_change_they_report_numbered_per_deliberation(
        store: Arc<dyn DeliberationStore>,
        outbox: Arc<dyn Outbox>,
    ) {
        let finished = finished_deliberation(Role::Dev);
        let submitted = event("a", EventKind::Submitted);
        assert!(store.create(&request("a", Role::Dev, 1), &lease(), Some(&submitted)).await.unwrap());
        assert!(!store.create(&request("a", Role::Dev, 1), &lease(), Some(&submitted)).await.unwrap());
        // A change without an event stores none, and takes no number.
        assert!(store.create(&request("quiet", Role::Dev, 2), &lease(), None).await.unwrap());
        assert!(
            store.mark_started(&tid("a"), &fence(), 2, Some(&event("a", EventKind::Started))).await.unwrap()
        );
        assert!(store.save_progress(&tid("a"), &fence(), &finished.mid, None).await.unwrap());
        let phase = event("a", EventKind::PhaseCompleted { phase: Phase::Scoring });
        assert!(store.save_progress(&tid("a"), &fence(), &finished.mid, Some(&phase)).await.unwrap());
        let completed = event("a", EventKind::completed(&finished.outcome, 5));
        assert!(
            store.complete(&tid("a"), &fence(), &finished.outcome, 3, 5, Some(&completed)).await.unwrap()
        );
        // Refused changes store no event.
        assert!(
            !store.complete(&tid("a"), &fence(), &finished.outcome, 3, 5, Some(&completed)).await.unwrap()
        );
        let cancelled = event("a", EventKind::Ended { status: "CANCELLED".into(), error: "x".into() });
        let too_late = end(DeliberationStatus::Cancelled, "x", 4);
        assert!(!store.finish_unsuccessfully(&tid("a"), None, &too_late, Some(&cancelled)).await.unwrap());
        assert!(store.finish_unsuccessfully(&tid("quiet"), None, &too_late, Some(&cancelled)).await.unwrap());

        assert_eq!(
            unsent(outbox.as_ref()).await,
            [
                ("a".to_owned(), 1, "submitted".to_owned()),
                ("a".to_owned(), 2, "started".to_owned()),
                ("a".to_owned(), 3, "phase_completed".to_owned()),
                ("a".to_owned(), 4, "completed".to_owned()),
                ("quiet".to_owned(), 1, "ended".to_owned()),
            ]
        );
        let messages = outbox.unsent(100).await.unwrap();
        let payload: serde_json::Value = serde_json::from_str(&messages[3].payload).unwrap();
        assert_eq!(payload, serde_json::to_value(&completed).unwrap(), "the event, field for field");
        assert_eq!(messages[3].dedup_id(), "a:completed:4");
        assert_eq!(outbox.depth().await.unwrap(), 5);
        assert_eq!(outbox.unsent(2).await.unwrap().len(), 2, "oldest first, bounded");
    }

    pub(crate) async fn one_relay_holds_the_lease_and_a_stale_one_cannot_mark_anything_sent(
        store: Arc<dyn DeliberationStore>,
        outbox: Arc<dyn Outbox>,
    ) {
        for task_id in ["r1", "r2", "r3"] {
            let submitted = event(task_id, EventKind::Submitted);
            store.create(&request(task_id, Role::Dev, 1), &lease(), Some(&submitted)).await.unwrap();
        }
        let a = outbox.take_relay("relay-a", 5_000, 1_000).await.unwrap().expect("nobody holds it");
        assert!(outbox.take_relay("relay-b", 6_000, 2_000).await.unwrap().is_none(), "a's lease holds");
        let renewed = outbox.take_relay("relay-a", 9_000, 4_000).await.unwrap().unwrap();
        assert_eq!(renewed, a, "renewing keeps the epoch");
        let ids: Vec<i64> = outbox.unsent(100).await.unwrap().iter().map(|m| m.id).collect();
        assert!(outbox.mark_sent(&a, &ids[..1]).await.unwrap());
        assert_eq!(outbox.depth().await.unwrap(), 2);

        // a stops renewing; b takes over under a new epoch and a is fenced off.
        let b = outbox.take_relay("relay-b", 20_000, 10_000).await.unwrap().expect("a's lease ran out");
        assert!(b.epoch > a.epoch);
        assert!(!outbox.mark_sent(&a, &ids[1..2]).await.unwrap(), "a no longer holds the lease");
        assert_eq!(outbox.depth().await.unwrap(), 2, "nothing removed by a stale relay");
        assert!(outbox.take_relay("relay-a", 30_000, 11_000).await.unwrap().is_none());
        assert!(outbox.mark_sent(&b, &ids[1..]).await.unwrap());
        assert_eq!(outbox.depth().await.unwrap(), 0);

        // Released at shutdown: another relay takes it at once.
        outbox.release_relay(&b).await.unwrap();
        let c = outbox.take_relay("relay-c", 40_000, 12_000).await.unwrap().expect("released");
        assert!(c.epoch > b.epoch);
    }

    pub(crate) async fn the_outbox_is_bounded_by_dropping_the_oldest(
        store: Arc<dyn DeliberationStore>,
        outbox: Arc<dyn Outbox>,
    ) {
        for n in 0..7 {
            let task_id = format!("b{n}");
            let submitted = event(&task_id, EventKind::Submitted);
            store.create(&request(&task_id, Role::Dev, n), &lease(), Some(&submitted)).await.unwrap();
        }
        assert_eq!(outbox.drop_beyond(10).await.unwrap(), 0);
        assert_eq!(outbox.drop_beyond(3).await.unwrap(), 4);
        let kept: Vec<String> = outbox.unsent(100).await.unwrap().into_iter().map(|m| m.task_id).collect();
        assert_eq!(kept, ["b4", "b5", "b6"], "the newest are kept");
        assert_eq!(outbox.depth().await.unwrap(), 3);
    }
}

/// Runs each council contract function once per store, with the store's two ports.
macro_rules! council_contract_tests {
    ($($test:ident),* $(,)?) => {
        mod sqlite_councils {
            use crate::support::TestDb as _;

            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let db = crate::support::SqliteDb::new().await;
                    crate::councils::$test(db.councils(), db.store()).await;
                }
            )*
        }

        mod postgres_councils {
            use crate::support::TestDb as _;

            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let Some(db) = crate::support::PostgresDb::new().await else { return };
                    crate::councils::$test(db.councils(), db.store()).await;
                    db.drop_schema().await;
                }
            )*
        }

        mod memory_councils {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let store = std::sync::Arc::new(orchestrator_application::testing::InMemoryStore::default());
                    crate::councils::$test(store.clone(), store).await;
                }
            )*
        }
    };
}

council_contract_tests!(
    councils_are_created_registered_listed_unregistered_and_deleted,
    every_agent_field_round_trips,
    a_refused_registry_change_stores_nothing,
    concurrent_registry_changes_apply_one_after_the_other,
    declared_councils_are_created_once,
    records_follow_the_stored_results_of_standing_deliberations,
);

mod restart {
    use std::sync::Arc;

    use crate::support::TestDb as _;

    use orchestrator_application::ports::{CouncilStore, DeliberationStore};

    use crate::councils::{declared, use_case};

    /// Declares the councils on `first`, reopens the database as a restarted server would and
    /// declares them again: nothing is created twice and nothing changes.
    async fn declare_then_restart(
        first: Arc<dyn CouncilStore>,
        reopened: impl AsyncFnOnce() -> Arc<dyn CouncilStore>,
    ) {
        assert_eq!(use_case(first.clone()).declare(&declared()).await.unwrap().len(), 2);
        let before = first.registry().await.unwrap();
        let second = reopened().await;
        assert!(use_case(second.clone()).declare(&declared()).await.unwrap().is_empty());
        assert_eq!(second.registry().await.unwrap(), before);
        assert_eq!(before.councils().len(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_declared_councils_survive_a_restart_without_duplicates() {
        let db = crate::support::SqliteDb::new().await;
        let path = db.path.clone();
        let first = db.councils();
        declare_then_restart(first, async || {
            db.store.close().await;
            let store = orchestrator_infra_store::SqliteStore::open(
                path.to_str().unwrap(),
                &orchestrator_infra_store::StoreOptions::default(),
            )
            .await
            .unwrap();
            Arc::new(store) as Arc<dyn CouncilStore>
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_declared_councils_survive_a_restart_without_duplicates() {
        let Some(db) = crate::support::PostgresDb::new().await else { return };
        declare_then_restart(db.councils(), async || db.reopen().await as Arc<dyn CouncilStore>).await;
        db.drop_schema().await;
    }
}

mod councils {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use orchestrator_application::ports::{
        Clock, CouncilStore, DeliberationStore, IdGenerator, MockAgentBackend, MockClock, MockIdGenerator,
    };
    use orchestrator_application::testing::tid;
    use orchestrator_application::{
        ApplicationError, CouncilSelector, Councils, CreateCouncilCommand, DeclaredCouncil,
        RegisterAgentCommand,
    };
    use orchestrator_domain::{
        AgentId, AgentMetadata, AgentStatus, Capabilities, CouncilId, DeliberationStatus, DomainError,
        Member, Persona, ProfileName, Registry, Role, Rounds, StandingCouncil,
    };

    use crate::support::{end, fence, lease, request, standing_deliberation, standing_request};

    type Councils_ = Arc<dyn CouncilStore>;
    type Deliberations = Arc<dyn DeliberationStore>;

    /// The use cases over `store`: every profile but `gone` exists, the clock says 1000 and
    /// council ids are fresh UUIDs.
    pub(crate) fn use_case(store: Councils_) -> Councils {
        let mut backend = MockAgentBackend::new();
        backend.expect_has_profile().returning(|p| p.as_str() != "gone");
        let mut clock = MockClock::new();
        clock.expect_now_ms().return_const(1_000_i64);
        let mut ids = MockIdGenerator::new();
        ids.expect_new_id().returning(|| uuid::Uuid::new_v4().to_string());
        let clock: Arc<dyn Clock> = Arc::new(clock);
        let ids: Arc<dyn IdGenerator> = Arc::new(ids);
        Councils::new(store, Some(Arc::new(backend)), clock, ids)
    }

    fn agent(id: &str) -> AgentId {
        AgentId::new(id).unwrap()
    }

    fn profile(name: &str) -> ProfileName {
        ProfileName::new(name).unwrap()
    }

    fn register(id: &str, role: Role) -> RegisterAgentCommand {
        RegisterAgentCommand {
            agent_id: agent(id),
            role,
            profile: Some(profile("fast")),
            persona: None,
            capabilities: Capabilities::default(),
            metadata: AgentMetadata::default(),
        }
    }

    /// What a configuration file declares: an ARCHITECT and a DATA council.
    pub(crate) fn declared() -> Vec<DeclaredCouncil> {
        vec![
            DeclaredCouncil {
                role: Role::Architect,
                rounds: Rounds::new(2).unwrap(),
                agents: vec![
                    (
                        agent("arch-a"),
                        profile("fast"),
                        Some(Persona::new("You think in interfaces.").unwrap()),
                    ),
                    (agent("arch-b"), profile("big"), None),
                ],
            },
            DeclaredCouncil {
                role: Role::Data,
                rounds: Rounds::new(0).unwrap(),
                agents: vec![(agent("data-a"), profile("fast"), None)],
            },
        ]
    }

    fn roles(councils: &[StandingCouncil]) -> Vec<Role> {
        councils.iter().map(StandingCouncil::role).collect()
    }

    fn members(council: &StandingCouncil) -> Vec<(&str, &str, AgentStatus)> {
        council.members().iter().map(|m| (m.id.as_str(), m.profile.as_str(), m.status)).collect()
    }

    pub(crate) async fn councils_are_created_registered_listed_unregistered_and_deleted(
        store: Councils_,
        _: Deliberations,
    ) {
        let councils = use_case(store.clone());
        assert_eq!(store.registry().await.unwrap(), Registry::default());

        let dev = councils
            .create(CreateCouncilCommand {
                role: Role::Dev,
                num_agents: 3,
                profiles: vec![profile("fast"), profile("big")],
                profiles_field: "config.model_profiles",
                rounds: Rounds::new(2).unwrap(),
                persona: None,
            })
            .await
            .unwrap();
        use AgentStatus::{Active, Draining};
        assert_eq!(
            members(&dev),
            [("dev-1", "fast", Active), ("dev-2", "big", Active), ("dev-3", "fast", Active)]
        );
        let again = CreateCouncilCommand {
            role: Role::Dev,
            num_agents: 1,
            profiles: vec![],
            profiles_field: "config.model_profile",
            rounds: Rounds::DEFAULT,
            persona: None,
        };
        assert!(
            matches!(councils.create(again).await, Err(ApplicationError::Conflict { ref field, .. }) if field == "role")
        );

        let qa = councils.register(register("alice", Role::Qa)).await.unwrap();
        assert_eq!(councils.register(register("bob", Role::Qa)).await.unwrap().id(), qa.id());
        let taken = councils.register(register("dev-2", Role::Qa)).await;
        assert!(
            matches!(taken, Err(ApplicationError::Conflict { ref field, .. }) if field == "agent_id"),
            "{taken:?}"
        );

        assert_eq!(roles(&councils.list(None).await.unwrap()), [Role::Dev, Role::Qa]);
        assert_eq!(roles(&councils.list(Some(Role::Qa)).await.unwrap()), [Role::Qa]);
        assert!(councils.list(Some(Role::Data)).await.unwrap().is_empty());

        councils.set_status(&agent("bob"), Draining).await.unwrap();
        let stored = store.registry().await.unwrap();
        assert_eq!(
            members(stored.council_for(Role::Qa).unwrap()),
            [("alice", "fast", Active), ("bob", "fast", Draining)]
        );
        let err = councils.unregister(&agent("alice"), Some(Role::Qa)).await.unwrap_err();
        assert!(err.to_string().starts_with("status: "), "the only ACTIVE agent stays: {err}");
        councils.set_status(&agent("bob"), Active).await.unwrap();
        let (council_id, removed) = councils.unregister(&agent("alice"), Some(Role::Qa)).await.unwrap();
        assert_eq!((&council_id, removed.id.as_str()), (qa.id(), "alice"));
        let err = councils.unregister(&agent("bob"), None).await.unwrap_err();
        assert!(err.to_string().starts_with("agent_id: \"bob\" is the last agent"), "{err}");
        let err = councils.unregister(&agent("alice"), None).await.unwrap_err();
        assert!(matches!(err, ApplicationError::Missing { ref field, .. } if field == "agent_id"), "{err:?}");

        assert_eq!(councils.delete(&CouncilSelector::Id(dev.id().clone())).await.unwrap().members().len(), 3);
        assert_eq!(councils.delete(&CouncilSelector::Role(Role::Qa)).await.unwrap().id(), qa.id());
        assert_eq!(store.registry().await.unwrap(), Registry::default());
        let gone = councils.delete(&CouncilSelector::Role(Role::Qa)).await.unwrap_err();
        assert!(matches!(gone, ApplicationError::Missing { ref field, .. } if field == "role"), "{gone:?}");
        // Deleting freed the ids.
        councils.register(register("dev-2", Role::Qa)).await.unwrap();
    }

    pub(crate) async fn every_agent_field_round_trips(store: Councils_, _: Deliberations) {
        let mut alice = Member::new(agent("alice"), Role::Devops, profile("big"), 1_234)
            .with_persona(Some(Persona::new("You always ask for a rollback plan.\nBe brief.").unwrap()));
        alice.capabilities =
            Capabilities::new(vec!["deploy".into(), "review".into()], vec!["rust".into(), "hcl".into()], 4)
                .unwrap();
        alice.metadata = AgentMetadata::new(BTreeMap::from([
            ("team".to_owned(), "platform".to_owned()),
            ("owner".to_owned(), "ops@example.com — on call".to_owned()),
        ]))
        .unwrap();
        let bob = Member {
            status: AgentStatus::Draining,
            ..Member::new(agent("bob"), Role::Devops, profile("fast"), 1_235)
        };
        let council = StandingCouncil::new(
            CouncilId::new("c-devops").unwrap(),
            Role::Devops,
            vec![bob, alice],
            Rounds::new(3).unwrap(),
            999,
        )
        .unwrap();
        let expected = Registry::new(vec![council.clone()]).unwrap();
        let written = store
            .update(&mut |registry| {
                registry.create(council.clone())?;
                Ok(())
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(written, expected);
        assert_eq!(
            store.registry().await.unwrap(),
            expected,
            "seat order, persona, capabilities, metadata, status, times"
        );
    }

    pub(crate) async fn a_refused_registry_change_stores_nothing(store: Councils_, _: Deliberations) {
        use_case(store.clone()).register(register("keep", Role::Dev)).await.unwrap();
        let before = store.registry().await.unwrap();
        let refused = store
            .update(&mut |registry| {
                registry.delete_for_role(Role::Dev)?;
                Err(DomainError::refused("agent_id", "changed my mind"))
            })
            .await
            .unwrap();
        assert_eq!(refused, Err(DomainError::refused("agent_id", "changed my mind")));
        assert_eq!(store.registry().await.unwrap(), before);
        let unchanged = store.update(&mut |_| Ok(())).await.unwrap().unwrap();
        assert_eq!(unchanged, before);
    }

    pub(crate) async fn concurrent_registry_changes_apply_one_after_the_other(
        store: Councils_,
        _: Deliberations,
    ) {
        // Sixteen agents join one council at once: none of the changes may be lost.
        let joins = (0..16).map(|i| {
            let councils = use_case(store.clone());
            tokio::spawn(
                async move { councils.register(register(&format!("agent-{i:02}"), Role::Dev)).await },
            )
        });
        for joined in futures::future::join_all(joins).await {
            joined.unwrap().unwrap();
        }
        let registry = store.registry().await.unwrap();
        let dev = registry.council_for(Role::Dev).unwrap();
        assert_eq!(dev.members().len(), 16);
        assert_eq!(registry.councils().len(), 1, "the first join created the council, the rest joined it");

        // Eight servers register the same id at once, for different roles: one wins.
        let races = (0..8).map(|i| {
            let councils = use_case(store.clone());
            let role = [Role::Qa, Role::Data][i % 2];
            tokio::spawn(async move { councils.register(register("contested", role)).await })
        });
        let outcomes: Vec<_> =
            futures::future::join_all(races).await.into_iter().map(|r| r.unwrap()).collect();
        assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 1, "{outcomes:?}");
        assert!(
            outcomes
                .iter()
                .filter_map(|o| o.as_ref().err())
                .all(|e| matches!(e, ApplicationError::Conflict { .. }))
        );
        let registry = store.registry().await.unwrap();
        assert_eq!(registry.councils().len(), 2, "exactly one council was created for the winner");
    }

    pub(crate) async fn declared_councils_are_created_once(store: Councils_, _: Deliberations) {
        assert_eq!(
            use_case(store.clone()).declare(&declared()).await.unwrap(),
            [Role::Architect, Role::Data]
        );
        let first = store.registry().await.unwrap();
        let architects = first.council_for(Role::Architect).unwrap();
        assert_eq!(
            members(architects),
            [("arch-a", "fast", AgentStatus::Active), ("arch-b", "big", AgentStatus::Active)]
        );
        assert_eq!(architects.rounds().get(), 2);
        assert_eq!(
            architects.members()[0].persona.as_ref().map(Persona::as_str),
            Some("You think in interfaces.")
        );
        assert!(!first.council_for(Role::Data).unwrap().peer_review());
        for _ in 0..2 {
            assert!(use_case(store.clone()).declare(&declared()).await.unwrap().is_empty());
        }
        assert_eq!(store.registry().await.unwrap(), first, "declaring again changes nothing");
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    pub(crate) async fn records_follow_the_stored_results_of_standing_deliberations(
        councils: Councils_,
        store: Deliberations,
    ) {
        let finished = standing_deliberation(Role::Dev, "c-dev");
        let outcome = &finished.outcome;
        let ended = |task_id: &str, at: i64| {
            let store = store.clone();
            let new = standing_request(task_id, Role::Dev, at, &finished);
            async move {
                assert!(store.create(&new, &lease(), None).await.unwrap());
                assert!(store.mark_started(&new.task_id, &fence(), at + 1, None).await.unwrap());
            }
        };
        // Two completed, one failed, one running; and an ad-hoc one whose agents share the ids.
        for (task_id, at) in [("s-1", 100), ("s-2", 200)] {
            ended(task_id, at).await;
            assert!(store.complete(&tid(task_id), &fence(), outcome, at + 50, 49, None).await.unwrap());
        }
        ended("s-failed", 300).await;
        assert!(
            store
                .finish_unsuccessfully(
                    &tid("s-failed"),
                    None,
                    &end(DeliberationStatus::Failed, "x", 301),
                    None
                )
                .await
                .unwrap()
        );
        ended("s-running", 400).await;
        assert!(store.create(&request("ad-hoc", Role::Dev, 500), &lease(), None).await.unwrap());
        assert!(store.mark_started(&tid("ad-hoc"), &fence(), 501, None).await.unwrap());
        let ad_hoc = crate::support::finished_deliberation(Role::Dev).outcome;
        assert!(store.complete(&tid("ad-hoc"), &fence(), &ad_hoc, 502, 1, None).await.unwrap());

        let records = councils.records(None).await.unwrap();
        assert_eq!(records.agents.len(), 4);
        for ranked in &outcome.results {
            let record = &records.agents[&ranked.agent.id];
            assert_eq!(record.ranked, 2, "{}", ranked.agent.id);
            assert_eq!(record.wins, if ranked.rank == 1 { 2 } else { 0 });
            assert!(close(record.score_sum, 2.0 * ranked.score.value()));
            assert_eq!(record.usage, ranked.usage + ranked.usage);
            assert_eq!(record.failures, 0);
        }
        let dropped = &records.agents[&outcome.failures[0].agent];
        assert_eq!((dropped.ranked, dropped.failures, dropped.deliberations()), (0, 2, 2));

        let council = &records.councils[&CouncilId::new("c-dev").unwrap()];
        assert_eq!((council.completed, council.unsuccessful, council.agent_failures), (2, 1, 2));
        assert!(close(council.winner_score_sum, 2.0 * outcome.winner().score.value()));
        assert_eq!(council.usage, outcome.usage + outcome.usage);
        assert!(close(council.success_rate().unwrap(), 2.0 / 3.0));
        let seated: Vec<_> = finished.last.council().agents().iter().map(|a| a.id.clone()).collect();
        assert_eq!(records.busy.iter().cloned().collect::<Vec<_>>(), seated, "the running one's seats");

        let recent = councils.records(Some(200)).await.unwrap();
        let council = &recent.councils[&CouncilId::new("c-dev").unwrap()];
        assert_eq!((council.completed, council.unsuccessful), (1, 1), "s-1 was created before 200");
        assert_eq!(recent.agents[&outcome.winner().agent.id].wins, 1);
        assert_eq!(recent.busy.len(), 4, "busy is now, whatever the window");
        assert!(councils.records(Some(10_000)).await.unwrap().agents.is_empty());
    }
}

mod contract {
    use std::collections::BTreeSet;
    use std::sync::Arc;
    use std::time::Instant;

    use orchestrator_application::ports::{
        Claim, ClaimScope, DeliberationStore, Fence, Lease, ListQuery, StoreError, StoredSelection,
        UnsuccessfulEnd,
    };
    use orchestrator_application::testing::tid;
    use orchestrator_domain::{DeliberationStatus, DryRunOutcome, Role};

    use crate::support::{
        end, fence, finished_deliberation, large_deliberation, lease, noted_deliberation, noted_request,
        request,
    };

    type Store = Arc<dyn DeliberationStore>;

    /// Creates a deliberation and drives it to `status` (completing with a real outcome).
    async fn seed(store: &Store, task_id: &str, role: Role, created_at_ms: i64, status: DeliberationStatus) {
        assert!(store.create(&request(task_id, role, created_at_ms), &lease(), None).await.unwrap());
        match status {
            DeliberationStatus::Pending => {}
            DeliberationStatus::InProgress => {
                assert!(store.mark_started(&tid(task_id), &fence(), created_at_ms + 1, None).await.unwrap());
            }
            DeliberationStatus::Completed => {
                assert!(store.mark_started(&tid(task_id), &fence(), created_at_ms + 1, None).await.unwrap());
                let outcome = finished_deliberation(role).outcome;
                assert!(
                    store
                        .complete(&tid(task_id), &fence(), &outcome, created_at_ms + 100, 99, None)
                        .await
                        .unwrap()
                );
            }
            failed => {
                assert!(
                    store
                        .finish_unsuccessfully(
                            &tid(task_id),
                            None,
                            &end(failed, "stopped", created_at_ms + 5),
                            None
                        )
                        .await
                        .unwrap()
                );
            }
        }
    }

    fn ids(page: &orchestrator_application::ports::Page) -> Vec<&str> {
        page.items.iter().map(|r| r.request.task_id.as_str()).collect()
    }

    fn query(limit: u32) -> ListQuery {
        ListQuery { limit, ..ListQuery::default() }
    }

    pub(crate) async fn completed_deliberation_round_trips_every_field(store: Store) {
        let finished = finished_deliberation(Role::Dev);
        // The calls an early stop spared are part of the stored outcome too.
        let outcome =
            &orchestrator_domain::DeliberationOutcome { calls_saved: 6, ..finished.outcome.clone() };
        // The fixture exercises every corner of the outcome.
        assert_eq!(outcome.results.len(), 3);
        assert_eq!(outcome.failures.len(), 1);
        assert!(outcome.results.iter().all(|r| r.proposal.revisions().len() == 2));
        assert!(outcome.results.iter().flat_map(|r| &r.reviews).any(|r| r.score.is_none()));
        assert!(
            outcome
                .results
                .iter()
                .any(|r| matches!(r.checks.dry_run, DryRunOutcome::Ran { passed: false, .. }))
        );
        assert!(outcome.results.iter().any(|r| matches!(r.checks.dry_run, DryRunOutcome::NotRun { .. })));
        assert!(outcome.results.iter().any(|r| r.peer_score.is_some()));
        assert!(outcome.usage.prompt_tokens > 0);

        let new = request("round-trip", Role::Dev, 1_700_000_000_000);
        assert!(store.create(&new, &lease(), None).await.unwrap());
        assert!(store.mark_started(&tid("round-trip"), &fence(), 1_700_000_000_010, None).await.unwrap());
        assert!(store.save_progress(&tid("round-trip"), &fence(), &finished.last, None).await.unwrap());
        assert!(
            store
                .complete(&tid("round-trip"), &fence(), outcome, 1_700_000_009_000, 8_990, None)
                .await
                .unwrap()
        );

        let record = store.get(&tid("round-trip")).await.unwrap().unwrap();
        assert_eq!(record.request, new);
        assert_eq!(record.status, DeliberationStatus::Completed);
        assert_eq!(record.started_at_ms, Some(1_700_000_000_010));
        assert_eq!(record.finished_at_ms, Some(1_700_000_009_000));
        assert_eq!(record.duration_ms, Some(8_990));
        assert_eq!(record.winner_id.as_deref(), Some(outcome.winner().agent.id.as_str()));
        assert_eq!(record.error, None);
        assert_eq!(record.progress.as_ref(), Some(&finished.last));
        assert_eq!(record.outcome.as_ref(), Some(outcome));
    }

    pub(crate) async fn a_sixteen_agent_outcome_commits_whole_once_and_only_under_its_fence(store: Store) {
        let finished = large_deliberation(Role::Architect);
        let outcome = &finished.outcome;
        let reviews: usize = outcome.results.iter().map(|r| r.reviews.len()).sum();
        assert!(
            outcome.results.len() >= 15 && reviews >= 30,
            "{} proposals, {reviews} reviews",
            outcome.results.len()
        );

        assert!(store.create(&request("large", Role::Architect, 5), &lease(), None).await.unwrap());
        assert!(store.mark_started(&tid("large"), &fence(), 6, None).await.unwrap());
        let stale = Fence { owner: "someone-else".to_owned(), epoch: fence().epoch };
        assert!(
            store.complete(&tid("large"), &stale, outcome, 7, 1, None).await.is_err(),
            "a completion under another holder's fence is refused"
        );
        assert_eq!(store.get(&tid("large")).await.unwrap().unwrap().outcome, None, "and inserts nothing");
        assert!(store.complete(&tid("large"), &fence(), outcome, 8, 2, None).await.unwrap());
        assert!(!store.complete(&tid("large"), &fence(), outcome, 9, 3, None).await.unwrap(), "only once");

        let record = store.get(&tid("large")).await.unwrap().unwrap();
        assert_eq!(record.status, DeliberationStatus::Completed);
        assert_eq!(record.finished_at_ms, Some(8));
        assert_eq!(record.outcome.as_ref(), Some(outcome));
    }

    pub(crate) async fn an_awaited_deliberation_is_stored_pending_or_already_started(store: Store) {
        let finished = finished_deliberation(Role::Dev);
        assert!(store.create_awaited(&request("queued", Role::Dev, 10), &lease(), None).await.unwrap());
        let queued = store.get(&tid("queued")).await.unwrap().unwrap();
        assert_eq!((queued.status, queued.started_at_ms), (DeliberationStatus::Pending, None));
        assert!(store.mark_started(&tid("queued"), &fence(), 12, None).await.unwrap());

        assert!(store.create_awaited(&request("running", Role::Dev, 20), &lease(), Some(21)).await.unwrap());
        assert!(
            !store.create_awaited(&request("running", Role::Dev, 20), &lease(), Some(22)).await.unwrap(),
            "an id is stored once"
        );
        let running = store.get(&tid("running")).await.unwrap().unwrap();
        assert_eq!((running.status, running.started_at_ms), (DeliberationStatus::InProgress, Some(21)));
        assert!(!store.mark_started(&tid("running"), &fence(), 23, None).await.unwrap(), "started already");
        // The creator's fence holds it, as after a start.
        assert!(store.save_progress(&tid("running"), &fence(), &finished.mid, None).await.unwrap());
        assert!(store.complete(&tid("running"), &fence(), &finished.outcome, 30, 9, None).await.unwrap());
        assert_eq!(store.get(&tid("running")).await.unwrap().unwrap().status, DeliberationStatus::Completed);
    }

    pub(crate) async fn progress_is_saved_only_while_in_progress(store: Store) {
        let finished = finished_deliberation(Role::Qa);
        assert!(store.create(&request("progress", Role::Qa, 10), &lease(), None).await.unwrap());
        assert!(
            !store.save_progress(&tid("progress"), &fence(), &finished.mid, None).await.unwrap(),
            "saved while PENDING"
        );
        assert_eq!(store.get(&tid("progress")).await.unwrap().unwrap().progress, None);

        assert!(store.mark_started(&tid("progress"), &fence(), 11, None).await.unwrap());
        assert!(store.save_progress(&tid("progress"), &fence(), &finished.mid, None).await.unwrap());
        let record = store.get(&tid("progress")).await.unwrap().unwrap();
        assert_eq!(record.progress.as_ref(), Some(&finished.mid));
        assert_eq!(record.status, DeliberationStatus::InProgress);
        assert_eq!(record.outcome, None);

        assert!(
            store.save_progress(&tid("progress"), &fence(), &finished.last, None).await.unwrap(),
            "a later phase overwrites"
        );
        assert_eq!(
            store.get(&tid("progress")).await.unwrap().unwrap().progress.as_ref(),
            Some(&finished.last)
        );

        assert!(store.complete(&tid("progress"), &fence(), &finished.outcome, 20, 9, None).await.unwrap());
        assert!(
            !store.save_progress(&tid("progress"), &fence(), &finished.mid, None).await.unwrap(),
            "saved after completion"
        );
        assert_eq!(
            store.get(&tid("progress")).await.unwrap().unwrap().progress.as_ref(),
            Some(&finished.last)
        );
        assert!(!store.save_progress(&tid("missing"), &fence(), &finished.mid, None).await.unwrap());
    }

    pub(crate) async fn status_changes_follow_the_lifecycle(store: Store) {
        use DeliberationStatus::*;
        let outcome = finished_deliberation(Role::Dev).outcome;

        // Nothing applies to an unknown deliberation.
        assert!(!store.mark_started(&tid("nope"), &fence(), 1, None).await.unwrap());
        assert!(!store.complete(&tid("nope"), &fence(), &outcome, 2, 1, None).await.unwrap());
        assert!(!store.finish_unsuccessfully(&tid("nope"), None, &end(Failed, "x", 2), None).await.unwrap());

        // PENDING → IN_PROGRESS → COMPLETED, then nothing.
        store.create(&request("happy", Role::Dev, 1), &lease(), None).await.unwrap();
        assert!(store.mark_started(&tid("happy"), &fence(), 2, None).await.unwrap());
        assert!(!store.mark_started(&tid("happy"), &fence(), 3, None).await.unwrap(), "started twice");
        assert!(store.complete(&tid("happy"), &fence(), &outcome, 4, 2, None).await.unwrap());
        assert!(
            !store.complete(&tid("happy"), &fence(), &outcome, 5, 3, None).await.unwrap(),
            "completed twice"
        );
        for status in [Failed, Timeout, Cancelled, Interrupted] {
            assert!(
                !store
                    .finish_unsuccessfully(&tid("happy"), None, &end(status, "late", 6), None)
                    .await
                    .unwrap(),
                "{status}"
            );
        }
        let record = store.get(&tid("happy")).await.unwrap().unwrap();
        assert_eq!(
            (record.status, record.started_at_ms, record.finished_at_ms),
            (Completed, Some(2), Some(4))
        );
        assert_eq!(record.outcome.as_ref(), Some(&outcome));

        // PENDING → CANCELLED; completing afterwards is refused and stores no outcome.
        store.create(&request("cancelled", Role::Dev, 1), &lease(), None).await.unwrap();
        assert!(
            store
                .finish_unsuccessfully(&tid("cancelled"), None, &end(Cancelled, "client cancelled", 7), None)
                .await
                .unwrap()
        );
        assert!(!store.mark_started(&tid("cancelled"), &fence(), 8, None).await.unwrap());
        assert!(!store.complete(&tid("cancelled"), &fence(), &outcome, 9, 1, None).await.unwrap());
        let record = store.get(&tid("cancelled")).await.unwrap().unwrap();
        assert_eq!(record.status, Cancelled);
        assert_eq!(record.error.as_deref(), Some("client cancelled"));
        assert_eq!((record.finished_at_ms, record.winner_id, record.outcome), (Some(7), None, None));

        // IN_PROGRESS → TIMEOUT, and a terminal status stays.
        store.create(&request("slow", Role::Dev, 1), &lease(), None).await.unwrap();
        store.mark_started(&tid("slow"), &fence(), 2, None).await.unwrap();
        assert!(
            store
                .finish_unsuccessfully(
                    &tid("slow"),
                    None,
                    &end(Timeout, "deadline of 600s exceeded", 3),
                    None
                )
                .await
                .unwrap()
        );
        assert!(
            !store.finish_unsuccessfully(&tid("slow"), None, &end(Failed, "again", 4), None).await.unwrap()
        );
        let record = store.get(&tid("slow")).await.unwrap().unwrap();
        assert_eq!((record.status, record.error.as_deref()), (Timeout, Some("deadline of 600s exceeded")));

        // finish_unsuccessfully only takes failure statuses.
        store.create(&request("odd", Role::Dev, 1), &lease(), None).await.unwrap();
        for status in [Pending, InProgress, Completed] {
            assert!(
                !store.finish_unsuccessfully(&tid("odd"), None, &end(status, "x", 2), None).await.unwrap(),
                "{status}"
            );
        }
        assert_eq!(store.get(&tid("odd")).await.unwrap().unwrap().status, Pending);
    }

    pub(crate) async fn racing_cancel_and_complete_apply_exactly_one(store: Store) {
        let outcome = finished_deliberation(Role::Dev).outcome;
        for i in 0..20 {
            let task_id = tid(&format!("race-{i}"));
            store.create(&request(&task_id, Role::Dev, i), &lease(), None).await.unwrap();
            store.mark_started(&task_id, &fence(), i, None).await.unwrap();
            let (fence, cancel) = (fence(), end(DeliberationStatus::Cancelled, "cancelled", 100));
            let (completed, cancelled) = tokio::join!(
                store.complete(&task_id, &fence, &outcome, 100, 10, None),
                store.finish_unsuccessfully(&task_id, None, &cancel, None),
            );
            let (completed, cancelled) = (completed.unwrap(), cancelled.unwrap());
            assert!(completed ^ cancelled, "{task_id}: completed={completed} cancelled={cancelled}");
            let record = store.get(&task_id).await.unwrap().unwrap();
            if completed {
                assert_eq!(record.status, DeliberationStatus::Completed);
                assert_eq!(record.outcome.as_ref(), Some(&outcome));
            } else {
                assert_eq!(record.status, DeliberationStatus::Cancelled);
                assert_eq!(record.outcome, None);
            }
        }
    }

    pub(crate) async fn create_is_idempotent(store: Store) {
        let first = request("same-id", Role::Architect, 100);
        assert!(store.create(&first, &lease(), None).await.unwrap());
        let mut second = request("same-id", Role::Data, 200);
        second.num_agents = 7;
        assert!(!store.create(&second, &lease(), None).await.unwrap());
        assert!(!store.create(&first, &lease(), None).await.unwrap());
        let record = store.get(&tid("same-id")).await.unwrap().unwrap();
        assert_eq!(record.request, first);
        assert_eq!(record.status, DeliberationStatus::Pending);
        assert_eq!(store.list(&query(10)).await.unwrap().items.len(), 1);
    }

    pub(crate) async fn get_of_unknown_id_is_none(store: Store) {
        assert_eq!(store.get(&tid("never-stored")).await.unwrap(), None);
        store.create(&request("stored", Role::Dev, 1), &lease(), None).await.unwrap();
        assert_eq!(store.get(&tid("Stored")).await.unwrap(), None, "ids are case-sensitive");
    }

    pub(crate) async fn principals_are_stored_and_listing_filters_by_them(store: Store) {
        for (task_id, principal, at) in [("a-1", "alice", 10), ("b-1", "bob", 20), ("a-2", "alice", 30)] {
            let new = orchestrator_application::ports::NewDeliberation {
                principal: principal.to_owned(),
                ..crate::support::request(task_id, Role::Dev, at)
            };
            assert!(store.create(&new, &lease(), None).await.unwrap());
        }
        assert_eq!(store.get(&tid("b-1")).await.unwrap().unwrap().request.principal, "bob");
        let alices = ListQuery { principal: Some("alice".into()), limit: 10, ..ListQuery::default() };
        let page = store.list(&alices).await.unwrap();
        let ids: Vec<_> = page.items.iter().map(|r| r.request.task_id.as_str()).collect();
        assert_eq!(ids, ["a-2", "a-1"]);
        let everyone = store.list(&ListQuery { limit: 10, ..ListQuery::default() }).await.unwrap();
        assert_eq!(everyone.items.len(), 3);
    }

    pub(crate) async fn list_filters_by_role_status_and_time(store: Store) {
        use DeliberationStatus::*;
        seed(&store, "t-a", Role::Dev, 1_000, Completed).await;
        seed(&store, "t-b", Role::Qa, 2_000, Pending).await;
        seed(&store, "t-c", Role::Dev, 3_000, InProgress).await;
        seed(&store, "t-d", Role::Dev, 4_000, Cancelled).await;

        let all = store.list(&query(100)).await.unwrap();
        assert_eq!(ids(&all), ["t-d", "t-c", "t-b", "t-a"]);
        assert_eq!(all.next_cursor, None);
        assert!(all.items.iter().all(|r| r.progress.is_none() && r.outcome.is_none()));
        let completed = &all.items[3];
        assert_eq!(completed.request, request("t-a", Role::Dev, 1_000));
        assert_eq!(completed.status, Completed);
        assert_eq!(
            (completed.started_at_ms, completed.finished_at_ms, completed.duration_ms),
            (Some(1_001), Some(1_100), Some(99))
        );
        assert!(completed.winner_id.as_deref().is_some_and(|w| w.starts_with("dev-")));
        assert_eq!(all.items[0].error.as_deref(), Some("stopped"));

        let list = |q: ListQuery| {
            let store = store.clone();
            async move { store.list(&ListQuery { limit: 100, ..q }).await.unwrap() }
        };
        assert_eq!(
            ids(&list(ListQuery { role: Some(Role::Dev), ..ListQuery::default() }).await),
            ["t-d", "t-c", "t-a"]
        );
        assert_eq!(
            ids(&list(ListQuery { role: Some(Role::Data), ..ListQuery::default() }).await),
            Vec::<&str>::new()
        );
        assert_eq!(ids(&list(ListQuery { status: Some(Completed), ..ListQuery::default() }).await), ["t-a"]);
        assert_eq!(ids(&list(ListQuery { status: Some(Pending), ..ListQuery::default() }).await), ["t-b"]);
        assert_eq!(
            ids(&list(ListQuery { created_after_ms: Some(2_000), ..ListQuery::default() }).await),
            ["t-d", "t-c", "t-b"],
            "created_after is inclusive"
        );
        assert_eq!(
            ids(&list(ListQuery { created_before_ms: Some(3_000), ..ListQuery::default() }).await),
            ["t-b", "t-a"],
            "created_before is exclusive"
        );
        let combined = ListQuery {
            role: Some(Role::Dev),
            status: Some(InProgress),
            created_after_ms: Some(2_000),
            created_before_ms: Some(4_000),
            ..ListQuery::default()
        };
        assert_eq!(ids(&list(combined).await), ["t-c"]);
    }

    pub(crate) async fn list_pages_newest_first_without_gaps_or_duplicates(store: Store) {
        // Groups of three share a timestamp, so the task id must break ties.
        for i in 0..25 {
            let role = if i % 2 == 0 { Role::Dev } else { Role::Qa };
            store
                .create(&request(&format!("page-{i:02}"), role, 1_000 + i / 3), &lease(), None)
                .await
                .unwrap();
        }
        let mut expected: Vec<(i64, String)> =
            (0..25).map(|i| (1_000 + i / 3, format!("page-{i:02}"))).collect();
        expected.sort_by(|a, b| b.cmp(a));
        let expected: Vec<String> = expected.into_iter().map(|(_, id)| id).collect();

        let mut seen = Vec::new();
        let mut page_sizes = Vec::new();
        let mut cursor = None;
        loop {
            let page = store
                .list(&ListQuery { limit: 10, cursor: cursor.take(), ..ListQuery::default() })
                .await
                .unwrap();
            page_sizes.push(page.items.len());
            seen.extend(page.items.iter().map(|r| r.request.task_id.to_string()));
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(page_sizes, [10, 10, 5]);
        assert_eq!(seen, expected);
        assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), 25);

        // Paging composes with filters.
        let mut qa = Vec::new();
        let mut cursor = None;
        loop {
            let q =
                ListQuery { role: Some(Role::Qa), limit: 5, cursor: cursor.take(), ..ListQuery::default() };
            let page = store.list(&q).await.unwrap();
            qa.extend(page.items.iter().map(|r| r.request.task_id.to_string()));
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        let expected_qa: Vec<String> =
            expected.iter().filter(|id| id[5..].parse::<u32>().unwrap() % 2 == 1).cloned().collect();
        assert_eq!(qa, expected_qa);
    }

    pub(crate) async fn list_rejects_a_malformed_cursor(store: Store) {
        store.create(&request("only", Role::Dev, 1), &lease(), None).await.unwrap();
        let hex = |s: &str| s.bytes().map(|b| format!("{b:02x}")).collect::<String>();
        for cursor in
            ["not-a-cursor".to_owned(), "zz".to_owned(), hex("no-colon"), hex("abc:t"), String::new()]
        {
            let q = ListQuery { limit: 10, cursor: Some(cursor.clone()), ..ListQuery::default() };
            let result = store.list(&q).await;
            assert!(matches!(result, Err(StoreError::InvalidCursor)), "{cursor:?}: {result:?}");
        }
    }

    pub(crate) async fn list_clamps_the_page_size(store: Store) {
        for i in 0..101 {
            store.create(&request(&format!("clamp-{i:03}"), Role::Dev, i), &lease(), None).await.unwrap();
        }
        let smallest = store.list(&query(0)).await.unwrap();
        assert_eq!(ids(&smallest), ["clamp-100"]);
        assert!(smallest.next_cursor.is_some());
        let largest = store.list(&query(1_000)).await.unwrap();
        assert_eq!(largest.items.len(), 100);
        let rest = store
            .list(&ListQuery { limit: 1_000, cursor: largest.next_cursor, ..ListQuery::default() })
            .await;
        let rest = rest.unwrap();
        assert_eq!(ids(&rest), ["clamp-000"]);
        assert_eq!(rest.next_cursor, None);
    }

    pub(crate) async fn claiming_takes_only_unfinished_work_nobody_live_holds(store: Store) {
        use DeliberationStatus::*;
        let finished = finished_deliberation(Role::Devops);
        let at = |owner: &str, until_ms: i64| Lease { owner: owner.into(), until_ms };
        store.create(&request("mine", Role::Devops, 1), &at("me", 1_000), None).await.unwrap();
        store.create(&request("live", Role::Devops, 2), &at("other", 9_000), None).await.unwrap();
        store.create(&request("dead", Role::Devops, 3), &at("gone", 500), None).await.unwrap();
        let gone = Fence::created_by("gone");
        assert!(store.mark_started(&tid("dead"), &gone, 4, None).await.unwrap());
        assert!(store.save_progress(&tid("dead"), &gone, &finished.mid, None).await.unwrap());
        seed(&store, "done", Role::Devops, 4, Completed).await;
        seed(&store, "cancelled", Role::Devops, 5, Cancelled).await;

        // At 600: "dead" expired; "live" and "mine" hold. A claim under the owner name that
        // holds "mine" takes nothing held either (a second process may carry the same name):
        // only a claim of everything — a store held exclusively — takes live leases.
        let claimed = store
            .claim_unfinished(&at("me", 2_000), 600, &Claim::all(ClaimScope::Expired, &[]))
            .await
            .unwrap();
        let ids: Vec<_> = claimed.iter().map(|r| r.request.task_id.as_str()).collect();
        assert_eq!(ids, ["dead"]);
        assert_eq!(claimed[0].status, InProgress);
        assert_eq!(claimed[0].progress.as_ref(), Some(&finished.mid), "claimed with its saved progress");
        assert_eq!(claimed[0].request, request("dead", Role::Devops, 3));
        let claimed =
            store.claim_unfinished(&at("me", 2_000), 600, &Claim::all(ClaimScope::All, &[])).await.unwrap();
        let ids: Vec<_> = claimed.iter().map(|r| r.request.task_id.as_str()).collect();
        assert_eq!(ids, ["mine", "live", "dead"], "everything unfinished, oldest first");
        assert!(
            store
                .claim_unfinished(&at("third", 3_000), 1_500, &Claim::all(ClaimScope::Expired, &[]))
                .await
                .unwrap()
                .is_empty(),
            "me renewed to 2000"
        );

        // Renewal keeps a claim alive; a lapse lets another node take it.
        let only_dead = [tid("dead")];
        assert_eq!(store.renew_leases(&at("me", 1_800), Some(&only_dead)).await.unwrap(), ["dead"]);
        assert!(store.renew_leases(&at("me", 1_800), Some(&[])).await.unwrap().is_empty());
        assert_eq!(store.renew_leases(&at("me", 10_000), None).await.unwrap().len(), 3);
        assert!(
            store
                .claim_unfinished(&at("third", 20_000), 8_500, &Claim::all(ClaimScope::Expired, &[]))
                .await
                .unwrap()
                .is_empty()
        );
        let taken = store
            .claim_unfinished(&at("third", 20_000), 10_500, &Claim::all(ClaimScope::Expired, &[]))
            .await
            .unwrap();
        let ids: Vec<_> = taken.iter().map(|r| r.request.task_id.as_str()).collect();
        assert_eq!(ids, ["mine", "live", "dead"]);
        assert!(store.renew_leases(&at("me", 30_000), None).await.unwrap().is_empty(), "no longer mine");

        // Each claim moved the rows to a new epoch: "me" wrote "dead" under epoch 2 (claimed
        // twice), "third" now holds epoch 3. The old holder's writes are refused, the new one's land.
        assert_eq!(taken[2].lease_epoch, 3);
        let stale = Fence { owner: "me".into(), epoch: 2 };
        let refused = store.save_progress(&tid("dead"), &stale, &finished.mid, None).await.unwrap_err();
        assert!(matches!(refused, StoreError::LeaseLost { .. }), "{refused:?}");
        let refused =
            store.complete(&tid("dead"), &stale, &finished.outcome, 11_000, 5, None).await.unwrap_err();
        assert!(matches!(refused, StoreError::LeaseLost { .. }), "{refused:?}");
        let stale_end = end(Failed, "lost", 11_000);
        let refused =
            store.finish_unsuccessfully(&tid("dead"), Some(&stale), &stale_end, None).await.unwrap_err();
        assert!(matches!(refused, StoreError::LeaseLost { .. }), "{refused:?}");
        let holder = Fence { owner: "third".into(), epoch: 3 };
        assert!(store.complete(&tid("dead"), &holder, &finished.outcome, 11_000, 5, None).await.unwrap());
        assert_eq!(store.get(&tid("dead")).await.unwrap().unwrap().status, Completed);
        // A write the lifecycle refuses is not a lost lease.
        assert!(!store.complete(&tid("dead"), &holder, &finished.outcome, 11_000, 5, None).await.unwrap());

        // A node never claims what it runs already.
        let running = [tid("mine"), tid("live")];
        let claimed = store
            .claim_unfinished(&at("third", 40_000), 39_000, &Claim::all(ClaimScope::All, &running))
            .await
            .unwrap();
        assert!(claimed.is_empty(), "{:?}", claimed.iter().map(|r| &r.request.task_id).collect::<Vec<_>>());
    }

    pub(crate) async fn a_claim_takes_at_most_its_limit_oldest_first_or_only_the_named_one(store: Store) {
        let at = |owner: &str, until_ms: i64| Lease { owner: owner.into(), until_ms };
        for (n, task_id) in ["w0", "w1", "w2", "w3"].into_iter().enumerate() {
            store.create(&request(task_id, Role::Qa, n as i64), &at("gone", 0), None).await.unwrap();
        }
        let two = Claim { limit: 2, ..Claim::all(ClaimScope::Expired, &[]) };
        let taken = store.claim_unfinished(&at("a", 9_000), 100, &two).await.unwrap();
        let ids: Vec<_> = taken.iter().map(|r| r.request.task_id.as_str()).collect();
        assert_eq!(ids, ["w0", "w1"], "the two oldest");
        let named = Claim { only: Some(&tid("w3")), limit: 1, ..Claim::all(ClaimScope::Expired, &[]) };
        let taken = store.claim_unfinished(&at("b", 9_000), 100, &named).await.unwrap();
        assert_eq!(taken.iter().map(|r| r.request.task_id.as_str()).collect::<Vec<_>>(), ["w3"]);
        let held = Claim { only: Some(&tid("w0")), limit: 1, ..Claim::all(ClaimScope::Expired, &[]) };
        assert!(store.claim_unfinished(&at("b", 9_000), 100, &held).await.unwrap().is_empty(), "a holds it");
        let rest = store
            .claim_unfinished(&at("c", 9_000), 100, &Claim::all(ClaimScope::Expired, &[]))
            .await
            .unwrap();
        assert_eq!(rest.iter().map(|r| r.request.task_id.as_str()).collect::<Vec<_>>(), ["w2"]);
    }

    pub(crate) async fn two_hundred_concurrent_deliberations_complete_and_are_all_listed(store: Store) {
        let finished = Arc::new(finished_deliberation(Role::Devops));
        let started = Instant::now();
        let runs = (0..200).map(|i| {
            let store = store.clone();
            let finished = finished.clone();
            tokio::spawn(async move {
                let task_id = format!("load-{i:03}");
                assert!(store.create(&request(&task_id, Role::Devops, 10_000 + i), &lease(), None).await?);
                assert!(store.mark_started(&tid(&task_id), &fence(), 10_001 + i, None).await?);
                assert!(store.save_progress(&tid(&task_id), &fence(), &finished.mid, None).await?);
                assert!(store.save_progress(&tid(&task_id), &fence(), &finished.last, None).await?);
                assert!(
                    store
                        .complete(&tid(&task_id), &fence(), &finished.outcome, 10_500 + i, 499, None)
                        .await?
                );
                Ok::<_, StoreError>(())
            })
        });
        for result in futures::future::join_all(runs).await {
            result.unwrap().unwrap();
        }
        eprintln!(
            "200 concurrent deliberations (create, start, 2 saves, complete) took {:?}",
            started.elapsed()
        );

        let mut listed = BTreeSet::new();
        let mut cursor = None;
        loop {
            let q = ListQuery {
                status: Some(DeliberationStatus::Completed),
                limit: 100,
                cursor: cursor.take(),
                ..ListQuery::default()
            };
            let page = store.list(&q).await.unwrap();
            listed.extend(page.items.into_iter().map(|r| r.request.task_id));
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(listed.len(), 200);
        let record = store.get(&tid("load-123")).await.unwrap().unwrap();
        assert_eq!(record.outcome.as_ref(), Some(&finished.outcome));
    }

    /// `value` with U+0000 replaced by U+FFFD in every string: what the port promises to read
    /// back for it.
    fn replaced<T: serde::Serialize + serde::de::DeserializeOwned>(value: &T) -> T {
        fn walk(value: serde_json::Value) -> serde_json::Value {
            use serde_json::Value;
            match value {
                Value::String(text) => Value::String(text.replace('\0', "\u{FFFD}")),
                Value::Array(items) => Value::Array(items.into_iter().map(walk).collect()),
                Value::Object(fields) => Value::Object(
                    fields.into_iter().map(|(k, v)| (k.replace('\0', "\u{FFFD}"), walk(v))).collect(),
                ),
                other => other,
            }
        }
        serde_json::from_value(walk(serde_json::to_value(value).unwrap())).unwrap()
    }

    pub(crate) async fn nul_characters_are_stored_as_replacement_characters(store: Store) {
        const NOTE: &str = " [model wrote \0 here]";
        let written = noted_deliberation(Role::Dev, NOTE);
        let expected = (replaced(&written.last), replaced(&written.outcome));
        let winner = &expected.1.results[0];
        for text in [winner.proposal.content(), &winner.reviews[0].critique, &expected.1.failures[0].reason] {
            assert!(
                text.contains(" [model wrote \u{FFFD} here]") && !text.contains('\0'),
                "fixture: {text:?}"
            );
        }

        // A task id cannot hold U+0000 at all (`TaskId`'s rule); every text around it can.
        let new = noted_request("nul-text", Role::Dev, 1_000, NOTE);
        assert!(store.create(&new, &lease(), None).await.unwrap());
        assert!(store.mark_started(&tid("nul-text"), &fence(), 1_001, None).await.unwrap());
        assert!(store.save_progress(&tid("nul-text"), &fence(), &written.last, None).await.unwrap());
        assert!(store.complete(&tid("nul-text"), &fence(), &written.outcome, 1_002, 1, None).await.unwrap());
        let record = store.get(&tid("nul-text")).await.unwrap().unwrap();
        assert_eq!(record.request, replaced(&new));
        assert!(record.request.task.description().ends_with(" [model wrote \u{FFFD} here]"));
        assert_eq!(record.progress.as_ref(), Some(&expected.0));
        assert_eq!(record.outcome.as_ref(), Some(&expected.1));
        assert!(!store.create(&new, &lease(), None).await.unwrap(), "the same id again");

        let failed = noted_request("nul-failed", Role::Dev, 2_000, NOTE);
        assert!(store.create(&failed, &lease(), None).await.unwrap());
        let error = "model output ended in \0\0";
        assert!(
            store
                .finish_unsuccessfully(
                    &tid("nul-failed"),
                    None,
                    &end(DeliberationStatus::Failed, error, 2_001),
                    None
                )
                .await
                .unwrap()
        );
        let record = store.get(&tid("nul-failed")).await.unwrap().unwrap();
        assert_eq!(record.error.as_deref(), Some("model output ended in \u{FFFD}\u{FFFD}"));

        let listed = store.list(&query(10)).await.unwrap();
        assert_eq!(ids(&listed), ["nul-failed", "nul-text"]);
        assert_eq!(listed.items[0].request, replaced(&failed));

        // A TIMEOUT's partial results and Orchestrate's rationale are model text too.
        assert!(
            store.create(&noted_request("nul-late", Role::Dev, 3_000, NOTE), &lease(), None).await.unwrap()
        );
        assert!(store.mark_started(&tid("nul-late"), &fence(), 3_001, None).await.unwrap());
        let late = UnsuccessfulEnd {
            partial: Some(&written.outcome),
            duration_ms: Some(5),
            ..end(DeliberationStatus::Timeout, "deadline \0", 3_006)
        };
        assert!(store.finish_unsuccessfully(&tid("nul-late"), Some(&fence()), &late, None).await.unwrap());
        let record = store.get(&tid("nul-late")).await.unwrap().unwrap();
        assert_eq!(record.outcome.as_ref(), Some(&expected.1));
        assert_eq!(record.error.as_deref(), Some("deadline \u{FFFD}"));
        let selection = StoredSelection {
            method: "architect".into(),
            winner_id: expected.1.results[0].agent.id.to_string(),
            rationale: "clearest \0 one".into(),
        };
        assert!(store.save_selection(&tid("nul-text"), &selection).await.unwrap());
        let stored = store.get(&tid("nul-text")).await.unwrap().unwrap().selection.unwrap();
        assert_eq!(stored.rationale, "clearest \u{FFFD} one");
    }

    pub(crate) async fn a_timeout_keeps_its_partial_results_and_a_selection_is_stored_once(store: Store) {
        let finished = finished_deliberation(Role::Qa);
        assert!(store.create(&request("late", Role::Qa, 1), &lease(), None).await.unwrap());
        assert!(store.mark_started(&tid("late"), &fence(), 2, None).await.unwrap());
        let late = UnsuccessfulEnd {
            partial: Some(&finished.outcome),
            duration_ms: Some(2_000),
            ..end(
                DeliberationStatus::Timeout,
                "deliberation exceeded its 2s deadline while reviewing (round 1)",
                2_002,
            )
        };
        assert!(store.finish_unsuccessfully(&tid("late"), Some(&fence()), &late, None).await.unwrap());
        let record = store.get(&tid("late")).await.unwrap().unwrap();
        assert_eq!(record.status, DeliberationStatus::Timeout);
        assert_eq!(record.duration_ms, Some(2_000));
        assert_eq!(record.outcome.as_ref(), Some(&finished.outcome));
        assert_eq!(record.winner_id.as_deref(), Some(finished.outcome.results[0].agent.id.as_str()));
        // Without partial results a TIMEOUT has no outcome.
        assert!(store.create(&request("empty", Role::Qa, 3), &lease(), None).await.unwrap());
        assert!(store.mark_started(&tid("empty"), &fence(), 4, None).await.unwrap());
        assert!(
            store
                .finish_unsuccessfully(
                    &tid("empty"),
                    Some(&fence()),
                    &end(DeliberationStatus::Timeout, "late", 5),
                    None
                )
                .await
                .unwrap()
        );
        assert_eq!(store.get(&tid("empty")).await.unwrap().unwrap().outcome, None);

        seed(&store, "chosen", Role::Qa, 10, DeliberationStatus::Completed).await;
        let second = finished_deliberation(Role::Qa).outcome.results[1].agent.id.to_string();
        let choice = StoredSelection {
            method: "architect".into(),
            winner_id: second.clone(),
            rationale: "simplest".into(),
        };
        assert!(!store.save_selection(&tid("late"), &choice).await.unwrap(), "only a COMPLETED deliberation");
        assert!(store.save_selection(&tid("chosen"), &choice).await.unwrap());
        let other = StoredSelection { winner_id: "qa-1".into(), ..choice.clone() };
        assert!(!store.save_selection(&tid("chosen"), &other).await.unwrap(), "the first choice stays");
        let record = store.get(&tid("chosen")).await.unwrap().unwrap();
        assert_eq!(record.selection, Some(choice));
        assert_eq!(record.winner_id, Some(second), "the winner is the selected proposal");
    }

    pub(crate) async fn ping_answers_while_the_store_is_open(store: Store) {
        store.ping().await.unwrap();
        store.create(&request("pinged", Role::Dev, 1), &lease(), None).await.unwrap();
        store.ping().await.unwrap();
    }
}
