//! `TestGateway`: the real server on 127.0.0.1:0 with a temp data dir, plus small clients.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use switchboard::agents::AgentRegistry;
use switchboard::config::{ServerSpec, Vars};
use switchboard::state::AppState;
use switchboard::tools::Resources;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// A running gateway.
pub struct TestGateway {
    pub addr: SocketAddr,
    pub state: AppState,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
    _tmp: Option<tempfile::TempDir>,
}

/// Knobs for a test gateway.
pub struct Options {
    pub agents_dir: PathBuf,
    pub data_dir: Option<PathBuf>,
    pub settings: ServerSpec,
    /// The "environment" the agent files are interpolated from.
    pub vars: Vars,
    /// Where to listen (port 0: any free port).
    pub bind: SocketAddr,
    /// Whether changes to the agents directory are applied live.
    pub watch: bool,
    /// A listener already bound (its address known before the settings are made, e.g. for
    /// `[auth.oauth]`'s audience); `None`: bind `bind`.
    pub listener: Option<tokio::net::TcpListener>,
    /// The clock of `[costs]` budgets; `None`: the system's.
    pub clock: Option<std::sync::Arc<dyn switchboard::costs::Clock>>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            agents_dir: fixture("agents/valid"),
            data_dir: None,
            vars: Vars::new(),
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            watch: false,
            listener: None,
            clock: None,
            settings: ServerSpec {
                // Tests that are not about limits must never meet them (they all come
                // from one IP).
                limits: switchboard::config::clients::Limits {
                    requests_per_minute: std::num::NonZeroU32::new(1_000_000).unwrap(),
                    burst: std::num::NonZeroU32::new(100_000).unwrap(),
                    agent_runs_per_minute: std::num::NonZeroU32::new(100_000).unwrap(),
                    max_sessions: 100_000,
                },
                sse_keep_alive: Duration::from_millis(200),
                max_body_bytes: 64 * 1024,
                shutdown_grace: Duration::from_secs(2),
                ..ServerSpec::default()
            },
        }
    }
}

/// Copies the valid fixture agents into `to` (created if missing), for tests that change them.
pub fn copy_valid_agents(to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for f in ["servicenow.toml", "helpdesk.toml"] {
        std::fs::copy(fixture("agents/valid").join(f), to.join(f)).unwrap();
    }
}

pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

impl TestGateway {
    /// The default gateway: fixture agents, a fresh data dir.
    pub async fn spawn() -> Self {
        Self::spawn_with(Options::default()).await
    }

    pub async fn spawn_with(opts: Options) -> Self {
        switchboard::telemetry::init_for_tests();
        switchboard::net::install_crypto_provider();
        let (tmp, data_dir) = match opts.data_dir {
            Some(d) => (None, d),
            None => {
                let tmp = tempfile::tempdir().unwrap();
                let d = tmp.path().join("data");
                (Some(tmp), d)
            }
        };
        let mut resources = Resources::new(&data_dir);
        resources.costs = std::sync::Arc::new(switchboard::costs::Costs::new(
            opts.settings.costs.clone(),
            opts.clock
                .clone()
                .unwrap_or_else(|| std::sync::Arc::new(switchboard::costs::SystemClock)),
        ));
        let registry = AgentRegistry::load(&opts.agents_dir, &opts.vars, resources)
            .unwrap_or_else(|e| panic!("fixture agents must load: {e}"));
        registry.connect_upstreams().await;
        // Bind first, then serve: the address is known before any request is made.
        let listener = match opts.listener {
            Some(l) => l,
            None => tokio::net::TcpListener::bind(opts.bind).await.unwrap(),
        };
        let addr = listener.local_addr().unwrap();
        let trail = switchboard::audit::Trail::start(
            &opts.settings.audit,
            &data_dir,
            registry.resources().metrics.clone(),
        )
        .await
        .unwrap_or_else(|e| panic!("the audit trail must open: {e}"));
        let state = AppState::new(opts.settings, registry, trail);
        if opts.watch {
            state.watch_agents_dir(&opts.agents_dir).unwrap();
        }
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(switchboard::app::run(listener, state.clone(), async move {
            let _ = rx.await;
        }));
        Self {
            addr,
            state,
            shutdown: Some(tx),
            task: Some(task),
            _tmp: tmp,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Stops the server and waits until it has exited.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("gateway must stop within 10 s")
                .unwrap()
                .unwrap();
        }
    }

