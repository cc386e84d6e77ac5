//! `type = "mcp"`: the tools of an upstream MCP server (rmcp client over Streamable HTTP).
//!
//! # Connection
//!
//! One rmcp client session per [`UpstreamTools`], opened lazily by the first
//! [`UpstreamTools::connect`] or [`UpstreamTools::call`] and shared by every call after it
//! (calls run concurrently over the one session; rmcp multiplexes them). Opening it lists the
//! upstream's tools (every page) and caches their definitions, renamed `prefix + name` and
//! filtered by `allow`; [`UpstreamTools::definitions`] returns that cache, which survives a
//! lost connection (the tools are still offered; the next call reconnects).
//!
//! When the transport fails (upstream down, connection refused, session closed) the client
//! is dropped and the call fails; the *next* call opens a new one. A call makes at most one
//! connect attempt, so a dead upstream costs each call one refused connection, not a storm.
//!
//! A call is bounded by `timeout_secs` (connecting included) and by the caller's
//! cancellation token. Either way the call's future is dropped, and rmcp then sends the
//! upstream a `notifications/cancelled` for the abandoned request.
//!
//! The client's background tasks are children of a token cancelled when the
//! `UpstreamTools` is dropped, so none outlives it.
//!
//! Header values are secrets (API keys, bearer tokens): they are never logged, and the
//! configuration's `Debug` output redacts them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, ContentBlock,
    ErrorCode, Implementation, JsonObject, ResourceContents, Tool,
};
use rmcp::service::{ClientInitializeError, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientCacheConfig, RoleClient, ServiceError, ServiceExt as _};
use tokio_util::sync::CancellationToken;

use super::{CallContext, Error, Output};

mod config;

pub use config::UpstreamToolConfig;

/// One open client session with the upstream.
struct Connection {
    /// Tells this session from its successors, so a call that saw it fail drops only it.
    id: u64,
    /// The rmcp client. Dropping the last `Arc` closes it (its drop guard cancels it).
    service: RunningService<RoleClient, ClientConfig>,
}

impl Connection {
    /// Stops the client's tasks now, even while calls still hold it (they fail at once).
    fn close(&self) {
        self.service.cancellation_token().cancel();
    }
}

/// What [`UpstreamTools`] knows about its upstream.
#[derive(Default)]
struct State {
    /// The open session, if any.
    connection: Option<Arc<Connection>>,
    /// The definitions as last listed: prefixed, filtered by `allow`.
    tools: Vec<Tool>,
    /// Prefixed name → upstream name, for the tools in `tools`.
    names: HashMap<String, String>,
}

/// A built `type = "mcp"` tool kind.
pub struct UpstreamTools {
    config: UpstreamToolConfig,
    /// A `std` mutex: held only to read or swap fields, never across `.await`.
    state: Mutex<State>,
    /// Held while a session is opened and its tools listed, so that concurrent first
    /// calls open one session, not one each.
    connecting: tokio::sync::Mutex<()>,
    /// Parent of every client session's token; cancelled on drop.
    cancel: CancellationToken,
    /// The id of the next session.
    next_id: AtomicU64,
}

impl Drop for UpstreamTools {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl UpstreamTools {
    /// Tools of the upstream server of `config`; connects on first use.
    pub fn new(config: UpstreamToolConfig) -> Self {
        Self {
            config,
            state: Mutex::new(State::default()),
            connecting: tokio::sync::Mutex::new(()),
            cancel: CancellationToken::new(),
            next_id: AtomicU64::new(1),
        }
    }

    /// The upstream's tools (prefixed, filtered) as last listed.
    pub fn definitions(&self) -> Vec<Tool> {
        self.state().tools.clone()
    }

