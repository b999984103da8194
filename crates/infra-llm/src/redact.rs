//! Redaction: the one place where text that came from a model server is made safe to repeat.
//!
//! A backend's answer is data, not a message we can quote. Proxies and misconfigured servers
//! echo the request they received — `Authorization: Bearer <key>` included — in 4xx and 5xx
//! bodies, and sometimes in the model's own text. No body reaches an
//! [`AgentError`](orchestrator_application::ports::AgentError), which reaches gRPC clients and
//! the database; whatever else of it leaves this crate (a log line, a proposal) goes through a
//! [`Redactor`] first:
//!
//! * [`Redactor::excerpt`] — for **error bodies and error messages in our own debug logs**
//!   (clients are never shown a body: see [`crate::client`]): at most [`EXCERPT_CHARS`]
//!   characters on one line, JSON `\uXXXX` escapes resolved, control and invisible characters
//!   removed, and redacted: the profile's configured API key and any fragment of it of
//!   [`MIN_KEY_FRAGMENT`] or more bytes (servers echo masked keys such as `sk-proj-abcd…wxyz`),
//!   forwards or reversed, and also where its letters and digits are spread out by spaces or
//!   punctuation (`s k - t e s t`); everything that looks like a credential (`sk-…`,
//!   `Bearer …`, `Authorization:` header values, `api_key=`/`"api-key":` values, JWT-like
//!   `xxx.yyy.zzz`, runs of 24 or more base64/hex-ish characters mixing letters and digits),
//!   URL credentials (`user:pw@`), every `http(s)://` URL and the model server's host name.
//!   Other encodings (base64 of the key, percent-encoding, HTML entities) are not undone:
//!   redaction is the second line of defence, not quoting bodies to clients is the first.
//! * [`Redactor::model_text`] — for **the model's answer** (proposals, critiques, rationales):
//!   only the configured key and its fragments, forwards or reversed, are replaced. The text is
//!   the product we return, and the generic heuristics would mangle legitimate content (hashes,
//!   base64 test vectors, URLs in a proposal); but a proxy that echoes the request into the
//!   completion must not get the key into a stored proposal.
//! * [`Redactor::url`] — a URL for our own debug logs, without user info, query or fragment.
//!
//! Redaction replaces with [`REDACTED`]; it errs on the side of hiding too much.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::LazyLock;

use regex::{Captures, Regex};
use reqwest::Url;

/// What replaces a redacted span.
pub const REDACTED: &str = "[REDACTED]";
/// Longest excerpt of a backend body or error quoted in an error message, in characters.
pub const EXCERPT_CHARS: usize = 160;
/// Longest server-sent name (a model id) shown in a hint, in characters.
pub const MAX_NAME_CHARS: usize = 80;
/// Shortest piece of the configured key that is redacted on its own; a key shorter than this
/// is redacted only where it appears whole.
pub const MIN_KEY_FRAGMENT: usize = 8;
/// How much of a body is examined for an excerpt: far more than the excerpt shows, so a secret
/// straddling the cut is still seen whole.
const EXCERPT_WINDOW_BYTES: usize = 8 * 1024;
const _: () = assert!(MIN_KEY_FRAGMENT == std::mem::size_of::<u64>(), "key windows are u64s");

/// Redacts what one model profile's server may echo back (see the module docs).
///
/// Holds the profile's key as the set of its [`MIN_KEY_FRAGMENT`]-byte windows, which is as
/// secret as the key itself: `Debug` shows none of it.
#[derive(Clone, Default)]
pub(crate) struct Redactor {
    /// Every `MIN_KEY_FRAGMENT`-byte window of the key and of the key reversed, as big-endian
    /// `u64`s, sorted. (A window is exactly one `u64`, which is what makes the rolling scan in
    /// `key_spans` work.)
    key_windows: Vec<u64>,
    /// The same windows of the key's ASCII letters and digits alone (forwards and reversed), for
    /// echoes that spread them out with spaces or punctuation; empty when there are fewer than
    /// `MIN_KEY_FRAGMENT` of them.
    spread_windows: Vec<u64>,
    /// A key shorter than `MIN_KEY_FRAGMENT` bytes, matched whole.
    short_key: Option<String>,
    /// The model server's host (and host:port), matched as whole words.
    host: Option<Regex>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let has_key = !self.key_windows.is_empty() || self.short_key.is_some();
        f.debug_struct("Redactor").field("has_key", &has_key).finish_non_exhaustive()
    }
}

