//! Which server the client subcommands talk to and how: the address (its scheme decides
//! plaintext or TLS, never guessed or downgraded), the CA to trust, a client certificate for
//! mutual TLS, and the bearer token. Errors come back as one line a person can act on.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use orchestrator_api_grpc::pb::orchestrator_service_client::OrchestratorServiceClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// The gRPC client of the orchestrator service, with the token attached to every call.
pub(crate) type Client = OrchestratorServiceClient<InterceptedService<Channel, BearerToken>>;

/// Largest response read (a deliberation with many long proposals).
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
/// How long connecting may take before the CLI gives up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Most characters of an underlying error shown in a connection message.
const MAX_CAUSE_CHARS: usize = 200;

/// Where the server is and how to reach it; every flag works before or after the subcommand.
#[derive(Debug, Clone, Args)]
pub(crate) struct Target {
    /// Server address: http://host:port (plaintext) or https://host:port (TLS).
    #[arg(long, env = "ORCHESTRATOR_ADDR", default_value = "http://127.0.0.1:50055", global = true)]
    pub(crate) addr: String,
    /// Bearer token sent as `authorization: Bearer <token>`. On the command line it is
    /// visible to every local user (`ps`): prefer --token-file or ORCHESTRATOR_TOKEN.
    #[arg(long, env = "ORCHESTRATOR_TOKEN", hide_env_values = true, global = true)]
    pub(crate) token: Option<String>,
    /// File whose first line is the bearer token (instead of --token).
    #[arg(long, env = "ORCHESTRATOR_TOKEN_FILE", global = true)]
    pub(crate) token_file: Option<PathBuf>,
    /// PEM CA bundle to verify an https:// server with (default: the webpki root store).
    #[arg(long, env = "ORCHESTRATOR_CA", global = true)]
    pub(crate) ca: Option<PathBuf>,
    /// PEM client certificate, for a server that requires mutual TLS (with --key).
    #[arg(long, env = "ORCHESTRATOR_CLIENT_CERT", global = true)]
    pub(crate) cert: Option<PathBuf>,
    /// PEM private key of --cert.
    #[arg(long, env = "ORCHESTRATOR_CLIENT_KEY", global = true)]
    pub(crate) key: Option<PathBuf>,
}

/// Adds `authorization: Bearer <token>` to every request when a token is set.
#[derive(Clone)]
pub(crate) struct BearerToken(Option<MetadataValue<Ascii>>);

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "BearerToken(set)" } else { "BearerToken(none)" })
    }
}

impl Interceptor for BearerToken {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// The first non-empty line of a token file, trimmed.
fn read_token_file(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("--token-file {}: cannot read it: {e}", path.display()))?;
    text.lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("--token-file {}: holds no token", path.display()))
}

/// The address's scheme: it alone decides whether TLS is spoken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Plain,
    Tls,
}

fn scheme_of(addr: &str) -> anyhow::Result<Scheme> {
    if addr.starts_with("https://") {
        Ok(Scheme::Tls)
    } else if addr.starts_with("http://") {
        Ok(Scheme::Plain)
    } else {
        Err(anyhow::anyhow!("address must start with http:// or https:// (got {addr:?})"))
    }
}

impl Target {
    /// The bearer token interceptor.
    ///
    /// # Errors
    /// A token that cannot be sent as a header (non-ASCII or control characters).
    /// A token file that cannot be read or holds no token; a token that cannot be sent as a
    /// header (non-ASCII or control characters). No message quotes the token.
    pub(crate) fn bearer(&self) -> anyhow::Result<BearerToken> {
        let token = match &self.token_file {
            Some(path) => Some(read_token_file(path)?),
            None => self.token.clone(),
        };
        let Some(token) = token.as_deref().map(str::trim).filter(|t| !t.is_empty()) else {
            return Ok(BearerToken(None));
        };
        MetadataValue::try_from(format!("Bearer {token}")).map(|value| BearerToken(Some(value))).map_err(
            |_| anyhow::anyhow!("--token / --token-file / ORCHESTRATOR_TOKEN: must be printable ASCII"),
        )
    }

    /// Whether the token was given as `--token` on the command line, where every local user
    /// can read it (`ps`, `/proc/<pid>/cmdline`), rather than through the environment or a
    /// file: the CLI warns then.
    pub(crate) fn token_on_command_line(&self) -> bool {
        self.token_file.is_none()
            && self
                .token
                .as_ref()
                .is_some_and(|token| std::env::var("ORCHESTRATOR_TOKEN").ok().as_ref() != Some(token))
    }

