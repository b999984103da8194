//! `quality`: run the quality benchmark on demand. See the README's "Quality benchmark".
#![allow(clippy::print_stdout)] // the summary is printed for the person who ran it

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;
use orchestrator_quality_bench::orchestrator::{ModelSettings, Orchestrator};
use orchestrator_quality_bench::report::{RunInfo, summarise, summary_table, utc_date};
use orchestrator_quality_bench::run::{Plan, check, run};
use orchestrator_quality_bench::{Grader, QualityError, Result, configs, humaneval};
use tracing_subscriber::EnvFilter;

/// Does a council beat one call? HumanEval through the orchestrator, winners graded on the
/// hidden tests in the sandbox. Writes results.csv, results.md and results.svg.
#[derive(Debug, Parser)]
#[command(name = "quality")]
struct Args {
    /// A running orchestrator to use (`http://host:port`); without it one is started in this
    /// process against --llm-url.
    #[arg(long, conflicts_with = "llm_url")]
    server: Option<String>,
    /// OpenAI-compatible endpoint (`…/v1`) for the in-process orchestrator.
    #[arg(long, env = "ORCHESTRATOR_TEST_LLM_URL")]
    llm_url: Option<String>,
    /// Model name sent to the endpoint (default `smollm2`); with --server, only the label of
    /// the report (the server's configured profile answers).
    #[arg(long)]
    model: Option<String>,
    /// Completion token limit of every call (in-process server).
    #[arg(long, default_value_t = 512)]
    max_tokens: u32,
    /// Sampling temperature (in-process server); default: the profile's.
    #[arg(long)]
    temperature: Option<f64>,
    /// The first N problems.
    #[arg(long, conflicts_with = "range")]
    problems: Option<usize>,
    /// Problems a..b (indices, end exclusive), e.g. 10..20.
    #[arg(long)]
    range: Option<String>,
    /// Configurations to compare: a = one call (N=1, R=0), b = council (N=3, R=1), c = council
    /// with the docstring examples as acceptance tests.
    #[arg(long, default_value = "a,b,c")]
    configs: String,
    /// Bound on one deliberation, in seconds.
    #[arg(long, default_value_t = 900)]
    timeout_secs: u64,
    /// HumanEval as JSON lines; default: fetched by scripts/humaneval-data.sh.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Where results go; default: target/quality of the workspace.
    #[arg(long)]
    out: Option<PathBuf>,
    /// CI mode: fail unless every problem has a row under every configuration and no
    /// deliberation failed. Asserts nothing about quality.
    #[arg(long)]
    check: bool,
}

/// The workspace this binary was built from (scripts/ and target/ live there).
fn workspace() -> PathBuf {
    let relative = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::canonicalize(&relative).unwrap_or(relative)
}

#[tokio::main]
async fn main() -> ExitCode {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("warn,orchestrator_quality_bench=info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .compact()
        .init();
    match benchmark(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("quality: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn benchmark(args: Args) -> Result<()> {
    let chosen_configs = configs::parse_configs(&args.configs)?;
    let data = match args.data {
        Some(path) => path,
        None => humaneval::fetch(&workspace()).await?,
    };
    let all = humaneval::load(&data)?;
    let (range, flag) = match (&args.range, args.problems) {
        (Some(raw), _) => (humaneval::parse_range(raw)?, "range"),
        (None, Some(0)) => {
            return Err(QualityError::InvalidArgument {
                flag: "problems",
                reason: "must be at least 1".into(),
            });
        }
        (None, Some(n)) => (0..n, "problems"),
        (None, None) => (0..all.len(), "problems"),
    };
    let problems = humaneval::select(all, range.clone(), flag)?;
    let grader = Grader::detect()?;
    let deliberation_timeout = Duration::from_secs(args.timeout_secs);
    let (mut orchestrator, model) = match (&args.server, &args.llm_url) {
        (Some(url), _) => {
            let label = args.model.clone().unwrap_or_else(|| "the server's default profile".to_owned());
            (Orchestrator::connect(url).await?, label)
        }
        (None, Some(url)) => {
            let settings = ModelSettings {
                url: url.clone(),
                model: args.model.clone().unwrap_or_else(|| "smollm2".to_owned()),
                max_tokens: args.max_tokens,
                temperature: args.temperature,
                call_timeout: deliberation_timeout,
                deliberation_timeout,
            };
            let label = settings.model.clone();
            (Orchestrator::start(&settings).await?, label)
        }
        (None, None) => {
            return Err(QualityError::InvalidArgument {
                flag: "llm-url",
                reason: "give --llm-url (or ORCHESTRATOR_TEST_LLM_URL) or --server".into(),
            });
        }
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let info = RunInfo {
        date: utc_date(now),
        model,
        endpoint: args.llm_url.clone().unwrap_or_else(|| orchestrator.endpoint.clone()),
        problems: format!(
            "HumanEval/{}..HumanEval/{} ({} problems)",
            range.start,
            range.end - 1,
            range.len()
        ),
    };
    let plan = Plan {
        problems,
        configs: chosen_configs,
        deliberation_timeout,
        out_dir: args.out.unwrap_or_else(|| workspace().join("target/quality")),
        info,
    };
    let outcome = run(&plan, &mut orchestrator, &grader).await;
    orchestrator.stop().await;
    let (rows, outputs) = outcome?;
    println!("{}", summary_table(&summarise(&rows, &plan.configs)));
    println!("wrote {}, {} and {}", outputs.csv.display(), outputs.markdown.display(), outputs.svg.display());
    if args.check {
        check(&plan, &rows)?;
        println!("check: {} rows, one per problem per configuration", rows.len());
    }
    Ok(())
}
