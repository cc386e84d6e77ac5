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
use crate::sessions::SessionStore;

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
        self.inner.initialize_session(id, message).await
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
        message: ClientJsonRpcMessage,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.inner.create_stream(id, message).await
    }

    async fn accept_message(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<(), Self::Error> {
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

/// The Streamable HTTP endpoint of one agent.
pub type StreamableService = StreamableHttpService<AgentServer, TrackedSessions>;

/// Builds the Streamable HTTP service of one agent.
pub fn service(
    server: AgentServer,
    agent: Arc<str>,
    store: SessionStore,
    settings: &ServerSettings,
    cancel: CancellationToken,
) -> StreamableService {
    let mut inner = LocalSessionManager::default();
    inner.session_config.keep_alive = Some(settings.session_idle_timeout);
    let sessions = TrackedSessions {
        inner,
        agent,
        store,
    };
    // Host and Origin are checked once for every MCP route by our own guard (see
    // `mcp::guard`), so rmcp's own allow-lists are off here.
    let config = StreamableHttpServerConfig::default()
        .disable_allowed_hosts()
        .disable_allowed_origins()
        .with_sse_keep_alive(Some(settings.sse_keep_alive))
        .with_max_request_body_bytes(settings.max_body_bytes)
        .with_cancellation_token(cancel);
    StreamableHttpService::new(move || Ok(server.clone()), Arc::new(sessions), config)
}

/// Serves one Streamable HTTP request.
///
/// Two answers differ from rmcp's: a DELETE that ended a session answers 204 (rmcp says 202,
/// which the Python SDK reports as a failed termination), and a body that is not a JSON-RPC
/// message answers 400 with a JSON-RPC parse error (rmcp says 415).
pub async fn call(service: &StreamableService, req: Request) -> Response {
    let is_delete = req.method() == Method::DELETE;
    let is_json = req.content_type().is_some_and(|ct| {
        ct.split(';')
            .next()
            .is_some_and(|e| e.trim().eq_ignore_ascii_case("application/json"))
    });
    let response = service
        .handle(poem::http::Request::<
            http_body_util::combinators::BoxBody<Bytes, std::io::Error>,
        >::from(req))
        .await;
    let (parts, body) = response.into_parts();
    if is_delete && parts.status == StatusCode::ACCEPTED {
        return StatusCode::NO_CONTENT.into_response();
    }
    if is_json && parts.status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
        // The request said JSON, so rmcp's 415 means the body did not parse as a JSON-RPC
        // message: the client's fault, and a JSON-RPC parse error says so in its terms.
        let detail = match body.collect().await {
            Ok(b) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
            Err(never) => match never {},
        };
        return super::jsonrpc_error(
            StatusCode::BAD_REQUEST,
            -32700,
            &parse_error_message(&detail),
        )
        .into_response();
    }
    let body = body.map_err(|never: Infallible| -> std::io::Error { match never {} });
    Response::from(poem::http::Response::from_parts(
        parts,
        body.map_frame(|f| f.map_data(Bytes::from)),
    ))
}

fn parse_error_message(rmcp_detail: &str) -> String {
    let detail = rmcp_detail
        .strip_prefix("fail to deserialize request body ")
        .unwrap_or(rmcp_detail);
    format!("Parse error: the body is not a valid JSON-RPC message: {detail}")
}
