//! The trail in PostgreSQL (`[audit] url`): one table shared by every replica given the same
//! URL, so a cluster keeps one trail, and a replica's host can be lost without its records.
//!
//! One connection writes (the trail's writer task is its only user: batches, the schema, the
//! hourly prune) and one serves the admin API's reads (tokio-postgres pipelines concurrent
//! queries on it). Either is opened again on its next use once it breaks, so a restarted
//! server is picked up without a gateway restart; the writer's connection creates the schema
//! (if missing) each time it opens, under an advisory lock so that replicas starting together
//! do not race on it. Plain connections only: this build has no TLS connector.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use tokio_postgres::types::{Json, ToSql};
use tokio_postgres::{Client, NoTls, Row};

use super::redact::Arguments;
use super::{Filter, Outcome, Record, WriteError};
use crate::config::audit::PostgresUrl;

const SCHEMA: &str = "
BEGIN;
SELECT pg_advisory_xact_lock(7310582246217445889);
CREATE TABLE IF NOT EXISTS audit_record (
    seq               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id                TEXT NOT NULL UNIQUE,
    root_id           TEXT NOT NULL,
    parent_id         TEXT,
    time_ms           BIGINT NOT NULL,
    principal         TEXT,
    client            TEXT,
    agent             TEXT NOT NULL,
    tool              TEXT NOT NULL,
    transport         TEXT,
    session           TEXT,
    depth             INTEGER NOT NULL,
    arguments         JSON NOT NULL,
    arguments_sha256  TEXT NOT NULL,
    decision          TEXT NOT NULL,
    rule              TEXT,
    outcome           TEXT NOT NULL,
    error             TEXT,
    duration_ms       DOUBLE PRECISION NOT NULL,
    model             TEXT,
    turns             INTEGER,
    prompt_tokens     BIGINT,
    completion_tokens BIGINT,
    approval          JSON
);
ALTER TABLE audit_record ADD COLUMN IF NOT EXISTS approval JSON;
CREATE INDEX IF NOT EXISTS audit_record_root ON audit_record (root_id);
CREATE INDEX IF NOT EXISTS audit_record_time ON audit_record (time_ms);
CREATE INDEX IF NOT EXISTS audit_record_principal ON audit_record (principal, seq);
CREATE INDEX IF NOT EXISTS audit_record_agent ON audit_record (agent, seq);
COMMIT;
";

const COLUMNS: &str = "seq, id, root_id, parent_id, time_ms, principal, client, agent, tool, \
    transport, session, depth, arguments, arguments_sha256, decision, rule, outcome, error, \
    duration_ms, model, turns, prompt_tokens, completion_tokens, approval";

/// One statement for the whole batch (so one transaction and one round trip): the columns
/// as arrays, unnested in the batch's order so that `seq` follows it as in `audit.db`.
const INSERT: &str = "
INSERT INTO audit_record (id, root_id, parent_id, time_ms, principal, client, agent, tool,
    transport, session, depth, arguments, arguments_sha256, decision, rule, outcome, error,
    duration_ms, model, turns, prompt_tokens, completion_tokens, approval)
SELECT id, root_id, parent_id, time_ms, principal, client, agent, tool, transport, session,
    depth, arguments, arguments_sha256, decision, rule, outcome, error, duration_ms, model,
    turns, prompt_tokens, completion_tokens, approval
FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::text[], $6::text[],
    $7::text[], $8::text[], $9::text[], $10::text[], $11::int4[], $12::json[], $13::text[],
    $14::text[], $15::text[], $16::text[], $17::text[], $18::float8[], $19::text[],
    $20::int4[], $21::int8[], $22::int8[], $23::json[])
    WITH ORDINALITY AS t(id, root_id, parent_id, time_ms, principal, client, agent, tool,
    transport, session, depth, arguments, arguments_sha256, decision, rule, outcome, error,
    duration_ms, model, turns, prompt_tokens, completion_tokens, approval, ord)
ORDER BY ord
ON CONFLICT (id) DO NOTHING";

/// How long one connect may take, unless the URL says (`connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one operation (connect, schema and statement) may take before the connection
/// is taken for broken.
const OP_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the hourly prune may take.
const PRUNE_TIMEOUT: Duration = Duration::from_secs(300);

/// How long a starting gateway waits for the server to accept connections (it may be
/// starting beside the gateway) before it gives up and does not start.
pub const STARTUP_WAIT: Duration = Duration::from_secs(10);

