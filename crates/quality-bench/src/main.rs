//! `quality`: run the quality benchmark on demand. See the README's "Quality benchmark".
#![allow(clippy::print_stdout)] // the summary is printed for the person who ran it

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;
use orchestrator_quality_bench::orchestrator::{ModelSettings, Orchestrator};
use orchestrator_quality_bench::report::{RunInfo, summarise, summary_table, utc_date};
use orchestrator_quality_bench::run::{Plan, check, check_rows, run};
use orchestrator_quality_bench::{
    Grader, QualityError, Result, configs, humaneval, merge, outputs, results_csv,
};
use tracing_subscriber::EnvFilter;

/// Does a council beat one call, and which early stop pays? HumanEval through the
/// orchestrator, winners graded on the hidden tests in the sandbox. Writes results.csv,
/// results.md and results.svg; --merge combines the results.csv of partial runs.
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
    /// Model name sent to the endpoint (default `smollm2`); with --server or --merge, only the
    /// label of the report (the server's configured profile answers).
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
    /// Configurations to compare (default a,c,d,e: one call against the council with tests
    /// under each way of stopping early, the table that decides the defaults): a = one call
    /// (N=1, R=0), b = council (N=3, R=1, no tests), c = council with the docstring examples as
    /// acceptance tests (early_stop=tests_and_reviews), d = the same with early_stop=tests,
    /// e = cascade (strategy=cascade, early_stop=tests). With --merge: the configurations kept
    /// (default: all the files have).
    #[arg(long)]
    configs: Option<String>,
    /// Bound on one deliberation, in seconds.
    #[arg(long, default_value_t = 900)]
    timeout_secs: u64,
    /// HumanEval as JSON lines; default: fetched by scripts/humaneval-data.sh.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Where results go; default: target/quality of the workspace (target/quality/merged with
    /// --merge).
    #[arg(long)]
    out: Option<PathBuf>,
    /// CI mode: fail unless every problem has a row under every configuration and no
    /// deliberation failed (with --merge: every problem any file has). Asserts nothing about
    /// quality.
    #[arg(long)]
    check: bool,
    /// Run nothing: combine the results.csv of partial runs (comma-separated, in order) into
    /// one table, a later file's row replacing an earlier one's for the same problem and
    /// configuration, and write results.csv, results.md and results.svg into --out.
    #[arg(long, value_delimiter = ',', num_args = 1.., value_name = "FILE[,FILE…]",
          conflicts_with_all = ["server", "problems", "range", "data"])]
    merge: Vec<PathBuf>,
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
    if !args.merge.is_empty() {
        return merge_runs(args);
    }
    let chosen_configs = configs::parse_configs(args.configs.as_deref().unwrap_or(configs::DEFAULT_CONFIGS))?;
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
        merged_from: Vec::new(),
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

/// `--merge`: the partial runs' rows as one table, written like a run's.
fn merge_runs(args: Args) -> Result<()> {
    let runs = args.merge.iter().map(|path| results_csv::read(path)).collect::<Result<Vec<_>>>()?;
    let mut rows = merge::merge(runs);
    let chosen_configs = match &args.configs {
        Some(raw) => configs::parse_configs(raw)?,
        None => merge::configs_of(&rows),
    };
    rows.retain(|row| chosen_configs.contains(&row.config));
    if rows.is_empty() {
        return Err(QualityError::InvalidArgument {
            flag: "merge",
            reason: "the files hold no rows of the configurations asked for".into(),
        });
    }
    let problems = merge::problems_of(&rows);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let info = RunInfo {
        date: utc_date(now),
        model: args.model.clone().unwrap_or_else(|| "smollm2".to_owned()),
        endpoint: args.llm_url.clone().unwrap_or_else(|| "the endpoint of the partial runs".to_owned()),
        problems: merge::problems_label(&problems),
        merged_from: args.merge.iter().map(|path| path.display().to_string()).collect(),
    };
    let out_dir = args.out.unwrap_or_else(|| workspace().join("target/quality/merged"));
    let written = outputs::write(&out_dir, &info, &chosen_configs, &rows)?;
    println!("{}", summary_table(&summarise(&rows, &chosen_configs)));
    println!(
        "merged {} files into {} rows: wrote {}, {} and {}",
        args.merge.len(),
        rows.len(),
        written.csv.display(),
        written.markdown.display(),
        written.svg.display()
    );
    if args.check {
        check_rows(&problems, &chosen_configs, &rows)?;
        println!("check: {} rows, one per problem per configuration", rows.len());
    }
    Ok(())
}
