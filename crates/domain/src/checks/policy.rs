//! Policy check: content no proposal may carry, whatever else it gets right.

use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// Violations found in a proposal; each names the rule and the line, never the secret itself.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PolicyResult {
    pub violations: Vec<String>,
}

impl PolicyResult {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// A one-line summary for clients.
    pub fn message(&self) -> String {
        match self.violations.len() {
            0 => "no policy violation".to_owned(),
            1 => "1 policy violation".to_owned(),
            n => format!("{n} policy violations"),
        }
    }
}

struct Rule {
    what: &'static str,
    pattern: Regex,
}

fn rule(what: &'static str, pattern: &str) -> Rule {
    // The patterns are constants of this file; a typo is caught by the unit tests below.
    Rule { what, pattern: Regex::new(pattern).expect("policy patterns are valid regexes") }
}

static RULES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    vec![
        rule("private key material", r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY"),
        rule("hard-coded AWS access key", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
        rule("hard-coded API key (sk-…)", r"\bsk-(?:proj-|live-|test-)?[A-Za-z0-9_\-]{20,}"),
        rule("hard-coded GitHub token", r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,})"),
        rule("hard-coded Slack token", r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
        rule("hard-coded Google API key", r"\bAIza[0-9A-Za-z_\-]{35}\b"),
        rule(
            "hard-coded credential",
            r#"(?i)\b(?:password|passwd|pwd|secret|api[_-]?key|access[_-]?token|auth[_-]?token|client[_-]?secret)\b["']?\s*[:=]\s*["']([^"'\s$<{][^"'\s]{7,})["']"#,
        ),
        rule(
            "destructive command (rm -rf /)",
            r"\brm\s+(?:-[a-zA-Z]*\s+)*-[a-zA-Z]*(?:r[a-zA-Z]*f|f[a-zA-Z]*r)[a-zA-Z]*\s+(?:--no-preserve-root\s+)?(?:/|/\*|~|\$HOME)(?:\s|$|;|&|\|)",
        ),
        rule(
            "pipes a download into a shell (curl | sh)",
            r"\b(?:curl|wget)\b[^\n|]*\|\s*(?:sudo\s+)?(?:ba|z|k|da)?sh\b",
        ),
        rule(
            "disables TLS verification",
            r#"(?i)(?:\bverify\s*=\s*False\b|InsecureSkipVerify\s*:\s*true|danger_accept_invalid_certs\s*\(\s*true|NODE_TLS_REJECT_UNAUTHORIZED\s*=\s*["']?0|rejectUnauthorized\s*:\s*false|CURLOPT_SSL_VERIFYPEER\s*,\s*(?:0|false)|\bcurl\b[^\n]*\s(?:-k|--insecure)\b|ssl\._create_unverified_context|CERT_NONE)"#,
        ),
        rule("world-writable permissions (chmod 777)", r"\bchmod\s+(?:-R\s+)?0?777\b"),
        rule("fork bomb", r":\(\)\s*\{\s*:\s*\|\s*:\s*&\s*\}\s*;\s*:"),
        rule(
            "overwrites a raw disk device",
            r"\b(?:dd\b[^\n]*\bof=/dev/(?:sd|nvme|hd|vd)|mkfs(?:\.\w+)?\s+/dev/(?:sd|nvme|hd|vd))",
        ),
    ]
});

/// Scans `content` line by line for forbidden content.
pub fn check_policy(content: &str) -> PolicyResult {
    let mut violations = Vec::new();
    for (index, line) in content.lines().enumerate() {
        for rule in RULES.iter() {
            if rule.pattern.is_match(line) {
                violations.push(format!("{} (line {})", rule.what, index + 1));
            }
        }
    }
    PolicyResult { violations }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn violations(text: &str) -> Vec<String> {
        check_policy(text).violations
    }

    #[test]
    fn clean_text_passes() {
        let result =
            check_policy("Read the password from the environment: `std::env::var(\"DB_PASSWORD\")`.");
        assert!(result.passed(), "{result:?}");
        assert_eq!(result.message(), "no policy violation");
    }

    #[test]
    fn private_keys_and_tokens_are_found() {
        assert_eq!(violations("-----BEGIN RSA PRIVATE KEY-----"), ["private key material (line 1)"]);
        assert_eq!(violations("key = AKIAIOSFODNN7EXAMPLE"), ["hard-coded AWS access key (line 1)"]);
        assert_eq!(
            violations("\nOPENAI=sk-abcdefghijklmnopqrstuvwxyz123456"),
            ["hard-coded API key (sk-…) (line 2)"]
        );
        assert_eq!(
            violations("token ghp_abcdefghijklmnopqrstuvwxyz0123456789"),
            ["hard-coded GitHub token (line 1)"]
        );
    }

    #[test]
    fn credential_assignments_are_found_but_placeholders_are_not() {
        assert_eq!(violations(r#"password = "hunter22hunter""#), ["hard-coded credential (line 1)"]);
        assert_eq!(violations(r#"{"api_key": "0123456789abcdef"}"#), ["hard-coded credential (line 1)"]);
        assert!(violations(r#"password = "${DB_PASSWORD}""#).is_empty());
        assert!(violations(r#"api_key = "<your key>""#).is_empty());
        assert!(violations(r#"password = os.environ["PW"]"#).is_empty());
    }

    #[test]
    fn destructive_shell_is_found() {
        assert_eq!(violations("sudo rm -rf /"), ["destructive command (rm -rf /) (line 1)"]);
        assert_eq!(violations("rm -fr /*"), ["destructive command (rm -rf /) (line 1)"]);
        assert!(violations("rm -rf ./build").is_empty());
        assert!(violations("rm -rf /tmp/cache").is_empty());
        assert_eq!(violations(":(){ :|:& };:"), ["fork bomb (line 1)"]);
        assert_eq!(violations("dd if=/dev/zero of=/dev/sda"), ["overwrites a raw disk device (line 1)"]);
        assert_eq!(violations("chmod -R 777 /srv"), ["world-writable permissions (chmod 777) (line 1)"]);
    }

    #[test]
    fn piping_downloads_into_a_shell_is_found() {
        assert_eq!(
            violations("curl -sSL https://get.example.com | sudo bash"),
            ["pipes a download into a shell (curl | sh) (line 1)"]
        );
        assert_eq!(violations("wget -qO- x.sh | sh"), ["pipes a download into a shell (curl | sh) (line 1)"]);
        assert!(violations("curl -o install.sh https://x && sha256sum -c sums && sh install.sh").is_empty());
    }

    #[test]
    fn disabled_tls_verification_is_found() {
        for text in [
            "requests.get(url, verify=False)",
            "tls.Config{InsecureSkipVerify: true}",
            "Client::builder().danger_accept_invalid_certs(true)",
            "NODE_TLS_REJECT_UNAUTHORIZED=0 node app.js",
            "curl -k https://internal",
        ] {
            assert_eq!(violations(text), ["disables TLS verification (line 1)"], "{text}");
        }
    }

    #[test]
    fn every_violation_is_listed_with_its_line() {
        let result = check_policy("ok\ncurl x | sh\nrm -rf /\n");
        assert_eq!(
            result.violations,
            ["pipes a download into a shell (curl | sh) (line 2)", "destructive command (rm -rf /) (line 3)"]
        );
        assert_eq!(result.message(), "2 policy violations");
    }
}
