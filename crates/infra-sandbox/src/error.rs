//! What can go wrong: limits that cannot work, a machine without a sandbox, a run that failed,
//! a start-up sweep that could not look.
//!
//! Four types rather than one enum because they answer different questions at different
//! times: [`InvalidLimit`] is a configuration mistake, [`SandboxUnavailable`] is the answer to
//! "can this machine isolate code?" (given once, at start-up, and shown to the operator),
//! [`SandboxError`] is a run that could not be carried out, and [`SweepFailed`] says the
//! start-up sweep of leftover run dirs could not even read the temp dir. A program that fails inside the
//! sandbox is none of these: that is a [`RunOutput`](crate::RunOutput).

use std::io;
use std::path::PathBuf;

/// A limit that cannot work; the message names the field (`sandbox.<field>`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sandbox.{field}: {reason}")]
pub struct InvalidLimit {
    /// The [`SandboxLimits`](crate::SandboxLimits) field at fault.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

/// Why no sandbox can be used on this machine. Callers show it to the operator (for example
/// as the reason a dry run did not happen), so each variant says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxUnavailable {
    /// The limits the sandbox was asked to enforce are invalid.
    #[error(transparent)]
    InvalidLimits {
        #[from]
        source: InvalidLimit,
    },
    /// `bwrap` is not on `PATH` nor in `/usr/bin` or `/bin`.
    #[error("bubblewrap (bwrap) is not installed; install the bubblewrap package")]
    BwrapMissing,
    /// A helper from util-linux is missing (or lies outside the directories the sandbox sees).
    #[error("{tool} is not installed where the sandbox can see it (util-linux, under /usr or /bin)")]
    ToolMissing {
        /// `setpriv` or `prlimit`.
        tool: &'static str,
    },
    /// The kernel or a security module refuses the user namespace the sandbox needs.
    #[error(
        "user namespaces are refused ({detail}); check the sysctls user.max_user_namespaces, \
         kernel.unprivileged_userns_clone and kernel.apparmor_restrict_unprivileged_userns, \
         and the container's seccomp profile"
    )]
    UserNamespacesRefused {
        /// What bwrap or the kernel said.
        detail: String,
    },
    /// The probe run did not succeed for another reason.
    #[error("the probe run in the sandbox failed: {detail}")]
    ProbeFailed {
        /// What went wrong, from bwrap's error output where there was one.
        detail: String,
    },
}

/// A run that could not be carried out. The program's own failure is not an error: it is a
/// [`RunOutput`](crate::RunOutput) with a non-zero exit code or another
/// [`Termination`](crate::Termination).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// The [`RunSpec`](crate::RunSpec) is malformed (empty program, a file path leaving the
    /// work dir, an impossible environment variable name).
    #[error("invalid run spec: {reason}")]
    InvalidSpec {
        /// Which part and why.
        reason: String,
    },
    /// The program is not where the sandbox looks for it (`/usr/bin`, `/bin`).
    #[error("program {program} not found in the sandbox")]
    ProgramNotFound {
        /// The program as given.
        program: String,
    },
    /// The fresh work dir could not be created or filled.
    #[error("cannot prepare the work dir")]
    WorkDir {
        #[source]
        source: io::Error,
    },
    /// The sandbox (or, unsandboxed, the program) could not be started.
    #[error("cannot start {program}")]
    Spawn {
        /// The program that failed to start (`setpriv`, or the program itself unsandboxed).
        program: String,
        #[source]
        source: io::Error,
    },
    /// Reading the output or waiting for the end failed; the run was killed.
    #[error("lost track of the run")]
    Supervise {
        #[source]
        source: io::Error,
    },
}

/// The temp dir could not be read for leftover run dirs
/// ([`sweep_leftover_work_dirs`](crate::sweep_leftover_work_dirs)); nothing was removed.
#[derive(Debug, thiserror::Error)]
#[error("cannot search {} for leftover run dirs", dir.display())]
pub struct SweepFailed {
    /// The temp dir searched.
    pub dir: PathBuf,
    /// Why it could not be read.
    #[source]
    pub source: io::Error,
}

/// Results of this crate's runs.
pub type Result<T, E = SandboxError> = std::result::Result<T, E>;
