//! Connection limits on the real binary (issue 17: "connections are never closed"): a
//! connection that sends no HTTP/2 preface, or finishes its TLS handshake and then nothing, is
//! closed; one with no RPC in flight for `idle_connection_secs` gets GOAWAY; a peer that stops
//! answering PINGs is dropped; `max_connections` is enforced and logged; and the health check
//! keeps answering through a flood of silent connections beyond the open-files limit.
//!
//! Every wait is on an event (a frame, the end of the connection, a log line, an answer),
//! bounded by [`BOUND`]: generous, since the server closes silent connections after 10 s.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::process::Child;
use std::sync::Arc;
use std::time::Duration;

use orchestrator_test_support::pki::Pki;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use support::raw_http2::{self, DATA, END_STREAM_OR_ACK, GOAWAY, PING, RST_STREAM};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

/// How long a test waits for what the server must do within seconds.
const BOUND: Duration = Duration::from_secs(60);

/// A fake model, so the server starts as it would in production, and a directory for its
/// database (and whatever else a test writes).
async fn model_and_dir() -> (wiremock::MockServer, tempfile::TempDir) {
    let model = support::slow_model(Duration::ZERO).await;
    support::serve_models(&model, &["slow-model"]).await;
    (model, tempfile::tempdir().unwrap())
}

fn database(dir: &Path) -> String {
    format!("sqlite:{}", dir.join("orchestrator.db").display())
}

/// The server process, killed when the test ends, failed or not: an orphan would keep the
/// test's stderr open (and its port) after the test binary exits.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads until the server closes the connection.
async fn read_until_closed(io: &mut (impl AsyncRead + Unpin)) {
    let mut buf = [0; 4096];
    loop {
        match io.read(&mut buf).await {
            Ok(0) => return,
            Ok(_) => {}
            Err(error) if raw_http2::closed(&error) => return,
            Err(error) => panic!("reading: {error}"),
        }
    }
}

/// A health client over a new connection.
async fn health_client(port: u16) -> HealthClient<Channel> {
    let channel = Channel::from_shared(format!("http://127.0.0.1:{port}")).unwrap().connect().await.unwrap();
    HealthClient::new(channel)
}

/// A health check on a new connection.
async fn health(port: u16) -> HealthCheckResponse {
    let mut client = health_client(port).await;
    client.check(HealthCheckRequest::default()).await.unwrap().into_inner()
}

/// Waits until the server's log holds `needle`.
async fn wait_for_log(log: &Path, needle: &str) -> String {
    support::poll(&format!("no {needle:?} in the server's log"), BOUND, async || {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        text.contains(needle).then_some(text)
    })
    .await
}

#[tokio::test]
async fn a_connection_that_sends_no_http2_preface_is_closed() {
    let (model, dir) = model_and_dir().await;
    let (server, port) = support::start_server(&database(dir.path()), &model.uri(), &[]);
    let _server = Server(server);
    let mut silent = TcpStream::connect(("127.0.0.1", port)).await.unwrap();

    let closed = timeout(BOUND, read_until_closed(&mut silent)).await;

    assert!(closed.is_ok(), "a connection that sent nothing was still open after {BOUND:?}");
}

#[tokio::test]
async fn a_tls_client_that_sends_nothing_after_its_handshake_is_closed() {
    let (model, dir) = model_and_dir().await;
    let pki = Pki::new("connections-ca");
    let (cert, key) = pki.leaf("localhost");
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert).unwrap();
    std::fs::write(&key_path, key).unwrap();
    let (cert_env, key_env) = (cert_path.display().to_string(), key_path.display().to_string());
    let (server, port) = support::start_server(
        &database(dir.path()),
        &model.uri(),
        &[("ORCHESTRATOR_TLS_CERT", &cert_env), ("ORCHESTRATOR_TLS_KEY", &key_env)],
    );
    let _server = Server(server);
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).unwrap()).unwrap();
    let mut config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let server_name = ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(server_name, tcp).await.unwrap();

    let closed = timeout(BOUND, read_until_closed(&mut tls)).await;

    assert!(
        closed.is_ok(),
        "a TLS client that sent nothing after its handshake was still connected after {BOUND:?}"
    );
}

