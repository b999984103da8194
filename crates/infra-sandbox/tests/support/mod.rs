//! What the sandbox's integration tests share: the real sandbox of this machine, or a visible
//! SKIPPED where it has none.

use orchestrator_infra_sandbox::{Sandbox, SandboxLimits, SandboxUnavailable};

/// The sandbox with `limits`, or `None` (after saying why) where this machine has none.
pub(crate) fn sandbox_with(limits: SandboxLimits) -> Option<Sandbox> {
    match Sandbox::detect(limits) {
        Ok(sandbox) => Some(sandbox),
        Err(why) => {
            let how = match why {
                SandboxUnavailable::BwrapMissing => "apt-get install bubblewrap",
                _ => "allow unprivileged user namespaces",
            };
            orchestrator_test_support::skip("the bubblewrap sandbox", how, why);
            None
        }
    }
}
