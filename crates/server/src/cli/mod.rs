//! The command line: `orchestrator serve` runs the server; the other subcommands are a gRPC
//! client for people at a terminal and for scripts (`--json`). Plain `orchestrator` prints the
//! help and exits 2: a server starts only when asked for by name, so a mistyped client command
//! never starts one.
//!
//! One idea a file:
//! * [`args`] — the subcommands' arguments and the requests they make;
//! * [`target`] — which server, how to reach it (scheme, TLS, token) and errors a person reads;
//! * [`deliberate`] — `deliberate` and `submit`: submit, follow, Ctrl-C;
//! * [`seating`] — which council seats a deliberation, and fewer agents than asked;
//! * [`progress`] — live progress lines (or a spinner at a terminal) on stderr;
//! * [`watch`] — following a deliberation by id until it ends;
//! * [`render`] — results, statuses and durations for a person;
//! * [`view`] — the `--json` documents;
//! * [`list`] — `list`, `get`, `cancel` and `status`;
//! * [`health`] — `health`, the container's health check;
//! * [`config_check`] — `config check`: validate a file and probe every profile;
//! * [`councils`] — the standing-council registry;
//! * [`terminal_text`] — the one way to print: nothing stored by others reaches the terminal as
//!   a control character.
// Everything printed goes through `terminal_text`, which drops what a terminal would act on.
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod agents;
mod args;
mod config_check;
mod councils;
mod deliberate;
mod health;
mod list;
mod progress;
mod registry_views;
mod render;
mod seating;
mod target;
mod terminal_text;
mod view;
mod watch;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use orchestrator_server::control_chars::{json_escaped, printable};
use terminal_text::outln;

pub(crate) use args::{ListArgs, ShowArgs, TaskArgs};
pub(crate) use target::Target;

/// Multi-agent deliberation for software-engineering tasks.
#[derive(Debug, Parser)]
#[command(
    name = "orchestrator",
    version,
    about = "Multi-agent deliberation for software-engineering tasks",
    arg_required_else_help = true
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
    #[command(flatten)]
    pub(crate) target: Target,
    /// Print one JSON document on stdout instead of text (progress stays on stderr).
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the gRPC server, configured by ORCHESTRATOR_* variables and an optional TOML file
    /// (`serve --help` lists the main ones with their defaults).
    // Its own help: the client flags are global (they go before or after any client
    // subcommand), so clap would list them here too; the template leaves them out, and
    // `serve` refuses them (see `parse_from`).
    #[command(
        override_usage = "orchestrator serve",
        help_template = "{about-with-newline}\n{usage-heading} {usage}{after-help}"
    )]
    Serve,
    /// Show the server's status and counters.
    Status,
    /// Ask the server's grpc.health.v1 service; exit 0 when SERVING, 1 otherwise.
    Health,
    /// Run a deliberation: print its id, its progress on stderr, then its ranked results.
    /// Ctrl-C asks whether to cancel it or leave it running.
    Deliberate(TaskArgs),
    /// Start a deliberation in the background and print its id.
    Submit(TaskArgs),
    /// Follow a running deliberation until it ends, then print its results.
    Watch {
        task_id: String,
        #[command(flatten)]
        show: ShowArgs,
    },
    /// Show a stored deliberation.
    Get {
        task_id: String,
        #[command(flatten)]
        show: ShowArgs,
    },
    /// List stored deliberations, newest first.
    List(ListArgs),
    /// Cancel a pending or running deliberation.
    Cancel { task_id: String },
    /// Configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Standing councils: create, list, delete.
    #[command(subcommand)]
    Council(councils::CouncilCommand),
    /// Registered agents: register, unregister, drain, activate.
    #[command(subcommand)]
    Agent(agents::AgentCommand),
    /// Print every registered agent's record (deliberations, wins, mean score, failures).
    Agents(agents::AgentsArgs),
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Validate a config file (with the ORCHESTRATOR_* environment, as the server would read
    /// it) and probe every model profile's `/models`. Exit 0: valid and every profile answers
    /// (or is busy: it took the connection but has not answered yet); 1: valid but a profile
    /// is down, refuses the key or lacks its model; 2: invalid.
    Check {
        /// The TOML file.
        file: std::path::PathBuf,
        /// Only validate; do not contact the model servers.
        #[arg(long)]
        no_probe: bool,
    },
}

