//! The first hour with the real binary: how the server is started and asked for help, what a
//! busy model server looks like to `status` and `config check`, what `submit` prints for a
//! script, how a second Ctrl-C (SIGTERM) stops the server at once leaving its work to resume,
//! and what the log repeats or leaves out.
#![allow(clippy::unwrap_used, reason = "test code: a failed step should fail the test loudly")]

mod support;

use std::process::{Command, Output};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn cli(args: &[&str]) -> Output {
    support::cli().args(args).output().unwrap()
}

#[test]
fn plain_orchestrator_prints_the_help_and_starts_no_server() {
    let output = cli(&[]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    let help = text(&output.stderr);
    assert!(help.contains("Usage: orchestrator"), "{help}");
    assert!(help.contains("serve") && help.contains("deliberate"), "{help}");
    assert!(!text(&output.stdout).contains("listening on"));
}

#[test]
fn serve_help_lists_the_settings_with_defaults_not_the_client_flags() {
    let output = cli(&["serve", "--help"]);
    assert_eq!(output.status.code(), Some(0));
    let help = text(&output.stdout);
    // Which settings the reference lists, with which defaults, is checked in
    // config/reference.rs; here, that the binary prints every line of it.
    assert!(help.contains("Usage: orchestrator serve"), "{help}");
    for line in orchestrator_server::config::serve_help().lines().filter(|line| !line.trim().is_empty()) {
        assert!(help.contains(line.trim_end()), "{line:?} missing:\n{help}");
    }
    for flag in ["--addr", "--token", "--ca ", "--cert", "--key", "--json"] {
        assert!(!help.contains(flag), "{flag} listed:\n{help}");
    }
}

#[test]
fn a_client_flag_on_serve_is_an_error_not_ignored() {
    let mut command = Command::new(env!("CARGO_BIN_EXE_orchestrator"));
    // Were the flag ignored, this would start a server on a free port and not exit.
    command.args(["serve", "--addr", "http://127.0.0.1:50077"]).env("ORCHESTRATOR_LISTEN", "127.0.0.1:0");
    let output = command.output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("--addr is for the client subcommands"), "{stderr}");
    assert!(stderr.contains("ORCHESTRATOR_LISTEN"), "{stderr}");
    assert!(!text(&output.stdout).contains("listening on"));
}

/// Kills the server when the test ends, however it ends.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn client(port: u16, args: &[&str]) -> Output {
    support::cli().env("ORCHESTRATOR_ADDR", format!("http://127.0.0.1:{port}")).args(args).output().unwrap()
}

fn sqlite(dir: &std::path::Path) -> String {
    format!("sqlite:{}", dir.join("orchestrator.db").display())
}

/// A model server that takes connections (the kernel's backlog does) and never answers: a
/// llama.cpp server in the middle of a long completion, as a probe sees it.
fn silent_model() -> (std::net::TcpListener, String) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    (listener, url)
}

#[tokio::test]
async fn a_busy_model_server_is_busy_in_status_the_log_and_config_check_not_a_problem() {
    let (_silent, model_url) = silent_model();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let (child, port) = support::start_server_logged(&sqlite(dir.path()), &model_url, &[], &log);
    let server = Killed(child);
    support::connect(port).await;

    let status = client(port, &["status"]);
    assert!(status.status.success(), "{}", text(&status.stderr));
    let stdout = text(&status.stdout);
    let wording = "accepted the connection but did not answer GET /models within 2000 ms: busy (a model \
                   server answering a long completion does this); deliberations wait for it";
    assert!(stdout.contains(&format!("profile default      busy    {wording}")), "{stdout}");
    let json: serde_json::Value =
        serde_json::from_slice(&client(port, &["status", "--json"]).stdout).unwrap();
    assert_eq!((&json["backends"][0]["ok"], &json["backends"][0]["busy"]), (&true.into(), &true.into()));

    let config = dir.path().join("busy.toml");
    std::fs::write(&config, format!("[profiles.default]\nbase_url = \"{model_url}/v1\"\nmodel = \"m\"\n"))
        .unwrap();
    let checked = cli(&["config", "check", config.to_str().unwrap()]);
    let stdout = text(&checked.stdout);
    assert_eq!(checked.status.code(), Some(0), "busy is no problem: {stdout}");
    assert!(
        stdout.contains("profile default      busy    connected, no answer yet, no model list"),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("hint: {wording}")), "{stdout}");

    // A closed port is down: a problem, exit 1.
    let closed = support::closed_port();
    std::fs::write(
        &config,
        format!("[profiles.default]\nbase_url = \"http://127.0.0.1:{}/v1\"\nmodel = \"m\"\n", closed.port),
    )
    .unwrap();
    let checked = cli(&["config", "check", config.to_str().unwrap()]);
    let stdout = text(&checked.stdout);
    assert_eq!(checked.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("profile default      PROBLEM unreachable"), "{stdout}");

    drop(server);
    let logged = std::fs::read_to_string(&log).unwrap();
    let busy =
        logged.lines().find(|line| line.contains("model server busy")).expect("the start-up probe said busy");
    assert!(busy.contains(" WARN ") && busy.contains(wording), "{busy}");
    assert!(!logged.contains("model server check failed"), "{logged}");
}

