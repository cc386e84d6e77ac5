//! MCP-level scenarios of the incident tools that hold on every incident store: each test
//! file runs them against its own gateway (the embedded store in `mcp_sse`, `mcp_streamable`
//! and `store`; a ServiceNow instance through the Table API in `table_api`).
//!
//! They rely on the seed both stores start with: `INC0012346` "VPN not working", In Progress,
//! medium impact and urgency.

use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};

use crate::support::helpers::{SseClient, args, rmcp_client, tool_json};

/// The agent tool (named after the agent) and the four inner tools, sorted.
pub fn tool_names(agent: &str) -> Vec<String> {
    let mut names: Vec<String> = [
        "create_incident",
        "get_incident",
        "search_incident",
        agent,
        "update_incident",
    ]
    .map(str::to_owned)
    .to_vec();
    names.sort();
    names
}

pub fn structured(result: &rmcp::model::CallToolResult) -> Value {
    assert_eq!(result.is_error, Some(false), "tool failed: {result:?}");
    result
        .structured_content
        .clone()
        .expect("structured content")
}

/// rmcp's client over Streamable HTTP at `url` (agent `agent`): [`every_tool`].
pub async fn every_tool_over_streamable_http(url: &str, agent: &str) {
    let client = rmcp_client(url).await;
    every_tool(&client, agent).await;
    client.cancel().await.unwrap();
}

/// rmcp's `client` of agent `agent`, on any transport: list every tool with described
/// schemas, then create → get → resolve without notes (-32602) → resolve → search → get an
/// unknown incident (`isError`).
pub async fn every_tool(client: &rmcp::service::RunningService<rmcp::RoleClient, ()>, agent: &str) {
    let info = client.peer_info().expect("server info");
    assert_eq!(
        info.server_info.as_ref().unwrap().name,
        format!("switchboard/{agent}")
    );

    // Arrange / Act: list
    let tools = client.list_all_tools().await.unwrap();
    let mut names: Vec<_> = tools.iter().map(|t| t.name.to_string()).collect();
    names.sort();
    assert_eq!(names, tool_names(agent));
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
    assert_eq!(got, created, "a record reads back as it was written");

    // Resolving without close notes is invalid arguments: JSON-RPC -32602.
    let err = client
        .call_tool(
            CallToolRequestParams::new("update_incident")
                .with_arguments(args(json!({"number": number, "state": "Resolved"}))),
        )
        .await
        .unwrap_err();
    // The gateway's own JSON-RPC error, nothing else: a transport error or any other code
    // whose text happens to mention "close" must fail here.
    let rmcp::ServiceError::McpError(data) = err else {
        panic!("expected a JSON-RPC error answer, got {err:?}");
    };
    assert_eq!(
        data.code,
        rmcp::model::ErrorCode::INVALID_PARAMS,
        "{data:?}"
    );
    assert_eq!(
        data.message,
        "update_incident: invalid arguments: close_notes are required to set state Resolved: \
         say how the incident was resolved (close_notes), in the same update"
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
    assert_eq!(updated["close_code"], "Solved (Permanently)");
    assert_ne!(updated["resolved_at"], "");

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
}

/// A legacy HTTP+SSE client at `url` (agent `agent`): list, create → get → update → search,
/// the seed's third question (resolve INC0012346 with a note), and invalid arguments as
/// JSON-RPC -32602 on the stream with the session living on.
pub async fn every_tool_over_legacy_sse(url: &str, agent: &str) {
    let mut c = SseClient::connect(url).await;
    assert!(
        c.endpoint
            .contains(&format!("/agents/{agent}/messages?session_id=")),
        "{}",
        c.endpoint
    );

    let init = c.initialize().await;
    assert_eq!(init["result"]["protocolVersion"], "2024-11-05");
    assert_eq!(
        init["result"]["serverInfo"]["name"],
        format!("switchboard/{agent}")
    );

    let list = c.request(1, "tools/list", json!({})).await;
    let mut names: Vec<_> = list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    assert_eq!(names, tool_names(agent));

    let vpn = tool_json(
        &c.call_tool(2, "get_incident", json!({"number": "inc0012346"}))
            .await,
    );
    assert_eq!(vpn["short_description"], "VPN not working");
    assert_eq!(vpn["state"], "In Progress");
    assert_eq!(vpn["urgency"], "2 - Medium");
    assert_eq!(vpn["priority"], "3 - Moderate");

    let created = tool_json(
        &c.call_tool(
            3,
            "create_incident",
            json!({"short_description": "Printer on fire", "urgency": "2", "impact": "Low"}),
        )
        .await,
    );
    let number = created["number"].as_str().unwrap().to_owned();
    assert_eq!(created["priority"], "4 - Low");

    let got = tool_json(
        &c.call_tool(4, "get_incident", json!({"number": number}))
            .await,
    );
    assert_eq!(got["short_description"], "Printer on fire");

    let updated = tool_json(
        &c.call_tool(
            5,
            "update_incident",
            json!({"number": number, "state": "In Progress", "work_notes": "Extinguisher found"}),
        )
        .await,
    );
    assert_eq!(updated["state"], "In Progress");
    assert!(
        updated["work_notes"]
            .as_str()
            .unwrap()
            .contains("Extinguisher found"),
        "{updated}"
    );

    let found = tool_json(
        &c.call_tool(
            6,
            "search_incident",
            json!({"query": "printer", "limit": 5}),
        )
        .await,
    );
    assert!(found["count"].as_u64().unwrap() >= 1, "{found}");
    let in_progress = tool_json(
        &c.call_tool(
            7,
            "search_incident",
            json!({"state": "in progress", "query": "on fire"}),
        )
        .await,
    );
    assert_eq!(in_progress["count"], 1, "{in_progress}");
    assert_eq!(in_progress["incidents"][0]["number"], number.as_str());

    // The seed's third question: resolve INC0012346 with a note.
    let resolved = tool_json(
        &c.call_tool(
            8,
            "update_incident",
            json!({"number": "INC0012346", "state": "Resolved", "close_notes": "VPN config fixed"}),
        )
        .await,
    );
    assert_eq!(resolved["state"], "Resolved");

    // Invalid arguments: JSON-RPC -32602 on the stream, and the session lives on.
    let bad = c
        .call_tool(
            9,
            "update_incident",
            json!({"number": number, "state": "Done"}),
        )
        .await;
    assert_eq!(bad["error"]["code"], -32602, "{bad}");
    assert!(
        bad["error"]["message"].as_str().unwrap().contains("Done"),
        "{bad}"
    );
    let again = c.request(10, "tools/list", json!({})).await;
    assert!(again["result"]["tools"].is_array());
}

/// 8 legacy SSE sessions creating 5 incidents each at once: each answer is the record its own
/// call created (its summary), and the 40 numbers are distinct. Returns `(summary, number)`.
///
/// On the embedded store the gateway assigns the numbers, so distinct numbers are its claim.
/// On the Table API ServiceNow assigns them, so there the caller checks what the gateway owes:
/// one `POST` per create, and each answer the instance's own record (`table_api.rs`).
pub async fn concurrent_creates_get_distinct_numbers(url: &str) -> Vec<(String, String)> {
    let mut tasks = Vec::new();
    for i in 0..8 {
        let url = url.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut c = SseClient::connect(&url).await;
            c.initialize().await;
            let mut created = Vec::new();
            for j in 0..5 {
                let summary = format!("load {i}/{j}");
                let r = c
                    .call_tool(j, "create_incident", json!({"short_description": summary}))
                    .await;
                let record = tool_json(&r);
                // Each answer is the record this call created, not a neighbour's.
                assert_eq!(record["short_description"], summary.as_str(), "{record}");
                created.push((summary, record["number"].as_str().unwrap().to_owned()));
            }
            created
        }));
    }
    let mut all = Vec::new();
    let mut numbers = std::collections::BTreeSet::new();
    for t in tasks {
        for (summary, number) in t.await.unwrap() {
            assert!(numbers.insert(number.clone()), "duplicate number {number}");
            all.push((summary, number));
        }
    }
    assert_eq!(all.len(), 40);
    all
}

