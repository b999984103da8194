//! TLS for the gRPC listener, with certificates that can change while the server runs.
//!
//! Fleets rotate certificates often (cert-manager renews weeks ahead of expiry, meshes daily),
//! and a restart to pick up a renewed file interrupts deliberations for nothing. So the
//! listener does its own handshakes with a rustls configuration it can swap: every
//! `tls_reload_interval_secs`, and on SIGHUP, it looks at `tls_cert`, `tls_key` and
//! `tls_client_ca`; when one changed it builds a new configuration from all three. New
//! connections get it; open ones keep the certificate they were made with. Files that do not
//! load together (a key that does not match, a file caught half-written) are refused with a
//! warning naming the key, and the previous certificate stays in use.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use rustls::RootCertStore;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::signal::unix::Signal;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Config;
use crate::error::{Result, ServerError};

/// What a reload found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// No file changed since the last load.
    Unchanged,
    /// The files changed and the new configuration is in use for new connections.
    Reloaded,
    /// The files changed but do not load; the previous configuration stays in use.
    Refused(String),
}

/// The files a configuration is made from.
#[derive(Debug, Clone)]
struct TlsFiles {
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
}

impl TlsFiles {
    /// Modification time and length of each file: what tells a changed file from the same one.
    fn stamps(&self) -> Vec<Option<(SystemTime, u64)>> {
        let stamp =
            |path: &Path| std::fs::metadata(path).ok().and_then(|m| Some((m.modified().ok()?, m.len())));
        let mut stamps = vec![stamp(&self.cert), stamp(&self.key)];
        if let Some(ca) = &self.client_ca {
            stamps.push(stamp(ca));
        }
        stamps
    }

    /// A rustls configuration for gRPC (HTTP/2) from the three files; client certificates are
    /// required when a client CA is given.
    fn server_config(&self) -> Result<ServerConfig> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert)
            .and_then(Iterator::collect)
            .map_err(|e| ServerError::config("tls_cert", format!("{}: {e}", self.cert.display())))?;
        if certs.is_empty() {
            return Err(ServerError::config(
                "tls_cert",
                format!("{}: no certificate in it", self.cert.display()),
            ));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .map_err(|e| ServerError::config("tls_key", format!("{}: {e}", self.key.display())))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| ServerError::config("tls_cert", e.to_string()))?;
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for cert in CertificateDer::pem_file_iter(ca)
                    .map_err(|e| ServerError::config("tls_client_ca", format!("{}: {e}", ca.display())))?
                {
                    let cert = cert.map_err(|e| {
                        ServerError::config("tls_client_ca", format!("{}: {e}", ca.display()))
                    })?;
                    roots.add(cert).map_err(|e| {
                        ServerError::config("tls_client_ca", format!("{}: {e}", ca.display()))
                    })?;
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .map_err(|e| ServerError::config("tls_client_ca", format!("{}: {e}", ca.display())))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder
            .with_single_cert(certs, key)
            .map_err(|e| ServerError::config("tls_key", format!("does not fit tls_cert: {e}")))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }
}

/// The listener's TLS: the configuration in use and how to renew it.
#[derive(Debug)]
pub struct ServerTls {
    files: TlsFiles,
    current: RwLock<Arc<ServerConfig>>,
    /// The stamps of the files the current configuration was loaded from, or last refused.
    stamps: Mutex<Vec<Option<(SystemTime, u64)>>>,
}

