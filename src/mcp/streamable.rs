//! Streamable HTTP: rmcp's `StreamableHttpService`, one per agent, called from poem.
//!
//! rmcp does the protocol (sessions, SSE framing, protocol-version checks, resumption).
//! We wrap its `LocalSessionManager` in [`TrackedSessions`] so every session it creates or
//! closes (DELETE, idle timeout, shutdown) enters and leaves the gateway's
//! [`SessionStore`]; and we adjust two answers at the edge (see [`call`]).
//!
//! Parking (see [`crate::sessions`]) uses rmcp's own restore path: the registry is the
//! service's `SessionStore` ([`Handshakes`]: it keeps each session's `initialize`
//! parameters). [`TrackedSessions::park`] closes an idle session's worker in
//! `LocalSessionManager` but keeps the registry entry; on the next request
//! `has_session` is false, rmcp loads the parameters, asks `restore_session` for a new
//! worker and replays the handshake (marked with `SessionRestoreMarker`, which our
//! counters skip), then serves the request.
//!
//! One restore at a time per session, and no request into an engine still replaying its
//! handshake ([`RestoreGates`]). rmcp's `has_session` is true as soon as a restored engine is
//! entered, before its handshake is replayed: a request arriving then sent its stream to a
//! worker still waiting for `initialize`, which quit ("unexpected message ... when get
//! initialize request"), and every request of the session got a 500. And rmcp checks
//! `has_session` and registers its restore in two steps: a request that found no engine just
//! before another's restore and registered just after it restored a second time (rmcp's 500,
//! "the session is already present"). Our `has_session` answers "no engine" to one request at
//! a time, and "ready" only once no restore is under way; the others wait.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use http_body_util::BodyExt;
use poem::http::{Method, StatusCode};
use poem::{IntoResponse, Request, Response};
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::streamable_http_server::session::local::{
    LocalSessionManager, LocalSessionManagerError,
};
use rmcp::transport::streamable_http_server::session::{
    RestoreOutcome, ServerSseMessage, SessionId, SessionManager, SessionRestoreMarker,
    SessionState, SessionStoreError,
};
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use super::handler::AgentServer;
use super::rmcp_answers::{self, Asked, WithoutPriming};
use crate::config::ServerSpec;
use crate::sessions::{Engine, OpenStream, SessionStats, SessionStore};
use std::pin::Pin;

/// How long parking waits for a closed worker to exit before giving up on it.
const WORKER_EXIT_WAIT: Duration = Duration::from_secs(5);
/// How long a request waits for another request's restore of its session before it
/// restores the session itself (only reached when the other request was dropped between
/// rmcp's `has_session` and its restore, which then never tells us it is done).
const RESTORE_WAIT: Duration = Duration::from_secs(10);

/// The sessions whose engine a request is restoring right now, each with a token cancelled
/// when that restore is done, failed, or found nothing to restore (and a number telling
/// one restore of the session from the next).
#[derive(Default)]
struct RestoreGates(Mutex<HashMap<SessionId, Gate>>);

/// A restore under way, as a waiting request sees it.
type Gate = (u64, CancellationToken);

impl RestoreGates {
    fn gates(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, Gate>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Claims the restore of session `id` for the caller (`None`), or returns the restore
    /// already under way. `stale`: the number of a restore the caller waited for in vain;
    /// if it is still the one under way, the caller takes over.
    fn claim(&self, id: &SessionId, stale: Option<u64>) -> Option<Gate> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let mut gates = self.gates();
        match gates.get(id) {
            Some((number, token)) if stale != Some(*number) => Some((*number, token.clone())),
            _ => {
                let number = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                gates.insert(id.clone(), (number, CancellationToken::new()));
                None
            }
        }
    }

    /// The restore of session `id` under way, if one is.
    fn current(&self, id: &SessionId) -> Option<Gate> {
        self.gates().get(id).cloned()
    }

    /// Drops restore `number` of session `id` if it is still the one under way (its
    /// request went away without saying it is over).
    fn release_stale(&self, id: &str, number: u64) {
        let mut gates = self.gates();
        if gates.get(id).is_some_and(|(n, _)| *n == number)
            && let Some((_, token)) = gates.remove(id)
        {
            token.cancel();
        }
    }

