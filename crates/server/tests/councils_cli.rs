//! The standing-council scenario end to end, on the real binary: a platform team registers a
//! council of three agents on two model profiles with the CLI, restarts the server (SIGTERM,
//! then a new process on the same SQLite file), deliberates for that role without naming any
//! agent, and reads each agent's record with `orchestrator agents`.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::process::{Child, Command, Output};

use orchestrator_api_grpc::pb;
use wiremock::MockServer;

use support::{connect, slow_model};

const PERSONA: &str = "You favour boring technology and always ask for a rollback plan.";

/// `orchestrator serve` (and its port) with the profiles `default`, `fast` (model `fast-model`) and
/// `big` (model `big-model`), all served by the fake model.
fn start(db: &std::path::Path, model: &MockServer) -> (Child, u16) {
    let base_url = format!("{}/v1", model.uri());
    support::start_server(
        &format!("sqlite:{}", db.display()),
        &model.uri(),
        &[
            ("ORCHESTRATOR_PROFILES__FAST__BASE_URL", base_url.as_str()),
            ("ORCHESTRATOR_PROFILES__FAST__MODEL", "fast-model"),
            ("ORCHESTRATOR_PROFILES__BIG__BASE_URL", base_url.as_str()),
            ("ORCHESTRATOR_PROFILES__BIG__MODEL", "big-model"),
        ],
    )
}