    /// The endpoint for the address: plaintext for http://, TLS for https:// (with --ca or the
    /// webpki roots, and --cert/--key when given).
    ///
    /// # Errors
    /// An address without a scheme or otherwise invalid; unreadable certificate files.
    pub(crate) fn endpoint(&self) -> anyhow::Result<Endpoint> {
        let scheme = scheme_of(&self.addr)?;
        let endpoint = Endpoint::from_shared(self.addr.clone())
            .map_err(|e| anyhow::anyhow!("invalid address {:?}: {e}", self.addr))?
            .connect_timeout(CONNECT_TIMEOUT);
        if scheme == Scheme::Plain {
            if self.ca.is_some() || self.cert.is_some() || self.key.is_some() {
                return Err(anyhow::anyhow!(
                    "--ca/--cert need an https:// address (got {:?}); plaintext is never upgraded silently",
                    self.addr
                ));
            }
            return Ok(endpoint);
        }
        let mut tls = ClientTlsConfig::new();
        tls = match &self.ca {
            Some(path) => tls.ca_certificate(Certificate::from_pem(read_pem(path, "--ca")?)),
            None => tls.with_webpki_roots(),
        };
        // Checked here rather than by clap, so a half-set environment does not stop `serve`.
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                tls = tls.identity(Identity::from_pem(read_pem(cert, "--cert")?, read_pem(key, "--key")?));
            }
            (None, None) => {}
            _ => {
                return Err(anyhow::anyhow!(
                    "--cert and --key go together (ORCHESTRATOR_CLIENT_CERT, ORCHESTRATOR_CLIENT_KEY)"
                ));
            }
        }
        endpoint
            .tls_config(tls)
            .map_err(|e| anyhow::anyhow!("TLS setup for {}: {}", self.addr, root_cause(&e)))
    }

    /// A connected channel.
    ///
    /// # Errors
    /// See [`Target::endpoint`]; a server that cannot be reached, in one line.
    pub(crate) async fn channel(&self) -> anyhow::Result<Channel> {
        let endpoint = self.endpoint()?;
        endpoint.connect().await.map_err(|e| self.connect_error(&e))
    }

    /// A connected orchestrator client.
    ///
    /// # Errors
    /// See [`Target::channel`] and [`Target::bearer`].
    pub(crate) async fn client(&self) -> anyhow::Result<Client> {
        let bearer = self.bearer()?;
        let channel = self.channel().await?;
        Ok(OrchestratorServiceClient::with_interceptor(channel, bearer)
            .max_decoding_message_size(MAX_RESPONSE_BYTES))
    }

    /// "cannot connect to …: <cause>", with a hint when the scheme looks wrong for the server.
    fn connect_error(&self, error: &tonic::transport::Error) -> anyhow::Error {
        let cause = root_cause(error);
        let lower = cause.to_ascii_lowercase();
        let hint = match scheme_of(&self.addr) {
            Ok(Scheme::Tls)
                if ["corrupt message", "invalidcontenttype"].iter().any(|w| lower.contains(w)) =>
            {
                " (is the server serving plaintext? then use http://)"
            }
            Ok(Scheme::Tls) if ["certificate", "issuer", "handshake"].iter().any(|w| lower.contains(w)) => {
                " (is the server's certificate signed by the CA given with --ca, and for this host name?)"
            }
            Ok(Scheme::Plain)
                if ["connection reset", "broken pipe", "closed"].iter().any(|w| lower.contains(w)) =>
            {
                " (does the server require TLS? then use https://)"
            }
            _ if lower.contains("refused") => " (is the server running? start it with `orchestrator serve`)",
            _ => "",
        };
        anyhow::anyhow!("cannot connect to {}: {cause}{hint}", self.addr)
    }
}

fn read_pem(path: &Path, flag: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| anyhow::anyhow!("{flag} {}: {e}", path.display()))
}

/// The innermost error of a chain, cut short: transport errors nest half a dozen layers of
/// hyper and io wrappers whose outer messages say only "transport error".
pub(crate) fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut inner = error;
    while let Some(source) = inner.source() {
        inner = source;
    }
    let text = inner.to_string();
    let text = if text.is_empty() { error.to_string() } else { text };
    if text.chars().count() > MAX_CAUSE_CHARS {
        let cut: String = text.chars().take(MAX_CAUSE_CHARS).collect();
        format!("{cut}…")
    } else {
        text
    }
}

/// An error status for a person: the canonical code name, the server's message, and what to
/// do for the codes a person can fix here.
pub(crate) fn status_error(status: &tonic::Status) -> String {
    use tonic::Code;
    let name = match status.code() {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    };
    let hint = match status.code() {
        Code::Unauthenticated => " (set --token or ORCHESTRATOR_TOKEN)",
        _ => "",
    };
    format!("{name}: {}{hint}", status_message(status))
}

