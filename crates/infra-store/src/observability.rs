//! The metric of storage failures, named in one place.
//!
//! Counted where a failure becomes a [`StoreError`](orchestrator_application::ports::StoreError)
//! (see [`crate::error`]), through the `metrics` facade: a no-op until the server installs a
//! recorder.

/// Counter: storage failures, by `kind`: `unavailable` (the database refused or could not be
/// reached) or `corrupt` (a stored row or registry entry could not be read back).
pub const STORE_ERRORS: &str = "orchestrator_store_errors_total";

/// Counts one storage failure of `kind` (`unavailable` or `corrupt`).
pub(crate) fn store_failed(kind: &'static str) {
    metrics::counter!(STORE_ERRORS, "kind" => kind).increment(1);
}
