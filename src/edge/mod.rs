//! The HTTP edge of every agent's MCP URLs (`/agents/<name>/...`): one request goes
//! through named stages, each once, in this order:
//!
//! 1. [`screen`]: shutting down? Host and Origin ([`guard`]), URL and header sizes; a
//!    hop from another replica (cluster mode) is recognised.
//! 2. [`client_address`]: who is at the other end (trusted proxies, a replica's hop).
//! 3. [`route`]: which agent, which URL kind.
//! 4. admit: who is calling ([`identify`]: a client's token ([`crate::clients`]), else, with
//!    `[auth.oauth]`, an access token ([`crate::oauth`])), then its limits
//!    ([`crate::ratelimit`]), before any session is looked up (in cluster mode a lookup may
//!    cost a Redis round trip).
//! 5. the transport: legacy SSE ([`crate::mcp::sse`]) or Streamable HTTP
//!    ([`crate::mcp::streamable`]),
//!    which hands each message to the agent's handler.

use std::net::IpAddr;
use std::sync::Arc;

use poem::http::{HeaderValue, Method};
use poem::{Endpoint, IntoResponse, Request, Response};

pub mod guard;
pub mod linger;
mod peek;

use crate::clients::{Caller, Refusal};
use crate::error::{Challenge, Error};
use crate::identity::Identity;
use crate::mcp::request::{CallerName, ClientIp, RequestId, identity};
use crate::mcp::served::ServedAgent;
use crate::mcp::{sse, streamable};
use crate::sessions::Busy;
use crate::sessions::Peer;
use crate::sessions::shared::AdoptError;
use crate::state::AppState;
use crate::telemetry::trace::{self, McpRequest, RequestSpan, TraceContext};

/// The poem endpoint for everything under `/agents`.
pub struct AgentRoutes {
    state: AppState,
}

impl AgentRoutes {
    /// Serves the agents of `state`.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

/// The longest URL accepted on MCP routes.
const MAX_URI_BYTES: usize = 8 * 1024;
/// The most header bytes accepted on MCP routes.
const MAX_HEADER_BYTES: usize = 32 * 1024;

impl Endpoint for AgentRoutes {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        Ok(self
            .serve(req)
            .await
            .unwrap_or_else(IntoResponse::into_response))
    }
}

/// The URL kinds under `/agents/<name>/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `/sse`: legacy SSE on GET, Streamable HTTP otherwise.
    Sse,
    /// `/mcp`: Streamable HTTP.
    Mcp,
    /// `/messages`: legacy POSTs.
    Messages,
}

impl AgentRoutes {
    /// Screen → client address → route → admit → transport.
    async fn serve(&self, mut req: Request) -> Result<Response, Error> {
        let state = &self.state;
        let hop = screen(&mut req, state)?;
        let ip = client_address(&mut req, state, hop);
        let request_id = request_id(&mut req);
        let (target, kind) =
            route(req.uri().path()).ok_or_else(|| no_route(state, req.uri().path()))?;
        let (name, root) = match target {
            Target::Agent(name) => (name, false),
            Target::Default => match state.agents().default_agent() {
                Some(agent) => (agent.name.to_string(), true),
                None => return Err(no_route(state, req.uri().path())),
            },
        };
        let caller = identify(state, req.headers(), ip, &name, kind, root).await?;
        let agent = state
            .agent(&name)
            .ok_or_else(|| Error::UnknownAgent(name.clone()))?;
        // Who the call is for, as it travels down (the token only for token exchange).
        let identity = identity(&caller, crate::auth::bearer(req.headers()));
        // The token has done its job; it goes no further (not to rmcp, not into any log),
        // except to the replica holding a legacy session (cluster mode).
        let authorization = req.headers_mut().remove(poem::http::header::AUTHORIZATION);
        let has_session = req.headers().contains_key("mcp-session-id");
        let call = Call {
            state,
            agent: &agent,
            caller: &caller,
            identity: &identity,
            ip,
            root,
        };
        // Each transport's future boxed: poem moves this one into a box of its own for every
        // request, and inline it would be as large as the largest of them.
        match (kind, req.method()) {
            (Kind::Sse, &Method::GET) if !has_session => Box::pin(call.open_legacy(&req)).await,
            (Kind::Mcp | Kind::Sse, _) => Box::pin(call.streamable(req)).await,
            (Kind::Messages, &Method::POST) => {
                Box::pin(call.legacy_post(req, hop, authorization.as_ref(), request_id)).await
            }
            (Kind::Messages, method) => Err(Error::MethodNotAllowed {
                method: method.to_string(),
                allowed: "POST",
            }),
        }
    }
}

