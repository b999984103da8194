//! The files a run (or a merge of runs) leaves: `results.csv`, `results.md`, `results.svg`.

use std::path::{Path, PathBuf};

use crate::configs::Configuration;
use crate::error::{QualityError, Result};
use crate::report::{self, Row, RunInfo};
use crate::results_csv;

/// Where the files of a run are.
#[derive(Debug, Clone)]
pub struct Outputs {
    pub csv: PathBuf,
    pub markdown: PathBuf,
    pub svg: PathBuf,
}

impl Outputs {
    /// The files in `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        Self { csv: dir.join("results.csv"), markdown: dir.join("results.md"), svg: dir.join("results.svg") }
    }
}

/// Writes `rows` (in the order given) and their per-configuration summary, in `configs` order,
/// into `dir`, creating it if needed.
///
/// # Errors
/// [`QualityError::Output`] naming the file that could not be written.
pub fn write(dir: &Path, info: &RunInfo, configs: &[Configuration], rows: &[Row]) -> Result<Outputs> {
    create_dir(dir)?;
    let outputs = Outputs::in_dir(dir);
    let summaries = report::summarise(rows, configs);
    let title = format!("{} · {} · {}", info.problems, info.model, info.date);
    write_file(&outputs.csv, &results_csv::to_csv(rows)?)?;
    write_file(&outputs.markdown, &report::markdown(info, &summaries, rows))?;
    write_file(&outputs.svg, &crate::chart::svg(&title, &summaries))?;
    Ok(outputs)
}

/// Writes `text` to `path`.
///
/// # Errors
/// [`QualityError::Output`] naming `path`.
pub fn write_file(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|source| QualityError::Output { path: path.to_owned(), source })
}

/// Creates `dir` and its parents.
///
/// # Errors
/// [`QualityError::Output`] naming `dir`.
pub fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| QualityError::Output { path: dir.to_owned(), source })
}
