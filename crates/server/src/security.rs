//! The server's walls as configured: who may call (authentication, secure by default). TLS
//! itself is in [`crate::tls`].
//!
//! Secure by default, like Redis's protected mode: with a tokens file, tokens are required;
//! without one, the server serves unauthenticated only on a loopback address, and refuses to
//! start on any other unless `auth = "none"` is said explicitly.

use std::path::Path;

use orchestrator_api_grpc::{Authentication, TokenSet};
use orchestrator_application::Caller;
use tracing::{info, warn};

use crate::config::{AuthMode, Config};
use crate::error::{Result, ServerError};

fn read(key: &str, path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| ServerError::config(key, format!("cannot read {}: {e}", path.display())))
}

/// How callers authenticate, resolved from the configuration (see the module docs).
///
/// # Errors
/// A [`ServerError::Config`] naming `auth`, `auth_tokens_file` or `tls_client_ca` when the
/// combination cannot be served safely or a file is unreadable or malformed.
pub fn authentication(config: &Config) -> Result<Authentication> {
    let mode = match (config.auth, &config.auth_tokens_file) {
        (Some(mode), _) => mode,
        (None, Some(_)) => AuthMode::Token,
        (None, None) if config.listen.ip().is_loopback() => {
            info!(listen = %config.listen, "no authentication configured: serving on a loopback address only");
            return Ok(Authentication::None);
        }
        (None, None) => {
            return Err(ServerError::config(
                "auth",
                format!(
                    "refusing to serve {} without authentication: set auth_tokens_file \
                     (ORCHESTRATOR_AUTH_TOKENS_FILE), or auth = \"none\" (ORCHESTRATOR_AUTH=none) to \
                     accept anyone who reaches the port",
                    config.listen
                ),
            ));
        }
    };
    match mode {
        AuthMode::Token => {
            let path = config
                .auth_tokens_file
                .as_deref()
                .ok_or_else(|| ServerError::config("auth_tokens_file", "required when auth = \"token\""))?;
            let tokens = TokenSet::parse(&read("auth_tokens_file", path)?)
                .map_err(|e| ServerError::config("auth_tokens_file", format!("{}: {e}", path.display())))?;
            info!(tokens = tokens.len(), file = %path.display(), "token authentication on");
            Ok(Authentication::Token(tokens))
        }
        AuthMode::Mtls => {
            if config.tls_client_ca.is_none() {
                return Err(ServerError::config("tls_client_ca", "required when auth = \"mtls\""));
            }
            if let Some(reserved) = config.auth_admins.iter().find(|name| Caller::is_reserved_name(name)) {
                return Err(ServerError::config(
                    "auth_admins",
                    format!("{reserved:?} is reserved for callers of a server without authentication"),
                ));
            }
            info!(admins = config.auth_admins.len(), "client-certificate authentication on");
            Ok(Authentication::Mtls { admins: config.auth_admins.clone() })
        }
        AuthMode::None => {
            warn!(
                listen = %config.listen,
                "AUTHENTICATION IS OFF (auth = \"none\"): anyone who reaches this address can run, read and cancel every deliberation"
            );
            Ok(Authentication::None)
        }
    }
}

