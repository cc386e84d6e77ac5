//! The embedded incident store: one SQLite file, `incidents.db`, in the data directory.
//!
//! [`EmbeddedStore::open`] creates the directory and the file when missing, switches the file
//! to WAL with `synchronous=FULL` (a write acknowledged to a caller is on disk and survives a
//! crash or power loss), creates the schema and seeds a handful of realistic incidents, once:
//! the seed runs in the same transaction that creates the schema and sets `user_version`, so a
//! reopened store is never reseeded.
//!
//! Every write goes through one writer connection, owned by a thread that commits
//! concurrent writes together (group commit, see [`super::writer`]): one `BEGIN IMMEDIATE`
//! transaction and one sync per group, each write in its own savepoint so that it fails
//! alone. A write is acknowledged only once the commit holding it has returned, so an
//! acknowledged write is on disk. The next incident number (`max + 1`) is computed inside the
//! transaction, after the writes before it in the group, so concurrent creates (from this
//! process or another one on the same file, which `BEGIN IMMEDIATE` keeps out) never produce
//! the same number and leave no gaps; the `UNIQUE` constraint backs that up. Reads use a small
//! pool of read-only connections and, thanks to WAL, never wait for the writer; they are small
//! and bounded and run inline (see `EmbeddedStore::read` for why).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use rusqlite::types::Type;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, TransactionBehavior, params};
use time::OffsetDateTime;

use super::Error;
use super::model::{
    Incident, IncidentNumber, IncidentPatch, Level, NewIncident, Priority, SearchQuery, State,
    Violation, format_timestamp, new_sys_id, now, parse_timestamp,
};
use super::writer::Writer;

/// The database file name inside the data directory.
pub const FILE_NAME: &str = "incidents.db";

/// The schema version this build writes and reads (`PRAGMA user_version`): 1 was the table
/// alone, 2 adds the full-text index [`TEXT_INDEX`] (an older file is migrated on open).
const SCHEMA_VERSION: i64 = 2;

/// How long a connection waits for another one's lock before failing with `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How many idle read connections are kept; more are opened under load and closed after use.
const MAX_IDLE_READERS: usize = 4;

/// The sequence of the first incident created in an empty table.
const FIRST_SEQUENCE: u32 = 10_001;

const SCHEMA: &str = "
CREATE TABLE incident (
    id                INTEGER PRIMARY KEY,
    number            TEXT NOT NULL UNIQUE
                      CHECK (number GLOB 'INC[0-9][0-9][0-9][0-9][0-9][0-9][0-9]'),
    sys_id            TEXT NOT NULL UNIQUE,
    short_description TEXT NOT NULL,
    description       TEXT,
    caller            TEXT,
    category          TEXT,
    impact            INTEGER NOT NULL CHECK (impact BETWEEN 1 AND 3),
    urgency           INTEGER NOT NULL CHECK (urgency BETWEEN 1 AND 3),
    priority          INTEGER NOT NULL CHECK (priority BETWEEN 1 AND 5),
    state             INTEGER NOT NULL CHECK (state IN (1, 2, 3, 6, 7, 8)),
    assignment_group  TEXT,
    assigned_to       TEXT,
    work_notes        TEXT,
    close_code        TEXT,
    close_notes       TEXT,
    opened_at         TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    resolved_at       TEXT
);
CREATE INDEX incident_opened_at ON incident (opened_at);
";

/// The full-text index of the text that search covers: an FTS5 table over `incident` (it
/// stores no copy of the text, only the index) with the trigram tokenizer, which indexes every
/// run of three characters, case-folded: a quoted query of three or more characters matches
/// exactly the fields that contain it as a substring, as the scan it replaces did, but from the
/// index. The triggers keep it in step with every insert, update and delete, in the writing
/// transaction. The update trigger names the indexed columns, so it fires only when one of
/// them is assigned (every `UPDATE` of this store assigns them all).
const TEXT_INDEX: &str = "
CREATE VIRTUAL TABLE incident_text USING fts5 (
    number, short_description, description, work_notes, close_notes,
    content = 'incident', content_rowid = 'id', tokenize = 'trigram'
);
CREATE TRIGGER incident_text_insert AFTER INSERT ON incident BEGIN
    INSERT INTO incident_text (rowid, number, short_description, description, work_notes,
        close_notes)
    VALUES (new.id, new.number, new.short_description, new.description, new.work_notes,
        new.close_notes);