/// One admitted request: the agent it is for, who sent it and from where.
struct Call<'a> {
    state: &'a AppState,
    agent: &'a Arc<ServedAgent>,
    caller: &'a Caller,
    /// Who the request's calls are for.
    identity: &'a Arc<Identity>,
    ip: IpAddr,
    /// Whether the request came to the default agent's root URLs (`/sse`, ...).
    root: bool,
}

impl Call<'_> {
    fn refused(&self, refusal: Refusal) -> Error {
        refused(self.state, refusal, Some(self.caller), &self.agent.name)
    }

    /// `GET /sse`: a new legacy session, within the caller's `max_sessions`.
    async fn open_legacy(&self, req: &Request) -> Result<Response, Error> {
        let state = self.state;
        let slot = state
            .limits()
            .open_session(self.caller)
            .await
            .map_err(|r| self.refused(r))?;
        let id: Arc<str> = match state.cluster() {
            Some(cluster) => cluster.new_legacy_session_id().into(),
            None => uuid::Uuid::new_v4().simple().to_string().into(),
        };
        // The client POSTs where the endpoint event says: next to the URL it used.
        let messages = if self.root {
            "/messages".to_owned()
        } else {
            format!("/agents/{}/messages", self.agent.name)
        };
        Ok(sse::open(
            id,
            self.agent.server.clone(),
            &self.agent.name,
            &messages,
            peer_of_request(req, self.caller, self.ip),
            self.caller.key.clone(),
            slot,
            state.sessions(),
            state.settings().sse_keep_alive,
            state.cancel(),
        ))
    }

    /// Streamable HTTP (`/mcp`, and `/sse` with anything but a plain GET).
    async fn streamable(&self, mut req: Request) -> Result<Response, Error> {
        let state = self.state;
        let session = req
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let is_post = req.method() == Method::POST;
        if is_post {
            state
                .limits()
                .check_request(self.caller)
                .await
                .map_err(|r| self.refused(r))?;
        }
        // A session unknown here and (cluster mode) to the cluster is 404 for every method:
        // rmcp would answer a DELETE of it 202.
        let _busy = match &session {
            Some(id) => Some(
                self.enter_session(id, &req)
                    .await?
                    .ok_or_else(|| Error::SessionNotFound(id.clone()))?,
            ),
            None => None,
        };
        if !is_post {
            return Ok(streamable::call(&self.agent.streamable, state.sessions(), req).await);
        }
        let body = read_body(&mut req, state.settings().max_body_bytes).await?;
        let peek = peek::peek(&body)?;
        if session.is_none()
            && peek
                .method
                .as_deref()
                .is_some_and(|m| m != "initialize" && !m.starts_with("notifications/"))
        {
            // No session and no handshake: a 2026-07-28 request, served statelessly.
            let client = self.caller.name().map_or("anonymous", |n| n.as_ref());
            state.metrics().stateless_request(&self.agent.name, client);
        }
        self.admit_message(peek.method.as_deref(), peek.tool.as_deref())
            .await?;
        let opens_session = session.is_none() && peek.method.as_deref() == Some("initialize");
        if opens_session && state.cluster().is_some_and(|c| !c.is_healthy()) {
            return Err(Error::ClusterUnavailable(
                "a new session must be recorded for every replica".into(),
            ));
        }
        let slot = if opens_session {
            Some(
                state
                    .limits()
                    .open_session(self.caller)
                    .await
                    .map_err(|r| self.refused(r))?,
            )
        } else {
            None
        };
        req.set_body(body);
        req.extensions_mut()
            .insert(CallerName(self.caller.name().cloned()));
        // `[[policies]]` decide per request, by who sent it.
        req.extensions_mut().insert(self.identity.clone());
        // `[telemetry]`: the request's span, a child of the caller's trace (`_meta`'s, else
        // the headers'); the handler's work hangs under it.
        let span = match (trace::on(), peek.method.as_deref()) {
            (true, Some(method)) => {
                let parent = peek
                    .trace
                    .or_else(|| TraceContext::from_headers(req.headers()));
                let span = McpRequest {
                    method,
                    tool: peek.tool.as_deref(),
                    agent: &self.agent.name,
                    session: session.as_deref(),
                    transport: "streamable_http",
                    parent: parent.as_ref(),
                }
                .start();
                if let Some(span) = &span {
                    req.extensions_mut().insert(span.clone());
                }
                span
            }
            _ => None,
        };
        let mut response = streamable::call(&self.agent.streamable, state.sessions(), req).await;
        if let Some(span) = span {
            trace_response(&mut response, &span);
        }
        if let Some(slot) = slot
            && let Some(id) = response
                .headers()
                .get("mcp-session-id")
                .and_then(|v| v.to_str().ok())
        {
            let sessions = state.sessions();
            sessions.bind(id, self.caller.key.clone(), slot);
            sessions.share(id, &self.agent.name, &self.caller.key).await;
        }
        Ok(response)
    }

    /// A request of Streamable HTTP session `id`: another client's session does not exist as
    /// far as this caller knows; our own is not parked while the request is inside the
    /// transport. Cluster mode: a session opened on another replica is taken in here, and a
    /// session of ours keeps its shared record alive.
    async fn enter_session(&self, id: &str, req: &Request) -> Result<Option<Busy>, Error> {
        let sessions = self.state.sessions();
        match sessions
            .enter(id, &self.caller.key)
            .map_err(|_| Error::SessionNotFound(id.to_owned()))?
        {
            Some(busy) => {
                sessions.renew(id, busy.stats()).await;
                Ok(Some(busy))
            }
            None => sessions
                .adopt(
                    id,
                    &self.agent.name,
                    &self.caller.key,
                    peer_of_request(req, self.caller, self.ip),
                    self.agent.streamable_engine.clone(),
                )
                .await
                .map_err(|e| match e {
                    AdoptError::NotYours(id) => Error::SessionNotFound(id),
                    e @ AdoptError::Unavailable { .. } => Error::ClusterUnavailable(e.to_string()),
                }),
        }
    }

    /// A legacy POST: forwarded to the replica holding its stream (cluster mode), or
    /// handed to the session's engine here.
    async fn legacy_post(
        &self,
        mut req: Request,
        hop: bool,
        authorization: Option<&HeaderValue>,
        request_id: RequestId,
    ) -> Result<Response, Error> {
        let state = self.state;
        let max_body = state.settings().max_body_bytes;
        // Cluster mode: the stream is on another replica; it answers for it (and counts the
        // request against the caller's limits).
        if let Some(cluster) = state.cluster()
            && !hop
            && let Some(id) = sse::session_id(&req)
            && let Some(node) = crate::cluster::forward::legacy_owner(&id)
            && node != cluster.node_id()
        {
            let body = read_body(&mut req, max_body).await?;
            let path = req.uri().path_and_query().map_or("", |p| p.as_str());
            state.metrics().cluster_event("post_forwarded");
            return forward(
                cluster,
                node,
                path,
                authorization,
                &request_id,
                self.ip,
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
        let body = read_body(&mut req, max_body).await?;
        let sessions = state.sessions();
        let (id, session) = sse::session_of(&req, &self.agent.name, &self.caller.key, sessions)?;
        let message = crate::mcp::message::parse(&body)?;
        let (method, tool) = sse::method_and_tool(&message);
        let admitted = match state.limits().check_request(self.caller).await {
            Ok(()) => self.admit_message(method, tool).await,
            Err(r) => Err(self.refused(r)),
        };
        if let Err(e) = admitted {
            // Over a limit: the POST answers 429, and the request's answer, which a legacy
            // client waits for on the stream, is the same JSON-RPC error.
            if let Some(error) = e.rate_limit_error() {
                session.answer_refused(&message, &error);
            }
            return Err(e);
        }
        let span = match (trace::on(), &message) {
            (true, rmcp::model::ClientJsonRpcMessage::Request(r)) => {
                use rmcp::model::GetMeta;
                let meta = r.request.get_meta();
                let parent = TraceContext::from_meta(meta)
                    .or_else(|| TraceContext::from_headers(req.headers()));
                McpRequest {
                    method: method.unwrap_or_default(),
                    tool,
                    agent: &self.agent.name,
                    session: Some(&id),
                    transport: "sse",
                    parent: parent.as_ref(),
                }
                .start()
            }
            _ => None,
        };
        let mut response = sse::post(
            &session,
            &id,
            message,
            self.identity.clone(),
            sessions,
            request_id,
            span.as_ref(),
        )
        .await?;
        if let Some(span) = &span {
            trace_response(&mut response, span);
        }
        Ok(response)
    }

    /// Counts a JSON-RPC message and, when it starts an agent run, checks the caller's
    /// `agent_runs_per_minute`.
    async fn admit_message(&self, method: Option<&str>, tool: Option<&str>) -> Result<(), Error> {
        let state = self.state;
        self.agent.agent.series().mcp_request(method);
        if self.agent.starts_run(method, tool) {
            state
                .limits()
                .check_agent_run(self.caller)
                .await
                .map_err(|r| self.refused(r))?;
        }
        Ok(())
    }
}

/// Tells the client the trace of its request: W3C `traceresponse`
/// (`00-<trace id>-<span id>-<flags>`).
fn trace_response(response: &mut Response, span: &RequestSpan) {
    if let Some(value) = span
        .traceresponse()
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        response.headers_mut().insert("traceresponse", value);
    }
}

