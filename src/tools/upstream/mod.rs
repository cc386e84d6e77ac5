//! `type = "mcp"`: the tools of an upstream MCP server (rmcp client), reached over
//! Streamable HTTP (`url`) or started by the gateway and spoken to over stdio (`command`,
//! [`stdio`]: its processes, their restarts and their stderr).
//!
//! # Connection
//!
//! One rmcp client session per lane ([`lanes`]), opened lazily by the first
//! [`UpstreamTools::connect`] or [`UpstreamTools::call`] and shared by every call after it
//! (calls run concurrently over the one session; rmcp multiplexes them). There is one lane,
//! unless the upstream is reached by token exchange: then each caller's access token has its
//! own (the upstream sees the caller, so a session belongs to one). Opening a session lists
//! the upstream's tools (every page) and caches their definitions, renamed `prefix + name` and
//! filtered by `allow`; [`UpstreamTools::definitions`] returns that cache (shared by the
//! lanes), which survives a lost connection (the tools are still offered; the next call
//! reconnects).
//!
//! When the transport fails (upstream down, connection refused, session closed) the client
//! is dropped and the call fails; the *next* call opens a new one. A call makes at most one
//! connect attempt, so a dead upstream costs each call one refused connection, not a storm.
//!
//! # Authentication
//!
//! `[tools.auth]` ([`auth`]): the static `headers`, the gateway's own token (client
//! credentials), or a token exchanged for the caller's (RFC 8693); never the caller's own
//! token. The session's HTTP client ([`http`]) sends the lane's current token with every
//! request. A token is used until shortly before it expires; when the upstream answers 401,
//! the token is dropped, a new one obtained, and the request made once more.
//!
//! A call is bounded by `timeout_secs` (getting a token and connecting included) and by the
//! caller's cancellation token. Either way the call's future is dropped, and rmcp then sends
//! the upstream a `notifications/cancelled` for the abandoned request.
//!
//! The client's background tasks are children of a token cancelled when the
//! `UpstreamTools` is dropped, so none outlives it.
//!
//! Header values, `env` values and tokens are secrets: they are never logged, and the
//! configuration's `Debug` output redacts them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, ErrorCode, Implementation, JsonObject,
    Tool,
};
use rmcp::service::ClientInitializeError;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientCacheConfig, ServiceError, ServiceExt as _};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::{CallContext, ClientSession, Error, Output};
use crate::identity::Identity;

mod auth;
mod auth_config;
mod backoff;
mod config;
mod http;
mod lanes;
mod outcome;
mod stderr;
mod stdio;

pub use auth_config::{AuthKind, DEFAULT_SESSION_IDLE_SECS, UpstreamAuthConfig};
pub(crate) use backoff::Backoff;
pub use config::DEFAULT_MAX_PROCESSES;
pub use config::{ProcessMode, UpstreamToolConfig};
pub(crate) use stderr::StderrLog;
pub(crate) use stdio::{Group, Launch, Live};
pub use stdio::{INHERITED, STOP_LIMIT};

use auth::UpstreamAuth;
use lanes::{Connection, Lane, LaneUse, Lanes};
pub(crate) use outcome::content_text;
use outcome::{error_chain, failure_detail, into_output, is_transport_failure, transport_detail};

/// The upstream's tools as last listed, by any lane or process.
#[derive(Default)]
struct Catalog {
    /// The definitions: prefixed, filtered by `allow`.
    tools: Vec<Tool>,
    /// Prefixed name → upstream name, for the tools in `tools`.
    names: HashMap<String, String>,
}

/// The upstream's tools as offered: the last listing, renamed `prefix + name` and filtered
/// by `allow`. Shared by the calls and (stdio) the processes' supervisors.
struct Listing {
    prefix: String,
    allow: Option<Vec<String>>,
    /// How logs name the upstream.
    target: String,
    /// A `std` mutex: held only to read or swap fields, never across `.await`.
    catalog: Mutex<Catalog>,
}

impl Listing {
    fn new(config: &UpstreamToolConfig) -> Self {
        Self {
            prefix: config.prefix.clone(),
            allow: config.allow.clone(),
            target: config.target(),
            catalog: Mutex::new(Catalog::default()),
        }
    }