END;
CREATE TRIGGER incident_text_delete AFTER DELETE ON incident BEGIN
    INSERT INTO incident_text (incident_text, rowid, number, short_description, description,
        work_notes, close_notes)
    VALUES ('delete', old.id, old.number, old.short_description, old.description,
        old.work_notes, old.close_notes);
END;
CREATE TRIGGER incident_text_update
AFTER UPDATE OF number, short_description, description, work_notes, close_notes ON incident
BEGIN
    INSERT INTO incident_text (incident_text, rowid, number, short_description, description,
        work_notes, close_notes)
    VALUES ('delete', old.id, old.number, old.short_description, old.description,
        old.work_notes, old.close_notes);
    INSERT INTO incident_text (rowid, number, short_description, description, work_notes,
        close_notes)
    VALUES (new.id, new.number, new.short_description, new.description, new.work_notes,
        new.close_notes);
END;
";

/// Merges the index into one segment. Each write transaction adds a segment (FTS5 merges them
/// in the background of later writes, four at a level by default), and a search reads every
/// segment: on the seeded store, nine segments cost a search about twice the instructions of
/// one (callgrind), more than the scan it replaces. Run once after seeding or migrating.
const OPTIMIZE_TEXT_INDEX: &str = "INSERT INTO incident_text (incident_text) VALUES ('optimize')";

/// The shortest query the index answers: the trigram tokenizer has no token for one or two
/// characters, so shorter queries scan the table instead (with the same matching).
const MIN_INDEXED_QUERY_CHARS: usize = 3;

/// The columns, in the order [`incident_from_row`] reads them; qualified, as a search joins
/// the table with its text index.
const COLUMNS: &str = "incident.number, incident.sys_id, incident.short_description, \
     incident.description, incident.caller, incident.category, incident.impact, \
     incident.urgency, incident.priority, incident.state, incident.assignment_group, \
     incident.assigned_to, incident.work_notes, incident.close_code, incident.close_notes, \
     incident.opened_at, incident.updated_at, incident.resolved_at";

const INSERT: &str = "INSERT INTO incident (number, sys_id, short_description, description, \
     caller, category, impact, urgency, priority, state, assignment_group, assigned_to, \
     work_notes, close_code, close_notes, opened_at, updated_at, resolved_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)";

const UPDATE: &str = "UPDATE incident SET sys_id = ?2, short_description = ?3, \
     description = ?4, caller = ?5, category = ?6, impact = ?7, urgency = ?8, priority = ?9, \
     state = ?10, assignment_group = ?11, assigned_to = ?12, work_notes = ?13, \
     close_code = ?14, close_notes = ?15, opened_at = ?16, updated_at = ?17, \
     resolved_at = ?18 WHERE number = ?1";

/// The SQLite incident store. Cheap to share behind an `Arc`; every method takes `&self`.
/// Dropping it commits the writes still queued and waits for the writer thread to end.
pub struct EmbeddedStore {
    /// The database file.
    path: PathBuf,
    /// The writer thread, owner of the one connection that writes; the writes of this
    /// process queue for it in order instead of contending for SQLite's write lock.
    writer: Writer,
    /// Idle read-only connections. Locked only to pop or push one (never during a query).
    readers: Mutex<Vec<Connection>>,
}

