//! `SessionStore`: every live MCP session of both transports.
//!
//! Sessions enter when they start (legacy SSE: the GET opens the stream; Streamable HTTP:
//! rmcp's session manager creates the session on `initialize`) and leave when they end for
//! any reason: the legacy stream is dropped (client gone, session ended, admin kill,
//! shutdown), or rmcp closes the Streamable HTTP session (DELETE, idle timeout, admin kill,
//! shutdown). Both removals are driven by the owner of the session (a drop guard, rmcp's
//! `close_session`), so the count returns to zero when clients leave.
//!
//! The map is a `DashMap`; no guard is ever held across `.await` (callers copy out what
//! they need and drop the guard first). What changes per request lives in
//! [`SessionStats`], shared by `Arc` with the transport, so counting a request touches
//! atomics and never the map.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use rmcp::model::{ClientJsonRpcMessage, ClientRequest, ServerJsonRpcMessage, ServerResult};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::clients::{ClientKey, SessionSlot};

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

/// Who opened a session, as far as the transport can tell.
#[derive(Debug, Clone, Default)]
pub struct Peer {
    /// The client (token owner) name, when clients are configured.
    pub client: Option<Arc<str>>,
    /// The peer's IP address.
    pub ip: Option<IpAddr>,
    /// Its `User-Agent` header.
    pub user_agent: Option<String>,
}

/// What `initialize` told us.
#[derive(Debug, Clone, Default)]
struct Handshake {
    client_name: Option<String>,
    client_version: Option<String>,
    protocol_version: Option<String>,
}

