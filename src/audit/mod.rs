//! The audit trail: one [`Record`] per tool call at every hop (the client's own call, each
//! tool an agent's model calls, each delegated agent and its calls, each upstream MCP call),
//! linked into a tree by `root_id` and `parent_id`.
//!
//! A call opens an [`Entry`] from the [`Scope`] its `CallContext` carries (nothing, when the
//! trail is off), hands the entry's child scope to whatever it runs, and finishes the entry
//! with its outcome. Finishing only queues the record: the [`Trail`]'s writer task stores
//! queued records in batches, off the request path. A full queue drops the record (counted
//! in `switchboard_audit_records{outcome="dropped"}` and logged), never blocks or fails the
//! call. What the trail guarantees: a record is queued before its call is answered, and
//! written within [`FLUSH_WITHIN`] after, so a gateway killed (even `kill -9`) later than
//! that has lost none of the records of the calls it answered before (while its [`Store`]
//! answers: across a PostgreSQL outage the writer holds its batch and the queue fills, see
//! the writer's `# When the store fails`).
//!
//! The [`Store`] is `audit.db` ([`sqlite`]) or a PostgreSQL database ([`postgres`], `[audit]
//! url`), one table shared by every replica given the URL.

pub mod postgres;
pub mod redact;
pub mod sqlite;
pub mod store;
mod writer;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::config::audit::{AuditSpec, StoreTarget};
use crate::identity::Identity;
use crate::metrics::Metrics;

pub use store::Store;
pub use writer::FLUSH_WITHIN;

/// Which records a listing wants; every field narrows it.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Calls that began at or after this (Unix ms).
    pub from_ms: Option<i64>,
    /// Calls that began before this (Unix ms).
    pub to_ms: Option<i64>,
    /// The OAuth subject.
    pub principal: Option<String>,
    /// The client.
    pub client: Option<String>,
    /// The agent.
    pub agent: Option<String>,
    /// The tool.
    pub tool: Option<String>,
    /// The outcome.
    pub outcome: Option<Outcome>,
    /// The client's call.
    pub root_id: Option<String>,
    /// Records written before the one of this cursor (the `next_cursor` of a page).
    pub before: Option<i64>,
    /// At most this many.
    pub limit: u32,
}

/// Why a batch was not written.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct WriteError {
    /// What went wrong, for the log.
    pub message: String,
    /// Whether writing the same batch again can succeed (the store is unreachable or
    /// restarting), as opposed to the store refusing these records.
    pub transient: bool,
}

/// How a call ended, as the trail says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It produced a result.
    Ok,
    /// It failed (a tool error or invalid arguments); the record's `error` says how.
    Error,
    /// `[[policies]]` (or an approval) did not let it run.
    Refused,
    /// The caller gave up (cancel, session end, shutdown).
    Cancelled,
    /// It ran out of time.
    Timeout,
}

impl Outcome {
    /// `ok`, `error`, `refused`, `cancelled` or `timeout`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Refused => "refused",
            Outcome::Cancelled => "cancelled",
            Outcome::Timeout => "timeout",
        }
    }

    /// The outcome named `text`.
    pub fn parse(text: &str) -> Option<Self> {
        [
            Outcome::Ok,
            Outcome::Error,
            Outcome::Refused,
            Outcome::Cancelled,
            Outcome::Timeout,
        ]
        .into_iter()
        .find(|o| o.as_str() == text)
    }
}

/// What decided that a call could run (or not).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// `allow` or `deny`.
    pub decision: &'static str,
    /// The `[[policies]]` rule that decided (`policies[1]`), if one did.
    pub rule: Option<String>,
    /// The approval the call needed, if it needed one.
    pub approval: Option<Approval>,
}

impl Verdict {
    /// Allowed, by `rule` (`None`: no rules, or none needed).
    pub fn allow(rule: Option<String>) -> Self {
        Self {
            decision: "allow",
            rule,
            approval: None,
        }
    }

    /// Denied, by `rule` (`None`: no rule allows it).
    pub fn deny(rule: Option<String>) -> Self {
        Self {
            decision: "deny",
            rule,
            approval: None,
        }
    }

    /// This verdict after `approval`: a call not approved is denied.
    pub fn with_approval(self, approval: Approval) -> Self {
        let decision = if approval.decision == "approved" {
            self.decision
        } else {
            "deny"
        };
        Self {
            decision,
            rule: self.rule,
            approval: Some(approval),
        }
    }
}