#[test]
fn a_misspelt_key_stops_serve_and_config_check_alike_whether_file_or_variable() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("orchestrator.toml");
    std::fs::write(&file, "[profiles.default]\nbase_url = \"http://127.0.0.1:9/v1\"\nmodl = \"m\"\n")
        .unwrap();
    let path = file.to_str().unwrap();
    let serve = |env: &[(&str, &str)]| {
        let mut command = support::cli();
        command.arg("serve").env("ORCHESTRATOR_LISTEN", "127.0.0.1:0").envs(env.iter().copied());
        command.output().unwrap()
    };

    for output in [serve(&[("ORCHESTRATOR_CONFIG", path)]), cli(&["config", "check", path])] {
        assert_eq!(output.status.code(), Some(2));
        let stderr = text(&output.stderr);
        assert!(
            stderr.contains(&format!(
                "{path}:3: unknown key \"profiles.default.modl\"; did you mean \"profiles.default.model\"?"
            )),
            "{stderr}"
        );
    }
    // The file is right now; a variable is wrong: the variable is blamed, not the file.
    std::fs::write(&file, "[profiles.default]\nbase_url = \"http://127.0.0.1:9/v1\"\nmodel = \"m\"\n")
        .unwrap();
    let checked = support::cli()
        .args(["config", "check", path, "--no-probe"])
        .env("ORCHESTRATOR_PROFILES__DEFAULT__MAX_TOKNS", "9")
        .output()
        .unwrap();
    let served = serve(&[("ORCHESTRATOR_LLM_MAX_TOKNS", "9"), ("ORCHESTRATOR_CONFIG", path)]);
    for (output, variable) in
        [(checked, "ORCHESTRATOR_PROFILES__DEFAULT__MAX_TOKNS"), (served, "ORCHESTRATOR_LLM_MAX_TOKNS")]
    {
        assert_eq!(output.status.code(), Some(2));
        let stderr = text(&output.stderr);
        assert!(
            stderr.contains(&format!("{variable}: unknown key \"profiles.default.max_tokns\"; did you mean")),
            "{stderr}"
        );
        assert!(stderr.contains("MAX_TOKENS?"), "{stderr}");
    }
    let output = serve(&[("ORCHESTRATOR_LISEN", "127.0.0.1:0")]);
    assert_eq!(output.status.code(), Some(2), "a top-level typo stops it too, no mere warning");
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("ORCHESTRATOR_LISEN: unknown key \"lisen\"; did you mean ORCHESTRATOR_LISTEN?"),
        "{stderr}"
    );
}

#[tokio::test]
async fn submit_prints_the_bare_id_and_every_end_has_a_duration() {
    let model = support::slow_model(std::time::Duration::from_secs(60)).await;
    support::serve_models(&model, &["slow-model"]).await;
    let dir = tempfile::tempdir().unwrap();
    let (child, port) = support::start_server(&sqlite(dir.path()), &model.uri(), &[]);
    let _server = Killed(child);
    support::connect(port).await;

    let submitted = client(port, &["submit", "Plan the backfill", "--task-id", "pg16", "--agents", "1"]);
    assert!(submitted.status.success(), "{}", text(&submitted.stderr));
    assert_eq!(text(&submitted.stdout), "pg16\n", "only the id, for `id=$(orchestrator submit …)`");
    assert!(text(&submitted.stderr).contains("pg16 submitted (pending)"), "{}", text(&submitted.stderr));

    let cancelled = client(port, &["cancel", "pg16"]);
    assert!(cancelled.status.success(), "{}", text(&cancelled.stderr));
    let got: serde_json::Value =
        serde_json::from_slice(&client(port, &["get", "pg16", "--json"]).stdout).unwrap();
    assert_eq!(got["status"], "cancelled");
    assert!(got["duration_ms"].as_i64().is_some_and(|ms| ms > 0), "{got}");
    let shown = text(&client(port, &["get", "pg16"]).stdout);
    assert!(shown.starts_with("task pg16 (DEV): cancelled in "), "{shown}");
    assert!(!shown.contains(" in -"), "{shown}");
}

/// Sends SIGTERM to `pid`.
fn terminate(pid: u32) {
    assert!(Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap().success());
}

/// Waits for `what` to appear in the file `log` (bounded: 20 s, a hang guard).
async fn logged(log: &std::path::Path, what: &str) -> String {
    support::poll(&format!("{what:?} never logged"), std::time::Duration::from_secs(20), async || {
        std::fs::read_to_string(log).ok().filter(|text| text.contains(what))
    })
    .await
}

