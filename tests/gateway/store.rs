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

/// `search_incident`'s answer as `(count, numbers)`, failing the test on a tool error.
async fn search(c: &mut SseClient, id: i64, query: &str) -> (u64, Vec<String>) {
    let found = tool_json(
        &c.call_tool(id, "search_incident", json!({"query": query, "limit": 100}))
            .await,
    );
    let numbers = found["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["number"].as_str().unwrap().to_owned())
        .collect();
    (found["count"].as_u64().unwrap(), numbers)
}

#[tokio::test]
async fn search_finds_new_words_at_once_and_takes_fts_syntax_as_text() {
    let gw = TestGateway::spawn().await;
    let mut c = SseClient::connect(&gw.url("/agents/servicenow/sse")).await;
    c.initialize().await;
    let created = tool_json(
        &c.call_tool(
            1,
            "create_incident",
            json!({"short_description": "Badge reader rejects (all) \"visitor\" cards"}),
        )
        .await,
    );
    let number = created["number"].as_str().unwrap().to_owned();
    tool_json(
        &c.call_tool(
            2,
            "update_incident",
            json!({"number": number, "work_notes": "Firmware rollback scheduled"}),
        )
        .await,
    );

    assert_eq!(
        search(&mut c, 3, "firmware ROLL").await.1,
        [number.as_str()]
    );
    assert_eq!(search(&mut c, 4, "eader rej").await.1, [number.as_str()]);
    assert_eq!(
        search(&mut c, 5, "(all) \"visitor\"").await.1,
        [number.as_str()]
    );
    let mut id = 10;
    for query in [
        "\"",
        "*",
        "vpn*",
        "-vpn",
        "vpn OR email",
        "number:INC0012346",
        "NEAR(a b)",
        "(",
        "''",
        "",
    ] {
        id += 1;
        // A result (empty or not), never an error: `search` fails the test on `isError`.
        let (count, numbers) = search(&mut c, id, query).await;
        assert_eq!(count, numbers.len() as u64, "{query:?}");
    }
    assert_eq!(search(&mut c, 30, "vpn OR email").await.0, 0);
    assert_eq!(
        search(&mut c, 31, "vpn").await.1,
        ["INC0012346"],
        "still serving"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_store_file_from_before_the_search_index_is_migrated_on_start() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let gw = TestGateway::spawn_with(Options {
        data_dir: Some(data.clone()),
        ..Options::default()
    })
    .await;
    gw.stop().await;
    // Take the file back to what version 1 wrote: the incident table without the index.
    let db = rusqlite::Connection::open(data.join("incidents.db")).unwrap();
    db.execute_batch(
        "DROP TRIGGER incident_text_insert; DROP TRIGGER incident_text_delete;
         DROP TRIGGER incident_text_update; DROP TABLE incident_text;
         PRAGMA user_version = 1;",
    )
    .unwrap();
    drop(db);

    let gw = TestGateway::spawn_with(Options {
        data_dir: Some(data.clone()),
        ..Options::default()
    })
    .await;
    let mut c = SseClient::connect(&gw.url("/agents/servicenow/sse")).await;
    c.initialize().await;

    assert_eq!(search(&mut c, 1, "corporate vpn").await.1, ["INC0012346"]);
    assert_eq!(search(&mut c, 2, "0012343").await.1, ["INC0012343"]);
    gw.stop().await;
    let version: i64 = rusqlite::Connection::open(data.join("incidents.db"))
        .unwrap()
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap();
    assert_eq!(version, 2);
}
