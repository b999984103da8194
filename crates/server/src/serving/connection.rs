//! One connection, from accept to close: the TLS handshake when TLS is on, the preface
//! deadline, HTTP/2 with keepalive pings, and the GOAWAY that ends it — once it has been idle
//! for `idle_connection_secs`, or when the server shuts down.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Connected;
use tower::ServiceBuilder;
use tracing::debug;

use super::preface::PrefaceDeadline;
use super::streams::{CountStreamsLayer, Streams};
use super::{ConnectionSettings, GOAWAY_GRACE, GrpcService, PREFACE_TIMEOUT, ResponseBody};
use crate::tls::ServerTls;

/// What every connection of a listener shares.
pub(super) struct Shared<S> {
    /// The gRPC surface with its layers.
    pub(super) service: S,
    pub(super) tls: Option<Arc<ServerTls>>,
    pub(super) http2: http2::Builder<TokioExecutor>,
    pub(super) idle: Duration,
    /// Cancelled at shutdown: every connection gets GOAWAY.
    pub(super) goaway: CancellationToken,
    /// Cancelled when the server stops waiting for connections to close: they are dropped.
    pub(super) close: CancellationToken,
}

/// hyper's HTTP/2 server with the keepalive pings of `settings`. Everything else is hyper's
/// default — among them at most 200 concurrent streams per connection and a cap on streams
/// a client may reset (HTTP/2 "rapid reset"), which tonic's server turned off.
pub(super) fn http2_builder(settings: &ConnectionSettings) -> http2::Builder<TokioExecutor> {
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .keep_alive_interval(settings.keepalive_interval)
        .keep_alive_timeout(settings.keepalive_timeout);
    builder
}

/// Serves `stream` until it closes, holding `_slot` (its place under `max_connections`) until
/// then.
pub(super) async fn serve<S, B>(stream: TcpStream, shared: Arc<Shared<S>>, _slot: OwnedSemaphorePermit)
where
    S: GrpcService<B>,
    B: ResponseBody,
{
    let deadline = Instant::now() + PREFACE_TIMEOUT;
    let peer = stream.peer_addr().ok();
    let Some(tls) = &shared.tls else {
        let info = stream.connect_info();
        return serve_http2(PrefaceDeadline::new(stream, deadline), info, peer, &shared).await;
    };
    // The configuration in use when the client connected, even if a reload lands meanwhile.
    let acceptor = tls.acceptor();
    let handshake = tokio::select! {
        () = shared.goaway.cancelled() => return,
        () = shared.close.cancelled() => return,
        handshake = tokio::time::timeout_at(deadline, acceptor.accept(stream)) => handshake,
    };
    match handshake {
        Ok(Ok(stream)) => {
            // `TlsConnectInfo`, with the client's certificates for mTLS.
            let info = stream.connect_info();
            serve_http2(PrefaceDeadline::new(stream, deadline), info, peer, &shared).await;
        }
        Ok(Err(error)) => debug!(?peer, %error, "TLS handshake failed"),
        Err(_) => debug!(?peer, "TLS handshake timed out"),
    }
}

/// HTTP/2 over `io`, every request carrying `info` in its extensions as tonic's server did,
/// until the connection closes: after GOAWAY once idle or at shutdown, or when the client goes.
async fn serve_http2<IO, I, S, B>(io: IO, info: I, peer: Option<SocketAddr>, shared: &Shared<S>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    I: Clone + Send + Sync + 'static,
    S: GrpcService<B>,
    B: ResponseBody,
{
    let streams = Streams::default();
    let service = ServiceBuilder::new()
        .layer(CountStreamsLayer::new(streams.clone()))
        .map_request(move |mut request: http::Request<Incoming>| {
            request.extensions_mut().insert(info.clone());
            request
        })
        .service(shared.service.clone());
    let connection = shared.http2.serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
    tokio::pin!(connection);
    let mut goaway_sent = false;
    loop {
        let quiet = if goaway_sent { GOAWAY_GRACE } else { shared.idle };
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(error) = served {
                    debug!(?peer, %error, "connection ended by an error");
                }
                return;
            }
            () = streams.idle_for(quiet) => {
                if goaway_sent {
                    debug!(?peer, "connection still open after GOAWAY with nothing in flight: closing it");
                    return;
                }
                debug!(?peer, idle_secs = quiet.as_secs(), "idle connection: GOAWAY");
                connection.as_mut().graceful_shutdown();
                goaway_sent = true;
            }
            () = shared.goaway.cancelled(), if !goaway_sent => {
                connection.as_mut().graceful_shutdown();
                goaway_sent = true;
            }
            () = shared.close.cancelled() => return,
        }
    }
}
