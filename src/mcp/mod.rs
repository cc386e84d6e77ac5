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
                if let Some(session) = state.sessions().legacy(id, &self.name) {
                    // Gone from the registry at once (its POSTs get 404), then the stream
                    // and the engine end.
                    state.sessions().remove(id);
                    session.end();
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

/// The id of an HTTP request (its `X-Request-Id`, or one made up), carried into rmcp's
/// request extensions so the tool-call log line names it.
#[derive(Debug, Clone)]
pub struct RequestId(pub Arc<str>);

impl RequestId {
    /// The request's `X-Request-Id` if it is sane, else a new one.
    pub fn of(req: &Request) -> Self {
        let given = req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()));
        Self(match given {
            Some(id) => id.into(),
            None => uuid::Uuid::new_v4().simple().to_string().into(),
        })
    }
}

/// Who sent a request: its client, its address (`ip`, as the edge resolved it) and user agent.
fn peer_of_request(req: &Request, caller: &crate::clients::Caller, ip: std::net::IpAddr) -> Peer {
    Peer {
        client: caller.name().cloned(),
        ip: Some(ip),
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

/// The longest URL accepted on MCP routes.
const MAX_URI_BYTES: usize = 8 * 1024;
/// The most header bytes accepted on MCP routes.
const MAX_HEADER_BYTES: usize = 32 * 1024;

impl Endpoint for AgentsEndpoint {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        Ok(self
            .serve(req)
            .await
            .unwrap_or_else(IntoResponse::into_response))
    }
}

impl AgentsEndpoint {
    /// Guard → route → identify the client → agent → limits → transport.
    async fn serve(&self, mut req: Request) -> Result<Response, Error> {
        let state = &self.state;
        if state.is_draining() {
            return Err(Error::ShuttingDown);
        }
        // Cluster mode: a request another replica forwarded carries the cluster's secret;
        // it names the client's address, and the Host it was sent to is ours by definition.
        let hop = state.cluster().is_some_and(|c| c.is_hop(req.headers()));
        if !hop {
            guard::check(&req, state.settings())?;
        }
        check_sizes(&req)?;
        let peer = req
            .remote_addr()
            .as_socket_addr()
            .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |a| a.ip());
        // Behind a trusted balancer, the client is the one its X-Forwarded-For names.
        let trusted = &state.settings().trusted_proxies;
        let mut ip = if trusted.is_empty() {
            peer
        } else {
            let forwarded = req
                .headers()
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok());
            crate::config::proxies::client_ip(peer, forwarded, trusted)
        };
        if hop {
            if let Some(client) = req
                .headers()
                .get(crate::cluster::forward::CLIENT_IP_HEADER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
            {
                ip = client;
            }
            req.headers_mut()
                .remove(crate::cluster::forward::HOP_HEADER);
            req.headers_mut()
                .remove(crate::cluster::forward::CLIENT_IP_HEADER);
        }
        req.extensions_mut().insert(ClientIp(ip));
        // The outermost middleware (app::routes) names every request; the fallback serves
        // this endpoint when it is mounted on its own.
        let request_id = match req.extensions().get::<RequestId>() {
            Some(id) => id.clone(),
            None => {
                let id = RequestId::of(&req);
                req.extensions_mut().insert(id.clone());
                id
            }
        };
        let (name, kind) = route(req.uri().path())?;
        let caller = state
            .clients()
            .identify(crate::auth::bearer(req.headers()), ip, &name)
            .map_err(|r| state.refused(r, None, &name))?;
        let refused = |r| state.refused(r, Some(&caller), &name);
        let endpoint = state
            .agent(&name)
            .ok_or_else(|| Error::UnknownAgent(name.clone()))?;
        // The token has done its job; it goes no further (not to rmcp, not into any log),
        // except to the replica holding a legacy session (cluster mode).
        let authorization = req.headers_mut().remove(poem::http::header::AUTHORIZATION);
        let method = req.method().clone();
        let session_header = req
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        match (kind.as_str(), &method) {
            ("sse", &Method::GET) if session_header.is_none() => {
                let slot = state.open_session(&caller).await.map_err(refused)?;
                let peer = peer_of_request(&req, &caller, ip);
                let id: Arc<str> = match state.cluster() {
                    Some(cluster) => cluster.new_legacy_session_id().into(),
                    None => uuid::Uuid::new_v4().simple().to_string().into(),
                };
                Ok(sse::open(
                    id,
                    endpoint.server.clone(),
                    &endpoint.name,
                    peer,
                    caller.key.clone(),
                    slot,
                    state.sessions(),
                    state.settings().sse_keep_alive,
                    state.cancel(),
                ))
            }
            ("mcp" | "sse", _) => {
                // Another client's session: as far as this caller knows, it does not exist.
                // Our own: not parked while this request is inside the transport.
                // Cluster mode: a session opened on another replica is taken in here, and a
                // session of ours keeps its shared record alive.
                let _busy = match &session_header {
                    Some(id) => match state
                        .sessions()
                        .enter(id, &caller.key)
                        .map_err(|_| Error::SessionNotFound(id.clone()))?
                    {
                        Some(busy) => {
                            state.renew_shared_session(id, busy.stats()).await;
                            Some(busy)
                        }
                        None => {
                            state
                                .adopt_shared_session(
                                    id,
                                    &endpoint.name,
                                    &caller.key,
                                    peer_of_request(&req, &caller, ip),
                                )
                                .await?
                        }
                    },
                    None => None,
                };
                if method != Method::POST {
                    return Ok(streamable::call(&endpoint.streamable, req).await);
                }
                state.check_request(&caller).await.map_err(refused)?;
                let body = read_body(&mut req, state.settings().max_body_bytes).await?;
                let peek = streamable::peek(&body)?;
                state.metrics().mcp_request(&name, peek.method.as_deref());
                if session_header.is_none()
                    && peek
                        .method
                        .as_deref()
                        .is_some_and(|m| m != "initialize" && !m.starts_with("notifications/"))
                {
                    // No session and no handshake: a 2026-07-28 request, served statelessly.
                    let client = caller.name().map_or("anonymous", |n| n.as_ref());
                    state.metrics().stateless_request(&name, client);
                }
                if endpoint.starts_run(peek.method.as_deref(), peek.tool.as_deref()) {
                    state.check_agent_run(&caller).await.map_err(refused)?;
                }
                let opens_session =
                    session_header.is_none() && peek.method.as_deref() == Some("initialize");
                if opens_session && state.cluster().is_some_and(|c| !c.is_healthy()) {
                    return Err(Error::ClusterUnavailable(
                        "a new session must be recorded for every replica".into(),
                    ));
                }
                let slot = if opens_session {
                    Some(state.open_session(&caller).await.map_err(refused)?)
                } else {
                    None
                };
                req.set_body(body);
                let response = streamable::call(&endpoint.streamable, req).await;
                if let Some(slot) = slot
                    && let Some(id) = response
                        .headers()
                        .get("mcp-session-id")
                        .and_then(|v| v.to_str().ok())
                {
                    state.sessions().bind(id, caller.key.clone(), slot);
                    state.share_session(id, &endpoint.name, &caller.key).await;
                }
                Ok(response)
            }
            ("messages", &Method::POST) => {
                // Cluster mode: the stream is on another replica; it answers for it.
                if let Some(cluster) = state.cluster()
                    && !hop
                    && let Some(id) = sse::session_id(&req)
                    && let Some(node) = crate::cluster::forward::legacy_owner(&id)
                    && node != cluster.node_id()
                {
                    let body = read_body(&mut req, state.settings().max_body_bytes).await?;
                    let path = req.uri().path_and_query().map_or("", |p| p.as_str());
                    state.metrics().cluster_event("post_forwarded");
                    return forward(
                        cluster,
                        node,
                        path,
                        authorization.as_ref(),
                        &request_id,
                        ip,
                        body,
                    )
                    .await
                    .map_err(|e| match e {
                        crate::cluster::forward::ForwardError::OwnerGone => {
                            Error::SessionNotFound(id.clone())
                        }
                        e => Error::ClusterUnavailable(e.to_string()),
                    });
                }
                state.check_request(&caller).await.map_err(refused)?;
                let body = read_body(&mut req, state.settings().max_body_bytes).await?;
                sse::post(&req, body, &endpoint, &caller, state, request_id).await
            }
            ("messages", _) => Err(Error::MethodNotAllowed {
                method: method.to_string(),
                allowed: "POST",
            }),
            _ => Err(Error::NoRoute(req.uri().path().to_owned())),
        }
    }
}

