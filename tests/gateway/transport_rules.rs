//! The transport rules of DESIGN §3, checked with raw HTTP where status codes matter.

use serde_json::{Value, json};

use crate::support::helpers::{
    SseClient, TestGateway, http, response_messages, streamable_initialize, streamable_open_at,
    streamable_post, tool_json,
};

const LIST: &str = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{}}"#;

#[tokio::test]
async fn unknown_agent_is_404_with_a_json_error_naming_it() {
    let gw = TestGateway::spawn().await;
    let h = http();
    for (method, path) in [
        ("GET", "/agents/nope/sse"),
        ("POST", "/agents/nope/mcp"),
        ("POST", "/agents/nope/messages?session_id=x"),
        ("DELETE", "/agents/nope/mcp"),
    ] {
        let resp = h
            .request(method.parse().unwrap(), gw.url(path))
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404, "{method} {path}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["code"], "unknown_agent", "{method} {path}");
        assert!(body["message"].as_str().unwrap().contains("\"nope\""));
    }
    let resp = h
        .get(gw.url("/agents/servicenow/other"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let resp = h.get(gw.url("/no/such/page")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "not_found");
    gw.stop().await;
}

#[tokio::test]
async fn unknown_or_missing_session_ids_are_404_and_400() {
    let gw = TestGateway::spawn().await;
    let h = http();
    let mcp = gw.url("/agents/servicenow/mcp");
    // Streamable: unknown session → 404; no session on a non-initialize request → 400.
    let resp = streamable_post(&h, &mcp, Some("not-a-session"), LIST.into()).await;
    assert_eq!(resp.status(), 404);
    let resp = streamable_post(&h, &mcp, None, LIST.into()).await;
    assert_eq!(resp.status(), 400);
    // Legacy: unknown → 404 JSON; missing → 400 JSON.
    let resp = h
        .post(gw.url("/agents/servicenow/messages?session_id=deadbeef"))
        .body(LIST)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["code"],
        "session_not_found"
    );
    let resp = h
        .post(gw.url("/agents/servicenow/messages"))
        .body(LIST)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["code"],
        "missing_session_id"
    );
    // A legacy session id used under another agent's URL is unknown there.
    let c = SseClient::connect(&gw.url("/agents/servicenow/sse")).await;
    let resp = h
        .post(gw.url(&format!(
            "/agents/helpdesk/messages?session_id={}",
            c.session_id
        )))
        .body(LIST)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    gw.stop().await;
}

#[tokio::test]
async fn streamable_session_lifecycle_statuses() {
    let gw = TestGateway::spawn().await;
    let h = http();
    let mcp = gw.url("/agents/servicenow/mcp");
    let sid = streamable_initialize(&h, &mcp).await;

    // GET with the session opens a stream (never 405).
    let resp = h
        .get(&mcp)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    drop(resp);

    // A notification is 202.
    let resp = streamable_post(
        &h,
        &mcp,
        Some(&sid),
        json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":99}})
            .to_string(),
    )
    .await;
    assert_eq!(resp.status(), 202);

    // Unsupported protocol version header → 400.
    let resp = h
        .post(&mcp)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("mcp-session-id", &sid)
        .header("mcp-protocol-version", "1999-01-01")
        .body(LIST)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);

    // Unknown method → JSON-RPC error (method not found), session still fine.
    let resp = streamable_post(
        &h,
        &mcp,
        Some(&sid),
        json!({"jsonrpc":"2.0","id":5,"method":"no/such/method","params":{}}).to_string(),
    )
    .await;
    let msgs = response_messages(resp).await;
    assert_eq!(msgs.last().unwrap()["error"]["code"], -32601, "{msgs:?}");

    // DELETE → 204, then the id is unknown → 404.
    let resp = h
        .delete(&mcp)
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let resp = streamable_post(&h, &mcp, Some(&sid), LIST.into()).await;
    assert_eq!(resp.status(), 404);
    gw.stop().await;
}

