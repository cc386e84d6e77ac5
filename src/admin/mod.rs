//! The admin REST API (poem-openapi): agents, live sessions, ending sessions, health.
//!
//! Every `/admin` operation goes through [`AdminAuth`]: with an admin token configured it
//! needs `Authorization: Bearer <token>` (401 otherwise); without one it answers loopback
//! peers only (403 for others). `/healthz` and `/readyz` are open. Errors have one shape,
//! [`dto::ErrorBody`], and every status an operation can answer is in the spec.

pub mod dto;
pub mod spec;

use std::time::{SystemTime, UNIX_EPOCH};

use poem::Request;
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::registry::{MetaSecurityScheme, Registry};
use poem_openapi::{
    ApiExtractor, ApiExtractorType, ApiResponse, ExtractParamOptions, OpenApi, Tags,
};

use crate::mcp::served::ServedAgent;
use crate::sessions::{SessionInfo, Transport};
use crate::state::AppState;
use dto::{
    AgentTraffic, AgentUrls, AgentView, CallView, ClientView, ClientsView, ClusterView, ErrorBody,
    Health, LimitsView, LoadErrorView, ModelView, NodeView, PeerView, ReloadView, Scope,
    SessionCounts, SessionPage, SessionView, ToolView, TrafficPoint, TrafficView, TransportName,
    UsageView,
};

#[derive(Tags)]
enum ApiTags {
    /// Agents being served.
    Agents,
    /// Clients (token owners), their limits and usage.
    Clients,
    /// Live MCP sessions.
    Sessions,
    /// Recent traffic.
    Traffic,
    /// Liveness and readiness probes.
    Health,
    /// Cluster mode: the replicas.
    Cluster,
}

/// Admin access, checked per request: the bearer token when one is configured, else a
/// loopback peer.
pub struct AdminAuth;

const SCHEME: &str = "AdminToken";

/// Why [`AdminAuth`] refused a request; turned into the operation's documented 401 or 403
/// by [`handle_error`].
#[derive(Debug, thiserror::Error)]
enum AuthError {
    #[error("missing admin token: send Authorization: Bearer <token>")]
    Missing,
    #[error("the admin token is wrong")]
    Wrong,
    #[error(
        "no admin token is configured, so the admin API answers local requests only; set [admin] token or SWITCHBOARD_ADMIN_TOKEN"
    )]
    NotLocal,
    #[error("internal error")]
    NoState,
}

