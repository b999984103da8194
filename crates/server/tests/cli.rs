//! The `orchestrator` client as people and scripts use it: the real binary against a real
//! server (`orchestrator serve` on SQLite) whose model is a scripted fake (wiremock). Every test
//! synchronises on what the CLI prints or on its exit, never on a sleep.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use orchestrator_api_grpc::pb;
use serde_json::Value;
use wiremock::MockServer;

use support::{closed_port, connect, serve_models, slow_model};

/// A running `orchestrator serve` with its fake model; killed when dropped.
struct Server {
    child: Child,
    port: u16,
    _data: tempfile::TempDir,
    _model: MockServer,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server whose model takes `delay` to answer each call.
async fn server(delay: Duration) -> Server {
    server_with(delay, |_| Vec::new()).await
}

/// [`server`] with extra environment, made from the server's data directory.
async fn server_with(
    delay: Duration,
    env: impl FnOnce(&std::path::Path) -> Vec<(&'static str, String)>,
) -> Server {
    let model = slow_model(delay).await;
    serve_models(&model, &["slow-model"]).await;
    let data = tempfile::tempdir().unwrap();
    let database = format!("sqlite:{}", data.path().join("orchestrator.db").display());
    let env = env(data.path());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // Bound once it says so: from here a client's connection waits at most for serving.
    let (child, port) = support::start_server(&database, &model.uri(), &env);
    Server { child, port, _data: data, _model: model }
}

/// The client, aimed at `port`, with nothing inherited that would change what it does.
fn orchestrator(port: u16) -> Command {
    let mut command = support::cli();
    command.env("ORCHESTRATOR_ADDR", format!("http://127.0.0.1:{port}"));
    command
}

fn run(port: u16, args: &[&str]) -> Output {
    orchestrator(port).args(args).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// Runs a subcommand that must succeed and returns its stdout.
fn ok(port: u16, args: &[&str]) -> String {
    let output = run(port, args);
    assert!(output.status.success(), "orchestrator {args:?}: {}\n{}", output.status, text(&output.stderr));
    text(&output.stdout)
}

fn json(port: u16, args: &[&str]) -> Value {
    let stdout = ok(port, args);
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("orchestrator {args:?} printed no JSON ({e}): {stdout}"))
}

/// Asserts each needle occurs in `haystack` after the previous one.
fn assert_in_order(haystack: &str, needles: &[&str]) {
    let mut from = 0;
    for needle in needles {
        let at = haystack[from..]
            .find(needle)
            .unwrap_or_else(|| panic!("{needle:?} missing after byte {from} of:\n{haystack}"));
        from += at + needle.len();
    }
}

#[tokio::test]
async fn deliberate_prints_the_task_id_first_then_every_phase_in_order_then_the_ranked_result() {
    let server = server(Duration::ZERO).await;
    let output = run(
        server.port,
        &[
            "deliberate",
            "Write is_palindrome(s)",
            "--agents",
            "3",
            "--rounds",
            "1",
            "--requirement",
            "ignore case",
        ],
    );
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stderr}");

    let first = stderr.lines().next().unwrap();
    let task_id = first.strip_prefix("task ").unwrap().split(' ').next().unwrap();
    assert_eq!(uuid::Uuid::parse_str(task_id).unwrap().get_version_num(), 7, "{first}");
    assert!(first.contains("(DEV, ad-hoc council of 3 agent(s), 1 round(s))"), "{first}");
    assert!(stderr.contains("seated: agent-") || stderr.contains("seated: dev-"), "{stderr}");
    assert!(stderr.contains(" (ad-hoc council)"), "{stderr}");
    assert_in_order(
        &stderr,
        &["proposing: ", "reviewing (round 1): ", "revising (round 1): ", "scoring: ", "completed in "],
    );
    assert_eq!(stderr.matches("proposing: ").count(), 1, "each phase once: {stderr}");
    assert!(stderr.contains("9 call(s)"), "tokens and calls so far: {stderr}");

    assert!(stdout.starts_with(&format!("task {task_id} (DEV): completed in ")), "{stdout}");
    assert_in_order(
        &stdout,
        &["RANK", "AUTHOR", "PROFILE", "SCORE", "CHECKS", "PEER", "\n1 ", "\n2 ", "\n3 "],
    );
    assert_in_order(&stdout, &["winner ", "checks:", "policy", "lint", "dry run", "reviews (1):", "round 1"]);

    // `--show all` prints every proposal in full.
    let all = ok(server.port, &["get", task_id, "--show", "all"]);
    assert_eq!(all.matches("reviews (1):").count(), 3, "{all}");

    // The same deliberation for scripts.
    let got = json(server.port, &["get", task_id, "--json"]);
    assert_eq!(got["task_id"], task_id);
    assert_eq!(got["status"], "completed");
    assert_eq!(got["finished"], true);
    assert_eq!(got["results"].as_array().unwrap().len(), 3);
    assert_eq!(got["results"][0]["rank"], 1);
    assert_eq!(got["results"][0]["author_id"], got["winner_id"]);
    assert_eq!(got["results"][0]["reviews"].as_array().unwrap().len(), 1);
    assert_eq!(got["usage"]["calls"], 9);

    let listed = ok(server.port, &["list"]);
    let mut lines = listed.lines();
    assert_in_order(
        lines.next().unwrap(),
        &["TASK ID", "ROLE", "STATUS", "CREATED", "DURATION", "WINNER", "TASK"],
    );
    let row = lines.next().unwrap();
    assert!(row.starts_with(task_id) && row.contains("completed") && !row.contains("Completed"), "{row}");
    let page = json(server.port, &["list", "--json", "--status", "completed"]);
    assert_eq!(page["deliberations"][0]["task_id"], task_id);
    assert_eq!(page["deliberations"][0]["status"], "completed");
    assert!(page["next_page_token"].is_null());
    let none = json(server.port, &["list", "--json", "--status", "in-progress"]);
    assert_eq!(none["deliberations"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn deliberate_shows_each_agents_step_under_its_phase_as_it_lands() {
    // Calls slow enough that every step lands while the CLI watches.
    let server = server(Duration::from_millis(300)).await;
    let output =
        run(server.port, &["deliberate", "Write is_palindrome(s)", "--agents", "3", "--rounds", "1"]);
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let steps = |what: &str| stderr.lines().filter(|l| l.contains(what)).count();
    assert_eq!(steps(" proposed ("), 3, "one line per agent's proposal: {stderr}");
    assert_eq!(steps(" reviewed dev-"), 3, "one line per review: {stderr}");
    assert_eq!(steps(" revised ("), 3, "one line per revision: {stderr}");
    // Each step under its phase, the phases in order.
    assert_in_order(
        &stderr,
        &[
            "proposing: ",
            "  dev-",
            " proposed (",
            "reviewing (round 1): ",
            "  dev-",
            " reviewed dev-",
            "revising (round 1): ",
            "  dev-",
            " revised (",
            "scoring: ",
            "completed in ",
        ],
    );
    let first_review = stderr.find(" reviewed dev-").unwrap();
    assert!(stderr[first_review..].find(" proposed (").is_none(), "proposals all before reviews: {stderr}");
    let first_revision = stderr.find(" revised (").unwrap();
    assert!(
        stderr[first_revision..].find(" reviewed dev-").is_none(),
        "reviews all before revisions: {stderr}"
    );

    // Quiet stays quiet.
    let quiet = run(server.port, &["deliberate", "Write reverse(s)", "--agents", "2", "--rounds", "0", "-q"]);
    assert!(quiet.status.success(), "{}", text(&quiet.stderr));
    assert!(!text(&quiet.stderr).contains(" proposed ("), "{}", text(&quiet.stderr));
}

#[tokio::test]
async fn deliberate_json_is_one_document_on_stdout_and_list_pages() {
    let server = server(Duration::ZERO).await;
    let done = json(
        server.port,
        &["deliberate", "Plan the upgrade", "--agents", "2", "--rounds", "0", "--json", "--quiet"],
    );
    assert_eq!(done["status"], "completed");
    assert_eq!(done["results"].as_array().unwrap().len(), 2);
    json(server.port, &["deliberate", "Plan the rollback", "--agents", "1", "--rounds", "0", "--json", "-q"]);

    let first = json(server.port, &["list", "--limit", "1", "--json"]);
    let token = first["next_page_token"].as_str().unwrap().to_owned();
    let second = json(server.port, &["list", "--limit", "1", "--page-token", &token, "--json"]);
    assert_ne!(first["deliberations"][0]["task_id"], second["deliberations"][0]["task_id"]);
    assert_eq!(second["deliberations"][0]["task_id"], done["task_id"], "newest first");
    let human = run(server.port, &["list", "--limit", "1"]);
    assert!(text(&human.stderr).contains("--page-token"), "the next page's command: {}", text(&human.stderr));

    let submitted = json(server.port, &["submit", "Plan the backfill", "--task-id", "backfill-1", "--json"]);
    assert_eq!(
        (&submitted["task_id"], &submitted["created"]),
        (&Value::from("backfill-1"), &Value::from(true))
    );
    let status = json(server.port, &["status", "--json"]);
    assert_eq!(status["status"], "SERVING");
    assert_eq!(status["llm_configured"], true);
    // The server probed its one profile's model server just now: reachable, model listed.
    assert_eq!(status["backends"][0]["profile"], "default");
    assert_eq!(
        (&status["backends"][0]["ok"], &status["backends"][0]["model_listed"]),
        (&Value::from(true), &Value::from(true))
    );
}

#[tokio::test]
async fn ctrl_c_without_a_terminal_leaves_the_deliberation_running_and_watch_follows_it_to_the_end() {
    // One agent, no review: a single model call of two seconds, so the deliberation is surely
    // still running when the CLI, which has just printed its id, gets SIGINT.
    let server = server(Duration::from_secs(2)).await;
    let mut child = orchestrator(server.port)
        .args(["deliberate", "Migrate the billing tables", "--agents", "1", "--rounds", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, lines) = mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let _ = tx.send(line.unwrap());
        }
    });
    let first = lines.recv_timeout(Duration::from_secs(20)).unwrap();
    let task_id = first.strip_prefix("task ").unwrap().split(' ').next().unwrap().to_owned();

    assert!(Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let rest: Vec<String> = lines.try_iter().collect();
    let rest = rest.join("\n");
    assert_eq!(status.code(), Some(130), "{first}\n{rest}");
    assert!(rest.contains(&format!("{task_id} keeps running")), "{rest}");
    assert!(rest.contains(&format!("orchestrator watch {task_id}")), "{rest}");
    assert!(rest.contains(&format!("orchestrator get {task_id}")), "{rest}");

    let mut client = connect(server.port).await;
    let stored = support::get(&mut client, &task_id).await;
    assert!(
        matches!(stored.status(), pb::DeliberationStatus::Pending | pb::DeliberationStatus::InProgress),
        "left running, not cancelled: {:?}",
        stored.status()
    );

    let watched = run(server.port, &["watch", &task_id]);
    let (stdout, stderr) = (text(&watched.stdout), text(&watched.stderr));
    assert!(watched.status.success(), "{stderr}");
    // The proposal lands while it is watched: its step shows before the phases after it.
    assert_in_order(
        &stderr,
        &[&format!("watching {task_id}"), "  dev-1 proposed (", "scoring: ", "completed in "],
    );
    assert!(stdout.starts_with(&format!("task {task_id} (DEV): completed in ")), "{stdout}");
    assert!(stdout.contains("RANK") && stdout.contains("winner dev-"), "{stdout}");

    let again = json(server.port, &["watch", &task_id, "--json"]);
    assert_eq!(again["status"], "completed", "watching an ended deliberation prints it at once");
}

#[tokio::test]
async fn health_exits_zero_only_when_serving() {
    let server = server(Duration::ZERO).await;
    let up = run(server.port, &["health"]);
    assert!(up.status.success(), "{}", text(&up.stderr));
    assert_eq!(text(&up.stdout).trim(), format!("http://127.0.0.1:{}: SERVING", server.port));
    let view = json(server.port, &["health", "--json"]);
    assert_eq!((&view["status"], &view["serving"]), (&Value::from("SERVING"), &Value::from(true)));

    let nobody = closed_port();
    let down = run(nobody.port, &["health"]);
    assert_eq!(down.status.code(), Some(1));
    assert!(text(&down.stdout).contains("UNREACHABLE"), "{}", text(&down.stdout));
    let down = run(nobody.port, &["health", "--json"]);
    assert_eq!(down.status.code(), Some(1));
    let view: Value = serde_json::from_slice(&down.stdout).unwrap();
    assert_eq!(view["serving"], false);
    assert!(view["error"].as_str().unwrap().starts_with("cannot connect to "), "{view}");
}

#[tokio::test]
async fn addresses_need_a_scheme_and_https_never_falls_back_to_plaintext() {
    let server = server(Duration::ZERO).await;
    let bare = run(server.port, &["list", "--addr", &format!("127.0.0.1:{}", server.port)]);
    assert_eq!(bare.status.code(), Some(1));
    let stderr = text(&bare.stderr);
    assert_eq!(
        stderr.trim(),
        format!(
            "orchestrator: address must start with http:// or https:// (got \"127.0.0.1:{}\")",
            server.port
        )
    );

    let tls = run(server.port, &["list", "--addr", &format!("https://127.0.0.1:{}", server.port)]);
    assert_eq!(tls.status.code(), Some(1));
    let stderr = text(&tls.stderr);
    assert!(
        stderr.starts_with(&format!("orchestrator: cannot connect to https://127.0.0.1:{}: ", server.port)),
        "{stderr}"
    );
    assert!(stderr.contains("plaintext"), "says what is likely wrong: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line, not a debug dump: {stderr}");
    assert!(tls.stdout.is_empty());

    let refused = run(closed_port().port, &["list"]);
    let stderr = text(&refused.stderr);
    assert!(stderr.contains("cannot connect to") && stderr.lines().count() == 1, "{stderr}");

    let missing = run(server.port, &["get", "no-such-task"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).starts_with("orchestrator: NOT_FOUND: "), "{}", text(&missing.stderr));
}

#[test]
fn a_negative_agent_count_is_refused_naming_the_flag() {
    let output = run(closed_port().port, &["deliberate", "t", "--agents", "-1"]);
    assert_eq!(output.status.code(), Some(2), "a usage error");
    let stderr = text(&output.stderr);
    assert!(stderr.contains("invalid value '-1' for '--agents <AGENTS>'"), "{stderr}");
    assert!(stderr.contains("1..=16"), "{stderr}");
    let output = run(closed_port().port, &["deliberate", "t", "--rounds", "9"]);
    assert!(text(&output.stderr).contains("'--rounds <ROUNDS>'"), "{}", text(&output.stderr));
}

#[tokio::test]
async fn config_check_validates_the_file_names_the_bad_key_and_probes_every_profile() {
    let model = MockServer::start().await;
    serve_models(&model, &["small-model"]).await;
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        format!(
            "max_running = 2\n\n[profiles.default]\nbase_url = \"{uri}/v1\"\nmodel = \"small-model\"\n\n\
             [profiles.other]\nbase_url = \"{uri}/v1\"\nmodel = \"missing-model\"\n",
            uri = model.uri()
        ),
    )
    .unwrap();
    let check = |file: &std::path::Path, extra: &[&str]| {
        let mut args = vec!["config", "check", file.to_str().unwrap()];
        args.extend_from_slice(extra);
        run(closed_port().port, &args)
    };

    let output = check(&good, &[]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "valid, but one profile's model is not served: {stdout}");
    assert!(stdout.contains("good.toml: valid (listen 127.0.0.1:50055, 2 profile(s)"), "{stdout}");
    assert!(stdout.contains("profile default      ok      reachable (HTTP 200), model listed"), "{stdout}");
    assert!(
        stdout.contains("profile other        PROBLEM reachable (HTTP 200), model NOT listed"),
        "{stdout}"
    );
    assert!(stdout.contains("hint: model \"missing-model\" is not in the server's list"), "{stdout}");
    let view: Value = serde_json::from_slice(&check(&good, &["--json"]).stdout).unwrap();
    assert_eq!(view["valid"], true);
    assert_eq!(view["profiles"][0]["ok"], true);
    assert_eq!(view["profiles"][1]["model_listed"], false);
    assert_eq!(check(&good, &["--no-probe"]).status.code(), Some(0));

    let only_good = dir.path().join("only-good.toml");
    std::fs::write(
        &only_good,
        format!("[profiles.default]\nbase_url = \"{}/v1\"\nmodel = \"small-model\"\n", model.uri()),
    )
    .unwrap();
    assert_eq!(check(&only_good, &[]).status.code(), Some(0));

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "max_running = 0\n").unwrap();
    let output = check(&bad, &[]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("bad.toml: invalid: max_running: must be within 1..=1024, got 0"), "{stderr}");

    let unknown = dir.path().join("unknown.toml");
    std::fs::write(&unknown, "listen_on = \"0.0.0.0:1\"\n").unwrap();
    let output = check(&unknown, &["--json"]);
    assert_eq!(output.status.code(), Some(2));
    let view: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(view["valid"], false);
    assert!(view["error"].as_str().unwrap().contains("listen_on"), "{view}");

    let missing = check(&dir.path().join("nope.toml"), &[]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing.stderr).contains("nope.toml"), "{}", text(&missing.stderr));
}

