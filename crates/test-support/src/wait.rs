//! The one way a test waits for something it cannot be told about: [`eventually`].
//!
//! Where a test can wait on an event (a watch stream that ends, a subscription, a child's
//! output) it does; this is for the rest — a row that another process writes, a stream that a
//! broker fills — and it is bounded, so a test that waits for what never comes fails with what
//! it waited for instead of hanging.

use std::time::Duration;

/// How often [`eventually`] looks again.
pub const LOOK_EVERY: Duration = Duration::from_millis(20);

/// Runs `probe` until it gives a value and returns it; panics naming `what` once `within`
/// has passed.
///
/// # Panics
/// When `probe` gave nothing within `within`.
#[track_caller]
pub fn eventually<T>(
    what: &str,
    within: Duration,
    mut probe: impl AsyncFnMut() -> Option<T>,
) -> impl Future<Output = T> {
    let caller = std::panic::Location::caller();
    async move {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(value) = probe().await {
                return value;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "not within {within:?}: {what} (waiting at {caller})"
            );
            tokio::time::sleep(LOOK_EVERY).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn gives_the_first_value_the_probe_finds() {
        let mut tries = 0;
        let found = eventually("the third try", Duration::from_secs(5), async || {
            tries += 1;
            (tries == 3).then_some(tries)
        })
        .await;
        assert_eq!(found, 3);
    }

    #[tokio::test]
    #[should_panic(expected = "not within 50ms: nothing")]
    async fn fails_naming_what_never_came() {
        eventually("nothing", Duration::from_millis(50), async || None::<()>).await;
    }
}
