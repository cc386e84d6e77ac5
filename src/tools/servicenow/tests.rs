//! Unit tests for the ServiceNow tool kind: its config, the four tool definitions and their
//! schemas, and the call path over a temporary embedded store (argument errors, display
//! values, resolution rules, storage failures).

use std::sync::Arc;

use super::*;
use serde_json::json;

fn tools() -> (tempfile::TempDir, ServiceNowTools) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(crate::incidents::EmbeddedStore::open(dir.path()).unwrap());
    (dir, ServiceNowTools::new(Store::Embedded(store)))
}

fn args(value: Value) -> JsonObject {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

async fn call(tools: &ServiceNowTools, name: &str, value: Value) -> Result<Value, Error> {
    tools
        .call(name, args(value), &crate::identity::Identity::default())
        .await
}

fn invalid_message(result: Result<Value, Error>) -> String {
    match result {
        Err(Error::InvalidArguments(message)) => message,
        other => panic!("expected InvalidArguments, got {other:?}"),
    }
}

#[test]
fn config_defaults_to_the_embedded_store() {
    let config: ServiceNowToolConfig = toml::from_str("").unwrap();
    assert_eq!(config.store, StoreKind::Embedded);

    let config: ServiceNowToolConfig = toml::from_str(r#"store = "table_api""#).unwrap();
    assert_eq!(config.store, StoreKind::TableApi);
}

#[test]
fn config_rejects_unknown_stores_and_keys() {
    let err = toml::from_str::<ServiceNowToolConfig>(r#"store = "sqlite3""#)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unknown variant `sqlite3`, expected `embedded` or `table_api`"),
        "{err}"
    );
    let err = toml::from_str::<ServiceNowToolConfig>(r#"stroe = "embedded""#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field `stroe`"), "{err}");
}

#[test]
fn definitions_have_strict_described_schemas() {
    let (_dir, tools) = tools();

    let definitions = tools.definitions();

    let names: Vec<&str> = definitions.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(names, TOOL_NAMES);
    let required = [
        vec!["short_description"],
        vec!["number"],
        vec![],
        vec!["number"],
    ];
    for (tool, required) in definitions.iter().zip(required) {
        let schema = &tool.input_schema;
        assert_eq!(schema["type"], "object", "{}", tool.name);
        assert_eq!(schema["additionalProperties"], false, "{}", tool.name);
        assert_eq!(schema["required"], json!(required), "{}", tool.name);
        assert!(!tool.description.as_deref().unwrap_or("").is_empty());
        let properties = schema["properties"].as_object().unwrap();
        assert!(!properties.is_empty());
        for (name, property) in properties {
            let description = property["description"].as_str().unwrap_or("");
            assert!(!description.is_empty(), "{}.{name}", tool.name);
        }
    }
    let update = &definitions[1];
    assert!(
        update
            .description
            .as_deref()
            .unwrap()
            .contains("close_notes")
    );
    assert_eq!(
        update.input_schema["properties"].as_object().unwrap().len(),
        12
    );
    assert_eq!(
        definitions[2].input_schema["properties"]["limit"]["maximum"],
        100
    );
}

#[tokio::test]
async fn create_then_get_returns_display_values() {
    let (_dir, tools) = tools();

    let created = call(
        &tools,
        CREATE_INCIDENT,
        json!({
            "short_description": "Login failure affecting all users",
            "urgency": "High",
            "impact": 1,
        }),
    )
    .await
    .unwrap();

    assert_eq!(created["state"], "New");
    assert_eq!(created["urgency"], "1 - High");
    assert_eq!(created["impact"], "1 - High");
    assert_eq!(created["priority"], "1 - Critical");
    let number = created["number"].as_str().unwrap();
    let fetched = call(&tools, GET_INCIDENT, json!({ "number": number }))
        .await
        .unwrap();
    assert_eq!(fetched, created);
}

#[tokio::test]
async fn create_rejects_bad_arguments_naming_the_field() {
    let (_dir, tools) = tools();
    let cases = [
        (
            json!({ "short_description": "x", "severity": "high" }),
            "unknown field `severity`",
        ),
        (json!({ "description": "no summary" }), "short_description"),
        (json!({ "short_description": "   " }), "short_description"),
        (
            json!({ "short_description": "x", "urgency": "urgent" }),
            "unknown urgency \"urgent\"",
        ),
        (
            json!({ "short_description": "x", "impact": 7 }),
            "unknown impact \"7\"",
        ),
        (
            json!({ "short_description": "x", "caller": 42 }),
            "caller must be a string",
        ),
    ];

    for (input, expected) in cases {
        let message = invalid_message(call(&tools, CREATE_INCIDENT, input.clone()).await);
        assert!(message.contains(expected), "case {input}: {message}");
    }
    let listed = call(&tools, SEARCH_INCIDENT, json!({ "limit": 100 }))
        .await
        .unwrap();
    assert_eq!(listed["count"], 9, "nothing was created");
}

#[tokio::test]
async fn update_resolves_with_close_notes() {
    let (_dir, tools) = tools();

    let updated = call(
        &tools,
        UPDATE_INCIDENT,
        json!({
            "number": "inc0012346",
            "state": "resolved",
            "close_notes": "VPN config fixed",
        }),
    )
    .await
    .unwrap();

    assert_eq!(updated["number"], "INC0012346");
    assert_eq!(updated["state"], "Resolved");
    assert_eq!(updated["close_notes"], "VPN config fixed");
    assert_eq!(updated["close_code"], "Solved (Permanently)");
    assert_ne!(updated["resolved_at"], "");
}

#[tokio::test]
async fn update_without_close_notes_is_invalid_and_changes_nothing() {
    let (_dir, tools) = tools();
    let before = call(&tools, GET_INCIDENT, json!({ "number": "INC0012346" }))
        .await
        .unwrap();

    let message = invalid_message(
        call(
            &tools,
            UPDATE_INCIDENT,
            json!({ "number": "INC0012346", "state": 6 }),
        )
        .await,
    );

    assert!(message.contains("close_notes"), "{message}");
    let after = call(&tools, GET_INCIDENT, json!({ "number": "INC0012346" }))
        .await
        .unwrap();
    assert_eq!(after, before);
}

#[tokio::test]
async fn update_recomputes_priority_and_appends_work_notes() {
    let (_dir, tools) = tools();

    let updated = call(
        &tools,
        UPDATE_INCIDENT,
        json!({
            "number": "INC0012346",
            "urgency": "1 - High",
            "work_notes": "Escalated to the firewall team.",
        }),
    )
    .await
    .unwrap();

    assert_eq!(updated["priority"], "2 - High");
    let notes = updated["work_notes"].as_str().unwrap();
    assert!(notes.contains("RADIUS"), "older note kept: {notes}");
    assert!(
        notes.ends_with("Escalated to the firewall team."),
        "{notes}"
    );
}

#[tokio::test]
async fn update_and_get_report_bad_and_unknown_numbers() {
    let (_dir, tools) = tools();

    let bad = invalid_message(
        call(
            &tools,
            UPDATE_INCIDENT,
            json!({ "number": "12346", "state": "New" }),
        )
        .await,
    );
    let unknown = call(
        &tools,
        UPDATE_INCIDENT,
        json!({ "number": "INC0099999", "state": "New" }),
    )
    .await;
    let missing = call(&tools, GET_INCIDENT, json!({ "number": "inc0099999" })).await;
    let empty =
        invalid_message(call(&tools, UPDATE_INCIDENT, json!({ "number": "INC0012346" })).await);

    assert!(bad.contains("INC followed by 7 digits"), "{bad}");
    assert!(
        matches!(&unknown, Err(Error::Failed(m)) if m == "incident INC0099999 not found"),
        "{unknown:?}"
    );
    assert!(
        matches!(&missing, Err(Error::Failed(m)) if m == "incident INC0099999 not found"),
        "{missing:?}"
    );
    assert!(empty.contains("nothing to update"), "{empty}");
}

#[tokio::test]
async fn search_finds_vpn_incidents_and_filters() {
    let (_dir, tools) = tools();

    let vpn = call(&tools, SEARCH_INCIDENT, json!({ "query": "VPN" }))
        .await
        .unwrap();
    let in_progress = call(
        &tools,
        SEARCH_INCIDENT,
        json!({ "state": "in progress", "limit": 100 }),
    )
    .await
    .unwrap();
    let critical = call(
        &tools,
        SEARCH_INCIDENT,
        json!({ "priority": "1 - Critical" }),
    )
    .await
    .unwrap();
    let limited = call(&tools, SEARCH_INCIDENT, json!({ "limit": "3" }))
        .await
        .unwrap();

    assert_eq!(vpn["count"], 1);
    assert_eq!(vpn["incidents"][0]["number"], "INC0012346");
    assert_eq!(vpn["incidents"][0]["state"], "In Progress");
    assert_eq!(vpn["incidents"][0]["urgency"], "2 - Medium");
    let states: Vec<&Value> = in_progress["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| &i["state"])
        .collect();
    assert_eq!(states.len(), 2);
    assert!(states.iter().all(|s| *s == "In Progress"));
    assert_eq!(critical["count"], 0);
    assert_eq!(limited["count"], 3);
    assert_eq!(limited["incidents"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn search_rejects_bad_limits_and_values() {
    let (_dir, tools) = tools();
    let cases = [
        (
            json!({ "limit": 0 }),
            "limit must be an integer from 1 to 100",
        ),
        (
            json!({ "limit": 101 }),
            "limit must be an integer from 1 to 100",
        ),
        (
            json!({ "limit": "ten" }),
            "limit must be an integer from 1 to 100",
        ),
        (
            json!({ "limit": -3 }),
            "limit must be an integer from 1 to 100",
        ),
        (json!({ "state": "Done" }), "unknown state \"Done\""),
        (json!({ "priority": 9 }), "unknown priority \"9\""),
        (json!({ "text": "vpn" }), "unknown field `text`"),
    ];

    for (input, expected) in cases {
        let message = invalid_message(call(&tools, SEARCH_INCIDENT, input.clone()).await);
        assert!(message.contains(expected), "case {input}: {message}");
    }
}

#[tokio::test]
async fn unknown_tools_are_invalid() {
    let (_dir, tools) = tools();

    let message = invalid_message(call(&tools, "delete_incident", json!({})).await);

    assert!(
        message.contains("unknown tool `delete_incident`"),
        "{message}"
    );
}

#[tokio::test]
async fn storage_failures_are_reported_as_failed() {
    let (dir, tools) = tools();
    let conn = rusqlite::Connection::open(dir.path().join("incidents.db")).unwrap();
    conn.execute_batch("DROP TABLE incident").unwrap();

    let result = call(&tools, SEARCH_INCIDENT, json!({})).await;

    assert!(
        matches!(&result, Err(Error::Failed(m)) if m.starts_with("incident store error:")),
        "{result:?}"
    );
}

#[tokio::test]
async fn tools_on_an_unconfigured_instance_say_what_to_set_after_checking_arguments() {
    let tools = ServiceNowTools::new(Store::TableApi(Arc::new(TableApiStore::not_configured(
        "set SERVICENOW_INSTANCE_URL",
    ))));

    let get = call(&tools, GET_INCIDENT, json!({ "number": "INC0012346" })).await;
    let bad = call(&tools, GET_INCIDENT, json!({ "number": "12346" })).await;

    assert!(
        matches!(&get, Err(Error::Failed(m))
            if m == "ServiceNow is not configured: set SERVICENOW_INSTANCE_URL"),
        "{get:?}"
    );
    assert!(matches!(bad, Err(Error::InvalidArguments(_))), "{bad:?}");
}

#[tokio::test]
async fn texts_longer_than_servicenow_holds_are_invalid_arguments_naming_field_limit_and_length() {
    let (_dir, tools) = tools();

    let message = invalid_message(
        call(
            &tools,
            CREATE_INCIDENT,
            json!({"short_description": "x".repeat(100 * 1024)}),
        )
        .await,
    );
    assert_eq!(
        message,
        "short_description is too long: 102400 characters given, and ServiceNow's incident \
         field holds at most 160"
    );
    let message = invalid_message(
        call(
            &tools,
            UPDATE_INCIDENT,
            json!({"number": "INC0012346", "assigned_to": "a".repeat(81)}),
        )
        .await,
    );
    assert_eq!(
        message,
        "assigned_to is too long: 81 characters given, and ServiceNow's incident field holds \
         at most 80"
    );
    // Checked before the store: an unknown incident is not looked up first.
    let message = invalid_message(
        call(
            &tools,
            UPDATE_INCIDENT,
            json!({"number": "INC9999990", "description": "d".repeat(4001)}),
        )
        .await,
    );
    assert!(
        message.starts_with("description is too long: 4001"),
        "{message}"
    );
    // Nothing was written.
    let found = call(&tools, SEARCH_INCIDENT, json!({"query": "xxxxxxxxxx"})).await;
    assert_eq!(found.unwrap()["count"], 0);
}

#[test]
fn schemas_tell_clients_servicenow_field_lengths() {
    let (_dir, tools) = tools();
    let definitions = tools.definitions();
    let create = &definitions[0].input_schema["properties"];
    assert_eq!(create["short_description"]["maxLength"], 160);
    assert_eq!(create["description"]["maxLength"], 4000);
    assert_eq!(create["caller"]["maxLength"], 80);
    let update = &definitions[1].input_schema["properties"];
    assert_eq!(update["close_code"]["maxLength"], 40);
    assert_eq!(update["close_notes"]["maxLength"], 4000);
    assert!(update["number"].get("maxLength").is_none());
}

#[test]
fn a_wrong_key_does_not_hide_the_entrys_other_problems() {
    let parse = |text: &str| {
        let mut errors = crate::tools::ToolConfig::parse(toml::from_str(text).unwrap())
            .err()
            .unwrap_or_default();
        errors.sort();
        errors
    };
    // An unknown store: each value is still checked on its own.
    let errors = parse("type = \"servicenow\"\nstore = \"sqlite3\"\ntimeout_secs = 0\n");
    let keys: Vec<&str> = errors.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["store", "timeout_secs"], "{errors:?}");
    // A mistyped key: the rest of the entry is still validated, the key itself only once.
    let errors = parse(
        "type = \"servicenow\"\nstore = \"table_api\"\ninstance_url = \"ftp://x\"\nusername = \"u\"\npassword = 5\n",
    );
    let keys: Vec<&str> = errors.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["instance_url", "password"], "{errors:?}");
    assert!(
        errors[1].1.starts_with("invalid type: integer `5`"),
        "{errors:?}"
    );
}
