//! The default of `max_connections`: what the open-files limit leaves for client connections
//! once the descriptors the server needs for its own work are set aside.
//!
//! Every connection holds a descriptor, and so does everything else the process opens. When
//! connections take the last ones, the store cannot reconnect, a model call cannot connect and
//! a sandbox cannot get its pipes: the whole server fails, not just the newest client. So the
//! limit on connections is the soft `RLIMIT_NOFILE` minus a reserve computed from the
//! configuration, and an explicit `max_connections` above it is warned about at start-up.

use orchestrator_infra_dryrun::acceptance::DEFAULT_CONCURRENCY as ACCEPTANCE_RUNS;
use rustix::process::{Resource, getrlimit};
use tracing::warn;

use crate::config::Config;

/// Descriptors held whatever the load: stdin/stdout/stderr, the runtime's epoll and wake-up
/// descriptors, the gRPC and metrics listeners, signal handling, the store's lock file, the
/// NATS connection, DNS look-ups and files being read (TLS reloads), with room to spare.
const BASE: u64 = 32;
/// The store's pool: SQLite keeps a writer and four readers, each with the database, its WAL
/// and its shared memory open (15); PostgreSQL's pool is 10 sockets.
const STORE: u64 = 16;
/// One sandboxed run (an acceptance test or a dry run): the child's stdin, stdout and stderr
/// pipes, both ends while it is spawned, and bubblewrap's status pipe.
const PER_SANDBOX_RUN: u64 = 8;
/// The ceiling when there is no open-files limit: past it, memory rather than descriptors
/// bounds a server, and an operator who wants more says so.
const UNLIMITED: usize = 65_536;
/// Fewer connections than this would make the server useless: the floor, with a warning that
/// the open-files limit is too low.
const FLOOR: usize = 16;

/// The descriptors `config` needs besides client connections: [`BASE`], the store, one
/// connection per model call that may be in flight (each profile's `max_concurrency`), and
/// the pipes of the sandboxed runs that may run at once.
pub(crate) fn reserve(config: &Config) -> u64 {
    let model_calls: u64 = config.profiles.values().map(|profile| profile.max_concurrency as u64).sum();
    let dry_runs = config.dry_run.as_ref().map_or(0, |dry_run| dry_run.max_concurrency);
    let sandbox_runs = (ACCEPTANCE_RUNS + dry_runs) as u64;
    BASE + STORE + model_calls + PER_SANDBOX_RUN * sandbox_runs
}

/// The connections a soft open-files limit (`None`: unlimited) leaves after `reserve`, between
/// [`FLOOR`] and [`UNLIMITED`].
pub(crate) fn fitting(soft_limit: Option<u64>, reserve: u64) -> usize {
    let Some(limit) = soft_limit else { return UNLIMITED };
    let left = usize::try_from(limit.saturating_sub(reserve)).unwrap_or(UNLIMITED);
    left.clamp(FLOOR, UNLIMITED)
}

/// The `max_connections` to serve with and where it comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sizing {
    pub(crate) max_connections: usize,
    /// The soft open-files limit; `None`: unlimited.
    pub(crate) open_files_limit: Option<u64>,
    /// See [`reserve`].
    pub(crate) reserve: u64,
}

/// The configured `max_connections`, or (0) the one that fits the open-files limit, with a
/// warning when it does not fit.
pub(crate) fn max_connections(config: &Config) -> Sizing {
    let open_files_limit = getrlimit(Resource::Nofile).current;
    let reserve = reserve(config);
    let fits = fitting(open_files_limit, reserve);
    let room = open_files_limit.map_or(u64::MAX, |limit| limit.saturating_sub(reserve));
    let max_connections = if config.max_connections == 0 { fits } else { config.max_connections };
    if max_connections as u64 > room {
        warn!(
            max_connections,
            open_files_limit,
            reserve,
            "max_connections is more than the open-files limit leaves for connections: at the limit the \
             store, the model servers or the sandbox may fail to open what they need; raise the limit \
             (ulimit -n){}",
            if config.max_connections == 0 { "" } else { " or lower max_connections" }
        );
    }
    Sizing { max_connections, open_files_limit, reserve }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_leaves_the_reserve_to_the_server() {
        assert_eq!(fitting(Some(1024), 68), 956, "one model profile, the defaults");
        assert_eq!(fitting(Some(256), 68), 188);
        assert_eq!(fitting(None, 72), UNLIMITED, "no limit: the ceiling");
        assert_eq!(fitting(Some(1 << 40), 72), UNLIMITED);
        assert_eq!(fitting(Some(64), 72), FLOOR, "a limit below the reserve: the floor");
    }

    #[test]
    fn the_reserve_grows_with_model_calls_and_sandbox_runs() {
        let config = Config::default();
        let base = reserve(&config);
        assert_eq!(base, BASE + STORE + PER_SANDBOX_RUN * ACCEPTANCE_RUNS as u64);
        let with_model = Config::from_env(
            &[
                ("ORCHESTRATOR_LLM_BASE_URL", "http://x/v1"),
                ("ORCHESTRATOR_LLM_MODEL", "m"),
                ("ORCHESTRATOR_LLM_MAX_CONCURRENCY", "10"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        )
        .unwrap();
        assert_eq!(reserve(&with_model), base + 10);
    }
}
