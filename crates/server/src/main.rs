//! The orchestrator binary: `serve` reads configuration, starts telemetry and serves until
//! SIGTERM/ctrl-c; other subcommands are a gRPC client; no subcommand prints the help.
#![allow(clippy::print_stdout)] // the client subcommands print for a person at a terminal; serve announces its address

mod cli;

use std::process::ExitCode;

use orchestrator_server::startup::shutdown_signals;
use orchestrator_server::{Application, Config, telemetry};

use crate::cli::{Command, Context};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = cli::parse();
    match cli.command {
        Command::Serve => serve().await,
        command => {
            if cli.target.token_on_command_line() {
                eprintln!(
                    "orchestrator: warning: --token on the command line is visible to every local user (ps); \
                     use --token-file or ORCHESTRATOR_TOKEN"
                );
            }
            client(command, Context { target: cli.target, json: cli.json }).await
        }
    }
}

async fn client(command: Command, context: Context) -> ExitCode {
    match cli::run_client(command, context).await {
        Ok(code) => code,
        Err(message) => {
            eprintln!("orchestrator: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn serve() -> ExitCode {
    let config = match Config::load() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("orchestrator: configuration error: {error}");
            return ExitCode::from(2);
        }
    };
    let telemetry = match telemetry::init_telemetry(&config) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("orchestrator: configuration error: {error}");
            return ExitCode::from(2);
        }
    };
    let (grace, resume) = (config.shutdown_grace(), config.resume_unfinished);
    let app = match Application::build(config).await {
        Ok(app) => app,
        Err(error) => {
            tracing::error!(error = &error as &dyn std::error::Error, "startup failed");
            return ExitCode::FAILURE;
        }
    };
    // One line on stdout, for scripts and tests that start the server on port 0 and need the
    // port it got; the listener is bound, so connecting from here on waits at most for serving.
    println!("listening on {}", app.local_addr());
    let (first, second) = shutdown_signals();
    let left = if resume { "left to resume at the next start" } else { "stored INTERRUPTED" };
    let first = async move {
        first.await;
        eprintln!(
            "orchestrator: stopping: running deliberations get up to {} s to finish; press Ctrl-C \
             again (or send SIGTERM again) to stop at once (they are {left})",
            grace.as_secs()
        );
    };
    let second = async move {
        second.await;
        eprintln!("orchestrator: stopping at once: running deliberations are {left}");
    };
    let served = app.run_until_or_sooner(first, second).await;
    telemetry.shutdown();
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = &error as &dyn std::error::Error, "server failed");
            ExitCode::FAILURE
        }
    }
}
