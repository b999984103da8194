//! The isolation layer for model-written code. Every command that touches such code runs
//! inside a [`Sandbox`] (bubblewrap: its own user, pid, network, ipc and uts namespaces; a
//! read-only system; one fresh writable work dir; CPU, memory, process and file-size limits; a
//! wall timeout; the whole process tree killed at the end), or — only when the operator opted
//! in explicitly — through the [`Unsandboxed`] runner, which warns loudly every time.
//!
//! * [`limits`] — [`SandboxLimits`]: what one run may use, validated with field names.
//! * [`spec`] — [`RunSpec`] (program, arguments, files, environment) in, [`RunOutput`] out.
//! * [`bubblewrap`] — [`Sandbox`]: detection by a real probe run, and runs under `bwrap`.
//!   Its module documentation explains the design and why each wall is built the way it is.
//! * [`unsandboxed`] — [`Unsandboxed`]: the operator's explicit opt-out.
//! * [`isolation`] — [`Isolation`]: either of the two, for callers that hold one.
//! * [`error`] — [`SandboxError`] (a run failed), [`SandboxUnavailable`] (no sandbox here),
//!   [`InvalidLimit`], [`SweepFailed`].
//! * [`sweep_leftover_work_dirs`] — call once at start-up: removes the run dirs a previous
//!   life of the service left in the temp dir (a crash mid-run, a run whose processes could not
//!   be confirmed gone), never one a live process holds.
//!
//! Every run gets a fresh run dir in the temp dir. It is removed only once every process of
//! the run is gone — also when the caller drops the run's future, which kills the run — and
//! without following links, whatever the program left in it (see `tree_removal`).
//!
//! Linux only: the sandbox needs `bwrap` (Debian package `bubblewrap`) and `setpriv` and
//! `prlimit` (util-linux).
#![forbid(unsafe_code)]

pub mod bubblewrap;
pub mod error;
pub mod isolation;
pub mod limits;
pub mod spec;
pub mod unsandboxed;

mod process_tree;
mod supervision;
mod tree_removal;
mod work_dir;

pub use bubblewrap::Sandbox;
pub use error::{InvalidLimit, SandboxError, SandboxUnavailable, SweepFailed};
pub use isolation::Isolation;
pub use limits::SandboxLimits;
pub use spec::{CapturedOutput, RunOutput, RunSpec, Termination, WORK_DIR_PLACEHOLDER};
pub use unsandboxed::Unsandboxed;
pub use work_dir::sweep_leftover_work_dirs;
