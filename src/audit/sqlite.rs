//! The trail on one node: `audit.db`, its own SQLite file in the data directory (WAL,
//! `synchronous=FULL`: a written batch survives a crash), written in batches by the trail's
//! writer and read by the admin API.
//!
//! Writing is what the trail costs a busy gateway, so a record costs one row and two index
//! entries (root, time): `seq` is the rowid (in write order; retention deletes the oldest, so
//! it keeps rising), record ids are fresh UUIDs (no uniqueness index to keep), and a batch
//! goes in by multi-row statements. Files made before this keep their `AUTOINCREMENT` and
//! unique id index; both still work.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, Row};

use super::{Filter, Outcome, Record};

/// The file name inside the data directory.
pub const FILE_NAME: &str = "audit.db";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit_record (
    seq               INTEGER PRIMARY KEY,
    id                TEXT NOT NULL,
    root_id           TEXT NOT NULL,
    parent_id         TEXT,
    time_ms           INTEGER NOT NULL,
    principal         TEXT,
    client            TEXT,
    agent             TEXT NOT NULL,
    tool              TEXT NOT NULL,
    transport         TEXT,
    session           TEXT,
    depth             INTEGER NOT NULL,
    arguments         TEXT NOT NULL,
    arguments_sha256  TEXT NOT NULL,
    decision          TEXT NOT NULL,
    rule              TEXT,
    outcome           TEXT NOT NULL,
    error             TEXT,
    duration_ms       REAL NOT NULL,
    model             TEXT,
    turns             INTEGER,
    prompt_tokens     INTEGER,
    completion_tokens INTEGER,
    approval          TEXT
);
CREATE INDEX IF NOT EXISTS audit_record_root ON audit_record (root_id);
CREATE INDEX IF NOT EXISTS audit_record_time ON audit_record (time_ms);
";

const COLUMNS: &str = "seq, id, root_id, parent_id, time_ms, principal, client, agent, tool, \
    transport, session, depth, arguments, arguments_sha256, decision, rule, outcome, error, \
    duration_ms, model, turns, prompt_tokens, completion_tokens, approval";

/// The trail in SQLite.
pub struct SqliteTrail {
    path: PathBuf,
    /// The one writer connection; a `std` mutex held inside `spawn_blocking` only.
    writer: Mutex<Connection>,
}

