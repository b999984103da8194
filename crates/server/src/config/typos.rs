//! Unknown keys, wherever they were written: a key of the file or an `ORCHESTRATOR_*`
//! variable that sets nothing is refused the same way — named where it came from (the file
//! and line, or the variable), with the nearest known key suggested when one is close enough
//! to be what was meant (`strsim`), or the keys known at that level when none is.

use std::collections::HashMap;

use super::environment::{LLM_ALIAS, LLM_ALIAS_TARGET, PREFIX};

/// Largest edit distance (transpositions count one) at which a known key is suggested.
const MAX_EDITS: usize = 2;
/// Smallest Jaro-Winkler similarity at which a known key is suggested anyway: a key written
/// in part (`shutdown_grace` for `shutdown_grace_secs`) is many edits away but plainly meant.
const MIN_SIMILARITY: f64 = 0.92;

/// The known key `written` most likely meant, if any is close enough: a few edits away, very
/// similar, or the known key with its unit left off (`timeout` for `timeout_secs`).
pub(super) fn nearest<'a>(written: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let in_part = |key: &str| key.strip_prefix(written).is_some_and(|rest| rest.starts_with('_'));
    known
        .into_iter()
        .map(|key| (key, strsim::damerau_levenshtein(written, key), strsim::jaro_winkler(written, key)))
        .filter(|(key, edits, similarity)| {
            *edits <= MAX_EDITS || *similarity >= MIN_SIMILARITY || in_part(key)
        })
        .min_by(|a, b| a.1.cmp(&b.1).then(b.2.total_cmp(&a.2)))
        .map(|(key, _, _)| key)
}

/// The environment variable that sets the dotted `key` (`profiles.small.model` →
/// `ORCHESTRATOR_PROFILES__SMALL__MODEL`), in the `ORCHESTRATOR_LLM_` short form when
/// `short` and the key is the default profile's.
pub(super) fn variable_of(key: &str, short: bool) -> String {
    let long = format!("{PREFIX}{}", key.replace('.', "__").to_ascii_uppercase());
    match long.strip_prefix(LLM_ALIAS_TARGET) {
        Some(rest) if short => format!("{LLM_ALIAS}{rest}"),
        _ => long,
    }
}

/// The variable of `env` that sets the dotted `key`, as the user wrote it (either form,
/// any case).
pub(super) fn variable_in(env: &HashMap<String, String>, key: &str) -> Option<String> {
    [variable_of(key, true), variable_of(key, false)]
        .into_iter()
        .find_map(|wanted| env.keys().find(|name| name.eq_ignore_ascii_case(&wanted)).cloned())
}

/// `unknown key "lisen"; did you mean "listen"?`, or with the known keys when none is near.
/// `written` is the whole dotted key, `unknown` its part no key matches; `suggest` shows a
/// known key in its place the way the user should write it (quoted for the file, as a
/// variable for the environment).
pub(super) fn unknown_key(
    written: &str,
    unknown: &str,
    known: &[&str],
    suggest: impl Fn(&str) -> String,
) -> String {
    match nearest(unknown, known.iter().copied()) {
        Some(near) => format!("unknown key \"{written}\"; did you mean {}?", suggest(near)),
        None => format!("unknown key \"{written}\" (the keys here: {})", known.join(", ")),
    }
}

/// The unknown field and the fields expected, from serde's `unknown field `x`, expected one
/// of `a`, `b`` (or `expected `a` or `b``, or `there are no fields`).
pub(super) fn unknown_field(message: &str) -> Option<(String, Vec<String>)> {
    let rest = message.split("unknown field `").nth(1)?;
    let (field, rest) = rest.split_once('`')?;
    let expected = rest.split('`').skip(1).step_by(2).map(str::to_owned).collect();
    Some((field.to_owned(), expected))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nearest_key_is_a_typo_or_a_key_written_in_part_never_a_stranger() {
        let keys = ["listen", "lease_secs", "shutdown_grace_secs", "tls_cert", "tls_key"];
        assert_eq!(nearest("lisen", keys), Some("listen"));
        assert_eq!(nearest("lsiten", keys), Some("listen"), "a transposition is one edit");
        assert_eq!(nearest("shutdown_grace", keys), Some("shutdown_grace_secs"));
        assert_eq!(nearest("tls_crt", keys), Some("tls_cert"));
        assert_eq!(nearest("lease", keys), Some("lease_secs"), "the unit left off");
        assert_eq!(nearest("database", keys), None);
    }

    #[test]
    fn variables_are_named_in_the_form_written() {
        assert_eq!(variable_of("profiles.default.model", true), "ORCHESTRATOR_LLM_MODEL");
        assert_eq!(variable_of("profiles.default.model", false), "ORCHESTRATOR_PROFILES__DEFAULT__MODEL");
        assert_eq!(variable_of("intake.enabled", true), "ORCHESTRATOR_INTAKE__ENABLED");
        let env = HashMap::from([("ORCHESTRATOR_PROFILES__DEFAULT__MODL".to_owned(), "m".to_owned())]);
        assert_eq!(
            variable_in(&env, "profiles.default.modl").as_deref(),
            Some("ORCHESTRATOR_PROFILES__DEFAULT__MODL")
        );
        assert_eq!(variable_in(&env, "profiles.default.model"), None);
    }

    #[test]
    fn serde_messages_give_the_unknown_field_and_the_expected_ones() {
        assert_eq!(
            unknown_field("unknown field `modl`, expected one of `base_url`, `model`, `api_key`"),
            Some(("modl".to_owned(), vec!["base_url".into(), "model".into(), "api_key".into()]))
        );
        assert_eq!(
            unknown_field("unknown field `x`, expected `a` or `b`"),
            Some(("x".to_owned(), vec!["a".into(), "b".into()]))
        );
        assert_eq!(unknown_field("unknown field `x`, there are no fields"), Some(("x".to_owned(), vec![])));
        assert_eq!(unknown_field("invalid type: string"), None);
    }

    #[test]
    fn an_unknown_key_suggests_the_near_one_or_lists_the_known() {
        let known = ["base_url", "model", "api_key"];
        assert_eq!(
            unknown_key("profiles.default.modl", "modl", &known, |k| format!("\"profiles.default.{k}\"")),
            "unknown key \"profiles.default.modl\"; did you mean \"profiles.default.model\"?"
        );
        assert_eq!(
            unknown_key("zzz", "zzz", &known, |k| format!("\"{k}\"")),
            "unknown key \"zzz\" (the keys here: base_url, model, api_key)"
        );
    }
}
