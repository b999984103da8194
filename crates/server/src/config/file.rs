//! The configuration file (`ORCHESTRATOR_CONFIG`): read, checked as TOML, and located in.
//!
//! Its errors name the file, the line and the key — never the text of the line. A file named
//! by mistake may be anything (the tokens file, a key file), and a parser's error usually
//! quotes the offending line: that would print a secret on a terminal or into a log.

use std::ops::Range;

use toml::de::{DeTable, DeValue};

use crate::error::{Result, ServerError};

/// A configuration file read into memory, its TOML syntax checked.
#[derive(Debug)]
pub(super) struct ConfigFile {
    path: String,
    text: String,
}

impl ConfigFile {
    /// Reads `path` and checks its syntax.
    ///
    /// # Errors
    /// [`ServerError::ConfigFile`] when it cannot be read, or is not TOML: the reason names
    /// the line and column and says what the parser expected, quoting none of the file.
    pub(super) fn read(path: &str) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ServerError::ConfigFile { path: path.to_owned(), reason: e.to_string() })?;
        let file = Self { path: path.to_owned(), text };
        if let Err(error) = DeTable::parse(&file.text) {
            let at = error.span().map_or_else(String::new, |span| file.position(span.start) + ": ");
            return Err(ServerError::ConfigFile {
                path: file.path,
                reason: format!("not valid TOML: {at}{}", first_line(error.message())),
            });
        }
        Ok(file)
    }

    pub(super) fn path(&self) -> &str {
        &self.path
    }

    pub(super) fn text(&self) -> &str {
        &self.text
    }

    /// `line L, column C` of byte `offset`.
    fn position(&self, offset: usize) -> String {
        let before = self.text.get(..offset).unwrap_or(&self.text);
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        format!("line {line}, column {column}")
    }

    /// Where the dotted `key` (`profiles.default.max_tokens`) is set, as `<path>:<line>`, and
    /// its value's text when it is a string (to keep it out of messages); `None` when the
    /// file does not set it.
    pub(super) fn locate(&self, key: &str) -> Option<(String, Option<String>)> {
        let document = DeTable::parse(&self.text).ok()?;
        let (span, value) = find(document.get_ref(), key.split('.'))?;
        let line = self.text.get(..span.start)?.matches('\n').count() + 1;
        Some((format!("{}:{line}", self.path), value))
    }
}

/// The span of the key `path` names in `table`, and its value when a string.
fn find<'a>(
    table: &DeTable<'_>,
    mut path: impl Iterator<Item = &'a str>,
) -> Option<(Range<usize>, Option<String>)> {
    let segment = path.next()?;
    let (key, value) = table.iter().find(|(key, _)| key.get_ref().as_ref() == segment)?;
    match value.get_ref() {
        DeValue::Table(inner) => find(inner, path).or_else(|| Some((key.span(), None))),
        DeValue::String(text) => Some((key.span(), Some(text.to_string()))),
        _ => Some((key.span(), None)),
    }
}

/// A parser message's first line: later lines may hold context.
fn first_line(message: &str) -> &str {
    message.lines().next().unwrap_or_default().trim()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path.to_str().unwrap().to_owned())
    }

    #[test]
    fn a_file_that_is_not_toml_is_named_by_line_without_quoting_it() {
        let secrets = [
            "# tokens\nci-bot 0123456789abcdef-SECRET-ci\nops 0123456789abcdef-SECRET-ops admin\n",
            "listen = \"127.0.0.1:1\"\nsk-SECRET-live-0123456789\n",
            "[profiles.default]\nbase_url = \"http://x/v1\nmodel = \"SECRET\"\n",
            "max_running = 3 SECRET\n",
        ];
        for (text, line) in secrets.iter().zip([2, 2, 2, 1]) {
            let (_dir, path) = write(text);
            let error = ConfigFile::read(&path).unwrap_err().to_string();
            assert!(error.contains(&path), "{error}");
            assert!(error.contains(&format!("line {line}, column")), "{text:?}: {error}");
            assert!(!error.contains("SECRET") && !error.contains("0123456789"), "{error}");
            assert!(!error.contains('\n'), "one line: {error}");
        }
    }

    #[test]
    fn keys_are_located_by_line_with_their_string_value() {
        let (_dir, path) =
            write("listen = \"127.0.0.1:1\"\n\n[profiles.default]\nmodel = \"m\"\nmax_tokens = 9\n");
        let file = ConfigFile::read(&path).unwrap();
        assert_eq!(file.locate("listen"), Some((format!("{path}:1"), Some("127.0.0.1:1".to_owned()))));
        assert_eq!(file.locate("profiles.default.max_tokens"), Some((format!("{path}:5"), None)));
        assert_eq!(file.locate("profiles.default.model").unwrap().0, format!("{path}:4"));
        assert_eq!(file.locate("nats_url"), None);
    }
}