impl poem::error::ResponseError for AuthError {
    fn status(&self) -> poem::http::StatusCode {
        match self {
            AuthError::Missing | AuthError::Wrong => poem::http::StatusCode::UNAUTHORIZED,
            AuthError::NotLocal => poem::http::StatusCode::FORBIDDEN,
            AuthError::NoState => poem::http::StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

fn auth_error(e: AuthError) -> poem::Error {
    poem::Error::from(e)
}

/// Every admin response enum has the same error variants; [`handle_error`] fills them.
trait AdminErrors: Sized {
    fn bad_request(body: ErrorBody) -> Self;
    fn unauthorized(body: ErrorBody) -> Self;
    fn forbidden(body: ErrorBody) -> Self;
}

/// The `bad_request_handler` of every admin operation: an auth refusal becomes the
/// documented 401/403, anything else a 400 saying what was malformed.
fn handle_error<R: AdminErrors>(err: poem::Error) -> R {
    match err.downcast_ref::<AuthError>() {
        Some(e @ (AuthError::Missing | AuthError::Wrong)) => {
            R::unauthorized(ErrorBody::new("unauthorized", e.to_string()))
        }
        Some(e @ AuthError::NotLocal) => R::forbidden(ErrorBody::new("forbidden", e.to_string())),
        Some(AuthError::NoState) | None => {
            R::bad_request(ErrorBody::new("bad_request", err.to_string()))
        }
    }
}

impl AdminAuth {
    fn check(req: &Request) -> poem::Result<Self> {
        let Some(state) = req.data::<AppState>() else {
            return Err(auth_error(AuthError::NoState));
        };
        // Cluster mode: another replica asking for this one's part of a cluster-wide view.
        if state.cluster().is_some_and(|c| c.is_hop(req.headers())) {
            return Ok(Self);
        }
        match &state.settings().admin_token {
            Some(expected) => match crate::auth::bearer(req.headers()) {
                Some(token) if crate::auth::token_matches(token, expected) => Ok(Self),
                Some(_) => Err(auth_error(AuthError::Wrong)),
                None => Err(auth_error(AuthError::Missing)),
            },
            None if crate::auth::from_loopback(req) => Ok(Self),
            None => Err(auth_error(AuthError::NotLocal)),
        }
    }
}

impl<'a> ApiExtractor<'a> for AdminAuth {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        registry.create_security_scheme(
            SCHEME,
            MetaSecurityScheme {
                ty: "http",
                description: Some(
                    "The admin token (`[admin] token` or `SWITCHBOARD_ADMIN_TOKEN`). Without a configured token, the admin API answers loopback peers only and needs no header.",
                ),
                name: None,
                key_in: None,
                scheme: Some("bearer"),
                bearer_format: None,
                flows: None,
                openid_connect_url: None,
            },
        );
    }

    fn security_schemes() -> Vec<&'static str> {
        vec![SCHEME]
    }

    async fn from_request(
        req: &'a Request,
        _body: &mut poem::RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        Self::check(req)
    }
}

/// An admin response enum: the operation's own answers, then the error answers every admin
/// operation shares (400, 401, 403), with `Self::from_error` as the handler that turns
/// extractor errors into them.
macro_rules! admin_response {
    ($(#[$meta:meta])* pub enum $name:ident { $($body:tt)* }) => {
        $(#[$meta])*
        #[derive(ApiResponse)]
        #[oai(bad_request_handler = "Self::from_error")]
        pub enum $name {
            $($body)*
            /// A parameter is malformed.
            #[oai(status = 400)]
            BadRequest(Json<ErrorBody>),
            /// The admin token is missing or wrong.
            #[oai(status = 401)]
            Unauthorized(
                Json<ErrorBody>,
                /// `Bearer`.
                #[oai(header = "WWW-Authenticate")]
                String,
            ),
            /// Not a loopback peer, and no admin token is configured.
            #[oai(status = 403)]
            Forbidden(Json<ErrorBody>),
        }

        impl AdminErrors for $name {
            fn bad_request(body: ErrorBody) -> Self {
                Self::BadRequest(Json(body))
            }
            fn unauthorized(body: ErrorBody) -> Self {
                Self::Unauthorized(Json(body), "Bearer".to_owned())
            }
            fn forbidden(body: ErrorBody) -> Self {
                Self::Forbidden(Json(body))
            }
        }

        impl $name {
            fn from_error(err: poem::Error) -> Self {
                handle_error(err)
            }
        }
    };
}

admin_response! {
/// `GET /admin/agents`.
pub enum ListAgentsResponse {
    /// Every agent, by name.
    #[oai(status = 200)]
    Ok(Json<Vec<AgentView>>),
}
}

admin_response! {
/// `POST /admin/reload`.
pub enum ReloadResponse {
    /// What the reload did (problems included: a broken file keeps its previous version).
    #[oai(status = 200)]
    Ok(Json<ReloadView>),
}
}

admin_response! {
/// `GET /admin/clients`.
pub enum ListClientsResponse {
    /// The clients with their limits and usage.
    #[oai(status = 200)]
    Ok(Json<ClientsView>),
}
}

admin_response! {
/// `GET /admin/load-errors`.
pub enum LoadErrorsResponse {
    /// Every file of the agents directory that had problems at the last reload.
    #[oai(status = 200)]
    Ok(Json<Vec<LoadErrorView>>),
}
}

admin_response! {
/// `GET /admin/traffic`.
pub enum TrafficResponse {
    /// The last 15 minutes of every agent.
    #[oai(status = 200)]
    Ok(Json<TrafficView>),
}
}

admin_response! {
/// `GET /admin/agents/{name}`.
pub enum GetAgentResponse {
    /// The agent.
    #[oai(status = 200)]
    Ok(Json<AgentView>),
    /// No agent has this name.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
}
}

admin_response! {
/// `GET /admin/sessions`.
pub enum ListSessionsResponse {
    /// One page of live sessions.
    #[oai(status = 200)]
    Ok(Json<SessionPage>),
}
}

admin_response! {
/// `GET /admin/sessions/{id}`.
#[allow(clippy::large_enum_variant)] // built once per request and returned at once
pub enum GetSessionResponse {
    /// The session.
    #[oai(status = 200)]
    Ok(Json<SessionView>),
    /// No live session has this id.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
}
}

admin_response! {
/// `DELETE /admin/sessions/{id}`.
pub enum EndSessionResponse {
    /// The session was ended: its stream closed, its running calls were cancelled, and its
    /// id now gets 404.
    #[oai(status = 204)]
    Ended,
    /// No live session has this id.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// Cluster mode: the session is not on this replica, and Redis does not answer.
    #[oai(status = 503)]
    Unavailable(
        Json<ErrorBody>,
        /// Seconds to wait before asking again.
        #[oai(header = "Retry-After")]
        u64,
    ),
}
}

admin_response! {
/// `GET /admin/cluster`.
pub enum ClusterResponse {
    /// This replica and the live replicas.
    #[oai(status = 200)]
    Ok(Json<ClusterView>),
    /// Cluster mode is off (no `[cluster]` in `switchboard.toml`).
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// Redis, which holds the cluster's membership, does not answer.
    #[oai(status = 503)]
    Unavailable(
        Json<ErrorBody>,
        /// Seconds to wait before asking again.
        #[oai(header = "Retry-After")]
        u64,
    ),
}
}

/// `GET /healthz`, `GET /readyz`.
#[derive(ApiResponse)]
pub enum HealthResponse {
    /// Alive / ready.
    #[oai(status = 200)]
    Ok(Json<Health>),
    /// Shutting down: stop sending traffic here.
    #[oai(status = 503)]
    Unavailable(Json<Health>),
}

/// The admin operations.
pub struct AdminApi;

/// Largest page of `GET /admin/sessions`.
const MAX_LIMIT: u32 = 1000;

// `list_sessions` takes one argument per documented query parameter.
#[allow(clippy::too_many_arguments)]
#[OpenApi(prefix_path = "/admin")]
impl AdminApi {
    /// List agents
    ///
    /// Every agent with its tools, MCP URLs and live session counts.
    #[oai(
        path = "/agents",
        method = "get",
        operation_id = "listAgents",
        tag = "ApiTags::Agents"
    )]
    async fn list_agents(&self, _auth: AdminAuth, state: Data<&AppState>) -> ListAgentsResponse {
        let views = state
            .agents()
            .all()
            .iter()
            .map(|e| agent_view(&state, e))
            .collect();
        ListAgentsResponse::Ok(Json(views))
    }

    /// Reload agents
    ///
    /// Re-reads the agents directory now (it is also watched, and reloaded on SIGHUP).
    #[oai(
        path = "/reload",
        method = "post",
        operation_id = "reload",
        tag = "ApiTags::Agents"
    )]
    async fn reload(&self, _auth: AdminAuth, state: Data<&AppState>) -> ReloadResponse {
        let r = state.reload().await;
        ReloadResponse::Ok(Json(ReloadView {
            added: r.added,
            changed: r.changed,
            removed: r.removed,
            unchanged: r.unchanged,
            errors: r.errors,
        }))
    }

    /// List clients
    ///
    /// Every client with the agents it may use, its limits and its usage (sessions,
    /// requests, agent runs, requests refused with 429). Tokens are never shown.
    #[oai(
        path = "/clients",
        method = "get",
        operation_id = "listClients",
        tag = "ApiTags::Clients"
    )]
    async fn list_clients(&self, _auth: AdminAuth, state: Data<&AppState>) -> ListClientsResponse {
        let clients = state.clients();
        let now = SystemTime::now();
        let views = clients
            .named()
            .iter()
            .map(|c| ClientView {
                name: c.name.to_string(),
                agents: match &c.agents {
                    crate::config::clients::AgentAccess::All => vec!["*".to_owned()],
                    crate::config::clients::AgentAccess::Only(names) => names.clone(),
                },
                limits: limits_view(&c.limits),
                usage: usage_view(&c.usage, now),
            })
            .collect();
        let peers = clients
            .peers()
            .into_iter()
            .map(|(ip, usage)| PeerView {
                ip: ip.to_string(),
                usage: usage_view(&usage, now),
            })
            .collect();
        ListClientsResponse::Ok(Json(ClientsView {
            open: clients.is_open(),
            default_limits: limits_view(&clients.defaults()),
            clients: views,
            peers,
        }))
    }

    /// Cluster replicas
    ///
    /// Cluster mode only: this replica's node id and every live replica (registered in
    /// Redis, heartbeat within the node TTL), with its address and live session count.
    #[oai(
        path = "/cluster",
        method = "get",
        operation_id = "getCluster",
        tag = "ApiTags::Cluster"
    )]
    async fn cluster(&self, _auth: AdminAuth, state: Data<&AppState>) -> ClusterResponse {
        let Some(cluster) = state.cluster() else {
            return ClusterResponse::NotFound(Json(ErrorBody::new(
                "cluster_mode_off",
                "cluster mode is off: this gateway runs alone (add [cluster] with redis_url to switchboard.toml to run replicas)",
            )));
        };
        let nodes = match cluster.nodes().await {
            Ok(nodes) => nodes,
            Err(e) => {
                return ClusterResponse::Unavailable(
                    Json(ErrorBody::new(
                        "redis_unreachable",
                        format!(
                            "the cluster's Redis ({}) does not answer: {e}",
                            cluster.redis_url()
                        ),
                    )),
                    cluster.heartbeat().as_secs().max(1),
                );
            }
        };
        let me = cluster.record();
        let at = |ms: u64| rfc3339(UNIX_EPOCH + std::time::Duration::from_millis(ms));
        ClusterResponse::Ok(Json(ClusterView {
            node: me.id.clone(),
            redis: cluster.redis_url(),
            heartbeat_ms: cluster.heartbeat().as_millis() as u64,
            node_ttl_ms: cluster.node_ttl().as_millis() as u64,
            nodes: nodes
                .into_iter()
                .map(|n| NodeView {
                    this: n.id == me.id && n.instance == me.instance,
                    started_at: at(n.started_at_ms),
                    last_heartbeat_at: at(n.heartbeat_at_ms),
                    id: n.id,
                    url: n.url,
                    version: n.version,
                    sessions: n.sessions,
                })
                .collect(),
        }))
    }

    /// Agent files that did not load
    ///
    /// Every file of the agents directory with problems at the last reload, each problem as
    /// `file: key: message`: a broken new file (no agent yet), or a broken change to an
    /// agent whose previous version keeps serving.
    #[oai(
        path = "/load-errors",
        method = "get",
        operation_id = "listLoadErrors",
        tag = "ApiTags::Agents"
    )]
    async fn load_errors(&self, _auth: AdminAuth, state: Data<&AppState>) -> LoadErrorsResponse {
        let agents = state.agents();
        let views = state
            .agents()
            .all_load_errors()
            .into_iter()
            .map(|(file, errors)| LoadErrorView {
                serving_previous_version: agents.all().iter().any(|e| e.agent.spec.file == file),
                file: file.display().to_string(),
                errors,
            })
            .collect();
        LoadErrorsResponse::Ok(Json(views))
    }

    /// Recent traffic
    ///
    /// The last 15 minutes of every agent in 10-second buckets: tool calls, errors,
    /// latency percentiles, LLM requests and tokens. Kept in memory; starts empty.
    #[oai(
        path = "/traffic",
        method = "get",
        operation_id = "getTraffic",
        tag = "ApiTags::Traffic"
    )]
    async fn traffic(&self, _auth: AdminAuth, state: Data<&AppState>) -> TrafficResponse {
        let now = SystemTime::now();
        let traffic = state.metrics().traffic();
        let series: Vec<_> = state
            .agents()
            .all()
            .iter()
            .map(|e| traffic.series(&e.name, now))
            .collect();
        let start_unix = crate::traffic::window_start(now);
        let agents = series
            .iter()
            .map(|s| AgentTraffic {
                agent: s.agent.to_string(),
                last_minute: traffic_point(&s.last(6)),
                points: s.buckets.iter().map(traffic_point).collect(),
            })
            .collect();
        TrafficResponse::Ok(Json(TrafficView {
            bucket_secs: crate::traffic::BUCKET_SECS,
            start: rfc3339(UNIX_EPOCH + std::time::Duration::from_secs(start_unix)),
            start_unix,
            agents,
        }))
    }

    /// Get an agent
    #[oai(
        path = "/agents/:name",
        method = "get",
        operation_id = "getAgent",
        tag = "ApiTags::Agents"
    )]
    async fn get_agent(
        &self,
        _auth: AdminAuth,
        state: Data<&AppState>,
        /// The agent's name.
        name: Path<String>,
    ) -> GetAgentResponse {
        match state.agent(&name) {
            Some(e) => GetAgentResponse::Ok(Json(agent_view(&state, &e))),
            None => GetAgentResponse::NotFound(Json(ErrorBody::new(
                "unknown_agent",
                format!("unknown agent {:?}", name.0),
            ))),
        }
    }

    /// List live sessions
    ///
    /// Live sessions of both transports, oldest first, filtered and paged.
    #[oai(
        path = "/sessions",
        method = "get",
        operation_id = "listSessions",
        tag = "ApiTags::Sessions"
    )]
    async fn list_sessions(
        &self,
        _auth: AdminAuth,
        state: Data<&AppState>,
        /// Only sessions of this agent.
        agent: Query<Option<String>>,
        /// Only sessions of this client.
        client: Query<Option<String>>,
        /// Only sessions of this transport.
        transport: Query<Option<TransportName>>,
        /// Sessions to skip (0 to 1000000000).
        #[oai(
            default,
            validator(minimum(value = "0"), maximum(value = "1000000000"))
        )]
        offset: Query<u64>,
        /// Page size (1 to 1000, default 100).
        #[oai(
            default = "default_limit",
            validator(minimum(value = "1"), maximum(value = "1000"))
        )]
        limit: Query<u32>,
        /// Cluster mode: every live replica's sessions (`cluster`, the default) or this
        /// replica's only (`local`).
        scope: Query<Option<Scope>>,
    ) -> ListSessionsResponse {
        let now = SystemTime::now();
        let node = state.cluster().map(crate::cluster::Cluster::node_id);
        let mut matching: Vec<SessionView> = state
            .sessions()
            .list()
            .into_iter()
            .filter(|s| agent.0.as_deref().is_none_or(|a| &*s.agent == a))
            .filter(|s| {
                client
                    .0
                    .as_deref()
                    .is_none_or(|c| s.peer.client.as_deref() == Some(c))
            })
            .filter(|s| transport.0.is_none_or(|t| transport_name(s.transport) == t))
            .map(|s| SessionView {
                node: node.clone(),
                ..session_view(&s, now)
            })
            .collect();
        let mut unreachable_nodes = None;
        if let Some(cluster) = state.cluster()
            && scope.0 != Some(Scope::Local)
        {
            let mut query = String::from("/admin/sessions?scope=local&limit=1000");
            for (key, value) in [
                ("agent", agent.0.clone()),
                ("client", client.0.clone()),
                (
                    "transport",
                    transport.0.map(|t| match t {
                        TransportName::Sse => "sse".to_owned(),
                        TransportName::StreamableHttp => "streamable_http".to_owned(),
                    }),
                ),
            ] {
                if let Some(value) = value {
                    query.push_str(&format!("&{key}={}", crate::net::percent_encode(&value)));
                }
            }
            let (views, missing) = cluster_sessions(cluster, &query).await;
            matching.extend(views);
            matching = merge_copies(matching);
            unreachable_nodes = Some(missing);
        }
        let total = matching.len() as u64;
        let limit = limit.0.min(MAX_LIMIT);
        let sessions = matching
            .into_iter()
            .skip(usize::try_from(offset.0).unwrap_or(usize::MAX))
            .take(limit as usize)
            .collect();
        ListSessionsResponse::Ok(Json(SessionPage {
            total,
            offset: offset.0,
            limit: u64::from(limit),
            sessions,
            unreachable_nodes,
        }))
    }

    /// Get a session
    #[oai(
        path = "/sessions/:id",
        method = "get",
        operation_id = "getSession",
        tag = "ApiTags::Sessions"
    )]
    async fn get_session(
        &self,
        _auth: AdminAuth,
        state: Data<&AppState>,
        /// The session id.
        id: Path<String>,
        /// Cluster mode: look on every live replica (`cluster`, the default) or on this one
        /// only (`local`).
        scope: Query<Option<Scope>>,
    ) -> GetSessionResponse {
        match state.sessions().get(&id) {
            None if state.cluster().is_some() && scope.0 != Some(Scope::Local) => {
                let cluster = state.cluster().cloned();
                let path = format!(
                    "/admin/sessions/{}?scope=local",
                    crate::net::percent_encode(&id)
                );
                let found = match &cluster {
                    Some(c) => c.get_from_others(&path).await.unwrap_or_default(),
                    None => Vec::new(),
                };
                let copies: Vec<SessionView> = found
                    .into_iter()
                    .filter_map(|(_, answer)| match answer {
                        Ok((200, body)) => parse_view(body),
                        _ => None,
                    })
                    .collect();
                match merge_copies(copies).into_iter().next() {
                    Some(view) => GetSessionResponse::Ok(Json(view)),
                    None => GetSessionResponse::NotFound(Json(session_not_found(&id))),
                }
            }
            Some(s) => {
                let mut view = session_view(&s, SystemTime::now());
                view.node = state.cluster().map(crate::cluster::Cluster::node_id);
                view.recent_calls = state.sessions().stats(&id).map(|stats| {
                    stats
                        .recent_calls()
                        .into_iter()
                        .map(|c| CallView {
                            tool: c.tool,
                            finished_at: rfc3339(c.finished_at),
                            duration_ms: c.micros as f64 / 1000.0,
                            outcome: c.outcome.to_owned(),
                        })
                        .collect()
                });
                GetSessionResponse::Ok(Json(view))
            }
            None => GetSessionResponse::NotFound(Json(session_not_found(&id))),
        }
    }

    /// End a session
    ///
    /// Ends a live session of either transport: its stream closes, its running calls are
    /// cancelled, and its id gets 404 from then on.
    #[oai(
        path = "/sessions/:id",
        method = "delete",
        operation_id = "endSession",
        tag = "ApiTags::Sessions"
    )]
    async fn end_session(
        &self,
        _auth: AdminAuth,
        state: Data<&AppState>,
        /// The session id.
        id: Path<String>,
    ) -> EndSessionResponse {
        match state.sessions().end_everywhere(&id).await {
            Ok(true) => {
                tracing::info!(session = %id.0, "Session ended by an admin.");
                EndSessionResponse::Ended
            }
            Ok(false) => EndSessionResponse::NotFound(Json(session_not_found(&id))),
            Err(e) => EndSessionResponse::Unavailable(
                Json(ErrorBody::new(
                    "redis_unreachable",
                    format!(
                        "session {} is not on this replica and the cluster's Redis does not answer: {e}",
                        id.0
                    ),
                )),
                1,
            ),
        }
    }
}

