//! Control characters in text this process does not own — a task, a model's answer, a
//! reason a server gave — on their way to a person's terminal or to a log line.
//!
//! A terminal acts on them: ESC and the 8-bit CSI (U+009B) start sequences that retitle the
//! window, clear the screen, move the cursor or answer back; a carriage return rewrites the
//! line it ends; a newline in a log field starts a line the reader takes for the logger's own.
//! Unicode's bidirectional overrides and isolates reorder what follows them on screen, so the
//! text read is not the text stored — the "Trojan Source" attack (CVE-2021-42574).
//!
//! Two ways to neutralise them: [`printable`] drops them, for a person reading results (who
//! wants the words, not the codes); [`Escaped`] writes each as a visible escape (`\n`,
//! `\u{1b}`), for a log, where the evidence must stay. [`json_escaped`] makes JSON text that
//! shows on a terminal carry them as `\u` escapes, which read back as the same string.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

/// Whether a terminal may act on `c` rather than show it: the C0 controls (newline and tab
/// among them), DEL, the C1 controls (U+0080–U+009F, which some terminals honour as 8-bit
/// escapes), and the bidirectional embeddings, overrides and isolates (U+202A–U+202E,
/// U+2066–U+2069: the set rustc's `text_direction_codepoint_in_literal` lint refuses).
pub fn is_control(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` without the characters a terminal acts on, except newline and tab, which lay out
/// text rather than take over the screen. A carriage return goes too: alone it rewrites the
/// line it ends, and without it `\r\n` is `\n`. Borrowed when there is nothing to drop.
pub fn printable(text: &str) -> Cow<'_, str> {
    let dropped = |c: char| is_control(c) && !matches!(c, '\n' | '\t');
    if text.contains(dropped) {
        Cow::Owned(text.chars().filter(|c| !dropped(*c)).collect())
    } else {
        Cow::Borrowed(text)
    }
}

/// A writer that passes text on with every [`is_control`] character (newline and tab
/// included) written as its Rust escape: `\n`, `\t`, `\u{1b}`, `\u{202e}`. A line written
/// through it stays one line, and shows the codes it was sent instead of obeying them.
#[derive(Debug)]
pub struct Escaped<W>(pub W);

impl<W: fmt::Write> fmt::Write for Escaped<W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let mut rest = text;
        while let Some(at) = rest.find(is_control) {
            self.0.write_str(&rest[..at])?;
            let mut chars = rest[at..].chars();
            if let Some(c) = chars.next() {
                write!(self.0, "{}", c.escape_debug())?;
            }
            rest = chars.as_str();
        }
        self.0.write_str(rest)
    }
}

/// `json` — text as `serde_json` writes it — with the [`is_control`] characters it leaves raw
/// (DEL, C1, the bidirectional controls; it escapes C0 itself) written as `\uXXXX`. The
/// document reads back to the same values. Such characters can only stand inside a JSON string,
/// where a `\u` escape means that very character, and never after a lone backslash, which
/// `serde_json` always doubles.
pub fn json_escaped(json: &str) -> Cow<'_, str> {
    if !json.contains(is_control) {
        return Cow::Borrowed(json);
    }
    let mut escaped = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        // Newlines and indentation between tokens are the document's own layout.
        if is_control(c) && !matches!(c, '\n' | '\t' | '\r') {
            let _ = write!(escaped, "\\u{:04x}", u32::from(c));
        } else {
            escaped.push(c);
        }
    }
    Cow::Owned(escaped)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every family of character a terminal acts on, between words that must survive.
    const HOSTILE: &str = "a\x1b]0;pwned\x07b\x1b[2Jc\rd\u{9b}31me\u{7f}f\u{202e}g\u{2066}h\u{0}i";

    #[test]
    fn printable_drops_every_control_but_keeps_the_words_newlines_and_tabs() {
        assert_eq!(printable(HOSTILE), "a]0;pwnedb[2Jcd31mefghi");
        assert_eq!(printable("one\r\ntwo\tthree\n"), "one\ntwo\tthree\n");
        assert_eq!(printable("fußgänger — ok ✓ 日本"), "fußgänger — ok ✓ 日本");
    }

    #[test]
    fn printable_borrows_clean_text() {
        assert!(matches!(printable("plain text\n\twith layout"), Cow::Borrowed(_)));
    }

    #[test]
    fn the_bidirectional_overrides_and_isolates_are_controls_but_marks_and_letters_are_not() {
        for c in ['\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{202e}', '\u{2066}', '\u{2069}'] {
            assert!(is_control(c), "{c:?}");
        }
        for c in ['\u{2029}', '\u{206a}', 'a', 'é', 'ש', ' '] {
            assert!(!is_control(c), "{c:?}");
        }
        assert!(is_control('\u{80}') && is_control('\u{9f}') && !is_control('\u{a0}'));
    }

    #[test]
    fn escaped_text_stays_on_one_line_and_shows_its_codes() {
        let task = "x\n2026-12-07T00:00:00Z INFO forged\x1b[2J\u{9b}\u{202e}\t";
        let mut line = String::new();
        write!(Escaped(&mut line), "task={task}").unwrap();
        assert_eq!(line, r"task=x\n2026-12-07T00:00:00Z INFO forged\u{1b}[2J\u{9b}\u{202e}\t");
        assert!(!line.contains(is_control));
    }

    #[test]
    fn json_escaped_reads_back_as_the_same_document() {
        let value = serde_json::json!({"content": HOSTILE, "list": ["\u{85}", "\\\u{9b}"]});
        let json = serde_json::to_string_pretty(&value).unwrap();
        let escaped = json_escaped(&json);
        assert!(!escaped.chars().any(|c| is_control(c) && c != '\n'), "{escaped}");
        assert!(escaped.contains(r"\u009b31m") && escaped.contains(r"\u202e"), "{escaped}");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&escaped).unwrap(), value);
    }
}