#[tokio::test]
async fn legacy_notifications_are_202_and_unknown_methods_get_a_jsonrpc_error() {
    let gw = TestGateway::spawn().await;
    let mut c = SseClient::connect(&gw.url("/agents/servicenow/sse")).await;
    c.initialize().await;
    let resp = c
        .post_raw(
            json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}})
                .to_string(),
        )
        .await;
    assert_eq!(resp.status(), 202);
    let r = c.request(9, "server/discover", json!({})).await;
    assert!(r["error"]["code"].is_i64(), "{r}");
    let r = c.request(10, "no/such/method", json!({})).await;
    assert_eq!(r["error"]["code"], -32601, "{r}");
    gw.stop().await;
}

#[tokio::test]
async fn bad_host_or_origin_is_403_on_every_transport() {
    let gw = TestGateway::spawn().await;
    let h = http();
    for path in [
        "/agents/servicenow/sse",
        "/agents/servicenow/mcp",
        "/agents/servicenow/messages?session_id=x",
    ] {
        let resp = h
            .post(gw.url(path))
            .header("host", "evil.example.com")
            .body(LIST)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "Host on {path}");
        assert_eq!(
            resp.json::<Value>().await.unwrap()["code"],
            "host_not_allowed"
        );
        let resp = h
            .post(gw.url(path))
            .header("origin", "https://evil.example.com")
            .body(LIST)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "Origin on {path}");
        assert_eq!(
            resp.json::<Value>().await.unwrap()["code"],
            "origin_not_allowed"
        );
    }
    let resp = h
        .get(gw.url("/agents/servicenow/sse"))
        .header("host", "evil.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    // `localhost` with any port is allowed by default.
    let resp = h
        .get(gw.url("/agents/servicenow/sse"))
        .header("host", format!("localhost:{}", gw.addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    gw.stop().await;
}

#[tokio::test]
async fn oversized_bodies_are_413_and_the_session_survives() {
    let gw = TestGateway::spawn().await;
    let big = json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"search_incident","arguments":{"query":"x".repeat(100_000)}}}).to_string();
    // Legacy
    let mut c = SseClient::connect(&gw.url("/agents/servicenow/sse")).await;
    c.initialize().await;
    let resp = c.post_raw(big.clone()).await;
    assert_eq!(resp.status(), 413);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["code"],
        "body_too_large"
    );
    let ok = c
        .call_tool(4, "get_incident", json!({"number":"INC0012346"}))
        .await;
    assert_eq!(tool_json(&ok)["number"], "INC0012346");
    // Streamable
    let h = http();
    let mcp = gw.url("/agents/servicenow/mcp");
    let sid = streamable_initialize(&h, &mcp).await;
    let resp = streamable_post(&h, &mcp, Some(&sid), big).await;
    assert_eq!(resp.status(), 413);
    let resp = streamable_post(&h, &mcp, Some(&sid), LIST.into()).await;
    assert_eq!(resp.status(), 200);
    assert!(response_messages(resp).await[0]["result"]["tools"].is_array());
    gw.stop().await;
}

#[tokio::test]
async fn malformed_json_is_400_with_a_parse_error_and_the_session_survives() {
    let gw = TestGateway::spawn().await;
    // Legacy: broken JSON → -32700; valid JSON that is not JSON-RPC → -32600.
    let mut c = SseClient::connect(&gw.url("/agents/servicenow/sse")).await;
    c.initialize().await;
    for (body, code) in [
        ("{\"jsonrpc\": \"2.0\", ", -32700),
        ("[1,2,3]", -32600),
        (r#" [{"jsonrpc":"2.0","id":1,"method":"ping"}]"#, -32600),
        ("{\"hello\":1}", -32600),
    ] {
        let resp = c.post_raw(body).await;
        assert_eq!(resp.status(), 400, "{body}");
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["error"]["code"], code, "{body}: {err}");
        assert_eq!(err["jsonrpc"], "2.0");
        // An array is a batch, and the answer says that MCP has none (not serde's words).
        let batch = body.trim_start().starts_with('[');
        let message = err["error"]["message"].as_str().unwrap();
        assert_eq!(
            message.contains("batches are not supported"),
            batch,
            "{message}"
        );
    }
    let ok = c.request(5, "tools/list", json!({})).await;
    assert!(ok["result"]["tools"].is_array());
    // Streamable
    let h = http();
    let mcp = gw.url("/agents/servicenow/mcp");
    let sid = streamable_initialize(&h, &mcp).await;
    let resp = streamable_post(&h, &mcp, Some(&sid), "{not json".into()).await;
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], -32700, "{err}");
    let batch = format!("[{LIST}]");
    let resp = streamable_post(&h, &mcp, Some(&sid), batch).await;
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], -32600, "{err}");
    let message = err["error"]["message"].as_str().unwrap();
    assert!(message.contains("batches are not supported"), "{message}");
    let resp = streamable_post(&h, &mcp, Some(&sid), LIST.into()).await;
    assert_eq!(resp.status(), 200);
    gw.stop().await;
}