/// The methods a path of this API serves, for the `Allow` header of a 405.
pub fn allowed_methods(path: &str) -> Option<&'static str> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["admin", "agents"]
        | ["admin", "agents", _]
        | ["admin", "sessions"]
        | ["admin", "clients"]
        | ["admin", "load-errors"]
        | ["admin", "traffic"]
        | ["admin", "cluster"] => Some("GET"),
        ["admin", "sessions", _] => Some("GET, DELETE"),
        ["admin", "reload"] => Some("POST"),
        ["healthz"] | ["readyz"] => Some("GET"),
        _ => None,
    }
}

fn default_limit() -> u32 {
    100
}

/// The probes.
pub struct HealthApi;

#[OpenApi]
impl HealthApi {
    /// Liveness
    ///
    /// 200 while the process serves requests.
    #[oai(
        path = "/healthz",
        method = "get",
        operation_id = "healthz",
        tag = "ApiTags::Health"
    )]
    async fn healthz(&self) -> HealthResponse {
        HealthResponse::Ok(Json(Health {
            status: "ok".into(),
            agents: None,
        }))
    }

    /// Readiness
    ///
    /// 200 when agents are loaded and the gateway takes traffic; 503 once shutdown began,
    /// and in cluster mode while Redis does not answer this replica's heartbeat.
    #[oai(
        path = "/readyz",
        method = "get",
        operation_id = "readyz",
        tag = "ApiTags::Health"
    )]
    async fn readyz(&self, state: Data<&AppState>) -> HealthResponse {
        let agents = Some(state.agents().len() as u64);
        if state.is_draining() || state.cancel().is_cancelled() {
            HealthResponse::Unavailable(Json(Health {
                status: "shutting_down".into(),
                agents,
            }))
        } else if state.cluster().is_some_and(|c| !c.is_healthy()) {
            HealthResponse::Unavailable(Json(Health {
                status: "redis_unreachable".into(),
                agents,
            }))
        } else {
            HealthResponse::Ok(Json(Health {
                status: "ready".into(),
                agents,
            }))
        }
    }
}