impl SqliteTrail {
    /// Opens (creating) `audit.db` in `data_dir`.
    ///
    /// # Errors
    /// The directory or the file cannot be created or opened.
    pub fn open(data_dir: &Path) -> Result<Self, String> {
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
        add_missing_columns(&conn).map_err(fail)?;
        Ok(Self {
            path,
            writer: Mutex::new(conn),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `batch` in one transaction (blocking: call it off the async threads).
    ///
    /// # Errors
    /// SQLite's.
    pub fn write(&self, batch: &[Record]) -> Result<(), rusqlite::Error> {
        let mut conn = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let tx = conn.transaction()?;
        // Rows go in by statements of 32, 16, ..., 1 rows: a statement's own work (opening
        // the table and its indexes, ending) is paid once per chunk, not once per row, with at
        // most six statements to keep prepared.
        let mut rest = batch;
        while !rest.is_empty() {
            let k = CHUNKS
                .iter()
                .position(|&n| n <= rest.len())
                .unwrap_or(CHUNKS.len() - 1);
            let (chunk, tail) = rest.split_at(CHUNKS[k]);
            let mut insert = tx.prepare_cached(insert_sql(k))?;
            for (i, r) in chunk.iter().enumerate() {
                bind(&mut insert, i * INSERT_COLUMNS, r)?;
            }
            insert.raw_execute()?;
            rest = tail;
        }
        tx.commit()
    }

    /// Deletes the records of calls that began before `cutoff` (Unix ms; blocking); how many.
    ///
    /// # Errors
    /// SQLite's.
    pub fn prune(&self, cutoff: i64) -> Result<usize, rusqlite::Error> {
        let conn = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        conn.execute("DELETE FROM audit_record WHERE time_ms < ?1", [cutoff])
    }

    /// The records `filter` wants, newest written first, with their cursors.
    ///
    /// # Errors
    /// The database cannot be read.
    pub async fn list(&self, filter: Filter) -> Result<Vec<(i64, Record)>, String> {
        let path = self.path.clone();
        blocking(move || {
            let conn = reader(&path)?;
            let mut sql = format!("SELECT {COLUMNS} FROM audit_record WHERE 1 = 1");
            let mut values: Vec<rusqlite::types::Value> = Vec::new();
            let mut add = |clause: &str, value: rusqlite::types::Value| {
                values.push(value);
                sql.push_str(&format!(" AND {clause} ?{}", values.len()));
            };
            if let Some(v) = filter.from_ms {
                add("time_ms >=", v.into());
            }
            if let Some(v) = filter.to_ms {
                add("time_ms <", v.into());
            }
            for (column, v) in [
                ("principal =", filter.principal),
                ("client =", filter.client),
                ("agent =", filter.agent),
                ("tool =", filter.tool),
                ("root_id =", filter.root_id),
                ("outcome =", filter.outcome.map(|o| o.as_str().to_owned())),
            ] {
                if let Some(v) = v {
                    add(column, v.into());
                }
            }
            if let Some(v) = filter.before {
                add("seq <", v.into());
            }
            sql.push_str(&format!(" ORDER BY seq DESC LIMIT {}", filter.limit));
            let mut stmt = conn.prepare(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(values), |row| {
                Ok((row.get::<_, i64>(0)?, record(row)?))
            })?;
            rows.collect::<Result<Vec<_>, _>>()
        })
        .await
    }

    /// Every record of the client's call `root_id`, oldest first.
    ///
    /// # Errors
    /// The database cannot be read.
    pub async fn tree(&self, root_id: String) -> Result<Vec<Record>, String> {
        let path = self.path.clone();
        blocking(move || {
            let conn = reader(&path)?;
            let mut stmt = conn.prepare(&format!(
                "SELECT {COLUMNS} FROM audit_record WHERE root_id = ?1 ORDER BY time_ms, id"
            ))?;
            let rows = stmt.query_map([root_id], record)?;
            rows.collect::<Result<Vec<_>, _>>()
        })
        .await
    }
}

/// The columns a record is written in, in [`bind`]'s order.
const INSERT_COLUMN_NAMES: &str = "id, root_id, parent_id, time_ms, principal, client, agent, \
    tool, transport, session, depth, arguments, arguments_sha256, decision, rule, outcome, \
    error, duration_ms, model, turns, prompt_tokens, completion_tokens, approval";

/// How many columns [`bind`] binds per record.
const INSERT_COLUMNS: usize = 23;

/// The rows per insert statement, largest first (see [`SqliteTrail::write`]).
const CHUNKS: [usize; 6] = [32, 16, 8, 4, 2, 1];

/// The statement inserting `CHUNKS[k]` records, built once: a batch of a thousand records
/// would otherwise format some twenty thousand placeholders.
fn insert_sql(k: usize) -> &'static str {
    static STATEMENTS: std::sync::OnceLock<[String; CHUNKS.len()]> = std::sync::OnceLock::new();
    &STATEMENTS.get_or_init(|| CHUNKS.map(build_insert_sql))[k]
}

fn build_insert_sql(rows: usize) -> String {
    let mut sql = format!("INSERT INTO audit_record ({INSERT_COLUMN_NAMES}) VALUES ");
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for column in 0..INSERT_COLUMNS {
            if column > 0 {
                sql.push_str(", ");
            }
            sql.push('?');
            sql.push_str(&(row * INSERT_COLUMNS + column + 1).to_string());
        }
        sql.push(')');
    }
    sql
}

/// Binds record `r` to the parameters after `offset` of `insert`.
fn bind(
    insert: &mut rusqlite::CachedStatement<'_>,
    offset: usize,
    r: &Record,
) -> Result<(), rusqlite::Error> {
    let approval = r
        .approval
        .as_ref()
        .and_then(|a| serde_json::to_string(a).ok());
    let at = |k: usize| offset + k;
    insert.raw_bind_parameter(at(1), &r.id)?;
    insert.raw_bind_parameter(at(2), &r.root_id)?;
    insert.raw_bind_parameter(at(3), &r.parent_id)?;
    insert.raw_bind_parameter(at(4), r.time_ms)?;
    insert.raw_bind_parameter(at(5), &r.principal)?;
    insert.raw_bind_parameter(at(6), &r.client)?;
    insert.raw_bind_parameter(at(7), &r.agent)?;
    insert.raw_bind_parameter(at(8), &r.tool)?;
    insert.raw_bind_parameter(at(9), &r.transport)?;
    insert.raw_bind_parameter(at(10), &r.session)?;
    insert.raw_bind_parameter(at(11), r.depth)?;
    insert.raw_bind_parameter(at(12), r.arguments.text())?;
    insert.raw_bind_parameter(at(13), &r.arguments_sha256)?;
    insert.raw_bind_parameter(at(14), &r.decision)?;
    insert.raw_bind_parameter(at(15), &r.rule)?;
    insert.raw_bind_parameter(at(16), r.outcome.as_str())?;
    insert.raw_bind_parameter(at(17), &r.error)?;
    insert.raw_bind_parameter(at(18), r.duration_ms)?;
    insert.raw_bind_parameter(at(19), &r.model)?;
    insert.raw_bind_parameter(at(20), r.turns)?;
    insert.raw_bind_parameter(at(21), r.prompt_tokens.map(|t| t as i64))?;
    insert.raw_bind_parameter(at(22), r.completion_tokens.map(|t| t as i64))?;
    insert.raw_bind_parameter(at(23), approval)?;
    Ok(())
}

/// Brings a file made by an earlier version up to the schema: columns added since then.
fn add_missing_columns(conn: &Connection) -> Result<(), rusqlite::Error> {
    let mut stmt = conn.prepare("SELECT name FROM pragma_table_info('audit_record')")?;
    let columns: Vec<String> = stmt
        .query_map([], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    if !columns.iter().any(|c| c == "approval") {
        conn.execute("ALTER TABLE audit_record ADD COLUMN approval TEXT", [])?;
    }
    Ok(())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, rusqlite::Error> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("the audit database cannot be read: {e}")),
        Err(e) => Err(format!("the audit database read did not finish: {e}")),
    }
}