    /// Keeps the allowed `tools`, prefixed. Returns how many were kept.
    fn store(&self, tools: Vec<Tool>) -> usize {
        let mut names = HashMap::new();
        let mut definitions = Vec::new();
        for mut tool in tools {
            let upstream = tool.name.to_string();
            if let Some(allow) = &self.allow
                && !allow.contains(&upstream)
            {
                continue;
            }
            let prefixed = format!("{}{upstream}", self.prefix);
            tool.name = prefixed.clone().into();
            if names.insert(prefixed, upstream).is_none() {
                definitions.push(tool);
            }
        }
        if let Some(allow) = &self.allow {
            for missing in allow.iter().filter(|a| !names.values().any(|u| u == *a)) {
                tracing::warn!(upstream = %self.target, tool = %missing, "Allowed tool not offered by the upstream MCP server.");
            }
        }
        let count = definitions.len();
        let mut catalog = self.catalog();
        catalog.tools = definitions;
        catalog.names = names;
        count
    }

    /// The definitions as last listed.
    fn definitions(&self) -> Vec<Tool> {
        self.catalog().tools.clone()
    }

    /// The upstream's name of the tool offered as `name`.
    fn upstream_name(&self, name: &str) -> Option<String> {
        self.catalog().names.get(name).cloned()
    }

    fn catalog(&self) -> MutexGuard<'_, Catalog> {
        self.catalog.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A built `type = "mcp"` tool kind.
pub struct UpstreamTools {
    config: UpstreamToolConfig,
    /// How logs and errors name the upstream: its URL, or its command.
    target: String,
    auth: UpstreamAuth,
    /// The tools as last listed.
    listing: Arc<Listing>,
    /// A `command` upstream's processes; `None` for a `url` one.
    processes: Option<stdio::Processes>,
    /// The session of every call, unless the upstream is reached by token exchange.
    shared: Arc<Lane>,
    /// Token exchange: a session per caller's access token.
    callers: Lanes,
    /// Parent of every client session's token; cancelled on drop.
    cancel: CancellationToken,
    /// The id of the next session.
    next_id: AtomicU64,
}

impl Drop for UpstreamTools {
    fn drop(&mut self) {
        self.callers.close_all();
        self.cancel.cancel();
    }
}

impl UpstreamTools {
    /// Tools of the upstream server of `config`; connects on first use.
    pub fn new(config: UpstreamToolConfig) -> Self {
        let auth = UpstreamAuth::new(&config);
        let callers = Lanes::new(
            config
                .auth
                .max_sessions
                .unwrap_or(auth_config::DEFAULT_MAX_SESSIONS),
            Duration::from_secs(
                config
                    .auth
                    .session_idle_secs
                    .unwrap_or(auth_config::DEFAULT_SESSION_IDLE_SECS),
            ),
        );
        let listing = Arc::new(Listing::new(&config));
        let processes = stdio::Processes::new(&config, listing.clone());
        Self {
            target: config.target(),
            config,
            auth,
            listing,
            processes,
            shared: Arc::default(),
            callers,
            cancel: CancellationToken::new(),
            next_id: AtomicU64::new(1),
        }
    }

    /// The upstream's tools (prefixed, filtered) as last listed.
    pub fn definitions(&self) -> Vec<Tool> {
        self.listing.definitions()
    }

    /// What the upstream's tool names are prefixed with.
    pub fn prefix(&self) -> &str {
        &self.config.prefix
    }

    /// Whether the upstream is reached for the caller (token exchange): then only a call
    /// with an OAuth-identified caller can connect or list its tools.
    pub fn acts_for_caller(&self) -> bool {
        self.auth.per_caller()
    }

    /// Connects (or reconnects) and refreshes the tool list, for `identity` (whose token
    /// is exchanged when the upstream is reached by token exchange). A stdio upstream: starts
    /// its process (`session`'s, with a process per session; without a session, one just to
    /// list the tools when none are listed yet) and waits until it is up or has failed.
    ///
    /// Bounded by `timeout_secs`.
    ///
    /// # Errors
    /// A message saying why the upstream cannot be used.
    pub async fn connect(
        &self,
        identity: &Identity,
        session: Option<&ClientSession>,
    ) -> Result<(), Error> {
        if let Some(processes) = &self.processes {
            return tokio::time::timeout(self.timeout(), processes.connect(session))
                .await
                .unwrap_or_else(|_| Err(self.timed_out()));
        }
        let lane = self.lane(identity)?;
        let work = async {
            let mut retried = false;
            loop {
                self.auth.authorize(&lane.slot, identity).await?;
                let before = lane.slot.rejections();
                match self.connect_once(&lane).await {
                    Err(_) if lane.slot.rejections() != before && !retried => retried = true,
                    Err(_) if lane.slot.rejections() != before => {
                        return Err(self.token_refused());
                    }
                    other => return other,
                }
            }
        };
        tokio::time::timeout(self.timeout(), work)
            .await
            .unwrap_or_else(|_| Err(self.timed_out()))
    }

