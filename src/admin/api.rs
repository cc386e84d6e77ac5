//! The admin operations: agents, clients, sessions, traffic, the cluster's replicas.

use std::time::{SystemTime, UNIX_EPOCH};

use poem::web::Data;
use poem_openapi::OpenApi;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;

use super::dto::{
    AgentTraffic, CallView, ClientView, ClientsView, ClusterView, CostsView, ErrorBody,
    LoadErrorView, NodeView, PeerView, ReloadView, Scope, SessionPage, SessionView, SpendRow,
    SpendTotal, TrafficView, TransportName,
};
use super::responses::*;
use super::views::*;
use super::{AdminAuth, ApiTags};
use crate::state::AppState;

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

    /// Reload agents and rules
    ///
    /// Re-reads the agents directory now, and `switchboard.toml` for its `[[policies]]`
    /// (both are also watched, and reloaded on SIGHUP). Other keys of `switchboard.toml`
    /// that changed are listed in `restart_needed`: they apply on restart.
    #[oai(
        path = "/reload",
        method = "post",
        operation_id = "reload",
        tag = "ApiTags::Agents"
    )]
    async fn reload(&self, _auth: AdminAuth, state: Data<&AppState>) -> ReloadResponse {
        let r = state.reload().await;
        let errors = r.errors().cloned().collect();
        let config = r.config.unwrap_or_default();
        let a = r.agents;
        ReloadResponse::Ok(Json(ReloadView {
            added: a.added,
            changed: a.changed,
            removed: a.removed,
            unchanged: a.unchanged,
            errors,
            warnings: config.warnings,
            restart_needed: config.restart_needed,
            policies_changed: config.applied,
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
    /// This replica's node id and every live replica, with its address and live session
    /// count. Cluster mode: the replicas registered in Redis (heartbeat within the node
    /// TTL). A single gateway (no `[cluster]`): `mode` is `single` and `nodes` is this
    /// gateway alone.
    #[oai(
        path = "/cluster",
        method = "get",
        operation_id = "getCluster",
        tag = "ApiTags::Cluster"
    )]
    async fn cluster(
        &self,
        _auth: AdminAuth,
        state: Data<&AppState>,
        req: &poem::Request,
    ) -> ClusterResponse {
        let at = |ms: u64| rfc3339(UNIX_EPOCH + std::time::Duration::from_millis(ms));
        let Some(cluster) = state.cluster() else {
            return ClusterResponse::Ok(Json(single_node(&state, req)));
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
        ClusterResponse::Ok(Json(ClusterView {
            mode: "cluster".to_owned(),
            node: me.id.clone(),
            redis: Some(cluster.redis_url()),
            heartbeat_ms: Some(cluster.heartbeat().as_millis() as u64),
            node_ttl_ms: Some(cluster.node_ttl().as_millis() as u64),
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

    /// Files that did not load
    ///
    /// Every file of the agents directory with problems at the last reload, each problem as
    /// `file: key: message`: a broken new file (no agent yet), or a broken change to an
    /// agent whose previous version keeps serving. Then `switchboard.toml`, when it did not
    /// validate at the last reload (the `[[policies]]` rules in force stay).
    #[oai(
        path = "/load-errors",
        method = "get",
        operation_id = "listLoadErrors",
        tag = "ApiTags::Agents"
    )]
    async fn load_errors(&self, _auth: AdminAuth, state: Data<&AppState>) -> LoadErrorsResponse {
        let agents = state.agents();
        let mut views: Vec<LoadErrorView> = state
            .agents()
            .all_load_errors()
            .into_iter()
            .map(|(file, errors)| LoadErrorView {
                serving_previous_version: agents.all().iter().any(|e| e.agent.spec.file == file),
                file: file.display().to_string(),
                errors,
            })
            .collect();
        if let Some(config) = state
            .permissions()
            .last_reread()
            .filter(|r| !r.errors.is_empty())
        {
            views.push(LoadErrorView {
                file: config.file.display().to_string(),
                serving_previous_version: true,
                errors: config.errors.clone(),
            });
        }
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

    /// Costs of agent runs
    ///
    /// LLM tokens and their cost (`[costs] models`) spent by agent runs, per UTC day, client
    /// and agent, with totals per client and per agent. Kept in memory by this replica (the
    /// last 92 days); budgets (`[costs.budgets]`) are counted cluster-wide.
    #[oai(
        path = "/costs",
        method = "get",
        operation_id = "getCosts",
        tag = "ApiTags::Traffic"
    )]
    async fn costs(
        &self,
        _auth: AdminAuth,
        state: Data<&AppState>,
        /// The last this many UTC days, today included (1 to 92, default 7).
        #[oai(
            default = "default_days",
            validator(minimum(value = "1"), maximum(value = "92"))
        )]
        days: Query<u32>,
    ) -> CostsResponse {
        let costs = state.costs();
        let ledger = costs.ledger(days.0);
        let mut clients: std::collections::BTreeMap<String, SpendTotal> = Default::default();
        let mut agents: std::collections::BTreeMap<String, SpendTotal> = Default::default();
        let mut rows = Vec::with_capacity(ledger.len());
        for ((day, client, agent), spent) in ledger {
            for (map, name) in [(&mut clients, &client), (&mut agents, &agent)] {
                let total = map.entry(name.clone()).or_insert_with(|| SpendTotal {
                    name: name.clone(),
                    prompt_tokens: 0,
                    completion_tokens: 0,
                    cost: 0.0,
                });
                total.prompt_tokens += spent.prompt_tokens;
                total.completion_tokens += spent.completion_tokens;
                total.cost += spent.cost;
            }
            rows.push(SpendRow {
                day,
                client,
                agent,
                prompt_tokens: spent.prompt_tokens,
                completion_tokens: spent.completion_tokens,
                cost: spent.cost,
            });
        }
        CostsResponse::Ok(Json(CostsView {
            currency: costs.spec().currency.clone(),
            days: days.0,
            rows,
            clients: clients.into_values().collect(),
            agents: agents.into_values().collect(),
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
                            trace_url: c
                                .trace_id
                                .as_deref()
                                .and_then(|id| state.settings().telemetry.trace_link(id)),
                            trace_id: c.trace_id,
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

fn default_limit() -> u32 {
    100
}

fn default_days() -> u32 {
    7
}

/// `GET /admin/cluster` on a gateway without `[cluster]`: this gateway, alone. Its id is the
/// host name; its URL the address the request reached; its heartbeat is now.
fn single_node(state: &AppState, req: &poem::Request) -> ClusterView {
    let id = crate::cluster::host_name();
    let url = match req.local_addr().as_socket_addr() {
        Some(addr) => format!("http://{addr}"),
        None => format!("http://{}", state.settings().listen),
    };
    ClusterView {
        mode: "single".to_owned(),
        node: id.clone(),
        redis: None,
        heartbeat_ms: None,
        node_ttl_ms: None,
        nodes: vec![NodeView {
            id,
            url,
            this: true,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started_at: rfc3339(state.started_at()),
            last_heartbeat_at: rfc3339(SystemTime::now()),
            sessions: state.sessions().len() as u64,
        }],
    }
}