/// What the configuration exposes that an operator should know about, one sentence each:
/// bearer tokens over plaintext off loopback (anyone on the path can read and replay them), a
/// tokens file other local users can read, and `/metrics` (unauthenticated) off loopback.
/// Logged as warnings at start-up; none stops the server.
pub fn exposure_warnings(config: &Config, authentication: &Authentication) -> Vec<String> {
    let mut warnings = Vec::new();
    let plaintext = config.tls_cert.is_none();
    if matches!(authentication, Authentication::Token(_)) && plaintext && !config.listen.ip().is_loopback() {
        warnings.push(format!(
            "bearer tokens are accepted over plaintext on {}: anyone on the network path can read and replay them; \
             set tls_cert and tls_key",
            config.listen
        ));
    }
    if let Some(path) = &config.auth_tokens_file
        && let Ok(metadata) = std::fs::metadata(path)
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            warnings.push(format!(
                "the tokens file {} can be read by other local users (mode {mode:o}); chmod 600 it",
                path.display()
            ));
        }
    }
    if let Some(metrics) = config.metrics_listen
        && !metrics.ip().is_loopback()
    {
        warnings.push(format!(
            "/metrics is served without authentication on {metrics}: anyone who reaches it reads the server's counters; \
             bind it to loopback or restrict the port"
        ));
    }
    for warning in &warnings {
        warn!("{warning}");
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(listen: &str) -> Config {
        Config { listen: listen.parse().unwrap(), ..Config::default() }
    }

    #[test]
    fn without_tokens_only_loopback_is_served_unless_none_is_explicit() {
        assert!(matches!(authentication(&config("127.0.0.1:1")).unwrap(), Authentication::None));
        assert!(matches!(authentication(&config("[::1]:1")).unwrap(), Authentication::None));
        let err = authentication(&config("0.0.0.0:50055")).unwrap_err().to_string();
        assert!(err.starts_with("auth: refusing to serve 0.0.0.0:50055 without authentication"), "{err}");
        let explicit = Config { auth: Some(AuthMode::None), ..config("0.0.0.0:50055") };
        assert!(matches!(authentication(&explicit).unwrap(), Authentication::None));
    }

    #[test]
    fn a_tokens_file_turns_tokens_on_and_its_errors_name_the_key_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, "ci 0123456789abcdef-ci\n").unwrap();
        let with_file = Config { auth_tokens_file: Some(path.clone()), ..config("0.0.0.0:1") };
        assert!(matches!(authentication(&with_file).unwrap(), Authentication::Token(t) if t.len() == 1));
        std::fs::write(&path, "ci short\n").unwrap();
        let err = authentication(&with_file).unwrap_err().to_string();
        assert!(err.starts_with("auth_tokens_file: ") && err.contains("line 1"), "{err}");
        let token_without_file = Config { auth: Some(AuthMode::Token), ..config("127.0.0.1:1") };
        assert_eq!(
            authentication(&token_without_file).unwrap_err().to_string(),
            "auth_tokens_file: required when auth = \"token\""
        );
        let mtls_without_ca = Config { auth: Some(AuthMode::Mtls), ..config("127.0.0.1:1") };
        assert_eq!(
            authentication(&mtls_without_ca).unwrap_err().to_string(),
            "tls_client_ca: required when auth = \"mtls\""
        );
    }

    #[test]
    fn an_admin_named_anonymous_is_refused() {
        let config = Config {
            auth: Some(AuthMode::Mtls),
            tls_client_ca: Some("ca.pem".into()),
            auth_admins: vec!["ops".into(), "Anonymous".into()],
            ..config("127.0.0.1:1")
        };
        let err = authentication(&config).unwrap_err().to_string();
        assert!(err.starts_with("auth_admins: \"Anonymous\" is reserved"), "{err}");
    }

    #[test]
    fn exposures_are_warned_about_and_a_safe_setup_is_not() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, "ci 0123456789abcdef-ci\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let exposed = Config {
            auth_tokens_file: Some(path.clone()),
            metrics_listen: Some("0.0.0.0:9100".parse().unwrap()),
            ..config("0.0.0.0:50055")
        };
        let warnings = exposure_warnings(&exposed, &authentication(&exposed).unwrap());
        assert_eq!(warnings.len(), 3, "{warnings:#?}");
        assert!(warnings[0].starts_with("bearer tokens are accepted over plaintext on 0.0.0.0:50055"));
        assert!(warnings[1].contains("(mode 644); chmod 600 it"));
        assert!(warnings[2].starts_with("/metrics is served without authentication on 0.0.0.0:9100"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let safe = Config {
            auth_tokens_file: Some(path),
            metrics_listen: Some("127.0.0.1:9100".parse().unwrap()),
            ..config("127.0.0.1:50055")
        };
        assert!(exposure_warnings(&safe, &authentication(&safe).unwrap()).is_empty());
    }
}
