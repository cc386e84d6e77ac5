//! OpenTelemetry traces (`[telemetry]`), on the real binary exporting to the tests' own OTLP
//! receiver: the exact span tree of a delegated agent run (client's call → run → turns and
//! tool calls → the delegated run → its ServiceNow request; the upstream MCP call), the
//! caller's `traceparent` honoured over both transports and in `_meta`, the outgoing one seen
//! by the fake LLM, the upstream rmcp server and the fake ServiceNow; the trace id returned
//! in `traceresponse` and shown in the admin API's session detail with its link.

use serde_json::{Value, json};

use crate::support::binary::{Spawned, serve_command, spawn_binary};
use crate::support::fake_llm::{FakeLlm, Step};
use crate::support::fake_servicenow::{FakeAuth, FakeServiceNow};
use crate::support::helpers::{
    SseClient, TestGateway, http, response_messages, streamable_initialize, streamable_post,
};
use crate::support::otlp::{Receiver, Span};
use crate::support::upstream_mcp::RecordingUpstream;

const OPS: &str = r#"
description = "Ops: asks an upstream MCP server and the incident agent."
expose = ["agent"]

[model]
base_url = "${FAKE_LLM_URL}/v1"
api_key = "test-key"
model = "fake-model"

[[tools]]
type = "mcp"
url = "${UPSTREAM_URL}"

[[tools]]
type = "agent"
agent = "servicenow"
"#;

/// The upstream server's tools, called by clients directly (no model).
const DIRECT: &str = r#"
description = "The upstream server's tools."
expose = ["tools"]

[[tools]]
type = "mcp"
url = "${UPSTREAM_URL}"
"#;

const SERVICENOW: &str = r#"
description = "Manages ServiceNow incidents."
expose = ["agent"]

[model]
base_url = "${FAKE_LLM_URL}/v1"
api_key = "test-key"
model = "fake-model"

[[tools]]
type = "servicenow"
store = "table_api"
instance_url = "${SN_URL}"
username = "user"
password = "secret"
timeout_secs = 5
"#;

/// A caller's trace: `00-<trace>-<parent>-01`.
fn traceparent(trace: &str, parent: &str) -> String {
    format!("00-{trace}-{parent}-01")
}

struct Setup {
    gateway: Spawned,
    receiver: Receiver,
    fake: FakeLlm,
    upstream: RecordingUpstream,
    servicenow: FakeServiceNow,
    _dir: tempfile::TempDir,
}

impl Setup {
    /// The binary with `[telemetry]` exporting to a receiver, the ops and servicenow agents
    /// on the fakes.
    async fn start(script: Vec<Step>) -> Self {
        let receiver = Receiver::start().await;
        let fake = FakeLlm::start(script).await;
        let upstream = RecordingUpstream::start().await;
        let servicenow = FakeServiceNow::start(FakeAuth::Basic {
            username: "user",
            password: "secret",
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let agents = dir.path().join("agents");
        std::fs::create_dir_all(&agents).unwrap();
        std::fs::write(agents.join("ops.toml"), OPS).unwrap();
        std::fs::write(agents.join("servicenow.toml"), SERVICENOW).unwrap();
        std::fs::write(agents.join("direct.toml"), DIRECT).unwrap();
        let config = dir.path().join("switchboard.toml");
        std::fs::write(
            &config,
            format!(
                r#"
[telemetry]
enabled = true
endpoint = "{}"
service_name = "switchboard-test"
trace_url = "http://jaeger.example/trace/{{trace_id}}"
"#,
                receiver.url
            ),
        )
        .unwrap();
        let gateway = spawn_binary(
            serve_command()
                .arg("--config")
                .arg(&config)
                .arg("--agents")
                .arg(&agents)
                .arg("--data")
                .arg(dir.path().join("data"))
                .env("FAKE_LLM_URL", &fake.url)
                .env("UPSTREAM_URL", &upstream.url)
                .env("SN_URL", &servicenow.url)
                // Export within 100 ms of a span's end, not the default 5 s.
                .env("OTEL_BSP_SCHEDULE_DELAY", "100")
                .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
                .env_remove("OTEL_TRACES_SAMPLER"),
        );
        Self {
            gateway,
            receiver,
            fake,
            upstream,
            servicenow,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.gateway.addr)
    }
}

/// A Streamable HTTP POST on `session` with the caller's `traceparent` header (the headers
/// `streamable_post` sends, and that one); the caller adds the body.
fn traced_post(
    http: &reqwest::Client,
    url: &str,
    session: &str,
    traceparent: String,
) -> reqwest::RequestBuilder {
    http.post(url)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("mcp-protocol-version", "2025-06-18")
        .header("mcp-session-id", session)
        .header("traceparent", traceparent)
}

/// The one span named `name` among `spans`.
fn one<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    let found: Vec<&Span> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(found.len(), 1, "one span {name:?}: {spans:#?}");
    found[0]
}

/// The spans named `name`.
fn all<'a>(spans: &'a [Span], name: &str) -> Vec<&'a Span> {
    spans.iter().filter(|s| s.name == name).collect()
}