impl Redactor {
    /// A redactor for a profile whose key is `key` (if any) and whose server is `server`.
    pub(crate) fn new(key: Option<&str>, server: Option<&Url>) -> Self {
        let key = key.map(str::trim).filter(|k| !k.is_empty());
        let (key_windows, short_key) = match key {
            Some(key) if key.len() >= MIN_KEY_FRAGMENT => (windows_both_ways(key.as_bytes()), None),
            Some(key) => (Vec::new(), Some(key.to_owned())),
            None => (Vec::new(), None),
        };
        let letters_and_digits: Vec<u8> =
            key.map(|k| k.bytes().filter(u8::is_ascii_alphanumeric).collect()).unwrap_or_default();
        let spread_windows = windows_both_ways(&letters_and_digits);
        let host = server.and_then(Url::host_str).filter(|h| !h.is_empty()).and_then(|host| {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let edge = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
            let start = if edge(host.chars().next()) { r"(?-u:\b)" } else { "" };
            let end = if edge(host.chars().last()) { r"(?-u:\b)" } else { "" };
            Regex::new(&format!(r"(?i){start}\[?{}\]?{end}(?::\d+)?", regex::escape(host))).ok()
        });
        Self { key_windows, spread_windows, short_key, host }
    }

    /// `text` with the configured key and its fragments (forwards or reversed) replaced;
    /// nothing else is touched.
    pub(crate) fn model_text(&self, text: &str) -> String {
        self.without_key(text, false)
    }

    /// `text` with the key and its fragments replaced; with `spread`, also where their letters
    /// and digits are spread out (too eager for a model's answer, right for an error body).
    fn without_key(&self, text: &str, spread: bool) -> String {
        let mut spans = self.key_spans(text);
        if spread {
            spans.extend(self.spread_key_spans(text));
        }
        if let Some(short) = &self.short_key {
            spans.extend(text.match_indices(short.as_str()).map(|(at, k)| (at, at + k.len())));
        }
        spans.sort_unstable();
        replace_spans(text, &spans)
    }

    /// Whether `text` holds the configured key or a fragment of it.
    pub(crate) fn holds_key(&self, text: &str) -> bool {
        !self.key_spans(text).is_empty()
            || self.short_key.as_deref().is_some_and(|short| text.contains(short))
    }

    /// A short, single-line, redacted excerpt of a backend body (see the module docs); empty
    /// when the body holds nothing printable.
    pub(crate) fn excerpt(&self, body: &[u8]) -> String {
        let window = &body[..body.len().min(EXCERPT_WINDOW_BYTES)];
        self.excerpt_text(&String::from_utf8_lossy(window))
    }

    /// [`Redactor::excerpt`] of a text, e.g. an error message that may quote a body.
    pub(crate) fn excerpt_text(&self, text: &str) -> String {
        let mut cut = text.len().min(EXCERPT_WINDOW_BYTES);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        let message = self.message(&text[..cut]);
        let short = match message.char_indices().nth(EXCERPT_CHARS) {
            Some((cut, _)) => format!("{}…", &message[..cut]),
            None => message,
        };
        // Cutting only removes text, but a key that happened to contain the ellipsis could be
        // re-formed by it: one last pass costs little.
        self.without_key(&short, true)
    }

    /// `text` redacted as an excerpt is, on one line, but not shortened: for our own logs.
    pub(crate) fn message(&self, text: &str) -> String {
        // Escapes resolved first, so an escaped key is seen as the key; then the key, so no
        // pattern can cut it into pieces that no longer look like it.
        let redacted = self.patterns(&self.without_key(&visible(&unescape_json(text)), true));
        let one_line = redacted.split_whitespace().collect::<Vec<_>>().join(" ");
        // The patterns only remove text, but a key that happened to contain the marker could
        // be re-formed around it.
        self.without_key(&one_line, true)
    }

    /// A short name a server sent (a model id) as logs and hints may show it: the key
    /// redacted, on one line, invisible characters removed, at most [`MAX_NAME_CHARS`]
    /// characters. Unlike an excerpt, long ids with digits are kept: they are what operators
    /// need to read.
    pub(crate) fn name(&self, text: &str) -> String {
        let one_line = visible(text).split_whitespace().collect::<Vec<_>>().join(" ");
        let short = match one_line.char_indices().nth(MAX_NAME_CHARS) {
            Some((cut, _)) => format!("{}…", &one_line[..cut]),
            None => one_line,
        };
        self.model_text(&short)
    }

