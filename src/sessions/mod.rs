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
//! client noticing. [`SessionStore::sweep`] parks and expires them a few times a second,
//! through each session's [`Engine`]: the transport that serves it, seen from here only as
//! that trait (the transports are above this module and name its types, never the reverse).
//!
//! # Cluster mode
//! With a [`crate::cluster::Cluster`], the store also shares Streamable HTTP sessions with
//! the other replicas ([`shared`]): it records each new one in Redis, takes in one opened
//! elsewhere, and ends a session everywhere.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use rmcp::model::InitializeRequestParams;

use crate::clients::{ClientKey, SessionSlot};

pub mod shared;
mod stats;

use stats::now_ms;
pub use stats::{
    Busy, CallRecord, NotYours, OpenStream, Peer, RECENT_CALLS, SessionStats, Transport,
};

/// The transport side of a session, as the store sees it: what parks its engine and what
/// ends it. Implemented by the legacy SSE session and by the Streamable HTTP session manager.
#[async_trait::async_trait]
pub trait Engine: std::any::Any + Send + Sync {
    /// Parks session `id`'s engine if it is quiet; returns whether it did.
    async fn park(&self, id: &Arc<str>, stats: &SessionStats) -> bool;
    /// Ends session `id`: its stream closes, its calls are cancelled. The store has already
    /// forgotten it.
    async fn end(&self, id: &Arc<str>);
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

/// `params` of a new session's handshake, or the same parameters of the handshake before it:
/// clients of one kind send the same ones, and every idle session keeps its handshake to
/// restart its engine (~350 bytes each when not shared).
pub fn shared_handshake(params: Arc<InitializeRequestParams>) -> Arc<InitializeRequestParams> {
    static LAST: LastHandshake = LastHandshake(std::sync::Mutex::new(None));
    LAST.share(params)
}

/// The last handshake seen, which the next one equal to it shares.
struct LastHandshake(std::sync::Mutex<Option<Arc<InitializeRequestParams>>>);

impl LastHandshake {
    fn share(&self, params: Arc<InitializeRequestParams>) -> Arc<InitializeRequestParams> {
        let mut last = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match &*last {
            Some(same) if **same == *params => same.clone(),
            _ => {
                *last = Some(params.clone());
                params
            }
        }
    }
}

struct Entry {
    agent: Arc<str>,
    transport: Transport,
    stats: Arc<SessionStats>,
    /// What parks and ends it: the transport serving it.
    engine: Arc<dyn Engine>,
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
    /// Cluster mode: the replicas this store shares its sessions with.
    shared: Option<shared::Shared>,
}

impl std::fmt::Debug for SessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionStore")
            .field("sessions", &self.map.len())
            .finish()
    }
}

impl SessionStore {
    /// A store of this replica alone.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a Streamable HTTP session served by `engine`; returns its counters.
    pub fn insert_streamable(
        &self,
        id: Arc<str>,
        agent: Arc<str>,
        engine: Arc<dyn Engine>,
    ) -> Arc<SessionStats> {
        let stats = Arc::new(SessionStats::new(Peer::default()));
        self.insert(
            id,
            Entry {
                agent,
                transport: Transport::StreamableHttp,
                stats: stats.clone(),
                engine,
                handshake: None,
                owner: None,
                _slot: None,
            },
        );
        stats
    }

    /// New counters for a legacy session opened by `peer`, to build its engine with before
    /// [`SessionStore::insert_legacy`].
    pub fn legacy_stats(peer: Peer) -> Arc<SessionStats> {
        Arc::new(SessionStats::new(peer))
    }

    /// Adds a legacy SSE session of `owner`, served by `engine` (which keeps `stats`).
    pub fn insert_legacy(
        &self,
        id: Arc<str>,
        agent: Arc<str>,
        owner: ClientKey,
        slot: SessionSlot,
        stats: Arc<SessionStats>,
        engine: Arc<dyn Engine>,
    ) {
        self.insert(
            id,
            Entry {
                agent,
                transport: Transport::Sse,
                stats,
                engine,
                handshake: None,
                owner: Some(owner),
                _slot: Some(slot),
            },
        );
    }

