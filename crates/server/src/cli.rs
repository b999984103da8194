//! The command line: `orchestrator` (or `orchestrator serve`) runs the server; the other
//! subcommands are a small gRPC client for people at a terminal.

use std::collections::HashMap;

use clap::{Args, Parser, Subcommand};
use orchestrator_api_grpc::pb;
use orchestrator_api_grpc::pb::orchestrator_service_client::OrchestratorServiceClient;
use tonic::transport::Channel;

/// Multi-agent deliberation for software-engineering tasks.
#[derive(Debug, Parser)]
#[command(name = "orchestrator", version, about = "Multi-agent deliberation for software-engineering tasks")]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the gRPC server (the default). Configured by ORCHESTRATOR_* variables.
    Serve,
    /// Show the server's status and counters.
    Status(Target),
    /// Run a deliberation and wait for its ranked results.
    Deliberate(TaskArgs),
    /// Start a deliberation in the background and print its id.
    Submit(TaskArgs),
    /// Show a stored deliberation.
    Get {
        task_id: String,
        #[command(flatten)]
        target: Target,
    },
    /// List stored deliberations, newest first.
    List {
        #[arg(long, default_value_t = 20)]
        limit: i32,
        #[arg(long)]
        role: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Cancel a pending or running deliberation.
    Cancel {
        task_id: String,
        #[command(flatten)]
        target: Target,
    },
    /// Standing councils: create, list, delete.
    #[command(subcommand)]
    Council(crate::cli_councils::CouncilCommand),
    /// Registered agents: register, unregister, drain, activate.
    #[command(subcommand)]
    Agent(crate::cli_councils::AgentCommand),
    /// Print every registered agent's record (deliberations, wins, mean score, failures).
    Agents(crate::cli_councils::AgentsArgs),
}

#[derive(Debug, Args)]
pub(crate) struct Target {
    /// Server address.
    #[arg(long, env = "ORCHESTRATOR_ADDR", default_value = "http://127.0.0.1:50055", global = true)]
    pub(crate) addr: String,
}

#[derive(Debug, Args)]
pub(crate) struct TaskArgs {
    /// The task for the council.
    pub(crate) task: String,
    /// DEV, QA, ARCHITECT, DEVOPS or DATA.
    #[arg(long, default_value = "DEV")]
    pub(crate) role: String,
    /// Agents in the council (1..=16).
    #[arg(long)]
    pub(crate) agents: Option<i32>,
    /// Peer-review rounds (0..=5).
    #[arg(long)]
    pub(crate) rounds: Option<i32>,
    /// A requirement every proposal must address (repeatable).
    #[arg(long = "requirement")]
    pub(crate) requirements: Vec<String>,
    #[arg(long, default_value = "")]
    pub(crate) rubric: String,
    /// Deadline in seconds (0: server default).
    #[arg(long, default_value_t = 0)]
    pub(crate) timeout: i32,
    /// Model profile per agent (repeatable; cycled over agents).
    #[arg(long = "profile")]
    pub(crate) profiles: Vec<String>,
    /// Client-chosen id (makes retries idempotent).
    #[arg(long, default_value = "")]
    pub(crate) task_id: String,
    /// Python acceptance tests every proposal's code is run against, in the server's sandbox
    /// (plain asserts and/or `test_*` functions; they import the code as `solution`).
    #[arg(long = "tests", value_name = "FILE")]
    pub(crate) tests: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub(crate) target: Target,
}

impl TaskArgs {
    /// The request; reads the `--tests` file.
    fn request(&self) -> Result<pb::DeliberateRequest, String> {
        let acceptance_tests = match &self.tests {
            None => None,
            Some(path) => Some(pb::AcceptanceTests {
                language: "python".to_owned(),
                code: std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read --tests {}: {e}", path.display()))?,
            }),
        };
        Ok(pb::DeliberateRequest {
            task_description: self.task.clone(),
            role: self.role.clone(),
            constraints: Some(pb::TaskConstraints {
                rubric: self.rubric.clone(),
                requirements: self.requirements.clone(),
                metadata: HashMap::new(),
                max_iterations: 0,
                timeout_seconds: self.timeout,
                acceptance_tests,
            }),
            rounds: self.rounds,
            num_agents: self.agents,
            task_id: self.task_id.clone(),
            agent_profiles: self.profiles.clone(),
        })
    }
}

pub(crate) async fn client(target: &Target) -> Result<OrchestratorServiceClient<Channel>, String> {
    OrchestratorServiceClient::connect(target.addr.clone())
        .await
        .map(|c| c.max_decoding_message_size(64 * 1024 * 1024))
        .map_err(|e| format!("cannot connect to {}: {e}", target.addr))
}

