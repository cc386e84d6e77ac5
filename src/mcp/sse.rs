//! Legacy HTTP+SSE (MCP 2024-11-05), which rmcp no longer serves: our own bridge.
//!
//! `GET /agents/<name>/sse` opens a stream whose first event, `endpoint`, names the URL to
//! POST to (`/agents/<name>/messages?session_id=<id>`). `POST /messages` parses the body and
//! hands it to the session's engine, an rmcp service over [`LegacyTransport`] (202
//! Accepted); every answer goes out on the stream as an SSE `message` event. Keep-alive
//! comments go out every `sse_keep_alive`; a client that left is noticed when a write fails
//! (within two intervals: the first write after it left is usually still accepted by the
//! kernel), and dropping the stream ends the session.
//!
//! The engine starts with the first POST (the `initialize` handshake) and is parked when the
//! session has been idle (see [`crate::sessions`]): its service ends, and the next POST
//! starts a new one with the client's `initialize` parameters (`serve_directly`, no new
//! handshake). An idle session then costs its stream and registry entry only.

use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::Poll;

use bytes::Bytes;
use futures::Stream;
use poem::http::StatusCode;
use poem::{Body, IntoResponse, Request, Response};
use rmcp::RoleServer;
use rmcp::model::{ClientJsonRpcMessage, InitializeRequestParams, ServerJsonRpcMessage};
use rmcp::service::{serve_directly_with_ct, serve_server_with_ct};
use rmcp::transport::Transport;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::handler::AgentServer;
use super::request::RequestId;
use crate::clients::{ClientKey, SessionSlot};
use crate::error::Error;
use crate::identity::Identity;
use crate::sessions::{Peer, SessionStats, SessionStore};

/// Messages buffered per direction before a sender waits.
const CHANNEL_CAPACITY: usize = 32;

/// The queue of SSE events to a session's stream: futures' channel rather than tokio's, for
/// what an idle session holds: tokio's allocates its first block of 32 slots up front (1.5
/// KiB with the channel), futures' a node per queued message (~0.2 KiB while empty). Its
/// one sender is shared behind a lock: every clone of a futures sender may queue one message
/// beyond the capacity, so a sender per message would not bound the queue.
type EventSender = Arc<tokio::sync::Mutex<futures::channel::mpsc::Sender<Bytes>>>;

/// The rmcp transport of one engine: client messages in; server messages out, framed as
/// SSE events for the session's stream.
pub struct LegacyTransport {
    rx: mpsc::Receiver<ClientJsonRpcMessage>,
    out: EventSender,
    stats: Arc<SessionStats>,
}

/// The SSE stream of the session ended, so the message had nowhere to go.
#[derive(Debug, thiserror::Error)]
#[error("the SSE stream of this session is closed")]
pub struct StreamClosed;

impl Transport<RoleServer> for LegacyTransport {
    type Error = StreamClosed;

    fn send(
        &mut self,
        item: ServerJsonRpcMessage,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.stats.on_server_message(&item);
        let event = message_event(&item);
        let out = self.out.clone();
        async move {
            let mut out = out.lock().await;
            futures::SinkExt::send(&mut *out, event)
                .await
                .map_err(|_| StreamClosed)
        }
    }

    fn receive(&mut self) -> impl Future<Output = Option<ClientJsonRpcMessage>> + Send {
        self.rx.recv()
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.rx.close();
        Ok(())
    }
}

/// One legacy session: its stream's sender, its counters and its engine.
pub struct LegacySession {
    server: AgentServer,
    stats: Arc<SessionStats>,
    /// Server messages, framed as SSE events, go to the session's stream here.
    out: EventSender,
    /// Cancelling it ends the session: the stream closes and every engine stops.
    cancel: CancellationToken,
    /// A `std` mutex: held only to look at or swap the engine, never across `.await`.
    engine: Mutex<Engine>,
}

/// The running rmcp service of a session, if any, and what restarts it.
#[derive(Default)]
struct Engine {
    /// Feeds client messages to the running service; `None` before the first POST and
    /// while parked.
    tx: Option<mpsc::Sender<ClientJsonRpcMessage>>,
    /// The client's `initialize` parameters, once its handshake completed.
    handshake: Option<Arc<InitializeRequestParams>>,
}

impl LegacySession {
    /// The session's counters.
    pub fn stats(&self) -> &Arc<SessionStats> {
        &self.stats
    }

    /// Ends the session: its stream closes, its engine stops.
    pub fn end(&self) {
        self.cancel.cancel();
    }

    /// Answers a request refused before it reached the engine (over a limit) on the
    /// stream as well, with `error` (a JSON-RPC error object): a legacy client reads its
    /// answers there, not from the POST's response. Best effort: with the stream's buffer
    /// full (or an answer being queued right now) the POST's own answer has to do.
    pub fn answer_refused(&self, message: &ClientJsonRpcMessage, error: &serde_json::Value) {
        let ClientJsonRpcMessage::Request(request) = message else {
            return;
        };
        let answer = serde_json::json!({"jsonrpc": "2.0", "id": request.id, "error": error});
        let mut event = b"event: message\ndata: ".to_vec();
        if serde_json::to_writer(&mut event, &answer).is_err() {
            return;
        }
        event.extend_from_slice(b"\n\n");
        if let Ok(mut out) = self.out.try_lock() {
            let _ = out.try_send(Bytes::from(event));
        }
    }

