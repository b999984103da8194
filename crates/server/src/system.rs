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

/// This process's name among the servers sharing a database: `name` (the configured
/// `node_id`, by default the host name) with the pid and a random suffix. Each process gets
/// its own, so a second server started by mistake beside a running one — same host, same
/// configuration — can never pass for it and take its leases; a restarted process never
/// passes for its dead predecessor either, and takes its work the way any node does (at once
/// on a file it holds exclusively, once the leases ran out on a shared database).
pub fn process_node_id(name: &str) -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{name}-{}-{}", std::process::id(), &random[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_process_node_id_is_new_and_names_host_and_pid() {
        let a = process_node_id("host-1");
        let b = process_node_id("host-1");
        assert_ne!(a, b);
        let pid = std::process::id().to_string();
        assert!(a.starts_with(&format!("host-1-{pid}-")), "{a}");
        assert_eq!(a.len(), "host-1-".len() + pid.len() + 9);
    }

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