pub(crate) fn status_error(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

fn print_results(results: &[pb::DeliberationResult], winner_id: &str) {
    println!("{:<5} {:<18} {:>6} {:>6} {:>6}  checks", "rank", "agent", "score", "checks", "peer");
    for r in results {
        let p = r.proposal.clone().unwrap_or_default();
        let c = r.checks.clone().unwrap_or_default();
        let peer = r.peer_score.map_or("-".to_owned(), |s| format!("{s:.1}"));
        let policy = c.policy.as_ref().map_or(0, |p| p.violations.len());
        let lint = c.lint.as_ref().map_or(0, |l| l.error_count);
        println!(
            "{:<5} {:<18} {:>6.3} {:>6.3} {:>6}  {} policy violation(s), {} lint error(s)",
            r.rank, p.author_id, r.score, r.check_score, peer, policy, lint
        );
    }
    if let Some(winner) =
        results.iter().find_map(|r| r.proposal.as_ref().filter(|p| p.author_id == winner_id))
    {
        println!("\nwinner {} ({}):\n{}", winner.author_id, winner.model_profile, winner.content);
    }
}

/// Runs a client subcommand, printing to stdout; `Err` is the message for stderr.
///
/// # Errors
/// Connection failures and error statuses, formatted for a person.
pub(crate) async fn run_client(command: Command) -> Result<(), String> {
    match command {
        Command::Serve => Ok(()),
        Command::Status(target) => {
            let status = client(&target)
                .await?
                .get_status(pb::GetStatusRequest { include_stats: true })
                .await
                .map_err(|s| status_error(&s))?
                .into_inner();
            let stats = status.stats.unwrap_or_default();
            println!("status: {} (version {}, up {}s)", status.status, status.version, status.uptime_seconds);
            println!("llm configured: {}", status.llm_configured);
            println!(
                "deliberations: {} ({} failed), orchestrations: {}, running: {}, mean {:.0} ms",
                stats.total_deliberations,
                stats.failed_deliberations,
                stats.total_orchestrations,
                stats.active_councils,
                stats.avg_deliberation_time_ms
            );
            Ok(())
        }
        Command::Deliberate(args) => {
            let response = client(&args.target)
                .await?
                .deliberate(args.request()?)
                .await
                .map_err(|s| status_error(&s))?
                .into_inner();
            let usage = response.usage.unwrap_or_default();
            println!(
                "task {}: {} result(s) in {} ms, {} LLM call(s), {} prompt + {} completion tokens",
                response.task_id,
                response.results.len(),
                response.duration_ms,
                usage.calls,
                usage.prompt_tokens,
                usage.completion_tokens
            );
            for f in &response.failures {
                println!("dropped {} during {}: {}", f.agent_id, f.phase, f.reason);
            }
            print_results(&response.results, &response.winner_id);
            Ok(())
        }
        Command::Submit(args) => {
            let response = client(&args.target)
                .await?
                .submit_deliberation(args.request()?)
                .await
                .map_err(|s| status_error(&s))?
                .into_inner();
            let created = if response.created { "submitted" } else { "already exists" };
            println!("{} {created} ({:?})", response.task_id, response.status());
            Ok(())
        }
        Command::Get { task_id, target } => {
            let r = client(&target)
                .await?
                .get_deliberation_result(pb::GetDeliberationResultRequest { task_id })
                .await
                .map_err(|s| status_error(&s))?
                .into_inner();
            println!("{} {} {:?} {} ms {}", r.task_id, r.role, r.status(), r.duration_ms, r.error_message);
            print_results(&r.results, &r.winner_id);
            Ok(())
        }
        Command::List { limit, role, target } => {
            let page = client(&target)
                .await?
                .list_deliberations(pb::ListDeliberationsRequest {
                    page_size: limit,
                    role_filter: role.unwrap_or_default(),
                    ..Default::default()
                })
                .await
                .map_err(|s| status_error(&s))?
                .into_inner();
            for d in &page.deliberations {
                println!(
                    "{:<38} {:<9} {:<24} {:>7} ms  {}",
                    d.task_id,
                    d.role,
                    format!("{:?}", d.status()),
                    d.duration_ms,
                    d.task_description.lines().next().unwrap_or_default()
                );
            }
            Ok(())
        }
        Command::Cancel { task_id, target } => {
            let r = client(&target)
                .await?
                .cancel_deliberation(pb::CancelDeliberationRequest { task_id })
                .await
                .map_err(|s| status_error(&s))?
                .into_inner();
            println!("{} {:?}", r.task_id, r.status());
            Ok(())
        }
        Command::Council(command) => crate::cli_councils::council(command).await,
        Command::Agent(command) => crate::cli_councils::agent(command).await,
        Command::Agents(args) => crate::cli_councils::agents(args).await,
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn the_tests_flag_sends_the_file_as_python_acceptance_tests() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tests.py");
        std::fs::write(&path, "from solution import add\nassert add(1, 2) == 3\n").unwrap();
        let cli = Cli::try_parse_from([
            "orchestrator",
            "deliberate",
            "write add",
            "--tests",
            path.to_str().unwrap(),
        ])
        .unwrap();
        let Some(Command::Deliberate(args)) = cli.command else { panic!("not deliberate") };
        let tests = args.request().unwrap().constraints.unwrap().acceptance_tests.unwrap();
        assert_eq!(tests.language, "python");
        assert_eq!(tests.code, "from solution import add\nassert add(1, 2) == 3\n");

        let cli =
            Cli::try_parse_from(["orchestrator", "submit", "x", "--tests", "/no/such/tests.py"]).unwrap();
        let Some(Command::Submit(args)) = cli.command else { panic!("not submit") };
        assert!(args.request().unwrap_err().starts_with("cannot read --tests /no/such/tests.py"));
    }
}
