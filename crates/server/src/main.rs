//! The orchestrator binary: read configuration, start telemetry, serve until SIGTERM/ctrl-c.

use std::process::ExitCode;

use orchestrator_server::{Application, Config, shutdown_signal, telemetry};

#[tokio::main]
async fn main() -> ExitCode {
    let config = match Config::load() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("orchestrator: configuration error: {error}");
            return ExitCode::from(2);
        }
    };
    telemetry::init_subscriber(config.log_format);
    let app = match Application::build(config).await {
        Ok(app) => app,
        Err(error) => {
            tracing::error!(%error, "startup failed");
            return ExitCode::FAILURE;
        }
    };
    match app.run_until(shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "server failed");
            ExitCode::FAILURE
        }
    }
}