impl EmbeddedStore {
    /// Opens (creating when missing) `data_dir/incidents.db`, configures it for durability,
    /// creates the schema and, on first creation only, seeds the demo incidents (among them
    /// `INC0012346` "VPN not working"). Blocking: call it at startup or inside
    /// `spawn_blocking`.
    ///
    /// # Errors
    /// [`Error::Io`] when the directory cannot be created, [`Error::Storage`] when SQLite
    /// fails, [`Error::UnsupportedSchema`] when the file comes from a newer build.
    pub fn open(data_dir: &Path) -> Result<Self, Error> {
        std::fs::create_dir_all(data_dir).map_err(|source| Error::Io {
            path: data_dir.to_owned(),
            source,
        })?;
        let path = data_dir.join(FILE_NAME);
        let mut writer = Connection::open(&path)?;
        configure_writer(&writer)?;
        migrate(&mut writer, &path)?;
        // Open one reader now, so a file readers cannot open fails at startup, not later.
        let reader = open_reader(&path)?;
        let writer = Writer::start(writer)?;
        tracing::debug!(path = %path.display(), "Incident store opened.");
        Ok(Self {
            path,
            writer,
            readers: Mutex::new(vec![reader]),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates an incident in state New with the next free number.
    ///
    /// # Errors
    /// [`Error::Invalid`] when the short description is blank; [`Error::NumbersExhausted`];
    /// otherwise the writer's failures (see [`EmbeddedStore::write`]).
    pub async fn create(&self, new: NewIncident) -> Result<Incident, Error> {
        self.write(move |conn| {
            // Inside the group's IMMEDIATE transaction, after the writes before this one: no
            // other writer can insert before we commit, so max + 1 is free.
            let number = next_number(conn)?;
            let incident = Incident::open(number, new_sys_id(), new, now())?;
            insert(conn, &incident)?;
            Ok(incident)
        })
        .await
    }

    /// The incident with this number (any case, e.g. `inc0012346`), or `None`.
    ///
    /// # Errors
    /// [`Error::Invalid`] when `number` is not `INC` + 7 digits; [`Error::Storage`] when the
    /// store fails.
    pub async fn get(&self, number: &str) -> Result<Option<Incident>, Error> {
        let number = IncidentNumber::parse(number)?;
        self.read(move |conn| Ok(select_by_number(conn, &number)?))
            .await
    }

    /// Applies `patch` to the incident with this number and returns the result (see
    /// [`Incident::patched`] for the rules).
    ///
    /// # Errors
    /// [`Error::Invalid`] when the number is malformed or the patch breaks a rule (the
    /// incident is then unchanged), [`Error::NotFound`] when no incident has this number;
    /// otherwise the writer's failures (see [`EmbeddedStore::write`]).
    pub async fn update(&self, number: &str, patch: IncidentPatch) -> Result<Incident, Error> {
        let number = IncidentNumber::parse(number)?;
        if patch.is_empty() {
            return Err(Violation::NothingToUpdate.into());
        }
        self.write(move |conn| {
            let current = select_by_number(conn, &number)?.ok_or(Error::NotFound { number })?;
            let next = current.patched(patch, now())?;
            execute_with(conn, UPDATE, &next)?;
            Ok(next)
        })
        .await
    }

    /// The incidents matching `query`, newest first (by `opened_at`), at most `query.limit`.
    ///
    /// # Errors
    /// [`Error::Storage`] when the store fails.
    pub async fn search(&self, query: SearchQuery) -> Result<Vec<Incident>, Error> {
        self.read(move |conn| Ok(search(conn, &query)?)).await
    }

    /// Runs `work` on the writer connection, in the next group's transaction (in a savepoint
    /// of its own), and returns its result once that transaction is durably committed.
    ///
    /// # Errors
    /// `work`'s error (its changes are then rolled back); [`Error::Commit`] when the group's
    /// transaction failed; [`Error::WritePanicked`]; [`Error::WriterStopped`].
    async fn write<T, F>(&self, work: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
    {
        self.writer.write(work).await
    }

    /// How many writes wait for the writer (not counting the group being committed).
    #[cfg(test)]
    fn queued_writes(&self) -> usize {
        self.writer.queued()
    }

    /// Runs `work` on a pooled read-only connection, on the calling task.
    ///
    /// Reads run inline rather than in `spawn_blocking`: they are small, bounded queries
    /// (a lookup by number, or at most 100 rows) on a WAL database, where readers do not wait
    /// for the writer; profiles showed the two thread hops of `spawn_blocking` costing more
    /// than the query itself. Writes, which may wait for an fsync, stay on the blocking pool.
    async fn read<T, F>(&self, work: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
    {
        self.with_reader(work)
    }

    /// Takes an idle reader (or opens one), runs `work`, and gives the reader back.
    fn with_reader<T>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, Error>,
    ) -> Result<T, Error> {
        // The pool only holds idle connections, so a poisoned lock holds nothing half-used.
        let idle = self
            .readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let conn = match idle {
            Some(conn) => conn,
            None => open_reader(&self.path)?,
        };
        let result = work(&conn);
        let mut readers = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
        if readers.len() < MAX_IDLE_READERS {
            readers.push(conn);
        }
        result
    }
}

/// Sets the per-connection and per-file options of the writer.
fn configure_writer(conn: &Connection) -> Result<(), Error> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // WAL: readers never block the writer nor the writer them. It is a property of the file.
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(journal_mode = %mode, "Incident store could not switch to WAL.");
    }
    // FULL: the WAL is synced on every commit, so an acknowledged write survives a crash or a
    // power loss (NORMAL could lose the last commits on power loss).
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")?;
    Ok(())
}

fn open_reader(path: &Path) -> Result<Connection, Error> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

/// Brings the schema to [`SCHEMA_VERSION`]. Creating the schema, seeding and setting
/// `user_version` happen in one transaction: either all of it is there or none, and two
/// processes starting together cannot both seed (nor both migrate).
fn migrate(conn: &mut Connection, path: &Path) -> Result<(), Error> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    match version {
        0 => {
            tx.execute_batch(SCHEMA)?;
            // Before the seeds, so the triggers index them.
            tx.execute_batch(TEXT_INDEX)?;
            let seeds = super::seed::incidents(now())?;
            for incident in &seeds {
                insert(&tx, incident)?;
            }
            tx.execute_batch(OPTIMIZE_TEXT_INDEX)?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
            tracing::info!(
                path = %path.display(),
                incidents = seeds.len(),
                "Incident store created and seeded."
            );
        }
        1 => {
            // A file from a build without the index: add it and index what is there.
            tx.execute_batch(TEXT_INDEX)?;
            tx.execute_batch("INSERT INTO incident_text (incident_text) VALUES ('rebuild')")?;
            tx.execute_batch(OPTIMIZE_TEXT_INDEX)?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
            tracing::info!(
                path = %path.display(),
                from = version,
                to = SCHEMA_VERSION,
                "Incident store migrated: search index added."
            );
        }
        SCHEMA_VERSION => {}
        found => {
            return Err(Error::UnsupportedSchema {
                path: path.to_owned(),
                found,
                supported: SCHEMA_VERSION,
            });
        }
    }
    tx.commit()?;
    Ok(())
}

/// The next number: the highest existing sequence + 1 (or [`FIRST_SEQUENCE`]). Must run
/// inside the write transaction that inserts it.
fn next_number(conn: &Connection) -> Result<IncidentNumber, Error> {
    // The highest number is the highest sequence: the schema's CHECK makes every number `INC`
    // and seven digits, which sort as text in numeric order. `MAX(number)` reads it from the
    // end of the UNIQUE index, where a numeric MAX would scan the whole table per create.
    let max: Option<String> = conn
        .prepare_cached("SELECT MAX(number) FROM incident")?
        .query_row([], |row| row.get(0))?;
    let next = match max {
        None => Some(FIRST_SEQUENCE),
        Some(max) => IncidentNumber::parse(&max)
            .map_err(|err| Error::Storage(conversion_error(0, err)))?
            .sequence()
            .checked_add(1),
    };
    next.and_then(IncidentNumber::from_sequence)
        .ok_or(Error::NumbersExhausted)
}

/// Runs [`INSERT`] or [`UPDATE`] (same placeholders) with the 18 column values of
/// `incident`.
fn execute_with(conn: &Connection, sql: &str, incident: &Incident) -> rusqlite::Result<usize> {
    let i = incident;
    // Cached: the writer runs these two statements for every create and update.
    conn.prepare_cached(sql)?.execute(params![
        i.number.as_str(),
        i.sys_id,
        i.short_description,
        i.description,
        i.caller,
        i.category,
        i.impact.code(),
        i.urgency.code(),
        i.priority.code(),
        i.state.code(),
        i.assignment_group,
        i.assigned_to,
        i.work_notes,
        i.close_code,
        i.close_notes,
        format_timestamp(i.opened_at),
        format_timestamp(i.updated_at),
        i.resolved_at.map(format_timestamp),
    ])
}

fn insert(conn: &Connection, incident: &Incident) -> rusqlite::Result<()> {
    execute_with(conn, INSERT, incident)?;
    Ok(())
}

fn select_by_number(
    conn: &Connection,
    number: &IncidentNumber,
) -> rusqlite::Result<Option<Incident>> {
    // Cached statements: parsing the SQL on every call was the store's main cost.
    static SQL: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| format!("SELECT {COLUMNS} FROM incident WHERE number = ?1"));
    conn.prepare_cached(&SQL)?
        .query_row([number.as_str()], incident_from_row)
        .optional()
}