    /// The restore of session `id` is over: the requests waiting for it look again.
    fn release(&self, id: &str) {
        if let Some((_, token)) = self.gates().remove(id) {
            token.cancel();
        }
    }
}

/// rmcp's in-memory session manager, reporting to the gateway's session store.
pub struct TrackedSessions {
    inner: LocalSessionManager,
    store: SessionStore,
    agent: Arc<str>,
    /// Sessions whose worker is being parked, each with a token cancelled once the worker
    /// has exited (rmcp then calls `close_session`, which must not end the session).
    parking: Mutex<HashMap<SessionId, CancellationToken>>,
    /// This manager as the store sees it (parks and ends its sessions).
    engine: Arc<dyn Engine>,
    /// Whether the agent relays messages of federated servers that belong to no request
    /// (`list_changed`, resource updates, logs): then a session's `GET` stream is rmcp's own,
    /// carrying them. Set by every (re)build of the agent's service.
    relays: std::sync::atomic::AtomicBool,
    /// One restore at a time per session (shared with the service's [`Handshakes`]).
    restores: Arc<RestoreGates>,
}

/// A session manager as the session store sees it: weak, so that the store's entries do not
/// keep the manager of a removed agent alive.
struct ManagerEngine(std::sync::Weak<TrackedSessions>);

#[async_trait::async_trait]
impl Engine for ManagerEngine {
    async fn park(&self, id: &Arc<str>, stats: &SessionStats) -> bool {
        match self.0.upgrade() {
            Some(manager) => manager.park(id, stats).await,
            None => false,
        }
    }

    async fn end(&self, id: &Arc<str>) {
        if let Some(manager) = self.0.upgrade()
            && let Err(e) = manager.close_session(id).await
        {
            tracing::warn!(session = %id, error = %e, "Could not close a session.");
        }
    }
}

impl TrackedSessions {
    /// This manager as the session store sees it.
    pub fn engine(&self) -> Arc<dyn Engine> {
        self.engine.clone()
    }

