//! For the federation tests: an MCP client that records what servers send it and answers
//! their requests (a person at an MCP host), the reference server (server-everything) over
//! Streamable HTTP, and an in-test rmcp upstream with content of every kind and tools that
//! ask, wait and change.

// Sampling and logging are deprecated by SEP-2577 but are what these upstreams speak.
#![allow(deprecated)]

use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use poem::listener::TcpAcceptor;
use poem::{EndpointExt as _, Route};
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, ContentBlock,
    CreateMessageRequestParams, CreateMessageResult, ElicitRequestParams, ElicitResult,
    ElicitationAction, Implementation, ListToolsResult, LoggingMessageNotificationParam,
    PaginatedRequestParams, ProgressNotificationParam, ResourceContents,
    ResourceUpdatedNotificationParam, SamplingMessage, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{NotificationContext, RequestContext, RunningService};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ClientHandler, ErrorData, RoleClient, RoleServer, ServerHandler, ServiceExt as _};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt as _;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::stdio_upstream::{everything, node};

/// How long a test waits for something that should happen at once.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// What a [`Person`] saw.
#[derive(Default)]
pub struct Seen {
    pub progress: Mutex<Vec<ProgressNotificationParam>>,
    pub logs: Mutex<Vec<LoggingMessageNotificationParam>>,
    pub updated: Mutex<Vec<String>>,
    pub elicitations: Mutex<Vec<String>>,
    pub samplings: AtomicUsize,
    pub tools_changed: AtomicUsize,
    pub changed: Notify,
}

/// An MCP client with a person behind it: answers elicitation (accepts, with a name) and
/// sampling (a fixed answer) when it declares them, and records every notification.
#[derive(Clone)]
pub struct Person {
    pub seen: Arc<Seen>,
    capabilities: ClientCapabilities,
}

impl Person {
    /// A client declaring elicitation and sampling.
    pub fn able() -> Self {
        Self::with(json!({"elicitation": {}, "sampling": {}}))
    }

    /// A client declaring neither.
    pub fn plain() -> Self {
        Self::with(json!({}))
    }

    fn with(capabilities: Value) -> Self {
        Self {
            seen: Arc::default(),
            capabilities: serde_json::from_value(capabilities).unwrap(),
        }
    }

    /// Waits until `check` holds on what was seen (re-checked on every notification).
    pub async fn wait_for(&self, what: &str, check: impl Fn(&Seen) -> bool) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let notified = self.seen.changed.notified();
            if check(&self.seen) {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("the client did not see {what} within {PATIENCE:?}");
            }
        }
    }

    fn touched(&self) {
        self.seen.changed.notify_waiters();
    }
}

impl ClientHandler for Person {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            self.capabilities.clone(),
            Implementation::new("test-person", "1.0.0"),
        )
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        let message = match &request {
            ElicitRequestParams::FormElicitationParams { message, .. } => message.clone(),
            ElicitRequestParams::UrlElicitationParams { message, .. } => message.clone(),
            _ => String::new(),
        };
        self.seen.elicitations.lock().unwrap().push(message);
        self.touched();
        Ok(ElicitResult::new(ElicitationAction::Accept)
            .with_content(json!({"name": "Ada Lovelace", "check": true, "integer": 7})))
    }

    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        self.seen.samplings.fetch_add(1, Ordering::SeqCst);
        self.touched();
        let asked = serde_json::to_string(&params.messages).unwrap();
        Ok(CreateMessageResult::new(
            SamplingMessage::assistant_text(format!("sampled answer to {} bytes", asked.len())),
            "test-model".to_owned(),
        )
        .with_stop_reason(CreateMessageResult::STOP_REASON_END_TURN))
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.seen.progress.lock().unwrap().push(params);
        self.touched();
    }

    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.seen.logs.lock().unwrap().push(params);
        self.touched();
    }

    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.seen.updated.lock().unwrap().push(params.uri);
        self.touched();
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.seen.tools_changed.fetch_add(1, Ordering::SeqCst);
        self.touched();
    }
}

