//! What can stop a benchmark run (a wrong answer never does: that is a row that failed).

use std::path::PathBuf;

/// A benchmark run could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum QualityError {
    /// The data set could not be fetched or read.
    #[error("data set {path}: {reason}")]
    Dataset { path: PathBuf, reason: String },
    /// A command-line value is out of range or malformed; names the flag.
    #[error("--{flag}: {reason}")]
    InvalidArgument { flag: &'static str, reason: String },
    /// No sandbox on this machine: model-written code is never graded outside one.
    #[error("no sandbox to grade model-written code in: {source}")]
    NoSandbox {
        #[source]
        source: orchestrator_infra_sandbox::SandboxUnavailable,
    },
    /// Running a program in the sandbox failed (not the program itself: the run).
    #[error("sandbox run failed: {source}")]
    Sandbox {
        #[source]
        source: orchestrator_infra_sandbox::SandboxError,
    },
    /// The in-process orchestrator could not start.
    #[error("orchestrator did not start: {source}")]
    Server {
        #[source]
        source: orchestrator_server::ServerError,
    },
    /// The orchestrator at `--server` could not be reached.
    #[error("cannot connect to {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
    /// Writing the results failed.
    #[error("writing {path}: {source}")]
    Output {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A results file could not be read.
    #[error("reading {path}: {source}")]
    Input {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A results file is not a `results.csv` this benchmark wrote; names the line.
    #[error("{}: {reason}", path.display())]
    Csv { path: PathBuf, reason: String },
    /// `--check` found a missing or broken row.
    #[error("check failed: {0}")]
    Check(String),
}

pub type Result<T, E = QualityError> = std::result::Result<T, E>;