#[tokio::test]
async fn index_and_health_answer() {
    let gw = TestGateway::spawn().await;
    let h = http();
    let index: Value = gw.get_json("/").await.1;
    let names: Vec<_> = index["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["helpdesk", "servicenow"]);
    assert_eq!(index["agents"][1]["mcp"], "/agents/servicenow/mcp");
    let resp = h.get(gw.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["x-request-id"].len(),
        32,
        "a request id is made up"
    );
    let resp = h
        .get(gw.url("/agents/servicenow/mcp"))
        .header("x-request-id", "req-abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["x-request-id"],
        "req-abc-123",
        "a given request id is kept"
    );
    let resp = h.get(gw.url("/readyz")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    gw.stop().await;
}

/// The events of an SSE body whose data is empty (SEP-1699 priming events), and whether the
/// first event of the body is one.
fn priming_events(body: &str) -> (usize, bool) {
    let events: Vec<&str> = body
        .split("\n\n")
        .filter(|e| e.lines().any(|l| !l.starts_with(':') && !l.is_empty()))
        .collect();
    let is_priming = |event: &str| {
        let data: Vec<&str> = event
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .collect();
        !data.is_empty() && data.iter().all(|d| d.trim().is_empty())
    };
    let count = events.iter().filter(|e| is_priming(e)).count();
    (count, events.first().is_some_and(|e| is_priming(e)))
}

/// A Streamable HTTP POST of session `sid` with `MCP-Protocol-Version: version`.
async fn post_at(
    h: &reqwest::Client,
    mcp: &str,
    sid: &str,
    version: &str,
    body: Value,
) -> reqwest::Response {
    h.post(mcp)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("mcp-session-id", sid)
        .header("mcp-protocol-version", version)
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn priming_events_go_only_to_sessions_that_negotiated_2025_11_25() {
    let gw = TestGateway::spawn().await;
    let h = http();
    let mcp = gw.url("/agents/servicenow/mcp");
    for (version, primed) in [
        ("2025-03-26", false),
        ("2025-06-18", false),
        ("2025-11-25", true),
    ] {
        // The initialize answer.
        let resp = streamable_open_at(&h, &mcp, version).await;
        assert_eq!(resp.status(), 200, "{version}");
        let sid = resp.headers()["mcp-session-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let body = resp.text().await.unwrap();
        assert_eq!(
            priming_events(&body),
            (usize::from(primed), primed),
            "{version} initialize: {body:?}"
        );
        assert!(body.contains("\"protocolVersion\""), "{body}");
        let resp = post_at(
            &h,
            &mcp,
            &sid,
            version,
            json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
        )
        .await;
        assert_eq!(resp.status(), 202);

        // A tools/call answer: priming first for a 2025-11-25 session, none otherwise; the
        // answer keeps its event id either way (resumption after it still works).
        let call = json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"get_incident","arguments":{"number":"INC0012346"}}});
        let body = post_at(&h, &mcp, &sid, version, call)
            .await
            .text()
            .await
            .unwrap();
        assert_eq!(
            priming_events(&body),
            (usize::from(primed), primed),
            "{version} tools/call: {body:?}"
        );
        assert!(body.contains("INC0012346"), "{body}");
        let answer = body
            .split("\n\n")
            .find(|e| e.contains("INC0012346"))
            .unwrap();
        assert!(answer.lines().any(|l| l.starts_with("id:")), "{answer:?}");

        // The session's own GET stream: read whole once the session ends.
        let get = h
            .get(&mcp)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", &sid)
            .header("mcp-protocol-version", version)
            .send()
            .await
            .unwrap();
        assert_eq!(get.status(), 200);
        let resp = h
            .delete(&mcp)
            .header("mcp-session-id", &sid)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 204);
        let body = tokio::time::timeout(std::time::Duration::from_secs(10), get.text())
            .await
            .expect("the GET stream ends with its session")
            .unwrap();
        assert_eq!(
            priming_events(&body),
            (usize::from(primed), primed),
            "{version} GET: {body:?}"
        );
    }
    gw.stop().await;
}

