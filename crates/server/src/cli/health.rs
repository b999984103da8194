//! `orchestrator health`: the standard grpc.health.v1 Check of the whole server, for
//! container HEALTHCHECKs and probes. Exit 0 only on SERVING; 1 for anything else, including
//! a server that cannot be reached (and so a draining one, which reports NOT_SERVING).

use std::process::ExitCode;
use std::time::Duration;

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use super::Context;
use super::terminal_text::{errln, outln};
use super::view::HealthView;

/// Bound on the whole check, so a hung server fails the probe instead of hanging it.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

async fn ask(context: &Context) -> anyhow::Result<ServingStatus> {
    let bearer = context.target.bearer()?;
    let channel = context.target.channel().await?;
    let response = HealthClient::with_interceptor(channel, bearer)
        .check(HealthCheckRequest { service: String::new() })
        .await
        .map_err(|s| context.target.failed(&s))?;
    Ok(response.into_inner().status())
}

/// Prints the server's health and returns the exit code of a health check.
///
/// # Errors
/// Only a JSON document that cannot be written; everything about the server is a status.
pub(crate) async fn check(context: &Context) -> anyhow::Result<ExitCode> {
    let answer = tokio::time::timeout(CHECK_TIMEOUT, ask(context))
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within {} s", CHECK_TIMEOUT.as_secs())));
    let view = match answer {
        Ok(status) => HealthView {
            addr: context.target.addr.clone(),
            status: status.as_str_name().trim_start_matches("SERVING_STATUS_").to_owned(),
            serving: status == ServingStatus::Serving,
            error: None,
        },
        Err(error) => HealthView {
            addr: context.target.addr.clone(),
            status: "UNREACHABLE".to_owned(),
            serving: false,
            error: Some(error.to_string()),
        },
    };
    if context.json {
        Context::print_json(&view)?;
    } else if let Some(error) = &view.error {
        errln!("orchestrator: {error}");
        outln!("{}: {}", view.addr, view.status);
    } else {
        outln!("{}: {}", view.addr, view.status);
    }
    Ok(if view.serving { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