    fn engine(&self) -> std::sync::MutexGuard<'_, Engine> {
        self.engine.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts `message` and hands it to the engine, starting one if none runs.
    ///
    /// # Errors
    /// When the session's stream is gone.
    pub async fn deliver(
        self: &Arc<Self>,
        message: ClientJsonRpcMessage,
    ) -> Result<(), StreamClosed> {
        if self.cancel.is_cancelled() {
            return Err(StreamClosed);
        }
        let tx = {
            let mut engine = self.engine();
            // Counted under the engine lock, so that `park` sees a request as soon as it
            // is on its way.
            self.stats.on_client_message(&message);
            match &engine.tx {
                Some(tx) if !tx.is_closed() => tx.clone(),
                _ => self.start(&mut engine),
            }
        };
        tx.send(message).await.map_err(|_| StreamClosed)
    }

    /// Starts an engine: a fresh rmcp service that does the handshake, or, once the
    /// session is initialized, one that starts from the client's `initialize` parameters.
    fn start(self: &Arc<Self>, engine: &mut Engine) -> mpsc::Sender<ClientJsonRpcMessage> {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let transport = LegacyTransport {
            rx,
            out: self.out.clone(),
            stats: self.stats.clone(),
        };
        let ct = self.cancel.child_token();
        let server = self.server.clone();
        match &engine.handshake {
            Some(params) => {
                let running =
                    serve_directly_with_ct(server, transport, Some((**params).clone()), ct);
                tokio::spawn(async move {
                    let _ = running.waiting().await;
                });
            }
            None => {
                let session: Weak<Self> = Arc::downgrade(self);
                tokio::spawn(async move {
                    match serve_server_with_ct(server, transport, ct).await {
                        Ok(running) => {
                            if let (Some(session), Some(info)) =
                                (session.upgrade(), running.peer().peer_info())
                            {
                                session.engine().handshake =
                                    Some(crate::sessions::shared_handshake(info));
                            }
                            let _ = running.waiting().await;
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "Legacy session handshake failed.");
                        }
                    }
                });
            }
        }
        self.stats.set_running();
        engine.tx = Some(tx.clone());
        tx
    }

    /// Parks the engine if the session is initialized and quiet: the service ends once it
    /// has read what was sent to it. Returns whether it did.
    fn park_now(&self) -> bool {
        let mut engine = self.engine();
        if engine.tx.is_none() || engine.handshake.is_none() || !self.stats.is_quiet() {
            return false;
        }
        engine.tx = None;
        self.stats.mark_parked();
        true
    }
}

#[async_trait::async_trait]
impl crate::sessions::Engine for LegacySession {
    async fn park(&self, _id: &Arc<str>, _stats: &SessionStats) -> bool {
        self.park_now()
    }

    async fn end(&self, _id: &Arc<str>) {
        LegacySession::end(self);
    }
}

/// Ends the session when the response stream is dropped (client gone, session ended,
/// shutdown): cancels its engines and removes the session from the store.
struct SessionGuard {
    id: Arc<str>,
    store: SessionStore,
    cancel: CancellationToken,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.cancel.cancel();
        self.store.remove(&self.id);
    }
}

/// `GET /agents/<name>/sse` (or the default agent's `/sse`): opens a legacy session and
/// returns its event stream, whose `endpoint` event names `messages` (the POST URL that
/// goes with the URL the client used: `/agents/<name>/messages` or `/messages`).
#[allow(clippy::too_many_arguments)]
pub fn open(
    id: Arc<str>,
    server: AgentServer,
    agent: &Arc<str>,
    messages: &str,
    peer: Peer,
    owner: ClientKey,
    slot: SessionSlot,
    store: &SessionStore,
    keep_alive: std::time::Duration,
    parent: &CancellationToken,
) -> Response {
    let (out, rx) = futures::channel::mpsc::channel(CHANNEL_CAPACITY);
    let out = Arc::new(tokio::sync::Mutex::new(out));
    let cancel = parent.child_token();
    let stats = SessionStore::legacy_stats(peer);
    let session = Arc::new(LegacySession {
        server,
        stats: stats.clone(),
        out,
        cancel: cancel.clone(),
        engine: Mutex::new(Engine::default()),
    });
    store.insert_legacy(id.clone(), agent.clone(), owner, slot, stats, session);
    let guard = SessionGuard {
        id: id.clone(),
        store: store.clone(),
        cancel: cancel.clone(),
    };
    let endpoint = format!("event: endpoint\ndata: {messages}?session_id={id}\n\n");
    let body = EventStream {
        first: Some(Bytes::from(endpoint)),
        rx,
        keep_alive: tokio::time::interval_at(tokio::time::Instant::now() + keep_alive, keep_alive),
        cancel: Box::pin(cancel.cancelled_owned()),
        _guard: guard,
    };
    Response::builder()
        .content_type("text/event-stream")
        .header("Cache-Control", "no-cache")
        .header("X-Accel-Buffering", "no")
        .body(Body::from_bytes_stream(body))
}

