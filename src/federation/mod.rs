//! Federation: the upstream MCP servers of an agent file's `[[servers]]`, served as part of
//! the agent's own MCP server (`/agents/<name>/mcp`, `/sse`, `switchboard stdio <name>`):
//! their tools, prompts, resources, resource templates and completions, with full
//! passthrough of what travels during a request.
//!
//! # Connections: one per client session and upstream
//!
//! Each MCP session of the agent gets its own connection to each upstream ([`Session`]),
//! opened on the session's first request that needs it and ended with the session (a
//! `command` upstream: a process per session, killed with its process group). Not one
//! connection shared by every session, because:
//! - what the upstream sends back during a request (progress, logs, elicitation, sampling,
//!   roots requests) must reach the one client it is for: over stdio nothing on the wire
//!   says which request an upstream request belongs to, so only a connection per session
//!   makes the relay unambiguous;
//! - the upstream negotiates with the client it serves: its `initialize` declares the
//!   client's own capabilities (elicitation, sampling, roots), so an upstream that offers
//!   tools only to clients that can answer (the reference server does) offers exactly those,
//!   and one whose client cannot answer is never asked;
//! - per-client state upstream (log level, resource subscriptions, session resources) stays
//!   per client, as if the client were connected directly.
//!
//! A request without a session (stateless MCP 2026-07-28) gets connections of its own,
//! ended after it. A connection that broke (process exited, server gone) fails the request
//! that saw it break; the next request opens a new one.
//!
//! A `command` upstream's processes are bounded as a `[[tools]]` command upstream's
//! `per_session` processes are ([`link`]): at most `max_processes` at once over all the
//! sessions (a session beyond it gets an error naming the key; a request for a name no list
//! offered is told why its upstream could not be listed), each ended when its session has
//! not used it for `session_idle_secs` (by the task that waits for the session's end), and
//! a start that failed is not made again before its backoff (the tool upstreams' own).
//!
//! # Names
//!
//! Tools and prompts are offered as `prefix + name`; resource URIs unchanged. Lists are
//! merged in `[[servers]]` order, each upstream's items in its own order; when two upstreams
//! offer the same name, the first wins. `allow` and `deny` ([`ServerConfig::admits`]) filter
//! all of them. A request is routed by the name or URI as last listed for the session (a
//! name not listed yet makes the session list again first).
//!
//! # During a request
//!
//! Progress, logging, elicitation, sampling and roots: [`relay`]. A client's
//! `notifications/cancelled` (or the session's end, or the upstream's `timeout_secs`) sends
//! `notifications/cancelled` upstream for the request and answers the client at once.
//! Results (every kind of content, structured content, `isError`) pass unchanged; tool
//! calls go through the agent's call path (`[[policies]]`, approvals, audit, metrics,
//! session records) as the agent's own tools do.

// Logging and resource subscriptions are deprecated by SEP-2577 (2026-07-28) but are the
// protocol of every session before it: passed through as they are.
#![allow(deprecated)]

mod arrival;
mod config;
mod http;
mod link;
mod relay;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResult, CancelledNotificationParam,
    ClientRequest, CompleteRequest, CompleteRequestParams, CompleteResult, ErrorCode,
    GetPromptRequest, GetPromptRequestParams, GetPromptResult, JsonObject, LoggingLevel,
    ProgressToken, Prompt, ReadResourceRequest, ReadResourceRequestParams, ReadResourceResult,
    Reference, RequestId, Resource, ResourceTemplate, ServerResult, SetLevelRequest,
    SetLevelRequestParams, SubscribeRequest, SubscribeRequestParams, Tool, UnsubscribeRequest,
    UnsubscribeRequestParams,
};
use rmcp::service::PeerRequestOptions;
use rmcp::{ErrorData as McpError, Peer, RoleServer, ServiceError};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use config::ServerConfig;
use link::{Conn, Server};

use crate::tools::ClientSession;

