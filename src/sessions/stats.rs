//! The live facts of one session: who opened it, what its handshake said, its counters,
//! and the guards that keep it from being parked while it is in use.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rmcp::model::{
    ClientJsonRpcMessage, ClientRequest, InitializeRequestParams, ServerJsonRpcMessage,
    ServerResult,
};

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
pub(super) struct Handshake {
    pub(super) client_name: Option<String>,
    pub(super) client_version: Option<String>,
    pub(super) protocol_version: Option<String>,
}

/// Live counters and facts of one session, shared with its transport.
#[derive(Debug)]
pub struct SessionStats {
    pub(super) created_at: SystemTime,
    /// Milliseconds since the Unix epoch of the last request or notification.
    pub(super) last_active_ms: AtomicU64,
    pub(super) requests: AtomicU64,
    pub(super) errors: AtomicU64,
    pub(super) in_flight: AtomicU64,
    pub(super) prompt_tokens: AtomicU64,
    pub(super) completion_tokens: AtomicU64,
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
    pub(super) ended: tokio_util::sync::CancellationToken,
    /// Set by the handshake and the first request; a `std` mutex, held only to copy.
    pub(super) peer: Mutex<(Peer, Handshake)>,
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
    /// Its trace (`[telemetry]`), 32 hex digits; `None`: not traced.
    pub trace_id: Option<String>,
}

/// The bit of [`SessionStats::busy`] that says the engine is being parked.
const PARKING: u64 = 1 << 62;

pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl SessionStats {
    pub(super) fn new(peer: Peer) -> Self {
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

    /// The counters of a session no [`super::SessionStore`] keeps: the one session of
    /// `switchboard stdio`, which has no registry to be listed or ended in. Ending it is
    /// cancelling [`SessionStats::ended`].
    pub fn unregistered(peer: Peer) -> Self {
        Self::new(peer)
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
    pub(super) fn idle_ms(&self, now_ms: u64) -> u64 {
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
    pub(super) fn record_handshake(&self, params: &InitializeRequestParams) {
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

    /// Whether the session speaks MCP `version` or a later one: the version its
    /// `initialize` negotiated (or asked for, when a replica replayed the handshake).
    /// `None` before the handshake. MCP versions are dates, so they order as strings.
    pub fn speaks_at_least(&self, version: &str) -> Option<bool> {
        let guard = self.peer.lock().unwrap_or_else(PoisonError::into_inner);
        guard.1.protocol_version.as_deref().map(|v| v >= version)
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
