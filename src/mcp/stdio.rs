//! `switchboard stdio <agent>`: one agent served to one client over the process's stdin and
//! stdout, the way MCP hosts run local servers (Claude Desktop, VS Code, Cursor, MAF's
//! `MCPStdioTool`): they start the process, write JSON-RPC messages to its stdin one per line,
//! read the answers from its stdout and keep its stderr as its log.
//!
//! The agent is served by the same [`AgentServer`] as over HTTP: the same tools, the same
//! `[[policies]]` and `[[approvals]]`, the same audit records. What differs is everything the
//! HTTP edge does, which stdio has no use for:
//! - **Who calls.** A stdio client presents no token: the process runs as the local user, who
//!   can read the configuration and the data directory anyway. The caller is the configured
//!   client named with `--as` (`[[clients]]`; its `[[policies]]` apply and its name is in the
//!   logs and the audit records), else anonymous, as on an open gateway. Neither proves
//!   anything: it is a guard rail for what a local host may call, not a boundary against the
//!   user who runs the process.
//! - **One session**, for the life of the process: its audit records say transport `stdio`
//!   and the session id logged at start. No limits, no session registry, no admin API, no
//!   hot reload (restart the server to apply a change; hosts have a button for that).
//! - **Operator approvals cannot be given** (no admin API here): a call a `by = "operator"`
//!   rule covers is refused at once, saying so ([`Approvals::without_operators`]);
//!   `by = "client"` rules ask the user through their host (elicitation), as over HTTP.
//! - **Ending.** EOF on stdin (the client closed it: the MCP spec's way to stop a stdio
//!   server) gives the calls in flight [`STDIN_CLOSED_GRACE`] to finish, then cancels them;
//!   SIGTERM or SIGINT cancels them at once. Cancelled calls are answered and recorded as
//!   such, the audit trail is flushed, and the process exits 0.
//!
//! stdout carries nothing but JSON-RPC: logs go to stderr ([`crate::telemetry`]), and the
//! binary drops `[audit] jsonl = "stdout"` for this command, with a warning.

use std::sync::Arc;
use std::time::Duration;

use rmcp::RoleServer;
use rmcp::model::{ClientJsonRpcMessage, GetExtensions, ServerJsonRpcMessage};
use rmcp::service::{QuitReason, ServerInitializeError, serve_server_with_ct};
use rmcp::transport::Transport;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::handler::AgentServer;
use super::request::RequestId;
use crate::agents::Agent;
use crate::approvals::Approvals;
use crate::audit::redact::Redaction;
use crate::audit::{Origin, Trail};
use crate::config::ServerSpec;
use crate::identity::Identity;
use crate::metrics::Metrics;
use crate::permissions::Permissions;
use crate::sessions::{Peer, SessionStats};

/// The transport's name in logs and audit records.
pub const TRANSPORT: &str = "stdio";

/// How long calls in flight when stdin closes may still take before they are cancelled:
/// less than the 2 s the official Python SDK's client waits before SIGTERM (rmcp's waits 3 s),
/// so that their answers and records are written before anyone sends a signal.
pub const STDIN_CLOSED_GRACE: Duration = Duration::from_secs(1);

/// How long the audit trail may take to write its last records once the session ended.
const FLUSH: Duration = Duration::from_secs(2);

/// One agent, ready to serve its one stdio session.
pub struct StdioSession {
    server: AgentServer,
    identity: Arc<Identity>,
    id: Arc<str>,
    stats: Arc<SessionStats>,
    trail: Option<Arc<Trail>>,
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The client closed stdin (before or after the handshake).
    Closed,
    /// The shutdown future completed (SIGTERM or SIGINT).
    Stopped,
}

