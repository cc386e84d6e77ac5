//! The client side of one federated upstream connection: rmcp's `ClientHandler`, relaying
//! what the upstream sends during a session to that session's client.
//!
//! - `notifications/progress`: re-sent with the client's own progress token, when the
//!   upstream request it belongs to ([`InFlight`]) came from a client request that asked for
//!   progress; dropped otherwise.
//! - `notifications/message` (logging), `notifications/resources/updated` and the
//!   `list_changed` notifications: sent to the client as they are.
//! - Progress, log messages and resource updates go in the order the upstream sent them, and
//!   before the answer that followed them (`arrival`).
//! - `elicitation/create`, `sampling/createMessage`, `roots/list`: sent to the client as a
//!   request of its own, marked as part of the client request that caused it (rmcp's
//!   `OriginatingRequestId`: on Streamable HTTP it rides that request's stream), and the
//!   client's answer (or error) goes back. A client that did not declare the capability is
//!   never asked: the upstream gets `-32601`, at once. (The upstream was told the client's
//!   capabilities in its `initialize`, so a well-behaved one does not ask.)
//!
//! Which client request caused an upstream request: over Streamable HTTP, rmcp tells the
//! stream it came on (`InboundStreamOrigin::OutboundRequest(id)`); otherwise (stdio, or the
//! upstream's standalone stream), the latest request in flight on the connection.

// Sampling, roots and logging are deprecated by SEP-2577 (2026-07-28) but are the protocol of
// every session before it: relayed as they are.
#![allow(deprecated)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rmcp::model::{
    ClientCapabilities, ClientConfig, ClientResult, CreateMessageRequest,
    CreateMessageRequestParams, CreateMessageResult, ElicitRequest, ElicitRequestParams,
    ElicitResult, ErrorCode, GetExtensions as _, Implementation, ListRootsRequest, ListRootsResult,
    LoggingMessageNotificationParam, ProgressNotificationParam, ProgressToken, RequestId,
    ResourceUpdatedNotificationParam, ServerRequest,
};
use rmcp::service::{
    InboundStreamOrigin, NotificationContext, OriginatingRequestId, Peer, PeerRequestOptions,
    RequestContext,
};
use rmcp::{ClientHandler, ErrorData as McpError, RoleClient, RoleServer, ServiceError};

/// One upstream request in flight, and the client request it serves.
struct Call {
    seq: u64,
    /// The upstream request's id and progress token; `None` until it is sent (the upstream
    /// may answer with progress or a request of its own before the sender learns them).
    upstream: Option<(RequestId, ProgressToken)>,
    client_id: RequestId,
    client_token: Option<ProgressToken>,
}

/// The upstream requests in flight on one connection.
#[derive(Default)]
pub(super) struct InFlight {
    /// A `std` mutex: held only to push, find or remove, never across `.await`. A few
    /// entries at most (the calls of one session), so a vector.
    calls: Mutex<Vec<Call>>,
    next: AtomicU64,
    /// Relayed notifications go to the client in the order they arrived, before the answer
    /// that followed them; shared with the connection's [`super::arrival::Stamped`] transport.
    pub(super) turns: Arc<super::arrival::Turns>,
}

/// Keeps a call registered until dropped.
pub(super) struct Registered<'a> {
    in_flight: &'a InFlight,
    seq: u64,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.in_flight.calls().retain(|c| c.seq != self.seq);
    }
}

impl Registered<'_> {
    /// Records the upstream request's id and progress token, once it is sent.
    pub(super) fn sent(&self, upstream_id: RequestId, upstream_token: ProgressToken) {
        if let Some(call) = self
            .in_flight
            .calls()
            .iter_mut()
            .find(|c| c.seq == self.seq)
        {
            call.upstream = Some((upstream_id, upstream_token));
        }
    }

    /// Waits (at most `limit`) until the notifications the upstream sent before its answer
    /// (progress, log messages, resource updates) have gone to the client (see `arrival`).
    pub(super) async fn flush(&self, limit: std::time::Duration) {
        self.in_flight.turns.drain(limit).await;
    }
}