pub type PersonClient = RunningService<RoleClient, Person>;

/// `person`'s client over Streamable HTTP at `url`.
pub async fn connect(url: &str, person: &Person) -> PersonClient {
    switchboard::net::install_crypto_provider();
    let transport = rmcp::transport::StreamableHttpClientTransport::from_uri(url.to_owned());
    person
        .clone()
        .serve(transport)
        .await
        .expect("the client connects")
}

/// `person`'s client of server-everything started directly over stdio (what the gateway's
/// answers are compared with).
pub async fn connect_directly(person: &Person) -> PersonClient {
    let mut command = tokio::process::Command::new(node());
    command.arg(everything()).arg("stdio").kill_on_drop(true);
    let (transport, _stderr) = rmcp::transport::TokioChildProcess::builder(command)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    person
        .clone()
        .serve(transport)
        .await
        .expect("server-everything answers directly")
}

/// server-everything in its Streamable HTTP mode, on a free port; killed on drop.
pub struct EverythingHttp {
    pub url: String,
    _child: tokio::process::Child,
}

impl EverythingHttp {
    /// Starts it and waits (from its stderr, within [`PATIENCE`]) until it listens.
    pub async fn start() -> Self {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let mut child = tokio::process::Command::new(node())
            .arg(everything())
            .arg("streamableHttp")
            .env("PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let ready = async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if line.contains("listening on port") {
                    return;
                }
            }
            panic!("server-everything (streamableHttp) exited before it listened");
        };
        tokio::time::timeout(PATIENCE, ready)
            .await
            .expect("server-everything listens");
        // Keep draining its stderr, so that it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            url: format!("http://127.0.0.1:{port}/mcp"),
            _child: child,
        }
    }
}

/// What the in-test upstream saw.
#[derive(Default)]
pub struct UpstreamSeen {
    /// Calls of `wait` that started.
    pub waiting: AtomicUsize,
    pub cancelled: AtomicUsize,
    pub asked: Mutex<Vec<String>>,
    pub changed: Notify,
}

/// An in-test rmcp upstream over Streamable HTTP.
#[derive(Clone)]
struct Upstream {
    seen: Arc<UpstreamSeen>,
}

/// Every kind of content, and structured content: what the `kinds` tool answers.
pub fn every_kind() -> CallToolResult {
    let link = rmcp::model::Resource::new("file:///notes/today.md", "today")
        .with_mime_type("text/markdown");
    let mut result = CallToolResult::success(vec![
        ContentBlock::text("plain text"),
        ContentBlock::image("iVBORw0KGgo=", "image/png"),
        ContentBlock::audio("UklGRiQAAABXQVZF", "audio/wav"),
        ContentBlock::resource(
            ResourceContents::text("embedded text", "memo://one").with_mime_type("text/plain"),
        ),
        ContentBlock::resource(
            ResourceContents::blob("AAEC", "memo://two").with_mime_type("application/octet-stream"),
        ),
        ContentBlock::resource_link(link),
    ]);
    result.structured_content = Some(json!({"temperature": 21.5, "tags": ["a", "b"]}));
    // What a client before 2026-07-28 receives: rmcp leaves out `resultType` for it.
    result.result_type = None;
    result
}

fn tool(name: &str, description: &str) -> Tool {
    Tool::new(
        name.to_owned(),
        description.to_owned(),
        Arc::new(serde_json::from_value(json!({"type": "object"})).unwrap()),
    )
}

