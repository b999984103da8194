//! The rules a loaded configuration must meet beyond its types: ranges, keys that must
//! agree (a `selection_profile` that names a configured profile, say). Each error names its key.

use super::Config;
use crate::error::{Result, ServerError};

impl Config {
    /// Checks the rules above, naming the first key that breaks one.
    ///
    /// # Errors
    /// [`ServerError::Config`] naming the key.
    pub(super) fn validate(&self) -> Result<()> {
        if !(self.queue_share > 0.0 && self.queue_share <= 1.0) {
            return Err(ServerError::config(
                "queue_share",
                format!("must be within (0, 1], got {}", self.queue_share),
            ));
        }
        if self.max_running == 0 || self.max_running > 1024 {
            return Err(ServerError::config(
                "max_running",
                format!("must be within 1..=1024, got {}", self.max_running),
            ));
        }
        if self.queue_capacity > 100_000 {
            return Err(ServerError::config(
                "queue_capacity",
                format!("must be at most 100000, got {}", self.queue_capacity),
            ));
        }
        if let Some(dry_run) = &self.dry_run {
            dry_run.validate().map_err(|e| ServerError::config(format!("dry_run.{}", e.field), e.reason))?;
        }
        if self.node_id.is_empty() || self.node_id.len() > 128 {
            return Err(ServerError::config(
                "node_id",
                format!("must be 1..=128 bytes, got {}", self.node_id.len()),
            ));
        }
        if !(3..=3600).contains(&self.lease_secs) {
            return Err(ServerError::config(
                "lease_secs",
                format!("must be within 3..=3600, got {}", self.lease_secs),
            ));
        }
        if !(100..=60_000).contains(&self.store_acquire_timeout_ms) {
            return Err(ServerError::config(
                "store_acquire_timeout_ms",
                format!("must be within 100..=60000, got {}", self.store_acquire_timeout_ms),
            ));
        }
        if !(100..=60_000).contains(&self.store_probe_interval_ms) {
            return Err(ServerError::config(
                "store_probe_interval_ms",
                format!("must be within 100..=60000, got {}", self.store_probe_interval_ms),
            ));
        }
        if self.store_write_retry_secs > 3600 {
            return Err(ServerError::config(
                "store_write_retry_secs",
                format!("must be at most 3600, got {}", self.store_write_retry_secs),
            ));
        }
        if let Some(profile) = &self.selection_profile
            && !self.profiles.is_empty()
            && !self.profiles.contains_key(profile)
        {
            let known: Vec<&str> = self.profiles.keys().map(String::as_str).collect();
            return Err(ServerError::config(
                "selection_profile",
                format!(
                    "names profile \"{profile}\", which is not configured (configured: {})",
                    known.join(", ")
                ),
            ));
        }
        if self.database_url.is_empty() {
            return Err(ServerError::config("database_url", "must not be empty"));
        }
        self.declared_councils()?;
        for (key, value, range) in [
            ("idle_connection_secs", self.idle_connection_secs, 1..=86_400),
            ("http2_keepalive_interval_secs", self.http2_keepalive_interval_secs, 1..=3600),
            ("http2_keepalive_timeout_secs", self.http2_keepalive_timeout_secs, 1..=600),
        ] {
            if !range.contains(&value) {
                return Err(ServerError::config(
                    key,
                    format!("must be within {}..={}, got {value}", range.start(), range.end()),
                ));
            }
        }
        if self.max_connections > 1_000_000 {
            return Err(ServerError::config(
                "max_connections",
                format!(
                    "must be at most 1000000 (0: sized to the open-files limit), got {}",
                    self.max_connections
                ),
            ));
        }
        if self.default_timeout_secs == 0 || self.default_timeout_secs > 6 * 3600 {
            return Err(ServerError::config(
                "default_timeout_secs",
                format!("must be within 1..=21600, got {}", self.default_timeout_secs),
            ));
        }
        Ok(())
    }
}