/// One connection and the task driving it (aborted with it).
struct Conn {
    client: Client,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What can go wrong with one operation.
enum PgError {
    /// No answer within the time allowed.
    Timeout(Duration),
    /// The client's (the server's answer, or the connection's failure).
    Pg(tokio_postgres::Error),
}

impl PgError {
    /// The server answered with an error (rather than not answering).
    fn server_refused(&self) -> bool {
        matches!(self, PgError::Pg(e) if e.as_db_error().is_some())
    }

    /// Whether the same batch can be written later: everything but the server refusing
    /// the data itself (SQLSTATE classes 22, data exception, and 23, integrity).
    fn transient(&self) -> bool {
        match self {
            PgError::Timeout(_) => true,
            PgError::Pg(e) => e
                .as_db_error()
                .is_none_or(|db| !matches!(&db.code().code()[..2], "22" | "23")),
        }
    }
}

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PgError::Timeout(d) => write!(f, "no answer within {} s", d.as_secs()),
            PgError::Pg(e) => match e.as_db_error() {
                Some(db) => write!(f, "{} (SQLSTATE {})", db.message(), db.code().code()),
                None => match std::error::Error::source(e) {
                    Some(cause) => write!(f, "{e}: {cause}"),
                    None => write!(f, "{e}"),
                },
            },
        }
    }
}

impl From<tokio_postgres::Error> for PgError {
    fn from(e: tokio_postgres::Error) -> Self {
        PgError::Pg(e)
    }
}

/// The trail in PostgreSQL.
pub struct PostgresTrail {
    url: PostgresUrl,
    /// The writer's connection: the writer task and the prune (which it runs) use it.
    writer: Mutex<Option<Arc<Conn>>>,
    /// The readers' connection, shared by concurrent admin requests.
    reader: Mutex<Option<Arc<Conn>>>,
}

impl PostgresTrail {
    /// Connects to `url` and creates the schema if it is missing, waiting up to
    /// [`STARTUP_WAIT`] for a server that does not answer yet.
    ///
    /// # Errors
    /// The server refused (a wrong password or database: at once), or did not answer in time.
    pub async fn open(url: &PostgresUrl) -> Result<Self, String> {
        let mut url = url.clone();
        if url.config.get_connect_timeout().is_none() {
            url.config.connect_timeout(CONNECT_TIMEOUT);
        }
        if url.config.get_application_name().is_none() {
            url.config.application_name("switchboard-audit");
        }
        let trail = Self {
            url,
            writer: Mutex::new(None),
            reader: Mutex::new(None),
        };
        let deadline = Instant::now() + STARTUP_WAIT;
        let mut pause = Duration::from_millis(100);
        loop {
            match timed(OP_TIMEOUT, trail.connection(&trail.writer, true)).await {
                Ok(_) => return Ok(trail),
                Err(e) if e.server_refused() || Instant::now() + pause > deadline => {
                    return Err(format!("PostgreSQL at {}: {e}", trail.url));
                }
                Err(e) => {
                    tracing::info!(target = %trail.url, error = %e, "Waiting for the audit database.");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// Where it points, for logs: `host:port/database`.
    pub fn target(&self) -> &PostgresUrl {
        &self.url
    }

    /// The connection in `slot`, opened (with the schema ensured, if `schema`) when there
    /// is none or it has closed.
    async fn connection(
        &self,
        slot: &Mutex<Option<Arc<Conn>>>,
        schema: bool,
    ) -> Result<Arc<Conn>, PgError> {
        let mut slot = slot.lock().await;
        if let Some(conn) = slot.as_ref().filter(|c| !c.client.is_closed()) {
            return Ok(conn.clone());
        }
        *slot = None;
        let (client, connection) = self.url.config.connect(NoTls).await?;
        let task = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "Audit database connection ended.");
            }
        });
        let conn = Arc::new(Conn { client, task });
        if schema {
            conn.client.batch_execute(SCHEMA).await?;
        }
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// Forgets the connection in `slot` after `error`, unless the server merely refused a
    /// statement on a healthy connection.
    async fn after_error(&self, slot: &Mutex<Option<Arc<Conn>>>, error: &PgError) {
        if !error.server_refused() {
            *slot.lock().await = None;
        }
    }

    /// Writes `batch` in one statement (one transaction).
    ///
    /// # Errors
    /// The server's or the connection's, saying whether a retry can help.
    pub async fn write(&self, batch: &[Record]) -> Result<(), WriteError> {
        let attempt = async {
            let conn = self.connection(&self.writer, true).await?;
            let columns = Columns::of(batch);
            conn.client.execute(INSERT, &columns.params()).await?;
            Ok(())
        };
        match timed(OP_TIMEOUT, attempt).await {
            Ok(()) => Ok(()),
            Err(e) => {
                self.after_error(&self.writer, &e).await;
                Err(WriteError {
                    message: format!("PostgreSQL at {}: {e}", self.url),
                    transient: e.transient(),
                })
            }
        }
    }

    /// Deletes the records of calls that began before `cutoff_ms`; how many.
    ///
    /// # Errors
    /// The server's or the connection's, as text.
    pub async fn prune(&self, cutoff_ms: i64) -> Result<u64, String> {
        let attempt = async {
            let conn = self.connection(&self.writer, true).await?;
            Ok(conn
                .client
                .execute("DELETE FROM audit_record WHERE time_ms < $1", &[&cutoff_ms])
                .await?)
        };
        match timed(PRUNE_TIMEOUT, attempt).await {
            Ok(n) => Ok(n),
            Err(e) => {
                self.after_error(&self.writer, &e).await;
                Err(format!("PostgreSQL at {}: {e}", self.url))
            }
        }
    }

    /// The records `filter` wants, newest written first, with their cursors.
    ///
    /// # Errors
    /// The database cannot be read.
    pub async fn list(&self, filter: Filter) -> Result<Vec<(i64, Record)>, String> {
        let mut sql = format!("SELECT {COLUMNS} FROM audit_record WHERE TRUE");
        let mut values: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
        let mut add = |clause: &str, value: Box<dyn ToSql + Sync + Send>| {
            values.push(value);
            sql.push_str(&format!(" AND {clause} ${}", values.len()));
        };
        if let Some(v) = filter.from_ms {
            add("time_ms >=", Box::new(v));
        }
        if let Some(v) = filter.to_ms {
            add("time_ms <", Box::new(v));
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
                add(column, Box::new(v));
            }
        }
        if let Some(v) = filter.before {
            add("seq <", Box::new(v));
        }
        sql.push_str(&format!(" ORDER BY seq DESC LIMIT {}", filter.limit));
        let rows = self
            .read(&sql, values)
            .await?
            .iter()
            .map(|row| Ok((row.try_get::<_, i64>(0)?, record(row)?)))
            .collect::<Result<Vec<_>, tokio_postgres::Error>>();
        rows.map_err(|e| unreadable(&PgError::Pg(e)))
    }