/// How many matches beyond the limit a text search reads unsorted before it lets SQLite sort.
const UNSORTED_SLACK: usize = 32;

/// A text search that matches few incidents (the usual case: an agent's query is specific) is
/// read unsorted, at most `limit + UNSORTED_SLACK` rows, and sorted here when that was every
/// match: SQLite's `ORDER BY ... LIMIT` builds a temporary B-tree for each query however few
/// rows it sorts (a native profile of `search_incident`: ~3 % of the gateway's CPU to sort
/// one row). A search with more matches than that is run again, sorted by SQLite.
fn search(conn: &Connection, query: &SearchQuery) -> rusqlite::Result<Vec<Incident>> {
    if search_text(query).is_some() {
        let cap = query.limit.saturating_add(UNSORTED_SLACK);
        let (sql, values) = search_statement(query, Some(cap));
        let mut statement = conn.prepare_cached(&sql)?;
        let rows = statement.query_map(rusqlite::params_from_iter(values), |row| {
            // The sort key as SQLite compares it: the stored text (BINARY collation is a
            // byte-wise comparison, as `String`'s), not the parsed time.
            let opened_at: String = row.get(OPENED_AT_COLUMN)?;
            let number: String = row.get(0)?;
            Ok(((opened_at, number), incident_from_row(row)?))
        })?;
        let mut found = rows.collect::<rusqlite::Result<Vec<_>>>()?;
        if found.len() < cap {
            found.sort_unstable_by(|a, b| b.0.cmp(&a.0));
            found.truncate(query.limit);
            return Ok(found.into_iter().map(|(_, incident)| incident).collect());
        }
    }
    let (sql, values) = search_statement(query, None);
    let mut statement = conn.prepare_cached(&sql)?;
    let rows = statement.query_map(rusqlite::params_from_iter(values), incident_from_row)?;
    rows.collect()
}

