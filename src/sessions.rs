//! `SessionStore`: every live MCP session of both transports.
//!
//! Sessions enter when they start (legacy SSE: the GET opens the stream; Streamable HTTP:
//! rmcp's session manager creates the session on `initialize`) and leave when they end for
//! any reason: the legacy stream is dropped (client gone, session ended, shutdown), or rmcp
//! closes the Streamable HTTP session (DELETE, idle timeout, shutdown). Both removals are
//! driven by the owner of the session (a drop guard, rmcp's `close_session`), so the count
//! returns to zero when clients leave.
//!
//! The map is a `DashMap`; no guard is ever held across `.await` (callers copy out what
//! they need, e.g. a channel sender, and drop the guard first).

use std::sync::Arc;
use std::time::SystemTime;

use dashmap::DashMap;
use rmcp::model::ClientJsonRpcMessage;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The transport a session uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Legacy HTTP+SSE (2024-11-05): `GET /sse` + `POST /messages`.
    Sse,
    /// Streamable HTTP (2025-03-26 and later).
    StreamableHttp,
}

impl Transport {
    /// The name used in logs and the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Sse => "sse",
            Transport::StreamableHttp => "streamable_http",
        }
    }
}

/// What the store knows of one session.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// The session id (legacy: the `session_id` query value; Streamable: `Mcp-Session-Id`).
    pub id: Arc<str>,
    /// The agent it talks to.
    pub agent: Arc<str>,
    /// Its transport.
    pub transport: Transport,
    /// When it started.
    pub created_at: SystemTime,
}

/// How to reach a legacy SSE session's rmcp service.
#[derive(Debug, Clone)]
pub struct LegacyHandle {
    /// Feeds client messages (from `POST /messages`) to the session's service.
    pub tx: mpsc::Sender<ClientJsonRpcMessage>,
    /// Cancelling it ends the session and closes its stream.
    pub cancel: CancellationToken,
}

#[derive(Debug)]
struct Entry {
    info: SessionInfo,
    legacy: Option<LegacyHandle>,
}

/// The registry of live sessions. Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct SessionStore {
    map: Arc<DashMap<Arc<str>, Entry>>,
}

impl SessionStore {
    /// Adds a Streamable HTTP session.
    pub fn insert_streamable(&self, id: Arc<str>, agent: Arc<str>) {
        self.insert(id, agent, Transport::StreamableHttp, None);
    }

    /// Adds a legacy SSE session with the handle its `POST /messages` requests use.
    pub fn insert_legacy(&self, id: Arc<str>, agent: Arc<str>, handle: LegacyHandle) {
        self.insert(id, agent, Transport::Sse, Some(handle));
    }

    fn insert(
        &self,
        id: Arc<str>,
        agent: Arc<str>,
        transport: Transport,
        legacy: Option<LegacyHandle>,
    ) {
        let info = SessionInfo {
            id: id.clone(),
            agent,
            transport,
            created_at: SystemTime::now(),
        };
        tracing::debug!(session = %id, agent = %info.agent, transport = transport.as_str(), "Session started.");
        self.map.insert(id, Entry { info, legacy });
    }

    /// Removes a session (idempotent).
    pub fn remove(&self, id: &str) {
        if let Some((_, entry)) = self.map.remove(id) {
            tracing::debug!(session = %id, agent = %entry.info.agent, transport = entry.info.transport.as_str(), "Session ended.");
        }
    }

    /// The legacy handle of session `id` if it is a legacy session of `agent`.
    pub fn legacy(&self, id: &str, agent: &str) -> Option<LegacyHandle> {
        let entry = self.map.get(id)?;
        (&*entry.info.agent == agent)
            .then(|| entry.legacy.clone())
            .flatten()
    }

    /// A copy of what is known of session `id`.
    pub fn get(&self, id: &str) -> Option<SessionInfo> {
        self.map.get(id).map(|e| e.info.clone())
    }

    /// Copies of every live session.
    pub fn list(&self) -> Vec<SessionInfo> {
        self.map.iter().map(|e| e.info.clone()).collect()
    }

    /// How many sessions are live.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no session is live.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}