/// The federated upstreams of one agent, and the connections of its sessions to them.
pub struct Federation {
    servers: Vec<Arc<Server>>,
    /// Session id → its connections. A `std` mutex: held only to look up, insert or
    /// remove, never across `.await`.
    sessions: Arc<Mutex<HashMap<Arc<str>, Arc<Session>>>>,
    /// One task per session, removing it when the session ends.
    watchers: Mutex<JoinSet<()>>,
    /// Parent of every connection's token.
    cancel: CancellationToken,
    /// The tools as a session last listed them, for the admin API and the metrics.
    last_listed: Arc<Mutex<Vec<Tool>>>,
}

impl Drop for Federation {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// The client request an upstream request is made for.
pub struct Downstream<'a> {
    /// Its JSON-RPC id (relayed requests are sent as part of it).
    pub id: RequestId,
    /// Its progress token, when it asked for progress.
    pub progress: Option<ProgressToken>,
    /// Cancelled when the client gives up on it (or its session ends).
    pub cancel: &'a CancellationToken,
}

/// Why an upstream request did not give a result.
enum Failure {
    /// The upstream answered with a JSON-RPC error: passed on as it is.
    Upstream(McpError),
    /// The upstream could not be reached, or the connection broke.
    Unreachable(String),
    /// The client cancelled.
    Cancelled,
    /// No answer within `timeout_secs`.
    TimedOut(String),
}

impl Failure {
    fn into_mcp(self) -> McpError {
        match self {
            Failure::Upstream(e) => e,
            Failure::Unreachable(m) | Failure::TimedOut(m) => {
                McpError::new(ErrorCode::INTERNAL_ERROR, m, None)
            }
            Failure::Cancelled => McpError::new(ErrorCode::INTERNAL_ERROR, "cancelled", None),
        }
    }

    fn into_tool_error(self) -> crate::tools::Error {
        use crate::tools::Error;
        match self {
            Failure::Upstream(e) if e.code == ErrorCode::INVALID_PARAMS => {
                Error::InvalidArguments(e.message.into_owned())
            }
            Failure::Upstream(e) => Error::Failed(format!("{} (code {})", e.message, e.code.0)),
            Failure::Unreachable(m) => Error::Failed(m),
            Failure::Cancelled => Error::Cancelled,
            Failure::TimedOut(m) => Error::TimedOut(m),
        }
    }
}

impl Federation {
    /// The federation of `servers`; `None` when there are none.
    pub fn new(servers: &[ServerConfig]) -> Option<Arc<Self>> {
        if servers.is_empty() {
            return None;
        }
        Some(Arc::new(Self {
            servers: servers
                .iter()
                .map(|config| Arc::new(Server::new(config)))
                .collect(),
            sessions: Arc::default(),
            watchers: Mutex::new(JoinSet::new()),
            cancel: CancellationToken::new(),
            last_listed: Arc::default(),
        }))
    }

    /// The connections of `session` (made if new, ended with it) whose client is `client`;
    /// without a session, connections for one request (dropped with the returned value).
    pub fn session(
        &self,
        client: &Peer<RoleServer>,
        session: Option<&ClientSession>,
    ) -> Arc<Session> {
        let Some(session) = session else {
            return Arc::new(self.new_session(None));
        };
        let mut sessions = lock(&self.sessions);
        if let Some(existing) = sessions.get(&session.id) {
            existing.client.set(client);
            return existing.clone();
        }
        let made = Arc::new(self.new_session(Some(client.clone())));
        sessions.insert(session.id.clone(), made.clone());
        drop(sessions);
        let (map, id, ended, weak) = (
            Arc::downgrade(&self.sessions),
            session.id.clone(),
            session.ended.clone(),
            Arc::downgrade(&made),
        );
        // The shortest `session_idle_secs` of the `command` upstreams: how often the
        // session's unused processes are looked for.
        let idle = self
            .servers
            .iter()
            .filter(|s| s.config.command.is_some())
            .map(|s| s.config.session_idle())
            .min();
        let mut watchers = lock(&self.watchers);
        while watchers.try_join_next().is_some() {}
        let stop = self.cancel.clone();
        watchers.spawn(async move {
            let over = async {
                tokio::select! {
                    () = ended.cancelled() => {}
                    () = stop.cancelled() => {}
                }
            };
            let mut over = std::pin::pin!(over);
            if let Some(idle) = idle {
                let mut wait = idle;
                loop {
                    tokio::select! {
                        () = &mut over => break,
                        () = tokio::time::sleep(wait) => {}
                    }
                    let Some(session) = weak.upgrade() else { break };
                    wait = session.close_idle().await;
                }
            } else {
                over.await;
            }
            let gone = map.upgrade().and_then(|map| lock(&map).remove(&id));
            if let Some(gone) = gone {
                gone.close().await;
            }
        });
        made
    }

