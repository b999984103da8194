//! Durable storage of deliberations: the adapters of the [`DeliberationStore`] port.
//!
//! Two databases behave identically behind one implementation: [`SqliteStore`], the embedded
//! default (a file, WAL mode), and [`PostgresStore`] for servers. Both keep a deliberation's
//! request, status lifecycle and last saved progress in `deliberations`, and on completion
//! write every ranked proposal, review and agent failure to `proposals`, `reviews` and
//! `agent_failures`, so results can be queried in SQL and read back field for field. Schema
//! migrations are embedded and applied when a store is opened. [`connect`] picks the
//! database from a URL; [`StoreOptions`] bounds how long calls wait for it.
//!
//! The same databases keep the agent registry — standing councils and their agents in
//! `councils` and `council_agents` — behind the [`CouncilStore`] port; each deliberation row
//! names the standing council it seated (`council_id`), so every agent's record is computed
//! from the stored results. [`connect_stores`] answers both ports.
//!
//! Text is stored as given except U+0000, which PostgreSQL cannot hold: both databases
//! store U+FFFD in its place, in every string written (see the port's documentation).
#![forbid(unsafe_code)]

mod council_store;
mod error;
mod file_lock;
pub mod observability;
mod options;
mod outbox;
mod postgres;
mod registry_rows;
mod rows;
mod snapshot;
mod sql_store;
mod sqlite;
mod statement;
mod text;
mod writer;

use std::sync::Arc;

use orchestrator_application::ports::{CouncilStore, DeliberationStore, Outbox, StoreError};

use crate::error::{Fault, connect_failed};

pub use error::redact_url;
pub use options::StoreOptions;
pub use postgres::PostgresStore;
pub use sql_store::SqlStore;
pub use sqlite::SqliteStore;

/// The ports over one opened database (one set of connections).
#[derive(Clone)]
pub struct Stores {
    pub deliberations: Arc<dyn DeliberationStore>,
    pub councils: Arc<dyn CouncilStore>,
    /// The events stored with the deliberations' state changes, for the relay.
    pub outbox: Arc<dyn Outbox>,
}

impl std::fmt::Debug for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stores").finish_non_exhaustive()
    }
}

/// Opens the store named by `url`, migrated and ready: PostgreSQL for `postgres://` and
/// `postgresql://` URLs, SQLite for `sqlite:` URLs and plain file paths (parent directories
/// are created).
///
/// # Errors
/// [`StoreError::Unavailable`] for another URL scheme or when the database cannot be opened
/// or migrated.
pub async fn connect(url: &str, options: &StoreOptions) -> Result<Arc<dyn DeliberationStore>, StoreError> {
    Ok(connect_stores(url, options).await?.deliberations)
}

/// [`connect`], answering the deliberation store and the council registry of the database.
///
/// # Errors
/// As [`connect`].
pub async fn connect_stores(url: &str, options: &StoreOptions) -> Result<Stores, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let store = Arc::new(PostgresStore::connect(url, None, options).await?);
        Ok(Stores { deliberations: store.clone(), councils: store.clone(), outbox: store })
    } else if url.starts_with("sqlite:") || !url.contains("://") {
        let store = Arc::new(SqliteStore::open(url, options).await?);
        Ok(Stores { deliberations: store.clone(), councils: store.clone(), outbox: store })
    } else {
        Err(connect_failed(url, Fault::UnsupportedUrl))
    }
}
