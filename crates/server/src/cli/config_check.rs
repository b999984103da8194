//! `orchestrator config check <file>`: loads the file through the server's own loader (with the
//! `ORCHESTRATOR_*` environment layered over it, as `serve` would), so an error names the key
//! exactly as startup would; then asks every model profile's server for its model list.
//!
//! Exit 0: valid and every profile answers with its model (or without a list), or is busy
//! (takes the connection but has not answered yet: a model server in a long completion); 1:
//! valid, but a profile is down, refuses us or does not serve its model; 2: invalid.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::ExitCode;

use orchestrator_application::ports::BackendHealth;
use orchestrator_domain::ProfileName;
use orchestrator_infra_llm::{OpenAiBackend, ProfileProbe};
use orchestrator_server::Config;
use serde::Serialize;

use super::Context;
use super::terminal_text::{errln, outln};

/// Exit status of an invalid file, as `serve` exits on one.
const INVALID: u8 = 2;

#[derive(Debug, Serialize)]
struct ProbeView {
    profile: String,
    url: String,
    reachable: bool,
    /// It took the connection but did not answer within the timeout: usable (`ok`).
    busy: bool,
    http_status: Option<u16>,
    /// `null` when the server gave no model list.
    model_listed: Option<bool>,
    ok: bool,
    hint: Option<String>,
}

impl ProbeView {
    fn of(p: &ProfileProbe) -> Self {
        Self {
            profile: p.profile.to_string(),
            url: p.url.clone(),
            reachable: p.reachable,
            busy: p.busy,
            http_status: p.status,
            model_listed: p.model_listed,
            ok: p.is_ok(),
            hint: p.hint.clone(),
        }
    }
}

#[derive(Debug, Serialize)]
struct CheckView {
    file: String,
    valid: bool,
    /// The key at fault and why, when invalid.
    error: Option<String>,
    /// `ORCHESTRATOR_*` variables that set no key (misspelt, most likely): the file is then
    /// invalid, the first of them named in `error`.
    unrecognised_env: Vec<String>,
    profiles: Vec<ProbeView>,
}

/// The file's configuration, loaded as `serve` loads it but from `file`.
fn load(file: &Path) -> anyhow::Result<Config> {
    let mut env: HashMap<String, String> = std::env::vars().collect();
    env.insert("ORCHESTRATOR_CONFIG".to_owned(), file.display().to_string());
    Config::from_env(&env).map_err(|e| anyhow::Error::msg(e.to_string()))
}

/// The configured profiles' backend, or why it cannot be built (named by key).
fn backend(config: &Config) -> anyhow::Result<Option<OpenAiBackend>> {
    if config.profiles.is_empty() {
        return Ok(None);
    }
    let profiles = config
        .profiles
        .iter()
        .map(|(name, profile)| {
            let name =
                ProfileName::new(name.as_str()).map_err(|e| anyhow::anyhow!("profiles.{name}: {e}"))?;
            Ok((name, profile.clone()))
        })
        .collect::<anyhow::Result<BTreeMap<_, _>>>()?;
    OpenAiBackend::new(profiles).map(Some).map_err(|e| anyhow::Error::msg(e.to_string()))
}

/// Runs the check and prints its report; returns the exit code.
pub(crate) async fn check(file: &Path, probe: bool, context: &Context) -> ExitCode {
    let mut view = CheckView {
        file: file.display().to_string(),
        valid: false,
        error: None,
        unrecognised_env: Config::unrecognised_env(&std::env::vars().collect()),
        profiles: Vec::new(),
    };
    let loaded = load(file).and_then(|config| Ok((backend(&config)?, config)));
    let code = match loaded {
        Err(error) => {
            view.error = Some(error.to_string());
            ExitCode::from(INVALID)
        }
        Ok((backend, config)) => {
            view.valid = true;
            if !context.json {
                outln!(
                    "{}: valid (listen {}, {} profile(s), {} standing council(s))",
                    view.file,
                    config.listen,
                    config.profiles.len(),
                    config.councils.len()
                );
            }
            match (backend, probe) {
                (None, _) => {
                    if !context.json {
                        outln!(
                            "no model profiles: the server would start, but every deliberation fails until one is set"
                        );
                    }
                    ExitCode::SUCCESS
                }
                (Some(_), false) => ExitCode::SUCCESS,
                (Some(backend), true) => {
                    let probes = backend.probe().await;
                    view.profiles = probes.iter().map(ProbeView::of).collect();
                    if probes.iter().all(ProfileProbe::is_ok) { ExitCode::SUCCESS } else { ExitCode::FAILURE }
                }
            }
        }
    };
    if context.json {
        if let Err(error) = Context::print_json(&view) {
            errln!("orchestrator: {error}");
            return ExitCode::FAILURE;
        }
        return code;
    }
    if let Some(error) = &view.error {
        errln!("orchestrator: {}: invalid: {error}", view.file);
    }
    for p in &view.profiles {
        let reach = match (p.reachable, p.http_status) {
            (true, Some(status)) => format!("reachable (HTTP {status})"),
            _ if p.busy => "connected, no answer yet".to_owned(),
            _ => "unreachable".to_owned(),
        };
        let model = match p.model_listed {
            Some(true) => "model listed",
            Some(false) => "model NOT listed",
            None => "no model list",
        };
        let verdict = BackendHealth::verdict_of(p.ok, p.reachable);
        outln!("profile {:<12} {verdict:<7} {reach}, {model}  {}", p.profile, p.url);
        if let Some(hint) = &p.hint {
            outln!("  hint: {hint}");
        }
    }
    code
}
