//! Tasks on one node: `tasks.db`, its own SQLite file in the data directory (WAL,
//! `synchronous=FULL`: a task acknowledged to its client survives a crash). One row per
//! task, the record as JSON beside the columns it is found by.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use super::record::Record;

/// The file name inside the data directory.
pub const FILE_NAME: &str = "tasks.db";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS task (
    id          TEXT PRIMARY KEY,
    created_ms  INTEGER NOT NULL,
    expires_ms  INTEGER,
    body        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS task_created ON task (created_ms);
CREATE INDEX IF NOT EXISTS task_expires ON task (expires_ms);
";

/// The tasks in SQLite.
pub struct SqliteTasks {
    /// The one connection; a `std` mutex held inside `spawn_blocking` only. `Err`: the file
    /// could not be opened, which every use reports.
    conn: Result<Arc<Mutex<Connection>>, String>,
}

impl SqliteTasks {
    /// Opens (creating) `tasks.db` in `data_dir`. Should that fail, the error is logged and
    /// every use of the store reports it (tasks are then refused; plain calls go on).
    pub fn open(data_dir: &Path) -> Self {
        let conn = Self::connect(data_dir).map(|c| Arc::new(Mutex::new(c)));
        if let Err(e) = &conn {
            tracing::error!(error = %e, "The tasks store could not be opened; calls as tasks are refused.");
        }
        Self { conn }
    }

    fn connect(data_dir: &Path) -> Result<Connection, String> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
        let path = data_dir.join(FILE_NAME);
        let fail = |e: rusqlite::Error| format!("cannot open {}: {e}", path.display());
        let conn = Connection::open(&path).map_err(fail)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(fail)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(fail)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(fail)?;
        conn.execute_batch(SCHEMA).map_err(fail)?;
        Ok(conn)
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, String> {
        let conn = self.conn.clone()?;
        tokio::task::spawn_blocking(move || {
            let conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&conn)
        })
        .await
        .map_err(|e| format!("tasks.db: {e}"))?
        .map_err(|e| format!("tasks.db: {e}"))
    }

    /// Writes `record` (inserting or replacing it).
    ///
    /// # Errors
    /// The database failed.
    pub async fn put(&self, record: &Record) -> Result<(), String> {
        let body = serde_json::to_string(record).map_err(|e| e.to_string())?;
        let (id, created, expires) = (record.id.clone(), record.created_ms, record.expires_ms);
        self.with(move |c| {
            c.execute(
                "INSERT OR REPLACE INTO task (id, created_ms, expires_ms, body) VALUES (?1, ?2, ?3, ?4)",
                params![id, created as i64, expires.map(|e| e as i64), body],
            )
            .map(|_| ())
        })
        .await
    }

    /// Task `id`.
    ///
    /// # Errors
    /// The database failed.
    pub async fn get(&self, id: &str) -> Result<Option<Record>, String> {
        let id = id.to_owned();
        let body: Option<String> = self
            .with(move |c| {
                c.query_row("SELECT body FROM task WHERE id = ?1", [id], |r| r.get(0))
                    .optional()
            })
            .await?;
        Ok(body.and_then(|b| serde_json::from_str(&b).ok()))
    }

    /// The newest `limit` tasks, newest first.
    ///
    /// # Errors
    /// The database failed.
    pub async fn list(&self, limit: usize) -> Result<Vec<Record>, String> {
        let bodies: Vec<String> = self
            .with(move |c| {
                let mut stmt =
                    c.prepare("SELECT body FROM task ORDER BY created_ms DESC LIMIT ?1")?;
                let rows = stmt.query_map([limit as i64], |r| r.get::<_, String>(0))?;
                rows.collect()
            })
            .await?;
        Ok(bodies
            .iter()
            .filter_map(|b| serde_json::from_str(b).ok())
            .collect())
    }

    /// Deletes the tasks expired at `now_ms`; how many.
    ///
    /// # Errors
    /// The database failed.
    pub async fn delete_expired(&self, now_ms: u64) -> Result<usize, String> {
        self.with(move |c| {
            c.execute(
                "DELETE FROM task WHERE expires_ms IS NOT NULL AND expires_ms <= ?1",
                [now_ms as i64],
            )
        })
        .await
    }
}
