//! The gRPC listener's connections, served with the limits of a server reachable from the
//! internet.
//!
//! tonic's `Server` keeps every connection it accepts until the client leaves: a client that
//! connects and sends nothing, or finishes its TLS handshake and stops, holds a file descriptor
//! for good, and enough of them (1,100 under an open-files limit of 1,024) leave the process
//! unable to open anything — new connections, the database, the health check's. Its builder can
//! neither bound the wait for the HTTP/2 preface nor send GOAWAY to an idle connection, so the
//! listener serves its connections here, with hyper's HTTP/2 server (what tonic runs
//! underneath):
//!
//! - **a limit**: at most `max_connections` at once ([`limit`]; by default sized to the
//!   open-files limit, [`open_files`]). At the limit the accept loop waits: new clients queue in
//!   the kernel's backlog rather than take the descriptors the database and the model servers
//!   need, and one WARN line names `max_connections`;
//! - **a preface deadline**: [`PREFACE_TIMEOUT`] from accept for the TLS handshake and the
//!   HTTP/2 preface ([`preface`]); a connection that does not speak HTTP/2 by then is closed;
//! - **idle connections** with no RPC in flight for `idle_connection_secs` get GOAWAY
//!   ([`streams`]), and are closed if the client does not close them within
//!   [`GOAWAY_GRACE`];
//! - **keepalive**: an HTTP/2 PING after `http2_keepalive_interval_secs` without a frame from
//!   the client, and the connection dropped as dead when no answer comes within
//!   `http2_keepalive_timeout_secs`.
//!
//! Every request carries tonic's connection info — `TcpConnectInfo`, or `TlsConnectInfo` with
//! the client's certificates — as tonic's server provided it (the mTLS authentication reads it).
//! One thing tonic's server did is left out: enforcing a request's `grpc-timeout` on the server
//! side. gRPC clients enforce their own deadlines and reset the stream when one passes, which
//! drops the handler here just the same.

mod connection;
pub(crate) mod limit;
pub(crate) mod open_files;
pub(crate) mod preface;
pub(crate) mod streams;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::server::TcpIncoming;
use tracing::{debug, info};

use crate::config::Config;
use crate::tls::ServerTls;
use limit::ConnectionLimit;

/// How long a new connection has to finish its TLS handshake (when TLS is on) and send the
/// HTTP/2 preface. A gRPC client sends the preface as soon as it connects; 10 s is generous
/// for a slow network and short enough that silent connections cannot pile up.
pub const PREFACE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a client has, after a GOAWAY and with no RPC in flight, to close the connection
/// itself before the server drops it (a client that never answers the GOAWAY's PING would
/// otherwise keep it open).
pub const GOAWAY_GRACE: Duration = Duration::from_secs(10);

/// TCP keepalive probes on accepted connections: the kernel's check for a vanished peer,
/// beneath HTTP/2's own pings.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// What bounds each connection: resolved from the configuration once, at start-up.
#[derive(Debug, Clone)]
pub struct ConnectionSettings {
    /// Connections served at once.
    pub max_connections: usize,
    /// No RPC in flight for this long: GOAWAY.
    pub idle: Duration,
    /// No frame from the client for this long: an HTTP/2 PING.
    pub keepalive_interval: Duration,
    /// No answer to the PING within this: the connection is dropped.
    pub keepalive_timeout: Duration,
}

impl ConnectionSettings {
    /// The settings `config` asks for, with `max_connections` sized to the open-files limit
    /// when it is 0, and a start-up line saying what they are.
    pub fn from_config(config: &Config) -> Self {
        let sizing = open_files::max_connections(config);
        let settings = Self {
            max_connections: sizing.max_connections,
            idle: config.idle_connection(),
            keepalive_interval: config.http2_keepalive_interval(),
            keepalive_timeout: config.http2_keepalive_timeout(),
        };
        info!(
            max_connections = sizing.max_connections,
            sized = if config.max_connections == 0 { "to the open-files limit" } else { "as configured" },
            open_files_limit = sizing.open_files_limit,
            reserve = sizing.reserve,
            idle_connection_secs = settings.idle.as_secs(),
            preface_timeout_secs = PREFACE_TIMEOUT.as_secs(),
            http2_keepalive_interval_secs = settings.keepalive_interval.as_secs(),
            http2_keepalive_timeout_secs = settings.keepalive_timeout.as_secs(),
            "connection limits"
        );
        settings
    }
}

