//! Stopping: no new work, the grace period for running work, then the rest left resumable
//! (or INTERRUPTED).

use std::time::Duration;

use tracing::warn;

use super::Jobs;

impl Jobs {
    /// Stops taking work, lets running deliberations finish for up to `grace`, then stops the
    /// rest: left as saved to resume at the next start, or INTERRUPTED when resuming is off.
    pub async fn shutdown(&self, grace: Duration) {
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait()).await.is_err() {
            if self.settings.resume_unfinished {
                warn!(
                    grace_secs = grace.as_secs(),
                    "stopping deliberations still running; they resume at the next start"
                );
            } else {
                warn!(grace_secs = grace.as_secs(), "interrupting deliberations still running");
            }
            self.shutdown.cancel();
            self.tasks.wait().await;
        }
        self.stopped.cancel();
    }
}
