//! The one gate every RPC passes: a tower layer that authenticates the caller before any
//! handler runs and hands the [`Caller`] to the handlers in the request's extensions.
//!
//! Health checks (and, when configured, reflection) stay open, so probes and `grpcurl list`
//! work without a token. Everything else answers `UNAUTHENTICATED` without a valid identity.
//! Each authenticated call is logged on the `orchestrator::audit` target with its principal:
//! at `info`, except the polls a monitor repeats every few seconds (GetStatus; the health
//! service is open and not logged at all), which are logged at `debug` so that they do not
//! drown the calls that change something. Refused calls are always logged at `info`.

use std::future::{Ready, ready};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::Either;
use orchestrator_application::Caller;
use tonic::Status;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tower::{Layer, Service};
use tracing::{Level, event, info};

use super::tokens::TokenSet;

/// How callers prove who they are.
#[derive(Debug, Clone)]
pub enum Authentication {
    /// `authorization: Bearer <token>` with a token of the tokens file.
    Token(TokenSet),
    /// A client certificate verified by TLS against the configured client CA; its subject's
    /// common name (or first DNS name) is the principal, an admin when listed in `admins`.
    Mtls { admins: Vec<String> },
    /// Nobody is authenticated: every request is the one anonymous principal.
    None,
}

/// Paths served without authentication: the health service always, reflection when allowed.
const HEALTH: &str = "/grpc.health.v1.Health/";
const REFLECTION: [&str; 2] =
    ["/grpc.reflection.v1.ServerReflection/", "/grpc.reflection.v1alpha.ServerReflection/"];

/// Authenticated methods that only read the server's state and are polled: audited at `debug`.
const POLLS: [&str; 1] = ["/orchestrator.v1.OrchestratorService/GetStatus"];

/// Authenticates every request (see the module docs).
#[derive(Debug, Clone)]
pub struct AuthLayer {
    authentication: Arc<Authentication>,
    reflection_open: bool,
}

impl AuthLayer {
    /// `reflection_open`: serve reflection without authentication (lets `grpcurl list`
    /// describe the API to anyone who reaches the port; it reveals no data).
    pub fn new(authentication: Authentication, reflection_open: bool) -> Self {
        Self { authentication: Arc::new(authentication), reflection_open }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Authenticated<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticated { inner, layer: self.clone() }
    }
}

/// The service behind an [`AuthLayer`].
#[derive(Debug, Clone)]
pub struct Authenticated<S> {
    inner: S,
    layer: AuthLayer,
}

impl AuthLayer {
    fn is_open(&self, path: &str) -> bool {
        path.starts_with(HEALTH) || (self.reflection_open && REFLECTION.iter().any(|p| path.starts_with(p)))
    }

    /// The caller of a request, or the status refusing it.
    fn authenticate<B>(&self, request: &http::Request<B>) -> Result<Caller, Status> {
        match self.authentication.as_ref() {
            Authentication::None => Ok(Caller::anonymous()),
            Authentication::Token(tokens) => {
                let header = request.headers().get(http::header::AUTHORIZATION).ok_or_else(|| {
                    Status::unauthenticated(
                        "missing credentials: send the header `authorization: Bearer <token>`",
                    )
                })?;
                let token = header
                    .to_str()
                    .ok()
                    .and_then(|value| value.split_once(' '))
                    .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                    .map(|(_, token)| token.trim())
                    .ok_or_else(|| {
                        Status::unauthenticated("the authorization header must be `Bearer <token>`")
                    })?;
                tokens.authenticate(token).ok_or_else(|| Status::unauthenticated("invalid token"))
            }
            Authentication::Mtls { admins } => {
                let principal = request
                    .extensions()
                    .get::<TlsConnectInfo<TcpConnectInfo>>()
                    .and_then(TlsConnectInfo::peer_certs)
                    .and_then(|certs| certs.first().and_then(|cert| certificate_principal(cert.as_ref())))
                    .ok_or_else(|| {
                        Status::unauthenticated("a client certificate naming the caller is required")
                    })?;
                if Caller::is_reserved_name(&principal) {
                    return Err(Status::unauthenticated(
                        "the client certificate names `anonymous`, which is reserved for callers of a server without authentication",
                    ));
                }
                let admin = admins.iter().any(|a| a == &principal);
                Ok(Caller::new(principal, admin))
            }
        }
    }
}

/// The subject common name of a DER certificate, or its first DNS name.
fn certificate_principal(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let common_name =
        cert.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()).map(str::to_owned);
    common_name.or_else(|| {
        let names = cert.subject_alternative_name().ok()??;
        names.value.general_names.iter().find_map(|name| match name {
            x509_parser::extensions::GeneralName::DNSName(dns) => Some((*dns).to_owned()),
            _ => None,
        })
    })
}

type Refused<R, E> = Ready<Result<R, E>>;

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for Authenticated<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    ResBody: Default,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = Either<S::Future, Refused<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        let path = request.uri().path().to_owned();
        if self.layer.is_open(&path) {
            return Either::Left(self.inner.call(request));
        }
        match self.layer.authenticate(&request) {
            Ok(caller) => {
                if POLLS.contains(&path.as_str()) {
                    event!(target: "orchestrator::audit", Level::DEBUG, principal = caller.principal(), admin = caller.is_admin(), method = path, "rpc");
                } else {
                    event!(target: "orchestrator::audit", Level::INFO, principal = caller.principal(), admin = caller.is_admin(), method = path, "rpc");
                }
                request.extensions_mut().insert(caller);
                Either::Left(self.inner.call(request))
            }
            Err(status) => {
                info!(target: "orchestrator::audit", method = path, reason = status.message(), "rpc refused");
                Either::Right(ready(Ok(status.into_http())))
            }
        }
    }
}