/// Stage 4, who: a configured client's token is that client; otherwise, with `[auth.oauth]`,
/// the bearer is an access token for this agent's URL and its principal is the caller (with
/// the scopes the agent needs); with neither, [`crate::clients::Clients::identify`] decides
/// (open access, or 401).
async fn identify(
    state: &AppState,
    headers: &poem::http::HeaderMap,
    ip: IpAddr,
    agent: &str,
    kind: Kind,
    root: bool,
) -> Result<Caller, Error> {
    let token = crate::auth::bearer(headers);
    let Some(oauth) = state.oauth() else {
        return state
            .clients()
            .identify(token, ip, agent)
            .map_err(|r| refused(state, r, None, agent));
    };
    let prefix = if root {
        String::new()
    } else {
        format!("/agents/{agent}")
    };
    let transport = match kind {
        Kind::Mcp => "mcp",
        Kind::Sse | Kind::Messages => "sse",
    };
    let path = format!("{prefix}/{transport}");
    let needed = oauth.spec().scopes_for(agent);
    let challenge = || {
        Box::new(Challenge {
            resource_metadata: oauth.metadata_url(&path),
            scope: (!needed.is_empty()).then(|| needed.join(" ")),
        })
    };
    let Some(token) = token else {
        return Err(Error::InvalidToken {
            message: format!(
                "missing bearer token: get an access token from the authorization server named at {} and send Authorization: Bearer <token>",
                oauth.metadata_url(&path)
            ),
            sent: false,
            challenge: challenge(),
        });
    };
    if let Some(client) = state.clients().client_of(token) {
        return state
            .clients()
            .named_caller(client, agent)
            .map_err(|r| refused(state, r, None, agent));
    }
    // The token may be for the gateway (the audience) or for this agent's URL, on either
    // transport (one agent, one resource).
    let resources = [
        oauth.resource(""),
        oauth.resource(&format!("{prefix}/mcp")),
        oauth.resource(&format!("{prefix}/sse")),
    ];
    let principal = oauth.verify(token, &resources).await.map_err(|e| match e {
        crate::oauth::TokenError::Invalid(message) => Error::InvalidToken {
            message,
            sent: true,
            challenge: challenge(),
        },
        crate::oauth::TokenError::Unavailable(m) => Error::AuthServerUnavailable(m),
        crate::oauth::TokenError::Busy(wait) => {
            state.metrics().introspection_rate_limited();
            // Whole seconds, at least one (Retry-After has no fractions).
            Error::IntrospectionBusy((wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1))
        }
    })?;
    let missing = oauth.missing_scopes(&principal, agent);
    if !missing.is_empty() {
        return Err(Error::InsufficientScope {
            agent: agent.to_owned(),
            missing: missing.join(" "),
            challenge: challenge(),
        });
    }
    Ok(state.clients().principal_caller(principal))
}