/// Live counters and facts of one session, shared with its transport.
#[derive(Debug)]
pub struct SessionStats {
    created_at: SystemTime,
    /// Milliseconds since the Unix epoch of the last request or notification.
    last_active_ms: AtomicU64,
    requests: AtomicU64,
    errors: AtomicU64,
    in_flight: AtomicU64,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    /// Set by the handshake and the first request; a `std` mutex, held only to copy.
    peer: Mutex<(Peer, Handshake)>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl SessionStats {
    fn new(peer: Peer) -> Self {
        Self {
            created_at: SystemTime::now(),
            last_active_ms: AtomicU64::new(now_ms()),
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            prompt_tokens: AtomicU64::new(0),
            completion_tokens: AtomicU64::new(0),
            peer: Mutex::new((peer, Handshake::default())),
        }
    }

    /// Counts a message from the client: a request starts a call in flight; `initialize`
    /// also records the client's name and version.
    pub fn on_client_message(&self, message: &ClientJsonRpcMessage) {
        self.last_active_ms.store(now_ms(), Ordering::Relaxed);
        if let ClientJsonRpcMessage::Request(req) = message {
            self.requests.fetch_add(1, Ordering::Relaxed);
            self.in_flight.fetch_add(1, Ordering::Relaxed);
            if let ClientRequest::InitializeRequest(init) = &req.request {
                let mut guard = self.peer.lock().unwrap_or_else(PoisonError::into_inner);
                guard.1.client_name = Some(init.params.client_info.name.clone());
                guard.1.client_version = Some(init.params.client_info.version.clone());
                guard.1.protocol_version = Some(init.params.protocol_version.to_string());
            }
        }
    }

    /// Counts a message to the client: an answer ends a call in flight; errors (JSON-RPC
    /// errors and tool results with `isError`) are counted; the `initialize` answer fixes
    /// the negotiated protocol version.
    pub fn on_server_message(&self, message: &ServerJsonRpcMessage) {
        let error = match message {
            ServerJsonRpcMessage::Response(resp) => match &resp.result {
                ServerResult::CallToolResult(r) => r.is_error == Some(true),
                ServerResult::InitializeResult(init) => {
                    let mut guard = self.peer.lock().unwrap_or_else(PoisonError::into_inner);
                    guard.1.protocol_version = Some(init.protocol_version.to_string());
                    false
                }
                _ => false,
            },
            ServerJsonRpcMessage::Error(_) => true,
            _ => return,
        };
        self.call_ended();
        if error {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Adds LLM tokens spent by agent runs of this session.
    pub fn add_tokens(&self, prompt: u64, completion: u64) {
        self.prompt_tokens.fetch_add(prompt, Ordering::Relaxed);
        self.completion_tokens
            .fetch_add(completion, Ordering::Relaxed);
    }

    /// A call ended without an answer going out (its stream was dropped).
    pub fn call_ended(&self) {
        // Saturating: never below zero, whatever the order of events.
        let _ = self
            .in_flight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// The client (token owner) of the session, if known.
    pub fn client(&self) -> Option<Arc<str>> {
        self.peer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .0
            .client
            .clone()
    }

    /// Records the client (token owner) of a session.
    pub fn set_client(&self, client: Option<Arc<str>>) {
        let mut guard = self.peer.lock().unwrap_or_else(PoisonError::into_inner);
        guard.0.client = client;
    }

    /// Records who is behind a session once known (Streamable HTTP learns it on
    /// `initialize`, after the session exists).
    pub fn set_peer(&self, peer: Peer) {
        let mut guard = self.peer.lock().unwrap_or_else(PoisonError::into_inner);
        let client = guard.0.client.take().or(peer.client.clone());
        guard.0 = Peer { client, ..peer };
    }
}

/// A snapshot of one session, for the admin API.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// The session id (legacy: the `session_id` query value; Streamable: `Mcp-Session-Id`).
    pub id: Arc<str>,
    /// The agent it talks to.
    pub agent: Arc<str>,
    /// Its transport.
    pub transport: Transport,
    /// Who opened it.
    pub peer: Peer,
    /// MCP client name from `initialize`.
    pub client_name: Option<String>,
    /// MCP client version from `initialize`.
    pub client_version: Option<String>,
    /// Negotiated (or, before the answer, requested) protocol version.
    pub protocol_version: Option<String>,
    /// When it started.
    pub created_at: SystemTime,
    /// When the client last sent anything.
    pub last_active_at: SystemTime,
    /// Requests received.
    pub requests: u64,
    /// Errors answered (JSON-RPC errors and tool results with `isError`).
    pub errors: u64,
    /// Requests not answered yet.
    pub in_flight: u64,
    /// LLM prompt tokens spent by agent runs of this session.
    pub prompt_tokens: u64,
    /// LLM completion tokens spent by agent runs of this session.
    pub completion_tokens: u64,
}

/// How to reach a legacy SSE session's rmcp service.
#[derive(Debug, Clone)]
pub struct LegacyHandle {
    /// Feeds client messages (from `POST /messages`) to the session's service.
    pub tx: mpsc::Sender<ClientJsonRpcMessage>,
    /// Cancelling it ends the session and closes its stream.
    pub cancel: CancellationToken,
    /// The session's counters.
    pub stats: Arc<SessionStats>,
}

#[derive(Debug)]
struct Entry {
    agent: Arc<str>,
    transport: Transport,
    stats: Arc<SessionStats>,
    legacy: Option<LegacyHandle>,
    /// The client that opened it; `None` until a Streamable HTTP session is bound.
    owner: Option<ClientKey>,
    /// Its place in the owner's `max_sessions`; freed when the entry goes.
    _slot: Option<SessionSlot>,
}

/// The registry of live sessions. Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct SessionStore {
    map: Arc<DashMap<Arc<str>, Entry>>,
}

impl SessionStore {
    /// Adds a Streamable HTTP session; returns its counters.
    pub fn insert_streamable(&self, id: Arc<str>, agent: Arc<str>) -> Arc<SessionStats> {
        let stats = Arc::new(SessionStats::new(Peer::default()));
        self.insert(
            id,
            Entry {
                agent,
                transport: Transport::StreamableHttp,
                stats: stats.clone(),
                legacy: None,
                owner: None,
                _slot: None,
            },
        );
        stats
    }

    /// Adds a legacy SSE session opened by `peer`; returns the handle its `POST /messages`
    /// requests use.
    #[allow(clippy::too_many_arguments)]
    pub fn insert_legacy(
        &self,
        id: Arc<str>,
        agent: Arc<str>,
        peer: Peer,
        owner: ClientKey,
        slot: SessionSlot,
        tx: mpsc::Sender<ClientJsonRpcMessage>,
        cancel: CancellationToken,
    ) -> LegacyHandle {
        let stats = Arc::new(SessionStats::new(peer));
        let handle = LegacyHandle {
            tx,
            cancel,
            stats: stats.clone(),
        };
        self.insert(
            id,
            Entry {
                agent,
                transport: Transport::Sse,
                stats,
                legacy: Some(handle.clone()),
                owner: Some(owner),
                _slot: Some(slot),
            },
        );
        handle
    }

    /// Binds a Streamable HTTP session to the client that opened it (learnt when rmcp's
    /// answer to `initialize` comes back) and its session slot.
    pub fn bind(&self, id: &str, owner: ClientKey, slot: SessionSlot) {
        if let Some(mut entry) = self.map.get_mut(id) {
            entry.stats.set_client(owner.name().cloned());
            entry.owner = Some(owner);
            entry._slot = Some(slot);
        }
    }

    /// Whether `caller` may use session `id`: it is theirs, or unknown here (then the
    /// transport answers 404 itself).
    pub fn may_use(&self, id: &str, caller: &ClientKey) -> bool {
        self.map
            .get(id)
            .is_none_or(|e| e.owner.as_ref().is_none_or(|o| o == caller))
    }

    fn insert(&self, id: Arc<str>, entry: Entry) {
        tracing::info!(session = %id, agent = %entry.agent, transport = entry.transport.as_str(), "Session started.");
        self.map.insert(id, entry);
    }

    /// Removes a session (idempotent).
    pub fn remove(&self, id: &str) {
        if let Some((_, entry)) = self.map.remove(id) {
            let stats = &entry.stats;
            tracing::info!(
                session = %id,
                agent = %entry.agent,
                transport = entry.transport.as_str(),
                requests = stats.requests.load(Ordering::Relaxed),
                errors = stats.errors.load(Ordering::Relaxed),
                duration_ms = stats.created_at.elapsed().unwrap_or(Duration::ZERO).as_millis() as u64,
                "Session ended."
            );
        }
    }

    /// The legacy handle of session `id` if it is a legacy session of `agent`.
    pub fn legacy(&self, id: &str, agent: &str) -> Option<LegacyHandle> {
        let entry = self.map.get(id)?;
        (&*entry.agent == agent)
            .then(|| entry.legacy.clone())
            .flatten()
    }

    /// The counters of session `id`.
    pub fn stats(&self, id: &str) -> Option<Arc<SessionStats>> {
        self.map.get(id).map(|e| e.stats.clone())
    }

    /// A snapshot of session `id`.
    pub fn get(&self, id: &str) -> Option<SessionInfo> {
        let entry = self.map.get(id)?;
        Some(snapshot(entry.key(), &entry))
    }

    /// Snapshots of every live session, oldest first.
    pub fn list(&self) -> Vec<SessionInfo> {
        let mut all: Vec<SessionInfo> = self.map.iter().map(|e| snapshot(e.key(), &e)).collect();
        all.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        all
    }

    /// Live sessions of `agent` per transport: `(sse, streamable_http)`.
    pub fn count_by_transport(&self, agent: &str) -> (usize, usize) {
        self.map
            .iter()
            .filter(|e| &*e.agent == agent)
            .fold((0, 0), |(sse, st), e| match e.transport {
                Transport::Sse => (sse + 1, st),
                Transport::StreamableHttp => (sse, st + 1),
            })
    }

    /// Requests not answered yet, over all sessions.
    pub fn in_flight_total(&self) -> u64 {
        self.map
            .iter()
            .map(|e| e.stats.in_flight.load(Ordering::Relaxed))
            .sum()
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

fn snapshot(id: &Arc<str>, e: &Entry) -> SessionInfo {
    let s = &e.stats;
    let (peer, handshake) = s
        .peer
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    SessionInfo {
        id: id.clone(),
        agent: e.agent.clone(),
        transport: e.transport,
        peer,
        client_name: handshake.client_name,
        client_version: handshake.client_version,
        protocol_version: handshake.protocol_version,
        created_at: s.created_at,
        last_active_at: UNIX_EPOCH
            + Duration::from_millis(s.last_active_ms.load(Ordering::Relaxed)),
        requests: s.requests.load(Ordering::Relaxed),
        errors: s.errors.load(Ordering::Relaxed),
        in_flight: s.in_flight.load(Ordering::Relaxed),
        prompt_tokens: s.prompt_tokens.load(Ordering::Relaxed),
        completion_tokens: s.completion_tokens.load(Ordering::Relaxed),
    }
}
