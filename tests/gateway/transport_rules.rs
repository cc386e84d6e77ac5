//! The transport rules of DESIGN §3, checked with raw HTTP where status codes matter.

use serde_json::{Value, json};

use crate::support::helpers::{
    SseClient, TestGateway, http, response_messages, streamable_initialize, streamable_post,
    tool_json,
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
        ("{\"hello\":1}", -32600),
    ] {
        let resp = c.post_raw(body).await;
        assert_eq!(resp.status(), 400, "{body}");
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["error"]["code"], code, "{body}: {err}");
        assert_eq!(err["jsonrpc"], "2.0");
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