/// Why a session could not be served.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The client's first messages were not an MCP handshake.
    #[error("the MCP handshake failed: {0}")]
    Handshake(#[source] Box<ServerInitializeError>),
    /// The service's task failed (a panic in it).
    #[error("the MCP service stopped unexpectedly: {0}")]
    Crashed(#[source] tokio::task::JoinError),
}

impl StdioSession {
    /// A session of `agent` for the configured client `client` (`None`: anonymous), under
    /// the `[[policies]]` and `[audit]` redaction of `settings`, recorded in `trail`.
    pub fn new(
        agent: Arc<Agent>,
        settings: &ServerSpec,
        trail: Option<Arc<Trail>>,
        metrics: Arc<Metrics>,
        client: Option<Arc<str>>,
    ) -> Self {
        let permissions = Arc::new(Permissions::new(
            (*settings.policies).clone(),
            settings.source.clone(),
        ));
        let approvals = Approvals::without_operators(
            Redaction::new(&settings.audit.redact, settings.audit.redact_common_secrets),
            metrics,
        );
        // Never cancelled: a signal ends the session instead, which answers its calls.
        let stop_calls = CancellationToken::new();
        let server = AgentServer::new(
            agent,
            stop_calls,
            permissions,
            trail.clone(),
            approvals,
            Arc::default(),
            // A stdio client holds the process for as long as it likes: no tasks.
            None,
        );
        let stats = Arc::new(SessionStats::unregistered(Peer {
            client: client.clone(),
            ip: None,
            user_agent: None,
        }));
        let identity = Arc::new(Identity {
            client,
            principal: None,
            token: None,
        });
        Self {
            server,
            identity,
            id: uuid::Uuid::new_v4().to_string().into(),
            stats,
            trail,
        }
    }

    /// The session's id, as its audit records name it.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Serves the session on `transport` (the process's stdin and stdout, or any pair of
    /// pipes) until the client closes it or `shutdown` completes; then writes the audit
    /// records still queued.
    ///
    /// # Errors
    /// The client did not open with an MCP handshake, or the service failed.
    pub async fn serve<T>(
        self,
        transport: T,
        shutdown: impl Future<Output = ()>,
    ) -> Result<Ended, Error>
    where
        T: Transport<RoleServer> + 'static,
    {
        let transport = Tagged {
            inner: transport,
            stats: self.stats.clone(),
            identity: self.identity.clone(),
            origin: Origin {
                transport: Some(TRANSPORT),
                session: Some(self.id.clone()),
            },
            eof_at: None,
        };
        let ct = CancellationToken::new();
        tokio::pin!(shutdown);
        let handshake = tokio::select! {
            result = serve_server_with_ct(self.server.clone(), transport, ct.clone()) => result,
            () = &mut shutdown => return Ok(Ended::Stopped),
        };
        let running = match handshake {
            Ok(running) => running,
            // The client left before the handshake was done: nothing to serve, nothing wrong.
            Err(ServerInitializeError::ConnectionClosed(_)) => return Ok(Ended::Closed),
            Err(e) => return Err(Error::Handshake(Box::new(e))),
        };
        match running.peer().peer_info() {
            Some(info) => {
                tracing::info!(session = %self.id, mcp_client = %info.client_info.name, mcp_client_version = %info.client_info.version, protocol = %info.protocol_version, "Stdio session started.");
            }
            None => {
                tracing::info!(session = %self.id, "Stdio session started (MCP 2026-07-28: no handshake).");
            }
        }
        let waiting = running.waiting();
        tokio::pin!(waiting);
        let (ended, quit) = tokio::select! {
            quit = &mut waiting => (Ended::Closed, quit),
            () = &mut shutdown => {
                let in_flight = self.stats.in_flight();
                if in_flight > 0 {
                    tracing::info!(calls = in_flight, "Cancelling the calls in flight.");
                }
                // The calls answer "cancelled" (and are recorded so); rmcp then writes their
                // answers before it stops.
                self.stats.ended().cancel();
                ct.cancel();
                (Ended::Stopped, waiting.await)
            }
        };
        self.stats.ended().cancel();
        if let Some(trail) = &self.trail
            && tokio::time::timeout(FLUSH, trail.flush()).await.is_err()
        {
            tracing::warn!("Audit records still queued at exit could not all be written in time.");
        }
        match quit {
            Ok(QuitReason::JoinError(e)) | Err(e) => Err(Error::Crashed(e)),
            Ok(_) => Ok(ended),
        }
    }
}

/// The stdio transport, telling the handler what the HTTP edge tells it of an HTTP request:
/// who calls, and where (each request's extensions carry the identity, the audit origin, the
/// session's counters and the request's id). Counts requests in flight, and on EOF gives them
/// [`STDIN_CLOSED_GRACE`] before it ends the session, which cancels the rest.
struct Tagged<T> {
    inner: T,
    stats: Arc<SessionStats>,
    identity: Arc<Identity>,
    origin: Origin,
    /// When the client closed stdin. Kept here because `receive` is dropped and called
    /// again whenever rmcp has something to send: the grace runs once, from EOF.
    eof_at: Option<Instant>,
}

impl<T: Transport<RoleServer> + 'static> Transport<RoleServer> for Tagged<T> {
    type Error = T::Error;

    fn send(
        &mut self,
        item: ServerJsonRpcMessage,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.stats.on_server_message(&item);
        self.inner.send(item)
    }

    async fn receive(&mut self) -> Option<ClientJsonRpcMessage> {
        if self.eof_at.is_none() {
            match self.inner.receive().await {
                Some(mut message) => {
                    self.stats.on_client_message(&message);
                    if let ClientJsonRpcMessage::Request(req) = &mut message {
                        // The log line of a call names it by its JSON-RPC id here.
                        let id = RequestId(req.id.to_string().into());
                        let extensions = req.request.extensions_mut();
                        extensions.insert(id);
                        extensions.insert(self.stats.clone());
                        extensions.insert(self.identity.clone());
                        extensions.insert(self.origin.clone());
                    }
                    return Some(message);
                }
                None => {
                    self.eof_at = Some(Instant::now());
                    let in_flight = self.stats.in_flight();
                    tracing::info!(
                        calls_in_flight = in_flight,
                        "Stdin closed: ending the session."
                    );
                }
            }
        }
        let deadline = self.eof_at.unwrap_or_else(Instant::now) + STDIN_CLOSED_GRACE;
        // Answers go out meanwhile: rmcp polls this future beside its outgoing queue.
        while self.stats.in_flight() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if self.stats.in_flight() > 0 && !self.stats.ended().is_cancelled() {
            tracing::info!(
                calls = self.stats.in_flight(),
                "Cancelling the calls still in flight."
            );
        }
        // Calls still running answer "cancelled" now (see `AgentServer`).
        self.stats.ended().cancel();
        None
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.inner.close()
    }
}
