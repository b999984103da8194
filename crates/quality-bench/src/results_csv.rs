//! `results.csv`: every row of a run, written and read back with the `csv` crate, so partial
//! runs can be merged into one table. Columns are only ever added at the end; a file written
//! before a column existed still reads, with that column at its default.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::configs::Configuration;
use crate::error::{QualityError, Result};
use crate::report::{Row, ServerTests};

/// One line of the file, column for column (the order of the fields is the order of the
/// columns).
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    config: String,
    task_id: String,
    visible_tests: usize,
    passed: bool,
    prompt_tokens: i64,
    completion_tokens: i64,
    calls: i64,
    calls_saved: i64,
    wall_ms: u64,
    server_tests_ran: bool,
    server_tests_passed: Option<i32>,
    server_tests_failed: Option<i32>,
    server_tests_errored: Option<i32>,
    error: Option<String>,
    detail: String,
    // Added with (d) and (e); absent from older files.
    #[serde(default)]
    path: String,
    #[serde(default)]
    reviews: i64,
    #[serde(default)]
    graded_reviews: i64,
}

impl From<&Row> for Record {
    fn from(row: &Row) -> Self {
        let tests = row.server_tests;
        Self {
            config: row.config.letter().to_string(),
            task_id: row.task_id.clone(),
            visible_tests: row.visible_tests,
            passed: row.passed,
            prompt_tokens: row.prompt_tokens,
            completion_tokens: row.completion_tokens,
            calls: row.calls,
            calls_saved: row.calls_saved,
            wall_ms: u64::try_from(row.wall.as_millis()).unwrap_or(u64::MAX),
            server_tests_ran: tests.is_some(),
            server_tests_passed: tests.map(|t| t.passed),
            server_tests_failed: tests.map(|t| t.failed),
            server_tests_errored: tests.map(|t| t.errored),
            error: row.error.clone(),
            detail: row.detail.clone(),
            path: row.path.clone(),
            reviews: row.reviews,
            graded_reviews: row.graded_reviews,
        }
    }
}

impl Record {
    /// The row, or why this line is not one (`line` names it).
    fn into_row(self, line: u64) -> std::result::Result<Row, String> {
        let config = Configuration::from_letter(&self.config)
            .ok_or_else(|| format!("line {line}: unknown configuration {:?}", self.config))?;
        let server_tests = self.server_tests_ran.then(|| ServerTests {
            passed: self.server_tests_passed.unwrap_or(0),
            failed: self.server_tests_failed.unwrap_or(0),
            errored: self.server_tests_errored.unwrap_or(0),
        });
        Ok(Row {
            config,
            task_id: self.task_id,
            visible_tests: self.visible_tests,
            passed: self.passed,
            detail: self.detail,
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            calls: self.calls,
            calls_saved: self.calls_saved,
            wall: Duration::from_millis(self.wall_ms),
            server_tests,
            error: self.error.filter(|e| !e.is_empty()),
            path: self.path,
            reviews: self.reviews,
            graded_reviews: self.graded_reviews,
        })
    }
}

/// The rows as CSV text, with a header line.
///
/// # Errors
/// [`QualityError::Csv`] if a row cannot be written (not expected: every field is plain).
pub fn to_csv(rows: &[Row]) -> Result<String> {
    let invalid = |reason: String| QualityError::Csv { path: "results.csv".into(), reason };
    let mut writer = csv::Writer::from_writer(Vec::new());
    for row in rows {
        writer.serialize(Record::from(row)).map_err(|e| invalid(e.to_string()))?;
    }
    if rows.is_empty() {
        // Without a record serde writes no header; an empty run still says what its columns are.
        writer.write_record(HEADER).map_err(|e| invalid(e.to_string()))?;
    }
    let bytes = writer.into_inner().map_err(|e| invalid(e.to_string()))?;
    String::from_utf8(bytes).map_err(|e| invalid(e.to_string()))
}

/// The columns, in order.
const HEADER: [&str; 18] = [
    "config",
    "task_id",
    "visible_tests",
    "passed",
    "prompt_tokens",
    "completion_tokens",
    "calls",
    "calls_saved",
    "wall_ms",
    "server_tests_ran",
    "server_tests_passed",
    "server_tests_failed",
    "server_tests_errored",
    "error",
    "detail",
    "path",
    "reviews",
    "graded_reviews",
];

/// The rows of CSV text as [`to_csv`] writes it (or wrote it before the newer columns);
/// `source` names it in errors.
///
/// # Errors
/// [`QualityError::Csv`] naming the line that does not read.
pub fn from_csv(text: &str, source: &Path) -> Result<Vec<Row>> {
    let invalid = |reason: String| QualityError::Csv { path: source.to_owned(), reason };
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header = reader.headers().map_err(|e| invalid(e.to_string()))?.clone();
    let mut record = csv::StringRecord::new();
    let mut rows = Vec::new();
    while reader.read_record(&mut record).map_err(|e| invalid(e.to_string()))? {
        let line = record.position().map_or(0, csv::Position::line);
        let fields: Record =
            record.deserialize(Some(&header)).map_err(|e| invalid(field_error(&e, &header, line)))?;
        rows.push(fields.into_row(line).map_err(invalid)?);
    }
    Ok(rows)
}

