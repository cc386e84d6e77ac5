//! Incidents: ServiceNow's incident record and the stores that keep it.
//!
//! [`vocab`] holds the coded vocabularies (state, impact, urgency, priority) with tolerant
//! parsing and ServiceNow display values. [`model`] is the rest of the pure domain: fields,
//! numbers, timestamps, and the rules a change must follow. [`embedded`] is the SQLite store in
//! the data directory, created and seeded on first start, that lets the ServiceNow agent work
//! without a ServiceNow instance. The tool layer (`tools::servicenow`) turns MCP arguments into
//! these types and maps [`Error`] to tool errors.

pub mod embedded;
pub mod model;
pub mod vocab;

use std::path::PathBuf;

pub use embedded::EmbeddedStore;
pub use model::{Incident, IncidentNumber, IncidentPatch, NewIncident, SearchQuery, Violation};
pub use vocab::{Level, Priority, State, UnknownValue};

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
    /// The blocking task running the database work panicked or was cancelled.
    #[error("incident store task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}