fn limits_view(l: &crate::config::clients::Limits) -> LimitsView {
    LimitsView {
        requests_per_minute: l.requests_per_minute.get(),
        burst: l.burst.get(),
        agent_runs_per_minute: l.agent_runs_per_minute.get(),
        max_sessions: l.max_sessions,
    }
}

fn usage_view(u: &crate::clients::Usage, now: SystemTime) -> UsageView {
    use std::sync::atomic::Ordering::Relaxed;
    let (requests_last_minute, rate_limited_last_minute) = u.last_minute(now);
    UsageView {
        sessions: u.sessions.load(Relaxed) as u64,
        requests: u.requests.load(Relaxed),
        agent_runs: u.agent_runs.load(Relaxed),
        rate_limited: u.rate_limited.load(Relaxed),
        requests_last_minute,
        rate_limited_last_minute,
        last_rate_limited_at: u.last_refused_at().map(rfc3339),
    }
}

fn traffic_point(b: &crate::traffic::Bucket) -> TrafficPoint {
    let round = |v: Option<f64>| v.map(|ms| (ms * 1000.0).round() / 1000.0);
    TrafficPoint {
        calls: u64::from(b.calls),
        errors: u64::from(b.errors),
        p50_ms: round(b.latency.quantile_ms(0.5)),
        p99_ms: round(b.latency.quantile_ms(0.99)),
        llm_requests: u64::from(b.llm_requests),
        llm_errors: u64::from(b.llm_errors),
        llm_p50_ms: round(b.llm_latency.quantile_ms(0.5)),
        llm_prompt_tokens: b.prompt_tokens,
        llm_completion_tokens: b.completion_tokens,
    }
}