impl InFlight {
    /// Registers a request about to be sent upstream for the client's request `client_id`
    /// (progress token `client_token`, if it asked); [`Registered::sent`] completes it.
    pub(super) fn register(
        &self,
        client_id: RequestId,
        client_token: Option<ProgressToken>,
    ) -> Registered<'_> {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        self.calls().push(Call {
            seq,
            upstream: None,
            client_id,
            client_token,
        });
        Registered {
            in_flight: self,
            seq,
        }
    }

    /// The client's progress token for the upstream's `token`: of the call sent with it, or
    /// else of the latest call not sent yet (its progress can come first).
    fn client_token(&self, token: &ProgressToken) -> Option<ProgressToken> {
        let calls = self.calls();
        let call = calls
            .iter()
            .find(|c| c.upstream.as_ref().is_some_and(|(_, t)| t == token))
            .or_else(|| {
                calls
                    .iter()
                    .filter(|c| c.upstream.is_none())
                    .max_by_key(|c| c.seq)
            })?;
        call.client_token.clone()
    }

    /// The client request behind an upstream request that came on the stream of
    /// `origin` (if known), or else the latest in flight.
    fn client_request(&self, origin: Option<&InboundStreamOrigin>) -> Option<RequestId> {
        let calls = self.calls();
        if let Some(InboundStreamOrigin::OutboundRequest(id)) = origin
            && let Some(call) = calls
                .iter()
                .find(|c| c.upstream.as_ref().is_some_and(|(u, _)| u == id))
        {
            return Some(call.client_id.clone());
        }
        calls
            .iter()
            .max_by_key(|c| c.seq)
            .map(|c| c.client_id.clone())
    }

    fn calls(&self) -> MutexGuard<'_, Vec<Call>> {
        self.calls.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The session's client as the latest request reached it. A parked session (see
/// `sessions`) gets a new MCP engine, and with it a new peer, on its next request: each
/// request sets it, and relays use the latest.
#[derive(Default)]
pub(super) struct Client {
    /// A `std` mutex: held only to clone or replace, never across `.await`.
    peer: Mutex<Option<Peer<RoleServer>>>,
}

impl Client {
    pub(super) fn new(peer: Option<Peer<RoleServer>>) -> Self {
        Self {
            peer: Mutex::new(peer),
        }
    }

    /// The peer of the session's latest request.
    pub(super) fn get(&self) -> Option<Peer<RoleServer>> {
        self.peer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Records `peer` as the session's current one.
    pub(super) fn set(&self, peer: &Peer<RoleServer>) {
        *self.peer.lock().unwrap_or_else(PoisonError::into_inner) = Some(peer.clone());
    }
}

/// The `ClientHandler` of one federated upstream connection.
pub(super) struct Relay {
    /// What the upstream is told in `initialize`: the client's capabilities (those relayed).
    info: ClientConfig,
    /// The session's client; none for a request without a session (nothing to relay to).
    client: Arc<Client>,
    /// The connection's requests in flight.
    pub(super) in_flight: Arc<InFlight>,
    /// How logs name the upstream.
    target: String,
}

impl Relay {
    /// A relay to `client` (the session's peer), declaring upstream the capabilities of
    /// `client` that can be relayed.
    pub(super) fn new(client: Arc<Client>, target: String) -> Self {
        let capabilities = client
            .get()
            .and_then(|peer| peer.peer_info())
            .map(|info| relayed(&info.capabilities))
            .unwrap_or_default();
        let info = ClientConfig::new(
            capabilities,
            Implementation::new("switchboard", env!("CARGO_PKG_VERSION")),
        );
        Self {
            info,
            client,
            in_flight: Arc::default(),
            target,
        }
    }

    fn capabilities(&self) -> &ClientCapabilities {
        &self.info.capabilities
    }

    /// Sends `request` to the client as part of the client request behind `context`'s, and
    /// waits for the answer; withdrawn (`notifications/cancelled` to the client) when the
    /// upstream cancels its request.
    async fn ask(
        &self,
        method: &str,
        mut request: ServerRequest,
        context: &RequestContext<RoleClient>,
    ) -> Result<ClientResult, McpError> {
        let client = self.client.get().ok_or_else(|| no_client(method))?;
        let origin = context.extensions.get::<InboundStreamOrigin>();
        if let Some(id) = self.in_flight.client_request(origin) {
            request.extensions_mut().insert(OriginatingRequestId(id));
        }
        // Sent from a task of its own: this handler runs inside rmcp's scope of the upstream's
        // request, and rmcp would mark the relayed request as part of *that* id (unknown to
        // the client's session) instead of the client's request marked above.
        let send = {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .send_request_with_option(request, PeerRequestOptions::no_options())
                    .await
            })
        };
        let handle = match send.await {
            Ok(sent) => sent.map_err(|e| client_failed(&self.target, &e))?,
            Err(e) => {
                return Err(McpError::new(
                    ErrorCode::INTERNAL_ERROR,
                    format!("{method}: the request to the client could not be sent: {e}"),
                    None,
                ));
            }
        };
        let id = handle.id.clone();
        tokio::select! {
            answer = handle.await_response() => answer.map_err(|e| match e {
                ServiceError::McpError(data) => data,
                other => client_failed(&self.target, &other),
            }),
            () = context.ct.cancelled() => {
                let _ = client
                    .notify_cancelled(rmcp::model::CancelledNotificationParam::new(
                        Some(id),
                        Some("the upstream MCP server withdrew its request".into()),
                    ))
                    .await;
                Err(McpError::new(ErrorCode::INTERNAL_ERROR, "cancelled", None))
            }
        }
    }
}