    fn new_session(&self, client: Option<Peer<RoleServer>>) -> Session {
        Session {
            client: Arc::new(relay::Client::new(client)),
            links: self
                .servers
                .iter()
                .map(|server| Link {
                    server: server.clone(),
                    conn: tokio::sync::Mutex::new(None),
                    failure: Mutex::default(),
                })
                .collect(),
            active: AtomicUsize::new(0),
            last_used: Mutex::new(Instant::now()),
            routes: Mutex::default(),
            cancel: self.cancel.child_token(),
            last_listed: self.last_listed.clone(),
        }
    }

    /// The federated tools (prefixed and filtered, before `[[policies]]`) as a session last
    /// listed them; none before a session has listed tools. Each session lists its own (an
    /// upstream may offer a client what it can answer), so this is one session's view.
    pub fn last_listed_tools(&self) -> Vec<Tool> {
        lock(&self.last_listed).clone()
    }

    /// The upstreams, as logs name them, and their prefixes, in `[[servers]]` order.
    pub fn upstreams(&self) -> impl Iterator<Item = (&str, &str)> {
        self.servers
            .iter()
            .map(|s| (s.target.as_str(), s.config.prefix.as_str()))
    }

    /// How many sessions have connections now.
    pub fn session_count(&self) -> usize {
        lock(&self.sessions).len()
    }

    /// Ends every connection (agent reloaded or removed, shutdown).
    pub async fn stop(&self) {
        let sessions: Vec<Arc<Session>> = lock(&self.sessions).drain().map(|(_, s)| s).collect();
        futures::future::join_all(sessions.iter().map(|s| s.close())).await;
        self.cancel.cancel();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One upstream, for one session.
struct Link {
    server: Arc<Server>,
    /// The open connection, if any; held while one is opened, so concurrent requests open
    /// one.
    conn: tokio::sync::Mutex<Option<Arc<Conn>>>,
    /// Why the last attempt to open a connection failed (none since one opened): what a
    /// request for a name the upstream could not list is told.
    failure: Mutex<Option<String>>,
}

impl Link {
    fn failure(&self) -> MutexGuard<'_, Option<String>> {
        lock(&self.failure)
    }
}

/// Where each name and URI, as last listed for the session, is served.
#[derive(Default)]
struct Routes {
    /// Offered tool name → (upstream index, the upstream's name).
    tools: HashMap<String, (usize, String)>,
    /// Offered prompt name → (upstream index, the upstream's name).
    prompts: HashMap<String, (usize, String)>,
    /// Resource URI → upstream index.
    resources: HashMap<String, usize>,
    /// Each template's URI up to its first `{`, and its upstream index.
    templates: Vec<(String, usize)>,
}

/// One client session's connections to the federated upstreams.
pub struct Session {
    /// The session's client (none for a request without a session), as its latest request
    /// reached it.
    client: Arc<relay::Client>,
    links: Vec<Link>,
    /// A `std` mutex: held only to read or replace, never across `.await`.
    routes: Mutex<Routes>,
    cancel: CancellationToken,
    /// The federation's [`Federation::last_listed_tools`].
    last_listed: Arc<Mutex<Vec<Tool>>>,
    /// Its requests to upstreams in flight now ([`Busy`]).
    active: AtomicUsize,
    /// When its last request to an upstream ended (or it began).
    last_used: Mutex<Instant>,
}

/// Counts a request of a session to its upstreams while it is in flight.
struct Busy<'a>(&'a Session);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        *lock(&self.0.last_used) = Instant::now();
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Which kind of list.
#[derive(Clone, Copy)]
enum Kind {
    Tools,
    Prompts,
    Resources,
    Templates,
}