/// `line 3, column calls: invalid digit found in string`: where a value did not read, by name.
fn field_error(error: &csv::Error, header: &csv::StringRecord, line: u64) -> String {
    match error.kind() {
        csv::ErrorKind::Deserialize { err, .. } => {
            match err.field().and_then(|index| header.get(usize::try_from(index).ok()?)) {
                Some(column) => format!("line {line}, column {column}: {}", err.kind()),
                None => format!("line {line}: {}", err.kind()),
            }
        }
        _ => format!("line {line}: {error}"),
    }
}

/// Reads a `results.csv`.
///
/// # Errors
/// [`QualityError::Input`] when the file cannot be read, [`QualityError::Csv`] when it is not
/// one.
pub fn read(path: &Path) -> Result<Vec<Row>> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| QualityError::Input { path: path.to_owned(), source })?;
    from_csv(&text, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::PATH_ESCALATED;
    use crate::report::tests::row;

    #[test]
    fn rows_read_back_as_written() {
        let rows = vec![
            row(Configuration::Single, "HumanEval/0", true, 1200),
            Row {
                server_tests: Some(ServerTests { passed: 2, failed: 1, errored: 0 }),
                path: PATH_ESCALATED.into(),
                detail: "failed: x == \"a,b\"\nnext line".into(),
                ..row(Configuration::Cascade, "HumanEval/0", false, 34_567)
            },
            Row {
                error: Some("DeadlineExceeded: deliberation timed out".into()),
                ..row(Configuration::CouncilStopOnTests, "HumanEval/1", false, 900_000)
            },
        ];
        let text = to_csv(&rows).unwrap();
        assert_eq!(from_csv(&text, Path::new("x.csv")).unwrap(), rows);
    }

    #[test]
    fn the_existing_columns_keep_their_place_and_quoting() {
        let text = to_csv(&[row(Configuration::CouncilWithTests, "HumanEval/3", false, 1500)]).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0], HEADER.join(","));
        assert_eq!(
            lines[1],
            "c,HumanEval/3,2,false,100,50,9,0,1500,false,,,,,\"failed: AssertionError, at \"\"x\"\"\",council,3,2"
        );
        assert_eq!(to_csv(&[]).unwrap(), format!("{}\n", HEADER.join(",")), "an empty run has its header");
    }

    #[test]
    fn a_csv_written_before_the_path_and_review_columns_still_reads() {
        // Written by the hand-made writer this file replaced.
        let old = "config,task_id,visible_tests,passed,prompt_tokens,completion_tokens,calls,calls_saved,wall_ms,\
                   server_tests_ran,server_tests_passed,server_tests_failed,server_tests_errored,error,detail\n\
                   a,HumanEval/0,3,true,120,40,1,0,2500,false,,,,,passed\n\
                   c,HumanEval/0,3,false,900,300,9,0,41000,true,2,1,0,,\"failed: AssertionError, at \"\"x\"\"\"\n";
        let rows = from_csv(old, Path::new("old.csv")).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].config, Configuration::Single);
        assert!(rows[0].passed && rows[0].server_tests.is_none() && rows[0].error.is_none());
        assert_eq!(rows[1].server_tests, Some(ServerTests { passed: 2, failed: 1, errored: 0 }));
        assert_eq!(rows[1].detail, "failed: AssertionError, at \"x\"");
        assert_eq!(rows[1].wall, Duration::from_millis(41_000));
        assert_eq!((rows[1].path.as_str(), rows[1].reviews, rows[1].graded_reviews), ("", 0, 0));
    }

    #[test]
    fn a_line_that_is_not_a_row_is_named() {
        let header = HEADER.join(",");
        let bad_config = format!("{header}\nz,HumanEval/0,0,true,1,1,1,0,1,false,,,,,passed,,0,0\n");
        let error = from_csv(&bad_config, Path::new("r.csv")).unwrap_err().to_string();
        assert_eq!(error, "r.csv: line 2: unknown configuration \"z\"");
        let bad_number = format!("{header}\na,HumanEval/0,zero,true,1,1,1,0,1,false,,,,,passed,,0,0\n");
        let error = from_csv(&bad_number, Path::new("r.csv")).unwrap_err().to_string();
        assert_eq!(error, "r.csv: line 2, column visible_tests: invalid digit found in string");
        let short = format!("{header}\na,HumanEval/0\n");
        let error = from_csv(&short, Path::new("r.csv")).unwrap_err().to_string();
        assert!(error.starts_with("r.csv: ") && error.contains("line: 2"), "{error}");
    }
}
