//! The server's log as an auditor reads it: one line per event, every line begun by the
//! logger's own timestamp, whatever the text it logs — a task, a prompt, a model's answer —
//! holds. The real binary at `RUST_LOG=trace`, where prompts (and so tasks) are logged whole.
#![allow(clippy::unwrap_used, reason = "test code: a failed step should fail the test loudly")]

mod support;

use std::process::Child;
use std::time::Duration;

use serde_json::Value;

use support::{serve_models, slow_model};

/// A task whose second line, logged raw, would read as an audit record of an admin's call;
/// it also tries to retitle the terminal of whoever tails the log, then to colour it with an
/// 8-bit CSI, then to reverse what follows (a right-to-left override).
const FORGED: &str = "Plan the upgrade\n2026-12-07T00:00:00.000000Z  INFO orchestrator::audit: rpc allowed \
                      principal=admin\x1b]0;pwned\x07\u{9b}31m\u{202e}";

/// The characters of [`FORGED`] that a terminal acts on.
const TERMINAL_CONTROLS: [char; 4] = ['\x1b', '\x07', '\u{9b}', '\u{202e}'];

/// What the forged line starts with.
const FORGED_START: &str = "2026-12-07T00:00:00.000000Z";

/// Kills the server when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs one deliberation of [`FORGED`] on a server logging at trace level in `format`, and
/// returns the server's log.
async fn log_of_a_forged_task(format: &str) -> String {
    let model = slow_model(Duration::ZERO).await;
    serve_models(&model, &["slow-model"]).await;
    let data = tempfile::tempdir().unwrap();
    let database = format!("sqlite:{}", data.path().join("orchestrator.db").display());
    let log = data.path().join("server.log");
    let env = [("RUST_LOG", "trace"), ("ORCHESTRATOR_LOG_FORMAT", format)];
    let (child, port) = support::start_server_logged(&database, &model.uri(), &env, &log);
    let server = Killed(child);
    let output = support::cli()
        .env("ORCHESTRATOR_ADDR", format!("http://127.0.0.1:{port}"))
        .args(["deliberate", FORGED, "--agents", "1", "--rounds", "0", "--quiet"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    drop(server);
    std::fs::read_to_string(&log).unwrap()
}

/// Whether `line` begins with a timestamp as the logger writes it: `2025-01-31T12:34:56.123456Z`.
fn starts_with_a_timestamp(line: &str) -> bool {
    let Some(stamp) = line.split(' ').next() else { return false };
    let shape = stamp.bytes().enumerate().all(|(i, b)| match i {
        4 | 7 => b == b'-',
        10 => b == b'T',
        13 | 16 => b == b':',
        19 => b == b'.',
        26 => b == b'Z',
        _ => b.is_ascii_digit(),
    });
    stamp.len() == 27 && shape
}

#[tokio::test]
async fn a_newline_in_a_task_cannot_forge_an_audit_line_at_trace_level() {
    let log = log_of_a_forged_task("pretty").await;
    let forged: Vec<&str> = log.lines().filter(|line| line.starts_with(FORGED_START)).collect();
    assert!(forged.is_empty(), "forged lines: {forged:#?}");
    for line in log.lines() {
        assert!(starts_with_a_timestamp(line), "a line the logger did not begin: {line:?}");
    }
    let prompt = log.lines().find(|line| line.contains("Plan the upgrade")).unwrap();
    assert!(
        prompt.contains(
            "Plan the upgrade\\n2026-12-07T00:00:00.000000Z  INFO orchestrator::audit: rpc allowed \
             principal=admin\\u{1b}]0;pwned\\u{7}\\u{9b}31m\\u{202e}"
        ),
        "the task is logged whole, its newline and escape sequence shown, not acted on: {prompt:?}"
    );
    for control in TERMINAL_CONTROLS {
        assert!(!log.contains(control), "{control:?} in the log");
    }
}

#[tokio::test]
async fn json_log_lines_hold_a_forged_task_as_data() {
    let log = log_of_a_forged_task("json").await;
    let mut prompts = 0;
    for line in log.lines() {
        let event: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        assert!(event["timestamp"].is_string(), "{line}");
        prompts += usize::from(event["user"].as_str().is_some_and(|user| user.contains(FORGED)));
    }
    assert!(prompts > 0, "the prompt is logged with the task whole");
    for control in TERMINAL_CONTROLS {
        assert!(!log.contains(control), "{control:?} in the log");
    }
}