#[tokio::test]
async fn a_connection_gets_goaway_once_no_rpc_has_been_in_flight_for_idle_connection_secs() {
    let (model, dir) = model_and_dir().await;
    let idle = Duration::from_secs(1);
    let (server, port) = support::start_server(
        &database(dir.path()),
        &model.uri(),
        &[("ORCHESTRATOR_IDLE_CONNECTION_SECS", "1")],
    );
    let _server = Server(server);
    let mut connection = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    // Health Watch: a server-streaming RPC that stays open after its first answer.
    let watch = raw_http2::grpc_call(1, "/grpc.health.v1.Health/Watch", &[]);
    connection.write_all(&[raw_http2::hello(), watch].concat()).await.unwrap();
    let serving = raw_http2::next_frame(&mut connection, true, |f| f.kind == DATA && f.stream == 1);
    let serving = timeout(BOUND, serving).await.unwrap().expect("the server closed before answering");
    assert_eq!(serving.payload, [0, 0, 0, 0, 2, 0x08, 0x01], "SERVING");

    // While the stream is open the connection is not idle, however long it lasts.
    let early = raw_http2::next_frame(&mut connection, true, |f| f.kind == GOAWAY);
    assert!(timeout(idle * 3, early).await.is_err(), "GOAWAY while an RPC was in flight");
    // The client ends the RPC: from then on nothing is in flight.
    let cancel = raw_http2::frame(RST_STREAM, 0, 1, &0x8_u32.to_be_bytes());
    connection.write_all(&cancel).await.unwrap();

    let goaway = raw_http2::next_frame(&mut connection, true, |f| f.kind == GOAWAY);
    let goaway =
        timeout(BOUND, goaway).await.expect("no GOAWAY within the bound").expect("closed without GOAWAY");
    assert_eq!(goaway.payload[4..8], [0, 0, 0, 0], "GOAWAY with NO_ERROR");
    let closed = timeout(BOUND, raw_http2::next_frame(&mut connection, true, |_| false)).await;
    assert!(closed.is_ok(), "the connection stayed open after GOAWAY");
}

#[tokio::test]
async fn a_peer_that_stops_answering_pings_is_dropped() {
    let (model, dir) = model_and_dir().await;
    let (server, port) = support::start_server(
        &database(dir.path()),
        &model.uri(),
        &[
            ("ORCHESTRATOR_HTTP2_KEEPALIVE_INTERVAL_SECS", "1"),
            ("ORCHESTRATOR_HTTP2_KEEPALIVE_TIMEOUT_SECS", "1"),
        ],
    );
    let _server = Server(server);
    let mut connection = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    connection.write_all(&raw_http2::hello()).await.unwrap();

    let ping =
        raw_http2::next_frame(&mut connection, false, |f| f.kind == PING && f.flags & END_STREAM_OR_ACK == 0);
    let ping = timeout(BOUND, ping).await.expect("no PING from the server within the bound");
    assert!(ping.is_some(), "the connection was closed before the server sent a PING");
    let closed = timeout(BOUND, raw_http2::next_frame(&mut connection, false, |_| false)).await;

    assert!(closed.is_ok(), "a peer that never answered the PING was still connected after {BOUND:?}");
}

#[tokio::test]
async fn at_max_connections_new_clients_wait_for_a_slot_and_the_limit_is_logged() {
    let (model, dir) = model_and_dir().await;
    let log = dir.path().join("server.log");
    let (server, port) = support::start_server_logged(
        &database(dir.path()),
        &model.uri(),
        &[("ORCHESTRATOR_MAX_CONNECTIONS", "20")],
        &log,
    );
    let _server = Server(server);
    let mut silent = Vec::new();
    for _ in 0..30 {
        silent.push(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
    }

    let text = wait_for_log(&log, "max_connections reached").await;
    let line = text.lines().find(|line| line.contains("max_connections reached")).unwrap();
    assert!(line.contains("max_connections=20"), "{line}");
    // Behind 10 silent connections still waiting: answered once the first 20 time out.
    let answer = timeout(BOUND, health(port)).await.expect("no health answer within the bound");
    assert_eq!(answer.status(), ServingStatus::Serving);
}

#[tokio::test]
async fn health_answers_through_a_flood_of_silent_connections_beyond_the_open_files_limit() {
    let (model, dir) = model_and_dir().await;
    let log = dir.path().join("server.log");
    let (server, port) =
        support::start_server_logged_with_open_files(&database(dir.path()), &model.uri(), &[], &log, 256);
    let _server = Server(server);
    let mut established = health_client(port).await;

    // More silent connections than the process may open files.
    let mut flood = Vec::new();
    for _ in 0..300 {
        flood.push(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
    }

    let answer = timeout(BOUND, established.check(HealthCheckRequest::default())).await;
    let answer = answer.expect("an established connection got no health answer").unwrap();
    assert_eq!(answer.into_inner().status(), ServingStatus::Serving);
    let answer = timeout(BOUND, health(port)).await.expect("a new connection got no health answer");
    assert_eq!(answer.status(), ServingStatus::Serving);
    let text = wait_for_log(&log, "max_connections reached").await;
    let line = text.lines().find(|line| line.contains("connection limits")).unwrap();
    assert!(line.contains("open_files_limit=256"), "max_connections is sized to the limit: {line}");
}