    /// `GET path`: the status and the JSON body (`Null` when the body is not JSON).
    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let resp = http().get(self.url(path)).send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// `POST path` with no body: the status and the JSON body.
    pub async fn post_json(&self, path: &str) -> (u16, Value) {
        let resp = http().post(self.url(path)).send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Waits (up to 10 s) until `cond` holds for the live session count.
    pub async fn wait_sessions(&self, what: &str, cond: impl Fn(usize) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let n = self.state.sessions().len();
            if cond(n) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}: {n} live sessions"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub fn http() -> reqwest::Client {
    switchboard::net::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// An rmcp client over Streamable HTTP at `url`.
pub async fn rmcp_client(url: &str) -> rmcp::service::RunningService<rmcp::RoleClient, ()> {
    rmcp_client_with(url, None).await
}

/// An rmcp client over Streamable HTTP at `url`, sending `token` as bearer.
pub async fn rmcp_client_with(
    url: &str,
    token: Option<&str>,
) -> rmcp::service::RunningService<rmcp::RoleClient, ()> {
    use rmcp::ServiceExt;
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
    switchboard::net::install_crypto_provider();
    let mut config = StreamableHttpClientTransportConfig::with_uri(url.to_owned());
    if let Some(t) = token {
        config = config.auth_header(t);
    }
    let transport = rmcp::transport::StreamableHttpClientTransport::from_config(config);
    ().serve(transport).await.expect("rmcp client must connect")
}

/// Test settings (short keep-alive) with the `[limits]`/`[[clients]]` of `toml` and `vars`.
pub fn settings_with_clients(toml: &str, vars: &[(&str, &str)]) -> ServerSpec {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("switchboard.toml");
    std::fs::write(&file, toml).unwrap();
    let vars: Vars = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let loaded = switchboard::config::load_gateway(&file, true, &vars)
        .unwrap_or_else(|e| panic!("test config must load: {e}"));
    ServerSpec {
        limits: loaded.limits,
        clients: loaded.clients,
        meter_loopback: loaded.meter_loopback,
        ..Options::default().settings
    }
}

pub fn args(v: Value) -> rmcp::model::JsonObject {
    v.as_object().cloned().expect("arguments must be an object")
}

/// One event of an SSE stream.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub event: String,
    pub data: String,
}

/// A minimal legacy HTTP+SSE client: GET the stream, POST to the endpoint it announces.
pub struct SseClient {
    pub endpoint: String,
    pub session_id: String,
    events: mpsc::UnboundedReceiver<SseEvent>,
    reader: JoinHandle<()>,
    http: reqwest::Client,
    token: Option<String>,
}

impl SseClient {
    /// Opens the stream at `url` and waits for its `endpoint` event.
    pub async fn connect(url: &str) -> Self {
        Self::connect_with(url, None).await
    }

