//! The start-up check of the model servers: each profile's `/models` asked once, in the
//! background, so a server that is down or misconfigured is named in the log before the first
//! deliberation fails on it — and never delays startup.

use std::sync::Arc;

use orchestrator_application::BACKEND_PROBE_TIMEOUT;
use orchestrator_application::ports::BackendProber;
use tracing::{info, warn};

/// Probes every profile in a spawned task and logs what it found: one `info` line per
/// profile that answers with its model; one `warn` line for a busy one (it took the connection
/// but did not answer yet: usable, said in the probe's one wording); one `warn` line naming
/// the profile, the URL asked and what to fix for any other.
pub fn spawn_startup_probe(prober: Arc<dyn BackendProber>) {
    tokio::spawn(async move {
        for health in prober.probe_backends(BACKEND_PROBE_TIMEOUT).await {
            if health.is_busy() {
                warn!(
                    profile = health.profile,
                    detail = health.operator_detail,
                    "model server busy; deliberations on this profile wait for it"
                );
            } else if health.ok {
                info!(profile = health.profile, result = health.operator_detail, "model server answers");
            } else {
                warn!(
                    profile = health.profile,
                    problem = health.operator_detail,
                    "model server check failed; deliberations on this profile will fail until it is fixed"
                );
            }
        }
    });
}