    fn parking(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, CancellationToken>> {
        self.parking.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Parks session `id`'s engine if no request of it is in the transport and it is
    /// quiet: its worker is closed, its registry entry stays. Returns whether it did.
    pub async fn park(&self, id: &Arc<str>, stats: &SessionStats) -> bool {
        let done = CancellationToken::new();
        {
            let mut parking = self.parking();
            if parking.contains_key(id) {
                return false;
            }
            parking.insert(id.clone(), done.clone());
        }
        // From here on a request of this session waits in `has_session` until we are done.
        if !stats.try_begin_park() {
            if let Some(done) = self.parking().remove(id) {
                done.cancel();
            }
            return false;
        }
        let closed = self.inner.close_session(id).await.is_ok();
        if tokio::time::timeout(WORKER_EXIT_WAIT, done.cancelled())
            .await
            .is_err()
        {
            tracing::warn!(session = %id, "A parked session's worker did not exit in time.");
            if let Some(done) = self.parking().remove(id) {
                done.cancel();
            }
        }
        stats.end_park(closed);
        closed
    }

    fn is_restore(message: &ClientJsonRpcMessage) -> bool {
        use rmcp::model::GetExtensions;
        match message {
            ClientJsonRpcMessage::Request(r) => r
                .request
                .extensions()
                .get::<SessionRestoreMarker>()
                .is_some(),
            ClientJsonRpcMessage::Notification(n) => n
                .notification
                .extensions()
                .get::<SessionRestoreMarker>()
                .is_some(),
            _ => false,
        }
    }
}

/// The registry as rmcp's session store: it keeps each Streamable HTTP session's
/// `initialize` parameters, so that a parked session can be restored.
pub struct Handshakes {
    store: SessionStore,
    /// A session with nothing to restore ends its restore here.
    restores: Arc<RestoreGates>,
}

#[async_trait::async_trait]
impl rmcp::transport::streamable_http_server::session::SessionStore for Handshakes {
    async fn load(&self, session_id: &str) -> Result<Option<SessionState>, SessionStoreError> {
        let state = self
            .store
            .handshake(session_id)
            .map(|params| SessionState::new((*params).clone()));
        if state.is_none() {
            // rmcp answers 404 and restores nothing.
            self.restores.release(session_id);
        }
        Ok(state)
    }

    async fn store(&self, session_id: &str, state: &SessionState) -> Result<(), SessionStoreError> {
        self.store
            .set_handshake(session_id, state.initialize_params.clone());
        Ok(())
    }

    /// rmcp calls this after a client's DELETE has closed the session (in cluster mode,
    /// it ends on every replica).
    async fn delete(&self, session_id: &str) -> Result<(), SessionStoreError> {
        self.store.ended_by_client(session_id).await;
        Ok(())
    }
}

impl SessionManager for TrackedSessions {
    type Error = LocalSessionManagerError;
    type Transport = <LocalSessionManager as SessionManager>::Transport;

    async fn create_session(&self) -> Result<(SessionId, Self::Transport), Self::Error> {
        let (id, transport) = self.inner.create_session().await?;
        self.store
            .insert_streamable(id.clone(), self.agent.clone(), self.engine.clone());
        Ok((id, transport))
    }

    async fn initialize_session(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<ServerJsonRpcMessage, Self::Error> {
        if Self::is_restore(&message) {
            let response = self.inner.initialize_session(id, message).await;
            if response.is_err() {
                self.restores.release(id);
            }
            return response;
        }
        let stats = self.store.stats(id);
        if let Some(stats) = &stats {
            if let ClientJsonRpcMessage::Request(req) = &message {
                use rmcp::model::GetExtensions;
                stats.set_peer(super::request::peer_of(req.request.extensions()));
            }
            stats.on_client_message(&message);
        }
        let response = self.inner.initialize_session(id, message).await?;
        if let Some(stats) = &stats {
            stats.on_server_message(&response);
        }
        Ok(response)
    }

    /// Whether session `id` has an engine ready to serve. While one is being restored, the
    /// answer waits for the restore to finish; "no" (rmcp then restores it) is the answer of
    /// one request at a time, the others wait for that restore and look again.
    async fn has_session(&self, id: &SessionId) -> Result<bool, Self::Error> {
        let parking = self.parking().get(id).cloned();
        if let Some(done) = parking {
            done.cancelled().await;
        }
        let mut stale = None;
        loop {
            // Present and not being restored: ready (a restore holds its gate from before its
            // engine is entered until its handshake is done).
            let present = self.inner.has_session(id).await?;
            let under_way = if present {
                match self.restores.current(id) {
                    None => return Ok(true),
                    // Waited for in vain (its request went away mid-restore): as if it
                    // were done, for every request from now on.
                    Some((number, _)) if stale == Some(number) => {
                        self.restores.release_stale(id, number);
                        return Ok(true);
                    }
                    gate => gate,
                }
            } else {
                match self.restores.claim(id, stale) {
                    // Ours to restore, unless a restore ended between the look and the claim.
                    None => {
                        let restored = self.inner.has_session(id).await?;
                        if restored {
                            self.restores.release(id);
                        }
                        return Ok(restored);
                    }
                    gate => gate,
                }
            };
            if let Some((number, done)) = under_way
                && tokio::time::timeout(RESTORE_WAIT, done.cancelled())
                    .await
                    .is_err()
            {
                tracing::warn!(session = %id, "A restore of this session did not finish in time; restoring it again.");
                stale = Some(number);
            }
        }
    }

    async fn close_session(&self, id: &SessionId) -> Result<(), Self::Error> {
        if let Some(done) = self.parking().remove(id) {
            // The worker of a session being parked has exited: the session lives on.
            done.cancel();
            return Ok(());
        }
        self.store.remove(id);
        self.inner.close_session(id).await
    }

    async fn restore_session(
        &self,
        id: SessionId,
    ) -> Result<RestoreOutcome<Self::Transport>, Self::Error> {
        let stats = self.store.stats(&id);
        let outcome = match self.inner.restore_session(id.clone()).await {
            Ok(outcome) => outcome,
            Err(e) => {
                self.restores.release(&id);
                return Err(e);
            }
        };
        match (&outcome, stats) {
            (RestoreOutcome::Restored(_), Some(stats)) => stats.set_running(),
            (RestoreOutcome::Restored(_), None) => {}
            _ => self.restores.release(&id),
        }
        Ok(outcome)
    }

    async fn create_stream(
        &self,
        id: &SessionId,
        mut message: ClientJsonRpcMessage,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        let stats = self.store.stats(id);
        if let Some(stats) = &stats {
            stats.on_client_message(&message);
            if let ClientJsonRpcMessage::Request(req) = &mut message {
                use rmcp::model::GetExtensions;
                req.request.extensions_mut().insert(stats.clone());
            }
        }
        let stream = self.inner.create_stream(id, message).await?;
        Ok(Counted {
            inner: stream,
            stats,
            answered: false,
        })
    }

    async fn accept_message(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<(), Self::Error> {
        if Self::is_restore(&message) {
            // The restored handshake's last step: the engine serves the waiting requests.
            let accepted = self.inner.accept_message(id, message).await;
            self.restores.release(id);
            return accepted;
        }
        if let Some(stats) = self.store.stats(id) {
            stats.on_client_message(&message);
        }
        self.inner.accept_message(id, message).await
    }

    /// The session's own `GET` stream is ours, not the worker's: the gateway sends nothing
    /// outside a request's own stream, so it carries only keep-alive comments (rmcp's
    /// "shadow stream") and ends with the session, and parking the worker leaves it open.
    /// Except for an agent that federates servers: what they send outside a request
    /// (`list_changed`, resource updates, logs) goes on the worker's own `GET` stream, and
    /// a session with that stream open is not parked.
    async fn create_standalone_stream(
        &self,
        id: &SessionId,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        let stats = self
            .store
            .stats(id)
            .ok_or_else(|| LocalSessionManagerError::SessionNotFound(id.clone()))?;
        if self.relays.load(std::sync::atomic::Ordering::Relaxed) {
            let open = stats.open_stream();
            let inner = self.inner.create_standalone_stream(id).await?;
            return Ok(futures::future::Either::Left(Held {
                inner,
                _open: Some(open),
            }));
        }
        Ok(futures::future::Either::Right(
            futures::StreamExt::filter_map(
                futures::stream::once(stats.ended().cancelled_owned()),
                |()| std::future::ready(None),
            ),
        ))
    }

    fn event_store(
        &self,
    ) -> Option<Arc<dyn rmcp::transport::streamable_http_server::session::EventStore>> {
        self.inner.event_store()
    }

    async fn resume(
        &self,
        id: &SessionId,
        last_event_id: String,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        let open = self.store.stats(id).map(|s| s.open_stream());
        let stream = self.inner.resume(id, last_event_id).await?;
        Ok(Held {
            inner: stream,
            _open: open,
        })
    }
}

pin_project_lite::pin_project! {
    /// A resumed stream (`GET` with `Last-Event-ID`), replayed by the worker: while it is
    /// open the session is not parked.
    struct Held<S> {
        #[pin]
        inner: S,
        _open: Option<OpenStream>,
    }
}

impl<S: Stream> Stream for Held<S> {
    type Item = S::Item;

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.project().inner.poll_next(cx)
    }
}

pin_project_lite::pin_project! {
    /// A request's response stream that counts its answer into the session's stats, and
    /// ends the call in flight if it is dropped unanswered.
    struct Counted<S> {
        #[pin]
        inner: S,
        stats: Option<Arc<SessionStats>>,
        answered: bool,
    }
    impl<S> PinnedDrop for Counted<S> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if !*this.answered && let Some(stats) = this.stats {
                stats.call_ended();
            }
        }
    }
}

impl<S: Stream<Item = ServerSseMessage>> Stream for Counted<S> {
    type Item = ServerSseMessage;

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let this = self.project();
        let polled = this.inner.poll_next(cx);
        if let std::task::Poll::Ready(Some(event)) = &polled
            && let Some(message) = &event.message
            && matches!(
                **message,
                ServerJsonRpcMessage::Response(_) | ServerJsonRpcMessage::Error(_)
            )
        {
            *this.answered = true;
            if let Some(stats) = this.stats {
                stats.on_server_message(message);
            }
        }
        polled
    }
}