/// Who sent a request: its client, its address (`ip`, as the edge resolved it) and user agent.
fn peer_of_request(req: &Request, caller: &Caller, ip: IpAddr) -> Peer {
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

/// The error for a refusal of the client layer, counting 429s in the metrics.
fn refused(state: &AppState, refusal: Refusal, caller: Option<&Caller>, agent: &str) -> Error {
    if let Refusal::RateLimited { limit, .. } = &refusal {
        let who = caller.and_then(|c| c.name()).map(|n| n.as_ref());
        state
            .metrics()
            .rate_limited(who.unwrap_or("anonymous"), limit);
    }
    Error::from_refusal(refusal, caller, agent)
}

/// Stage 1: what is refused before anything else. Returns whether the request is a hop from
/// another replica (cluster mode: it carries the cluster's secret; it names the client's
/// address, and the Host it was sent to is ours by definition).
fn screen(req: &mut Request, state: &AppState) -> Result<bool, Error> {
    if state.is_draining() {
        return Err(Error::ShuttingDown);
    }
    let hop = state.cluster().is_some_and(|c| c.is_hop(req.headers()));
    if !hop {
        guard::check(req, state.settings())?;
    }
    check_sizes(req)?;
    Ok(hop)
}

/// Stage 2: the client's address, put into the request for the transports. Behind a
/// trusted balancer it is the one X-Forwarded-For names; on a hop, the one the replica
/// that forwarded it says.
fn client_address(req: &mut Request, state: &AppState, hop: bool) -> IpAddr {
    let peer = req
        .remote_addr()
        .as_socket_addr()
        .map_or(IpAddr::from([0, 0, 0, 0]), |a| a.ip());
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
    ip
}

/// The request's id: the outermost middleware (`app::routes`) names every request; this
/// names one when the endpoint is mounted on its own.
fn request_id(req: &mut Request) -> RequestId {
    match req.extensions().get::<RequestId>() {
        Some(id) => id.clone(),
        None => {
            let id = RequestId::of(req);
            req.extensions_mut().insert(id.clone());
            id
        }
    }
}

/// Which agent a path is for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// `/agents/<name>/...`.
    Agent(String),
    /// `/sse`, `/messages`, `/mcp`: the default agent's (`[server] default_agent`).
    Default,
}