/// The capabilities of a client that the relay can pass on to an upstream.
fn relayed(client: &ClientCapabilities) -> ClientCapabilities {
    let mut capabilities = ClientCapabilities::default();
    capabilities.elicitation = client.elicitation.clone();
    capabilities.sampling = client.sampling.clone();
    capabilities.roots = client.roots.clone();
    capabilities
}

fn no_client(method: &str) -> McpError {
    McpError::new(
        ErrorCode::METHOD_NOT_FOUND,
        format!(
            "{method}: the gateway's client cannot be asked (a request without an MCP session)"
        ),
        None,
    )
}

fn unsupported(method: &str, capability: &str) -> McpError {
    McpError::new(
        ErrorCode::METHOD_NOT_FOUND,
        format!("{method}: the client of this session did not declare the {capability} capability"),
        None,
    )
}

fn client_failed(target: &str, e: &ServiceError) -> McpError {
    tracing::debug!(upstream = %target, error = %e, "A relayed request to the client failed.");
    McpError::new(
        ErrorCode::INTERNAL_ERROR,
        format!("the client did not answer: {e}"),
        None,
    )
}

fn unexpected(method: &str) -> McpError {
    McpError::new(
        ErrorCode::INTERNAL_ERROR,
        format!("{method}: the client answered with another kind of result"),
        None,
    )
}

impl ClientHandler for Relay {
    fn get_info(&self) -> ClientConfig {
        self.info.clone()
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, McpError> {
        if self.capabilities().elicitation.is_none() {
            return Err(unsupported("elicitation/create", "elicitation"));
        }
        let request = ServerRequest::ElicitRequest(ElicitRequest::new(request));
        match self.ask("elicitation/create", request, &context).await? {
            ClientResult::ElicitResult(result) => Ok(result),
            _ => Err(unexpected("elicitation/create")),
        }
    }

    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, McpError> {
        if self.capabilities().sampling.is_none() {
            return Err(unsupported("sampling/createMessage", "sampling"));
        }
        let request = ServerRequest::CreateMessageRequest(CreateMessageRequest::new(params));
        match self
            .ask("sampling/createMessage", request, &context)
            .await?
        {
            ClientResult::CreateMessageResult(result) => Ok(*result),
            _ => Err(unexpected("sampling/createMessage")),
        }
    }

    async fn list_roots(
        &self,
        context: RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, McpError> {
        if self.capabilities().roots.is_none() {
            return Err(unsupported("roots/list", "roots"));
        }
        let request = ServerRequest::ListRootsRequest(ListRootsRequest::default());
        match self.ask("roots/list", request, &context).await? {
            ClientResult::ListRootsResult(result) => Ok(result),
            _ => Err(unexpected("roots/list")),
        }
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        context: NotificationContext<RoleClient>,
    ) {
        let _turn = self.in_flight.turns.wait(&context).await;
        let (Some(client), Some(token)) = (
            self.client.get(),
            self.in_flight.client_token(&params.progress_token),
        ) else {
            return;
        };
        let mut params = params;
        params.progress_token = token;
        let _ = client.notify_progress(params).await;
    }

    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        context: NotificationContext<RoleClient>,
    ) {
        let _turn = self.in_flight.turns.wait(&context).await;
        if let Some(client) = self.client.get() {
            let _ = client.notify_logging_message(params).await;
        }
    }

    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        context: NotificationContext<RoleClient>,
    ) {
        let _turn = self.in_flight.turns.wait(&context).await;
        if let Some(client) = self.client.get() {
            let _ = client.notify_resource_updated(params).await;
        }
    }

    async fn on_resource_list_changed(&self, _context: NotificationContext<RoleClient>) {
        if let Some(client) = self.client.get() {
            let _ = client.notify_resource_list_changed().await;
        }
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        if let Some(client) = self.client.get() {
            let _ = client.notify_tool_list_changed().await;
        }
    }

    async fn on_prompt_list_changed(&self, _context: NotificationContext<RoleClient>) {
        if let Some(client) = self.client.get() {
            let _ = client.notify_prompt_list_changed().await;
        }
    }
}