/// What the listener serves: a tower service of HTTP/2 requests (tonic's router with its
/// layers), cloned for every connection. (A trait alias in all but name: stable Rust repeats
/// the bounds on the blanket impl, so they are kept to one `HttpService` and `Shared` each.)
pub trait GrpcService<B>: HttpService<B> + Shared {}

impl<S: HttpService<B> + Shared, B> GrpcService<B> for S {}

/// A service of HTTP requests that never fails (errors are gRPC statuses) and whose futures
/// can move between threads.
pub trait HttpService<B>:
    tower::Service<
        http::Request<Incoming>,
        Response = http::Response<B>,
        Error = Infallible,
        Future: Send + 'static,
    >
{
}

impl<S, B> HttpService<B> for S where
    S: tower::Service<
            http::Request<Incoming>,
            Response = http::Response<B>,
            Error = Infallible,
            Future: Send + 'static,
        >
{
}

/// Cloned into every connection's task.
pub trait Shared: Clone + Send + Sync + 'static {}

impl<T: Clone + Send + Sync + 'static> Shared for T {}

/// The body of a response the listener writes.
pub trait ResponseBody:
    hyper::body::Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>>
    + Send
    + Unpin
    + 'static
{
}

impl<B> ResponseBody for B where
    B: hyper::body::Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>>
        + Send
        + Unpin
        + 'static
{
}

/// Serves the connections of `listener` with `service` until `signal` resolves; then stops
/// accepting (the port is released at once), sends every connection GOAWAY and resolves once
/// they have all closed — RPCs in flight are answered first. Dropping the returned future
/// closes the connections still open.
///
/// `service` is the whole gRPC surface, with its layers; each connection gets a clone.
pub async fn serve<S, B>(
    listener: TcpListener,
    tls: Option<Arc<ServerTls>>,
    service: S,
    settings: ConnectionSettings,
    signal: impl Future<Output = ()>,
) where
    S: GrpcService<B>,
    B: ResponseBody,
{
    // Small unary replies must not wait for Nagle's algorithm (40 ms with delayed ACKs).
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true)).with_keepalive(Some(TCP_KEEPALIVE));
    let connections = TaskTracker::new();
    let goaway = CancellationToken::new();
    let close = CancellationToken::new();
    // Whoever stops waiting for the connections to close (run_until, after its margin) drops
    // this future: the connections still open are closed then.
    let _close_on_drop = close.clone().drop_guard();
    let shared = Arc::new(connection::Shared {
        service,
        tls,
        http2: connection::http2_builder(&settings),
        idle: settings.idle,
        goaway: goaway.clone(),
        close: close.clone(),
    });
    let mut limit = ConnectionLimit::new(settings.max_connections);
    tokio::pin!(signal);
    {
        // Scoped so the listener closes as soon as accepting stops: new clients are refused
        // rather than left waiting in a backlog nobody accepts from.
        let mut incoming = incoming;
        loop {
            let permit = tokio::select! {
                biased;
                () = &mut signal => break,
                permit = limit.acquire() => permit,
            };
            let accepted = tokio::select! {
                biased;
                () = &mut signal => break,
                accepted = incoming.next() => accepted,
            };
            match accepted {
                Some(Ok(stream)) => {
                    connections.spawn(connection::serve(stream, Arc::clone(&shared), permit));
                }
                Some(Err(error)) => {
                    if limit::out_of_descriptors(&error) {
                        // The connection stays in the backlog: retrying at once would spin.
                        limit.warn_out_of_descriptors(&error);
                        tokio::select! {
                            biased;
                            () = &mut signal => break,
                            () = tokio::time::sleep(limit::ACCEPT_BACKOFF) => {}
                        }
                    } else {
                        debug!(%error, "accepting a TCP connection failed");
                    }
                }
                None => break,
            }
        }
    }
    goaway.cancel();
    connections.close();
    if !connections.is_empty() {
        debug!(open = connections.len(), "GOAWAY sent to every connection; waiting for them to close");
    }
    connections.wait().await;
}
