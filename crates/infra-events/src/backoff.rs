//! How long the relay waits before trying again after a failure: doubling from a short first
//! wait, so a broker that blinks costs little delay, up to a cap, so one that is away for long
//! is not hammered.

use std::time::Duration;

/// The first wait after a failure.
const FIRST: Duration = Duration::from_millis(50);
/// The longest wait between two attempts.
const MAX: Duration = Duration::from_secs(5);

/// Exponential backoff, reset by a success.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    next: Option<Duration>,
}

impl Backoff {
    /// The wait before the next attempt after one more failure.
    pub(crate) fn failed(&mut self) -> Duration {
        let wait = self.next.unwrap_or(FIRST);
        self.next = Some(wait.saturating_mul(2).min(MAX));
        wait
    }

    /// After a success the next failure waits [`FIRST`] again.
    pub(crate) fn reset(&mut self) {
        self.next = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap_and_start_over_after_a_success() {
        let mut backoff = Backoff::default();
        let waits: Vec<u128> = (0..9).map(|_| backoff.failed().as_millis()).collect();
        assert_eq!(waits, [50, 100, 200, 400, 800, 1_600, 3_200, 5_000, 5_000]);
        backoff.reset();
        assert_eq!(backoff.failed(), FIRST);
    }
}
