//! Incidents: ServiceNow's incident record and the stores that keep it.
//!
//! [`vocab`] holds the coded vocabularies (state, impact, urgency, priority) with tolerant
//! parsing and ServiceNow display values. [`model`] is the rest of the pure domain: fields,
//! numbers, timestamps, and the rules a change must follow. Two stores keep incidents with the
//! same four operations on the same types: [`embedded`], the SQLite store in the data
//! directory, created and seeded on first start, that lets the ServiceNow agent work without a
//! ServiceNow instance; and [`table_api`], a real instance through its REST Table API.
//! [`Store`] is the one place that chooses between them, so the tool layer
//! (`tools::servicenow`) never knows which one it talks to: it turns MCP arguments into these
//! types and maps [`Error`] to tool errors.

pub mod embedded;
pub mod model;
mod seed;
pub mod table_api;
pub mod vocab;
mod writer;

use std::path::PathBuf;
use std::sync::Arc;

pub use embedded::EmbeddedStore;
pub use model::{Incident, IncidentNumber, IncidentPatch, NewIncident, SearchQuery, Violation};
pub use table_api::TableApiStore;
pub use vocab::{Level, Priority, State, UnknownValue};

/// The incident store a set of ServiceNow tools works on.
#[derive(Clone)]
pub enum Store {
    /// SQLite in the data directory, shared by every agent that uses it.
    Embedded(Arc<EmbeddedStore>),
    /// A ServiceNow instance through its Table API.
    TableApi(Arc<TableApiStore>),
}

/// Each Table API call is boxed: its future (an HTTP round trip) is kilobytes, and inline
/// every call of the embedded store would move that size through the futures above it.
impl Store {
    /// What to set before this store can work (a Table API store whose instance URL or
    /// credentials are empty); `None` when it can.
    pub fn missing_settings(&self) -> Option<&str> {
        match self {
            Store::Embedded(_) => None,
            Store::TableApi(store) => store.missing_settings(),
        }
    }

    /// Creates an incident in state New with the next number.
    ///
    /// # Errors
    /// [`Error::Invalid`] when the short description is blank; otherwise the store's failure.
    pub async fn create(&self, new: NewIncident) -> Result<Incident, Error> {
        match self {
            Store::Embedded(store) => store.create(new).await,
            Store::TableApi(store) => Box::pin(store.create(new)).await,
        }
    }

    /// The incident with this number (any case), or `None`.
    ///
    /// # Errors
    /// [`Error::Invalid`] when `number` is not `INC` + 7 digits; otherwise the store's
    /// failure.
    pub async fn get(&self, number: &str) -> Result<Option<Incident>, Error> {
        match self {
            Store::Embedded(store) => store.get(number).await,
            Store::TableApi(store) => Box::pin(store.get(number)).await,
        }
    }

    /// Applies `patch` to the incident with this number ([`Incident::patched`]'s rules).
    ///
    /// # Errors
    /// [`Error::Invalid`] when the number or the patch breaks a rule, [`Error::NotFound`]
    /// when there is no such incident; otherwise the store's failure.
    pub async fn update(&self, number: &str, patch: IncidentPatch) -> Result<Incident, Error> {
        match self {
            Store::Embedded(store) => store.update(number, patch).await,
            Store::TableApi(store) => Box::pin(store.update(number, patch)).await,
        }
    }

    /// The incidents matching `query`, newest first, at most `query.limit`.
    ///
    /// # Errors
    /// The store's failure.
    pub async fn search(&self, query: SearchQuery) -> Result<Vec<Incident>, Error> {
        match self {
            Store::Embedded(store) => store.search(query).await,
            Store::TableApi(store) => Box::pin(store.search(query)).await,
        }
    }
}

/// Why an incident store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No incident has this number.
    #[error("incident {number} not found")]
    NotFound {
        /// The number that was looked up.
        number: IncidentNumber,
    },
    /// The request breaks an incident rule (blank summary, resolving without close notes,
    /// malformed number, nothing to update).
    #[error(transparent)]
    Invalid(#[from] Violation),
    /// SQLite failed (I/O, corruption, lock timeout, ...).
    #[error("incident database error: {0}")]
    Storage(#[from] rusqlite::Error),
    /// The data directory could not be created.
    #[error("cannot create data directory {}: {source}", path.display())]
    Io {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The database was written by a newer build with a schema this build does not know.
    #[error(
        "incident database {} has schema version {found}, this build supports up to {supported}",
        path.display()
    )]
    UnsupportedSchema {
        /// The database file.
        path: PathBuf,
        /// The schema version found in the file.
        found: i64,
        /// The newest schema version this build knows.
        supported: i64,
    },
    /// Every number up to `INC9999999` is taken.
    #[error("no incident numbers left: INC9999999 is taken")]
    NumbersExhausted,
    /// The transaction holding this write, committed together with other writes (group
    /// commit), failed to begin or to commit: none of its writes, this one included, is
    /// saved. Shared by the callers of the group.
    #[error("incident database error: the write was not saved: {0}")]
    Commit(Arc<rusqlite::Error>),
    /// The write panicked (a bug); it was rolled back and the store keeps working.
    #[error("incident store write failed unexpectedly (it was rolled back)")]
    WritePanicked,
    /// The embedded store's writer thread has stopped: no write can be saved until restart.
    #[error("incident store writer has stopped")]
    WriterStopped,
    /// The embedded store's writer thread could not be started.
    #[error("cannot start the incident store writer thread: {0}")]
    WriterThread(#[source] std::io::Error),
    /// The ServiceNow instance (Table API store) is not configured, refused the request or
    /// failed.
    #[error(transparent)]
    TableApi(#[from] table_api::Error),
}
