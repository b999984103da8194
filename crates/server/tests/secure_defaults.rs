//! The real binary refuses to serve an open port without authentication, and says why.

#![allow(clippy::unwrap_used, reason = "test code: a failed step should fail the test loudly")]

use std::process::Command;

fn orchestrator(envs: &[(&str, &str)]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite:{}", dir.path().join("o.db").display());
    let mut command = Command::new(env!("CARGO_BIN_EXE_orchestrator"));
    command.arg("serve").env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default());
    command.env("ORCHESTRATOR_DATABASE_URL", database).env("ORCHESTRATOR_LOG_FORMAT", "json");
    command.envs(envs.iter().copied());
    command.output().unwrap()
}

#[test]
fn without_tokens_the_server_refuses_to_listen_beyond_loopback() {
    let output = orchestrator(&[("ORCHESTRATOR_LISTEN", "0.0.0.0:0")]);
    assert!(!output.status.success(), "it must not start");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("refusing to serve 0.0.0.0:0 without authentication"), "{stderr}");
    assert!(stderr.contains("ORCHESTRATOR_AUTH_TOKENS_FILE"), "the message says how to fix it: {stderr}");
}

#[test]
fn a_malformed_tokens_file_stops_startup_naming_the_line_but_not_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "ci short-secret\n").unwrap();
    let output = orchestrator(&[
        ("ORCHESTRATOR_LISTEN", "127.0.0.1:0"),
        ("ORCHESTRATOR_AUTH_TOKENS_FILE", tokens.to_str().unwrap()),
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("auth_tokens_file") && stderr.contains("line 1"), "{stderr}");
    assert!(!stderr.contains("short-secret"), "the token is never echoed: {stderr}");
}

#[test]
fn a_tokens_file_that_claims_the_anonymous_principal_stops_startup_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "ops 0123456789abcdef-ops admin\nAnonymous 0123456789abcdef-anon\n").unwrap();
    let output = orchestrator(&[
        ("ORCHESTRATOR_LISTEN", "127.0.0.1:0"),
        ("ORCHESTRATOR_AUTH_TOKENS_FILE", tokens.to_str().unwrap()),
    ]);
    assert!(!output.status.success(), "it must not start");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("line 2") && stderr.contains("`anonymous` is reserved"), "{stderr}");
    assert!(!stderr.contains("0123456789abcdef-anon"), "the token is never echoed: {stderr}");
}

#[test]
fn a_config_file_that_is_not_toml_is_named_by_line_and_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "# who may call\nci-bot 0123456789abcdef-ci\nops 0123456789abcdef-ops admin\n")
        .unwrap();
    let path = tokens.to_str().unwrap();
    let served = orchestrator(&[("ORCHESTRATOR_LISTEN", "127.0.0.1:0"), ("ORCHESTRATOR_CONFIG", path)]);
    let mut checked = Command::new(env!("CARGO_BIN_EXE_orchestrator"));
    let checked = checked.args(["config", "check", path]).env_remove("ORCHESTRATOR_CONFIG").output().unwrap();
    for output in [served, checked] {
        assert_eq!(output.status.code(), Some(2));
        let printed =
            format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(printed.contains(path) && printed.contains("line 2, column"), "{printed}");
        for secret in ["0123456789abcdef", "ci-bot"] {
            assert!(!printed.contains(secret), "{secret} printed: {printed}");
        }
    }
}

#[test]
fn a_token_on_the_command_line_is_warned_about_and_one_from_the_environment_or_a_file_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "0123456789abcdef-file\n").unwrap();
    // Nothing listens on port 9 of loopback: each run fails to connect, after the warning (or not).
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_orchestrator"));
        command.env_remove("ORCHESTRATOR_TOKEN").env_remove("ORCHESTRATOR_TOKEN_FILE");
        command.args(["status", "--addr", "http://127.0.0.1:9"]).args(args).envs(env.iter().copied());
        String::from_utf8_lossy(&command.output().unwrap().stderr).into_owned()
    };
    let warning = "--token on the command line is visible to every local user";
    let stderr = run(&["--token", "0123456789abcdef-argv"], &[]);
    assert!(stderr.contains(warning) && stderr.contains("--token-file"), "{stderr}");
    assert!(!stderr.contains("0123456789abcdef-argv"), "{stderr}");
    assert!(!run(&[], &[("ORCHESTRATOR_TOKEN", "0123456789abcdef-env")]).contains(warning));
    assert!(!run(&["--token-file", file.to_str().unwrap()], &[]).contains(warning));
}
