//! NATS subject and name syntax, as far as the intake needs it: whether a configured subject
//! or stream name is well formed (a bad one is refused at start-up, not by the server on every
//! retry), and whether one subject pattern covers another (does `planning.>` hold the plan
//! subject, would the intake consume its own dead letters).

/// Checks that `subject` is a subject the intake may use: dot-separated tokens, none empty,
/// no whitespace; with `wildcards`, `*` may stand as a whole token and `>` as the whole last one.
///
/// # Errors
/// What is wrong, in words for a setting's error message.
pub(crate) fn check_subject(subject: &str, wildcards: bool) -> Result<(), String> {
    if subject.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if subject.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain whitespace".to_owned());
    }
    let tokens: Vec<&str> = subject.split('.').collect();
    for (i, token) in tokens.iter().enumerate() {
        if token.is_empty() {
            return Err("must not have an empty token (a leading, trailing or double '.')".to_owned());
        }
        let last = i + 1 == tokens.len();
        let wildcard = match *token {
            "*" => true,
            ">" if last => true,
            ">" => return Err("'>' may only be the last token".to_owned()),
            other if other.contains(['*', '>']) => {
                return Err("'*' and '>' may only stand as whole tokens".to_owned());
            }
            _ => false,
        };
        if wildcard && !wildcards {
            return Err("must not contain wildcards".to_owned());
        }
    }
    Ok(())
}

/// Checks that `name` can name a JetStream stream or durable consumer: not empty, at most
/// 255 bytes, none of whitespace, `.`, `*`, `>`, `/`, `\`.
///
/// # Errors
/// What is wrong, in words for a setting's error message.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if name.len() > 255 {
        return Err(format!("must be at most 255 bytes, got {}", name.len()));
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>' | '/' | '\\'))
    {
        return Err("must not contain whitespace, '.', '*', '>', '/' or '\\'".to_owned());
    }
    Ok(())
}

/// Whether every subject that `inner` matches is also matched by `outer` (both well-formed
/// patterns): `planning.>` covers `planning.plan.approved` and `planning.plan.*`, not
/// `planning` nor `other.plan`.
pub(crate) fn covers(outer: &str, inner: &str) -> bool {
    let mut outer_tokens = outer.split('.');
    let mut inner_tokens = inner.split('.');
    loop {
        match (outer_tokens.next(), inner_tokens.next()) {
            (None, None) => return true,
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(token)) if token != ">" => {}
            (Some(a), Some(b)) if a == b && a != "*" && a != ">" => {}
            (Some("*"), Some("*")) => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_tokens_with_wildcards_only_where_allowed() {
        assert!(check_subject("planning.plan.approved", false).is_ok());
        assert!(check_subject("planning.>", true).is_ok());
        assert!(check_subject("planning.*.approved", true).is_ok());
        assert!(check_subject("planning.>", false).is_err());
        assert!(check_subject("", true).is_err());
        assert!(check_subject("planning..approved", true).is_err());
        assert!(check_subject("planning.plan.", true).is_err());
        assert!(check_subject("planning.>.x", true).is_err());
        assert!(check_subject("planning.pl*n", true).is_err());
        assert!(check_subject("planning plan", true).is_err());
    }

    #[test]
    fn names_refuse_what_a_stream_name_cannot_hold() {
        assert!(check_name("PLANNING_EVENTS").is_ok());
        assert!(check_name("orch-planning-plan-approved").is_ok());
        for bad in ["", "a.b", "a b", "a*", "a>", "a/b", "a\\b"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name(&"x".repeat(256)).is_err());
    }

    #[test]
    fn a_pattern_covers_what_it_matches_all_of() {
        assert!(covers("planning.>", "planning.plan.approved"));
        assert!(covers("planning.>", "planning.plan.*"));
        assert!(covers("planning.>", "planning.>"));
        assert!(covers("orchestration.>", "orchestration.request"));
        assert!(covers("orchestration.*", "orchestration.request"));
        assert!(covers("orchestration.request", "orchestration.request"));
        assert!(!covers("planning.>", "planning"));
        assert!(!covers("planning.>", "other.plan"));
        assert!(!covers("orchestration.*", "orchestration.intake.dead_letter"));
        assert!(!covers("orchestration.request", "orchestration.*"));
        assert!(!covers("orchestration.*", "orchestration.>"));
        assert!(!covers("orchestration.request", "orchestration.request.x"));
    }
}