/// The text a search looks for: `query.text` trimmed; `None` when there is none (blank
/// matches everything).
fn search_text(query: &SearchQuery) -> Option<&str> {
    query
        .text
        .as_deref()
        .map(str::trim)
        .filter(|text| !text.is_empty())
}

/// The index of `incident.opened_at` in [`COLUMNS`].
const OPENED_AT_COLUMN: usize = 15;

/// The SQL of a search and its bound values: one statement per combination of filters (and
/// of index or scan, sorted or not), each prepared once and cached by the connection.
/// `unsorted`: no `ORDER BY`, at most this many rows (see [`search`]).
fn search_statement(
    query: &SearchQuery,
    unsorted: Option<usize>,
) -> (String, Vec<rusqlite::types::Value>) {
    let text = search_text(query);
    // One statement per combination of filters, each prepared once and cached (no `?N IS
    // NULL` tests on bound values, which can make SQLite re-prepare a statement per call).
    let mut from = "FROM incident";
    let mut conditions: Vec<&str> = Vec::new();
    let mut values: Vec<rusqlite::types::Value> = Vec::new();
    match text.map(|text| (text, indexed_query(text))) {
        Some((_, Some(phrase))) => {
            // A join with the index, where `id IN (SELECT rowid ...)` made SQLite build a
            // temporary table of the matches on every search.
            from = "FROM incident_text JOIN incident ON incident.id = incident_text.rowid";
            conditions.push("incident_text MATCH ?");
            values.push(phrase.into());
        }
        Some((text, None)) => {
            // Too short for the index: a case-insensitive (ASCII, as SQLite's `lower`)
            // substring scan. `instr` rather than LIKE: a LIKE over a bound pattern makes
            // SQLite re-prepare the statement for every new pattern, and the caller's `%` and
            // `_` need no escaping.
            conditions.push(
                "(instr(lower(number), ?) > 0 \
                  OR instr(lower(short_description), ?1) > 0 \
                  OR instr(lower(description), ?1) > 0 \
                  OR instr(lower(work_notes), ?1) > 0 \
                  OR instr(lower(close_notes), ?1) > 0)",
            );
            values.push(text.to_ascii_lowercase().into());
        }
        None => {}
    }
    if let Some(state) = query.state {
        conditions.push("incident.state = ?");
        values.push(i64::from(state.code()).into());
    }
    if let Some(priority) = query.priority {
        conditions.push("incident.priority = ?");
        values.push(i64::from(priority.code()).into());
    }
    let mut sql = format!("SELECT {COLUMNS} {from}");
    for (i, condition) in conditions.iter().enumerate() {
        sql.push_str(if i == 0 { " WHERE " } else { " AND " });
        sql.push_str(condition);
    }
    // `0 + ?` rather than a bare `?`: SQLite reads a bare LIMIT parameter while planning and
    // then re-prepares the statement whenever it is bound again.
    let limit = match unsorted {
        Some(cap) => {
            sql.push_str(" LIMIT 0 + ?");
            cap
        }
        None => {
            sql.push_str(" ORDER BY incident.opened_at DESC, incident.number DESC LIMIT 0 + ?");
            query.limit
        }
    };
    values.push(i64::try_from(limit).unwrap_or(i64::MAX).into());
    (sql, values)
}