    /// [`Self::connect`] with a bearer token on every request.
    pub async fn connect_with(url: &str, token: Option<&str>) -> Self {
        let http = http();
        // The stream's own client has no total timeout: the stream lives as long as the test.
        let mut get = reqwest::Client::new()
            .get(url)
            .header("accept", "text/event-stream");
        if let Some(t) = token {
            get = get.bearer_auth(t);
        }
        let resp = get.send().await.unwrap();
        assert_eq!(resp.status(), 200, "GET {url}");
        assert_eq!(
            resp.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        let (tx, mut events) = mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            let mut body = resp.bytes_stream();
            let mut buf = String::new();
            while let Some(Ok(chunk)) = body.next().await {
                buf.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buf.find("\n\n") {
                    let raw: String = buf.drain(..end + 2).collect();
                    let mut ev = SseEvent {
                        event: "message".into(),
                        data: String::new(),
                    };
                    let mut has_data = false;
                    for line in raw.lines() {
                        if let Some(v) = line.strip_prefix("event:") {
                            ev.event = v.trim().to_owned();
                        } else if let Some(v) = line.strip_prefix("data:") {
                            if has_data {
                                ev.data.push('\n');
                            }
                            ev.data.push_str(v.strip_prefix(' ').unwrap_or(v));
                            has_data = true;
                        }
                    }
                    if has_data && tx.send(ev).is_err() {
                        return;
                    }
                }
            }
        });
        let first = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("endpoint event within 10 s")
            .expect("stream open");
        assert_eq!(first.event, "endpoint");
        // The endpoint is a path: it goes with the URL's origin.
        let origin_end = url
            .find("://")
            .and_then(|i| url[i + 3..].find('/').map(|j| i + 3 + j))
            .unwrap_or(url.len());
        let endpoint = format!("{}{}", &url[..origin_end], first.data);
        let session_id = first
            .data
            .split("session_id=")
            .nth(1)
            .expect("endpoint carries session_id")
            .to_owned();
        Self {
            endpoint,
            session_id,
            events,
            reader,
            http,
            token: token.map(str::to_owned),
        }
    }

    /// POSTs a raw body to the endpoint.
    pub async fn post_raw(&self, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.post_as(self.token.as_deref(), body).await
    }

    /// POSTs a raw body to the endpoint with another (or no) token.
    pub async fn post_as(
        &self,
        token: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        let mut req = self
            .http
            .post(&self.endpoint)
            .header("content-type", "application/json");
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.body(body).send().await.unwrap()
    }

    /// POSTs a JSON-RPC message; asserts 202.
    pub async fn post(&self, msg: Value) {
        let resp = self.post_raw(msg.to_string()).await;
        assert_eq!(resp.status(), 202, "POST {msg}");
    }

    /// The next `message` event, parsed (10 s deadline).
    pub async fn next_message(&mut self) -> Value {
        loop {
            let ev = tokio::time::timeout(Duration::from_secs(10), self.events.recv())
                .await
                .expect("an SSE message within 10 s")
                .expect("stream still open");
            if ev.event == "message" {
                return serde_json::from_str(&ev.data).unwrap();
            }
        }
    }

    /// Waits for the stream to end (10 s deadline).
    pub async fn closed(&mut self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(None) => return,
                Ok(Some(_)) => continue,
                Err(_) => panic!("SSE stream still open after 10 s"),
            }
        }
    }

    /// Sends a request and returns its response (the next message must be it).
    pub async fn request(&mut self, id: i64, method: &str, params: Value) -> Value {
        self.post(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await;
        let msg = self.next_message().await;
        assert_eq!(msg["id"], id, "response id for {method}: {msg}");
        msg
    }

    /// initialize + notifications/initialized.
    pub async fn initialize(&mut self) -> Value {
        let init = self
            .request(
                0,
                "initialize",
                json!({"protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": {"name": "sse-test", "version": "1"}}),
            )
            .await;
        self.post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        init
    }

    /// Calls a tool and returns the JSON-RPC response.
    pub async fn call_tool(&mut self, id: i64, name: &str, arguments: Value) -> Value {
        self.request(
            id,
            "tools/call",
            json!({"name": name, "arguments": arguments}),
        )
        .await
    }
}

