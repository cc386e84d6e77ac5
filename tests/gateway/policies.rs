//! `[[policies]]`: per-tool permissions by caller, on a real gateway over real HTTP. A static
//! client restricted by rules sees a filtered `tools/list` and is refused other tools on both
//! transports; OAuth subject, scope and group rules with tokens of a real authorization server
//! (oidc-provider); deny beats allow; no rules change nothing; `switchboard check` names the
//! file and key of a bad rule.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use switchboard::config::ServerSpec;

use crate::support::helpers::{Options, SseClient, TestGateway, args, fixture, rmcp_client_with};
use crate::support::oidc::Oidc;

/// A gateway whose `switchboard.toml` is `toml` (with `{issuer}` and `{gateway}` filled in).
async fn gateway(toml: &str, issuer: &str) -> TestGateway {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let toml = toml.replace("{issuer}", issuer).replace("{gateway}", &base);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("switchboard.toml");
    std::fs::write(&file, toml).unwrap();
    let loaded = switchboard::config::load_gateway(&file, true, &Default::default())
        .unwrap_or_else(|e| panic!("test config must load: {e}"));
    let settings = ServerSpec {
        oauth: loaded.oauth,
        clients: loaded.clients,
        policies: loaded.policies,
        ..Options::default().settings
    };
    TestGateway::spawn_with(Options {
        settings,
        listener: Some(listener),
        ..Options::default()
    })
    .await
}

const CLIENTS: &str = r#"
[[clients]]
name = "helpdesk-app"
token = "t-help"
agents = ["*"]

[[clients]]
name = "ops"
token = "t-ops"
agents = ["*"]
"#;

const RULES: &str = r#"
[[policies]]
name = "helpdesk-incidents"
effect = "allow"
clients = ["helpdesk-app"]
tools = ["servicenow/*_incident"]

[[policies]]
name = "no-updates"
effect = "deny"
clients = ["helpdesk-app"]
tools = ["*/update_*"]

[[policies]]
effect = "allow"
clients = ["ops"]
tools = ["*/*"]
"#;