/// Runs the `orchestrator` client with `args` against the server on `port`.
fn cli(port: u16, args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_orchestrator"))
        .args(args)
        .env("ORCHESTRATOR_ADDR", format!("http://127.0.0.1:{port}"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "orchestrator {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// Stops the server with SIGTERM and waits for it to exit cleanly.
async fn terminate(mut server: Child) {
    let pid = server.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = tokio::task::spawn_blocking(move || server.wait().unwrap()).await.unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn a_council_registered_before_a_restart_deliberates_after_it_and_each_agent_has_a_record() {
    let model = slow_model(std::time::Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("orchestrator.db");

    // Register three agents on two profiles with the CLI.
    let (server, port) = start(&db, &model);
    connect(port).await;
    let registered = cli(
        port,
        &["agent", "register", "alice", "--role", "DEV", "--profile", "fast", "--persona", PERSONA],
    );
    assert!(
        stdout(&registered).starts_with("registered alice on the DEV council "),
        "{}",
        stdout(&registered)
    );
    cli(port, &["agent", "register", "bob", "--role", "DEV", "--profile", "big", "--meta", "team=payments"]);
    cli(port, &["agent", "register", "carol", "--role", "dev", "--profile", "fast"]);
    let listed = stdout(&cli(port, &["council", "list"]));
    assert!(
        listed.contains("DEV") && listed.contains("3 agent(s), 1 round(s), profiles big,fast"),
        "{listed}"
    );
    terminate(server).await;

    // A new process on the same file deliberates for DEV without naming any agent.
    let (server, port) = start(&db, &model);
    let mut client = connect(port).await;
    let councils =
        client.list_councils(pb::ListCouncilsRequest::default()).await.unwrap().into_inner().councils;
    assert_eq!(councils.len(), 1, "the council survived the restart, once");
    let council_id = councils[0].council_id.clone();
    let response = client
        .deliberate(pb::DeliberateRequest {
            task_description: "Design the retry policy of the payment client".into(),
            role: "DEV".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let seats: BTreeMap<String, String> = response
        .results
        .iter()
        .map(|r| {
            let p = r.proposal.as_ref().unwrap();
            (p.author_id.clone(), p.model_profile.clone())
        })
        .collect();
    let expected: BTreeMap<String, String> = [("alice", "fast"), ("bob", "big"), ("carol", "fast")]
        .into_iter()
        .map(|(a, p)| (a.into(), p.into()))
        .collect();
    assert_eq!(seats, expected);
    assert_eq!(response.metadata.as_ref().unwrap().tags["council_id"], council_id);

    // The model server saw each agent's profile and alice's persona.
    let calls: Vec<serde_json::Value> =
        support::chat_calls(&model).await.iter().map(|r| r.body_json().unwrap()).collect();
    let on = |model_name: &str| calls.iter().filter(|c| c["model"] == model_name).count();
    // One round: each agent proposes, reviews and revises.
    assert_eq!((on("fast-model"), on("big-model"), on("slow-model")), (6, 3, 0));
    let with_persona =
        calls.iter().filter(|c| c["messages"][0]["content"].as_str().unwrap().ends_with(PERSONA)).count();
    assert_eq!(with_persona, 3, "every call of alice, and only hers");

    // Each agent's record, from the CLI and over gRPC.
    let table = stdout(&cli(port, &["agents"]));
    let rows: BTreeMap<&str, Vec<&str>> = table
        .lines()
        .skip(1)
        .map(|line| {
            let cells: Vec<&str> = line.split_whitespace().collect();
            (cells[0], cells)
        })
        .collect();
    assert_eq!(rows.keys().copied().collect::<Vec<_>>(), ["alice", "bob", "carol"], "{table}");
    for (agent, cells) in &rows {
        assert_eq!(cells[1], "DEV", "{table}");
        assert_eq!(cells[2], expected[*agent], "{table}");
        assert_eq!((cells[3], cells[4]), ("ACTIVE", "1"), "status and deliberations: {table}");
    }
    let wins: u32 = rows.values().map(|cells| cells[5].parse::<u32>().unwrap()).sum();
    assert_eq!(wins, 1, "{table}");
    let winner = &response.winner_id;
    assert_eq!(rows[winner.as_str()][5], "1", "{table}");

    let metrics = client.get_metrics(pb::GetMetricsRequest::default()).await.unwrap().into_inner();
    for agent in &metrics.agents.unwrap().per_agent {
        let record = agent.record.unwrap();
        let score = response
            .results
            .iter()
            .find(|r| r.proposal.as_ref().unwrap().author_id == agent.agent_id)
            .unwrap()
            .score;
        assert_eq!(
            (record.deliberations, record.failures, record.usage.unwrap().calls),
            (1, 0, 3),
            "{}",
            agent.agent_id
        );
        assert!((record.mean_score.unwrap() - score).abs() < 1e-9, "{}", agent.agent_id);
    }
    terminate(server).await;
}

#[tokio::test]
async fn deliberate_names_the_standing_council_that_seats_it_and_warns_when_it_seats_one_agent() {
    let model = slow_model(std::time::Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let (server, port) = start(&dir.path().join("orchestrator.db"), &model);
    connect(port).await;
    cli(port, &["agent", "register", "alice", "--role", "DEV", "--profile", "fast"]);
    cli(port, &["agent", "register", "bob", "--role", "DEV", "--profile", "big"]);
    cli(port, &["agent", "drain", "bob"]);
    let council_id = {
        let mut client = connect(port).await;
        let listed = client.list_councils(pb::ListCouncilsRequest::default()).await.unwrap();
        listed.into_inner().councils[0].council_id.clone()
    };

    let output = cli(port, &["deliberate", "Design the retry policy", "--rounds", "0"]);
    let stderr = String::from_utf8(output.stderr).unwrap();
    let header = stderr.lines().next().unwrap();
    assert!(
        header.ends_with(&format!("(DEV, standing council {council_id}: alice (bob draining), 0 round(s))")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "warning: only 1 agent(s) will deliberate: the standing DEV council {council_id} seats its \
             active agents (1 of its agents draining: bob); pass --agents 3 for an ad-hoc council of 3"
        )),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("seated: alice (standing council {council_id})")), "{stderr}");

    // Asking for agents seats an ad-hoc council, and says so.
    let output = cli(port, &["deliberate", "Design the retry policy", "--agents", "2", "--rounds", "0"]);
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.lines().next().unwrap().contains("(DEV, ad-hoc council of 2 agent(s), 0 round(s))"),
        "{stderr}"
    );
    assert!(stderr.contains("seated: dev-1, dev-2 (ad-hoc council)"), "{stderr}");
    assert!(!stderr.contains("warning:"), "{stderr}");
    terminate(server).await;
}