#[tokio::test]
async fn a_delegated_run_is_one_trace_from_the_callers_context_to_servicenow() {
    let setup = Setup::start(vec![
        // ops, turn 1: both tools at once.
        Step::ToolCalls(vec![
            ("whoami", json!({})),
            ("servicenow", json!({"task": "find VPN incidents"})),
        ]),
        // servicenow, turns 1 and 2.
        Step::ToolCalls(vec![("search_incident", json!({"query": "VPN"}))]),
        Step::Echo("servicenow: "),
        // ops, turn 2.
        Step::Text("ops: done"),
    ])
    .await;
    let http = http();
    let url = setup.url("/agents/ops/mcp");
    let session = streamable_initialize(&http, &url).await;
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let response = traced_post(
        &http,
        &url,
        &session,
        traceparent(caller_trace, caller_span),
    )
    .header("tracestate", "vendor=1")
    .body(
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
               "params": {"name": "ops", "arguments": {"task": "who am I, any VPN trouble?"}}})
        .to_string(),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    let traceresponse = response.headers()["traceresponse"]
        .to_str()
        .unwrap()
        .to_owned();
    let messages = response_messages(response).await;
    let answer = messages.last().unwrap();
    assert_eq!(
        answer["result"]["content"][0]["text"], "ops: done",
        "{answer}"
    );

    let spans = setup
        .receiver
        .trace_with(caller_trace, "tools/call ops")
        .await;
    let root = one(&spans, "tools/call ops");
    assert_eq!(
        traceresponse,
        format!("00-{caller_trace}-{}-01", root.span_id),
        "the client learns its trace and the gateway's span"
    );
    // The client's call: a server span under the caller's.
    assert_eq!(root.parent_span_id, caller_span);
    assert_eq!(root.kind, 2, "server");
    assert_eq!(root.service, "switchboard-test");
    for (key, value) in [
        ("mcp.method.name", "tools/call"),
        ("gen_ai.tool.name", "ops"),
        ("gen_ai.agent.name", "ops"),
        ("mcp.session.id", session.as_str()),
        ("switchboard.transport", "streamable_http"),
        ("switchboard.tool.outcome", "ok"),
    ] {
        assert_eq!(root.attr(key), Some(value), "{key}: {root:#?}");
    }
    assert!(
        root.attr("switchboard.audit.record_id").is_some(),
        "{root:#?}"
    );

    // The run of ops: two turns and two tool calls.
    let ops = one(&spans, "invoke_agent ops");
    assert_eq!(ops.parent_span_id, root.span_id);
    assert_eq!(ops.attr("gen_ai.operation.name"), Some("invoke_agent"));
    assert_eq!(ops.attr("gen_ai.request.model"), Some("fake-model"));
    assert_eq!(ops.attr("gen_ai.usage.input_tokens"), Some("22"));
    assert_eq!(ops.attr("gen_ai.usage.output_tokens"), Some("14"));
    let sn = one(&spans, "invoke_agent servicenow");
    let chats = all(&spans, "chat fake-model");
    assert_eq!(chats.len(), 4, "{spans:#?}");
    let of = |parent: &Span| -> Vec<String> {
        let mut names: Vec<String> = spans
            .iter()
            .filter(|s| s.parent_span_id == parent.span_id)
            .map(|s| s.name.clone())
            .collect();
        names.sort();
        names
    };
    assert_eq!(
        of(ops),
        [
            "chat fake-model",
            "chat fake-model",
            "execute_tool servicenow",
            "execute_tool whoami"
        ]
    );
    for chat in &chats {
        assert_eq!(chat.kind, 3, "client");
        assert_eq!(chat.attr("gen_ai.operation.name"), Some("chat"));
        assert_eq!(chat.attr("gen_ai.provider.name"), Some("openai"));
        assert_eq!(chat.attr("gen_ai.request.model"), Some("fake-model"));
        assert_eq!(chat.attr("gen_ai.response.model"), Some("fake-model"));
        assert_eq!(chat.attr("gen_ai.usage.input_tokens"), Some("11"));
        assert_eq!(chat.attr("gen_ai.usage.output_tokens"), Some("7"));
        assert_eq!(chat.attr("server.address"), Some("127.0.0.1"));
        // No prompt or completion text unless `capture_content` says so.
        assert_eq!(chat.attr("gen_ai.input.messages"), None);
        assert_eq!(chat.attr("gen_ai.output.messages"), None);
    }
    let mut reasons: Vec<&str> = chats
        .iter()
        .filter_map(|c| c.attr("gen_ai.response.finish_reasons"))
        .collect();
    reasons.sort_unstable();
    assert_eq!(reasons, ["stop", "stop", "tool_calls", "tool_calls"]);

    // The upstream call: execute_tool → the MCP client span.
    let whoami = one(&spans, "execute_tool whoami");
    assert_eq!(whoami.attr("gen_ai.tool.name"), Some("whoami"));
    assert_eq!(whoami.attr("gen_ai.tool.call.id"), Some("call_0_whoami"));
    assert_eq!(whoami.attr("switchboard.tool.outcome"), Some("ok"));
    assert_eq!(of(whoami), ["tools/call whoami"]);
    let upstream_call = one(&spans, "tools/call whoami");
    assert_eq!(upstream_call.kind, 3, "client");
    assert_eq!(upstream_call.parent_span_id, whoami.span_id);
    assert_eq!(upstream_call.attr("mcp.method.name"), Some("tools/call"));

    // The delegated run: execute_tool → invoke_agent servicenow → its turns and search.
    let delegate = one(&spans, "execute_tool servicenow");
    assert_eq!(of(delegate), ["invoke_agent servicenow"]);
    assert_eq!(sn.parent_span_id, delegate.span_id);
    assert_eq!(
        of(sn),
        [
            "chat fake-model",
            "chat fake-model",
            "execute_tool search_incident"
        ]
    );
    let search = one(&spans, "execute_tool search_incident");
    assert_eq!(of(search), ["GET"]);
    let get = one(&spans, "GET");
    assert_eq!(get.kind, 3, "client");
    assert_eq!(get.attr("http.request.method"), Some("GET"));
    assert_eq!(get.attr("http.response.status_code"), Some("200"));
    assert_eq!(get.attr("server.address"), Some("127.0.0.1"));
    assert!(
        get.attr("url.full")
            .is_some_and(|u| u.ends_with("/api/now/table/incident")),
        "{get:#?}"
    );
    // Nothing else in the trace: 12 spans, all exported once.
    assert_eq!(spans.len(), 12, "{spans:#?}");
    assert!(spans.iter().all(|s| s.status != 2), "no errors: {spans:#?}");

    // What went out: each LLM request under its chat span, the upstream call (header and
    // `_meta`) under the MCP client span, the ServiceNow request under the GET span.
    let mut sent: Vec<String> = setup
        .fake
        .received()
        .into_iter()
        .map(|r| {
            r.traceparent
                .expect("every LLM request carries traceparent")
        })
        .collect();
    sent.sort();
    let mut expected: Vec<String> = chats
        .iter()
        .map(|c| traceparent(caller_trace, &c.span_id))
        .collect();
    expected.sort();
    assert_eq!(sent, expected);
    let upstream_parent = traceparent(caller_trace, &upstream_call.span_id);
    assert_eq!(
        setup.upstream.traces(),
        [(Some(upstream_parent.clone()), Some(upstream_parent))]
    );
    let to_servicenow: Vec<Option<String>> = setup
        .servicenow
        .received()
        .into_iter()
        .filter(|r| r.path.starts_with("/api/now/table/incident"))
        .map(|r| r.traceparent)
        .collect();
    assert_eq!(
        to_servicenow,
        [Some(traceparent(caller_trace, &get.span_id))]
    );

    // The admin API's session detail names the call's trace, with its link.
    let detail: Value = http
        .get(setup.url(&format!("/admin/sessions/{session}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let call = &detail["recent_calls"][0];
    assert_eq!(call["tool"], "ops", "{detail}");
    assert_eq!(call["trace_id"], caller_trace, "{detail}");
    assert_eq!(
        call["trace_url"],
        format!("http://jaeger.example/trace/{caller_trace}"),
        "{detail}"
    );

    // The console's session detail links the call to its trace.
    let browser = crate::support::browser::Browser::start().await;
    browser
        .open(&setup.url(&format!("/ui#/sessions/{session}")))
        .await;
    let link = browser
        .wait("[data-testid=\"trace-link\"]", "the call's trace link")
        .await;
    assert_eq!(
        link.attr("href").await.unwrap().as_deref(),
        Some(format!("http://jaeger.example/trace/{caller_trace}").as_str())
    );
    assert_eq!(
        link.attr("title").await.unwrap().as_deref(),
        Some(caller_trace)
    );
    assert_eq!(link.text().await.unwrap(), caller_trace[..8]);
    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    browser.close().await;
}

#[tokio::test]
async fn the_callers_trace_is_honoured_over_both_transports_and_in_meta() {
    let setup = Setup::start(vec![
        Step::Text("one"),
        Step::Text("two"),
        Step::Text("three"),
        Step::Status(400, None),
    ])
    .await;
    let http = http();

    // Legacy SSE: the POST's header.
    let mut sse = SseClient::connect(&setup.url("/agents/ops/sse")).await;
    sse.initialize().await;
    let sse_trace = "0af7651916cd43dd8448eb211c80319c";
    let posted = http
        .post(&sse.endpoint)
        .header("content-type", "application/json")
        .header("traceparent", traceparent(sse_trace, "b7ad6b7169203331"))
        .body(
            json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                   "params": {"name": "ops", "arguments": {"task": "hello"}}})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 202);
    assert!(
        posted.headers()["traceresponse"]
            .to_str()
            .unwrap()
            .starts_with(&format!("00-{sse_trace}-")),
        "{:?}",
        posted.headers()
    );
    let answer = sse.next_message().await;
    assert_eq!(answer["result"]["content"][0]["text"], "one", "{answer}");
    let spans = setup.receiver.trace_with(sse_trace, "tools/call ops").await;
    let root = one(&spans, "tools/call ops");
    assert_eq!(root.parent_span_id, "b7ad6b7169203331");
    assert_eq!(root.attr("switchboard.transport"), Some("sse"));
    assert_eq!(root.attr("mcp.session.id"), Some(sse.session_id.as_str()));
    assert_eq!(one(&spans, "invoke_agent ops").parent_span_id, root.span_id);

    // Streamable HTTP: `_meta` wins over the header (it is the request's own).
    let url = setup.url("/agents/ops/mcp");
    let session = streamable_initialize(&http, &url).await;
    let meta_trace = "11111111111111111111111111111111";
    let header_trace = "22222222222222222222222222222222";
    let response = traced_post(
        &http,
        &url,
        &session,
        traceparent(header_trace, "3333333333333333"),
    )
    .body(
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
               "params": {"name": "ops", "arguments": {"task": "hi"},
                          "_meta": {"traceparent": traceparent(meta_trace, "4444444444444444"),
                                    "progressToken": "p1"}}})
        .to_string(),
    )
    .send()
    .await
    .unwrap();
    assert!(
        response.headers()["traceresponse"]
            .to_str()
            .unwrap()
            .starts_with(&format!("00-{meta_trace}-"))
    );
    let messages = response_messages(response).await;
    assert_eq!(
        messages.last().unwrap()["result"]["content"][0]["text"],
        "two"
    );
    let spans = setup
        .receiver
        .trace_with(meta_trace, "tools/call ops")
        .await;
    assert_eq!(
        one(&spans, "tools/call ops").parent_span_id,
        "4444444444444444"
    );
    assert!(
        setup
            .receiver
            .spans()
            .iter()
            .all(|s| s.trace_id != header_trace)
    );

    // A malformed `traceparent` starts a trace of the gateway's own; the call works.
    let response = streamable_post(
        &http,
        &url,
        Some(&session),
        json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
               "params": {"name": "ops", "arguments": {"task": "hi"},
                          "_meta": {"traceparent": 42}}})
        .to_string(),
    )
    .await;
    let own = response.headers()["traceresponse"]
        .to_str()
        .unwrap()
        .to_owned();
    let messages = response_messages(response).await;
    assert_eq!(
        messages.last().unwrap()["result"]["content"][0]["text"],
        "three"
    );
    let trace = own.split('-').nth(1).unwrap().to_owned();
    let spans = setup.receiver.trace_with(&trace, "tools/call ops").await;
    assert_eq!(one(&spans, "tools/call ops").parent_span_id, "");

    // A failure is recorded on the span that failed, and on those it failed.
    let failing = "55555555555555555555555555555555";
    let response = traced_post(
        &http,
        &url,
        &session,
        traceparent(failing, "6666666666666666"),
    )
    .body(
        json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
               "params": {"name": "ops", "arguments": {"task": "fail"}}})
        .to_string(),
    )
    .send()
    .await
    .unwrap();
    let messages = response_messages(response).await;
    assert_eq!(messages.last().unwrap()["result"]["isError"], true);
    let spans = setup.receiver.trace_with(failing, "tools/call ops").await;
    let chat = one(&spans, "chat fake-model");
    assert_eq!(chat.status, 2, "{chat:#?}");
    assert_eq!(chat.attr("error.type"), Some("rejected"));
    assert!(
        chat.status_message.contains("rejected the request (400)"),
        "{chat:#?}"
    );
    let run = one(&spans, "invoke_agent ops");
    assert_eq!((run.status, run.attr("error.type")), (2, Some("llm_error")));
    let root = one(&spans, "tools/call ops");
    assert_eq!((root.status, root.attr("error.type")), (2, Some("error")));
    assert_eq!(root.attr("switchboard.tool.outcome"), Some("error"));
}

