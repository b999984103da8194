//! The dry-run adapter: hands the code blocks of a proposal to a command the operator chose
//! (a compiler, a linter, a syntax check, a sandboxed interpreter) and reports its verdict.
//!
//! * [`config`] — [`DryRunConfig`]: the command, the code-fence languages it takes, limits.
//! * [`code_blocks`] — finding the fenced code blocks of a proposal.
//! * [`runner`] — [`CommandDryRunner`], the [`DryRunner`](orchestrator_application::ports::DryRunner)
//!   implementation: temp file, cleared environment, timeout, output cap, kill on drop.
//!
//! The command runs model-written content. Prefer checks that do not execute it (for example
//! `python3 -m py_compile {file}`), or wrap execution in a sandbox of your own.
#![forbid(unsafe_code)]

pub mod code_blocks;
pub mod config;
pub mod runner;

pub use config::{ConfigError, DryRunConfig};
pub use runner::CommandDryRunner;
