//! The adapters a server runs with, and the ones made from the configuration when a caller
//! (a test, an embedding program) brings none of its own.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use orchestrator_application::ports::{
    AgentBackend, BackendProber, Clock, CouncilStore, DeliberationStore, DryRunner, IdGenerator, Outbox,
    TestRunner,
};
use orchestrator_application::{Councils, DeliberationSettings, JobSettings};
use orchestrator_domain::ProfileName;
use orchestrator_infra_dryrun::{CommandDryRunner, PythonTestRunner};
use orchestrator_infra_llm::OpenAiBackend;
use tracing::{info, warn};

use crate::config::Config;
use crate::error::{Result, ServerError};
use crate::system::{SystemClock, UuidV7Ids};

/// The adapters a server runs with. [`crate::Application::build`] makes them from the
/// configuration; tests pass their own (a scripted backend, say) to [`crate::Application::build_with`].
pub struct Dependencies {
    pub backend: Option<Arc<dyn AgentBackend>>,
    /// `None`: open the store named by `database_url`.
    pub store: Option<Arc<dyn DeliberationStore>>,
    /// The council registry; `None`: the registry of the store opened from `database_url`
    /// (a `store` given without a registry leaves the server without standing councils).
    pub councils: Option<Arc<dyn CouncilStore>>,
    pub dry_runner: Option<Arc<dyn DryRunner>>,
    /// Runs acceptance tests; `None`: the Python runner over the sandbox detected at startup.
    pub test_runner: Option<Arc<dyn TestRunner>>,
    pub clock: Arc<dyn Clock>,
    pub ids: Arc<dyn IdGenerator>,
    /// Checks the model servers at startup and in GetStatus; `None`: no check.
    pub prober: Option<Arc<dyn BackendProber>>,
    /// The outbox the events relay reads; `None`: the one of the store opened from
    /// `database_url` (a `store` given without an outbox leaves events unpublished).
    pub outbox: Option<Arc<dyn Outbox>>,
}

impl std::fmt::Debug for Dependencies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dependencies").field("backend", &self.backend.is_some()).finish_non_exhaustive()
    }
}

impl Dependencies {
    /// System clock and ids, no backend, no dry runner.
    pub fn system() -> Self {
        Self {
            backend: None,
            store: None,
            councils: None,
            dry_runner: None,
            test_runner: None,
            clock: Arc::new(SystemClock),
            ids: Arc::new(UuidV7Ids),
            prober: None,
            outbox: None,
        }
    }
}

/// The OpenAI-compatible backend of the configured profiles, or `None` when there is none.
///
/// # Errors
/// A profile that is invalid, named by its key (`profiles.<name>.<field>`).
pub fn llm_backend(config: &Config) -> Result<Option<Arc<dyn AgentBackend>>> {
    Ok(openai_backend(config)?.map(|backend| backend as Arc<dyn AgentBackend>))
}

/// [`llm_backend`] as its concrete type, which also probes the model servers.
///
/// # Errors
/// See [`llm_backend`].
pub fn openai_backend(config: &Config) -> Result<Option<Arc<OpenAiBackend>>> {
    if !config.llm_configured() {
        return Ok(None);
    }
    let profiles = config
        .profiles
        .iter()
        .map(|(name, profile)| {
            let name = ProfileName::new(name.as_str())
                .map_err(|e| ServerError::config(format!("profiles.{name}"), e.to_string()))?;
            Ok((name, profile.clone()))
        })
        .collect::<Result<BTreeMap<_, _>>>()?;
    let backend = OpenAiBackend::new(profiles).map_err(|e| ServerError::config("profiles", e.to_string()))?;
    let names: Vec<&str> = backend.profile_names().map(ProfileName::as_str).collect();
    info!(profiles = ?names, "LLM backend configured");
    Ok(Some(Arc::new(backend)))
}

/// The stores: the given ones, or those of `database_url` (a given store without a registry or
/// an outbox runs without standing councils or events).
pub(crate) struct Stores {
    pub deliberations: Arc<dyn DeliberationStore>,
    pub councils: Option<Arc<dyn CouncilStore>>,
    pub outbox: Option<Arc<dyn Outbox>>,
}