impl ServerTls {
    /// The listener's TLS when `tls_cert` and `tls_key` are set; with `tls_client_ca`, clients
    /// must present a certificate it signed.
    ///
    /// # Errors
    /// A [`ServerError::Config`] naming the key of a missing, unreadable or unusable file, or
    /// of a client CA without a server certificate.
    pub fn load(config: &Config) -> Result<Option<Arc<Self>>> {
        let (cert, key) = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => (cert.clone(), key.clone()),
            (None, None) => {
                if config.tls_client_ca.is_some() {
                    return Err(ServerError::config("tls_client_ca", "needs tls_cert and tls_key too"));
                }
                return Ok(None);
            }
            (Some(_), None) => return Err(ServerError::config("tls_key", "required with tls_cert")),
            (None, Some(_)) => return Err(ServerError::config("tls_cert", "required with tls_key")),
        };
        let files = TlsFiles { cert, key, client_ca: config.tls_client_ca.clone() };
        let stamps = files.stamps();
        let server_config = files.server_config()?;
        match &files.client_ca {
            Some(ca) => info!(client_ca = %ca.display(), "TLS on, client certificates required"),
            None => info!(cert = %files.cert.display(), "TLS on"),
        }
        Ok(Some(Arc::new(Self {
            files,
            current: RwLock::new(Arc::new(server_config)),
            stamps: Mutex::new(stamps),
        })))
    }

    /// Loads the files again when one changed since the last look.
    pub fn reload_if_changed(&self) -> Reload {
        let stamps = self.files.stamps();
        let mut seen = self.stamps.lock().unwrap_or_else(PoisonError::into_inner);
        if *seen == stamps {
            return Reload::Unchanged;
        }
        // Refused files are not retried until they change again: one warning per bad write.
        *seen = stamps;
        match self.files.server_config() {
            Ok(config) => {
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(config);
                info!(cert = %self.files.cert.display(), "TLS certificate reloaded: new connections use it");
                Reload::Reloaded
            }
            Err(error) => {
                warn!(%error, "TLS files changed but do not load: the previous certificate stays in use");
                Reload::Refused(error.to_string())
            }
        }
    }

    /// The acceptor for the next connection, over the configuration in use. The listener
    /// ([`crate::serving`]) runs each handshake on the connection's own task, bounded by the
    /// preface timeout.
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner)))
    }

    /// Looks for changed files every `interval` (never when zero) and on each signal of
    /// `hangups` (SIGHUP, registered by the caller before serving), until `stop`.
    pub async fn watch(
        self: Arc<Self>,
        interval: Duration,
        mut hangups: Option<Signal>,
        stop: CancellationToken,
    ) {
        // No interval (zero): the files are looked at on SIGHUP only.
        let mut ticks = (!interval.is_zero()).then(|| {
            let start = tokio::time::Instant::now() + interval;
            let mut ticks = tokio::time::interval_at(start, interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks
        });
        loop {
            let hangup = async {
                match hangups.as_mut() {
                    Some(hangups) => hangups.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = stop.cancelled() => return,
                _ = hangup => {
                    info!("SIGHUP: looking at the TLS files");
                }
                Some(_) = async { Some(ticks.as_mut()?.tick().await) } => {}
            }
            let this = Arc::clone(&self);
            // Reading files and parsing keys blocks: off the runtime's worker threads.
            if let Err(error) = tokio::task::spawn_blocking(move || this.reload_if_changed()).await {
                warn!(%error, "the TLS reload task failed");
            }
        }
    }
}

/// Without TLS there is nothing to reload: SIGHUP is logged and ignored, where its default
/// action would kill the server (an operator's reflex after renewing files must not stop it).
pub async fn ignore_hangups(mut hangups: Signal, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = hangups.recv() => info!("SIGHUP: nothing to reload (TLS is off)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config { listen: "127.0.0.1:1".parse().unwrap(), ..Config::default() }
    }

    #[test]
    fn tls_needs_both_halves_of_the_identity() {
        assert!(ServerTls::load(&config()).unwrap().is_none());
        let half = Config { tls_cert: Some("/x.pem".into()), ..config() };
        assert_eq!(ServerTls::load(&half).unwrap_err().to_string(), "tls_key: required with tls_cert");
        let ca_only = Config { tls_client_ca: Some("/ca.pem".into()), ..config() };
        assert_eq!(
            ServerTls::load(&ca_only).unwrap_err().to_string(),
            "tls_client_ca: needs tls_cert and tls_key too"
        );
    }

    /// A certificate for `localhost` signed by a new CA: (certificate, key) in PEM.
    fn leaf(ca_name: &str) -> (String, String) {
        orchestrator_test_support::pki::Pki::new(ca_name).leaf("localhost")
    }

    #[test]
    fn changed_files_are_reloaded_and_files_that_do_not_fit_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let (cert, key) = leaf("first-ca");
        std::fs::write(&cert_path, &cert).unwrap();
        std::fs::write(&key_path, &key).unwrap();
        let config =
            Config { tls_cert: Some(cert_path.clone()), tls_key: Some(key_path.clone()), ..config() };
        let tls = ServerTls::load(&config).unwrap().unwrap();
        assert_eq!(tls.reload_if_changed(), Reload::Unchanged);

        // A new certificate whose key is not written yet: refused, the old one stays.
        let (new_cert, new_key) = leaf("second-ca");
        std::fs::write(&cert_path, format!("{new_cert}\n")).unwrap();
        let before = Arc::clone(&tls.current.read().unwrap());
        match tls.reload_if_changed() {
            Reload::Refused(why) => assert!(why.starts_with("tls_key: does not fit tls_cert"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert!(Arc::ptr_eq(&before, &tls.current.read().unwrap()), "the previous configuration stays");
        assert_eq!(tls.reload_if_changed(), Reload::Unchanged, "refused files are not retried unchanged");

        std::fs::write(&key_path, format!("{new_key}\n")).unwrap();
        assert_eq!(tls.reload_if_changed(), Reload::Reloaded);
        assert!(!Arc::ptr_eq(&before, &tls.current.read().unwrap()));
    }
}
