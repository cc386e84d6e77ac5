//! Streamable HTTP: rmcp's `StreamableHttpService`, one per agent, called from poem.
//!
//! rmcp does the protocol (sessions, SSE framing, protocol-version checks, resumption).
//! We wrap its `LocalSessionManager` in [`TrackedSessions`] so every session it creates or
//! closes (DELETE, idle timeout, shutdown) enters and leaves the gateway's
//! [`SessionStore`]; and we adjust two answers at the edge (see [`call`]).

use std::convert::Infallible;
use std::sync::Arc;

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
    ServerSseMessage, SessionId, SessionManager,
};
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use super::handler::AgentServer;
use crate::config::ServerSettings;
use crate::sessions::{SessionStats, SessionStore};
use std::pin::Pin;

/// rmcp's in-memory session manager, reporting to the gateway's session store.
pub struct TrackedSessions {
    inner: LocalSessionManager,
    agent: Arc<str>,
    store: SessionStore,
}

impl SessionManager for TrackedSessions {
    type Error = LocalSessionManagerError;
    type Transport = <LocalSessionManager as SessionManager>::Transport;

    async fn create_session(&self) -> Result<(SessionId, Self::Transport), Self::Error> {
        let (id, transport) = self.inner.create_session().await?;
        self.store.insert_streamable(id.clone(), self.agent.clone());
        Ok((id, transport))
    }

    async fn initialize_session(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<ServerJsonRpcMessage, Self::Error> {
        let stats = self.store.stats(id);
        if let Some(stats) = &stats {
            if let ClientJsonRpcMessage::Request(req) = &message {
                use rmcp::model::GetExtensions;
                stats.set_peer(super::peer_of(req.request.extensions()));
            }
            stats.on_client_message(&message);
        }
        let response = self.inner.initialize_session(id, message).await?;
        if let Some(stats) = &stats {
            stats.on_server_message(&response);
        }
        Ok(response)
    }

    async fn has_session(&self, id: &SessionId) -> Result<bool, Self::Error> {
        self.inner.has_session(id).await
    }

    async fn close_session(&self, id: &SessionId) -> Result<(), Self::Error> {
        self.store.remove(id);
        self.inner.close_session(id).await
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
        if let Some(stats) = self.store.stats(id) {
            stats.on_client_message(&message);
        }
        self.inner.accept_message(id, message).await
    }

    async fn create_standalone_stream(
        &self,
        id: &SessionId,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.inner.create_standalone_stream(id).await
    }

    async fn resume(
        &self,
        id: &SessionId,
        last_event_id: String,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.inner.resume(id, last_event_id).await
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
    settings: &ServerSettings,
    cancel: CancellationToken,
    existing: Option<Arc<TrackedSessions>>,
) -> (StreamableService, Arc<TrackedSessions>) {
    let sessions = existing.unwrap_or_else(|| {
        let mut inner = LocalSessionManager::default();
        inner.session_config.keep_alive = Some(settings.session_idle_timeout);
        Arc::new(TrackedSessions {
            inner,
            agent,
            store,
        })
    });
    // Host and Origin are checked once for every MCP route by our own guard (see
    // `mcp::guard`), so rmcp's own allow-lists are off here.
    let config = StreamableHttpServerConfig::default()
        .disable_allowed_hosts()
        .disable_allowed_origins()
        .with_sse_keep_alive(Some(settings.sse_keep_alive))
        .with_max_request_body_bytes(settings.max_body_bytes)
        .with_cancellation_token(cancel);
    let service = StreamableHttpService::new(move || Ok(server.clone()), sessions.clone(), config);
    (service, sessions)
}

/// What the gateway needs to know of a JSON-RPC message before rmcp sees it.
#[derive(Debug, Default)]
pub struct Peek {
    /// Its method, for requests and notifications.
    pub method: Option<String>,
    /// `params.name`, the tool of a `tools/call`.
    pub tool: Option<String>,
}

/// Reads the method and tool name of a JSON-RPC message body, checking that it is one.
///
/// # Errors
/// [`Error::InvalidJsonRpc`]: -32700 for a body that is not JSON, -32600 for JSON that is
/// not a JSON-RPC message.
pub fn peek(body: &[u8]) -> Result<Peek, crate::error::Error> {
    #[derive(serde::Deserialize)]
    struct Message<'a> {
        #[serde(borrow)]
        jsonrpc: std::borrow::Cow<'a, str>,
        #[serde(borrow, default)]
        method: Option<std::borrow::Cow<'a, str>>,
        #[serde(borrow, default)]
        params: Option<Params<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct Params<'a> {
        #[serde(borrow, default)]
        name: Option<std::borrow::Cow<'a, str>>,
    }
    let m: Message<'_> =
        serde_json::from_slice(body).map_err(|e| crate::error::Error::from_json_error(&e))?;
    if m.jsonrpc != "2.0" {
        return Err(crate::error::Error::InvalidJsonRpc {
            code: -32600,
            message: format!(
                "Invalid Request: jsonrpc must be \"2.0\", not {:?}",
                m.jsonrpc
            ),
        });
    }
    Ok(Peek {
        method: m.method.map(|m| m.into_owned()),
        tool: m.params.and_then(|p| p.name).map(|n| n.into_owned()),
    })
}

/// Serves one Streamable HTTP request.
///
/// One answer differs from rmcp's: a DELETE that ended a session answers 204 (rmcp says 202,
/// which the Python SDK reports as a failed termination).
pub async fn call(service: &StreamableService, req: Request) -> Response {
    let is_delete = req.method() == Method::DELETE;
    let response = service
        .handle(poem::http::Request::<
            http_body_util::combinators::BoxBody<Bytes, std::io::Error>,
        >::from(req))
        .await;
    let (parts, body) = response.into_parts();
    if is_delete && parts.status == StatusCode::ACCEPTED {
        return StatusCode::NO_CONTENT.into_response();
    }
    let body = body.map_err(|never: Infallible| -> std::io::Error { match never {} });
    Response::from(poem::http::Response::from_parts(
        parts,
        body.map_frame(|f| f.map_data(Bytes::from)),
    ))
}