    async fn connect_once(&self, lane: &Lane) -> Result<(), Error> {
        let _connecting = lane.connecting.lock().await;
        if let Some(connection) = lane.current() {
            match self.refresh(lane, &connection).await {
                // `refresh` dropped the session: it is broken, so open a new one (once).
                Err(_) if lane.current().is_none() => {}
                other => return other,
            }
        }
        self.open_and_list(lane).await.map(drop)
    }

    /// Calls upstream tool `name` (prefixed name, as listed) for `ctx`'s caller.
    ///
    /// Connects first when there is no session. Bounded by `timeout_secs` (getting a token
    /// and connecting included) and by `ctx.cancel`.
    ///
    /// # Errors
    /// [`Error::InvalidArguments`] for a tool the upstream does not offer (after listing
    /// its tools again) or arguments it rejects (JSON-RPC `-32602`); [`Error::Cancelled`]
    /// when `ctx.cancel` fires first; [`Error::Failed`] for everything else: no token to be
    /// had (a token exchange for a caller without an OAuth token, an authorization server
    /// that refuses), upstream not reachable, no answer in time, a protocol error, or a tool
    /// result with `isError`.
    pub async fn call(
        &self,
        name: &str,
        args: JsonObject,
        ctx: &CallContext,
    ) -> Result<Output, Error> {
        // Dropping `work` (timeout or cancel) abandons the upstream request; rmcp then sends
        // `notifications/cancelled` for it.
        let work = async {
            match &self.processes {
                Some(processes) => processes.call(name, args, ctx.session.as_ref()).await,
                None => self.call_authorized(name, args, &ctx.identity).await,
            }
        };
        let span = self.span(name);
        let work = tokio::time::timeout(self.timeout(), work.instrument(span.clone()));
        let result = tokio::select! {
            biased;
            () = ctx.cancel.cancelled() => {
                tracing::debug!(upstream = %self.target, tool = %name, "Upstream call cancelled by the caller.");
                Err(Error::Cancelled)
            }
            result = work => result.unwrap_or_else(|_| Err(self.timed_out())),
        };
        if let Err(e) = &result {
            crate::telemetry::trace::fail(&span, e.label(), e.to_string());
        }
        result
    }

    /// The client span of a call of `name` (disabled when tracing is off).
    fn span(&self, name: &str) -> tracing::Span {
        use crate::telemetry::trace;
        if !trace::on() {
            return tracing::Span::none();
        }
        let server = self
            .config
            .url
            .as_deref()
            .and_then(|u| reqwest::Url::parse(u).ok());
        tracing::info_span!(
            target: trace::TARGET,
            "mcp.client",
            otel.name = trace::span_name("tools/call", name).as_str(),
            otel.kind = "client",
            mcp.method.name = "tools/call",
            gen_ai.tool.name = name,
            gen_ai.operation.name = "execute_tool",
            server.address = server.as_ref().and_then(|u| u.host_str()),
            server.port = server.as_ref().and_then(reqwest::Url::port_or_known_default),
            network.transport = if self.is_stdio() { "pipe" } else { "tcp" },
            switchboard.upstream = %self.target,
        )
    }

    /// Whether the upstream is a process the gateway starts (`command`).
    pub fn is_stdio(&self) -> bool {
        self.processes.is_some()
    }

    /// Whether the upstream runs a process per MCP session (`process = "per_session"`).
    pub fn per_session(&self) -> bool {
        self.is_stdio() && self.config.process == ProcessMode::PerSession
    }

    /// Whether `config` would start the same processes as this: a reload that keeps such an
    /// entry keeps these tools, and with them their running processes.
    pub fn same_process(&self, config: &UpstreamToolConfig) -> bool {
        self.config.same_process(config)
    }

    /// Ends a `command` upstream's processes for good (agent reloaded or removed, gateway
    /// shutting down): each is closed gracefully (stdin closed, then SIGTERM, then SIGKILL,
    /// its process group swept), and waited for, within a bound. Later calls fail with a
    /// tool error saying so. Nothing for a `url` upstream.
    pub async fn stop(&self) {
        if let Some(processes) = &self.processes {
            processes.stop().await;
        }
    }

    /// The call with a token in the lane's slot; once more with a new one when the upstream
    /// refused it (HTTP 401).
    async fn call_authorized(
        &self,
        name: &str,
        args: JsonObject,
        identity: &Identity,
    ) -> Result<Output, Error> {
        let lane = self.lane(identity)?;
        let mut retried = false;
        loop {
            self.auth.authorize(&lane.slot, identity).await?;
            let before = lane.slot.rejections();
            match self.call_inner(&lane, name, args.clone(), before).await {
                Err(_) if lane.slot.rejections() != before && !retried => {
                    tracing::debug!(upstream = %self.target, tool = %name, "The upstream MCP server refused the token (401); calling again with a new one.");
                    retried = true;
                }
                Err(_) if lane.slot.rejections() != before => return Err(self.token_refused()),
                other => return other,
            }
        }
    }

