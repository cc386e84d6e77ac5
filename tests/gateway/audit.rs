//! The audit trail, on a real gateway: one record per tool call at every hop, linked into the
//! tree of the client's call (agent → delegated agent → tool), with the caller, the rule that
//! decided, redacted arguments and their digest, run facts; read back through the admin API
//! (filters, cursor paging, JSON lines); and, on the real binary, no record of an answered
//! call lost to `kill -9` once the promised second has passed.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use sha2::Digest;

use crate::support::binary::{serve_command, spawn_binary};
use crate::support::fake_llm::{FakeLlm, Step};
use crate::support::helpers::{
    Options, TestGateway, call_result, fixture, http, rmcp_client_with, settings_with_clients,
    start_call, tool_text,
};

const CLIENTS: &str = r#"
[[clients]]
name = "helpdesk-app"
token = "t-help"
agents = ["*"]

[[policies]]
name = "desk"
effect = "allow"
clients = ["helpdesk-app"]
tools = ["helpdesk/*", "servicenow/*"]

[[policies]]
name = "no-updates"
effect = "deny"
clients = ["helpdesk-app"]
tools = ["*/update_incident"]
"#;

/// The runtime fixture agents on `fake`, behind `CLIENTS`, with `[audit] redact = redact`.
async fn gateway(fake: &FakeLlm, redact: &[&str]) -> TestGateway {
    gateway_with(fake, redact, |_| {}).await
}