/// A JSON-RPC error's code and message.
fn error_of(message: &Value) -> (i64, String) {
    let error = &message["error"];
    (
        error["code"]
            .as_i64()
            .unwrap_or_else(|| panic!("not an error: {message}")),
        error["message"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn malformed_tool_arguments_are_invalid_params_and_unknown_methods_are_named() {
    let gw = TestGateway::spawn().await;
    let h = http();
    let mcp = gw.url("/agents/servicenow/mcp");
    let sid = streamable_initialize(&h, &mcp).await;
    let mut legacy = SseClient::connect(&gw.url("/agents/servicenow/sse")).await;
    legacy.initialize().await;
    let mut id = 10;
    for arguments in [json!("INC0012346"), json!([1, 2]), json!(7)] {
        id += 1;
        let params = json!({"name": "get_incident", "arguments": arguments});
        let streamable = response_messages(
            streamable_post(
                &h,
                &mcp,
                Some(&sid),
                json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":params}).to_string(),
            )
            .await,
        )
        .await;
        let over_legacy = legacy.request(id, "tools/call", params).await;
        for (transport, message) in [
            ("streamable", streamable.last().unwrap()),
            ("legacy", &over_legacy),
        ] {
            let (code, text) = error_of(message);
            assert_eq!(code, -32602, "{transport} {arguments}: {message}");
            assert!(
                text.contains("tools/call")
                    && text.contains("arguments")
                    && text.contains("object"),
                "{transport} {arguments}: the message says what is wrong: {text}"
            );
        }
    }
    // A method nobody serves: -32601, naming it and saying so.
    id += 1;
    let streamable = response_messages(
        streamable_post(
            &h,
            &mcp,
            Some(&sid),
            json!({"jsonrpc":"2.0","id":id,"method":"no/such/method","params":{}}).to_string(),
        )
        .await,
    )
    .await;
    let over_legacy = legacy.request(id, "no/such/method", json!({})).await;
    for message in [streamable.last().unwrap(), &over_legacy] {
        let (code, text) = error_of(message);
        assert_eq!(code, -32601, "{message}");
        assert_eq!(text, "no/such/method: method not found", "{message}");
    }
    // Both sessions still work.
    let ok = legacy
        .call_tool(40, "get_incident", json!({"number":"INC0012346"}))
        .await;
    assert_eq!(tool_json(&ok)["number"], "INC0012346");
    let resp = streamable_post(&h, &mcp, Some(&sid), LIST.into()).await;
    assert_eq!(resp.status(), 200);
    assert!(response_messages(resp).await[0]["result"]["tools"].is_array());
    gw.stop().await;
}

/// Asserts that `resp` is `status` with a JSON `{code, message}` body whose message
/// contains every one of `says`.
async fn assert_json_error(resp: reqwest::Response, status: u16, code: &str, says: &[&str]) {
    assert_eq!(resp.status(), status, "{code}");
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(content_type.as_deref(), Some("application/json"), "{code}");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    let message = body["message"].as_str().unwrap();
    for s in says {
        assert!(message.contains(s), "{code}: {message:?} should say {s:?}");
    }
}

#[tokio::test]
async fn streamable_http_errors_are_json_and_say_what_was_wrong() {
    let gw = TestGateway::spawn().await;
    let h = http();
    let mcp = gw.url("/agents/servicenow/mcp");
    let sid = streamable_initialize(&h, &mcp).await;
    let post = |accept: &'static str, content_type: &'static str| {
        h.post(&mcp)
            .header("accept", accept)
            .header("content-type", content_type)
            .header("mcp-session-id", &sid)
            .header("mcp-protocol-version", "2025-06-18")
            .body(LIST)
    };
    let still_works = || async {
        let resp = streamable_post(&h, &mcp, Some(&sid), LIST.into()).await;
        assert_eq!(resp.status(), 200);
        assert!(response_messages(resp).await[0]["result"]["tools"].is_array());
    };

    // 406: an Accept without text/event-stream (POST and GET).
    let resp = post("application/json", "application/json")
        .send()
        .await
        .unwrap();
    assert_json_error(
        resp,
        406,
        "not_acceptable",
        &["Accept", "text/event-stream", "application/json"],
    )
    .await;
    still_works().await;
    let resp = h
        .get(&mcp)
        .header("accept", "text/html")
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert_json_error(
        resp,
        406,
        "not_acceptable",
        &["Accept", "text/event-stream"],
    )
    .await;
    still_works().await;
    // 415: a body that is not declared JSON.
    let resp = post("application/json, text/event-stream", "text/plain")
        .send()
        .await
        .unwrap();
    assert_json_error(
        resp,
        415,
        "unsupported_media_type",
        &["Content-Type", "application/json", "text/plain"],
    )
    .await;
    still_works().await;
    // 400: JSON that is no JSON-RPC message (a JSON-RPC error, as for broken JSON).
    let resp = streamable_post(&h, &mcp, Some(&sid), r#"{"jsonrpc":"2.0","id":5}"#.into()).await;
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], -32600, "{err}");
    still_works().await;
    // 400: an unsupported protocol version; a request without a session.
    let resp = h
        .post(&mcp)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("mcp-session-id", &sid)
        .header("mcp-protocol-version", "1999-01-01")
        .body(LIST)
        .send()
        .await
        .unwrap();
    assert_json_error(
        resp,
        400,
        "bad_request",
        &["MCP-Protocol-Version", "1999-01-01"],
    )
    .await;
    still_works().await;
    let resp = streamable_post(&h, &mcp, None, LIST.into()).await;
    assert_json_error(
        resp,
        400,
        "missing_session_id",
        &["Mcp-Session-Id", "initialize"],
    )
    .await;
    let resp = h
        .get(&mcp)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_json_error(resp, 400, "missing_session_id", &["Mcp-Session-Id"]).await;
    // 404: a session that does not exist (POST, GET, DELETE).
    let resp = streamable_post(&h, &mcp, Some("no-such-session"), LIST.into()).await;
    assert_json_error(resp, 404, "session_not_found", &["no-such-session"]).await;
    let resp = h
        .get(&mcp)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", "no-such-session")
        .send()
        .await
        .unwrap();
    assert_json_error(resp, 404, "session_not_found", &["no-such-session"]).await;
    let resp = h
        .delete(&mcp)
        .header("mcp-session-id", "no-such-session")
        .send()
        .await
        .unwrap();
    assert_json_error(resp, 404, "session_not_found", &["no-such-session"]).await;
    // 405: a method Streamable HTTP does not serve.
    let resp = h
        .put(&mcp)
        .header("mcp-session-id", &sid)
        .body(LIST)
        .send()
        .await
        .unwrap();
    assert!(resp.headers().contains_key("allow"));
    assert_json_error(resp, 405, "method_not_allowed", &["PUT"]).await;
    still_works().await;
    gw.stop().await;
}

#[tokio::test]
async fn accept_any_is_accepted_as_both_types() {
    let gw = TestGateway::spawn().await;
    let h = http();
    let mcp = gw.url("/agents/servicenow/mcp");
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"httpx","version":"1"}}});
    let resp = h
        .post(&mcp)
        .header("accept", "*/*")
        .header("content-type", "application/json")
        .body(init.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let sid = resp.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(response_messages(resp).await[0]["result"]["serverInfo"].is_object());
    for accept in [
        "*/*",
        "application/*, text/*",
        "text/event-stream, */*;q=0.1",
    ] {
        let resp = h
            .post(&mcp)
            .header("accept", accept)
            .header("content-type", "application/json")
            .header("mcp-session-id", &sid)
            .body(LIST)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{accept}");
        assert!(
            response_messages(resp).await[0]["result"]["tools"].is_array(),
            "{accept}"
        );
    }
    let resp = h
        .get(&mcp)
        .header("accept", "*/*")
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    gw.stop().await;
}