/// The server's message, or for a status the client made from a broken connection (whose
/// message says only "transport error"), the underlying cause.
fn status_message(status: &tonic::Status) -> String {
    let message = status.message();
    if message.is_empty() || message == "transport error" {
        std::error::Error::source(status).map_or_else(|| message.to_owned(), root_cause)
    } else {
        message.to_owned()
    }
}

/// Whether a status was made by the client from a connection that broke, not sent by a server.
fn is_connection_failure(status: &tonic::Status) -> bool {
    use tonic::Code;
    const BROKEN: &[&str] =
        &["operation was canceled", "connection", "transport error", "broken pipe", "h2 protocol error"];
    matches!(status.code(), Code::Cancelled | Code::Unavailable | Code::Internal | Code::Unknown)
        && BROKEN.iter().any(|w| status.message().to_ascii_lowercase().contains(w))
}

impl Target {
    /// An error status of a call to this target, for a person: [`status_error`], and for a
    /// connection that broke, what to check for this address's scheme.
    pub(crate) fn failed(&self, status: &tonic::Status) -> anyhow::Error {
        if !is_connection_failure(status) {
            return anyhow::Error::msg(status_error(status));
        }
        let cause = status_message(status);
        let lower = cause.to_ascii_lowercase();
        let hint = match scheme_of(&self.addr) {
            // A plaintext client's first request to a TLS server ends like this: the server
            // drops a connection that does not start with a TLS handshake.
            Ok(Scheme::Plain) => " (does the server require TLS? then use an https:// address)",
            Ok(Scheme::Tls) if lower.contains("certificate") => {
                " (the server requires a client certificate it trusts: --cert and --key)"
            }
            // With TLS 1.3 the server's refusal of a missing client certificate can race the
            // first request, which then sees only the connection close.
            Ok(Scheme::Tls) => " (does the server require a client certificate? then pass --cert and --key)",
            Err(_) => "",
        };
        anyhow::anyhow!("connection to {} failed: {cause}{hint}", self.addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(addr: &str) -> Target {
        Target { addr: addr.to_owned(), token: None, token_file: None, ca: None, cert: None, key: None }
    }

    #[test]
    fn an_address_without_a_scheme_is_refused_by_name() {
        let error = target("127.0.0.1:50055").endpoint().unwrap_err();
        assert_eq!(
            error.to_string(),
            "address must start with http:// or https:// (got \"127.0.0.1:50055\")"
        );
        assert!(target("http://127.0.0.1:50055").endpoint().is_ok());
    }

    #[test]
    fn certificates_with_a_plaintext_address_are_refused_not_ignored() {
        let t = Target { ca: Some("ca.pem".into()), ..target("http://h:1") };
        assert!(t.endpoint().unwrap_err().to_string().contains("need an https:// address"));
    }

    #[test]
    fn a_client_certificate_needs_its_key() {
        let t = Target { cert: Some("c.pem".into()), ..target("https://h:1") };
        assert!(t.endpoint().unwrap_err().to_string().contains("--cert and --key go together"));
    }

    #[test]
    fn a_token_file_gives_its_first_line_and_its_errors_quote_no_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "\n  s3cret-from-file  \nsecond\n").unwrap();
        let from_file =
            Target { token_file: Some(path.clone()), token: Some("ignored".into()), ..target("http://h:1") };
        let mut bearer = from_file.bearer().unwrap();
        let request = bearer.call(tonic::Request::new(())).unwrap();
        assert_eq!(request.metadata().get("authorization").unwrap(), "Bearer s3cret-from-file");
        assert!(!from_file.token_on_command_line());
        std::fs::write(&path, "\n \n").unwrap();
        assert!(from_file.bearer().unwrap_err().to_string().ends_with("holds no token"));
        let missing = Target { token_file: Some(dir.path().join("nope")), ..target("http://h:1") };
        assert!(missing.bearer().unwrap_err().to_string().contains("cannot read it"));
    }

    #[test]
    fn the_token_goes_out_as_a_bearer_header() {
        let mut bearer = Target { token: Some(" s3cret ".into()), ..target("http://h:1") }.bearer().unwrap();
        let request = bearer.call(tonic::Request::new(())).unwrap();
        assert_eq!(request.metadata().get("authorization").unwrap(), "Bearer s3cret");
        let mut none = target("http://h:1").bearer().unwrap();
        assert!(none.call(tonic::Request::new(())).unwrap().metadata().get("authorization").is_none());
        assert!(format!("{bearer:?}").contains("set") && !format!("{bearer:?}").contains("s3cret"));
    }

    #[test]
    fn statuses_read_as_canonical_code_names() {
        assert_eq!(
            status_error(&tonic::Status::unauthenticated("missing token")),
            "UNAUTHENTICATED: missing token (set --token or ORCHESTRATOR_TOKEN)"
        );
        assert_eq!(status_error(&tonic::Status::not_found("task_id x")), "NOT_FOUND: task_id x");
    }
}
