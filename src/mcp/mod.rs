//! The MCP server side: one endpoint per agent, over both transports.
//!
//! # Transports
//! Every agent is served at three URLs:
//! - `GET /agents/<name>/sse` (without `Mcp-Session-Id`): the legacy HTTP+SSE transport
//!   of MCP 2024-11-05 ([`sse`]); the client then POSTs to
//!   `/agents/<name>/messages?session_id=<id>` (202; answers arrive on the stream).
//! - `POST|GET|DELETE /agents/<name>/mcp`: Streamable HTTP ([`streamable`], rmcp's service).
//! - `POST|DELETE /agents/<name>/sse`, and `GET` with an `Mcp-Session-Id` header: Streamable
//!   HTTP too, so a Streamable HTTP client pointed at the seed's `/sse` URL works.
//!
//! Before any of them, [`guard`] checks `Host` and `Origin` (403). Errors outside JSON-RPC
//! are JSON `{code, message}` ([`crate::error`]); a body that is not JSON-RPC gets a
//! JSON-RPC parse error with status 400 on both transports, and the session lives on.

pub mod guard;
pub mod handler;
pub mod sse;
pub mod streamable;

use std::sync::Arc;

use poem::http::{Method, StatusCode};
use poem::{Endpoint, IntoResponse, Request, Response};
use serde_json::json;

use crate::agents::Agent;
use crate::error::Error;
use crate::sessions::{Peer, Transport};
use crate::state::AppState;
use handler::AgentServer;

/// Everything needed to serve one agent over MCP.
pub struct AgentEndpoint {
    /// The agent.
    pub agent: Arc<Agent>,
    /// Its name, shared with the sessions it opens.
    pub name: Arc<str>,
    /// Its MCP handler (cloned into every session).
    pub server: AgentServer,
    /// Its Streamable HTTP service.
    pub streamable: streamable::StreamableService,
    /// The session manager behind `streamable`, to end its sessions from outside.
    pub streamable_sessions: Arc<streamable::TrackedSessions>,
}

impl AgentEndpoint {
    /// Ends session `id` of this agent: its stream closes, its id is unknown from now on,
    /// its running calls are cancelled. Returns whether there was such a session.
    pub async fn end_session(&self, state: &AppState, id: &str) -> bool {
        let Some(info) = state.sessions().get(id) else {
            return false;
        };
        if *info.agent != *self.name {
            return false;
        }
        match info.transport {
            Transport::Sse => {
                if let Some(handle) = state.sessions().legacy(id, &self.name) {
                    // Gone from the registry at once (its POSTs get 404), then the stream
                    // and the service end.
                    state.sessions().remove(id);
                    handle.cancel.cancel();
                }
            }
            Transport::StreamableHttp => {
                use rmcp::transport::streamable_http_server::session::SessionManager;
                if let Err(e) = self.streamable_sessions.close_session(&Arc::from(id)).await {
                    tracing::warn!(session = %id, error = %e, "Could not close a session.");
                }
                state.sessions().remove(id);
            }
        }
        true
    }
}

/// The peer address of a request, carried into rmcp's request extensions (poem's
/// conversion to an `http::Request` drops the remote address).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub std::net::IpAddr);

/// Who sent a request, from poem's view of it.
fn peer_of_request(req: &Request) -> Peer {
    Peer {
        client: None,
        ip: req.remote_addr().as_socket_addr().map(|a| a.ip()),
        user_agent: req
            .headers()
            .get(poem::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    }
}

/// Who sent a message, from the HTTP parts rmcp put into its extensions.
pub(crate) fn peer_of(extensions: &rmcp::model::Extensions) -> Peer {
    let Some(parts) = extensions.get::<poem::http::request::Parts>() else {
        return Peer::default();
    };
    Peer {
        client: None,
        ip: parts.extensions.get::<ClientIp>().map(|c| c.0),
        user_agent: parts
            .headers
            .get(poem::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    }
}

/// A JSON-RPC error object with no id, as an HTTP response with `status`.
pub fn jsonrpc_error(status: StatusCode, code: i32, message: &str) -> Response {
    crate::error::json_response(
        status,
        &json!({"jsonrpc": "2.0", "id": null, "error": {"code": code, "message": message}}),
    )
}

/// The poem endpoint for everything under `/agents`.
pub struct AgentsEndpoint {
    state: AppState,
}

impl AgentsEndpoint {
    /// Serves the agents of `state`.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

impl Endpoint for AgentsEndpoint {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Response> {
        let state = &self.state;
        if let Err(e) = guard::check(&req, state.settings()) {
            return Ok(e.into_response());
        }
        if let Some(addr) = req.remote_addr().as_socket_addr() {
            let ip = ClientIp(addr.ip());
            req.extensions_mut().insert(ip);
        }
        let path = req.uri().path().to_owned();
        let mut segments = path.trim_start_matches('/').split('/');
        let (Some("agents"), Some(name), Some(kind), None) = (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) else {
            return Ok(Error::NoRoute(path.clone()).into_response());
        };
        let (name, kind) = (name.to_owned(), kind.to_owned());
        let Some(endpoint) = state.agent(&name) else {
            return Ok(Error::UnknownAgent(name).into_response());
        };
        let method = req.method().clone();
        let response = match (kind.as_str(), &method) {
            ("mcp", _) => streamable::call(&endpoint.streamable, req).await,
            ("sse", &Method::GET) if !req.headers().contains_key("mcp-session-id") => sse::open(
                endpoint.server.clone(),
                &endpoint.name,
                peer_of_request(&req),
                state.sessions(),
                state.settings().sse_keep_alive,
                state.cancel(),
            ),
            ("sse", _) => streamable::call(&endpoint.streamable, req).await,
            ("messages", &Method::POST) => {
                let body = req.take_body();
                sse::post(
                    req,
                    body,
                    &endpoint.name,
                    state.sessions(),
                    state.settings().max_body_bytes,
                )
                .await
            }
            ("messages", _) => Error::MethodNotAllowed {
                method: method.to_string(),
                allowed: "POST",
            }
            .into_response(),
            _ => Error::NoRoute(path).into_response(),
        };
        Ok(response)
    }
}