    /// Connects (or reconnects) and refreshes the tool list.
    ///
    /// Bounded by `timeout_secs`.
    ///
    /// # Errors
    /// A message saying why the upstream cannot be used.
    pub async fn connect(&self) -> Result<(), Error> {
        let work = async {
            let _connecting = self.connecting.lock().await;
            let current = self.state().connection.clone();
            if let Some(connection) = current {
                match self.refresh(&connection).await {
                    // `refresh` dropped the session: it is broken, so open a new one (once).
                    Err(_) if self.state().connection.is_none() => {}
                    other => return other,
                }
            }
            self.open_and_list().await.map(drop)
        };
        tokio::time::timeout(self.timeout(), work)
            .await
            .unwrap_or_else(|_| Err(self.timed_out()))
    }

    /// Calls upstream tool `name` (prefixed name, as listed).
    ///
    /// Connects first when there is no session. Bounded by `timeout_secs` (connecting
    /// included) and by `ctx.cancel`.
    ///
    /// # Errors
    /// [`Error::InvalidArguments`] for a tool the upstream does not offer (after listing
    /// its tools again) or arguments it rejects (JSON-RPC `-32602`); [`Error::Cancelled`]
    /// when `ctx.cancel` fires first; [`Error::Failed`] for everything else: upstream not
    /// reachable, no answer in time, a protocol error, or a tool result with `isError`.
    pub async fn call(
        &self,
        name: &str,
        args: JsonObject,
        ctx: &CallContext,
    ) -> Result<Output, Error> {
        // Dropping `work` (timeout or cancel) abandons the upstream request; rmcp then sends
        // `notifications/cancelled` for it.
        let work = tokio::time::timeout(self.timeout(), self.call_inner(name, args));
        tokio::select! {
            biased;
            () = ctx.cancel.cancelled() => {
                tracing::debug!(url = %self.config.url, tool = %name, "Upstream call cancelled by the caller.");
                Err(Error::Cancelled)
            }
            result = work => result.unwrap_or_else(|_| Err(self.timed_out())),
        }
    }

    async fn call_inner(&self, name: &str, args: JsonObject) -> Result<Output, Error> {
        let (connection, fresh) = self.connection().await?;
        let upstream = match self.upstream_name(name) {
            Some(upstream) => upstream,
            None if fresh => return Err(self.unknown_tool(name)),
            None => {
                // The upstream may have added the tool since we listed them: look once more.
                self.refresh(&connection).await?;
                self.upstream_name(name)
                    .ok_or_else(|| self.unknown_tool(name))?
            }
        };
        let params = CallToolRequestParams::new(upstream.clone()).with_arguments(args);
        match connection.service.peer().call_tool(params).await {
            Ok(result) => into_output(result, &upstream),
            Err(e) => Err(self.service_error(&connection, &upstream, e)),
        }
    }

    /// The open session, opening one (and listing its tools) if there is none; `true` when
    /// this call opened it.
    async fn connection(&self) -> Result<(Arc<Connection>, bool), Error> {
        if let Some(connection) = self.state().connection.clone() {
            return Ok((connection, false));
        }
        let _connecting = self.connecting.lock().await;
        // Another call may have connected while this one waited.
        if let Some(connection) = self.state().connection.clone() {
            return Ok((connection, false));
        }
        Ok((self.open_and_list().await?, true))
    }

    /// Opens a session, lists its tools and keeps both. Called with `connecting` held.
    async fn open_and_list(&self) -> Result<Arc<Connection>, Error> {
        let connection = Arc::new(self.open().await?);
        let tools = match connection.service.peer().list_all_tools().await {
            Ok(tools) => tools,
            Err(e) => {
                connection.close();
                return Err(self.list_error(e));
            }
        };
        let count = self.store_tools(tools, &connection, true);
        tracing::debug!(url = %self.config.url, session = connection.id, tools = count, "Connected to the upstream MCP server.");
        Ok(connection)
    }

