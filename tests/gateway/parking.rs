//! Parking: an idle session's MCP engine is released and restarted on its next request,
//! from the client's own handshake, without the client noticing.

use std::time::Duration;

use rmcp::model::CallToolRequestParams;
use serde_json::json;

use crate::support::fake_llm::{FakeLlm, Step};
use crate::support::helpers::{
    Options, SseClient, TestGateway, args, call_result, fixture, http, response_messages,
    rmcp_client, start_call, streamable_initialize, streamable_post, tool_json, tool_text,
};

fn parking_options(after_ms: u64) -> Options {
    let mut opts = Options::default();
    opts.settings.session_park_after = Some(Duration::from_millis(after_ms));
    opts
}

/// Waits (up to 10 s) until session `id` is parked (`true`) or running (`false`).
async fn wait_parked(gw: &TestGateway, id: &str, parked: bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let info = gw.state.sessions().get(id).expect("session must be live");
        if info.parked == parked {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "session {id} never became {}",
            if parked { "parked" } else { "running" }
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn only_session_id(gw: &TestGateway) -> String {
    let all = gw.state.sessions().list();
    assert_eq!(all.len(), 1, "exactly one session expected: {all:?}");
    all[0].id.to_string()
}

#[tokio::test]
async fn an_idle_legacy_session_parks_and_carries_on() {
    let gw = TestGateway::spawn_with(parking_options(100)).await;
    let mut c = SseClient::connect(&gw.url("/agents/servicenow/sse")).await;
    c.initialize().await;
    let first = tool_json(
        &c.call_tool(1, "get_incident", json!({"number": "INC0012346"}))
            .await,
    );
    for round in 0..3 {
        wait_parked(&gw, &c.session_id, true).await;
        let (status, view) = gw
            .get_json(&format!("/admin/sessions/{}", c.session_id))
            .await;
        assert_eq!(status, 200);
        assert_eq!(view["parked"], true, "{view}");
        // The next request restarts the engine, with no new handshake from the client.
        let again = tool_json(
            &c.call_tool(10 + round, "get_incident", json!({"number": "INC0012346"}))
                .await,
        );
        assert_eq!(again, first);
        assert!(!gw.state.sessions().get(&c.session_id).unwrap().parked);
    }
    // A write after parking works too, and is read back by the next engine.
    let created = tool_json(
        &c.call_tool(
            20,
            "create_incident",
            json!({"short_description": "Parked write"}),
        )
        .await,
    );
    wait_parked(&gw, &c.session_id, true).await;
    let read = tool_json(
        &c.call_tool(21, "get_incident", json!({"number": created["number"]}))
            .await,
    );
    assert_eq!(read["short_description"], "Parked write");

    let info = gw.state.sessions().get(&c.session_id).unwrap();
    // initialize + 6 calls: the restarts are not counted as requests.
    assert_eq!(info.requests, 7);
    assert_eq!(info.errors, 0);
    assert_eq!(info.in_flight, 0);
    assert_eq!(info.client_name.as_deref(), Some("sse-test"));
    assert_eq!(only_session_id(&gw), c.session_id);
    drop(c);
    gw.wait_sessions("the legacy session to end", |n| n == 0)
        .await;
    gw.stop().await;
}

#[tokio::test]
async fn an_idle_streamable_session_parks_and_carries_on() {
    let gw = TestGateway::spawn_with(parking_options(100)).await;
    let client = rmcp_client(&gw.url("/agents/servicenow/mcp")).await;
    let tools = client.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "get_incident"));
    let id = only_session_id(&gw);
    for _ in 0..3 {
        wait_parked(&gw, &id, true).await;
        let result = client
            .call_tool(
                CallToolRequestParams::new("get_incident")
                    .with_arguments(args(json!({"number": "INC0012346"}))),
            )
            .await
            .unwrap();
        assert_eq!(result.is_error, Some(false));
        let text = tool_text(&result);
        assert!(text.contains("VPN not working"), "{text}");
        // Same session: rmcp restored it in place, the client never re-initialized.
        assert_eq!(only_session_id(&gw), id);
    }
    let info = gw.state.sessions().get(&id).unwrap();
    // initialize + tools/list + 3 calls.
    assert_eq!(info.requests, 5);
    assert_eq!(info.errors, 0);
    assert!(info.protocol_version.is_some());

    // Ending a parked session: the client's DELETE (rmcp's client sends one on cancel).
    wait_parked(&gw, &id, true).await;
    client.cancel().await.unwrap();
    gw.wait_sessions("the parked session to end on DELETE", |n| n == 0)
        .await;
    gw.stop().await;
}