/// Stage 3: `/agents/<name>/<kind>` → `(name, kind)`, and `/<kind>` → the default agent's.
fn route(path: &str) -> Option<(Target, Kind)> {
    let kind = |k: &str| match k {
        "sse" => Some(Kind::Sse),
        "mcp" => Some(Kind::Mcp),
        "messages" => Some(Kind::Messages),
        _ => None,
    };
    let mut segments = path.trim_start_matches('/').split('/');
    match (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) {
        (Some("agents"), Some(name), Some(k), None) => {
            Some((Target::Agent(name.to_owned()), kind(k)?))
        }
        (Some(k), None, _, _) => Some((Target::Default, kind(k)?)),
        _ => None,
    }
}

/// The 404 of a path that names nothing: says why for the default agent's URLs, and lists
/// every agent's URLs.
pub fn no_route(state: &AppState, path: &str) -> Error {
    let agents = state.agents().all();
    let mut message = path.to_owned();
    if matches!(route(path), Some((Target::Default, _))) {
        match state.settings().default_agent.name() {
            None => message
                .push_str(": no default agent is served here ([server] default_agent = \"\")"),
            Some(name) => message.push_str(&format!(
                ": the default agent {name:?} is not loaded ([server] default_agent)"
            )),
        }
    }
    if agents.is_empty() {
        message.push_str("; no agents are loaded: add agents/<name>.toml");
    } else {
        let urls: Vec<String> = agents
            .iter()
            .map(|a| {
                format!(
                    "{0}: /agents/{0}/sse (legacy SSE), /agents/{0}/mcp (Streamable HTTP)",
                    a.name
                )
            })
            .collect();
        message.push_str("; the agents' URLs are ");
        message.push_str(&urls.join("; "));
        if let Some(agent) = state.agents().default_agent() {
            message.push_str(&format!(
                "; and the default agent {:?} at /sse and /mcp",
                &*agent.name
            ));
        }
    }
    Error::NoRoute(message)
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

/// The whole body, or 413 past `limit`: at once when its `Content-Length` says so. The
/// unread rest is read and thrown away after the answer ([`linger`]).
async fn read_body(req: &mut Request, limit: usize) -> Result<bytes::Bytes, Error> {
    let announced = req
        .headers()
        .get(poem::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit as u64) {
        return Err(Error::BodyTooLarge(limit));
    }
    // hyper's frames collected as they come (one frame, as a small body is, is kept without
    // a copy); poem's `into_bytes_limit` reads through a zeroed 4 KiB buffer and copies.
    use http_body_util::BodyExt as _;
    let body: http_body_util::combinators::BoxBody<bytes::Bytes, std::io::Error> =
        req.take_body().into();
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(Error::BodyTooLarge(limit)),
        Err(e) => Err(Error::BodyRead(e.to_string())),
    }
}

/// Forwards a legacy POST to replica `node` and relays its answer.
async fn forward(
    cluster: &crate::cluster::Cluster,
    node: &str,
    path: &str,
    authorization: Option<&HeaderValue>,
    request_id: &RequestId,
    ip: IpAddr,
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
