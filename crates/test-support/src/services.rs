//! Where the services the tests use answer: one environment variable each, with the default
//! that `scripts/ci-services.sh` and `scripts/local-llm.sh` provide.

/// The test PostgreSQL: `ORCHESTRATOR_TEST_PG_URL`, else the local one (trust auth, `test`).
pub fn pg_url() -> String {
    std::env::var("ORCHESTRATOR_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// The local model server's `…/v1` URL from `ORCHESTRATOR_TEST_LLM_URL`, or `None` after saying
/// SKIPPED (a failure under `CI=true`). `scripts/test.sh` sets it when a model answers on the
/// default port.
#[track_caller]
pub fn llm_url_or_skip() -> Option<String> {
    match std::env::var("ORCHESTRATOR_TEST_LLM_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            crate::skip(
                "a local model server",
                "run scripts/local-llm.sh and set ORCHESTRATOR_TEST_LLM_URL, or use scripts/test.sh",
                "ORCHESTRATOR_TEST_LLM_URL is not set",
            );
            None
        }
    }
}
