//! The store speaks TLS to PostgreSQL and honours `sslmode`: against a throw-away PostgreSQL
//! cluster started by this test with a certificate generated at run time (the machine's own
//! server is left untouched), `verify-full` with the right CA connects, with another CA it is
//! refused, and the server refuses clients that do not use TLS at all.
//!
//! Needs the PostgreSQL server binaries (`pg_config --bindir`) and root (to run them as the
//! `postgres` user); without them the test says SKIPPED, and fails under `CI=true`.

#![allow(clippy::unwrap_used, reason = "test code: a failed step should fail the test loudly")]

use std::path::{Path, PathBuf};
use std::process::Command;

use orchestrator_application::ports::DeliberationStore;
use orchestrator_infra_store::{PostgresStore, StoreOptions};

fn skip(why: &str) {
    orchestrator_test_support::skip(
        "a PostgreSQL cluster of its own",
        "run as root with PostgreSQL's server binaries installed",
        why,
    );
}

fn run(command: &mut Command) -> Result<(), String> {
    let output = command.output().map_err(|e| e.to_string())?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

fn as_postgres(program: &Path) -> Command {
    let mut command = Command::new("runuser");
    command.args(["-u", "postgres", "--"]).arg(program);
    command
}

/// A PostgreSQL cluster in a temp dir, stopped when dropped.
struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = as_postgres(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

/// CA and server certificate for `localhost`, PEM.
fn certificates() -> (String, String, String) {
    let pki = orchestrator_test_support::pki::Pki::new("test-ca");
    let (cert, key) = pki.leaf("localhost");
    (pki.ca_pem, cert, key)
}

fn start_cluster(server_cert: &str, server_key: &str) -> Result<Cluster, String> {
    let bindir = Command::new("pg_config").arg("--bindir").output().map_err(|e| format!("pg_config: {e}"))?;
    let bin = PathBuf::from(String::from_utf8_lossy(&bindir.stdout).trim());
    if !bin.join("initdb").exists() {
        return Err(format!("no initdb in {}", bin.display()));
    }
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let data = dir.path().join("data");
    run(Command::new("chown").arg("postgres").arg(dir.path()))?;
    run(as_postgres(&bin.join("initdb")).arg("-D").arg(&data).args([
        "-U",
        "postgres",
        "--auth=trust",
        "-E",
        "UTF8",
    ]))?;
    std::fs::write(data.join("server.crt"), server_cert).map_err(|e| e.to_string())?;
    std::fs::write(data.join("server.key"), server_key).map_err(|e| e.to_string())?;
    run(Command::new("chown").arg("postgres").arg(data.join("server.crt")).arg(data.join("server.key")))?;
    run(Command::new("chmod").arg("600").arg(data.join("server.key")))?;
    // TLS only: a client without it is refused by the server itself.
    std::fs::write(
        data.join("pg_hba.conf"),
        "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\n",
    )
    .map_err(|e| e.to_string())?;
    // PostgreSQL cannot be handed a bound socket, so a port is picked and, if taken meanwhile,
    // the start is retried on another.
    let mut last = String::new();
    for _ in 0..3 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .map_err(|e| e.to_string())?
            .local_addr()
            .map_err(|e| e.to_string())?
            .port();
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key",
            dir.path().display()
        );
        let started = run(as_postgres(&bin.join("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .args(["-o", &options, "-l"])
            .arg(dir.path().join("log"))
            .args(["-w", "start"]));
        match started {
            Ok(()) => return Ok(Cluster { bin, data, port, _dir: dir }),
            Err(e) => last = e,
        }
    }
    Err(last)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_connects_over_verified_tls_and_sslmode_is_honoured() {
    if Command::new("id").arg("-u").output().map(|o| o.stdout != b"0\n").unwrap_or(true) {
        return skip("not root: cannot start a PostgreSQL cluster as the postgres user");
    }
    let (ca, cert, key) = certificates();
    let (other_ca, _, _) = certificates();
    let cluster = match start_cluster(&cert, &key) {
        Ok(cluster) => cluster,
        Err(why) => return skip(&format!("cannot start a PostgreSQL cluster: {why}")),
    };
    let dir = tempfile::tempdir().unwrap();
    let (ca_path, other_path) = (dir.path().join("ca.pem"), dir.path().join("other.pem"));
    std::fs::write(&ca_path, &ca).unwrap();
    std::fs::write(&other_path, &other_ca).unwrap();
    let url = |mode: &str, root: &Path| {
        format!(
            "postgres://postgres@localhost:{}/postgres?sslmode={mode}&sslrootcert={}",
            cluster.port,
            root.display()
        )
    };
    let options = StoreOptions::default();

    let store = PostgresStore::connect(&url("verify-full", &ca_path), None, &options).await.unwrap();
    store.ping().await.unwrap();
    store.close().await;

    let err = PostgresStore::connect(&url("verify-full", &other_path), None, &options).await.unwrap_err();
    let chain = format!("{err} {:?}", std::error::Error::source(&err));
    assert!(chain.to_lowercase().contains("certificate") || chain.contains("UnknownIssuer"), "{chain}");

    let plain = format!("postgres://postgres@localhost:{}/postgres?sslmode=disable", cluster.port);
    let err = PostgresStore::connect(&plain, None, &options).await.unwrap_err();
    let chain = format!("{err} {:?}", std::error::Error::source(&err));
    assert!(
        chain.contains("no pg_hba.conf entry") || chain.contains("SSL off"),
        "the server refuses plaintext: {chain}"
    );
}
