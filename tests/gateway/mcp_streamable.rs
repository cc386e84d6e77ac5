//! Streamable HTTP with rmcp's client, at `/mcp` and at `/sse`.

use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};

use crate::helpers::{TestGateway, args, rmcp_client};

/// The agent tool (named after the agent) and the four inner tools, sorted.
const TOOLS: [&str; 5] = [
    "create_incident",
    "get_incident",
    "search_incident",
    "servicenow",
    "update_incident",
];

fn structured(result: &rmcp::model::CallToolResult) -> Value {
    assert_eq!(result.is_error, Some(false), "tool failed: {result:?}");
    result
        .structured_content
        .clone()
        .expect("structured content")
}

async fn exercise_every_tool(url: &str) {
    let client = rmcp_client(url).await;
    let info = client.peer_info().expect("server info");
    assert_eq!(
        info.server_info.as_ref().unwrap().name,
        "switchboard/servicenow"
    );

    // Arrange / Act: list
    let tools = client.list_all_tools().await.unwrap();
    let mut names: Vec<_> = tools.iter().map(|t| t.name.to_string()).collect();
    names.sort();
    assert_eq!(names, TOOLS);
    for tool in &tools {
        assert!(tool.description.as_deref().is_some_and(|d| !d.is_empty()));
        let props = tool.input_schema["properties"].as_object().unwrap();
        for (prop, schema) in props {
            assert!(
                schema["description"]
                    .as_str()
                    .is_some_and(|d| !d.is_empty()),
                "{}.{prop} has no description",
                tool.name
            );
        }
    }

    // create → get → update → search
    let created = structured(
        &client
            .call_tool(
                CallToolRequestParams::new("create_incident").with_arguments(args(json!({
                    "short_description": "Login failure affecting all users",
                    "urgency": "High",
                    "impact": "1"
                }))),
            )
            .await
            .unwrap(),
    );
    let number = created["number"].as_str().unwrap().to_owned();
    assert!(number.starts_with("INC") && number.len() == 10, "{number}");
    assert_eq!(created["priority"], "1 - Critical");
    assert_eq!(created["state"], "New");

    let got = structured(
        &client
            .call_tool(
                CallToolRequestParams::new("get_incident")
                    .with_arguments(args(json!({"number": number}))),
            )
            .await
            .unwrap(),
    );
    assert_eq!(
        got["short_description"],
        "Login failure affecting all users"
    );

    // Resolving without close notes is invalid arguments: JSON-RPC -32602.
    let err = client
        .call_tool(
            CallToolRequestParams::new("update_incident")
                .with_arguments(args(json!({"number": number, "state": "Resolved"}))),
        )
        .await
        .unwrap_err();
    let text = format!("{err:?}");
    assert!(
        text.contains("-32602") || text.contains("InvalidParams") || text.contains("close"),
        "{text}"
    );

    let updated = structured(
        &client
            .call_tool(CallToolRequestParams::new("update_incident").with_arguments(args(json!({
                "number": number, "state": "Resolved", "close_notes": "Identity provider restarted"
            }))))
            .await
            .unwrap(),
    );
    assert_eq!(updated["state"], "Resolved");
    assert_eq!(updated["close_notes"], "Identity provider restarted");

    let found = structured(
        &client
            .call_tool(
                CallToolRequestParams::new("search_incident")
                    .with_arguments(args(json!({"query": "vpn"}))),
            )
            .await
            .unwrap(),
    );
    let numbers: Vec<_> = found["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["number"].as_str().unwrap().to_owned())
        .collect();
    assert!(numbers.contains(&"INC0012346".to_owned()), "{found}");

    // An unknown incident is a tool error the caller can read, not a protocol error.
    let missing = client
        .call_tool(
            CallToolRequestParams::new("get_incident")
                .with_arguments(args(json!({"number": "INC0999999"}))),
        )
        .await
        .unwrap();
    assert_eq!(missing.is_error, Some(true));

    client.cancel().await.unwrap();
}

#[tokio::test]
async fn rmcp_client_lists_and_calls_every_tool_at_mcp() {
    let gw = TestGateway::spawn().await;
    exercise_every_tool(&gw.url("/agents/servicenow/mcp")).await;
    gw.stop().await;
}

#[tokio::test]
async fn rmcp_client_lists_and_calls_every_tool_at_sse_url() {
    let gw = TestGateway::spawn().await;
    exercise_every_tool(&gw.url("/agents/servicenow/sse")).await;
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