    /// `url` as our own debug logs may show it: no user info, query or fragment.
    pub(crate) fn url(url: &Url) -> String {
        let mut shown = url.clone();
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        shown.set_query(None);
        shown.set_fragment(None);
        shown.to_string()
    }

    /// Byte spans of `text` covered by a `MIN_KEY_FRAGMENT`-byte window of the key, merged.
    fn key_spans(&self, text: &str) -> Vec<(usize, usize)> {
        let mut spans: Vec<(usize, usize)> = Vec::new();
        if self.key_windows.is_empty() {
            return spans;
        }
        let mut rolling = 0u64;
        for (i, byte) in text.bytes().enumerate() {
            rolling = (rolling << 8) | u64::from(byte);
            if i + 1 < MIN_KEY_FRAGMENT || self.key_windows.binary_search(&rolling).is_err() {
                continue;
            }
            let (start, end) = (i + 1 - MIN_KEY_FRAGMENT, i + 1);
            match spans.last_mut() {
                Some(last) if last.1 >= start => last.1 = end,
                _ => spans.push((start, end)),
            }
        }
        spans
    }

    /// Byte spans of `text` whose ASCII letters and digits, the rest skipped, run through a
    /// `MIN_KEY_FRAGMENT`-character window of the key's own letters and digits: `s k - t e s t`
    /// as much as `sk-test`. Each span runs from the window's first character to its last.
    fn spread_key_spans(&self, text: &str) -> Vec<(usize, usize)> {
        let mut spans: Vec<(usize, usize)> = Vec::new();
        if self.spread_windows.is_empty() {
            return spans;
        }
        let mut rolling = 0u64;
        // Where the last `MIN_KEY_FRAGMENT` letters and digits are, as a ring.
        let mut starts = [0usize; MIN_KEY_FRAGMENT];
        let mut seen = 0usize;
        for (at, byte) in text.bytes().enumerate() {
            if !byte.is_ascii_alphanumeric() {
                continue;
            }
            rolling = (rolling << 8) | u64::from(byte);
            starts[seen % MIN_KEY_FRAGMENT] = at;
            seen += 1;
            if seen < MIN_KEY_FRAGMENT || self.spread_windows.binary_search(&rolling).is_err() {
                continue;
            }
            let (start, end) = (starts[seen % MIN_KEY_FRAGMENT], at + 1);
            match spans.last_mut() {
                Some(last) if last.1 >= start => last.1 = end,
                _ => spans.push((start, end)),
            }
        }
        spans
    }

    /// Applies the credential-shaped patterns and the host name.
    fn patterns(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for (pattern, replacement) in PATTERNS.iter() {
            if let std::borrow::Cow::Owned(replaced) = pattern.replace_all(&text, *replacement) {
                text = replaced;
            }
        }
        if let std::borrow::Cow::Owned(replaced) = LONG_RUN.replace_all(&text, |c: &Captures<'_>| {
            let run = &c[0];
            let letters = run.bytes().any(|b| b.is_ascii_alphabetic());
            let digits = run.bytes().any(|b| b.is_ascii_digit());
            if letters && digits { REDACTED.to_owned() } else { run.to_owned() }
        }) {
            text = replaced;
        }
        if let Some(host) = &self.host
            && let std::borrow::Cow::Owned(replaced) = host.replace_all(&text, REDACTED)
        {
            text = replaced;
        }
        text
    }
}