    /// Every record of the client's call `root_id`, oldest first.
    ///
    /// # Errors
    /// The database cannot be read.
    pub async fn tree(&self, root_id: String) -> Result<Vec<Record>, String> {
        // `COLLATE "C"`: ids in byte order whatever the database's collation, as in SQLite.
        let sql = format!(
            "SELECT {COLUMNS} FROM audit_record WHERE root_id = $1 ORDER BY time_ms, id COLLATE \"C\""
        );
        let rows = self.read(&sql, vec![Box::new(root_id)]).await?;
        rows.iter()
            .map(record)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| unreadable(&PgError::Pg(e)))
    }

    async fn read(
        &self,
        sql: &str,
        values: Vec<Box<dyn ToSql + Sync + Send>>,
    ) -> Result<Vec<Row>, String> {
        let attempt = async {
            let conn = self.connection(&self.reader, false).await?;
            let params: Vec<&(dyn ToSql + Sync)> = values
                .iter()
                .map(|v| v.as_ref() as &(dyn ToSql + Sync))
                .collect();
            Ok(conn.client.query(sql, &params).await?)
        };
        match timed(OP_TIMEOUT, attempt).await {
            Ok(rows) => Ok(rows),
            Err(e) => {
                self.after_error(&self.reader, &e).await;
                Err(unreadable(&e))
            }
        }
    }
}

async fn timed<T>(
    limit: Duration,
    f: impl Future<Output = Result<T, PgError>>,
) -> Result<T, PgError> {
    tokio::time::timeout(limit, f)
        .await
        .unwrap_or(Err(PgError::Timeout(limit)))
}

fn unreadable(e: &PgError) -> String {
    format!("the audit database cannot be read: {e}")
}

/// PostgreSQL text cannot hold NUL: it becomes U+FFFD rather than failing the batch.
fn text(s: &str) -> String {
    if s.contains('\0') {
        s.replace('\0', "\u{FFFD}")
    } else {
        s.to_owned()
    }
}

fn opt_text(s: &Option<String>) -> Option<String> {
    s.as_deref().map(text)
}

