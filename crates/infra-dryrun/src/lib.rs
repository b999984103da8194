//! The dry-run adapter: hands the code blocks of a proposal to a command the operator chose
//! (a compiler, a linter, a syntax check, an interpreter) and reports its verdict. The command
//! touches model-written code, so it always runs inside the isolation layer
//! (`orchestrator-infra-sandbox`): a bubblewrap sandbox, or — only with the operator's explicit
//! `unsandboxed = true` — directly, with a warning on every run. Without either, code is never
//! run and every dry run reports "not run: no sandbox (why)".
//!
//! * [`config`] — [`DryRunConfig`]: the command, the code-fence languages it takes, limits,
//!   the unsandboxed opt-in.
//! * [`code_blocks`] — finding the fenced code blocks of a proposal.
//! * [`runner`] — [`CommandDryRunner`], the [`DryRunner`](orchestrator_application::ports::DryRunner)
//!   implementation: code file in the sandbox's work dir, limits, timeout, output cap, kill.
//! * [`acceptance`] — [`PythonTestRunner`], the
//!   [`TestRunner`](orchestrator_application::ports::TestRunner) of Python acceptance tests:
//!   sandbox only, never unsandboxed.
#![forbid(unsafe_code)]

pub mod acceptance;
pub mod code_blocks;
pub mod config;
pub mod runner;

pub use acceptance::PythonTestRunner;
pub use config::{ConfigError, DryRunConfig, DryRunLimits};
pub use runner::CommandDryRunner;