fn session_not_found(id: &str) -> ErrorBody {
    ErrorBody::new("session_not_found", format!("no live session {id:?}"))
}

fn transport_name(t: Transport) -> TransportName {
    match t {
        Transport::Sse => TransportName::Sse,
        Transport::StreamableHttp => TransportName::StreamableHttp,
    }
}

fn rfc3339(t: SystemTime) -> String {
    let nanos = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos as i128)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Cluster mode: the sessions the other replicas hold (`query` asks each for its own), and
/// the replicas that did not answer.
async fn cluster_sessions(
    cluster: &crate::cluster::Cluster,
    query: &str,
) -> (Vec<SessionView>, Vec<String>) {
    let answers = match cluster.get_from_others(query).await {
        Ok(answers) => answers,
        Err(e) => {
            tracing::warn!(error = %e, "Cannot list the other replicas' sessions.");
            return (Vec::new(), Vec::new());
        }
    };
    let mut views = Vec::new();
    let mut missing = Vec::new();
    for (node, answer) in answers {
        match answer {
            Ok((200, mut body)) => {
                let sessions = body
                    .get_mut("sessions")
                    .map(serde_json::Value::take)
                    .and_then(|s| match s {
                        serde_json::Value::Array(items) => Some(items),
                        _ => None,
                    })
                    .unwrap_or_default();
                views.extend(sessions.into_iter().filter_map(parse_view));
            }
            Ok((status, _)) => {
                tracing::warn!(%node, status, "A replica refused to list its sessions.");
                missing.push(node);
            }
            Err(e) => {
                tracing::warn!(%node, error = %e, "A replica did not list its sessions.");
                missing.push(node);
            }
        }
    }
    (views, missing)
}