/// The tools `token` sees at `path` over Streamable HTTP (rmcp's client).
async fn streamable_tools(gw: &TestGateway, path: &str, token: &str) -> BTreeSet<String> {
    let client = rmcp_client_with(&gw.url(path), Some(token)).await;
    let tools = client.list_all_tools().await.unwrap();
    let _ = client.cancel().await;
    tools.into_iter().map(|t| t.name.to_string()).collect()
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// The refusal of a `tools/call` over Streamable HTTP: its JSON-RPC error.
async fn streamable_refusal(gw: &TestGateway, path: &str, token: &str, tool: &str) -> Value {
    let client = rmcp_client_with(&gw.url(path), Some(token)).await;
    let result = client
        .call_tool(
            rmcp::model::CallToolRequestParams::new(tool.to_owned())
                .with_arguments(args(json!({"number": "INC0012346", "state": "2"}))),
        )
        .await;
    let _ = client.cancel().await;
    match result {
        Err(rmcp::ServiceError::McpError(e)) => serde_json::to_value(e).unwrap(),
        other => panic!("{tool}: expected a JSON-RPC error, got {other:?}"),
    }
}

const ALL_SERVICENOW: [&str; 5] = [
    "servicenow",
    "create_incident",
    "update_incident",
    "search_incident",
    "get_incident",
];

#[tokio::test]
async fn a_restricted_client_sees_and_calls_only_what_the_rules_allow_on_both_transports() {
    let gw = gateway(&format!("{CLIENTS}{RULES}"), "").await;
    let mcp = "/agents/servicenow/mcp";
    // Streamable HTTP: the list is filtered; deny beats allow for update_incident.
    assert_eq!(
        streamable_tools(&gw, mcp, "t-help").await,
        names(&["create_incident", "search_incident", "get_incident"])
    );
    assert!(
        streamable_tools(&gw, "/agents/helpdesk/mcp", "t-help")
            .await
            .is_empty(),
        "no rule covers helpdesk/* for helpdesk-app"
    );
    // The other client, allowed everything, sees everything.
    assert_eq!(
        streamable_tools(&gw, mcp, "t-ops").await,
        names(&ALL_SERVICENOW)
    );

    let denied = streamable_refusal(&gw, mcp, "t-help", "update_incident").await;
    assert_eq!(denied["code"], -32602, "{denied}");
    let message = denied["message"].as_str().unwrap();
    assert!(
        message.contains("client \"helpdesk-app\"")
            && message.contains("denied by policies[1] \"no-updates\" (deny */update_*)"),
        "{denied}"
    );
    assert_eq!(denied["data"]["code"], "tool_not_allowed", "{denied}");
    assert_eq!(denied["data"]["rule"], "policies[1]", "{denied}");
    let unlisted = streamable_refusal(&gw, mcp, "t-help", "servicenow").await;
    assert_eq!(unlisted["code"], -32602, "{unlisted}");
    assert!(
        unlisted["message"]
            .as_str()
            .unwrap()
            .contains("no [[policies]] rule in switchboard.toml allows servicenow/servicenow"),
        "{unlisted}"
    );
    assert_eq!(unlisted["data"]["rule"], Value::Null, "{unlisted}");
    // An allowed call goes through.
    let client = rmcp_client_with(&gw.url(mcp), Some("t-help")).await;
    let ok = client
        .call_tool(
            rmcp::model::CallToolRequestParams::new("get_incident")
                .with_arguments(args(json!({"number": "INC0012346"}))),
        )
        .await
        .unwrap();
    assert_ne!(ok.is_error, Some(true), "{ok:?}");
    let _ = client.cancel().await;

    // Legacy SSE: the session's owner is the caller of every message.
    let mut sse = SseClient::connect_with(&gw.url("/agents/servicenow/sse"), Some("t-help")).await;
    sse.initialize().await;
    let list = sse.request(1, "tools/list", json!({})).await;
    let listed: BTreeSet<String> = list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        listed,
        names(&["create_incident", "search_incident", "get_incident"]),
        "{list}"
    );
    let denied = sse
        .call_tool(
            2,
            "update_incident",
            json!({"number": "INC0012346", "state": "2"}),
        )
        .await;
    assert_eq!(denied["error"]["code"], -32602, "{denied}");
    assert_eq!(denied["error"]["data"]["rule"], "policies[1]", "{denied}");
    assert!(
        denied["error"]["message"]
            .as_str()
            .unwrap()
            .contains("policies[1] \"no-updates\""),
        "{denied}"
    );
    let allowed = sse
        .call_tool(3, "get_incident", json!({"number": "INC0012346"}))
        .await;
    assert!(allowed["result"].is_object(), "{allowed}");
    let mut ops = SseClient::connect_with(&gw.url("/agents/servicenow/sse"), Some("t-ops")).await;
    ops.initialize().await;
    let list = ops.request(1, "tools/list", json!({})).await;
    assert_eq!(
        list["result"]["tools"].as_array().unwrap().len(),
        ALL_SERVICENOW.len(),
        "{list}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn oauth_subject_scope_and_group_rules_decide_with_minted_tokens() {
    let oidc = Oidc::start();
    let toml = r#"
[auth.oauth]
issuer = "{issuer}"
audience = "{gateway}"
required_scopes = ["mcp:tools"]

[[policies]]
effect = "allow"
subjects = ["alice"]
tools = ["servicenow/*"]

[[policies]]
effect = "allow"
scopes = ["incidents:read"]
tools = ["servicenow/get_incident", "servicenow/search_incident"]

[[policies]]
name = "contractors-create-nothing"
effect = "deny"
groups = ["contractors"]
tools = ["*/create_*"]
"#;
    let gw = gateway(toml, &oidc.issuer).await;
    let aud = gw.url("/agents/servicenow/mcp");
    let mint = |claims: Value| {
        let oidc = &oidc;
        async move { oidc.mint(claims, "current", None).await }
    };
    let alice = mint(json!({"sub": "alice", "aud": aud, "scope": "mcp:tools"})).await;
    let bob = mint(json!({"sub": "bob", "aud": aud, "scope": "mcp:tools incidents:read"})).await;
    let carol = mint(json!({"sub": "carol", "aud": aud, "scope": "mcp:tools"})).await;
    let alice_contractor =
        mint(json!({"sub": "alice", "aud": aud, "scope": "mcp:tools", "groups": ["contractors"]}))
            .await;
    let mcp = "/agents/servicenow/mcp";
    assert_eq!(
        streamable_tools(&gw, mcp, &alice).await,
        names(&ALL_SERVICENOW)
    );
    assert_eq!(
        streamable_tools(&gw, mcp, &bob).await,
        names(&["get_incident", "search_incident"])
    );
    assert!(streamable_tools(&gw, mcp, &carol).await.is_empty());
    // Deny beats allow: the subject's allow covers create_incident, the group's deny wins.
    let mut contractor = ALL_SERVICENOW.to_vec();
    contractor.retain(|t| *t != "create_incident");
    assert_eq!(
        streamable_tools(&gw, mcp, &alice_contractor).await,
        names(&contractor)
    );
    let denied = streamable_refusal(&gw, mcp, &alice_contractor, "create_incident").await;
    let message = denied["message"].as_str().unwrap();
    assert!(
        message.contains("subject \"alice\"")
            && message.contains("policies[2] \"contractors-create-nothing\""),
        "{denied}"
    );
    let denied = streamable_refusal(&gw, mcp, &bob, "update_incident").await;
    assert!(
        denied["message"]
            .as_str()
            .unwrap()
            .contains("no [[policies]] rule"),
        "{denied}"
    );
    // The legacy transport follows the same rules for a token's subject.
    let mut sse = SseClient::connect_with(&gw.url("/agents/servicenow/sse"), Some(&bob)).await;
    sse.initialize().await;
    let list = sse.request(1, "tools/list", json!({})).await;
    let listed: BTreeSet<String> = list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        listed,
        names(&["get_incident", "search_incident"]),
        "{list}"
    );
    let denied = sse
        .call_tool(2, "create_incident", json!({"short_description": "x"}))
        .await;
    assert_eq!(denied["error"]["code"], -32602, "{denied}");
    gw.stop().await;
}

