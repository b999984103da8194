//! The orchestrator binary: with no subcommand (or `serve`) it reads configuration, starts
//! telemetry and serves until SIGTERM/ctrl-c; other subcommands are a gRPC client.
#![allow(clippy::print_stdout)] // the client subcommands print for a person at a terminal; serve announces its address

mod cli;

use std::process::ExitCode;

use clap::Parser;
use orchestrator_server::{Application, Config, shutdown_signal, telemetry};

use crate::cli::{Cli, Command, Context};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        None | Some(Command::Serve) => serve().await,
        Some(command) => {
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
    for name in Config::unrecognised_env(&std::env::vars().collect()) {
        tracing::warn!(variable = name, "environment variable sets no configuration key; is it misspelt?");
    }
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
    let served = app.run_until(shutdown_signal()).await;
    telemetry.shutdown();
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = &error as &dyn std::error::Error, "server failed");
            ExitCode::FAILURE
        }
    }
}