fn parse_view(value: serde_json::Value) -> Option<SessionView> {
    use poem_openapi::types::ParseFromJSON;
    SessionView::parse_from_json(Some(value)).ok()
}

/// One view per session, oldest first: a Streamable HTTP session held by several replicas
/// shows once, as the copy used last, with the counters of all copies summed.
fn merge_copies(views: Vec<SessionView>) -> Vec<SessionView> {
    let mut by_id: std::collections::HashMap<String, SessionView> =
        std::collections::HashMap::new();
    for view in views {
        match by_id.entry(view.id.clone()) {
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(view);
            }
            std::collections::hash_map::Entry::Occupied(mut e) => {
                let kept = e.get_mut();
                let (requests, errors, in_flight, prompt, completion) = (
                    kept.requests + view.requests,
                    kept.errors + view.errors,
                    kept.calls_in_flight + view.calls_in_flight,
                    kept.llm_prompt_tokens + view.llm_prompt_tokens,
                    kept.llm_completion_tokens + view.llm_completion_tokens,
                );
                let (created_at, age_secs) = if view.age_secs > kept.age_secs {
                    (view.created_at.clone(), view.age_secs)
                } else {
                    (kept.created_at.clone(), kept.age_secs)
                };
                // The copy used last. Timestamps compare as instants, not as text: RFC 3339
                // with a variable number of fraction digits does not sort as a string.
                if parse_rfc3339(&view.last_active_at) > parse_rfc3339(&kept.last_active_at) {
                    *kept = view;
                }
                kept.requests = requests;
                kept.errors = errors;
                kept.calls_in_flight = in_flight;
                kept.llm_prompt_tokens = prompt;
                kept.llm_completion_tokens = completion;
                kept.created_at = created_at;
                kept.age_secs = age_secs;
                kept.parked = kept.parked && kept.calls_in_flight == 0;
            }
        }
    }
    let mut all: Vec<SessionView> = by_id.into_values().collect();
    all.sort_by(|a, b| {
        b.age_secs
            .cmp(&a.age_secs)
            .then_with(|| a.created_at.cmp(&b.created_at))
            .then_with(|| a.id.cmp(&b.id))
    });
    all
}