    async fn call_inner(
        &self,
        lane: &Lane,
        name: &str,
        args: JsonObject,
        rejections: u64,
    ) -> Result<Output, Error> {
        let (connection, fresh) = self.connection(lane).await?;
        let upstream = match self.upstream_name(name) {
            Some(upstream) => upstream,
            None if fresh => return Err(self.unknown_tool(name)),
            None => {
                // The upstream may have added the tool since we listed them: look once more.
                self.refresh(lane, &connection).await?;
                self.upstream_name(name)
                    .ok_or_else(|| self.unknown_tool(name))?
            }
        };
        let params = CallToolRequestParams::new(upstream.clone()).with_arguments(args);
        let params = crate::telemetry::trace::with_meta(params);
        match connection.service.peer().call_tool(params).await {
            Ok(result) => into_output(result, &upstream),
            // Refused for its token: the session is fine, the caller retries with a new one.
            Err(_) if lane.slot.rejections() != rejections => Err(self.token_refused()),
            Err(e) => Err(self.service_error(lane, &connection, &upstream, e)),
        }
    }

    /// The lane of `identity`'s calls.
    fn lane(&self, identity: &Identity) -> Result<LaneUse, Error> {
        if !self.auth.per_caller() {
            return Ok(LaneUse::new(self.shared.clone(), std::time::Instant::now()));
        }
        let token = self.auth.subject_token(identity)?;
        self.callers.get(token).map_err(|lanes::Full(max)| {
            Error::Failed(format!(
                "upstream MCP server {} has {max} callers' sessions open and all in use (auth.max_sessions); retry shortly",
                self.target
            ))
        })
    }

    /// The lane's open session, opening one (and listing its tools) if there is none;
    /// `true` when this call opened it.
    async fn connection(&self, lane: &Lane) -> Result<(Arc<Connection>, bool), Error> {
        if let Some(connection) = lane.current() {
            return Ok((connection, false));
        }
        let _connecting = lane.connecting.lock().await;
        // Another call may have connected while this one waited.
        if let Some(connection) = lane.current() {
            return Ok((connection, false));
        }
        Ok((self.open_and_list(lane).await?, true))
    }

    /// Opens a session, lists its tools and keeps both. Called with `connecting` held.
    async fn open_and_list(&self, lane: &Lane) -> Result<Arc<Connection>, Error> {
        let connection = Arc::new(self.open(lane).await?);
        let tools = match connection.service.peer().list_all_tools().await {
            Ok(tools) => tools,
            Err(e) => {
                connection.close();
                return Err(self.list_error(e));
            }
        };
        lane.install(connection.clone());
        let count = self.listing.store(tools);
        tracing::debug!(upstream = %self.target, session = connection.id, tools = count, "Connected to the upstream MCP server.");
        Ok(connection)
    }

    /// Opens a client session: `initialize` with our identity, the configured headers, and
    /// the lane's token on every request.
    async fn open(&self, lane: &Lane) -> Result<Connection, Error> {
        let url = self.config.url.as_deref().unwrap_or_default();
        let outbound = crate::net::shared_client().map_err(|e| {
            Error::Failed(format!("cannot connect to upstream MCP server {url}: {e}"))
        })?;
        let headers = self.config.header_map().map_err(|e| {
            Error::Failed(format!("cannot connect to upstream MCP server {url}: {e}"))
        })?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if id == 1 {
            tracing::debug!(url = %url, session = id, headers = headers.len(), "Connecting to the upstream MCP server.");
        } else {
            tracing::debug!(url = %url, session = id, headers = headers.len(), "Reconnecting to the upstream MCP server.");
        }
        let client = http::AuthorizedClient::new(outbound, lane.slot.clone());
        let transport = StreamableHttpClientTransport::with_client(
            client,
            StreamableHttpClientTransportConfig::with_uri(url).custom_headers(headers),
        );
        let identity = ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("switchboard", env!("CARGO_PKG_VERSION")),
        );
        // Outside the call's spans: the connection outlives the call.
        let service = crate::telemetry::trace::detached(
            identity.serve_with_ct(transport, self.cancel.child_token()),
        )
        .await
        .map_err(|e| self.init_error(e))?;
        // We keep our own list and refresh it on purpose: rmcp's response cache would
        // answer a refresh from memory when the upstream sends a `ttlMs`.
        service
            .peer()
            .set_response_cache_config(ClientCacheConfig::disabled())
            .await;
        Ok(Connection { id, service })
    }

