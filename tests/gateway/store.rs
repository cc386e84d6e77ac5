//! The embedded store is real SQLite on disk: seeded once, and it survives a restart.

use serde_json::json;

use crate::helpers::{Options, SseClient, TestGateway, tool_json};

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
async fn concurrent_creates_over_both_transports_get_distinct_numbers() {
    let gw = TestGateway::spawn().await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let url = gw.url("/agents/servicenow/sse");
        tasks.push(tokio::spawn(async move {
            let mut c = SseClient::connect(&url).await;
            c.initialize().await;
            let mut numbers = Vec::new();
            for j in 0..5 {
                let r = c
                    .call_tool(
                        j,
                        "create_incident",
                        json!({"short_description": format!("load {i}/{j}")}),
                    )
                    .await;
                numbers.push(tool_json(&r)["number"].as_str().unwrap().to_owned());
            }
            numbers
        }));
    }
    let mut all = std::collections::BTreeSet::new();
    for t in tasks {
        for n in t.await.unwrap() {
            assert!(all.insert(n.clone()), "duplicate number {n}");
        }
    }
    assert_eq!(all.len(), 40);
    gw.stop().await;
}