fn parse_rfc3339(text: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()
}

fn session_view(s: &SessionInfo, now: SystemTime) -> SessionView {
    let secs_since = |t: SystemTime| now.duration_since(t).map_or(0, |d| d.as_secs());
    SessionView {
        id: s.id.to_string(),
        agent: s.agent.to_string(),
        transport: transport_name(s.transport),
        client: s.peer.client.as_deref().map(str::to_owned),
        client_ip: s.peer.ip.map(|ip| ip.to_string()),
        user_agent: s.peer.user_agent.clone(),
        mcp_client_name: s.client_name.clone(),
        mcp_client_version: s.client_version.clone(),
        protocol_version: s.protocol_version.clone(),
        created_at: rfc3339(s.created_at),
        last_active_at: rfc3339(s.last_active_at),
        age_secs: secs_since(s.created_at),
        idle_secs: secs_since(s.last_active_at),
        requests: s.requests,
        errors: s.errors,
        calls_in_flight: s.in_flight,
        llm_prompt_tokens: s.prompt_tokens,
        llm_completion_tokens: s.completion_tokens,
        parked: s.parked,
        recent_calls: None,
        node: None,
    }
}

fn agent_view(state: &AppState, e: &ServedAgent) -> AgentView {
    let spec = &e.agent.spec;
    let (sse, streamable) = state.sessions().count_by_transport(&e.name);
    AgentView {
        name: e.name.to_string(),
        description: spec.description.clone(),
        file: spec.file.display().to_string(),
        expose_agent: spec.expose_agent,
        expose_tools: spec.expose_tools,
        model: spec.model.as_ref().map(|m| ModelView {
            provider: match m.endpoint {
                crate::llm::ModelEndpoint::OpenAi { .. } => "openai".into(),
                crate::llm::ModelEndpoint::Azure { .. } => "azure".into(),
            },
            model: m.model.clone(),
            api_key_set: m.api_key.is_some(),
        }),
        tools: e
            .agent
            .all_tool_definitions()
            .into_iter()
            .map(|t| ToolView {
                name: t.name.to_string(),
                description: t.description.map(|d| d.to_string()),
            })
            .collect(),
        urls: AgentUrls {
            sse: format!("/agents/{}/sse", e.name),
            mcp: format!("/agents/{}/mcp", e.name),
        },
        sessions: SessionCounts {
            sse: sse as u64,
            streamable_http: streamable as u64,
            total: (sse + streamable) as u64,
        },
        load_errors: state.agents().load_errors(&spec.file),
    }
}