    /// Lists the tools of `connection` again and keeps them.
    async fn refresh(&self, lane: &Lane, connection: &Arc<Connection>) -> Result<(), Error> {
        match connection.service.peer().list_all_tools().await {
            Ok(tools) => {
                // A stale list (of a session dropped meanwhile) must not overwrite a newer one.
                if lane.is_current(connection) {
                    let count = self.listing.store(tools);
                    tracing::debug!(upstream = %self.target, session = connection.id, tools = count, "Listed the upstream MCP server's tools.");
                }
                Ok(())
            }
            Err(e) => {
                if is_transport_failure(&e) {
                    self.discard(lane, connection);
                }
                Err(self.list_error(e))
            }
        }
    }

    /// Drops `connection` if it is still `lane`'s, so that the next call reconnects.
    fn discard(&self, lane: &Lane, connection: &Arc<Connection>) {
        if lane.forget(connection) {
            tracing::debug!(upstream = %self.target, session = connection.id, "Dropped the upstream MCP session; the next call reconnects.");
        }
        connection.close();
    }

    fn upstream_name(&self, name: &str) -> Option<String> {
        self.listing.upstream_name(name)
    }

    fn token_refused(&self) -> Error {
        Error::Failed(format!(
            "upstream MCP server {} refused the token the gateway obtained for it (HTTP 401), again with a new one: check [tools.auth] (resource, audience, scopes) against what the upstream accepts",
            self.target
        ))
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.config.timeout_secs.max(1))
    }

    fn timed_out(&self) -> Error {
        Error::TimedOut(format!(
            "upstream MCP server {} did not answer within {}s",
            self.target,
            self.config.timeout_secs.max(1)
        ))
    }

    fn unknown_tool(&self, name: &str) -> Error {
        Error::InvalidArguments(format!(
            "unknown tool {name:?}: the upstream MCP server {} does not offer it{}",
            self.target,
            if self.config.allow.is_some() {
                " (or `allow` leaves it out)"
            } else {
                ""
            }
        ))
    }

    fn unreachable(&self, detail: &str) -> Error {
        Error::Failed(format!(
            "upstream MCP server {} is not reachable: {detail} (check that it is running and that its url and headers are right)",
            self.target
        ))
    }

    fn init_error(&self, e: ClientInitializeError) -> Error {
        match e {
            ClientInitializeError::JsonRpcError(data) => Error::Failed(format!(
                "upstream MCP server {} refused the MCP handshake: {} (code {})",
                self.target, data.message, data.code.0
            )),
            ClientInitializeError::TransportError { error, .. } => {
                self.unreachable(&failure_detail(&error))
            }
            ClientInitializeError::ConnectionClosed(detail) => self.unreachable(&format!(
                "the connection closed during the MCP handshake ({detail})"
            )),
            other => self.unreachable(&error_chain(&other)),
        }
    }

    fn list_error(&self, e: ServiceError) -> Error {
        match e {
            ServiceError::Timeout { .. } => self.timed_out(),
            ServiceError::McpError(data) => Error::Failed(format!(
                "upstream MCP server {} could not list its tools: {} (code {})",
                self.target, data.message, data.code.0
            )),
            other if is_transport_failure(&other) => self.unreachable(&transport_detail(&other)),
            other => Error::Failed(format!(
                "upstream MCP server {} could not list its tools: {}",
                self.target,
                error_chain(&other)
            )),
        }
    }

    /// Maps a failed `tools/call`; drops the session when the transport failed.
    fn service_error(
        &self,
        lane: &Lane,
        connection: &Arc<Connection>,
        tool: &str,
        e: ServiceError,
    ) -> Error {
        if is_transport_failure(&e) {
            self.discard(lane, connection);
            return self.unreachable(&transport_detail(&e));
        }
        match e {
            ServiceError::McpError(data) if data.code == ErrorCode::INVALID_PARAMS => {
                Error::InvalidArguments(data.message.into_owned())
            }
            ServiceError::McpError(data) => Error::Failed(format!(
                "upstream MCP server {} failed on {tool}: {} (code {})",
                self.target, data.message, data.code.0
            )),
            ServiceError::Timeout { .. } => self.timed_out(),
            other => Error::Failed(format!(
                "upstream MCP server {} failed on {tool}: {}",
                self.target,
                error_chain(&other)
            )),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