/// What every client subcommand gets: where the server is and how to print.
#[derive(Debug, Clone)]
pub(crate) struct Context {
    pub(crate) target: Target,
    pub(crate) json: bool,
}

impl Context {
    /// Prints `document` as the one JSON document of this run, every control character of
    /// its strings (C1 and bidirectional ones too, which `serde_json` leaves raw) as a `\u`
    /// escape: a script reads back exactly what the server sent, a terminal acts on none of it.
    pub(crate) fn print_json(document: &impl serde::Serialize) -> anyhow::Result<()> {
        let text =
            serde_json::to_string_pretty(document).map_err(|e| anyhow::anyhow!("cannot write JSON: {e}"))?;
        outln!("{}", json_escaped(&text));
        Ok(())
    }
}

/// Ctrl-C (SIGINT), listened for from the moment this is made: a signal that arrives before
/// anyone waits for it is kept, never left to the default action (which would end the process
/// without a word about the deliberation it leaves).
#[derive(Debug)]
pub(crate) struct Interrupts {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Interrupts {
    pub(crate) fn listen() -> Self {
        #[cfg(unix)]
        {
            Self { signal: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok() }
        }
        #[cfg(not(unix))]
        {
            Self {}
        }
    }

    /// Resolves on the next Ctrl-C; never when no handler could be installed.
    pub(crate) async fn next(&mut self) {
        #[cfg(unix)]
        {
            match &mut self.signal {
                Some(signal) => {
                    signal.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        }
        #[cfg(not(unix))]
        {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Runs a client subcommand, printing to stdout; `Err` is the message for stderr, already
/// [`printable`] (it may quote a server's message).
///
/// # Errors
/// Connection failures and error statuses, formatted for a person.
pub(crate) async fn run_client(command: Command, context: Context) -> Result<ExitCode, String> {
    run(command, context).await.map_err(|error| printable(&format!("{error:#}")).into_owned())
}

/// The flags of [`Target`] and `--json`, as clap names them: what `serve` refuses when they
/// are written on its command line (set from the environment they are fine: a shell may
/// export ORCHESTRATOR_ADDR for its clients).
const CLIENT_FLAGS: &[&str] = &["addr", "token", "token_file", "ca", "cert", "key", "json"];

/// The command line parsed, with `serve --help` ending in [`serve_help`]'s list of settings.
/// Exits as clap does (2) on a usage error, client flags given to `serve` among them.
///
/// [`serve_help`]: orchestrator_server::config::serve_help
pub(crate) fn parse() -> Cli {
    parse_from(std::env::args_os()).unwrap_or_else(|error| error.exit())
}

/// [`parse`] of `args`.
fn parse_from<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let mut command = Cli::command()
        .mut_subcommand("serve", |serve| serve.after_help(orchestrator_server::config::serve_help()));
    let matches = command.try_get_matches_from_mut(args)?;
    if let Some(("serve", serve)) = matches.subcommand() {
        let given: Vec<String> = CLIENT_FLAGS
            .iter()
            .filter(|id| {
                [&matches, serve]
                    .iter()
                    .any(|m| m.value_source(id) == Some(clap::parser::ValueSource::CommandLine))
            })
            .map(|id| format!("--{}", id.replace('_', "-")))
            .collect();
        if !given.is_empty() {
            // Its own usage line (`orchestrator serve`) under the error, not the client's.
            let mut serve = command.find_subcommand("serve").cloned().unwrap_or_else(|| command.clone());
            return Err(serve.error(
                clap::error::ErrorKind::ArgumentConflict,
                format!(
                    "{} {} for the client subcommands; `serve` is configured by ORCHESTRATOR_* \
                     variables (e.g. ORCHESTRATOR_LISTEN, not --addr): see `orchestrator serve --help`",
                    given.join(", "),
                    if given.len() == 1 { "is" } else { "are" }
                ),
            ));
        }
    }
    Cli::from_arg_matches(&matches)
}

async fn run(command: Command, context: Context) -> anyhow::Result<ExitCode> {
    let done = |()| ExitCode::SUCCESS;
    match command {
        Command::Serve => Ok(ExitCode::SUCCESS),
        Command::Status => list::status(&context).await.map(done),
        Command::Health => health::check(&context).await,
        Command::Deliberate(args) => deliberate::deliberate(args, &context).await,
        Command::Submit(args) => deliberate::submit(args, &context).await.map(done),
        Command::Watch { task_id, show } => watch::watch(&task_id, show, &context).await,
        Command::Get { task_id, show } => list::get(&task_id, show, &context).await.map(done),
        Command::List(args) => list::list(args, &context).await.map(done),
        Command::Cancel { task_id } => list::cancel(task_id, &context).await.map(done),
        Command::Config(ConfigCommand::Check { file, no_probe }) => {
            Ok(config_check::check(&file, !no_probe, &context).await)
        }
        Command::Council(command) => councils::council(command, &context).await.map(done),
        Command::Agent(command) => agents::agent(command, &context).await.map(done),
        Command::Agents(args) => agents::agents(args, &context).await.map(done),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn a_negative_agent_count_is_a_value_refused_by_name_not_a_flag() {
        let error = Cli::try_parse_from(["orchestrator", "deliberate", "t", "--agents", "-1"]).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("--agents"), "{message}");
        assert!(message.contains("-1"), "{message}");
        assert!(message.contains("1..=16"), "{message}");
    }

    #[test]
    fn negative_counts_are_refused_everywhere_by_flag_name() {
        for args in [
            &["orchestrator", "council", "create", "--role", "QA", "--agents", "-2"][..],
            &["orchestrator", "council", "create", "--role", "QA", "--rounds", "-1"][..],
            &["orchestrator", "agents", "--since-secs", "-5"][..],
            &["orchestrator", "list", "--limit", "-1"][..],
        ] {
            let message = Cli::try_parse_from(args).unwrap_err().to_string();
            assert!(message.contains("invalid value '-"), "{args:?}: {message}");
        }
    }

    #[test]
    fn serve_refuses_client_flags_before_or_after_it_with_exit_2() {
        for args in [
            &["orchestrator", "serve", "--addr", "http://127.0.0.1:50077"][..],
            &["orchestrator", "--addr", "http://127.0.0.1:50077", "serve"][..],
            &["orchestrator", "serve", "--json"][..],
            &["orchestrator", "serve", "--token", "t", "--ca", "ca.pem"][..],
        ] {
            let error = parse_from(args).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{args:?}");
            let message = error.to_string();
            assert!(message.contains("for the client subcommands"), "{args:?}: {message}");
            assert!(message.contains("ORCHESTRATOR_LISTEN, not --addr"), "{message}");
        }
        let error = parse_from(["orchestrator", "serve", "--token", "t", "--ca", "ca.pem"]).unwrap_err();
        assert!(error.to_string().contains("--token, --ca are for the client subcommands"), "{error}");
        assert!(matches!(parse_from(["orchestrator", "serve"]).unwrap().command, Command::Serve));
    }

    #[test]
    fn serve_help_lists_settings_with_defaults_and_no_client_flag() {
        let help = parse_from(["orchestrator", "serve", "--help"]).unwrap_err();
        assert_eq!(help.exit_code(), 0);
        let text = help.to_string();
        assert!(text.contains("Usage: orchestrator serve\n"), "{text}");
        assert!(text.contains("ORCHESTRATOR_LISTEN (listen)  default: 127.0.0.1:50055"), "{text}");
        assert!(text.contains("ORCHESTRATOR_LLM_BASE_URL"), "{text}");
        for flag in ["--addr", "--token-file", "--cert", "--json"] {
            assert!(!text.contains(flag), "{flag} in:\n{text}");
        }
    }

    #[test]
    fn no_arguments_print_the_help_and_exit_2() {
        let error = parse_from(["orchestrator"]).unwrap_err();
        assert_eq!(error.exit_code(), 2);
        let text = error.to_string();
        assert!(text.contains("serve") && text.contains("deliberate"), "{text}");
    }

    #[test]
    fn target_flags_go_before_or_after_the_subcommand() {
        let cli = Cli::try_parse_from(["orchestrator", "--addr", "http://h:1", "list", "--json"]).unwrap();
        assert_eq!(cli.target.addr, "http://h:1");
        assert!(cli.json);
        let cli = Cli::try_parse_from(["orchestrator", "get", "x", "--addr", "http://h:2"]).unwrap();
        assert_eq!(cli.target.addr, "http://h:2");
    }
}