    /// Opens a client session: `initialize` with our identity and the configured headers.
    async fn open(&self) -> Result<Connection, Error> {
        let url = &self.config.url;
        // reqwest (rustls, provider chosen by the process) panics when building a client
        // without a crypto provider; `net::install_crypto_provider` installs one at startup.
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            return Err(Error::Failed(format!(
                "cannot connect to upstream MCP server {url}: no TLS crypto provider is installed"
            )));
        }
        let headers = self.config.header_map().map_err(|e| {
            Error::Failed(format!("cannot connect to upstream MCP server {url}: {e}"))
        })?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if id == 1 {
            tracing::debug!(url = %url, session = id, headers = headers.len(), "Connecting to the upstream MCP server.");
        } else {
            tracing::debug!(url = %url, session = id, headers = headers.len(), "Reconnecting to the upstream MCP server.");
        }
        let transport = StreamableHttpClientTransport::from_config(
            StreamableHttpClientTransportConfig::with_uri(url.as_str()).custom_headers(headers),
        );
        let identity = ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("switchboard", env!("CARGO_PKG_VERSION")),
        );
        let service = identity
            .serve_with_ct(transport, self.cancel.child_token())
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
    async fn refresh(&self, connection: &Arc<Connection>) -> Result<(), Error> {
        match connection.service.peer().list_all_tools().await {
            Ok(tools) => {
                let count = self.store_tools(tools, connection, false);
                tracing::debug!(url = %self.config.url, session = connection.id, tools = count, "Listed the upstream MCP server's tools.");
                Ok(())
            }
            Err(e) => {
                if is_transport_failure(&e) {
                    self.discard(connection);
                }
                Err(self.list_error(e))
            }
        }
    }

    /// Keeps the allowed `tools` of `connection`, prefixed, and makes `connection` the
    /// current session when `install`; otherwise keeps them only if `connection` is still
    /// current (a stale list must not overwrite a newer one). Returns how many were kept.
    fn store_tools(&self, tools: Vec<Tool>, connection: &Arc<Connection>, install: bool) -> usize {
        let mut names = HashMap::new();
        let mut definitions = Vec::new();
        for mut tool in tools {
            let upstream = tool.name.to_string();
            if let Some(allow) = &self.config.allow
                && !allow.contains(&upstream)
            {
                continue;
            }
            let prefixed = format!("{}{upstream}", self.config.prefix);
            tool.name = prefixed.clone().into();
            if names.insert(prefixed, upstream).is_none() {
                definitions.push(tool);
            }
        }
        if let Some(allow) = &self.config.allow {
            for missing in allow.iter().filter(|a| !names.values().any(|u| u == *a)) {
                tracing::warn!(url = %self.config.url, tool = %missing, "Allowed tool not offered by the upstream MCP server.");
            }
        }
        let count = definitions.len();
        let mut state = self.state();
        if install {
            state.connection = Some(connection.clone());
        } else if state
            .connection
            .as_ref()
            .is_none_or(|c| c.id != connection.id)
        {
            return count;
        }
        state.tools = definitions;
        state.names = names;
        count
    }

    /// Drops `connection` if it is still the current one, so that the next call reconnects.
    fn discard(&self, connection: &Arc<Connection>) {
        let mut state = self.state();
        if state
            .connection
            .as_ref()
            .is_some_and(|c| c.id == connection.id)
        {
            state.connection = None;
            drop(state);
            tracing::debug!(url = %self.config.url, session = connection.id, "Dropped the upstream MCP session; the next call reconnects.");
        }
        connection.close();
    }

