//! `GET /metrics` in the Prometheus text format, on `metrics_listen` (off when unset).
//!
//! The crates record through the `metrics` facade (`orchestrator_application::observability`,
//! `orchestrator_infra_llm::observability`, `orchestrator_infra_store::observability` name
//! every metric); this module installs the Prometheus recorder behind it, once per process,
//! and serves what it holds over plain HTTP/1.1 with hyper, which tonic brings along already —
//! the exporter's own listener would pull in more and could not report the port it bound.
//! The job gauges are read from [`Jobs`] at each scrape, so they are never stale.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use orchestrator_application::Jobs;
use orchestrator_application::observability;
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

use crate::error::{Result, ServerError};

/// Bucket bounds of every histogram, in seconds: from a fast scripted phase (milliseconds) to
/// a long deliberation on a slow model (minutes).
const BUCKETS_SECONDS: &[f64] =
    &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0];

/// The content type of the Prometheus text exposition format.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The process's recorder: the `metrics` facade takes one global recorder, so a second server
/// in the same process (tests) shares the first one's.
static RECORDER: Mutex<Option<PrometheusHandle>> = Mutex::new(None);

/// Installs the Prometheus recorder as the process's `metrics` recorder, or returns the one
/// installed already.
///
/// # Errors
/// [`ServerError::Config`] on `metrics_listen` when another recorder was installed first.
fn recorder() -> Result<PrometheusHandle> {
    let mut installed = RECORDER.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(handle) = installed.as_ref() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets(BUCKETS_SECONDS)
        .and_then(PrometheusBuilder::install_recorder)
        .map_err(|e| ServerError::config("metrics_listen", format!("cannot install the recorder: {e}")))?;
    *installed = Some(handle.clone());
    Ok(handle)
}

/// The bound `/metrics` listener, ready to serve.
pub struct MetricsEndpoint {
    listener: TcpListener,
    local_addr: SocketAddr,
    handle: PrometheusHandle,
}

impl std::fmt::Debug for MetricsEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsEndpoint").field("local_addr", &self.local_addr).finish_non_exhaustive()
    }
}

impl MetricsEndpoint {
    /// Installs the recorder and binds `addr` (port 0 picks a free port).
    ///
    /// # Errors
    /// [`ServerError::Bind`] when the address cannot be bound; see [`recorder`].
    pub async fn bind(addr: SocketAddr) -> Result<Self> {
        let handle = recorder()?;
        let bind_error = |source| ServerError::Bind { addr: addr.to_string(), source };
        let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        Ok(Self { listener, local_addr, handle })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves scrapes, reading the job gauges from `jobs`, until the future is dropped (the
    /// server aborts it when it stops).
    pub async fn serve(self, jobs: Arc<Jobs>) {
        info!(addr = %self.local_addr, "serving Prometheus metrics at /metrics");
        loop {
            let stream = match self.listener.accept().await {
                Ok((stream, _peer)) => stream,
                Err(error) => {
                    // Out of file descriptors, say: back off instead of spinning.
                    warn!(%error, "cannot accept a metrics connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let handle = self.handle.clone();
            let jobs = Arc::clone(&jobs);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                    let response = respond(&request, &handle, &jobs);
                    async move { Ok::<_, Infallible>(response) }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service);
                if let Err(error) = connection.await {
                    debug!(%error, "metrics connection ended with an error");
                }
            });
        }
    }
}

/// `GET /metrics` renders the recorder; anything else is 404 (or 405 for another method).
fn respond<B>(request: &Request<B>, handle: &PrometheusHandle, jobs: &Jobs) -> Response<Full<Bytes>> {
    let status = match (request.method(), request.uri().path()) {
        (&Method::GET, "/metrics") => {
            observability::job_load(jobs.load());
            handle.run_upkeep();
            let mut response = Response::new(Full::new(Bytes::from(handle.render())));
            response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(TEXT_FORMAT));
            return response;
        }
        (_, "/metrics") => StatusCode::METHOD_NOT_ALLOWED,
        _ => StatusCode::NOT_FOUND,
    };
    let mut response = Response::new(Full::new(Bytes::from_static(b"")));
    *response.status_mut() = status;
    response
}