/// Credential-shaped text and what replaces it, applied in order. Named keys keep their name
/// so an excerpt still says what was there. Word boundaries are ASCII (`(?-u:\b)`): a Unicode
/// `\b` keeps the regex engine off its fast path on non-ASCII text (about 50 ms per excerpt of
/// 2 KiB of mojibake in a debug build, against under 1 ms).
static PATTERNS: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    let rules: [(&str, &'static str); 8] = [
        // Credentials in a URL, before the URL rule hides the rest of it.
        (r"(?i)(?-u:\b)([a-z][a-z0-9+.\-]*://)[^/\s@]+@", "${1}[REDACTED]@"),
        // Header values, as raw headers or JSON: everything to the end of the line or string.
        (
            r#"(?i)(?-u:\b)((?:proxy-)?authorization|x-api-key|api-key|cookie|set-cookie)(["']?\s*[:=]\s*["']?)[^\r\n"'\[][^\r\n"']*"#,
            "$1$2[REDACTED]",
        ),
        // key = value / "key": "value" pairs.
        (
            r#"(?i)(api[_-]?key|access[_-]?token|refresh[_-]?token|auth[_-]?token|client[_-]?secret|secret|password|passwd|(?-u:\b)token)(["']?\s*[:=]\s*["']?)[^\s"',;&}\[\]]+"#,
            "$1$2[REDACTED]",
        ),
        // Query parameters that carry credentials.
        (r#"(?i)([?&](?:key|token|sig|signature)=)[^&\s"']+"#, "${1}[REDACTED]"),
        (r#"(?i)(?-u:\b)bearer\s+[^\s"',;\[][^\s"',;]*"#, "Bearer [REDACTED]"),
        (r"(?-u:\b)sk-[A-Za-z0-9_\-*.]{4,}", "[REDACTED]"),
        // JWT-like: three dot-separated base64url segments.
        (r"(?-u:\b)[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}(?-u:\b)", "[REDACTED]"),
        // Any URL left: it names the model server or something behind it.
        (r#"(?i)(?-u:\b)https?://[^\s"'<>]+"#, "[REDACTED URL]"),
    ];
    rules.into_iter().map(|(p, r)| (Regex::new(p).expect("literal regex is valid"), r)).collect()
});

/// Runs of base64/hex-ish characters long enough to be a secret; redacted when they mix
/// letters and digits (so long words and identifiers survive).
static LONG_RUN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[A-Za-z0-9+/_\-]{24,}={0,2}").expect("literal regex is valid"));

/// Every `MIN_KEY_FRAGMENT`-byte window of `bytes` and of `bytes` reversed, sorted and
/// deduplicated; empty when `bytes` is shorter than a window.
fn windows_both_ways(bytes: &[u8]) -> Vec<u64> {
    let reversed: Vec<u8> = bytes.iter().rev().copied().collect();
    let windows: BTreeSet<u64> =
        bytes.windows(MIN_KEY_FRAGMENT).chain(reversed.windows(MIN_KEY_FRAGMENT)).map(window).collect();
    windows.into_iter().collect()
}

/// `text` with JSON `\uXXXX` escapes (surrogate pairs included) resolved, so that a key sent
/// back escaped character by character is redacted like the key; an unpaired surrogate becomes
/// U+FFFD. Anything else, other escapes included, is left as it is.
fn unescape_json(text: &str) -> String {
    if !text.contains("\\u") {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut units: Vec<u16> = Vec::new();
    let mut rest = text;
    loop {
        let unit = rest
            .strip_prefix("\\u")
            .and_then(|r| r.get(..4))
            .filter(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|hex| u16::from_str_radix(hex, 16).ok());
        if let Some(unit) = unit {
            units.push(unit);
            rest = &rest[6..];
            continue;
        }
        out.extend(char::decode_utf16(units.drain(..)).map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER)));
        let Some(c) = rest.chars().next() else { return out };
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
}

/// `MIN_KEY_FRAGMENT` bytes as a big-endian integer, as the rolling scan builds them.
fn window(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
}

/// `text` with invisible format characters (zero-width, bidi overrides, BOM) deleted — so they
/// cannot split a secret past the redaction and rejoin it later — and other control
/// characters but newlines turned into spaces.
fn visible(text: &str) -> String {
    text.chars()
        .filter(|c| !matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}'))
        .map(|c| if c.is_control() && c != '\n' { ' ' } else { c })
        .collect()
}

/// `text` with each byte span replaced by [`REDACTED`]. Spans are sorted by start and may
/// overlap (overlapping ones become one replacement); they are widened to character boundaries.
fn replace_spans(text: &str, spans: &[(usize, usize)]) -> String {
    if spans.is_empty() {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for &(start, end) in spans {
        let (mut start, mut end) = (start.min(text.len()), end.min(text.len()));
        while !text.is_char_boundary(start) {
            start -= 1;
        }
        while !text.is_char_boundary(end) {
            end += 1;
        }
        if end <= copied {
            continue;
        }
        if start < copied {
            // Overlaps the previous replacement: extend it.
            copied = end;
            continue;
        }
        out.push_str(&text[copied..start]);
        out.push_str(REDACTED);
        copied = end;
    }
    out.push_str(&text[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const KEY: &str = "sk-live-4f9a8b7c6d5e4f3a2b1c";

    fn redactor() -> Redactor {
        Redactor::new(Some(KEY), Some(&Url::parse("http://models.internal:8089/v1").unwrap()))
    }

    #[test]
    fn the_configured_key_is_redacted_from_model_text_and_nothing_else_is() {
        let r = redactor();
        let text =
            format!("curl -H 'Authorization: Bearer {KEY}' # sha 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b");
        assert_eq!(
            r.model_text(&text),
            "curl -H 'Authorization: Bearer [REDACTED]' # sha 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b"
        );
        assert_eq!(r.model_text("fn main() {}"), "fn main() {}");
        assert!(r.holds_key(&text) && !r.holds_key("fn main() {}"));
    }

    #[test]
    fn prefixes_suffixes_and_inner_fragments_of_eight_bytes_are_redacted() {
        let r = redactor();
        for echoed in [&KEY[..8], &KEY[..14], &KEY[KEY.len() - 8..], &KEY[5..17]] {
            let text = format!("Incorrect API key provided: {echoed}****");
            let shown = r.model_text(&text);
            assert!(!shown.contains(echoed), "{echoed} survived in {shown}");
        }
        // Seven bytes are not a fragment.
        assert_eq!(r.model_text(&KEY[KEY.len() - 7..]), &KEY[KEY.len() - 7..]);
    }

    #[test]
    fn a_short_key_is_redacted_where_it_appears_whole() {
        let r = Redactor::new(Some("abc12"), None);
        assert_eq!(r.model_text("key abc12 and abc1"), "key [REDACTED] and abc1");
    }

    #[test]
    fn without_a_key_model_text_is_unchanged() {
        let r = Redactor::new(None, None);
        assert_eq!(r.model_text("Bearer sk-whatever-1234567890"), "Bearer sk-whatever-1234567890");
        assert!(format!("{r:?}").contains("has_key: false"));
    }

    #[test]
    fn debug_shows_no_key_material() {
        let text = format!("{:?}", redactor());
        assert!(text.contains("has_key: true"), "{text}");
        assert!(!text.contains("sk-live") && !text.contains("4f9a"), "{text}");
    }

    #[test]
    fn echoed_request_headers_are_redacted_from_excerpts() {
        let r = Redactor::new(None, None);
        let body = "bad request; you sent:\nPOST /v1/chat/completions\nauthorization: Bearer abc.def\n\
                    x-api-key: k-123\ncontent-type: application/json\n";
        let shown = r.excerpt(body.as_bytes());
        assert!(!shown.contains("abc.def") && !shown.contains("k-123"), "{shown}");
        assert!(shown.contains("authorization: [REDACTED]"), "{shown}");
        assert!(shown.contains("x-api-key: [REDACTED]"), "{shown}");
        assert!(shown.contains("content-type: application/json"), "{shown}");
    }

    #[test]
    fn credential_shaped_text_is_redacted_from_excerpts() {
        let r = Redactor::new(None, None);
        let cases = [
            ("token sk-proj-AbCdEf123456 rejected", "sk-proj-AbCdEf123456"),
            ("header was Bearer eyJhbGciOi", "eyJhbGciOi"),
            (r#"{"api_key": "hunter2-secret"}"#, "hunter2-secret"),
            ("api-key=plain_value_here&x=1", "plain_value_here"),
            ("GET /v1/models?key=AIzaSyD-xyz", "AIzaSyD-xyz"),
            ("session eyJhbGciOiJIUzI1.eyJzdWIiOiIxMjM0.SflKxwRJSMeKKF2QT4", "SflKxwRJSMeKKF2QT4"),
            ("id 0123456789abcdef0123456789abcdef leaked", "0123456789abcdef0123456789abcdef"),
            ("b64 dGhpcyBpcyBhIHNlY3JldCB2YWx1ZQ0K== here", "dGhpcyBpcyBhIHNlY3JldCB2YWx1ZQ0K"),
            (r#"{"password":"pw123"}"#, "pw123"),
            ("proxy https://user:pass@proxy.example/x failed", "user:pass"),
        ];
        for (body, secret) in cases {
            let shown = r.excerpt(body.as_bytes());
            assert!(!shown.contains(secret), "{secret} survived in {shown:?}");
            assert!(shown.contains(REDACTED) || shown.contains("[REDACTED URL]"), "{shown:?}");
        }
    }

    #[test]
    fn ordinary_error_text_survives_excerpts() {
        let r = Redactor::new(None, None);
        for body in [
            "context_length_exceeded: maximum context length is 2048 tokens",
            r#"{"error":{"message":"model 'smollm2' not found","type":"invalid_request_error"}}"#,
            "Rate limit reached for requests per minute",
        ] {
            assert_eq!(r.excerpt(body.as_bytes()), body);
        }
    }

    #[test]
    fn the_model_server_host_and_urls_are_redacted_from_excerpts() {
        let r = redactor();
        let shown =
            r.excerpt(b"upstream models.internal:8089 failed; see http://10.0.0.7/status or MODELS.INTERNAL");
        assert!(!shown.to_lowercase().contains("models.internal"), "{shown}");
        assert!(!shown.contains("10.0.0.7"), "{shown}");
        let local = Redactor::new(None, Some(&Url::parse("http://127.0.0.1:41234/v1").unwrap()));
        let shown = local.excerpt(b"host: 127.0.0.1:41234\nhost2 127.0.0.10");
        assert_eq!(shown, "host: [REDACTED] host2 127.0.0.10");
    }

    #[test]
    fn excerpts_are_short_single_lines_without_control_characters() {
        let r = Redactor::new(None, None);
        let shown = r.excerpt("word\r\n\t\u{1b}[31m\u{202E}x\u{0}".repeat(500).as_bytes());
        assert!(shown.chars().count() <= EXCERPT_CHARS + 1, "{shown}");
        assert!(shown.ends_with('…'));
        assert!(!shown.chars().any(|c| c.is_control() || c == '\u{202E}'), "{shown:?}");
        assert_eq!(r.excerpt(b"  \n\t "), "");
        assert_eq!(r.excerpt(&[0xff, 0xfe, b'o', b'k']), "\u{FFFD}\u{FFFD}ok");
    }

    #[test]
    fn invisible_characters_cannot_hide_the_key_from_redaction() {
        let r = redactor();
        let split = format!("{}\u{200B}{}", &KEY[..6], &KEY[6..]);
        let shown = r.excerpt(split.as_bytes());
        assert!(!shown.contains(KEY) && !shown.contains(&KEY[6..]), "{shown}");
    }

    #[test]
    fn escaped_spaced_out_and_reversed_keys_are_redacted_from_excerpts() {
        let key = "sk-test-Qm7Hv2Lx";
        let r = Redactor::new(Some(key), None);
        let escaped: String = key.chars().map(|c| format!("\\u{:04x}", u32::from(c))).collect();
        let spaced = |text: &str| text.chars().map(String::from).collect::<Vec<_>>().join(" ");
        let reversed: String = key.chars().rev().collect();
        let cases = [
            (
                format!(r#"{{"error":"bad request","you_sent":"{escaped}"}}"#),
                r#"{"error":"bad request","you_sent":"[REDACTED]"}"#,
            ),
            (format!("bad request; you sent: {}", spaced(key)), "bad request; you sent: [REDACTED]"),
            (
                format!("bad request; you sent:\n{}", key.replace('-', "-\n")),
                "bad request; you sent: [REDACTED]",
            ),
            (format!("bad request; you sent: {reversed}"), "bad request; you sent: [REDACTED]"),
            (format!("bad request; you sent: {}", spaced(&reversed)), "bad request; you sent: [REDACTED]"),
            (format!("last 8: {}", spaced(&key[8..])), "last 8: [REDACTED]"),
            (
                "the quick brown fox jumps over 13 lazy dogs".to_owned(),
                "the quick brown fox jumps over 13 lazy dogs",
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(r.excerpt(body.as_bytes()), expected, "{body}");
        }
        // Seven letters and digits of the key are not a fragment.
        assert_eq!(r.excerpt(spaced(&key[9..]).as_bytes()), spaced(&key[9..]));
    }

    #[test]
    fn model_text_loses_the_key_forwards_and_backwards_but_spaced_text_is_left_alone() {
        let key = "sk-test-Qm7Hv2Lx";
        let r = Redactor::new(Some(key), None);
        let reversed: String = key.chars().rev().collect();
        assert_eq!(r.model_text(&format!("echo {reversed}")), "echo [REDACTED]");
        assert!(r.holds_key(&reversed));
        let spaced = key.chars().map(String::from).collect::<Vec<_>>().join(" ");
        assert_eq!(r.model_text(&spaced), spaced);
    }

    #[test]
    fn urls_for_logs_drop_credentials_query_and_fragment() {
        let url = Url::parse("https://u:p@h.example:8443/v1/models?key=x#f").unwrap();
        assert_eq!(Redactor::url(&url), "https://h.example:8443/v1/models");
    }

    #[test]
    fn spans_are_widened_to_char_boundaries_and_merged() {
        assert_eq!(replace_spans("aé b", &[(1, 2)]), "a[REDACTED] b");
        assert_eq!(replace_spans("abcdef", &[(0, 3), (2, 5)]), "[REDACTED]f");
        assert_eq!(replace_spans("abcdef", &[(0, 2), (4, 6)]), "[REDACTED]cd[REDACTED]");
    }

    fn key_strategy() -> impl Strategy<Value = String> {
        prop_oneof!["sk-[A-Za-z0-9]{8,48}", "[A-Za-z0-9_\\-]{8,64}", "[!-~]{8,40}",]
    }

    proptest! {
        #[test]
        fn a_key_embedded_anywhere_never_survives_an_excerpt(
            key in key_strategy(),
            before in any::<String>(),
            after in any::<String>(),
            separator in prop::sample::select(vec!["", " ", "\n", ": ", "Bearer ", "\"", "\u{0}", "="]),
        ) {
            let r = Redactor::new(Some(&key), None);
            let body = format!("{before}{separator}{key}{after}");
            let shown = r.excerpt(body.as_bytes());
            prop_assert!(!shown.contains(key.as_str()), "{shown:?}");
            prop_assert!(shown.chars().count() <= EXCERPT_CHARS + 1);
            let text = r.model_text(&body);
            prop_assert!(!text.contains(key.as_str()), "{text:?}");
            prop_assert!(!text.contains(&key[..MIN_KEY_FRAGMENT]));
            prop_assert!(!text.contains(&key[key.len() - MIN_KEY_FRAGMENT..]));
        }

        #[test]
        fn an_escaped_spaced_out_or_reversed_key_never_survives_an_excerpt(
            key in prop_oneof!["sk-[A-Za-z0-9]{8,40}", "[A-Za-z0-9]{8,40}"],
            before in any::<String>(),
            after in any::<String>(),
            encoding in 0usize..4,
            separator in prop::sample::select(vec![" ", "  ", "\n", "-", ". "]),
        ) {
            let r = Redactor::new(Some(&key), None);
            let reversed: String = key.chars().rev().collect();
            let encoded = match encoding {
                0 => key.chars().map(|c| format!("\\u{:04X}", u32::from(c))).collect(),
                1 => key.chars().map(String::from).collect::<Vec<_>>().join(separator),
                2 => reversed.clone(),
                _ => reversed.chars().map(String::from).collect::<Vec<_>>().join(separator),
            };
            let shown = r.excerpt(format!("{before} {encoded} {after}").as_bytes());
            let compact: String = shown.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
            let key_compact: String = key.chars().filter(char::is_ascii_alphanumeric).collect();
            let reversed_compact: String = key_compact.chars().rev().collect();
            prop_assert!(!compact.contains(&key_compact) && !compact.contains(&reversed_compact), "{shown:?}");
            prop_assert!(!shown.contains(key.as_str()) && !shown.contains(reversed.as_str()), "{shown:?}");
        }

        #[test]
        fn a_key_prefix_or_suffix_never_survives_model_text(
            key in "[A-Za-z0-9]{12,48}",
            cut in 8usize..12,
            noise in "[ -~]{0,80}",
        ) {
            let r = Redactor::new(Some(&key), None);
            let prefix = &key[..cut];
            let suffix = &key[key.len() - cut..];
            let text = r.model_text(&format!("{noise}{prefix}***{noise}***{suffix}{noise}"));
            prop_assert!(!text.contains(prefix) && !text.contains(suffix), "{text:?}");
        }

        #[test]
        fn excerpts_never_panic_and_stay_short(body in prop::collection::vec(any::<u8>(), 0..2048)) {
            static REDACTOR: LazyLock<Redactor> = LazyLock::new(redactor);
            let shown = REDACTOR.excerpt(&body);
            prop_assert!(shown.chars().count() <= EXCERPT_CHARS + 1);
            prop_assert!(!shown.contains('\n'));
        }
    }
}
