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
//!
//! # Parking
//! A session's MCP engine (the rmcp service answering it, and on Streamable HTTP rmcp's
//! session worker) costs tens of KiB, mostly channel buffers. A session that has been idle
//! for `session_park_after` (nothing in flight, no stream of its own open) is *parked*: its
//! engine is released and only this registry's entry (with the client's `initialize`
//! parameters) stays. The next request starts a new engine with that handshake, without the
//! client noticing. [`SessionStore::sweep`] finds the sessions to park and to expire; the
//! transports do the parking ([`crate::mcp::sse`], [`crate::mcp::streamable`]).

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use rmcp::model::{
    ClientJsonRpcMessage, ClientRequest, InitializeRequestParams, ServerJsonRpcMessage,
    ServerResult,
};

use crate::clients::{ClientKey, SessionSlot};
use crate::mcp::sse::LegacySession;

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
    /// HTTP requests of this session inside the transport right now, plus [`PARKING`]
    /// while its engine is being parked (see [`SessionStats::try_begin_park`]).
    busy: AtomicU64,
    /// Streams of the session's own that are open (Streamable HTTP `GET`): a session
    /// with one is never parked.
    streams: AtomicU64,
    /// Whether the session's engine is parked.
    parked: AtomicBool,
    /// Cluster mode: when the session's shared record was last renewed (Unix ms).
    shared_touched_ms: AtomicU64,
    /// Cancelled when the session leaves the registry (ends streams that outlive engines).
    ended: tokio_util::sync::CancellationToken,
    /// Set by the handshake and the first request; a `std` mutex, held only to copy.
    peer: Mutex<(Peer, Handshake)>,
    /// The session's last [`RECENT_CALLS`] tool calls, oldest first; empty (and
    /// unallocated) until the first call.
    calls: Mutex<VecDeque<CallRecord>>,
}

/// Tool calls kept per session for the admin API.
pub const RECENT_CALLS: usize = 20;

/// A finished tool call of a session.
#[derive(Debug, Clone)]
pub struct CallRecord {
    /// The tool called.
    pub tool: String,
    /// When it finished.
    pub finished_at: SystemTime,
    /// How long it took, in microseconds.
    pub micros: u64,
    /// `ok`, `error`, `invalid_arguments` or `cancelled`.
    pub outcome: &'static str,
}

