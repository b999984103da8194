//! Logging: `RUST_LOG` filters (default `info`), pretty or JSON lines by configuration; with
//! the `otlp` feature and `otlp_endpoint` set, the same spans (`job`, `deliberation`,
//! `llm_call`, each RPC's, with their `task_id`) are also exported to an OpenTelemetry
//! collector over OTLP/HTTP.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::config::{Config, LogFormat};
use crate::error::Result;

/// What must outlive the subscriber: the span exporter, flushed by [`Telemetry::shutdown`].
#[derive(Debug, Default)]
pub struct Telemetry {
    #[cfg(feature = "otlp")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Telemetry {
    /// Sends the spans still buffered (OTLP); a no-op without an exporter.
    pub fn shutdown(self) {
        #[cfg(feature = "otlp")]
        if let Some(provider) = self.provider
            && let Err(error) = provider.shutdown()
        {
            tracing::warn!(%error, "could not flush the OTLP span exporter");
        }
    }
}

/// Installs the global subscriber; a second call is a no-op (tests start several servers).
pub fn init_subscriber(format: LogFormat) {
    let _ = Registry::default().with(log_lines(format)).with(filter()).try_init();
}

/// Installs the global subscriber for `config`: log lines as [`init_subscriber`], plus the
/// OTLP exporter when `otlp_endpoint` is set.
///
/// # Errors
/// [`ServerError::Config`](crate::ServerError::Config) on `otlp_endpoint` when the exporter
/// cannot be built, or when this binary was built without the `otlp` feature.
pub fn init_telemetry(config: &Config) -> Result<Telemetry> {
    let Some(endpoint) = &config.otlp_endpoint else {
        init_subscriber(config.log_format);
        return Ok(Telemetry::default());
    };
    otlp::init(config.log_format, endpoint)
}

fn filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
}

fn log_lines(format: LogFormat) -> Box<dyn Layer<Registry> + Send + Sync> {
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let lines = tracing_subscriber::fmt::layer().with_ansi(ansi).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => lines.json().flatten_event(true).boxed(),
        LogFormat::Pretty => lines.compact().boxed(),
    }
}

#[cfg(feature = "otlp")]
mod otlp {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::{SpanExporter, WithExportConfig};
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    use super::{Telemetry, filter, log_lines};
    use crate::config::LogFormat;
    use crate::error::{Result, ServerError};

    /// The collector's path for spans, appended to `otlp_endpoint` (as the OpenTelemetry spec
    /// does with `OTEL_EXPORTER_OTLP_ENDPOINT`).
    const TRACES_PATH: &str = "/v1/traces";

    pub(super) fn init(format: LogFormat, endpoint: &str) -> Result<Telemetry> {
        // reqwest is built without a bundled crypto provider: https needs ring installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let url = format!("{}{TRACES_PATH}", endpoint.trim_end_matches('/'));
        let exporter = SpanExporter::builder()
            .with_http()
            .with_endpoint(url)
            .build()
            .map_err(|e| ServerError::config("otlp_endpoint", e.to_string()))?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(Resource::builder().with_service_name("orchestrator").build())
            .build();
        let spans = tracing_opentelemetry::layer().with_tracer(provider.tracer("orchestrator"));
        let _ = tracing_subscriber::registry().with(log_lines(format)).with(spans).with(filter()).try_init();
        tracing::info!(endpoint, "exporting spans over OTLP/HTTP");
        Ok(Telemetry { provider: Some(provider) })
    }
}

#[cfg(not(feature = "otlp"))]
mod otlp {
    use super::Telemetry;
    use crate::config::LogFormat;
    use crate::error::{Result, ServerError};

    pub(super) fn init(_format: LogFormat, _endpoint: &str) -> Result<Telemetry> {
        Err(ServerError::config(
            "otlp_endpoint",
            "this binary was built without OTLP support; rebuild with `cargo build --features otlp`",
        ))
    }
}

#[cfg(all(test, not(feature = "otlp")))]
mod tests {
    use super::*;

    #[test]
    fn an_otlp_endpoint_without_the_feature_is_a_configuration_error() {
        let config = Config { otlp_endpoint: Some("http://127.0.0.1:4318".into()), ..Config::default() };
        let error = init_telemetry(&config).unwrap_err().to_string();
        assert!(error.starts_with("otlp_endpoint: this binary was built without OTLP support"), "{error}");
    }
}