/// Starts a server with a 10-minute grace and a model that takes a minute per call, and one
/// deliberation running; SIGTERM once (it says how to force), then again.
async fn stopped_twice(resume: bool) -> (tempfile::TempDir, wiremock::MockServer, String) {
    let model = support::slow_model(std::time::Duration::from_secs(60)).await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let resume = resume.to_string();
    let env =
        [("ORCHESTRATOR_SHUTDOWN_GRACE_SECS", "600"), ("ORCHESTRATOR_RESUME_UNFINISHED", resume.as_str())];
    let (child, port) = support::start_server_logged(&sqlite(dir.path()), &model.uri(), &env, &log);
    let mut server = Killed(child);
    let mut grpc = support::connect(port).await;
    let request = orchestrator_api_grpc::pb::DeliberateRequest {
        task_description: "Design the retry policy".into(),
        role: "DEV".into(),
        task_id: "stuck".into(),
        num_agents: Some(1),
        rounds: Some(0),
        ..Default::default()
    };
    grpc.submit_deliberation(request).await.unwrap();
    support::wait_for(&mut grpc, "stuck", |r| {
        r.status() == orchestrator_api_grpc::pb::DeliberationStatus::InProgress
    })
    .await;

    let pid = server.0.id();
    terminate(pid);
    let first = logged(&log, "press Ctrl-C again").await;
    assert!(
        first.contains(
            "orchestrator: stopping: running deliberations get up to 600 s to finish; press Ctrl-C again (or \
             send SIGTERM again) to stop at once"
        ),
        "{first}"
    );
    terminate(pid);
    // Far sooner than the 600 s grace; the bound is a hang guard only.
    let exited = tokio::task::spawn_blocking(move || {
        for _ in 0..600 {
            if let Some(status) = server.0.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        None
    })
    .await
    .unwrap();
    let exited = exited.expect("the second SIGTERM stopped the server");
    assert!(exited.success(), "{exited:?}");
    (dir, model, std::fs::read_to_string(&log).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_stops_at_once_and_leaves_the_work_to_resume() {
    let (dir, model, log) = stopped_twice(true).await;
    assert!(
        log.contains("stopping at once: running deliberations are left to resume at the next start"),
        "{log}"
    );
    let summary =
        log.lines().find(|line| line.contains("shutdown: deliberations stopped before they finished"));
    assert!(summary.is_some_and(|line| line.contains("1 left to resume at the next start")), "{log}");
    assert!(!log.contains("every deliberation has ended"), "{log}");

    // Left IN_PROGRESS, as saved: the next start resumes it.
    let (child, port) = support::start_server(&sqlite(dir.path()), &model.uri(), &[]);
    let _server = Killed(child);
    let mut grpc = support::connect(port).await;
    let resumed = support::get(&mut grpc, "stuck").await;
    assert_eq!(resumed.status(), orchestrator_api_grpc::pb::DeliberationStatus::InProgress);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_without_resuming_stores_interrupted_with_its_duration() {
    let (dir, model, log) = stopped_twice(false).await;
    assert!(log.contains("1 stored INTERRUPTED"), "{log}");
    let (child, port) = support::start_server(
        &sqlite(dir.path()),
        &model.uri(),
        &[("ORCHESTRATOR_RESUME_UNFINISHED", "false")],
    );
    let _server = Killed(child);
    support::connect(port).await;
    let got: serde_json::Value =
        serde_json::from_slice(&client(port, &["get", "stuck", "--json"]).stdout).unwrap();
    assert_eq!(got["status"], "interrupted");
    assert!(got["duration_ms"].as_i64().is_some_and(|ms| ms > 0), "{got}");
    let shown = text(&client(port, &["get", "stuck"]).stdout);
    assert!(shown.starts_with("task stuck (DEV): interrupted in "), "{shown}");
}

#[tokio::test]
async fn the_log_names_each_field_once_and_audits_polls_at_debug_only() {
    let model = support::slow_model(std::time::Duration::ZERO).await;
    support::serve_models(&model, &["slow-model"]).await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let (child, port) = support::start_server_logged(&sqlite(dir.path()), &model.uri(), &[], &log);
    let server = Killed(child);
    support::connect(port).await;
    let done = client(
        port,
        &["deliberate", "Write is_even(n)", "--agents", "2", "--rounds", "1", "--task-id", "odd1"],
    );
    assert!(done.status.success(), "{}", text(&done.stderr));
    assert!(client(port, &["status"]).status.success());
    assert!(client(port, &["health"]).status.success());
    drop(server);

    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("task_id=odd1") || log.contains("task_id=\"odd1\""), "{log}");
    for line in log.lines() {
        assert!(line.matches("task_id=").count() <= 1, "a field repeated: {line}");
    }
    let audit: Vec<&str> = log.lines().filter(|line| line.contains("orchestrator::audit")).collect();
    assert!(audit.iter().any(|line| line.contains("SubmitDeliberation")), "{log}");
    for poll in ["GetStatus", "grpc.health.v1.Health"] {
        assert!(!audit.iter().any(|line| line.contains(poll)), "{poll} audited at INFO: {audit:#?}");
    }
}