/// The Streamable HTTP endpoint of one agent.
pub type StreamableService = StreamableHttpService<AgentServer, TrackedSessions>;

/// Builds the Streamable HTTP service of one agent.
pub fn service(
    server: AgentServer,
    agent: Arc<str>,
    store: SessionStore,
    settings: &ServerSpec,
    cancel: CancellationToken,
    existing: Option<Arc<TrackedSessions>>,
    events: Option<Arc<dyn rmcp::transport::streamable_http_server::session::EventStore>>,
) -> (StreamableService, Arc<TrackedSessions>) {
    let sessions = existing.unwrap_or_else(|| {
        let mut inner = LocalSessionManager::default();
        // Cluster mode: stream events go to Redis, so a client resumes on any replica.
        if let Some(events) = events {
            inner = inner.with_event_store(events);
        }
        inner.session_config.keep_alive = Some(settings.session_idle_timeout);
        Arc::new_cyclic(|me| TrackedSessions {
            inner,
            store: store.clone(),
            agent,
            parking: Mutex::new(HashMap::new()),
            engine: Arc::new(ManagerEngine(me.clone())),
            relays: std::sync::atomic::AtomicBool::new(false),
            restores: Arc::default(),
        })
    });
    sessions
        .relays
        .store(server.relays(), std::sync::atomic::Ordering::Relaxed);
    // Host and Origin are checked once for every MCP route by our own guard (see
    // `mcp::guard`), so rmcp's own allow-lists are off here. A 2026-07-28 request (no
    // session) whose first message is its answer gets it as `application/json` (rmcp falls
    // back to an event stream when progress or a request comes first): no stream to set up,
    // frame and end for a one-message reply. Session requests are answered as before.
    let mut config = StreamableHttpServerConfig::default()
        .disable_allowed_hosts()
        .disable_allowed_origins()
        .with_json_response(true)
        .with_sse_keep_alive(Some(settings.sse_keep_alive))
        .with_max_request_body_bytes(settings.max_body_bytes)
        .with_cancellation_token(cancel);
    config.session_store = Some(Arc::new(Handshakes {
        store: sessions.store.clone(),
        restores: sessions.restores.clone(),
    }));
    let service = StreamableHttpService::new(move || Ok(server.clone()), sessions.clone(), config);
    (service, sessions)
}