fn reader(path: &Path) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(conn)
}

fn record(row: &Row<'_>) -> Result<Record, rusqlite::Error> {
    let arguments: String = row.get(12)?;
    let outcome: String = row.get(16)?;
    Ok(Record {
        id: row.get(1)?,
        root_id: row.get(2)?,
        parent_id: row.get(3)?,
        time_ms: row.get(4)?,
        principal: row.get(5)?,
        client: row.get(6)?,
        agent: row.get(7)?,
        tool: row.get(8)?,
        transport: row.get(9)?,
        session: row.get(10)?,
        depth: row.get(11)?,
        arguments: super::redact::Arguments::from_json(&arguments),
        arguments_sha256: row.get(13)?,
        decision: row.get(14)?,
        rule: row.get(15)?,
        outcome: Outcome::parse(&outcome).unwrap_or(Outcome::Error),
        error: row.get(17)?,
        duration_ms: row.get(18)?,
        model: row.get(19)?,
        turns: row.get(20)?,
        prompt_tokens: row.get::<_, Option<i64>>(21)?.map(|t| t as u64),
        completion_tokens: row.get::<_, Option<i64>>(22)?.map(|t| t as u64),
        approval: row
            .get::<_, Option<String>>(23)?
            .and_then(|a| serde_json::from_str(&a).ok()),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn record(n: usize, root: &str) -> Record {
        Record {
            id: format!("rec-{n:03}"),
            root_id: root.to_owned(),
            parent_id: (n > 0).then(|| "rec-000".to_owned()),
            time_ms: 1_000 + n as i64,
            principal: Some("alice".to_owned()),
            client: None,
            agent: "servicenow".to_owned(),
            tool: format!("tool-{n}"),
            transport: Some("sse".to_owned()),
            session: None,
            depth: u32::from(n > 0),
            arguments: super::super::redact::Arguments::from_value(
                &serde_json::json!({"n": n, "text": "it's \"quoted\""}),
            ),
            arguments_sha256: "ab".repeat(32),
            decision: "allow".to_owned(),
            rule: None,
            approval: None,
            outcome: if n.is_multiple_of(2) {
                Outcome::Ok
            } else {
                Outcome::Error
            },
            error: (!n.is_multiple_of(2)).then(|| format!("failed {n}")),
            duration_ms: n as f64 / 2.0,
            model: (n == 0).then(|| "gpt".to_owned()),
            turns: (n == 0).then_some(2),
            prompt_tokens: (n == 0).then_some(10),
            completion_tokens: (n == 0).then_some(5),
        }
    }

    /// A batch goes in by statements of 32, 16, ... rows: 45 records (32 + 8 + 4 + 1) and then
    /// 3 more (2 + 1) all come back, each exactly as written, in write order.
    #[tokio::test]
    async fn batches_of_any_size_are_written_whole_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let trail = SqliteTrail::open(dir.path()).unwrap();
        let first: Vec<Record> = (0..45).map(|n| record(n, "rec-000")).collect();
        let second: Vec<Record> = (45..48).map(|n| record(n, "other")).collect();
        trail.write(&first).unwrap();
        trail.write(&second).unwrap();
        let listed = trail
            .list(Filter {
                limit: 100,
                ..Filter::default()
            })
            .await
            .unwrap();
        let written: Vec<Record> = first.iter().chain(&second).rev().cloned().collect();
        let read: Vec<Record> = listed.iter().map(|(_, r)| r.clone()).collect();
        assert_eq!(read, written);
        let seqs: Vec<i64> = listed.iter().map(|(seq, _)| *seq).collect();
        assert!(seqs.windows(2).all(|w| w[0] > w[1]), "{seqs:?}");
        assert_eq!(trail.tree("rec-000".to_owned()).await.unwrap(), first);
    }
}