/// The bit of [`SessionStats::busy`] that says the engine is being parked.
const PARKING: u64 = 1 << 62;

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
            busy: AtomicU64::new(0),
            streams: AtomicU64::new(0),
            parked: AtomicBool::new(false),
            shared_touched_ms: AtomicU64::new(now_ms()),
            ended: tokio_util::sync::CancellationToken::new(),
            peer: Mutex::new((peer, Handshake::default())),
            calls: Mutex::new(VecDeque::new()),
        }
    }

    /// Marks an HTTP request of this session as inside the transport until the guard drops.
    pub fn enter(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone())
    }

    /// Marks a stream of the session's own as open until the guard drops.
    pub fn open_stream(self: &Arc<Self>) -> OpenStream {
        self.streams.fetch_add(1, Ordering::AcqRel);
        OpenStream(self.clone())
    }

    /// Requests not answered yet.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Milliseconds since the client last sent anything.
    fn idle_ms(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.last_active_ms.load(Ordering::Relaxed))
    }

    /// Whether the engine could be parked: nothing in flight, no stream of its own open.
    pub fn is_quiet(&self) -> bool {
        self.in_flight() == 0 && self.streams.load(Ordering::Acquire) == 0
    }

    /// Starts parking: succeeds only when no request of this session is inside the
    /// transport and the session is quiet. Requests that arrive afterwards see the
    /// parking and wait for it (Streamable HTTP) before the engine is restarted for them.
    /// Must be followed by [`SessionStats::end_park`].
    pub fn try_begin_park(&self) -> bool {
        if self
            .busy
            .compare_exchange(0, PARKING, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        if !self.is_quiet() {
            self.busy.fetch_sub(PARKING, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Ends parking started by [`SessionStats::try_begin_park`]; `parked` says whether the
    /// engine was released.
    pub fn end_park(&self, parked: bool) {
        if parked {
            self.mark_parked();
        }
        self.busy.fetch_sub(PARKING, Ordering::AcqRel);
    }

    /// Records that the engine was parked.
    pub fn mark_parked(&self) {
        self.parked.store(true, Ordering::Release);
    }

    /// Whether the engine is parked.
    pub fn is_parked(&self) -> bool {
        self.parked.load(Ordering::Acquire)
    }

    /// Cancelled when the session has ended.
    pub fn ended(&self) -> tokio_util::sync::CancellationToken {
        self.ended.clone()
    }

    /// Cluster mode: whether the session's shared record is due for renewal (last renewed
    /// at least `every` ago); if so, counts it as renewed now. One caller wins per period.
    pub fn shared_touch_due(&self, every: Duration) -> bool {
        let now = now_ms();
        let last = self.shared_touched_ms.load(Ordering::Relaxed);
        now.saturating_sub(last) >= every.as_millis() as u64
            && self
                .shared_touched_ms
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    }

    /// Records that the engine runs (again).
    pub fn set_running(&self) {
        self.parked.store(false, Ordering::Release);
    }

    /// Counts a message from the client: a request starts a call in flight; `initialize`
    /// also records the client's name and version.
    pub fn on_client_message(&self, message: &ClientJsonRpcMessage) {
        self.last_active_ms.store(now_ms(), Ordering::Relaxed);
        if let ClientJsonRpcMessage::Request(req) = message {
            self.requests.fetch_add(1, Ordering::Relaxed);
            self.in_flight.fetch_add(1, Ordering::Relaxed);
            if let ClientRequest::InitializeRequest(init) = &req.request {
                self.record_handshake(&init.params);
            }
        }
    }

    /// Records the client's name, version and protocol version from its `initialize`.
    fn record_handshake(&self, params: &InitializeRequestParams) {
        let mut guard = self.peer.lock().unwrap_or_else(PoisonError::into_inner);
        guard.1.client_name = Some(params.client_info.name.clone());
        guard.1.client_version = Some(params.client_info.version.clone());
        guard.1.protocol_version = Some(params.protocol_version.to_string());
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

    /// Records a finished tool call, forgetting the oldest beyond [`RECENT_CALLS`].
    pub fn record_call(&self, call: CallRecord) {
        let mut calls = self.calls.lock().unwrap_or_else(PoisonError::into_inner);
        if calls.len() == RECENT_CALLS {
            calls.pop_front();
        }
        calls.push_back(call);
    }

    /// The last tool calls, oldest first.
    pub fn recent_calls(&self) -> Vec<CallRecord> {
        let calls = self.calls.lock().unwrap_or_else(PoisonError::into_inner);
        calls.iter().cloned().collect()
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

/// An HTTP request of a session inside the transport; see [`SessionStats::enter`].
#[derive(Debug)]
pub struct Busy(Arc<SessionStats>);

impl Busy {
    /// The counters of the session the request is in.
    pub fn stats(&self) -> &Arc<SessionStats> {
        &self.0
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The session belongs to another client.
#[derive(Debug, Clone, Copy)]
pub struct NotYours;

/// An open stream of a session's own; see [`SessionStats::open_stream`].
#[derive(Debug)]
pub struct OpenStream(Arc<SessionStats>);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.streams.fetch_sub(1, Ordering::AcqRel);
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
    /// Whether its engine is parked (idle; restarted on the next request).
    pub parked: bool,
}

struct Entry {
    agent: Arc<str>,
    transport: Transport,
    stats: Arc<SessionStats>,
    /// A legacy session's engine and stream.
    legacy: Option<Arc<LegacySession>>,
    /// A Streamable HTTP session's `initialize` parameters, kept to restart a parked engine.
    handshake: Option<Arc<InitializeRequestParams>>,
    /// The client that opened it; `None` until a Streamable HTTP session is bound.
    owner: Option<ClientKey>,
    /// Its place in the owner's `max_sessions`; freed when the entry goes.
    _slot: Option<SessionSlot>,
}

/// The registry of live sessions. Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct SessionStore {
    map: Arc<DashMap<Arc<str>, Entry>>,
}

impl std::fmt::Debug for SessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionStore")
            .field("sessions", &self.map.len())
            .finish()
    }
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
                handshake: None,
                owner: None,
                _slot: None,
            },
        );
        stats
    }

    /// New counters for a legacy session opened by `peer`, to build its
    /// [`LegacySession`] with before [`SessionStore::insert_legacy`].
    pub fn legacy_stats(peer: Peer) -> Arc<SessionStats> {
        Arc::new(SessionStats::new(peer))
    }

    /// Adds a legacy SSE session.
    pub fn insert_legacy(
        &self,
        id: Arc<str>,
        agent: Arc<str>,
        owner: ClientKey,
        slot: SessionSlot,
        session: Arc<LegacySession>,
    ) {
        self.insert(
            id,
            Entry {
                agent,
                transport: Transport::Sse,
                stats: session.stats().clone(),
                legacy: Some(session),
                handshake: None,
                owner: Some(owner),
                _slot: Some(slot),
            },
        );
    }

    /// Keeps a Streamable HTTP session's `initialize` parameters (to restart its engine).
    pub fn set_handshake(&self, id: &str, params: InitializeRequestParams) {
        if let Some(mut entry) = self.map.get_mut(id) {
            entry.handshake = Some(Arc::new(params));
        }
    }

    /// A Streamable HTTP session's `initialize` parameters, if it is live and initialized.
    pub fn handshake(&self, id: &str) -> Option<Arc<InitializeRequestParams>> {
        self.map.get(id)?.handshake.clone()
    }

    /// Whether `caller` may use session `id` (see [`SessionStore::may_use`]); if so, and
    /// the session is live, marks the request as inside the transport until the guard
    /// drops (so the session is not parked under it).
    ///
    /// # Errors
    /// [`NotYours`] when the session belongs to another client.
    pub fn enter(&self, id: &str, caller: &ClientKey) -> Result<Option<Busy>, NotYours> {
        match self.map.get(id) {
            None => Ok(None),
            Some(e) if e.owner.as_ref().is_none_or(|o| o == caller) => Ok(Some(e.stats.enter())),
            Some(_) => Err(NotYours),
        }
    }

    /// Sessions to park and sessions to end, as of now: engines that have been idle for
    /// `park_after` (`None`: never park), and Streamable HTTP sessions idle for
    /// `idle_timeout`.
    pub fn sweep(&self, park_after: Option<Duration>, idle_timeout: Duration) -> Sweep {
        let now = now_ms();
        let park_ms = park_after.map(|d| d.as_millis() as u64);
        let timeout_ms = idle_timeout.as_millis() as u64;
        let mut sweep = Sweep::default();
        for e in self.map.iter() {
            let idle = e.stats.idle_ms(now);
            if e.transport == Transport::StreamableHttp && idle >= timeout_ms {
                sweep.expired.push((e.key().clone(), e.agent.clone()));
            } else if park_ms.is_some_and(|p| idle >= p)
                && !e.stats.is_parked()
                && e.stats.is_quiet()
            {
                match &e.legacy {
                    Some(session) => sweep.park_legacy.push(session.clone()),
                    None if e.handshake.is_some() => sweep.park_streamable.push((
                        e.key().clone(),
                        e.agent.clone(),
                        e.stats.clone(),
                    )),
                    None => {}
                }
            }
        }
        sweep
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

    /// Cluster mode: takes in a Streamable HTTP session another replica opened, as a
    /// parked session of `owner`, seen from `peer` (its engine starts from `handshake` on the request that
    /// brought it here). Returns its counters; an entry already here is kept as it is.
    pub fn adopt(
        &self,
        id: Arc<str>,
        agent: Arc<str>,
        owner: ClientKey,
        peer: Peer,
        handshake: InitializeRequestParams,
    ) -> Arc<SessionStats> {
        let entry = self.map.entry(id.clone()).or_insert_with(|| {
            tracing::info!(session = %id, agent = %agent, transport = Transport::StreamableHttp.as_str(), "Session taken over from another replica.");
            let stats = Arc::new(SessionStats::new(peer));
            stats.set_client(owner.name().cloned());
            stats.record_handshake(&handshake);
            stats.mark_parked();
            Entry {
                agent,
                transport: Transport::StreamableHttp,
                stats,
                legacy: None,
                handshake: Some(Arc::new(handshake)),
                owner: Some(owner),
                _slot: None,
            }
        });
        entry.stats.clone()
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
            stats.ended.cancel();
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

    /// Legacy session `id` if it is a legacy session of `agent`.
    pub fn legacy(&self, id: &str, agent: &str) -> Option<Arc<LegacySession>> {
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

    /// Removes every Streamable HTTP session whose engine is parked (on shutdown: they
    /// have no worker to end them).
    pub fn remove_parked_streamable(&self) {
        let parked: Vec<Arc<str>> = self
            .map
            .iter()
            .filter(|e| e.transport == Transport::StreamableHttp && e.stats.is_parked())
            .map(|e| e.key().clone())
            .collect();
        for id in parked {
            self.remove(&id);
        }
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
        parked: s.is_parked(),
    }
}

/// What [`SessionStore::sweep`] found.
#[derive(Default)]
pub struct Sweep {
    /// Legacy sessions whose engine may be parked.
    pub park_legacy: Vec<Arc<LegacySession>>,
    /// Streamable HTTP sessions whose engine may be parked: id, agent, counters.
    pub park_streamable: Vec<(Arc<str>, Arc<str>, Arc<SessionStats>)>,
    /// Streamable HTTP sessions idle past the idle timeout: id, agent.
    pub expired: Vec<(Arc<str>, Arc<str>)>,
}