impl Session {
    /// Ends the session's connections.
    async fn close(&self) {
        for link in &self.links {
            if let Some(conn) = link.conn.lock().await.take() {
                conn.close();
            }
        }
        self.cancel.cancel();
    }

    fn busy(&self) -> Busy<'_> {
        self.active.fetch_add(1, Ordering::SeqCst);
        Busy(self)
    }

    /// Ends the connections to `command` upstreams (their processes) that the session has
    /// not used for the upstream's `session_idle_secs`; the session's next request opens
    /// another. Returns how long until one may be idle that long.
    async fn close_idle(&self) -> Duration {
        let mut next = Duration::MAX;
        for link in self
            .links
            .iter()
            .filter(|l| l.server.config.command.is_some())
        {
            let idle = link.server.config.session_idle();
            let mut conn = link.conn.lock().await;
            // Checked with the connection held: a request counts itself busy before it
            // asks for the connection, so none is using the one closed here.
            let since = lock(&self.last_used).elapsed();
            let busy = self.active.load(Ordering::SeqCst) > 0;
            if busy || since < idle {
                next = next.min(if busy { idle } else { idle - since });
                continue;
            }
            if let Some(conn) = conn.take() {
                tracing::debug!(upstream = %link.server.target, idle_secs = since.as_secs(), "Federated MCP server unused by its session: ending its process.");
                conn.close();
            }
            next = next.min(idle);
        }
        next
    }

    /// Why an upstream could not be listed for the session, if one could not: the error of
    /// a request for a name no list offered.
    fn unlisted(&self) -> Option<String> {
        self.links.iter().find_map(|link| link.failure().clone())
    }

    /// Upstream `i`'s open connection, opened if there is none.
    async fn conn(&self, i: usize) -> Result<Arc<Conn>, Failure> {
        let link = &self.links[i];
        let mut slot = link.conn.lock().await;
        if let Some(conn) = slot.as_ref().filter(|c| c.is_open()) {
            return Ok(conn.clone());
        }
        if self.cancel.is_cancelled() {
            return Err(Failure::Unreachable(format!(
                "upstream MCP server {} is no longer served (the agent was reloaded or the gateway is shutting down)",
                link.server.target
            )));
        }
        // A broken connection's process no longer counts against `max_processes` once
        // it is dropped here (and by the requests that still hold it).
        *slot = None;
        // Boxed: opening a connection (an rmcp client's handshake, a process's start) is a
        // large future, and inline it made every request's future, which holds this one in
        // its `select!`, that large, copied on each call's way through rmcp's tasks.
        match Box::pin(link::open(&link.server, self.client.clone(), &self.cancel)).await {
            Ok(conn) => {
                let conn = Arc::new(conn);
                *slot = Some(conn.clone());
                *link.failure() = None;
                Ok(conn)
            }
            Err(message) => {
                tracing::warn!(upstream = %link.server.target, reason = %message, "Federated MCP server not reachable.");
                *link.failure() = Some(message.clone());
                Err(Failure::Unreachable(message))
            }
        }
    }

    /// Forgets upstream `i`'s connection `conn` (broken), so the next request opens another.
    async fn discard(&self, i: usize, conn: &Arc<Conn>) {
        let mut slot = self.links[i].conn.lock().await;
        if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, conn)) {
            *slot = None;
        }
        conn.close();
    }

    /// Sends `request` to upstream `i` for `down`, relaying what comes back during it;
    /// cancelled upstream when `down` is, or after the upstream's timeout.
    async fn request(
        &self,
        i: usize,
        request: ClientRequest,
        down: &Downstream<'_>,
    ) -> Result<ServerResult, Failure> {
        let _busy = self.busy();
        let server = self.links[i].server.clone();
        let limit = server.timeout();
        let deadline = tokio::time::Instant::now() + limit;
        let timed_out = || {
            Failure::TimedOut(format!(
                "upstream MCP server {} did not answer within {} s",
                server.target,
                limit.as_secs()
            ))
        };
        let conn = tokio::select! {
            conn = self.conn(i) => conn?,
            () = down.cancel.cancelled() => return Err(Failure::Cancelled),
            () = tokio::time::sleep_until(deadline) => return Err(timed_out()),
        };
        // Registered before it is sent: the upstream may send progress or a request of its
        // own before `send_request_with_option` returns.
        let registered = conn
            .in_flight
            .register(down.id.clone(), down.progress.clone());
        let handle = match conn
            .service
            .send_request_with_option(request, PeerRequestOptions::no_options())
            .await
        {
            Ok(handle) => handle,
            Err(e) => {
                self.discard(i, &conn).await;
                return Err(Failure::Unreachable(broken(&server.target, &e)));
            }
        };
        registered.sent(handle.id.clone(), handle.progress_token.clone());
        let (id, peer) = (handle.id.clone(), handle.peer.clone());
        let reason = tokio::select! {
            answer = handle.await_response() => return match answer {
                Ok(result) => {
                    registered.flush(PROGRESS_FLUSH).await;
                    Ok(result)
                }
                Err(ServiceError::McpError(e)) => Err(Failure::Upstream(e)),
                Err(e) => {
                    self.discard(i, &conn).await;
                    Err(Failure::Unreachable(broken(&server.target, &e)))
                }
            },
            () = down.cancel.cancelled() => "cancelled by the client",
            () = tokio::time::sleep_until(deadline) => "timed out at the gateway",
        };
        let _ = peer
            .notify_cancelled(CancelledNotificationParam::new(
                Some(id),
                Some(reason.into()),
            ))
            .await;
        if down.cancel.is_cancelled() {
            Err(Failure::Cancelled)
        } else {
            Err(timed_out())
        }
    }

    /// Lists one kind of item of every upstream (those that offer it), merged, filtered,
    /// renamed; and keeps their routes. An upstream that cannot be listed is left out (and
    /// logged); the others are still listed.
    async fn list(&self, kind: Kind) -> Vec<Listed> {
        let lists =
            futures::future::join_all((0..self.links.len()).map(|i| self.list_one(i, kind))).await;
        let mut routes = lock(&self.routes);
        let mut out = Vec::new();
        match kind {
            Kind::Tools => routes.tools.clear(),
            Kind::Prompts => routes.prompts.clear(),
            Kind::Resources => routes.resources.clear(),
            Kind::Templates => routes.templates.clear(),
        }
        for (i, items) in lists.into_iter().enumerate() {
            let config = &self.links[i].server.config;
            for item in items {
                match item {
                    Listed::Tool(mut tool) => {
                        let upstream = tool.name.to_string();
                        let name = format!("{}{upstream}", config.prefix);
                        if !config.admits(&upstream) || routes.tools.contains_key(&name) {
                            continue;
                        }
                        tool.name = name.clone().into();
                        routes.tools.insert(name, (i, upstream));
                        out.push(Listed::Tool(tool));
                    }
                    Listed::Prompt(mut prompt) => {
                        let upstream = prompt.name.clone();
                        let name = format!("{}{upstream}", config.prefix);
                        if !config.admits(&upstream) || routes.prompts.contains_key(&name) {
                            continue;
                        }
                        prompt.name = name.clone();
                        routes.prompts.insert(name, (i, upstream));
                        out.push(Listed::Prompt(prompt));
                    }
                    Listed::Resource(resource) => {
                        let uri = resource.uri.clone();
                        if !config.admits(&uri) || routes.resources.contains_key(&uri) {
                            continue;
                        }
                        routes.resources.insert(uri, i);
                        out.push(Listed::Resource(resource));
                    }
                    Listed::Template(template) => {
                        let pattern = template.uri_template.clone();
                        if !config.admits(&pattern) {
                            continue;
                        }
                        let head = pattern.split('{').next().unwrap_or_default().to_owned();
                        routes.templates.push((head, i));
                        out.push(Listed::Template(template));
                    }
                }
            }
        }
        out
    }

    async fn list_one(&self, i: usize, kind: Kind) -> Vec<Listed> {
        let _busy = self.busy();
        let server = &self.links[i].server;
        let Ok(conn) = self.conn(i).await else {
            return Vec::new();
        };
        let offered = conn
            .service
            .peer_info()
            .map(|info| info.capabilities.clone());
        let offered = offered.unwrap_or_default();
        let peer = conn.service.peer();
        let listing = async {
            Ok::<_, ServiceError>(match kind {
                Kind::Tools if offered.tools.is_some() => peer
                    .list_all_tools()
                    .await?
                    .into_iter()
                    .map(Listed::Tool)
                    .collect(),
                Kind::Prompts if offered.prompts.is_some() => peer
                    .list_all_prompts()
                    .await?
                    .into_iter()
                    .map(Listed::Prompt)
                    .collect(),
                Kind::Resources if offered.resources.is_some() => peer
                    .list_all_resources()
                    .await?
                    .into_iter()
                    .map(Listed::Resource)
                    .collect(),
                Kind::Templates if offered.resources.is_some() => peer
                    .list_all_resource_templates()
                    .await?
                    .into_iter()
                    .map(Listed::Template)
                    .collect(),
                _ => Vec::new(),
            })
        };
        match tokio::time::timeout(server.timeout(), listing).await {
            Ok(Ok(items)) => items,
            Ok(Err(e)) => {
                if !matches!(e, ServiceError::McpError(_)) {
                    self.discard(i, &conn).await;
                }
                tracing::warn!(upstream = %server.target, error = %e, "Federated MCP server could not be listed.");
                Vec::new()
            }
            Err(_) => {
                tracing::warn!(upstream = %server.target, "Federated MCP server did not answer a list in time.");
                Vec::new()
            }
        }
    }

    /// The tools of every upstream, merged.
    pub async fn list_tools(&self) -> Vec<Tool> {
        let tools: Vec<Tool> = self
            .list(Kind::Tools)
            .await
            .into_iter()
            .filter_map(|l| match l {
                Listed::Tool(t) => Some(t),
                _ => None,
            })
            .collect();
        lock(&self.last_listed).clone_from(&tools);
        tools
    }

    /// The prompts of every upstream, merged.
    pub async fn list_prompts(&self) -> Vec<Prompt> {
        self.list(Kind::Prompts)
            .await
            .into_iter()
            .filter_map(|l| match l {
                Listed::Prompt(p) => Some(p),
                _ => None,
            })
            .collect()
    }

    /// The resources of every upstream, merged.
    pub async fn list_resources(&self) -> Vec<Resource> {
        self.list(Kind::Resources)
            .await
            .into_iter()
            .filter_map(|l| match l {
                Listed::Resource(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    /// The resource templates of every upstream, merged.
    pub async fn list_resource_templates(&self) -> Vec<ResourceTemplate> {
        self.list(Kind::Templates)
            .await
            .into_iter()
            .filter_map(|l| match l {
                Listed::Template(t) => Some(t),
                _ => None,
            })
            .collect()
    }

    /// Where the tool offered as `name` is served; lists again once when it is not known.
    async fn route_named(&self, kind: Kind, name: &str) -> Option<(usize, String)> {
        let find = |routes: &Routes| match kind {
            Kind::Prompts => routes.prompts.get(name).cloned(),
            _ => routes.tools.get(name).cloned(),
        };
        if let Some(found) = find(&lock(&self.routes)) {
            return Some(found);
        }
        self.list(kind).await;
        find(&lock(&self.routes))
    }

    /// Where resource `uri` (or a URI of a template) is served; lists again once when it is
    /// not known.
    async fn route_uri(&self, uri: &str) -> Option<usize> {
        let find = |routes: &Routes| {
            routes.resources.get(uri).copied().or_else(|| {
                routes
                    .templates
                    .iter()
                    .filter(|(head, _)| uri.starts_with(head.as_str()))
                    .max_by_key(|(head, _)| head.len())
                    .map(|(_, i)| *i)
            })
        };
        if let Some(found) = find(&lock(&self.routes)) {
            return Some(found);
        }
        self.list(Kind::Resources).await;
        self.list(Kind::Templates).await;
        if let Some(found) = find(&lock(&self.routes)) {
            return Some(found);
        }
        // One upstream without an allow-list: it decides itself what it serves.
        match self.links.as_slice() {
            [only] if only.server.config.allow.is_none() && only.server.config.admits(uri) => {
                Some(0)
            }
            _ => None,
        }
    }

    /// Whether `name` is a tool of an upstream (as last listed; listed again when not known).
    pub async fn has_tool(&self, name: &str) -> bool {
        self.route_named(Kind::Tools, name).await.is_some()
    }

    /// Calls the upstream tool offered as `name`; `None` when no upstream offers it.
    pub async fn call_tool(
        &self,
        name: &str,
        arguments: JsonObject,
        down: &Downstream<'_>,
    ) -> Option<Result<CallToolResult, crate::tools::Error>> {
        let Some((i, upstream)) = self.route_named(Kind::Tools, name).await else {
            return self
                .unlisted()
                .map(|message| Err(crate::tools::Error::Failed(message)));
        };
        let params = CallToolRequestParams::new(upstream).with_arguments(arguments);
        let request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
        Some(match self.request(i, request, down).await {
            Ok(ServerResult::CallToolResult(result)) => Ok(result),
            Ok(_) => Err(crate::tools::Error::Failed(format!(
                "upstream MCP server {} answered tools/call with another kind of result",
                self.links[i].server.target
            ))),
            Err(failure) => Err(failure.into_tool_error()),
        })
    }

    /// `prompts/get` of the prompt offered as `params.name`.
    ///
    /// # Errors
    /// `-32602` for a prompt no upstream offers; the upstream's own error; or why it
    /// could not be asked.
    pub async fn get_prompt(
        &self,
        mut params: GetPromptRequestParams,
        down: &Downstream<'_>,
    ) -> Result<GetPromptResult, McpError> {
        let (i, upstream) = self
            .route_named(Kind::Prompts, &params.name)
            .await
            .ok_or_else(|| self.unknown_prompt(&params.name))?;
        params.name = upstream;
        let request = ClientRequest::GetPromptRequest(GetPromptRequest::new(params));
        match self
            .request(i, request, down)
            .await
            .map_err(Failure::into_mcp)?
        {
            ServerResult::GetPromptResult(result) => Ok(result),
            _ => Err(other_result("prompts/get")),
        }
    }

    /// `resources/read` of `params.uri`.
    ///
    /// # Errors
    /// `-32002` for a URI no upstream serves; the upstream's own error; or why it could not
    /// be asked.
    pub async fn read_resource(
        &self,
        params: ReadResourceRequestParams,
        down: &Downstream<'_>,
    ) -> Result<ReadResourceResult, McpError> {
        let i = self.uri_route(&params.uri).await?;
        let request = ClientRequest::ReadResourceRequest(ReadResourceRequest::new(params));
        match self
            .request(i, request, down)
            .await
            .map_err(Failure::into_mcp)?
        {
            ServerResult::ReadResourceResult(result) => Ok(result),
            _ => Err(other_result("resources/read")),
        }
    }

    /// `resources/subscribe` (`true`) or `resources/unsubscribe` of `uri`.
    ///
    /// # Errors
    /// As [`Self::read_resource`].
    pub async fn subscribe(
        &self,
        uri: String,
        subscribe: bool,
        down: &Downstream<'_>,
    ) -> Result<(), McpError> {
        let i = self.uri_route(&uri).await?;
        let request = if subscribe {
            ClientRequest::SubscribeRequest(SubscribeRequest::new(SubscribeRequestParams::new(uri)))
        } else {
            ClientRequest::UnsubscribeRequest(UnsubscribeRequest::new(
                UnsubscribeRequestParams::new(uri),
            ))
        };
        self.request(i, request, down)
            .await
            .map(drop)
            .map_err(Failure::into_mcp)
    }

    /// `-32602` for a prompt no upstream offers; or why an upstream could not be listed.
    fn unknown_prompt(&self, name: &str) -> McpError {
        match self.unlisted() {
            Some(message) => McpError::new(ErrorCode::INTERNAL_ERROR, message, None),
            None => McpError::invalid_params(format!("unknown prompt {name:?}"), None),
        }
    }

    async fn uri_route(&self, uri: &str) -> Result<usize, McpError> {
        let route = self.route_uri(uri).await;
        if route.is_none()
            && let Some(message) = self.unlisted()
        {
            return Err(McpError::new(ErrorCode::INTERNAL_ERROR, message, None));
        }
        route.ok_or_else(|| {
            McpError::new(
                ErrorCode::RESOURCE_NOT_FOUND,
                format!("resource not found: {uri}"),
                Some(serde_json::json!({"uri": uri})),
            )
        })
    }

    /// `completion/complete` for a prompt's or a resource template's argument.
    ///
    /// # Errors
    /// `-32602` for a prompt or template no upstream offers; the upstream's own error.
    pub async fn complete(
        &self,
        mut params: CompleteRequestParams,
        down: &Downstream<'_>,
    ) -> Result<CompleteResult, McpError> {
        let i = match &mut params.r#ref {
            Reference::Prompt(prompt) => {
                let (i, upstream) = self
                    .route_named(Kind::Prompts, &prompt.name)
                    .await
                    .ok_or_else(|| self.unknown_prompt(&prompt.name))?;
                prompt.name = upstream;
                i
            }
            Reference::Resource(template) => self.uri_route(&template.uri).await?,
            _ => {
                return Err(McpError::invalid_params(
                    "completion/complete: a reference of an unknown kind",
                    None,
                ));
            }
        };
        let request = ClientRequest::CompleteRequest(CompleteRequest::new(params));
        match self
            .request(i, request, down)
            .await
            .map_err(Failure::into_mcp)?
        {
            ServerResult::CompleteResult(result) => Ok(result),
            _ => Err(other_result("completion/complete")),
        }
    }

    /// `logging/setLevel`: passed to every upstream that offers logging.
    ///
    /// # Errors
    /// The first upstream's error when none took it.
    pub async fn set_level(
        &self,
        level: LoggingLevel,
        down: &Downstream<'_>,
    ) -> Result<(), McpError> {
        let mut first_error = None;
        let mut taken = false;
        for i in 0..self.links.len() {
            let logs = match self.conn(i).await {
                Ok(conn) => conn
                    .service
                    .peer_info()
                    .is_some_and(|info| info.capabilities.logging.is_some()),
                Err(_) => false,
            };
            if !logs {
                continue;
            }
            let request = ClientRequest::SetLevelRequest(SetLevelRequest::new(
                SetLevelRequestParams::new(level),
            ));
            match self.request(i, request, down).await {
                Ok(_) => taken = true,
                Err(e) => {
                    first_error.get_or_insert(e.into_mcp());
                }
            }
        }
        match first_error {
            Some(e) if !taken => Err(e),
            _ => Ok(()),
        }
    }
}

/// One listed item.
enum Listed {
    Tool(Tool),
    Prompt(Prompt),
    Resource(Resource),
    Template(ResourceTemplate),
}

/// How long an answer waits for the progress notifications sent before it.
const PROGRESS_FLUSH: std::time::Duration = std::time::Duration::from_millis(500);

fn broken(target: &str, e: &ServiceError) -> String {
    format!(
        "upstream MCP server {target} failed during the request ({e}); the next request reconnects"
    )
}

fn other_result(method: &str) -> McpError {
    McpError::new(
        ErrorCode::INTERNAL_ERROR,
        format!("{method}: the upstream MCP server answered with another kind of result"),
        None,
    )
}