/// As [`gateway`], with `[audit]` changed by `configure` too.
pub(crate) async fn gateway_with(
    fake: &FakeLlm,
    redact: &[&str],
    configure: impl FnOnce(&mut switchboard::config::audit::AuditSpec),
) -> TestGateway {
    let mut settings = settings_with_clients(CLIENTS, &[]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("switchboard.toml");
    std::fs::write(&file, CLIENTS).unwrap();
    let loaded = switchboard::config::load_gateway(&file, true, &Default::default()).unwrap();
    settings.policies = loaded.policies;
    settings.audit.redact = redact
        .iter()
        .map(|r| switchboard::config::audit::RedactRule::parse(r).unwrap())
        .collect();
    configure(&mut settings.audit);
    TestGateway::spawn_with(Options {
        agents_dir: fixture("agents/runtime"),
        vars: [("FAKE_LLM_URL".to_owned(), fake.url.clone())].into(),
        settings,
        ..Options::default()
    })
    .await
}

/// Calls `tool` of `agent` with `arguments` as helpdesk-app; the result's text.
pub(crate) async fn call(gw: &TestGateway, agent: &str, tool: &str, arguments: Value) -> String {
    let client = rmcp_client_with(&gw.url(&format!("/agents/{agent}/mcp")), Some("t-help")).await;
    let handle = start_call(client.peer(), tool, arguments).await;
    let text = match handle.await_response().await {
        Ok(rmcp::model::ServerResult::CallToolResult(r)) => tool_text(&r),
        Ok(other) => format!("{other:?}"),
        Err(e) => format!("error: {e}"),
    };
    let _ = client.cancel().await;
    text
}

/// `GET path` on the admin API (loopback: no token needed): status and JSON.
pub(crate) async fn admin(gw: &TestGateway, path: &str) -> (u16, Value) {
    gw.state.audit().expect("the trail is on").flush().await;
    gw.get_json(path).await
}

#[tokio::test]
async fn a_delegated_run_is_one_tree_with_the_caller_rules_and_run_facts() {
    let fake = FakeLlm::start(vec![
        Step::ToolCalls(vec![("servicenow", json!({"task": "open an incident"}))]),
        Step::ToolCalls(vec![(
            "create_incident",
            json!({"short_description": "Printer on fire", "work_notes": "smoke seen"}),
        )]),
        Step::Echo("servicenow: "),
        Step::Echo("helpdesk: "),
    ])
    .await;
    let gw = gateway(&fake, &["work_notes"]).await;
    let answer = call(
        &gw,
        "helpdesk",
        "helpdesk",
        json!({"task": "printer on fire"}),
    )
    .await;
    assert!(answer.contains("Printer on fire"), "{answer}");

    let (status, page) = admin(&gw, "/admin/audit?agent=helpdesk&tool=helpdesk").await;
    assert_eq!(status, 200, "{page}");
    let root_id = page["records"][0]["id"].as_str().unwrap().to_owned();
    let (status, tree) = admin(&gw, &format!("/admin/audit/{root_id}")).await;
    assert_eq!(status, 200, "{tree}");
    assert_eq!(tree["root_id"], root_id);
    let records = tree["records"].as_array().unwrap();
    let by_tool: BTreeMap<&str, &Value> = records
        .iter()
        .map(|r| (r["tool"].as_str().unwrap(), r))
        .collect();
    assert_eq!(records.len(), 3, "{tree}");
    let (root, delegated, create) = (
        by_tool["helpdesk"],
        by_tool["servicenow"],
        by_tool["create_incident"],
    );
    // The tree: client call → the helpdesk's call of the incident agent → its create.
    assert_eq!(root["parent_id"], Value::Null);
    assert_eq!(delegated["parent_id"], root["id"]);
    assert_eq!(create["parent_id"], delegated["id"]);
    for (r, agent, depth) in [
        (root, "helpdesk", 0),
        (delegated, "helpdesk", 1),
        (create, "servicenow", 2),
    ] {
        assert_eq!(r["root_id"], root_id, "{r}");
        assert_eq!(r["agent"], agent, "{r}");
        assert_eq!(r["depth"], depth, "{r}");
        assert_eq!(r["client"], "helpdesk-app", "{r}");
        assert_eq!(r["principal"], Value::Null, "{r}");
        assert_eq!(r["outcome"], "ok", "{r}");
        assert_eq!(r["decision"], "allow", "{r}");
        assert_eq!(r["rule"], "policies[0]", "{r}");
        assert_eq!(r["transport"], "streamable_http", "{r}");
        assert!(r["session"].as_str().is_some_and(|s| !s.is_empty()), "{r}");
        assert!(r["time"].as_str().unwrap().ends_with('Z'), "{r}");
        assert!(r["duration_ms"].as_f64().unwrap() >= 0.0, "{r}");
    }
    // Each agent run's facts are on the record of the call that ran it.
    for run in [root, delegated] {
        assert_eq!(run["model"], "fake-model", "{run}");
        assert_eq!(run["turns"], 2, "{run}");
    }
    assert_eq!(create["model"], Value::Null);
    // Redacted as configured, with the digest of what was received.
    assert_eq!(
        create["arguments"],
        json!({"short_description": "Printer on fire", "work_notes": "[redacted]"})
    );
    let received = json!({"short_description": "Printer on fire", "work_notes": "smoke seen"});
    let digest = sha2::Sha256::digest(serde_json::to_vec(&received).unwrap());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(create["arguments_sha256"], hex);
    gw.stop().await;
}

#[tokio::test]
async fn refusals_are_recorded_with_their_rule_and_the_trail_pages_and_exports() {
    let fake = FakeLlm::start(vec![]).await;
    let gw = gateway(&fake, &[]).await;
    let refused = call(
        &gw,
        "servicenow",
        "update_incident",
        json!({"number": "INC0012345", "urgency": 1}),
    )
    .await;
    assert!(refused.contains("not allowed"), "{refused}");
    for n in ["INC0012345", "INC0012346", "INC0099999"] {
        call(&gw, "servicenow", "get_incident", json!({"number": n})).await;
    }

    let (_, page) = admin(&gw, "/admin/audit?outcome=refused").await;
    let records = page["records"].as_array().unwrap();
    assert_eq!(records.len(), 1, "{page}");
    assert_eq!(records[0]["tool"], "update_incident");
    assert_eq!(records[0]["decision"], "deny");
    assert_eq!(records[0]["rule"], "policies[1]");
    assert!(
        records[0]["error"].as_str().unwrap().contains("no-updates"),
        "{page}"
    );
    // The missing incident is a tool error, with its text.
    let (_, errors) = admin(&gw, "/admin/audit?tool=get_incident&outcome=error").await;
    assert_eq!(errors["records"].as_array().unwrap().len(), 1, "{errors}");
    assert!(
        errors["records"][0]["error"]
            .as_str()
            .unwrap()
            .contains("INC0099999"),
        "{errors}"
    );

    // Cursor paging: newest first, two then the rest, no record twice.
    let (_, first) = admin(&gw, "/admin/audit?tool=get_incident&limit=2").await;
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let (_, second) = admin(
        &gw,
        &format!("/admin/audit?tool=get_incident&limit=2&cursor={cursor}"),
    )
    .await;
    let ids = |p: &Value| -> Vec<String> {
        p["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (a, b) = (ids(&first), ids(&second));
    assert_eq!((a.len(), b.len()), (2, 1), "{first} {second}");
    assert!(!a.contains(&b[0]));
    assert_eq!(second["next_cursor"], Value::Null);
    assert_eq!(
        first["records"][0]["arguments"]["number"], "INC0099999",
        "newest first"
    );

    // JSON lines: one record per line, the same records.
    let resp = http()
        .get(gw.url("/admin/audit?tool=get_incident&format=jsonl"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "application/x-ndjson"
    );
    let body = resp.text().await.unwrap();
    let lines: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{body}");
    assert!(lines.iter().all(|l| l["tool"] == "get_incident"));

    // Bad input: a clear 400, and an unknown tree a 404.
    let (status, bad) = admin(&gw, "/admin/audit?from=yesterday").await;
    assert_eq!(status, 400, "{bad}");
    assert!(
        bad["message"].as_str().unwrap().contains("RFC 3339"),
        "{bad}"
    );
    let (status, _) = admin(&gw, "/admin/audit/nope").await;
    assert_eq!(status, 404);
    gw.stop().await;
}

#[tokio::test]
async fn records_of_answered_calls_survive_kill_9_after_the_promised_second() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let start = || {
        spawn_binary(
            serve_command()
                .arg("--agents")
                .arg(fixture("agents/valid"))
                .arg("--data")
                .arg(&data),
        )
    };
    let gateway = start();
    let url = format!("http://{}/agents/servicenow/mcp", gateway.addr);
    let client = rmcp_client_with(&url, None).await;
    for i in 0..20 {
        let handle = start_call(
            client.peer(),
            "create_incident",
            json!({"short_description": format!("audit durability {i}")}),
        )
        .await;
        let result = call_result(handle).await;
        assert_ne!(result.is_error, Some(true), "{}", tool_text(&result));
    }
    // The promise under test: written within FLUSH_WITHIN of the answer.
    tokio::time::sleep(switchboard::audit::FLUSH_WITHIN).await;
    let _ = gateway.kill_and_logs();

    let gateway = start();
    let page: Value = http()
        .get(format!(
            "http://{}/admin/audit?tool=create_incident&limit=100",
            gateway.addr
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let recorded: Vec<String> = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r["arguments"]["short_description"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(recorded.len(), 20, "{page}");
    for i in 0..20 {
        assert!(
            recorded.contains(&format!("audit durability {i}")),
            "record {i} lost: {page}"
        );
    }
    let _ = gateway.kill_and_logs();
}

#[tokio::test]
async fn an_upstream_mcp_call_and_a_delegated_run_hang_in_one_tree() {
    let upstream = crate::support::upstream_mcp::RecordingUpstream::start().await;
    let fake = FakeLlm::start(vec![
        Step::ToolCalls(vec![("whoami", json!({}))]),
        Step::ToolCalls(vec![("servicenow", json!({"task": "find VPN incidents"}))]),
        Step::ToolCalls(vec![("search_incident", json!({"query": "VPN"}))]),
        Step::Echo("servicenow: "),
        Step::Echo("ops: "),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture("agents/runtime/servicenow.toml"),
        dir.path().join("servicenow.toml"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("ops.toml"),
        r#"
description = "Ops: asks an upstream MCP server and the incident agent."
expose = ["agent"]

[model]
base_url = "${FAKE_LLM_URL}/v1"
api_key = "test-key"
model = "fake-model"

[[tools]]
type = "mcp"
url = "${UPSTREAM_URL}"

[[tools]]
type = "agent"
agent = "servicenow"
"#,
    )
    .unwrap();
    let gw = TestGateway::spawn_with(Options {
        agents_dir: dir.path().to_owned(),
        vars: [
            ("FAKE_LLM_URL".to_owned(), fake.url.clone()),
            ("UPSTREAM_URL".to_owned(), upstream.url.clone()),
        ]
        .into(),
        settings: settings_with_clients(CLIENTS, &[]),
        ..Options::default()
    })
    .await;
    let answer = call(
        &gw,
        "ops",
        "ops",
        json!({"task": "who am I, and any VPN trouble?"}),
    )
    .await;
    assert!(answer.starts_with("ops: servicenow: "), "{answer}");

    let (_, page) = admin(&gw, "/admin/audit?agent=ops&tool=ops").await;
    let root_id = page["records"][0]["id"].as_str().unwrap().to_owned();
    let (_, tree) = admin(&gw, &format!("/admin/audit/{root_id}")).await;
    let records = tree["records"].as_array().unwrap();
    let by_tool: BTreeMap<&str, &Value> = records
        .iter()
        .map(|r| (r["tool"].as_str().unwrap(), r))
        .collect();
    assert_eq!(records.len(), 4, "{tree}");
    let (root, up, delegated, search) = (
        by_tool["ops"],
        by_tool["whoami"],
        by_tool["servicenow"],
        by_tool["search_incident"],
    );
    // client → ops run → { the upstream's whoami, the servicenow run → its search }.
    assert_eq!(root["parent_id"], Value::Null);
    assert_eq!(up["parent_id"], root["id"]);
    assert_eq!(delegated["parent_id"], root["id"]);
    assert_eq!(search["parent_id"], delegated["id"]);
    for (r, agent, depth) in [
        (up, "ops", 1),
        (delegated, "ops", 1),
        (search, "servicenow", 2),
    ] {
        assert_eq!(
            (r["agent"].as_str(), r["depth"].as_u64()),
            (Some(agent), Some(depth)),
            "{r}"
        );
        assert_eq!(r["outcome"], "ok", "{r}");
        assert_eq!(r["client"], "helpdesk-app", "{r}");
        assert_eq!(r["root_id"], root_id, "{r}");
    }
    assert_eq!(root["turns"], 3);
    assert!(upstream.initializes() >= 1);
    gw.stop().await;
    upstream.stop().await;
}