#[tokio::test]
async fn a_parked_session_ended_by_the_admin_or_the_idle_timeout_is_gone() {
    let mut opts = parking_options(50);
    opts.settings.session_idle_timeout = Duration::from_millis(1500);
    let gw = TestGateway::spawn_with(opts).await;
    let url = gw.url("/agents/servicenow/mcp");
    let http = http();

    // Admin kill of a parked Streamable HTTP session: its next request gets 404.
    let killed = streamable_initialize(&http, &url).await;
    wait_parked(&gw, &killed, true).await;
    let resp = http
        .delete(gw.url(&format!("/admin/sessions/{killed}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let resp = streamable_post(
        &http,
        &url,
        Some(&killed),
        json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}).to_string(),
    )
    .await;
    assert_eq!(resp.status(), 404);

    // Admin kill of a parked legacy session: its stream ends, its POSTs get 404.
    let mut c = SseClient::connect(&gw.url("/agents/servicenow/sse")).await;
    c.initialize().await;
    wait_parked(&gw, &c.session_id, true).await;
    let resp = http
        .delete(gw.url(&format!("/admin/sessions/{}", c.session_id)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    c.closed().await;
    let resp = c
        .post_raw(json!({"jsonrpc":"2.0","id":3,"method":"tools/list"}).to_string())
        .await;
    assert_eq!(resp.status(), 404);

    // A parked Streamable HTTP session is still ended by the idle timeout.
    let idle = streamable_initialize(&http, &url).await;
    wait_parked(&gw, &idle, true).await;
    gw.wait_sessions("the parked session to expire", |n| n == 0)
        .await;
    let resp = streamable_post(
        &http,
        &url,
        Some(&idle),
        json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}).to_string(),
    )
    .await;
    assert_eq!(resp.status(), 404);
    gw.stop().await;
}

#[tokio::test]
async fn a_running_call_keeps_the_engine_and_a_get_stream_outlives_it() {
    let fake = FakeLlm::start(vec![
        Step::Slow(
            Duration::from_millis(400),
            Box::new(Step::ToolCalls(vec![(
                "search_incident",
                json!({"query": "VPN"}),
            )])),
        ),
        Step::Slow(Duration::from_millis(400), Box::new(Step::Text("Done."))),
    ])
    .await;
    let mut opts = parking_options(20);
    opts.agents_dir = fixture("agents/runtime");
    opts.vars = [("FAKE_LLM_URL".to_owned(), fake.url.clone())].into();
    let gw = TestGateway::spawn_with(opts).await;

    // An agent run far longer than the parking delay: the session stays up under it and
    // every progress notification and the answer arrive.
    let client = rmcp_client(&gw.url("/agents/servicenow/mcp")).await;
    let id = only_session_id(&gw);
    wait_parked(&gw, &id, true).await;
    let handle = start_call(&client, "servicenow", json!({"task": "find VPN"})).await;
    fake.wait_requests(1).await;
    for _ in 0..10 {
        assert!(
            !gw.state.sessions().get(&id).unwrap().parked,
            "parked with a call in flight"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let text = tool_text(&call_result(handle).await);
    assert_eq!(text, "Done.");
    client.cancel().await.unwrap();

    // A session's own GET stream is not the engine's: the session parks under it, the
    // stream stays open (keep-alive comments), requests go on, and it ends with the session.
    let http = http();
    let url = gw.url("/agents/servicenow/mcp");
    let sid = streamable_initialize(&http, &url).await;
    let mut stream = http
        .get(&url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &sid)
        .header("mcp-protocol-version", "2025-06-18")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    wait_parked(&gw, &sid, true).await;
    // Still open after parking: keep-alive comments keep coming.
    for _ in 0..2 {
        let chunk = tokio::time::timeout(Duration::from_secs(5), stream.chunk())
            .await
            .expect("the GET stream must stay open")
            .unwrap()
            .expect("the GET stream must not end");
        assert!(!chunk.is_empty());
    }
    let resp = streamable_post(
        &http,
        &url,
        Some(&sid),
        json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}).to_string(),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let messages = response_messages(resp).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(messages[0]["result"]["tools"].is_array(), "{messages:?}");
    let resp = http
        .delete(gw.url(&format!("/admin/sessions/{sid}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(_chunk) = stream.chunk().await.unwrap_or(None) {}
    })
    .await;
    assert!(ended.is_ok(), "the GET stream must end with its session");
    gw.stop().await;
}