impl Drop for SseClient {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// The JSON object a successful tool result carries.
pub fn tool_json(response: &Value) -> Value {
    let result = &response["result"];
    assert_eq!(result["isError"], false, "tool failed: {response}");
    serde_json::from_str(result["content"][0]["text"].as_str().unwrap()).unwrap()
}

/// Raw Streamable HTTP: initialize (protocol 2025-06-18), returning the session id.
pub async fn streamable_initialize(http: &reqwest::Client, url: &str) -> String {
    streamable_initialize_at(http, url, "2025-06-18").await
}

/// Raw Streamable HTTP: initialize asking for protocol `version`, returning the session id.
pub async fn streamable_initialize_at(http: &reqwest::Client, url: &str, version: &str) -> String {
    let resp = streamable_open_at(http, url, version).await;
    assert_eq!(resp.status(), 200);
    let id = resp.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let _ = resp.text().await.unwrap();
    let resp = streamable_post(
        http,
        url,
        Some(&id),
        json!({"jsonrpc":"2.0","method":"notifications/initialized"}).to_string(),
    )
    .await;
    assert_eq!(resp.status(), 202);
    id
}

/// Raw Streamable HTTP: the `initialize` POST alone (client "raw", protocol 2025-06-18),
/// whatever it answers.
pub async fn streamable_open(http: &reqwest::Client, url: &str) -> reqwest::Response {
    streamable_open_at(http, url, "2025-06-18").await
}

/// [`streamable_open`] asking for protocol `version`.
pub async fn streamable_open_at(
    http: &reqwest::Client,
    url: &str,
    version: &str,
) -> reqwest::Response {
    http.post(url)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .body(
            json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":version,"capabilities":{},"clientInfo":{"name":"raw","version":"1"}}})
                .to_string(),
        )
        .send()
        .await
        .unwrap()
}

/// Raw Streamable HTTP POST.
pub async fn streamable_post(
    http: &reqwest::Client,
    url: &str,
    session: Option<&str>,
    body: String,
) -> reqwest::Response {
    let mut req = http
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("mcp-protocol-version", "2025-06-18");
    if let Some(s) = session {
        req = req.header("mcp-session-id", s);
    }
    req.body(body).send().await.unwrap()
}

/// The JSON-RPC messages in an SSE (or JSON) response body.
pub async fn response_messages(resp: reqwest::Response) -> Vec<Value> {
    let is_json = resp
        .headers()
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap().starts_with("application/json"));
    let text = resp.text().await.unwrap();
    if is_json {
        return vec![serde_json::from_str(&text).unwrap()];
    }
    text.split("\n\n")
        .filter_map(|ev| {
            let data: Vec<&str> = ev
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            let data = data.join("\n");
            (!data.trim().is_empty()).then(|| serde_json::from_str(&data).unwrap())
        })
        .collect()
}

/// An rmcp client that keeps every progress notification it receives.
#[derive(Clone, Default)]
pub struct Recorder {
    pub progress: std::sync::Arc<std::sync::Mutex<Vec<rmcp::model::ProgressNotificationParam>>>,
}

impl rmcp::ClientHandler for Recorder {
    async fn on_progress(
        &self,
        params: rmcp::model::ProgressNotificationParam,
        _context: rmcp::service::NotificationContext<rmcp::RoleClient>,
    ) {
        self.progress.lock().unwrap().push(params);
    }
}

/// Starts a `tools/call` of `tool` with `arguments` without waiting for its answer: the
/// handle cancels it (`notifications/cancelled` with `handle.id`), carries its progress
/// token, and [`call_result`] awaits it.
pub async fn start_call(
    peer: &rmcp::service::Peer<rmcp::RoleClient>,
    tool: &str,
    arguments: Value,
) -> rmcp::service::RequestHandle<rmcp::RoleClient> {
    use rmcp::model::{CallToolRequestParams, ClientRequest, Request};
    peer.send_cancellable_request(
        ClientRequest::CallToolRequest(Request::new(
            CallToolRequestParams::new(tool.to_owned()).with_arguments(args(arguments)),
        )),
        rmcp::service::PeerRequestOptions::no_options(),
    )
    .await
    .expect("the call is sent")
}

/// The answer of a call started by [`start_call`].
pub async fn call_result(
    handle: rmcp::service::RequestHandle<rmcp::RoleClient>,
) -> rmcp::model::CallToolResult {
    match handle.await_response().await.expect("the call is answered") {
        rmcp::model::ServerResult::CallToolResult(result) => result,
        other => panic!("not a tool result: {other:?}"),
    }
}

/// The text blocks of a tool result, joined by newlines.
pub fn tool_text(result: &rmcp::model::CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}
