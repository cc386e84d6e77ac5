//! Unit tests for the upstream MCP tool kind, run against an in-process rmcp server behind a
//! real HTTP listener: config validation, listing and prefixing, calls and their results,
//! headers, timeouts, cancellation and the session lifecycle.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize};

use poem::listener::TcpAcceptor;
use poem::{Endpoint, EndpointExt as _, Route};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CancelledNotificationParam, InitializeRequestParams, InitializeResult, ListToolsResult,
    PaginatedRequestParams,
};
use rmcp::service::{NotificationContext, RequestContext};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, Json, RoleServer, ServerHandler, schemars, tool, tool_handler, tool_router};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Notify;

use super::*;
use rmcp::model::{CallToolResult, ContentBlock};

/// Bound on every wait of these tests, so that a bug fails a test instead of hanging it.
const WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct EchoArgs {
    /// Text to send back.
    text: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct AddArgs {
    a: i64,
    b: i64,
}

#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
struct Sum {
    sum: i64,
}

/// What the test server saw, shared by every session it serves.
#[derive(Default)]
struct Seen {
    initializes: AtomicUsize,
    /// The `clientInfo` of the last `initialize`: name and version.
    client: Mutex<Option<(String, String)>>,
    lists: AtomicUsize,
    /// Whether `late` is listed yet.
    late_listed: AtomicBool,
    /// Signalled when `slow` starts.
    slow_started: Notify,
    /// Signalled when `slow`'s request is cancelled.
    slow_cancelled: Notify,
    /// Signalled on every `notifications/cancelled`.
    cancel_notified: Notify,
    /// `x-api-key` of every HTTP request.
    api_keys: Mutex<Vec<Option<String>>>,
}

#[derive(Clone)]
struct TestServer {
    seen: Arc<Seen>,
}

#[tool_router]
impl TestServer {
    #[tool(description = "Sends the text back.")]
    fn echo(&self, Parameters(EchoArgs { text }): Parameters<EchoArgs>) -> String {
        text
    }

    #[tool(description = "Adds two integers.")]
    fn add(&self, Parameters(AddArgs { a, b }): Parameters<AddArgs>) -> Json<Sum> {
        Json(Sum { sum: a + b })
    }

    #[tool(description = "Divides a by b.")]
    fn divide(
        &self,
        Parameters(AddArgs { a, b }): Parameters<AddArgs>,
    ) -> Result<String, ErrorData> {
        if b == 0 {
            return Err(ErrorData::invalid_params("b must not be zero", None));
        }
        Ok((a / b).to_string())
    }

    #[tool(description = "Always fails.")]
    fn fail(&self) -> CallToolResult {
        CallToolResult::error(vec![ContentBlock::text("the disk is on fire")])
    }

    #[tool(description = "Answers after a minute, or never when cancelled.")]
    async fn slow(&self, ctx: RequestContext<RoleServer>) -> String {
        self.seen.slow_started.notify_one();
        tokio::select! {
            () = ctx.ct.cancelled() => {
                self.seen.slow_cancelled.notify_one();
                "cancelled".to_owned()
            }
            () = tokio::time::sleep(Duration::from_secs(60)) => "done".to_owned(),
        }
    }

    #[tool(description = "Text and an image.")]
    fn mixed(&self) -> CallToolResult {
        CallToolResult::success(vec![
            ContentBlock::text("first"),
            ContentBlock::image("aGVsbG8=", "image/png"),
            ContentBlock::text("last"),
        ])
    }

    #[tool(description = "Listed only once the test says so.")]
    fn late(&self) -> String {
        "late answer".to_owned()
    }
}

#[tool_handler]
impl ServerHandler for TestServer {
    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, ErrorData> {
        self.seen.initializes.fetch_add(1, Ordering::SeqCst);
        *self.seen.client.lock().unwrap() = Some((
            request.client_info.name.clone(),
            request.client_info.version.clone(),
        ));
        context.peer.set_peer_info(request.clone());
        self.negotiate_initialize(&request)
    }

    /// Two tools a page, so that listing must follow the cursor; a long `ttlMs`, so
    /// that a refresh answered from rmcp's cache would go unnoticed.
    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        self.seen.lists.fetch_add(1, Ordering::SeqCst);
        let mut tools = Self::tool_router().list_all();
        if !self.seen.late_listed.load(Ordering::SeqCst) {
            tools.retain(|t| t.name != "late");
        }
        tools.sort_by(|a, b| a.name.cmp(&b.name));
        let start: usize = request
            .and_then(|r| r.cursor)
            .map_or(0, |c| c.parse().unwrap());
        let end = (start + 2).min(tools.len());
        let mut page =
            ListToolsResult::with_all_items(tools[start..end].to_vec()).with_ttl_ms(600_000);
        page.next_cursor = (end < tools.len()).then(|| end.to_string());
        Ok(page)
    }

    async fn on_cancelled(
        &self,
        _params: CancelledNotificationParam,
        _context: NotificationContext<RoleServer>,
    ) {
        self.seen.cancel_notified.notify_one();
    }
}

