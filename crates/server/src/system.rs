//! System adapters of the clock and id ports.

use std::time::{SystemTime, UNIX_EPOCH};

use orchestrator_application::ports::{Clock, IdGenerator};

/// The operating system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

/// UUID v7 ids: unique, and sortable by creation time, which keeps storage indexes local.
#[derive(Debug, Clone, Copy, Default)]
pub struct UuidV7Ids;

impl IdGenerator for UuidV7Ids {
    fn new_id(&self) -> String {
        uuid::Uuid::now_v7().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_time_ordered() {
        let a = UuidV7Ids.new_id();
        let b = UuidV7Ids.new_id();
        assert_ne!(a, b);
        assert!(a < b, "{a} !< {b}");
    }

    #[test]
    fn clock_is_after_2024() {
        assert!(SystemClock.now_ms() > 1_704_067_200_000);
    }
}