/// The body of a legacy SSE response.
struct EventStream {
    first: Option<Bytes>,
    rx: futures::channel::mpsc::Receiver<Bytes>,
    keep_alive: tokio::time::Interval,
    cancel: std::pin::Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>,
    _guard: SessionGuard,
}

const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

impl Stream for EventStream {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Self::Item>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(first)));
        }
        if self.cancel.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        match futures::StreamExt::poll_next_unpin(&mut self.rx, cx) {
            Poll::Ready(Some(event)) => return Poll::Ready(Some(Ok(event))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {}
        }
        match self.keep_alive.poll_tick(cx) {
            Poll::Ready(_) => Poll::Ready(Some(Ok(Bytes::from_static(KEEP_ALIVE)))),
            Poll::Pending => Poll::Pending,
        }
    }
}

fn message_event(message: &ServerJsonRpcMessage) -> Bytes {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"event: message\ndata: ");
    if let Err(e) = serde_json::to_writer(&mut out, message) {
        // Our own message types always serialize; if one ever does not, say so on the log
        // and send a comment rather than a broken event.
        tracing::error!(error = %e, "Could not serialize a server message.");
        return Bytes::from_static(b": unserializable message dropped\n\n");
    }
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// The legacy session a `POST /agents/<name>/messages?session_id=<id>` is for, and its id.
///
/// # Errors
/// 400 without a session id, 404 for an unknown session, another agent's or another
/// client's.
pub fn session_of(
    req: &Request,
    agent: &str,
    caller: &ClientKey,
    store: &SessionStore,
) -> Result<(String, Arc<LegacySession>), Error> {
    let id = session_id(req).ok_or(Error::MissingSessionId(
        "add ?session_id=<id> from the endpoint event",
    ))?;
    match store
        .engine::<LegacySession>(&id, agent)
        .filter(|_| store.may_use(&id, caller))
    {
        Some(session) => Ok((id, session)),
        None => Err(Error::SessionNotFound(id)),
    }
}

/// The method of a client message and, for `tools/call`, the tool.
pub fn method_and_tool(message: &ClientJsonRpcMessage) -> (Option<&str>, Option<&str>) {
    match message {
        ClientJsonRpcMessage::Request(r) => {
            let tool = match &r.request {
                rmcp::model::ClientRequest::CallToolRequest(call) => {
                    Some(call.params.name.as_ref())
                }
                _ => None,
            };
            (Some(r.request.method()), tool)
        }
        ClientJsonRpcMessage::Notification(n) => (
            Some(match &n.notification {
                rmcp::model::ClientNotification::InitializedNotification(_) => {
                    "notifications/initialized"
                }
                rmcp::model::ClientNotification::CancelledNotification(_) => {
                    "notifications/cancelled"
                }
                rmcp::model::ClientNotification::ProgressNotification(_) => {
                    "notifications/progress"
                }
                _ => "notifications/other",
            }),
            None,
        ),
        _ => (None, None),
    }
}

/// Hands one client message to `session`'s engine: 202, and the answer goes out on the
/// session's stream. A request is for `identity`, the POST's own (the session is its
/// owner's, and a refreshed token of the same subject brings its current scopes).
///
/// # Errors
/// 404 when the session's stream is gone.
pub async fn post(
    session: &Arc<LegacySession>,
    id: &str,
    mut message: ClientJsonRpcMessage,
    identity: Arc<Identity>,
    store: &SessionStore,
    request_id: RequestId,
    span: Option<&crate::telemetry::trace::RequestSpan>,
) -> Result<Response, Error> {
    if let ClientJsonRpcMessage::Request(req) = &mut message {
        use rmcp::model::GetExtensions;
        if let Some(span) = span {
            req.request.extensions_mut().insert(span.clone());
        }
        req.request.extensions_mut().insert(session.stats().clone());
        req.request.extensions_mut().insert(request_id);
        req.request.extensions_mut().insert(identity);
        req.request.extensions_mut().insert(crate::audit::Origin {
            transport: Some("sse"),
            session: Some(Arc::from(id)),
        });
    }
    match session.deliver(message).await {
        Ok(()) => Ok(StatusCode::ACCEPTED.into_response()),
        Err(_) => {
            store.remove(id);
            Err(Error::SessionNotFound(id.to_owned()))
        }
    }
}

/// The session id of a legacy POST: `session_id` (what we hand out) or `sessionId`.
pub(crate) fn session_id(req: &Request) -> Option<String> {
    let query = req.uri().query()?;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == "session_id" || k == "sessionId")
            .then(|| v.to_owned())
            .filter(|v| !v.is_empty())
    })
}