/// A running test server.
struct Upstream {
    url: String,
    seen: Arc<Seen>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Upstream {
    /// Binds first, then spawns: the address is known before the server runs.
    async fn start() -> Self {
        crate::net::install_crypto_provider();
        let seen = Arc::new(Seen::default());
        let stop = CancellationToken::new();
        let server = TestServer { seen: seen.clone() };
        let service: StreamableHttpService<TestServer, LocalSessionManager> =
            StreamableHttpService::new(
                move || Ok(server.clone()),
                Arc::new(LocalSessionManager::default()),
                StreamableHttpServerConfig::default()
                    .disable_allowed_hosts()
                    .with_cancellation_token(stop.child_token()),
            );
        let record = seen.clone();
        let app = Route::new()
            .at("/mcp", poem::endpoint::TowerCompatExt::compat(service))
            .around(move |ep, req| {
                let record = record.clone();
                async move {
                    let key = req
                        .headers()
                        .get("x-api-key")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    record.api_keys.lock().unwrap().push(key);
                    ep.call(req).await
                }
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/mcp", listener.local_addr().unwrap());
        let acceptor = TcpAcceptor::from_tokio(listener).unwrap();
        let signal = stop.clone().cancelled_owned();
        let task = tokio::spawn(
            poem::Server::new_with_acceptor(acceptor).run_with_graceful_shutdown(
                app,
                signal,
                Some(Duration::from_secs(1)),
            ),
        );
        Self {
            url,
            seen,
            stop,
            task,
        }
    }

    /// Stops the server and waits until its listener is closed.
    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("server stops")
            .unwrap()
            .unwrap();
    }

    fn initializes(&self) -> usize {
        self.seen.initializes.load(Ordering::SeqCst)
    }
}

fn config(url: &str) -> UpstreamToolConfig {
    UpstreamToolConfig {
        url: Some(url.to_owned()),
        headers: BTreeMap::from([("x-api-key".to_owned(), "key-123".to_owned())]),
        prefix: "up_".to_owned(),
        allow: None,
        timeout_secs: 10,
        ..UpstreamToolConfig::default()
    }
}

fn args(value: serde_json::Value) -> JsonObject {
    match value {
        serde_json::Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

fn names(tools: &[Tool]) -> Vec<String> {
    tools.iter().map(|t| t.name.to_string()).collect()
}

async fn call(
    tools: &UpstreamTools,
    name: &str,
    arguments: serde_json::Value,
) -> Result<Output, Error> {
    tokio::time::timeout(
        WAIT,
        tools.call(name, args(arguments), &CallContext::default()),
    )
    .await
    .expect("the call returns in time")
}

#[tokio::test]
async fn connect_lists_every_page_prefixed_with_schemas_and_descriptions() {
    // Arrange
    let upstream = Upstream::start().await;
    let tools = UpstreamTools::new(config(&upstream.url));
    assert!(tools.definitions().is_empty(), "nothing before connecting");

    // Act
    tools.connect(&Identity::default(), None).await.unwrap();

    // Assert
    let defs = tools.definitions();
    assert_eq!(
        names(&defs),
        [
            "up_add",
            "up_divide",
            "up_echo",
            "up_fail",
            "up_mixed",
            "up_slow"
        ]
    );
    let echo = defs.iter().find(|t| t.name == "up_echo").unwrap();
    assert_eq!(echo.description.as_deref(), Some("Sends the text back."));
    assert_eq!(
        echo.input_schema.get("required"),
        Some(&json!(["text"])),
        "schema kept: {:?}",
        echo.input_schema
    );
    assert!(
        upstream.seen.lists.load(Ordering::SeqCst) >= 3,
        "three pages listed"
    );
    upstream.stop().await;
}

#[tokio::test]
async fn allow_keeps_only_the_named_upstream_tools() {
    let upstream = Upstream::start().await;
    let mut cfg = config(&upstream.url);
    cfg.allow = Some(vec![
        "echo".to_owned(),
        "add".to_owned(),
        "not_there".to_owned(),
    ]);
    let tools = UpstreamTools::new(cfg);

    tools.connect(&Identity::default(), None).await.unwrap();

    assert_eq!(names(&tools.definitions()), ["up_add", "up_echo"]);
    let refused = call(&tools, "up_fail", json!({})).await;
    assert!(
        matches!(&refused, Err(Error::InvalidArguments(m)) if m.contains("unknown tool") && m.contains("allow")),
        "{refused:?}"
    );
    upstream.stop().await;
}

#[tokio::test]
async fn calls_return_text_json_and_described_non_text_content() {
    let upstream = Upstream::start().await;
    let tools = UpstreamTools::new(config(&upstream.url));

    // The first call connects by itself.
    let echo = call(&tools, "up_echo", json!({"text": "hello"}))
        .await
        .unwrap();
    let add = call(&tools, "up_add", json!({"a": 2, "b": 40}))
        .await
        .unwrap();
    let mixed = call(&tools, "up_mixed", json!({})).await.unwrap();

    assert_eq!(echo, Output::Text("hello".to_owned()));
    assert_eq!(add, Output::Json(json!({"sum": 42})));
    assert_eq!(
        mixed,
        Output::Text("first\n[image image/png]\nlast".to_owned())
    );
    upstream.stop().await;
}

#[tokio::test]
async fn upstream_is_error_result_fails_with_its_text() {
    let upstream = Upstream::start().await;
    let tools = UpstreamTools::new(config(&upstream.url));

    let result = call(&tools, "up_fail", json!({})).await;

    assert!(
        matches!(&result, Err(Error::Failed(m)) if m == "the disk is on fire"),
        "{result:?}"
    );
    upstream.stop().await;
}

#[tokio::test]
async fn arguments_the_upstream_rejects_with_32602_are_invalid_arguments() {
    let upstream = Upstream::start().await;
    let tools = UpstreamTools::new(config(&upstream.url));

    let rejected = call(&tools, "up_divide", json!({"a": 1, "b": 0})).await;
    // rmcp servers report arguments that do not fit the schema as a tool error
    // (`isError`), as the MCP spec asks, so those stay `Failed` with the upstream's text.
    let mistyped = call(&tools, "up_add", json!({"a": "two"})).await;

    assert!(
        matches!(&rejected, Err(Error::InvalidArguments(m)) if m == "b must not be zero"),
        "{rejected:?}"
    );
    assert!(
        matches!(&mistyped, Err(Error::Failed(m)) if m.contains("failed to deserialize parameters")),
        "{mistyped:?}"
    );
    upstream.stop().await;
}

#[tokio::test]
async fn unknown_name_lists_again_once_and_finds_a_tool_added_later() {
    let upstream = Upstream::start().await;
    let tools = UpstreamTools::new(config(&upstream.url));
    tools.connect(&Identity::default(), None).await.unwrap();
    let lists = upstream.seen.lists.load(Ordering::SeqCst);

    // Not offered: one refresh (three pages), then an error.
    let unknown = call(&tools, "up_nope", json!({})).await;
    assert!(
        matches!(&unknown, Err(Error::InvalidArguments(m)) if m.contains("unknown tool")),
        "{unknown:?}"
    );
    assert_eq!(
        upstream.seen.lists.load(Ordering::SeqCst),
        lists + 3,
        "listed again, all pages"
    );

    // Added upstream since: found by the refresh.
    upstream.seen.late_listed.store(true, Ordering::SeqCst);
    let late = call(&tools, "up_late", json!({})).await.unwrap();
    assert_eq!(late, Output::Text("late answer".to_owned()));
    assert!(names(&tools.definitions()).contains(&"up_late".to_owned()));

    // A name without the prefix is not one of ours.
    let unprefixed = call(&tools, "echo", json!({"text": "x"})).await;
    assert!(
        matches!(unprefixed, Err(Error::InvalidArguments(_))),
        "{unprefixed:?}"
    );
    upstream.stop().await;
}

#[tokio::test]
async fn configured_headers_are_sent_with_every_request() {
    let upstream = Upstream::start().await;
    let tools = UpstreamTools::new(config(&upstream.url));

    call(&tools, "up_echo", json!({"text": "hi"}))
        .await
        .unwrap();

    let keys = upstream.seen.api_keys.lock().unwrap().clone();
    assert!(!keys.is_empty());
    assert!(
        keys.iter().all(|k| k.as_deref() == Some("key-123")),
        "{keys:?}"
    );
    upstream.stop().await;
}

#[tokio::test]
async fn one_session_serves_many_and_concurrent_calls() {
    let upstream = Upstream::start().await;
    let tools = Arc::new(UpstreamTools::new(config(&upstream.url)));

    // Concurrent first calls: one of them connects, the others wait for it.
    let calls = (0..8).map(|i| {
        let tools = tools.clone();
        async move { call(&tools, "up_add", json!({"a": i, "b": 1})).await }
    });
    let results = futures::future::join_all(calls).await;
    for (i, result) in results.into_iter().enumerate() {
        assert_eq!(result.unwrap(), Output::Json(json!({"sum": i + 1})));
    }
    call(&tools, "up_echo", json!({"text": "again"}))
        .await
        .unwrap();
    tools.connect(&Identity::default(), None).await.unwrap();

    assert_eq!(upstream.initializes(), 1, "one initialize for every call");
    assert_eq!(
        upstream.seen.client.lock().unwrap().clone(),
        Some((
            "switchboard".to_owned(),
            env!("CARGO_PKG_VERSION").to_owned()
        ))
    );
    upstream.stop().await;
}

#[tokio::test]
async fn upstream_down_fails_naming_the_url_and_nothing_is_listed() {
    crate::net::install_crypto_provider();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    drop(listener);
    let tools = UpstreamTools::new(config(&url));

    let connected = tokio::time::timeout(WAIT, tools.connect(&Identity::default(), None))
        .await
        .unwrap();
    let called = call(&tools, "up_echo", json!({"text": "hi"})).await;

    for result in [connected.map(|()| Output::Text(String::new())), called] {
        assert!(
            matches!(&result, Err(Error::Failed(m)) if m.contains(&url) && m.contains("not reachable: connection refused")),
            "{result:?}"
        );
    }
    assert!(tools.definitions().is_empty());
}

#[tokio::test]
async fn the_call_after_a_dropped_session_opens_a_new_one() {
    let upstream = Upstream::start().await;
    let tools = UpstreamTools::new(config(&upstream.url));
    call(&tools, "up_echo", json!({"text": "one"}))
        .await
        .unwrap();
    let first = tools.shared.current().unwrap();

    tools.discard(&tools.shared, &first);
    let again = call(&tools, "up_echo", json!({"text": "two"}))
        .await
        .unwrap();

    assert_eq!(again, Output::Text("two".to_owned()));
    assert_eq!(upstream.initializes(), 2);
    assert!(first.service.is_closed(), "the dropped session is closed");
    upstream.stop().await;
}

#[tokio::test]
async fn connect_after_the_upstream_stopped_fails_and_drops_the_session() {
    let upstream = Upstream::start().await;
    let url = upstream.url.clone();
    let tools = UpstreamTools::new(config(&url));
    tools.connect(&Identity::default(), None).await.unwrap();

    upstream.stop().await;
    let result = tokio::time::timeout(WAIT, tools.connect(&Identity::default(), None))
        .await
        .unwrap();

    assert!(
        matches!(&result, Err(Error::Failed(m)) if m.contains(&url) && m.contains("not reachable")),
        "{result:?}"
    );
    assert!(tools.shared.current().is_none());
}

#[tokio::test]
async fn upstream_stopped_after_a_call_fails_the_next_call_and_drops_the_session() {
    let upstream = Upstream::start().await;
    let url = upstream.url.clone();
    let tools = UpstreamTools::new(config(&url));
    call(&tools, "up_echo", json!({"text": "hi"}))
        .await
        .unwrap();

    upstream.stop().await;
    let result = call(&tools, "up_echo", json!({"text": "hi"})).await;

    assert!(
        matches!(&result, Err(Error::Failed(m)) if m.contains(&url) && m.contains("not reachable: connection refused")),
        "{result:?}"
    );
    assert!(
        tools.shared.current().is_none(),
        "the broken session is dropped"
    );
    assert_eq!(
        names(&tools.definitions()).len(),
        6,
        "the last list is kept"
    );
    let again = call(&tools, "up_echo", json!({"text": "hi"})).await;
    assert!(
        matches!(&again, Err(Error::Failed(m)) if m.contains(&url)),
        "{again:?}"
    );
}

#[tokio::test]
async fn cancelling_the_caller_returns_cancelled_and_cancels_the_upstream_request() {
    let upstream = Upstream::start().await;
    let tools = Arc::new(UpstreamTools::new(config(&upstream.url)));
    let ctx = CallContext::default();
    let running = tokio::spawn({
        let tools = tools.clone();
        let ctx = ctx.clone();
        async move { tools.call("up_slow", JsonObject::new(), &ctx).await }
    });
    tokio::time::timeout(WAIT, upstream.seen.slow_started.notified())
        .await
        .expect("slow started");

    ctx.cancel.cancel();
    let result = tokio::time::timeout(Duration::from_secs(2), running)
        .await
        .expect("cancelled promptly")
        .unwrap();

    assert!(matches!(result, Err(Error::Cancelled)), "{result:?}");
    tokio::time::timeout(WAIT, upstream.seen.slow_cancelled.notified())
        .await
        .expect("the upstream request is cancelled too");
    tokio::time::timeout(WAIT, upstream.seen.cancel_notified.notified())
        .await
        .expect("the upstream is sent notifications/cancelled");
    // The session survives a cancelled call.
    let echo = call(&tools, "up_echo", json!({"text": "still here"}))
        .await
        .unwrap();
    assert_eq!(echo, Output::Text("still here".to_owned()));
    assert_eq!(upstream.initializes(), 1);
    upstream.stop().await;
}

#[tokio::test]
async fn a_call_slower_than_timeout_secs_fails_naming_the_timeout() {
    let upstream = Upstream::start().await;
    let mut cfg = config(&upstream.url);
    cfg.timeout_secs = 1;
    let tools = UpstreamTools::new(cfg);
    tools.connect(&Identity::default(), None).await.unwrap();

    let result = call(&tools, "up_slow", json!({})).await;

    assert!(
        matches!(&result, Err(Error::TimedOut(m)) if m.contains("did not answer within 1s") && m.contains(&upstream.url)),
        "{result:?}"
    );
    tokio::time::timeout(WAIT, upstream.seen.slow_cancelled.notified())
        .await
        .expect("the upstream request is cancelled too");
    upstream.stop().await;
}

#[tokio::test]
async fn dropping_the_tools_closes_the_session() {
    let upstream = Upstream::start().await;
    let tools = UpstreamTools::new(config(&upstream.url));
    tools.connect(&Identity::default(), None).await.unwrap();
    let connection = tools.shared.current().unwrap();
    assert!(!connection.service.is_closed());

    drop(tools);

    assert!(connection.service.is_closed(), "its token is cancelled");
    upstream.stop().await;
}
