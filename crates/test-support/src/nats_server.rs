//! A NATS server of the test's own: `nats-server -js` (Debian package `nats-server`) on a free
//! loopback port with its JetStream store in a temp dir, so a test can kill it mid-flight and
//! start it again on the same port with the same store — the drills where NATS blinks.
//!
//! [`NatsServer::start`] waits until the server accepts connections (a TCP connect and the
//! server's `INFO` line), never a fixed sleep. Without the binary the test says SKIPPED
//! through [`crate::skip`] (a failure with `CI=true`).

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The Debian package's binary; `ORCHESTRATOR_TEST_NATS_SERVER` names another.
const DEFAULT_BINARY: &str = "nats-server";
/// How long a server may take to accept connections.
const STARTUP: Duration = Duration::from_secs(15);

/// A running `nats-server -js`, killed when dropped.
#[derive(Debug)]
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    store: PathBuf,
    /// Keeps the store dir alive across restarts, removed on drop.
    _dir: tempfile::TempDir,
    binary: String,
}

impl NatsServer {
    /// Starts one on a free port with a fresh JetStream store, or `None` (after printing
    /// SKIPPED) when `nats-server` is not installed.
    ///
    /// # Panics
    /// When the server starts but does not accept connections in time, or with `CI=true`
    /// when the binary is missing.
    pub fn start() -> Option<Self> {
        let binary =
            std::env::var("ORCHESTRATOR_TEST_NATS_SERVER").unwrap_or_else(|_| DEFAULT_BINARY.to_owned());
        if let Err(error) = Command::new(&binary).arg("--version").output() {
            crate::skip("nats-server", "install the Debian package nats-server", error);
            return None;
        }
        let dir = tempfile::tempdir().expect("a temp dir for the JetStream store");
        let store = dir.path().join("jetstream");
        let port = free_port();
        let mut server = Self { child: None, port, store, _dir: dir, binary };
        server.restart();
        Some(server)
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The JetStream store dir (kept across [`NatsServer::kill`] and [`NatsServer::restart`]).
    pub fn store(&self) -> &Path {
        &self.store
    }

    /// Kills the server at once (SIGKILL) and waits for it to be gone: clients see the
    /// connection drop, as when a broker's host dies.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server (again) on the same port and store, and waits until it accepts
    /// connections. A killed server's port is free again at once (it was listening, not
    /// connected), so the same address works.
    ///
    /// # Panics
    /// When it does not come up within 15 s.
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new(&self.binary)
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string(), "-sd"])
            .arg(&self.store)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", self.binary));
        self.child = Some(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + STARTUP;
        while Instant::now() < deadline {
            if let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let mut line = String::new();
                if BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with("INFO ") {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("nats-server on port {} did not accept connections within {STARTUP:?}", self.port);
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A loopback port nothing listens on right now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    listener.local_addr().expect("the bound address").port()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_comes_up_goes_away_and_comes_back_on_its_port() {
        let Some(mut server) = NatsServer::start() else { return };
        let addr = SocketAddr::from(([127, 0, 0, 1], server.port()));
        assert!(TcpStream::connect(addr).is_ok());
        server.kill();
        assert!(TcpStream::connect(addr).is_err(), "gone once killed");
        server.restart();
        assert!(TcpStream::connect(addr).is_ok());
        assert!(server.store().exists(), "JetStream keeps its store across restarts");
        assert!(server.url().starts_with("nats://127.0.0.1:"));
    }
}
