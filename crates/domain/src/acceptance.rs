//! Acceptance tests a task carries: code every proposal's code must pass.
//!
//! The domain only validates them (language known, size and count bounded); running them is an
//! adapter's job, inside a sandbox, and arrives back as a [`crate::checks::TestOutcome`].

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{DomainError, Result};

/// Largest acceptance-test code, in bytes.
pub const MAX_TEST_CODE_BYTES: usize = 64 * 1024;
/// Most tests (top-level `assert` statements plus `test_*` functions) a task may carry, so one
/// request cannot make every proposal run for ever.
pub const MAX_TEST_COUNT: usize = 200;

/// A language acceptance tests are written in; adapters plug in per language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TestLanguage {
    Python,
}

impl TestLanguage {
    /// Every supported language.
    pub const ALL: [TestLanguage; 1] = [TestLanguage::Python];

    /// # Errors
    /// Field `constraints.acceptance_tests.language` when not a supported language
    /// (case-insensitive).
    pub fn parse(raw: &str) -> Result<Self> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "python" => Ok(Self::Python),
            _ => Err(DomainError::invalid(
                "constraints.acceptance_tests.language",
                format!("unsupported language {:?}; expected one of: python", excerpt_name(raw)),
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Python => "python",
        }
    }
}

impl fmt::Display for TestLanguage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn excerpt_name(raw: &str) -> String {
    crate::excerpt::excerpt(raw, 32)
}

/// Test code in a language: plain asserts and/or `test_*` functions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptanceTests {
    language: TestLanguage,
    code: String,
}

impl AcceptanceTests {
    /// Validates tests as a client sends them.
    ///
    /// # Errors
    /// [`DomainError::Invalid`] naming `constraints.acceptance_tests.language` or
    /// `constraints.acceptance_tests.code` (blank, above 64 KiB, or more than
    /// [`MAX_TEST_COUNT`] tests, or no test at all).
    pub fn new(language: &str, code: String) -> Result<Self> {
        let language = TestLanguage::parse(language)?;
        const FIELD: &str = "constraints.acceptance_tests.code";
        if code.trim().is_empty() {
            return Err(DomainError::invalid(FIELD, "must not be blank"));
        }
        if code.len() > MAX_TEST_CODE_BYTES {
            return Err(DomainError::invalid(
                FIELD,
                format!("must be at most {MAX_TEST_CODE_BYTES} bytes, got {}", code.len()),
            ));
        }
        let count = count_tests(language, &code);
        if count == 0 && !code.contains("assert") {
            return Err(DomainError::invalid(
                FIELD,
                "holds no test: expected `assert` statements or `def test_*` functions",
            ));
        }
        if count > MAX_TEST_COUNT {
            return Err(DomainError::invalid(
                FIELD,
                format!("at most {MAX_TEST_COUNT} tests (asserts plus test functions), got {count}"),
            ));
        }
        Ok(Self { language, code })
    }

    pub fn language(&self) -> TestLanguage {
        self.language
    }

    pub fn code(&self) -> &str {
        &self.code
    }

    /// Top-level asserts plus test functions, as counted for the limit.
    pub fn count(&self) -> usize {
        count_tests(self.language, &self.code)
    }
}

/// Counts what a harness would run: top-level `assert` lines and `def test_*` functions.
fn count_tests(language: TestLanguage, code: &str) -> usize {
    match language {
        TestLanguage::Python => code
            .lines()
            .filter(|line| {
                line.starts_with("assert ")
                    || line.starts_with("assert(")
                    || line.starts_with("def test_")
                    || line.starts_with("async def test_")
            })
            .count(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_tests_are_accepted_case_insensitively() {
        let tests = AcceptanceTests::new(
            "Python",
            "from solution import add\nassert add(1, 2) == 3\n\ndef test_zero():\n    assert add(0, 0) == 0\n"
                .into(),
        )
        .unwrap();
        assert_eq!(tests.language(), TestLanguage::Python);
        assert_eq!(tests.count(), 2);
    }

    #[test]
    fn each_bad_input_names_its_field() {
        assert_eq!(
            AcceptanceTests::new("rust", "assert 1".into()).unwrap_err().to_string(),
            "constraints.acceptance_tests.language: unsupported language \"rust\"; expected one of: python"
        );
        assert_eq!(
            AcceptanceTests::new("python", " \n".into()).unwrap_err().to_string(),
            "constraints.acceptance_tests.code: must not be blank"
        );
        assert!(
            AcceptanceTests::new("python", "x = 1\n".into())
                .unwrap_err()
                .to_string()
                .starts_with("constraints.acceptance_tests.code: holds no test")
        );
        let huge = format!("assert True\n#{}", "x".repeat(MAX_TEST_CODE_BYTES));
        assert!(
            AcceptanceTests::new("python", huge)
                .unwrap_err()
                .to_string()
                .starts_with("constraints.acceptance_tests.code: must be at most 65536 bytes")
        );
        let many = "assert True\n".repeat(MAX_TEST_COUNT + 1);
        assert_eq!(
            AcceptanceTests::new("python", many).unwrap_err().to_string(),
            "constraints.acceptance_tests.code: at most 200 tests (asserts plus test functions), got 201"
        );
    }
}