fn int4(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn int8(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A batch as one array per column.
#[derive(Default)]
struct Columns<'a> {
    id: Vec<String>,
    root_id: Vec<String>,
    parent_id: Vec<Option<String>>,
    time_ms: Vec<i64>,
    principal: Vec<Option<String>>,
    client: Vec<Option<String>>,
    agent: Vec<String>,
    tool: Vec<String>,
    transport: Vec<Option<String>>,
    session: Vec<Option<String>>,
    depth: Vec<i32>,
    arguments: Vec<Json<&'a serde_json::value::RawValue>>,
    arguments_sha256: Vec<String>,
    decision: Vec<String>,
    rule: Vec<Option<String>>,
    outcome: Vec<&'static str>,
    error: Vec<Option<String>>,
    duration_ms: Vec<f64>,
    model: Vec<Option<String>>,
    turns: Vec<Option<i32>>,
    prompt_tokens: Vec<Option<i64>>,
    completion_tokens: Vec<Option<i64>>,
    approval: Vec<Option<serde_json::Value>>,
}

impl<'a> Columns<'a> {
    fn of(batch: &'a [Record]) -> Self {
        let mut c = Self::default();
        for r in batch {
            c.id.push(text(&r.id));
            c.root_id.push(text(&r.root_id));
            c.parent_id.push(opt_text(&r.parent_id));
            c.time_ms.push(r.time_ms);
            c.principal.push(opt_text(&r.principal));
            c.client.push(opt_text(&r.client));
            c.agent.push(text(&r.agent));
            c.tool.push(text(&r.tool));
            c.transport.push(opt_text(&r.transport));
            c.session.push(opt_text(&r.session));
            c.depth.push(int4(r.depth));
            c.arguments.push(Json(r.arguments.raw()));
            c.arguments_sha256.push(text(&r.arguments_sha256));
            c.decision.push(text(&r.decision));
            c.rule.push(opt_text(&r.rule));
            c.outcome.push(r.outcome.as_str());
            c.error.push(opt_text(&r.error));
            c.duration_ms.push(r.duration_ms);
            c.model.push(opt_text(&r.model));
            c.turns.push(r.turns.map(int4));
            c.prompt_tokens.push(r.prompt_tokens.map(int8));
            c.completion_tokens.push(r.completion_tokens.map(int8));
            c.approval.push(
                r.approval
                    .as_ref()
                    .and_then(|a| serde_json::to_value(a).ok()),
            );
        }
        c
    }

    /// In the order of `INSERT`'s parameters.
    fn params(&self) -> [&(dyn ToSql + Sync); 23] {
        [
            &self.id,
            &self.root_id,
            &self.parent_id,
            &self.time_ms,
            &self.principal,
            &self.client,
            &self.agent,
            &self.tool,
            &self.transport,
            &self.session,
            &self.depth,
            &self.arguments,
            &self.arguments_sha256,
            &self.decision,
            &self.rule,
            &self.outcome,
            &self.error,
            &self.duration_ms,
            &self.model,
            &self.turns,
            &self.prompt_tokens,
            &self.completion_tokens,
            &self.approval,
        ]
    }
}

fn record(row: &Row) -> Result<Record, tokio_postgres::Error> {
    let outcome: String = row.try_get(16)?;
    Ok(Record {
        id: row.try_get(1)?,
        root_id: row.try_get(2)?,
        parent_id: row.try_get(3)?,
        time_ms: row.try_get(4)?,
        principal: row.try_get(5)?,
        client: row.try_get(6)?,
        agent: row.try_get(7)?,
        tool: row.try_get(8)?,
        transport: row.try_get(9)?,
        session: row.try_get(10)?,
        depth: u32::try_from(row.try_get::<_, i32>(11)?).unwrap_or(0),
        arguments: Arguments::from_raw(
            row.try_get::<_, Json<Box<serde_json::value::RawValue>>>(12)?
                .0,
        ),
        arguments_sha256: row.try_get(13)?,
        decision: row.try_get(14)?,
        rule: row.try_get(15)?,
        outcome: Outcome::parse(&outcome).unwrap_or(Outcome::Error),
        error: row.try_get(17)?,
        duration_ms: row.try_get(18)?,
        model: row.try_get(19)?,
        turns: row
            .try_get::<_, Option<i32>>(20)?
            .map(|t| u32::try_from(t).unwrap_or(0)),
        prompt_tokens: row
            .try_get::<_, Option<i64>>(21)?
            .map(|t| u64::try_from(t).unwrap_or(0)),
        completion_tokens: row
            .try_get::<_, Option<i64>>(22)?
            .map(|t| u64::try_from(t).unwrap_or(0)),
        approval: row
            .try_get::<_, Option<serde_json::Value>>(23)?
            .and_then(|a| serde_json::from_value(a).ok()),
    })
}