    /// Keeps a Streamable HTTP session's `initialize` parameters (to restart its engine).
    pub fn set_handshake(&self, id: &str, params: InitializeRequestParams) {
        let params = shared_handshake(Arc::new(params));
        if let Some(mut entry) = self.map.get_mut(id) {
            entry.handshake = Some(params);
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

    /// Parks the engines that have been idle for `park_after` (`None`: never park) and ends
    /// the Streamable HTTP sessions idle for `idle_timeout`. Returns how many it parked.
    pub async fn sweep(&self, park_after: Option<Duration>, idle_timeout: Duration) -> usize {
        let now = now_ms();
        let park_ms = park_after.map(|d| d.as_millis() as u64);
        let timeout_ms = idle_timeout.as_millis() as u64;
        let mut park = Vec::new();
        let mut expired = Vec::new();
        for e in self.map.iter() {
            let idle = e.stats.idle_ms(now);
            if e.transport == Transport::StreamableHttp && idle >= timeout_ms {
                expired.push((e.key().clone(), e.agent.clone()));
            } else if park_ms.is_some_and(|p| idle >= p)
                && !e.stats.is_parked()
                && e.stats.is_quiet()
                && (e.transport == Transport::Sse || e.handshake.is_some())
            {
                park.push((e.key().clone(), e.engine.clone(), e.stats.clone()));
            }
        }
        let mut parked = 0;
        for batch in park.chunks(64) {
            let done = futures::future::join_all(
                batch
                    .iter()
                    .map(|(id, engine, stats)| engine.park(id, stats)),
            )
            .await;
            parked += done.into_iter().filter(|parked| *parked).count();
        }
        for (id, agent) in expired {
            tracing::info!(session = %id, agent = %agent, "Session idle past the idle timeout: ending it.");
            self.end(&id).await;
        }
        parked
    }

    /// Ends session `id` on this replica: it leaves the registry at once (its requests get
    /// 404), then its stream closes and its calls are cancelled. Returns whether it was here.
    pub async fn end(&self, id: &str) -> bool {
        let Some((id, entry)) = self.map.remove(id) else {
            return false;
        };
        log_end(&id, &entry);
        entry.engine.end(&id).await;
        true
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

    /// Removes a session whose engine has ended by itself (idempotent).
    pub fn remove(&self, id: &str) {
        if let Some((id, entry)) = self.map.remove(id) {
            log_end(&id, &entry);
        }
    }

    /// The engine of session `id` of `agent`, if it is a `T` (the transport that made it
    /// finds its own sessions with this).
    pub fn engine<T: Engine>(&self, id: &str, agent: &str) -> Option<Arc<T>> {
        let engine = {
            let entry = self.map.get(id)?;
            if &*entry.agent != agent {
                return None;
            }
            entry.engine.clone()
        };
        let any: Arc<dyn std::any::Any + Send + Sync> = engine;
        any.downcast::<T>().ok()
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

    /// Ids of the live sessions of `agent`.
    pub fn ids_of(&self, agent: &str) -> Vec<Arc<str>> {
        self.map
            .iter()
            .filter(|e| &*e.agent == agent)
            .map(|e| e.key().clone())
            .collect()
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
        self.map.iter().map(|e| e.stats.in_flight()).sum()
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

/// The log line of a session that ended; its stream and calls are told.
fn log_end(id: &str, entry: &Entry) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::{ClientCapabilities, Implementation};

    fn params(client: &str) -> Arc<InitializeRequestParams> {
        Arc::new(InitializeRequestParams::new(
            ClientCapabilities::default(),
            Implementation::new(client, "1.0"),
        ))
    }

    #[test]
    fn sessions_of_one_kind_of_client_share_their_handshake_and_others_keep_their_own() {
        let last = LastHandshake(std::sync::Mutex::new(None));
        let first = last.share(params("a"));
        let same = last.share(params("a"));
        assert!(Arc::ptr_eq(&first, &same));
        let other = last.share(params("b"));
        assert!(!Arc::ptr_eq(&first, &other));
        assert_eq!(other.client_info.name, "b");
        assert_eq!(first.client_info.name, "a");
        assert!(Arc::ptr_eq(&other, &last.share(params("b"))));
    }
}