/// What became of a call's approval (`[[approvals]]` of its agent; see `crate::approvals`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// The approval request's id (what `POST /admin/approvals/{id}` takes).
    pub id: String,
    /// The `[[approvals]]` rule that asked for it (`approvals[0]`).
    pub rule: String,
    /// `operator` or `client`.
    pub by: String,
    /// `approved`, `denied`, `timeout`, `withdrawn` (the caller gave up) or `unavailable`
    /// (nobody could be asked: a client without elicitation).
    pub decision: String,
    /// Who decided: the operator's name (or the admin API's peer), or the principal asked.
    pub decided_by: Option<String>,
    /// The reason given.
    pub reason: Option<String>,
    /// When it was asked for (Unix ms).
    pub requested_ms: i64,
    /// How long the call waited, in milliseconds.
    pub waited_ms: u64,
}

/// One tool call at one hop.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record {
    /// This record (a UUID, time-ordered).
    pub id: String,
    /// The client's call this one is part of (its own id for the client's call).
    pub root_id: String,
    /// The call that made this one; `None` for the client's call.
    pub parent_id: Option<String>,
    /// When the call began: Unix milliseconds.
    pub time_ms: i64,
    /// The OAuth subject, if a token identified the caller.
    pub principal: Option<String>,
    /// The configured client, or the OAuth client id.
    pub client: Option<String>,
    /// The agent whose tool was called.
    pub agent: String,
    /// The tool called (as that agent names it).
    pub tool: String,
    /// `streamable_http`, `sse` or `stdio`; `None` where no transport carried the call.
    pub transport: Option<String>,
    /// The MCP session, if any.
    pub session: Option<String>,
    /// How many agent runs enclose the call (0: the client's own call).
    pub depth: u32,
    /// The arguments, redacted.
    pub arguments: redact::Arguments,
    /// SHA-256 (hex) of the arguments as received, before redaction.
    pub arguments_sha256: String,
    /// `allow` or `deny`.
    pub decision: String,
    /// The rule (or approval) that decided, if any.
    pub rule: Option<String>,
    /// The approval the call needed: who decided what, when, and why.
    pub approval: Option<Approval>,
    /// How it ended.
    pub outcome: Outcome,
    /// The error's text, for any outcome but `ok`.
    pub error: Option<String>,
    /// How long it took, in milliseconds.
    pub duration_ms: f64,
    /// For an agent run: the model.
    pub model: Option<String>,
    /// For an agent run: model turns taken.
    pub turns: Option<u32>,
    /// For an agent run: prompt tokens (nested runs included).
    pub prompt_tokens: Option<u64>,
    /// For an agent run: completion tokens (nested runs included).
    pub completion_tokens: Option<u64>,
}

/// What an agent run adds to the record of the call that started it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFacts {
    /// The model.
    pub model: String,
    /// Turns taken.
    pub turns: u32,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
}

/// Where the call came in: the transport and session of the client's request.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// `streamable_http`, `sse` or `stdio`.
    pub transport: Option<&'static str>,
    /// The MCP session id.
    pub session: Option<Arc<str>>,
}

/// The trail: what records go into, and what reads them back.
pub struct Trail {
    tx: mpsc::Sender<writer::Message>,
    redaction: redact::Redaction,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    /// When a dropped record was last logged (Unix seconds), so a flood logs once a second.
    last_drop_log: std::sync::atomic::AtomicU64,
}

impl Trail {
    /// Opens the trail of `spec` (`audit.db` in `data_dir`, or `[audit] url`'s PostgreSQL
    /// database, its schema created if missing) and starts its writer; `None` when
    /// `[audit]` turns it off.
    ///
    /// # Errors
    /// The store cannot be opened (or the JSON-lines file created); for PostgreSQL, the
    /// server refused the connection or did not accept one within
    /// [`postgres::STARTUP_WAIT`].
    pub async fn start(
        spec: &AuditSpec,
        data_dir: &std::path::Path,
        metrics: Arc<Metrics>,
    ) -> Result<Option<Arc<Self>>, String> {
        if !spec.enabled {
            return Ok(None);
        }
        let store = Arc::new(match &spec.store {
            StoreTarget::Sqlite => Store::Sqlite(Arc::new(sqlite::SqliteTrail::open(data_dir)?)),
            StoreTarget::Postgres(url) => {
                Store::Postgres(postgres::PostgresTrail::open(url).await?)
            }
        });
        let jsonl = writer::Jsonl::open(spec.jsonl.as_ref())?;
        let (tx, rx) = mpsc::channel(spec.queue_size);
        tracing::info!(store = %store.describe(), "Audit trail on.");
        tokio::spawn(writer::run(
            rx,
            store.clone(),
            spec.retention,
            jsonl,
            metrics.clone(),
        ));
        Ok(Some(Arc::new(Self {
            tx,
            redaction: redact::Redaction::new(&spec.redact, spec.redact_common_secrets),
            store,
            metrics,
            last_drop_log: Default::default(),
        })))
    }