impl ServerHandler for Upstream {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .build(),
        )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(vec![
            tool("kinds", "Answers with content of every kind."),
            tool(
                "ask",
                "Asks the client (elicitation), whatever it declared.",
            ),
            tool(
                "sample",
                "Asks the client for a sampling, whatever it declared.",
            ),
            tool("wait", "Waits until cancelled."),
            tool("change", "Says its tool list changed."),
            tool("secret", "A tool the gateway's filters leave out."),
        ]))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::CallToolResponse, ErrorData> {
        let text = |t: String| Ok(CallToolResult::success(vec![ContentBlock::text(t)]).into());
        match request.name.as_ref() {
            "kinds" => Ok(every_kind().into()),
            "ask" => {
                let params = ElicitRequestParams::FormElicitationParams {
                    meta: None,
                    message: "Who are you?".to_owned(),
                    requested_schema: serde_json::from_value(json!({
                        "type": "object",
                        "properties": {"name": {"type": "string"}},
                        "required": ["name"]
                    }))
                    .unwrap(),
                };
                let request = rmcp::model::ServerRequest::ElicitRequest(
                    rmcp::model::ElicitRequest::new(params),
                );
                let answer = context.peer.send_request(request).await;
                let said = match answer {
                    Ok(r) => format!("answered: {}", serde_json::to_string(&r).unwrap()),
                    Err(rmcp::ServiceError::McpError(e)) => {
                        format!("error {}: {}", e.code.0, e.message)
                    }
                    Err(e) => format!("failed: {e}"),
                };
                self.seen.asked.lock().unwrap().push(said.clone());
                text(said)
            }
            "sample" => {
                let params =
                    CreateMessageRequestParams::new(vec![SamplingMessage::user_text("hello")], 20);
                #[allow(deprecated)]
                let said = match context.peer.create_message(params).await {
                    Ok(r) => format!("sampled: {}", serde_json::to_string(&r).unwrap()),
                    Err(rmcp::ServiceError::McpError(e)) => {
                        format!("error {}: {}", e.code.0, e.message)
                    }
                    Err(e) => format!("failed: {e}"),
                };
                text(said)
            }
            "wait" => {
                self.seen.waiting.fetch_add(1, Ordering::SeqCst);
                self.seen.changed.notify_waiters();
                context.ct.cancelled().await;
                self.seen.cancelled.fetch_add(1, Ordering::SeqCst);
                self.seen.changed.notify_waiters();
                text("cancelled".to_owned())
            }
            "change" => {
                let _ = context.peer.notify_tool_list_changed().await;
                text("changed".to_owned())
            }
            "secret" => text("secret".to_owned()),
            other => Err(ErrorData::invalid_params(
                format!("unknown tool {other}"),
                None,
            )),
        }
    }
}

/// The in-test upstream, serving on a loopback port until dropped.
pub struct TestUpstream {
    pub url: String,
    pub seen: Arc<UpstreamSeen>,
    stop: CancellationToken,
}

impl Drop for TestUpstream {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl TestUpstream {
    pub async fn start() -> Self {
        switchboard::net::install_crypto_provider();
        let seen = Arc::new(UpstreamSeen::default());
        let stop = CancellationToken::new();
        let server = Upstream { seen: seen.clone() };
        let service: StreamableHttpService<Upstream, LocalSessionManager> =
            StreamableHttpService::new(
                move || Ok(server.clone()),
                Arc::new(LocalSessionManager::default()),
                StreamableHttpServerConfig::default()
                    .disable_allowed_hosts()
                    .with_cancellation_token(stop.child_token()),
            );
        let app = Route::new()
            .at("/mcp", poem::endpoint::TowerCompatExt::compat(service))
            .map_to_response();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/mcp", listener.local_addr().unwrap());
        let acceptor = TcpAcceptor::from_tokio(listener).unwrap();
        let signal = stop.clone().cancelled_owned();
        tokio::spawn(
            poem::Server::new_with_acceptor(acceptor).run_with_graceful_shutdown(
                app,
                signal,
                Some(Duration::from_secs(1)),
            ),
        );
        Self { url, seen, stop }
    }

    /// Waits until the upstream saw `n` cancellations.
    pub async fn wait_cancelled(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let notified = self.seen.changed.notified();
            if self.seen.cancelled.load(Ordering::SeqCst) >= n {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("the upstream did not see the cancellation within {PATIENCE:?}");
            }
        }
    }
}

/// Polls `cond` (every 20 ms, up to [`PATIENCE`]) until it holds.
pub async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
