//! `[[policies]]` applied live: an edited `switchboard.toml` changes what a connected client
//! sees and may call, through the file watcher and through `POST /admin/reload`; a broken
//! file keeps the rules in force and says why (file and key); other changed keys are
//! reported as needing a restart; the rules and a client's permissions in the admin API.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use rmcp::RoleClient;
use rmcp::model::CallToolRequestParams;
use rmcp::service::RunningService;
use serde_json::{Value, json};

use crate::support::helpers::{TestGateway, args, rmcp_client_with};
use crate::support::policies::{CLIENTS, READ_ONLY, gateway};

const READ_WRITE: &str = r#"
[[policies]]
name = "helpdesk-incidents"
effect = "allow"
clients = ["helpdesk-app"]
tools = ["servicenow/*_incident"]
"#;

/// Replaces `file` as editors do: a new file renamed over it.
fn replace(file: &Path, text: &str) {
    let tmp = file.with_extension("toml.swp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, file).unwrap();
}

async fn tools(client: &RunningService<RoleClient, ()>) -> BTreeSet<String> {
    let tools = client.list_all_tools().await.unwrap();
    tools.into_iter().map(|t| t.name.to_string()).collect()
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// `update_incident` by `client`: `Ok` with the result, or the JSON-RPC error.
async fn update(client: &RunningService<RoleClient, ()>) -> Result<Value, Value> {
    match client
        .call_tool(
            CallToolRequestParams::new("update_incident")
                .with_arguments(args(json!({"number": "INC0012346", "state": "2"}))),
        )
        .await
    {
        Ok(r) => Ok(serde_json::to_value(r).unwrap()),
        Err(rmcp::ServiceError::McpError(e)) => Err(serde_json::to_value(e).unwrap()),
        Err(e) => panic!("update_incident: {e}"),
    }
}

#[tokio::test]
async fn an_edited_file_changes_what_a_live_client_may_call_through_the_watcher() {
    let (gw, file, _tmp) = gateway(&format!("{CLIENTS}{READ_ONLY}"), true).await;
    let client = rmcp_client_with(&gw.url("/agents/servicenow/mcp"), Some("t-help")).await;
    assert_eq!(
        tools(&client).await,
        names(&["get_incident", "search_incident"])
    );
    let refused = update(&client).await.unwrap_err();
    assert_eq!(refused["data"]["code"], "tool_not_allowed", "{refused}");

    // The same session, without a restart or a reload call: the watcher applies the file.
    replace(&file, &format!("{CLIENTS}{READ_WRITE}"));
    let want = names(&[
        "create_incident",
        "update_incident",
        "search_incident",
        "get_incident",
    ]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tools(&client).await != want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the edited rules did not apply within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let done = update(&client).await.unwrap();
    assert_ne!(done["isError"], true, "{done}");

    // Written in place (not replaced) works too, and back to read-only.
    std::fs::write(&file, format!("{CLIENTS}{READ_ONLY}")).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while update(&client).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rewritten rules did not apply within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let _ = client.cancel().await;
    gw.stop().await;
}

#[tokio::test]
async fn admin_reload_applies_the_rules_and_a_broken_file_keeps_them() {
    let (gw, file, _tmp) = gateway(&format!("{CLIENTS}{READ_ONLY}"), false).await;
    let client = rmcp_client_with(&gw.url("/agents/servicenow/mcp"), Some("t-help")).await;
    let (_, before) = gw.get_json("/admin/policies").await;
    assert_eq!(before["rules"].as_array().unwrap().len(), 3, "{before}");

    // Unchanged file: nothing applied, nothing to report.
    let (status, r) = gw.post_json("/admin/reload").await;
    assert_eq!(status, 200);
    assert_eq!(r["policies_changed"], false, "{r}");
    assert_eq!(r["errors"], json!([]), "{r}");
    assert_eq!(r["restart_needed"], json!([]), "{r}");

    std::fs::write(&file, format!("{CLIENTS}{READ_WRITE}")).unwrap();
    let (_, r) = gw.post_json("/admin/reload").await;
    assert_eq!(r["policies_changed"], true, "{r}");
    assert!(update(&client).await.is_ok(), "the new rules apply at once");
    let (_, after) = gw.get_json("/admin/policies").await;
    assert_eq!(after["rules"].as_array().unwrap().len(), 1, "{after}");
    assert_ne!(after["loaded_at"], before["loaded_at"], "{after}");

    // A broken file: the rules in force stay, the errors name the file and the key.
    for (broken, key) in [
        (
            "[[policies]]\neffect = \"allow\"\ntools = [\"servicenow/*\"]\n",
            "policies[0]: the rule matches no caller",
        ),
        (
            "[[policies]]\neffect = \"permit\"\nclients = [\"helpdesk-app\"]\ntools = [\"servicenow/*\"]\n",
            "policies[0].effect: unknown variant `permit`",
        ),
        ("[[policies]\n", "invalid TOML"),
    ] {
        std::fs::write(&file, format!("{CLIENTS}{broken}")).unwrap();
        let (_, r) = gw.post_json("/admin/reload").await;
        let errors = r["errors"].to_string();
        let want = format!("{}: {key}", file.display());
        assert!(errors.contains(&want), "want {want:?} in {r}");
        assert_eq!(r["policies_changed"], false, "{r}");
        assert!(
            update(&client).await.is_ok(),
            "the rules in force stay: {r}"
        );
        let (_, listed) = gw.get_json("/admin/load-errors").await;
        let entry = listed
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["file"] == file.display().to_string())
            .unwrap_or_else(|| panic!("switchboard.toml in {listed}"));
        assert_eq!(entry["serving_previous_version"], true, "{entry}");
        assert!(entry["errors"].to_string().contains(key), "{entry}");
        let (_, policies) = gw.get_json("/admin/policies").await;
        assert_eq!(policies["rules"], after["rules"], "{policies}");
        assert!(policies["errors"].to_string().contains(key), "{policies}");
    }

    // Fixed again, with a changed [server] key and a glob naming no loaded agent: the
    // rules apply, the glob is a warning, the key needs a restart.
    let text = format!(
        "[server]\nmax_body_bytes = 99999\n{CLIENTS}{READ_ONLY}\n[[policies]]\neffect = \"allow\"\nclients = [\"helpdesk-app\"]\ntools = [\"later/*\"]\n"
    );
    std::fs::write(&file, text).unwrap();
    let (_, r) = gw.post_json("/admin/reload").await;
    assert_eq!(r["errors"], json!([]), "{r}");
    assert_eq!(r["policies_changed"], true, "{r}");
    assert_eq!(r["restart_needed"], json!(["server"]), "{r}");
    let warnings = r["warnings"].to_string();
    assert!(
        warnings.contains("policies[3].tools[0]") && warnings.contains("\\\"later\\\""),
        "{r}"
    );
    assert!(update(&client).await.is_err(), "read-only again");
    let (_, listed) = gw.get_json("/admin/load-errors").await;
    assert_eq!(listed, json!([]), "fixed: no load errors");
    let (_, policies) = gw.get_json("/admin/policies").await;
    assert_eq!(policies["restart_needed"], json!(["server"]), "{policies}");
    assert_eq!(policies["rules"].as_array().unwrap().len(), 4, "{policies}");
    let metrics = reqwest::get(gw.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.lines().any(|l| l == "switchboard_policies 4"),
        "{metrics}"
    );
    let _ = client.cancel().await;
    gw.stop().await;
}

#[tokio::test]
async fn the_admin_api_lists_the_rules_and_what_each_client_may_call() {
    let (gw, file, _tmp) = gateway(&format!("{CLIENTS}{READ_ONLY}"), false).await;
    let (status, p) = gw.get_json("/admin/policies").await;
    assert_eq!(status, 200);
    assert_eq!(p["file"], file.display().to_string(), "{p}");
    assert_eq!(p["enforced"], true, "{p}");
    assert!(p["loaded_at"].as_str().unwrap().ends_with('Z'), "{p}");
    assert_eq!(
        p["rules"][0],
        json!({
            "key": "policies[0]",
            "name": "helpdesk-reads",
            "effect": "allow",
            "subjects": [],
            "clients": ["helpdesk-app"],
            "scopes": [],
            "groups": [],
            "tools": ["servicenow/get_incident", "servicenow/search_incident"],
        })
    );
    assert_eq!(p["rules"][2]["effect"], "deny", "{p}");
    assert!(p["rules"][1].get("name").is_none(), "{p}");

    let (status, c) = gw.get_json("/admin/clients/reporter").await;
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["configured"], true, "{c}");
    assert_eq!(c["agents"], json!(["servicenow"]), "{c}");
    let keys: Vec<&str> = c["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["policies[1]", "policies[2]"], "{c}");
    let agent = |name: &str| {
        c["tools"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["agent"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} in {c}"))
    };
    let sn = agent("servicenow");
    assert_eq!(sn["agent_allowed"], true, "{sn}");
    let allowed: BTreeSet<String> = serde_json::from_value(sn["allowed"].clone()).unwrap();
    assert_eq!(
        allowed,
        names(&["create_incident", "search_incident", "get_incident"])
    );
    let denied = sn["denied"].as_array().unwrap();
    let update = denied
        .iter()
        .find(|d| d["tool"] == "update_incident")
        .unwrap();
    assert_eq!(update["rule"], "policies[2]", "{sn}");
    assert!(
        update["reason"]
            .as_str()
            .unwrap()
            .contains("\"no-updates\""),
        "{sn}"
    );
    let agent_tool = denied.iter().find(|d| d["tool"] == "servicenow").unwrap();
    assert!(agent_tool.get("rule").is_none(), "{sn}");
    assert_eq!(agent_tool["reason"], "no rule allows it", "{sn}");
    // reporter may not use helpdesk at all, whatever the rules say.
    let hd = agent("helpdesk");
    assert_eq!(hd["agent_allowed"], false, "{hd}");
    assert_eq!(hd["allowed"], json!([]), "{hd}");

    // An OAuth client id a rule names; tokens are never shown.
    let (status, portal) = gw.get_json("/admin/clients/portal").await;
    assert_eq!(status, 200, "{portal}");
    assert_eq!(portal["configured"], false, "{portal}");
    assert!(portal.get("limits").is_none(), "{portal}");
    let (_, help) = gw.get_json("/admin/clients/helpdesk-app").await;
    assert!(!help.to_string().contains("t-help"), "{help}");

    let (status, missing) = gw.get_json("/admin/clients/nobody").await;
    assert_eq!(status, 404);
    assert_eq!(missing["code"], "unknown_client", "{missing}");
    gw.stop().await;
}

#[tokio::test]
async fn without_a_config_file_a_reload_reports_nothing_about_it() {
    let gw = TestGateway::spawn().await;
    let (_, r) = gw.post_json("/admin/reload").await;
    assert_eq!(r["policies_changed"], false, "{r}");
    assert_eq!(r["restart_needed"], json!([]), "{r}");
    let (_, p) = gw.get_json("/admin/policies").await;
    assert_eq!(p["enforced"], false, "{p}");
    assert!(p.get("file").is_none(), "{p}");
    assert_eq!(p["rules"], json!([]), "{p}");
    gw.stop().await;
}