#[tokio::test]
async fn a_clients_direct_call_of_an_upstream_tool_passes_its_trace_on() {
    let setup = Setup::start(vec![]).await;
    let http = http();
    let url = setup.url("/agents/direct/mcp");
    let session = streamable_initialize(&http, &url).await;
    let caller_trace = "77777777777777777777777777777777";
    let response = traced_post(
        &http,
        &url,
        &session,
        traceparent(caller_trace, "8888888888888888"),
    )
    .body(
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
               "params": {"name": "whoami", "arguments": {}}})
        .to_string(),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    let messages = response_messages(response).await;
    assert!(
        messages.last().unwrap()["result"]["isError"] != true,
        "{messages:?}"
    );
    // The request span under the caller's, the gateway's MCP client span under it, and the
    // upstream server told that client span (header and `_meta`).
    // The client span ends first: wait for the request's (kind server) too.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    let spans = loop {
        let spans = setup
            .receiver
            .trace_with(caller_trace, "tools/call whoami")
            .await;
        if spans.iter().any(|s| s.kind == 2) {
            break spans;
        }
        assert!(tokio::time::Instant::now() < deadline, "{spans:#?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let root = spans
        .iter()
        .find(|s| s.parent_span_id == "8888888888888888")
        .unwrap_or_else(|| panic!("no span under the caller's: {spans:#?}"));
    assert_eq!(root.name, "tools/call whoami");
    assert_eq!(root.kind, 2, "server");
    assert_eq!(root.attr("switchboard.tool.outcome"), Some("ok"));
    let client = spans
        .iter()
        .find(|s| s.parent_span_id == root.span_id)
        .unwrap_or_else(|| panic!("no span under the request's: {spans:#?}"));
    assert_eq!(client.kind, 3, "client");
    assert_eq!(client.attr("mcp.method.name"), Some("tools/call"));
    let sent = traceparent(caller_trace, &client.span_id);
    assert_eq!(setup.upstream.traces(), [(Some(sent.clone()), Some(sent))]);
}

#[tokio::test]
async fn without_telemetry_no_trace_is_made_or_announced() {
    let gw = TestGateway::spawn().await;
    let http = http();
    let url = gw.url("/agents/servicenow/mcp");
    let session = streamable_initialize(&http, &url).await;
    let response = traced_post(
        &http,
        &url,
        &session,
        traceparent("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"),
    )
    .body(
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
               "params": {"name": "search_incident", "arguments": {"query": "VPN"}}})
        .to_string(),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("traceresponse").is_none());
    let messages = response_messages(response).await;
    assert!(messages.last().unwrap()["result"].is_object());
    let (_, detail) = gw.get_json(&format!("/admin/sessions/{session}")).await;
    let call = &detail["recent_calls"][0];
    assert_eq!(call["tool"], "search_incident", "{detail}");
    assert!(call.get("trace_id").is_none(), "{detail}");
    gw.stop().await;
}