    /// The stored records, for the admin API.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Waits until every record queued so far is written (shutdown, tests).
    pub async fn flush(&self) {
        let (done, wait) = tokio::sync::oneshot::channel();
        if self.tx.send(writer::Message::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    fn queue(&self, record: Record) {
        match self.tx.try_send(writer::Message::Record(Box::new(record))) {
            Ok(()) => {}
            Err(e) => {
                self.metrics.audit_records("dropped", 1);
                let now = unix_secs();
                let last = self
                    .last_drop_log
                    .swap(now, std::sync::atomic::Ordering::Relaxed);
                if last != now {
                    let why = match e {
                        mpsc::error::TrySendError::Full(_) => "the queue to the writer is full",
                        mpsc::error::TrySendError::Closed(_) => "the writer has stopped",
                    };
                    tracing::warn!(
                        reason = why,
                        "Audit record dropped (counted in switchboard_audit_records{{outcome=\"dropped\"}})."
                    );
                }
            }
        }
    }
}

/// Where a call's records go: carried in the call's context, down through every hop.
#[derive(Clone, Default)]
pub struct Scope {
    /// `None`: the trail is off.
    trail: Option<Arc<Trail>>,
    /// The client's call this scope is inside (`None` at the top).
    root: Option<Arc<str>>,
    /// The record calls made in this scope hang under.
    parent: Option<Arc<str>>,
    origin: Arc<Origin>,
    /// The facts of the agent run this scope belongs to go here (its parent's record).
    run: Option<Arc<Mutex<Option<RunFacts>>>>,
}

impl Scope {
    /// The top scope of a client's request on `trail` (`None`: off).
    pub fn top(trail: Option<Arc<Trail>>, origin: Origin) -> Self {
        Self {
            trail,
            origin: Arc::new(origin),
            ..Self::default()
        }
    }

    /// Whether calls are recorded.
    pub fn is_on(&self) -> bool {
        self.trail.is_some()
    }

    /// Opens the record of a call of `tool` of `agent` with `arguments`, at `depth`;
    /// `None` when the trail is off.
    pub fn begin(
        &self,
        agent: &str,
        tool: &str,
        arguments: &serde_json::Map<String, Value>,
        depth: u32,
    ) -> Option<Entry> {
        let trail = self.trail.clone()?;
        let mut text = uuid::Uuid::encode_buffer();
        let id: Arc<str> = Arc::from(&*uuid::Uuid::now_v7().hyphenated().encode_lower(&mut text));
        let (arguments, arguments_sha256) = trail.redaction.record(arguments);
        Some(Entry {
            root: self.root.clone().unwrap_or_else(|| id.clone()),
            parent: self.parent.clone(),
            id,
            trail,
            started: Instant::now(),
            time_ms: unix_ms(),
            agent: agent.to_owned(),
            tool: tool.to_owned(),
            depth,
            arguments,
            arguments_sha256,
            origin: self.origin.clone(),
            run: Arc::new(Mutex::new(None)),
        })
    }

    /// Notes the facts of the agent run this scope belongs to, on its parent's record.
    pub fn note_run(&self, facts: RunFacts) {
        if let Some(run) = &self.run {
            *run.lock().unwrap_or_else(PoisonError::into_inner) = Some(facts);
        }
    }
}

/// The open record of one call.
pub struct Entry {
    trail: Arc<Trail>,
    id: Arc<str>,
    root: Arc<str>,
    parent: Option<Arc<str>>,
    started: Instant,
    time_ms: i64,
    agent: String,
    tool: String,
    depth: u32,
    arguments: redact::Arguments,
    arguments_sha256: String,
    origin: Arc<Origin>,
    run: Arc<Mutex<Option<RunFacts>>>,
}

impl Entry {
    /// This record's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The id of the client's call this one is part of.
    pub fn root_id(&self) -> &str {
        &self.root
    }

    /// The MCP session the client's call came in on.
    pub fn session(&self) -> Option<&str> {
        self.origin.session.as_deref()
    }

    /// The scope of the calls this one makes: they hang under it.
    pub fn child(&self) -> Scope {
        Scope {
            trail: Some(self.trail.clone()),
            root: Some(self.root.clone()),
            parent: Some(self.id.clone()),
            origin: self.origin.clone(),
            run: Some(self.run.clone()),
        }
    }

    /// Closes the record and queues it for the writer.
    pub fn finish(
        self,
        caller: &Identity,
        verdict: Verdict,
        outcome: Outcome,
        error: Option<String>,
    ) {
        let run = self
            .run
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let principal = caller.principal.as_deref();
        let record = Record {
            id: self.id.to_string(),
            root_id: self.root.to_string(),
            parent_id: self.parent.as_deref().map(str::to_owned),
            time_ms: self.time_ms,
            principal: principal.map(|p| p.subject.clone()),
            client: caller
                .client
                .as_deref()
                .map(str::to_owned)
                .or_else(|| principal.and_then(|p| p.client_id.clone())),
            agent: self.agent,
            tool: self.tool,
            transport: self.origin.transport.map(str::to_owned),
            session: self.origin.session.as_deref().map(str::to_owned),
            depth: self.depth,
            arguments: self.arguments,
            arguments_sha256: self.arguments_sha256,
            decision: verdict.decision.to_owned(),
            rule: verdict.rule,
            approval: verdict.approval,
            outcome,
            error,
            duration_ms: self.started.elapsed().as_secs_f64() * 1000.0,
            model: run.as_ref().map(|r| r.model.clone()),
            turns: run.as_ref().map(|r| r.turns),
            prompt_tokens: run.as_ref().map(|r| r.prompt_tokens),
            completion_tokens: run.as_ref().map(|r| r.completion_tokens),
        };
        self.trail.queue(record);
    }
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// How long a flush may wait for the writer at shutdown.
pub const SHUTDOWN_FLUSH: Duration = Duration::from_secs(5);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A trail whose writer never runs: its queue fills.
    fn stalled_trail(
        capacity: usize,
    ) -> (Arc<Trail>, mpsc::Receiver<writer::Message>, Arc<Metrics>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::Sqlite(Arc::new(
            sqlite::SqliteTrail::open(dir.path()).unwrap(),
        )));
        let (tx, rx) = mpsc::channel(capacity);
        let metrics = Arc::new(Metrics::new());
        let trail = Arc::new(Trail {
            tx,
            redaction: redact::Redaction::default(),
            store,
            metrics: metrics.clone(),
            last_drop_log: Default::default(),
        });
        (trail, rx, metrics)
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_the_record_and_never_blocks_the_call() {
        let (trail, mut rx, metrics) = stalled_trail(1);
        let scope = Scope::top(Some(trail), Origin::default());
        let args = serde_json::Map::new();
        for _ in 0..3 {
            let entry = scope.begin("a", "t", &args, 0).unwrap();
            // Returns at once although nobody reads the queue.
            entry.finish(
                &Identity::default(),
                Verdict::allow(None),
                Outcome::Ok,
                None,
            );
        }
        let served = crate::metrics::Served {
            agents: Vec::new(),
            clients: Vec::new(),
            cluster: false,
        };
        let text = metrics.render(std::iter::empty(), &served);
        assert!(
            text.contains("switchboard_audit_records_total{outcome=\"dropped\"} 2"),
            "{text}"
        );
        assert!(matches!(rx.try_recv(), Ok(writer::Message::Record(_))));
    }

    #[tokio::test]
    async fn child_scopes_link_records_into_one_tree_and_carry_run_facts_up() {
        let (trail, mut rx, _) = stalled_trail(10);
        let top = Scope::top(Some(trail), Origin::default());
        let args = serde_json::Map::new();
        let root = top.begin("desk", "desk", &args, 0).unwrap();
        let inner = root.child();
        let call = inner.begin("desk", "lookup", &args, 1).unwrap();
        inner.note_run(RunFacts {
            model: "m".into(),
            turns: 3,
            prompt_tokens: 10,
            completion_tokens: 5,
        });
        let (root_id, call_id) = (root.id().to_owned(), call.id().to_owned());
        call.finish(
            &Identity::default(),
            Verdict::allow(None),
            Outcome::Ok,
            None,
        );
        root.finish(
            &Identity::default(),
            Verdict::allow(None),
            Outcome::Ok,
            None,
        );
        let mut records = Vec::new();
        while let Ok(writer::Message::Record(r)) = rx.try_recv() {
            records.push(*r);
        }
        assert_eq!(records.len(), 2);
        let (c, r) = (&records[0], &records[1]);
        assert_eq!(
            (c.id.as_str(), c.root_id.as_str()),
            (call_id.as_str(), root_id.as_str())
        );
        assert_eq!(c.parent_id.as_deref(), Some(root_id.as_str()));
        assert_eq!(c.turns, None);
        assert_eq!(
            (r.parent_id.as_deref(), r.root_id.as_str()),
            (None, root_id.as_str())
        );
        assert_eq!((r.model.as_deref(), r.turns), (Some("m"), Some(3)));
    }
}