#[tokio::test]
async fn the_token_comes_from_the_flag_or_the_environment_and_its_absence_is_explained() {
    const TOKEN: &str = "cli-test-token-0123456789";
    let server = server_with(Duration::ZERO, |dir| {
        let tokens = dir.join("tokens");
        std::fs::write(&tokens, format!("ci {TOKEN}\n")).unwrap();
        vec![("ORCHESTRATOR_AUTH_TOKENS_FILE", tokens.display().to_string())]
    })
    .await;
    let refused = run(server.port, &["list"]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = text(&refused.stderr);
    assert!(stderr.starts_with("orchestrator: UNAUTHENTICATED: "), "{stderr}");
    assert!(stderr.trim_end().ends_with("(set --token or ORCHESTRATOR_TOKEN)"), "{stderr}");

    assert!(ok(server.port, &["list", "--token", TOKEN]).starts_with("TASK ID"));
    let from_env =
        orchestrator(server.port).args(["list", "--json"]).env("ORCHESTRATOR_TOKEN", TOKEN).output().unwrap();
    assert!(from_env.status.success(), "{}", text(&from_env.stderr));
    let wrong = run(server.port, &["list", "--token", "not-the-token-at-all"]);
    assert!(text(&wrong.stderr).contains("UNAUTHENTICATED"), "{}", text(&wrong.stderr));
    assert!(!text(&wrong.stderr).contains("not-the-token-at-all"), "the token is never echoed");
}

/// A CA made at run time and a server certificate it signed for `localhost` and 127.0.0.1
/// (paths of the CA, the certificate and its key); `client.pem`/`client-key.pem` beside them
/// hold a client certificate of the same CA with the common name `ops`.
fn server_certificate(dir: &std::path::Path) -> (String, String, String) {
    let pki = orchestrator_test_support::pki::Pki::new("cli-test-ca");
    let (cert, key) = pki.leaf("localhost");
    let (client, client_key) = pki.leaf("ops");
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    write("client.pem", &client);
    write("client-key.pem", &client_key);
    (write("ca.pem", &pki.ca_pem), write("cert.pem", &cert), write("key.pem", &key))
}

#[tokio::test]
async fn https_addresses_speak_tls_with_the_given_ca_and_plaintext_is_never_tried_instead() {
    let pki = tempfile::tempdir().unwrap();
    let (ca, cert, key) = server_certificate(pki.path());
    let server =
        server_with(Duration::ZERO, |_| vec![("ORCHESTRATOR_TLS_CERT", cert), ("ORCHESTRATOR_TLS_KEY", key)])
            .await;
    let port = server.port;
    let https = format!("https://127.0.0.1:{port}");
    let tls = |args: &[&str]| {
        let mut all = vec!["--addr", https.as_str(), "--ca", ca.as_str()];
        all.extend_from_slice(args);
        run(port, &all)
    };
    let up = tls(&["health"]);
    assert!(up.status.success(), "{}", text(&up.stderr));
    let listed = tls(&["list", "--json"]);
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    serde_json::from_slice::<Value>(&listed.stdout).unwrap();

    // Without the CA the server's certificate is not trusted: a clear refusal, no fallback.
    let untrusted = run(port, &["list", "--addr", &https]);
    assert_eq!(untrusted.status.code(), Some(1));
    let stderr = text(&untrusted.stderr);
    assert!(stderr.starts_with(&format!("orchestrator: cannot connect to {https}: ")), "{stderr}");
    assert!(stderr.contains("--ca") && stderr.lines().count() == 1, "{stderr}");

    // Plaintext to a TLS server fails too, saying what to try.
    let plain = run(port, &["list", "--addr", &format!("http://127.0.0.1:{port}")]);
    assert_eq!(plain.status.code(), Some(1));
    let stderr = text(&plain.stderr);
    assert!(stderr.lines().count() == 1 && stderr.contains("use an https:// address"), "{stderr}");
}

#[tokio::test]
async fn a_client_certificate_opens_a_mutual_tls_server() {
    let pki = tempfile::tempdir().unwrap();
    let (ca, cert, key) = server_certificate(pki.path());
    let client_cert = pki.path().join("client.pem").display().to_string();
    let client_key = pki.path().join("client-key.pem").display().to_string();
    let server = server_with(Duration::ZERO, |_| {
        vec![
            ("ORCHESTRATOR_TLS_CERT", cert),
            ("ORCHESTRATOR_TLS_KEY", key),
            ("ORCHESTRATOR_TLS_CLIENT_CA", ca.clone()),
            ("ORCHESTRATOR_AUTH", "mtls".to_owned()),
        ]
    })
    .await;
    let port = server.port;
    let https = format!("https://127.0.0.1:{port}");
    let with_identity = |args: &[&str]| {
        let mut all =
            vec!["--addr", https.as_str(), "--ca", ca.as_str(), "--cert", &client_cert, "--key", &client_key];
        all.extend_from_slice(args);
        run(port, &all)
    };
    let listed = with_identity(&["list", "--json"]);
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    serde_json::from_slice::<Value>(&listed.stdout).unwrap();

    let anonymous = run(port, &["list", "--addr", &https, "--ca", &ca]);
    assert_eq!(anonymous.status.code(), Some(1));
    let stderr = text(&anonymous.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with(&format!("orchestrator: connection to {https} failed: ")), "{stderr}");
    assert!(stderr.contains("--cert and --key"), "says what is missing: {stderr}");
}

/// What another principal (or a model) can store in a task or an answer to take over the
/// terminal of whoever reads it: a window-title change ending in BEL, a screen clear, a
/// carriage return that rewrites the line, an 8-bit CSI and a right-to-left override.
const HOSTILE: &str = "\x1b]0;pwned\x07 \x1b[2J \r \u{9b}31m \u{202e}";

/// The characters of [`HOSTILE`] that a terminal acts on.
const TERMINAL_CONTROLS: [char; 5] = ['\x1b', '\x07', '\r', '\u{9b}', '\u{202e}'];

/// A server whose model answers every call with [`HOSTILE`] in its text and in the critique of
/// the review it holds.
async fn hostile_server() -> Server {
    let model = wiremock::MockServer::start().await;
    let critique = "CRITIQUE-START \\u001b]0;pwned\\u0007 \\u001b[2J \\r \\u009b31m \u{202e} critique-end";
    let content =
        format!("PROPOSAL-START {HOSTILE} proposal-end\n{{\"score\": 7, \"critique\": \"{critique}\"}}");
    let body = serde_json::json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21}
    });
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .and(wiremock::matchers::path("/v1/chat/completions"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_json(body))
        .mount(&model)
        .await;
    serve_models(&model, &["slow-model"]).await;
    let data = tempfile::tempdir().unwrap();
    let database = format!("sqlite:{}", data.path().join("orchestrator.db").display());
    let (child, port) = support::start_server(&database, &model.uri(), &[]);
    Server { child, port, _data: data, _model: model }
}