/// What `texts_longer_than_servicenow_holds_are_refused` sends, and the one message every
/// store must answer with (JSON-RPC -32602, before the store is reached).
const TOO_LONG: [(&str, &str, usize, &str); 3] = [
    (
        "create_incident",
        "short_description",
        161,
        "short_description is too long: 161 characters given, and ServiceNow's incident field holds at most 160",
    ),
    (
        "update_incident",
        "work_notes",
        4001,
        "work_notes is too long: 4001 characters given, and ServiceNow's incident field holds at most 4000",
    ),
    (
        "update_incident",
        "category",
        41,
        "category is too long: 41 characters given, and ServiceNow's incident field holds at most 40",
    ),
];

/// Over legacy SSE at `url`: texts longer than ServiceNow's fields hold are refused with a
/// message naming the field, its limit and the length given; a text of exactly the limit,
/// counted in characters rather than bytes, is accepted (one incident is created).
pub async fn texts_longer_than_servicenow_holds_are_refused(url: &str) {
    let mut c = SseClient::connect(url).await;
    c.initialize().await;
    for (id, (tool, field, length, expected)) in (1..).zip(TOO_LONG) {
        let mut arguments = json!({ field: "x".repeat(length) });
        if tool == "update_incident" {
            arguments["number"] = json!("INC0012346");
        }
        let response = c.call_tool(id, tool, arguments).await;
        assert_eq!(
            response["error"]["code"], -32602,
            "{tool}.{field}: {response}"
        );
        let message = response["error"]["message"].as_str().unwrap();
        assert!(
            message.ends_with(expected),
            "{tool}.{field}: expected {expected:?}, got {message:?}"
        );
    }
    let at_limit = "é".repeat(160);
    let created = tool_json(
        &c.call_tool(
            10,
            "create_incident",
            json!({ "short_description": at_limit }),
        )
        .await,
    );
    assert_eq!(created["short_description"], at_limit);
}
