//! The legacy HTTP+SSE transport with our own small SSE client.

use serde_json::json;

use crate::support::helpers::{SseClient, TestGateway, tool_json};
use crate::support::scenarios;

#[tokio::test]
async fn legacy_client_lists_and_calls_every_tool() {
    let gw = TestGateway::spawn().await;
    scenarios::every_tool_over_legacy_sse(&gw.url("/agents/servicenow/sse"), "servicenow").await;
    gw.stop().await;
}

#[tokio::test]
async fn two_sessions_with_the_same_ids_get_their_own_answers() {
    let gw = TestGateway::spawn().await;
    let mut a = SseClient::connect(&gw.url("/agents/servicenow/sse")).await;
    let mut b = SseClient::connect(&gw.url("/agents/servicenow/sse")).await;
    a.initialize().await;
    b.initialize().await;
    // Same id 1 on both sessions, different questions.
    a.post(json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_incident","arguments":{"number":"INC0012346"}}})).await;
    b.post(json!({"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}))
        .await;
    let ra = a.next_message().await;
    let rb = b.next_message().await;
    assert_eq!(tool_json(&ra)["number"], "INC0012346");
    assert!(rb["result"]["tools"].is_array(), "{rb}");
    gw.stop().await;
}

#[tokio::test]
async fn many_requests_in_flight_on_one_session_are_each_answered_once() {
    let gw = TestGateway::spawn().await;
    let mut c = SseClient::connect(&gw.url("/agents/servicenow/sse")).await;
    c.initialize().await;
    let n = 40;
    for id in 100..100 + n {
        let endpoint = c.endpoint.clone();
        // Fire all POSTs without waiting for answers.
        let resp = crate::support::helpers::http()
            .post(endpoint)
            .header("content-type", "application/json")
            .body(json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"search_incident","arguments":{"query":"vpn","limit":1}}}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202);
    }
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..n {
        let msg = c.next_message().await;
        let id = msg["id"].as_i64().unwrap();
        assert!(seen.insert(id), "answered twice: {id}");
        assert_eq!(tool_json(&msg)["count"], 1);
    }
    assert_eq!(seen.len() as i64, n);
    gw.stop().await;
}

#[tokio::test]
async fn legacy_post_accepts_the_session_id_spelling_of_other_servers() {
    let gw = TestGateway::spawn().await;
    let mut c = SseClient::connect(&gw.url("/agents/servicenow/sse")).await;
    c.endpoint = c.endpoint.replace("session_id=", "sessionId=");
    let init = c.initialize().await;
    assert!(init["result"]["serverInfo"].is_object());
    gw.stop().await;
}