#[tokio::test]
async fn without_policies_every_tool_is_listed_and_callable() {
    let gw = gateway(CLIENTS, "").await;
    let mcp = "/agents/servicenow/mcp";
    assert_eq!(
        streamable_tools(&gw, mcp, "t-help").await,
        names(&ALL_SERVICENOW)
    );
    let mut sse = SseClient::connect_with(&gw.url("/agents/servicenow/sse"), Some("t-help")).await;
    sse.initialize().await;
    let r = sse
        .call_tool(
            1,
            "update_incident",
            json!({"number": "INC0012346", "state": "2"}),
        )
        .await;
    assert!(r["result"].is_object(), "{r}");
    gw.stop().await;
}

#[test]
fn check_names_the_file_and_key_of_a_bad_rule() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("switchboard.toml");
    std::fs::write(
        &config,
        r#"
[[policies]]
effect = "allow"
clients = ["a"]
tools = ["servicenow/*", "nosuchagent/get_*"]

[[policies]]
effect = "deny"
tools = ["*/update_*"]
"#,
    )
    .unwrap();
    let (passed, stderr) = crate::support::binary::check(&config, &fixture("agents/valid"));
    assert!(!passed, "{stderr}");
    assert!(
        stderr.contains("switchboard.toml: policies[1]: the rule matches no caller"),
        "{stderr}"
    );
    // Caught once the file itself is valid: the agents the globs name must be loaded.
    std::fs::write(
        &config,
        "[[policies]]\neffect = \"allow\"\nclients = [\"a\"]\ntools = [\"servicenow/*\", \"nosuchagent/get_*\"]\n",
    )
    .unwrap();
    let (passed, stderr) = crate::support::binary::check(&config, &fixture("agents/valid"));
    assert!(!passed, "{stderr}");
    assert!(
        stderr.contains("switchboard.toml: policies[0].tools[1]: \"nosuchagent/get_*\": no loaded agent is named \"nosuchagent\""),
        "{stderr}"
    );
}