/// Forwards a legacy POST to replica `node` and relays its answer.
async fn forward(
    cluster: &crate::cluster::Cluster,
    node: &str,
    path: &str,
    authorization: Option<&poem::http::HeaderValue>,
    request_id: &RequestId,
    ip: std::net::IpAddr,
    body: bytes::Bytes,
) -> Result<Response, crate::cluster::forward::ForwardError> {
    let relayed = cluster
        .forward(node, path, authorization, &request_id.0, ip, body)
        .await?;
    let mut response = Response::builder().status(relayed.status);
    if let Some(content_type) = relayed.content_type {
        response = response.header(poem::http::header::CONTENT_TYPE, content_type);
    }
    Ok(response.body(relayed.body))
}

impl AgentEndpoint {
    /// Whether a request with this JSON-RPC `method` and tool name starts an LLM run.
    pub fn starts_run(&self, method: Option<&str>, tool: Option<&str>) -> bool {
        self.agent.spec.expose_agent
            && method == Some("tools/call")
            && tool == Some(self.name.as_ref())
    }
}

/// `/agents/<name>/<kind>` → `(name, kind)`.
fn route(path: &str) -> Result<(String, String), Error> {
    let mut segments = path.trim_start_matches('/').split('/');
    match (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) {
        (Some("agents"), Some(name), Some(kind), None) => Ok((name.to_owned(), kind.to_owned())),
        _ => Err(Error::NoRoute(path.to_owned())),
    }
}

fn check_sizes(req: &Request) -> Result<(), Error> {
    let uri_len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if uri_len > MAX_URI_BYTES {
        return Err(Error::UriTooLong(MAX_URI_BYTES));
    }
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        return Err(Error::HeadersTooLarge(MAX_HEADER_BYTES));
    }
    Ok(())
}

/// The whole body, or 413 past `limit`.
async fn read_body(req: &mut Request, limit: usize) -> Result<bytes::Bytes, Error> {
    match req.take_body().into_bytes_limit(limit).await {
        Ok(b) => Ok(b),
        Err(poem::error::ReadBodyError::PayloadTooLarge) => Err(Error::BodyTooLarge(limit)),
        Err(e) => Err(Error::BodyRead(e.to_string())),
    }
}