/// The FTS5 query that finds `text` as a substring through the trigram index: one quoted
/// string (a phrase of the text's trigrams, which only consecutive trigrams, that is the
/// substring itself, match), with `"` doubled, so everything the caller wrote is plain text
/// (`*`, `-`, `:`, `^`, `OR`, `NEAR`, parentheses are FTS5 syntax only outside quotes).
/// `None` when the index cannot answer: fewer than three characters, or a NUL (FTS5 reads
/// its query up to the first NUL, which would cut the quoted string open).
fn indexed_query(text: &str) -> Option<String> {
    if text.chars().nth(MIN_INDEXED_QUERY_CHARS - 1).is_none() || text.contains('\0') {
        return None;
    }
    let mut phrase = String::with_capacity(text.len() + 2);
    phrase.push('"');
    for c in text.chars() {
        if c == '"' {
            phrase.push('"');
        }
        phrase.push(c);
    }
    phrase.push('"');
    Some(phrase)
}

fn conversion_error(
    column: usize,
    err: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, Type::Text, err.into())
}

fn code_column<T>(
    row: &Row<'_>,
    column: usize,
    from_code: fn(u64) -> Option<T>,
) -> rusqlite::Result<T> {
    let code: u16 = row.get(column)?;
    from_code(u64::from(code))
        .ok_or_else(|| conversion_error(column, format!("unknown code {code}")))
}

fn timestamp_column(row: &Row<'_>, column: usize) -> rusqlite::Result<OffsetDateTime> {
    let text: String = row.get(column)?;
    parse_timestamp(&text).map_err(|err| conversion_error(column, err))
}

fn optional_timestamp_column(
    row: &Row<'_>,
    column: usize,
) -> rusqlite::Result<Option<OffsetDateTime>> {
    let text: Option<String> = row.get(column)?;
    text.map(|text| parse_timestamp(&text).map_err(|err| conversion_error(column, err)))
        .transpose()
}

/// Reads a row of [`COLUMNS`].
fn incident_from_row(row: &Row<'_>) -> rusqlite::Result<Incident> {
    let number: String = row.get(0)?;
    Ok(Incident {
        number: IncidentNumber::parse(&number).map_err(|err| conversion_error(0, err))?,
        sys_id: row.get(1)?,
        short_description: row.get(2)?,
        description: row.get(3)?,
        caller: row.get(4)?,
        category: row.get(5)?,
        impact: code_column(row, 6, Level::from_code)?,
        urgency: code_column(row, 7, Level::from_code)?,
        priority: code_column(row, 8, Priority::from_code)?,
        state: code_column(row, 9, State::from_code)?,
        assignment_group: row.get(10)?,
        assigned_to: row.get(11)?,
        work_notes: row.get(12)?,
        close_code: row.get(13)?,
        close_notes: row.get(14)?,
        opened_at: timestamp_column(row, 15)?,
        updated_at: timestamp_column(row, 16)?,
        resolved_at: optional_timestamp_column(row, 17)?,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
#[path = "embedded_tests.rs"]
mod tests;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#[path = "embedded_search_tests.rs"]
mod search_tests;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#[path = "embedded_group_tests.rs"]
mod group_tests;
