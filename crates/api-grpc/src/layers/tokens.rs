//! The tokens file: who may call the service, each token held only as a SHA-256 digest.
//!
//! One `name token [admin]` a line; `#` starts a comment, blank lines are skipped. A name may
//! appear on several lines, so a rotated token and its successor are valid at once. Errors name
//! the line, never the token.

use std::fmt;

use orchestrator_application::Caller;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Shortest accepted token: 16 characters leave no room for guessing.
pub const MIN_TOKEN_CHARS: usize = 16;
/// Longest accepted principal name.
pub const MAX_NAME_CHARS: usize = 64;

/// A malformed tokens file; the message names the line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct TokenFileError {
    pub line: usize,
    pub reason: String,
}

#[derive(Clone)]
struct TokenEntry {
    name: String,
    digest: [u8; 32],
    admin: bool,
}

/// The accepted tokens, hashed.
#[derive(Clone, Default)]
pub struct TokenSet {
    entries: Vec<TokenEntry>,
}

impl fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.entries.iter().map(|e| e.name.as_str()).collect();
        f.debug_struct("TokenSet").field("principals", &names).finish()
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl TokenSet {
    /// Parses a tokens file.
    ///
    /// # Errors
    /// A [`TokenFileError`] naming the first bad line: a missing token, a token shorter than
    /// 16 characters, a name outside `[A-Za-z0-9._:@-]{1,64}` or reserved (`anonymous`, in any
    /// case: see [`Caller::is_reserved_name`]), a third field other than
    /// `admin`, a token listed twice, or a file without any token.
    pub fn parse(text: &str) -> Result<Self, TokenFileError> {
        let mut entries: Vec<TokenEntry> = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let error = |reason: &str| Err(TokenFileError { line, reason: reason.to_owned() });
            let content = raw.split('#').next().unwrap_or_default().trim();
            if content.is_empty() {
                continue;
            }
            let fields: Vec<&str> = content.split_whitespace().collect();
            let (name, token, admin) = match fields.as_slice() {
                [name, token] => (*name, *token, false),
                [name, token, "admin"] => (*name, *token, true),
                [_, _, _] => return error("the third field may only be `admin`"),
                [_] => return error("expected `name token [admin]`, found a name without a token"),
                _ => return error("expected `name token [admin]`"),
            };
            let name_ok = name.len() <= MAX_NAME_CHARS
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '@' | '-'));
            if !name_ok {
                return error("the name must be 1 to 64 of A-Z a-z 0-9 . _ : @ -");
            }
            if Caller::is_reserved_name(name) {
                return error(
                    "the name `anonymous` is reserved for callers of a server without authentication",
                );
            }
            if token.chars().count() < MIN_TOKEN_CHARS {
                return error("the token must be at least 16 characters");
            }
            let digest = digest(token);
            if entries.iter().any(|e| bool::from(e.digest.ct_eq(&digest))) {
                return error("this token is listed twice");
            }
            entries.push(TokenEntry { name: name.to_owned(), digest, admin });
        }
        if entries.is_empty() {
            return Err(TokenFileError { line: 0, reason: "the file lists no token".to_owned() });
        }
        Ok(Self { entries })
    }

    /// How many tokens are accepted.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The caller a presented token identifies, if any. Every entry is compared, in constant
    /// time, whatever matches: the time taken says nothing about which token is close.
    pub fn authenticate(&self, token: &str) -> Option<Caller> {
        let presented = digest(token);
        let mut found: Option<&TokenEntry> = None;
        for entry in &self.entries {
            if bool::from(entry.digest.ct_eq(&presented)) {
                found = Some(entry);
            }
        }
        found.map(|e| Caller::new(e.name.clone(), e.admin))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# who may call\nci-bot  0123456789abcdef-ci\nops 0123456789abcdef-ops admin\n\nci-bot 0123456789abcdef-ci2 # rotated\n";

    #[test]
    fn tokens_identify_their_principal_and_scope() {
        let tokens = TokenSet::parse(FILE).unwrap();
        assert_eq!(tokens.len(), 3);
        assert_eq!(tokens.authenticate("0123456789abcdef-ci"), Some(Caller::new("ci-bot", false)));
        assert_eq!(tokens.authenticate("0123456789abcdef-ci2"), Some(Caller::new("ci-bot", false)));
        assert_eq!(tokens.authenticate("0123456789abcdef-ops"), Some(Caller::new("ops", true)));
        assert_eq!(tokens.authenticate("0123456789abcdef-cx"), None);
        assert_eq!(tokens.authenticate(""), None);
    }

    #[test]
    fn bad_lines_are_named_and_tokens_never_echoed() {
        let cases = [
            ("alice\n", 1, "found a name without a token"),
            ("alice short\n", 1, "at least 16 characters"),
            ("\nalice 0123456789abcdefgh root\n", 2, "may only be `admin`"),
            ("al/ice 0123456789abcdefgh\n", 1, "the name must be"),
            ("a 0123456789abcdefgh\nb 0123456789abcdefgh\n", 2, "listed twice"),
            ("# nothing\n", 0, "lists no token"),
            ("ops 0123456789abcdefgh admin\nAnonymous 0123456789abcdefgX\n", 2, "`anonymous` is reserved"),
            ("anonymous 0123456789abcdefgh admin\n", 1, "`anonymous` is reserved"),
        ];
        for (text, line, reason) in cases {
            let err = TokenSet::parse(text).unwrap_err();
            assert_eq!(err.line, line, "{text:?}");
            assert!(err.reason.contains(reason), "{text:?}: {err}");
            assert!(!err.to_string().contains("0123456789abcdefgh"), "{err}");
        }
    }

    #[test]
    fn debug_output_names_principals_not_tokens() {
        let debug = format!("{:?}", TokenSet::parse(FILE).unwrap());
        assert!(debug.contains("ops") && !debug.contains("0123456789abcdef"), "{debug}");
    }
}