/// Serves one Streamable HTTP request; `store` knows its session's protocol version.
///
/// Some answers differ from rmcp's (see [`super::rmcp_answers`]): a DELETE that ended a
/// session answers 204 (rmcp says 202, which the Python SDK reports as a failed
/// termination); rmcp's plain-text HTTP errors become the gateway's JSON errors; `*/*`
/// accepts both media types; sessions older than MCP 2025-11-25 get no priming events.
pub async fn call(service: &StreamableService, store: &SessionStore, mut req: Request) -> Response {
    let asked = Asked::of(req.method(), req.headers());
    rmcp_answers::widen_accept(req.headers_mut());
    // Boxed: rmcp's future for a request is kilobytes, and inline it would make every
    // future above it (up to the one poem boxes per request, for every route) that large.
    let response = Box::pin(service.handle(poem::http::Request::<
        http_body_util::combinators::BoxBody<Bytes, std::io::Error>,
    >::from(req)))
    .await;
    let (parts, body) = response.into_parts();
    if asked.method() == Method::DELETE && parts.status == StatusCode::ACCEPTED {
        return StatusCode::NO_CONTENT.into_response();
    }
    if rmcp_answers::is_rejection(parts.status, &parts.headers) {
        // rmcp's error bodies are whole (`Full`) and short.
        let text = match body.collect().await {
            Ok(collected) => String::from_utf8_lossy(&collected.to_bytes()).into_owned(),
            Err(never) => match never {},
        };
        let max_body = service.config.max_request_body_bytes;
        return rmcp_answers::rejection(&asked, parts.status, &parts.headers, &text, max_body)
            .into_response();
    }
    let body = body.map_err(|never: Infallible| -> std::io::Error { match never {} });
    // The session is the request's, or the one its initialize just opened.
    let session = asked.session().or_else(|| {
        parts
            .headers
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
    });
    let primed = session
        .and_then(|id| store.stats(id))
        .and_then(|stats| stats.speaks_at_least(rmcp_answers::PRIMING_SINCE))
        // No session (MCP 2026-07-28, stateless): a client new enough for priming.
        .unwrap_or(true);
    if primed {
        Response::from(poem::http::Response::from_parts(parts, body))
    } else {
        let body = WithoutPriming::new(body);
        Response::from(poem::http::Response::from_parts(parts, body))
    }
}