impl Stores {
    /// Takes `deps`' stores, or opens `database_url` (with the exclusive lock of a SQLite file).
    ///
    /// # Errors
    /// The store cannot be opened or is held by another process.
    pub(crate) async fn open(config: &Config, deps: &mut Dependencies) -> Result<Self> {
        if let Some(deliberations) = deps.store.take() {
            return Ok(Self { deliberations, councils: deps.councils.take(), outbox: deps.outbox.take() });
        }
        info!(database = %orchestrator_infra_store::redact_url(&config.database_url), "opening deliberation store");
        let stores =
            orchestrator_infra_store::connect_stores(&config.database_url, &config.store_options()).await?;
        Ok(Self {
            deliberations: stores.deliberations,
            councils: Some(deps.councils.take().unwrap_or(stores.councils)),
            outbox: Some(deps.outbox.take().unwrap_or(stores.outbox)),
        })
    }
}

/// The configured `[dry_run]` command, unless `deps` brought a dry runner.
///
/// # Errors
/// An invalid `dry_run.<field>`.
pub(crate) fn dry_runner(
    config: &Config,
    given: Option<Arc<dyn DryRunner>>,
) -> Result<Option<Arc<dyn DryRunner>>> {
    if given.is_some() {
        return Ok(given);
    }
    let Some(dry_run) = &config.dry_run else {
        return Ok(None);
    };
    let runner = CommandDryRunner::new(dry_run.clone())
        .map_err(|e| ServerError::config(format!("dry_run.{}", e.field), e.reason))?;
    info!(command = ?dry_run.command, "dry-run check configured");
    Ok(Some(Arc::new(runner)))
}

/// The acceptance-test runner (the given one, or Python over the sandbox found on this
/// machine), after the one start-up line about executing model-written tests.
pub(crate) fn test_runner(config: &Config, given: Option<Arc<dyn TestRunner>>) -> Arc<dyn TestRunner> {
    let (runner, sandbox_problem): (Arc<dyn TestRunner>, Option<String>) = match given {
        Some(runner) => {
            let problem = (!runner.can_run()).then(|| "the configured test runner cannot run".to_owned());
            (runner, problem)
        }
        None => {
            let runner = PythonTestRunner::detect();
            let problem = runner.sandbox_problem().map(ToString::to_string);
            (Arc::new(runner), problem)
        }
    };
    match sandbox_problem {
        None => info!(
            early_stop = %config.early_stop,
            strategy = %config.strategy,
            "acceptance tests: the sandbox works; tasks' tests will run"
        ),
        Some(why) => warn!(
            %why,
            "acceptance tests: no working sandbox; tasks' tests will be reported \"not run: no sandbox\""
        ),
    }
    runner
}

/// How deliberations run, from the configuration.
///
/// # Errors
/// An invalid `selection_profile`.
pub(crate) fn deliberation_settings(config: &Config) -> Result<DeliberationSettings> {
    let selection_profile = config
        .selection_profile
        .as_deref()
        .map(ProfileName::new)
        .transpose()
        .map_err(|e| ServerError::config("selection_profile", e.to_string()))?;
    Ok(DeliberationSettings {
        default_timeout: config.default_timeout(),
        selection_profile,
        early_stop: config.early_stop,
        strategy: config.strategy,
        ..Default::default()
    })
}

/// How jobs are admitted, leased and written, from the configuration.
pub(crate) fn job_settings(config: &Config, node_id: &str, store_held_exclusively: bool) -> JobSettings {
    JobSettings {
        max_running: config.max_running,
        queue_capacity: config.queue_capacity,
        queue_share: config.queue_share,
        resume_unfinished: config.resume_unfinished,
        node_id: node_id.to_owned(),
        lease: Duration::from_secs(config.lease_secs),
        write_retry: Duration::from_secs(config.store_write_retry_secs),
        probe_interval: Duration::from_millis(config.store_probe_interval_ms),
        // On a database other servers share, work this server has no room for goes to a
        // server that has.
        share_submissions: !store_held_exclusively,
    }
}

/// Creates the standing councils the configuration declares that the registry lacks.
///
/// # Errors
/// The registry cannot be written (`Store`), or a declared council is refused (`councils`).
pub(crate) async fn declare_councils(config: &Config, councils: &Councils) -> Result<()> {
    let created = councils.declare(&config.declared_councils()?).await.map_err(|error| match error {
        orchestrator_application::ApplicationError::Store { source } => ServerError::Store(source),
        refused => ServerError::config("councils", refused.to_string()),
    })?;
    if !created.is_empty() {
        info!(roles = ?created, "created the standing councils the configuration declares");
    }
    Ok(())
}