    fn upstream_name(&self, name: &str) -> Option<String> {
        self.state().names.get(name).cloned()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.config.timeout_secs.max(1))
    }

    fn timed_out(&self) -> Error {
        Error::TimedOut(format!(
            "upstream MCP server {} did not answer within {}s",
            self.config.url,
            self.config.timeout_secs.max(1)
        ))
    }

    fn unknown_tool(&self, name: &str) -> Error {
        Error::InvalidArguments(format!(
            "unknown tool {name:?}: the upstream MCP server {} does not offer it{}",
            self.config.url,
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
            self.config.url
        ))
    }

    fn init_error(&self, e: ClientInitializeError) -> Error {
        match e {
            ClientInitializeError::JsonRpcError(data) => Error::Failed(format!(
                "upstream MCP server {} refused the MCP handshake: {} (code {})",
                self.config.url, data.message, data.code.0
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
                self.config.url, data.message, data.code.0
            )),
            other if is_transport_failure(&other) => self.unreachable(&transport_detail(&other)),
            other => Error::Failed(format!(
                "upstream MCP server {} could not list its tools: {}",
                self.config.url,
                error_chain(&other)
            )),
        }
    }

    /// Maps a failed `tools/call`; drops the session when the transport failed.
    fn service_error(&self, connection: &Arc<Connection>, tool: &str, e: ServiceError) -> Error {
        if is_transport_failure(&e) {
            self.discard(connection);
            return self.unreachable(&transport_detail(&e));
        }
        match e {
            ServiceError::McpError(data) if data.code == ErrorCode::INVALID_PARAMS => {
                Error::InvalidArguments(data.message.into_owned())
            }
            ServiceError::McpError(data) => Error::Failed(format!(
                "upstream MCP server {} failed on {tool}: {} (code {})",
                self.config.url, data.message, data.code.0
            )),
            ServiceError::Timeout { .. } => self.timed_out(),
            other => Error::Failed(format!(
                "upstream MCP server {} failed on {tool}: {}",
                self.config.url,
                error_chain(&other)
            )),
        }
    }
}

/// Whether `e` means the session cannot be used any more.
fn is_transport_failure(e: &ServiceError) -> bool {
    matches!(
        e,
        ServiceError::TransportClosed
            | ServiceError::TransportSend(_)
            | ServiceError::Cancelled { .. }
    )
}

/// What went wrong with the transport, in words for the operator.
fn transport_detail(e: &ServiceError) -> String {
    match e {
        ServiceError::TransportSend(error) => failure_detail(error),
        ServiceError::TransportClosed => "the connection to it closed".to_owned(),
        ServiceError::Cancelled { .. } => "the MCP session ended".to_owned(),
        other => error_chain(other),
    }
}

/// The innermost cause of a transport error (rmcp's wrappers name Rust types), with the
/// usual network failures spelled out: the HTTP client's error says which request failed
/// but keeps its cause (refused, DNS, TLS, ...) out of its message and out of reach of
/// `source()` behind rmcp's wrapper, so it is read from the `Debug` text.
fn failure_detail(e: &(dyn std::error::Error + 'static)) -> String {
    let innermost = crate::net::innermost(e);
    let text = innermost.to_string();
    let text = text.strip_prefix("Client error: ").unwrap_or(&text);
    match crate::net::network_cause(innermost) {
        // "error sending request for url (...)" only repeats the URL the message names.
        Some(cause) if text.starts_with("error sending request") => cause.to_owned(),
        Some(cause) => format!("{text}: {cause}"),
        None => text.to_owned(),
    }
}

/// `e` and its sources, `: `-separated, without repeats (wrappers often repeat their source).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The output of a successful `tools/call` reply, or the failure it reports.
fn into_output(result: CallToolResult, tool: &str) -> Result<Output, Error> {
    if result.is_error == Some(true) {
        let text = content_text(&result.content);
        return Err(Error::Failed(if text.trim().is_empty() {
            format!("upstream tool {tool} failed without saying why")
        } else {
            text
        }));
    }
    match result.structured_content {
        Some(value) if !value.is_null() => Ok(Output::Json(value)),
        _ => Ok(Output::Text(content_text(&result.content))),
    }
}

/// The text of `content`, one block a line; non-text blocks are described briefly.
fn content_text(content: &[ContentBlock]) -> String {
    content
        .iter()
        .map(|block| match block {
            ContentBlock::Text(text) => text.text.clone(),
            ContentBlock::Image(image) => format!("[image {}]", image.mime_type),
            ContentBlock::Audio(audio) => format!("[audio {}]", audio.mime_type),
            ContentBlock::Resource(embedded) => match &embedded.resource {
                ResourceContents::TextResourceContents { text, .. } => text.clone(),
                ResourceContents::BlobResourceContents { uri, .. } => format!("[resource {uri}]"),
                _ => "[resource]".to_owned(),
            },
            ContentBlock::ResourceLink(link) => format!("[resource link {}]", link.uri),
            _ => "[content]".to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
