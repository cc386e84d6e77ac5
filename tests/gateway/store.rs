//! The embedded store is real SQLite on disk: seeded once, and it survives a restart.

use serde_json::json;

use crate::support::helpers::{Options, SseClient, TestGateway, tool_json};
use crate::support::scenarios;

#[tokio::test]
async fn seeded_store_and_new_incidents_survive_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");

    let gw = TestGateway::spawn_with(Options {
        data_dir: Some(data.clone()),
        ..Options::default()
    })
    .await;
    let mut c = SseClient::connect(&gw.url("/agents/servicenow/sse")).await;
    c.initialize().await;
    let vpn = tool_json(
        &c.call_tool(1, "get_incident", json!({"number": "INC0012346"}))
            .await,
    );
    assert_eq!(vpn["short_description"], "VPN not working");
    assert_eq!(vpn["state"], "In Progress");
    assert_eq!(vpn["urgency"], "2 - Medium");
    let created = tool_json(
        &c.call_tool(
            2,
            "create_incident",
            json!({"short_description": "Survives restarts"}),
        )
        .await,
    );
    let seeded_count = tool_json(
        &c.call_tool(3, "search_incident", json!({"limit": 100}))
            .await,
    )["count"]
        .as_u64()
        .unwrap();
    drop(c);
    gw.stop().await;
    assert!(data.join("incidents.db").exists());

    let gw = TestGateway::spawn_with(Options {
        data_dir: Some(data.clone()),
        ..Options::default()
    })
    .await;
    let mut c = SseClient::connect(&gw.url("/agents/servicenow/sse")).await;
    c.initialize().await;
    let again = tool_json(
        &c.call_tool(1, "get_incident", json!({"number": created["number"]}))
            .await,
    );
    assert_eq!(again["short_description"], "Survives restarts");
    // Not reseeded: same number of incidents as before the restart.
    let count = tool_json(
        &c.call_tool(2, "search_incident", json!({"limit": 100}))
            .await,
    )["count"]
        .as_u64()
        .unwrap();
    assert_eq!(count, seeded_count);
    gw.stop().await;
}

#[tokio::test]
async fn concurrent_creates_get_distinct_numbers() {
    let gw = TestGateway::spawn().await;
    scenarios::concurrent_creates_get_distinct_numbers(&gw.url("/agents/servicenow/sse")).await;
    gw.stop().await;
}

#[tokio::test]
async fn texts_longer_than_servicenow_holds_are_refused_on_the_embedded_store() {
    let gw = TestGateway::spawn().await;
    scenarios::texts_longer_than_servicenow_holds_are_refused(&gw.url("/agents/servicenow/sse"))
        .await;
    gw.stop().await;
}
