//! Where the trail is kept: [`Store`] is `audit.db` on this node, or a PostgreSQL database
//! shared by every replica given the same `[audit] url`. The writer, the admin API and the
//! retention prune go through it and never ask which.

use std::sync::Arc;

use super::postgres::PostgresTrail;
use super::sqlite::SqliteTrail;
use super::{Filter, Record, WriteError};

/// The trail's store.
pub enum Store {
    /// `audit.db` in the data directory.
    Sqlite(Arc<SqliteTrail>),
    /// A PostgreSQL database.
    Postgres(PostgresTrail),
}

impl Store {
    /// Writes `batch` in one transaction; a record already there (same id) is kept as is,
    /// so writing a batch again after an unanswered commit stores each record once.
    ///
    /// # Errors
    /// The store's, saying whether a retry can help.
    pub async fn write(&self, batch: &Arc<Vec<Record>>) -> Result<(), WriteError> {
        match self {
            Store::Sqlite(db) => {
                let (db, batch) = (db.clone(), batch.clone());
                match tokio::task::spawn_blocking(move || db.write(&batch)).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(WriteError {
                        message: format!("audit.db: {e}"),
                        transient: true,
                    }),
                    Err(e) => Err(WriteError {
                        message: format!("audit.db write did not finish: {e}"),
                        transient: false,
                    }),
                }
            }
            Store::Postgres(pg) => pg.write(batch).await,
        }
    }

    /// Whether the writer keeps a batch until it is written (a store across the network,
    /// which comes back after an outage) rather than giving up after a few tries (a local
    /// file, whose failures a retry seldom cures).
    pub fn keeps_batches(&self) -> bool {
        matches!(self, Store::Postgres(_))
    }

    /// Deletes the records that began before `cutoff_ms`; how many.
    ///
    /// # Errors
    /// The store's, as text.
    pub async fn prune(&self, cutoff_ms: i64) -> Result<u64, String> {
        match self {
            Store::Sqlite(db) => {
                let db = db.clone();
                match tokio::task::spawn_blocking(move || db.prune(cutoff_ms)).await {
                    Ok(Ok(n)) => Ok(n as u64),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(e) => Err(e.to_string()),
                }
            }
            Store::Postgres(pg) => pg.prune(cutoff_ms).await,
        }
    }

    /// The records `filter` wants, newest written first, with their cursors.
    ///
    /// # Errors
    /// The store cannot be read.
    pub async fn list(&self, filter: Filter) -> Result<Vec<(i64, Record)>, String> {
        match self {
            Store::Sqlite(db) => db.list(filter).await,
            Store::Postgres(pg) => pg.list(filter).await,
        }
    }

    /// Every record of the client's call `root_id`, oldest first.
    ///
    /// # Errors
    /// The store cannot be read.
    pub async fn tree(&self, root_id: String) -> Result<Vec<Record>, String> {
        match self {
            Store::Sqlite(db) => db.tree(root_id).await,
            Store::Postgres(pg) => pg.tree(root_id).await,
        }
    }

    /// Where the records go, for logs (never a password).
    pub fn describe(&self) -> String {
        match self {
            Store::Sqlite(db) => db.path().display().to_string(),
            Store::Postgres(pg) => format!("PostgreSQL at {}", pg.target()),
        }
    }
}
