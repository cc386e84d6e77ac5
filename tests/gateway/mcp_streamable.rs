//! Streamable HTTP with rmcp's client, at `/mcp` and at `/sse`.

use rmcp::model::CallToolRequestParams;
use serde_json::json;

use crate::support::helpers::{TestGateway, args, http, rmcp_client};
use crate::support::scenarios::{self, structured};

#[tokio::test]
async fn rmcp_client_lists_and_calls_every_tool_at_mcp() {
    let gw = TestGateway::spawn().await;
    scenarios::every_tool_over_streamable_http(&gw.url("/agents/servicenow/mcp"), "servicenow")
        .await;
    gw.stop().await;
}

#[tokio::test]
async fn rmcp_client_lists_and_calls_every_tool_at_sse_url() {
    let gw = TestGateway::spawn().await;
    scenarios::every_tool_over_streamable_http(&gw.url("/agents/servicenow/sse"), "servicenow")
        .await;
    gw.stop().await;
}

#[tokio::test]
async fn client_of_2026_07_28_is_served_without_a_session() {
    use rmcp::{ClientLifecycleMode, ClientServiceExt, model::ProtocolVersion};
    let gw = TestGateway::spawn().await;
    let transport =
        rmcp::transport::StreamableHttpClientTransport::from_uri(gw.url("/agents/servicenow/mcp"));
    let client = ()
        .serve_with_lifecycle(
            transport,
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .expect("discover lifecycle must work");
    let tools = client.list_all_tools().await.unwrap();
    assert_eq!(tools.len(), 5);
    let got = client
        .call_tool(
            CallToolRequestParams::new("get_incident")
                .with_arguments(args(json!({"number": "INC0012346"}))),
        )
        .await
        .unwrap();
    assert_eq!(structured(&got)["short_description"], "VPN not working");
    // Stateless: no session was registered.
    assert_eq!(gw.state.sessions().len(), 0);
    let _ = client.cancel().await;
    gw.stop().await;
}

#[tokio::test]
async fn a_2026_07_28_call_whose_answer_comes_first_is_one_json_body() {
    // Arrange: a stateless call (no session) of a tool that answers without progress.
    let gw = TestGateway::spawn().await;
    let body = json!({
        "jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {
            "name": "get_incident",
            "arguments": {"number": "INC0012346"},
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
                "io.modelcontextprotocol/clientCapabilities": {},
            },
        },
    });

    // Act
    let response = http()
        .post(gw.url("/agents/servicenow/mcp"))
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "get_incident")
        .body(body.to_string())
        .send()
        .await
        .unwrap();

    // Assert: the answer is the whole body, as JSON, not an event stream to frame and end.
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let answer: serde_json::Value = response.json().await.unwrap();
    assert_eq!(answer["id"], 7);
    assert_eq!(
        answer["result"]["structuredContent"]["short_description"],
        "VPN not working"
    );
    assert_eq!(gw.state.sessions().len(), 0);
    gw.stop().await;
}

#[tokio::test]
async fn agent_exposing_only_tools_lists_them() {
    let gw = TestGateway::spawn().await;
    let client = rmcp_client(&gw.url("/agents/helpdesk/mcp")).await;
    let tools = client.list_all_tools().await.unwrap();
    assert_eq!(tools.len(), 4);
    assert_eq!(
        client
            .peer_info()
            .unwrap()
            .server_info
            .as_ref()
            .unwrap()
            .name,
        "switchboard/helpdesk"
    );
    client.cancel().await.unwrap();
    gw.stop().await;
}
