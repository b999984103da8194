//! For tests only: the one way a test that cannot reach its service (PostgreSQL, NATS, a local
//! model server, bubblewrap, kubectl) says so.
//!
//! `cargo test` captures what a passing test prints with `eprintln!`, so a skipped test used
//! to look exactly like one that ran. [`skip`] writes its one line through `std::io::stderr()`
//! directly — the test harness captures only the `print!`/`eprint!` macros — so it shows in
//! the normal output, just above the test's `ok`:
//!
//! ```text
//! SKIPPED: events_reach_nats needs NATS (set ORCHESTRATOR_TEST_NATS_URL): connection refused
//! test events_reach_nats ... ok
//! ```
//!
//! With `CI=true` there is no skipping: [`skip`] panics with the same words, so a CI machine
//! that lost a service fails instead of passing on tests that never ran.
//!
//! [`nats::subscribe_confirmed`] is the one way a test subscribes to NATS before it makes
//! something publish: it returns only once the server has the subscription. [`pki::Pki`] is
//! the one certificate authority of the tests that speak TLS. [`nats_server::NatsServer`] is
//! a `nats-server -js` of the test's own, for drills that kill and restart the broker.
//! [`eventually`] is the one bounded wait for what a test cannot be told about, and
//! [`services`] the one place the services' URLs are read from the environment.
#![forbid(unsafe_code)]

pub mod logs;
pub mod nats;
pub mod nats_server;
pub mod pki;
pub mod services;
pub mod wait;

pub use wait::eventually;

use std::fmt::Display;
use std::io::Write;

/// Whether this run is CI's (`CI=true`), where a missing service is a failure.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value == "true")
}

/// The running test's name: the harness names each test's thread after it.
pub fn current_test() -> String {
    match std::thread::current().name() {
        Some(name) if name != "main" => name.rsplit("::").next().unwrap_or(name).to_owned(),
        _ => "a test".to_owned(),
    }
}

/// An error with its sources, joined by `": "`: the cause of a skip is often a few levels down
/// (a store that cannot open because a migration failed, say).
pub fn chain(error: &dyn std::error::Error) -> String {
    let causes = std::iter::successors(Some(error), |&cause| cause.source());
    causes.map(ToString::to_string).collect::<Vec<_>>().join(": ")
}

/// The line [`skip`] prints (without the newline).
pub fn notice(test: &str, service: &str, how: &str, why: &dyn Display) -> String {
    format!("SKIPPED: {test} needs {service} ({how}): {why}")
}

/// Says that the running test cannot reach `service` and will pass without testing it:
/// one line on the real stderr, `SKIPPED: <test> needs <service> (<how>): <why>`, where `how`
/// tells how to provide it (`set ORCHESTRATOR_TEST_PG_URL`, say).
///
/// # Panics
/// With `CI=true`, always: in CI every service is provided, so a missing one is a failure.
#[track_caller]
pub fn skip(service: &str, how: &str, why: impl Display) {
    let line = notice(&current_test(), service, how, &why);
    assert!(!in_ci(), "CI=true, so this is a failure: {line}");
    // Not eprintln!: the harness would capture it and show nothing for a passing test.
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_notice_names_the_test_the_service_how_and_why() {
        assert_eq!(
            notice("events_reach_nats", "NATS", "set ORCHESTRATOR_TEST_NATS_URL", &"connection refused"),
            "SKIPPED: events_reach_nats needs NATS (set ORCHESTRATOR_TEST_NATS_URL): connection refused"
        );
    }

    #[test]
    fn a_chain_names_every_cause() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("cannot open the store")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let error = Outer(std::io::Error::other("migration 6 is missing"));
        assert_eq!(chain(&error), "cannot open the store: migration 6 is missing");
    }

    #[test]
    fn the_test_is_named_after_its_thread() {
        let name = std::thread::Builder::new()
            .name("module::a_named_test".to_owned())
            .spawn(current_test)
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(name, "a_named_test");
    }
}
