//! Certificate rotation without a restart, against the real binary: the files behind
//! `tls_cert`/`tls_key` are replaced by a certificate of another CA, and after SIGHUP (or the
//! reload interval) new connections get the new certificate; files that do not load are
//! refused and the previous certificate keeps serving.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::Duration;

use orchestrator_test_support::pki::Pki;
use support::{serve_models, slow_model};

/// A CA named `name` (its PEM written to `dir/<name>.pem`) and a certificate it signed for
/// `localhost` and 127.0.0.1, as (CA path, certificate PEM, key PEM).
fn pki(dir: &Path, name: &str) -> (PathBuf, String, String) {
    let pki = Pki::new(name);
    let (cert, key) = pki.leaf("localhost");
    let ca_path = dir.join(format!("{name}.pem"));
    std::fs::write(&ca_path, &pki.ca_pem).unwrap();
    (ca_path, cert, key)
}

/// `orchestrator health` over TLS, trusting only `ca`.
fn health(port: u16, ca: &Path) -> Output {
    support::cli()
        .args(["health", "--addr", &format!("https://127.0.0.1:{port}"), "--ca"])
        .arg(ca)
        .output()
        .unwrap()
}

fn trusted(port: u16, ca: &Path) -> bool {
    health(port, ca).status.success()
}

fn signal(server: &Child, name: &str) {
    let pid = server.id().to_string();
    assert!(Command::new("kill").args([name, &pid]).status().unwrap().success());
}

/// Waits until the server's log holds `needle` `times` times (it writes the line once the
/// reload is done), or fails after 30 s.
async fn wait_for_log(log: &Path, needle: &str, times: usize) {
    let what = format!("no {needle:?} in the log {}", log.display());
    support::poll(&what, Duration::from_secs(30), async || {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        (text.matches(needle).count() >= times).then_some(())
    })
    .await;
}

/// Runs a server over TLS with the first certificate, reloading every `interval_secs`.
async fn tls_server(
    interval_secs: &str,
) -> (Child, u16, tempfile::TempDir, PathBuf, PathBuf, PathBuf, wiremock::MockServer) {
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path, log) =
        (dir.path().join("cert.pem"), dir.path().join("key.pem"), dir.path().join("server.log"));
    let (first_ca, cert, key) = pki(dir.path(), "first-ca");
    std::fs::write(&cert_path, cert).unwrap();
    std::fs::write(&key_path, key).unwrap();
    let model = slow_model(Duration::ZERO).await;
    serve_models(&model, &["slow-model"]).await;
    let database = format!("sqlite:{}", dir.path().join("orchestrator.db").display());
    let (cert_env, key_env) = (cert_path.display().to_string(), key_path.display().to_string());
    let (server, port) = support::start_server_logged(
        &database,
        &model.uri(),
        &[
            ("ORCHESTRATOR_TLS_CERT", cert_env.as_str()),
            ("ORCHESTRATOR_TLS_KEY", key_env.as_str()),
            ("ORCHESTRATOR_TLS_RELOAD_INTERVAL_SECS", interval_secs),
            ("ORCHESTRATOR_SHUTDOWN_GRACE_SECS", "1"),
        ],
        &log,
    );
    (server, port, dir, first_ca, cert_path, key_path, model)
}

#[tokio::test]
async fn sighup_rotates_the_certificate_and_a_bad_key_leaves_the_old_one_serving() {
    let (mut server, port, dir, first_ca, cert_path, key_path, _model) = tls_server("0").await;
    let log = dir.path().join("server.log");
    let (second_ca, cert, key) = pki(dir.path(), "second-ca");
    assert!(trusted(port, &first_ca), "{}", String::from_utf8_lossy(&health(port, &first_ca).stderr));
    assert!(!trusted(port, &second_ca));

    std::fs::write(&cert_path, cert).unwrap();
    std::fs::write(&key_path, key).unwrap();
    signal(&server, "-HUP");
    wait_for_log(&log, "TLS certificate reloaded", 1).await;
    assert!(trusted(port, &second_ca), "new connections get the new certificate");
    assert!(!trusted(port, &first_ca), "the old certificate is no longer served");

    std::fs::write(&key_path, "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")
        .unwrap();
    signal(&server, "-HUP");
    wait_for_log(&log, "TLS files changed but do not load", 1).await;
    assert!(trusted(port, &second_ca), "a key that does not load leaves the previous certificate serving");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("tls_key"), "the warning names the key:\n{text}");

    signal(&server, "-TERM");
    assert!(server.wait().unwrap().success());
}

#[tokio::test]
async fn renewed_files_are_picked_up_on_the_reload_interval() {
    let (mut server, port, dir, _first_ca, cert_path, key_path, _model) = tls_server("1").await;
    let (second_ca, cert, key) = pki(dir.path(), "second-ca");
    // The key first, then the certificate, as a renewal might: a check in between refuses the
    // pair; the next one, after the certificate lands, loads it.
    std::fs::write(&key_path, key).unwrap();
    std::fs::write(&cert_path, cert).unwrap();
    wait_for_log(&dir.path().join("server.log"), "TLS certificate reloaded", 1).await;
    assert!(trusted(port, &second_ca));

    signal(&server, "-TERM");
    assert!(server.wait().unwrap().success());
}

#[tokio::test]
async fn without_tls_sighup_is_logged_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let model = slow_model(Duration::ZERO).await;
    serve_models(&model, &["slow-model"]).await;
    let database = format!("sqlite:{}", dir.path().join("orchestrator.db").display());
    let (mut server, port) = support::start_server_logged(
        &database,
        &model.uri(),
        &[("ORCHESTRATOR_SHUTDOWN_GRACE_SECS", "1")],
        &log,
    );
    let plain_health =
        || support::cli().args(["health", "--addr", &format!("http://127.0.0.1:{port}")]).output().unwrap();
    assert!(plain_health().status.success(), "serving before the signal");

    signal(&server, "-HUP");
    wait_for_log(&log, "SIGHUP: nothing to reload", 1).await;
    assert!(plain_health().status.success(), "still serving after SIGHUP");

    signal(&server, "-TERM");
    assert!(server.wait().unwrap().success());
}