/// Asserts a command printed none of [`TERMINAL_CONTROLS`]; returns its stdout and stderr
/// together.
fn printed_safely(what: &str, output: &Output) -> String {
    let printed = format!("{}{}", text(&output.stdout), text(&output.stderr));
    for control in TERMINAL_CONTROLS {
        assert!(!printed.contains(control), "{what} printed {control:?}: {printed:?}");
    }
    assert!(output.status.success(), "{what}: {printed:?}");
    printed
}

#[tokio::test]
async fn stored_text_reaches_the_terminal_without_its_control_characters_but_with_its_words() {
    let server = hostile_server().await;
    let task = format!("TASK-START {HOSTILE} task-end");
    let deliberated =
        run(server.port, &["deliberate", &task, "--agents", "2", "--rounds", "1", "--task-id", "hostile-1"]);
    let deliberated = printed_safely("deliberate", &deliberated);
    assert_in_order(&deliberated, &["PROPOSAL-START", "]0;pwned", "[2J", "31m", "proposal-end"]);
    assert_in_order(&deliberated, &["CRITIQUE-START", "]0;pwned", "[2J", "31m", "critique-end"]);

    let all = printed_safely("get --show all", &run(server.port, &["get", "hostile-1", "--show", "all"]));
    assert_eq!(all.matches("PROPOSAL-START").count(), 2, "{all}");
    assert!(all.contains("proposal-end") && all.contains("critique-end"), "{all}");
    let watched = printed_safely("watch", &run(server.port, &["watch", "hostile-1"]));
    assert!(watched.contains("PROPOSAL-START"), "{watched}");
    let listed = printed_safely("list", &run(server.port, &["list"]));
    assert_in_order(&listed, &["hostile-1", "TASK-START", "]0;pwned", "[2J", "31m", "task-end"]);

    // JSON keeps every character of the data, escaped: scripts read exactly what was stored.
    let document = run(server.port, &["get", "hostile-1", "--json"]);
    printed_safely("get --json", &document);
    let document: Value = serde_json::from_slice(&document.stdout).unwrap();
    let content = document["results"][0]["content"].as_str().unwrap();
    assert!(content.starts_with(&format!("PROPOSAL-START {HOSTILE} proposal-end")), "{content:?}");
    let listed = run(server.port, &["list", "--json"]);
    printed_safely("list --json", &listed);
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed["deliberations"][0]["task"], Value::from(task));

    // An error a server sends may quote what it was given.
    let refused = run(server.port, &["deliberate", "Plan it", "--role", "QA\x1b]0;pwned\x07\u{9b}31m"]);
    let stderr = text(&refused.stderr);
    for control in TERMINAL_CONTROLS {
        assert!(!stderr.contains(control), "the error printed {control:?}: {stderr:?}");
    }
    assert!(stderr.contains("unknown role \"QA]0;pwned31m\""), "{stderr:?}");
    assert!(!refused.status.success());
}
