//! The default agent at the seed's URLs (`/sse` + `/messages`, `/mcp`), and the 404 that
//! lists the agents' URLs.

use serde_json::{Value, json};
use switchboard::config::{AgentName, DefaultAgent};

use crate::support::helpers::{
    Options, SseClient, TestGateway, copy_valid_agents, fixture, http, rmcp_client,
    streamable_open, tool_json,
};

fn with_default(default_agent: DefaultAgent) -> Options {
    let mut opts = Options::default();
    opts.settings.default_agent = default_agent;
    opts
}

#[tokio::test]
async fn the_seed_clients_url_serves_servicenow_with_no_config() {
    // Arrange: no default_agent set (the settings of a gateway without switchboard.toml).
    let gw = TestGateway::spawn().await;

    // Act + Assert: legacy SSE at /sse; the endpoint event names /messages, where the POSTs go.
    let mut legacy = SseClient::connect(&gw.url("/sse")).await;
    assert_eq!(
        legacy.endpoint,
        gw.url(&format!("/messages?session_id={}", legacy.session_id))
    );
    legacy.initialize().await;
    let found = legacy
        .call_tool(1, "get_incident", json!({"number": "INC0012346"}))
        .await;
    assert_eq!(tool_json(&found)["number"], "INC0012346");

    // Streamable HTTP at /sse (what the seed's MCPStreamableHTTPTool does) and at /mcp.
    for path in ["/sse", "/mcp"] {
        let client = rmcp_client(&gw.url(path)).await;
        let tools = client.list_all_tools().await.unwrap();
        assert!(
            tools.iter().any(|t| t.name == "get_incident"),
            "{path}: {tools:?}"
        );
        client.cancel().await.unwrap();
    }

    // They are servicenow's sessions, and the index says so.
    let page: Value = gw.get_json("/admin/sessions").await.1;
    assert!(
        page["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["agent"] == "servicenow" && s["transport"] == "sse"),
        "{page}"
    );
    let index: Value = gw.get_json("/").await.1;
    assert_eq!(
        index["default_agent"],
        json!({"name": "servicenow", "sse": "/sse", "mcp": "/mcp"})
    );
    gw.stop().await;
}

#[tokio::test]
async fn default_agent_names_the_agent_the_root_urls_serve() {
    let gw = TestGateway::spawn_with(with_default(DefaultAgent::Named(
        AgentName::parse("helpdesk").unwrap(),
    )))
    .await;
    let client = rmcp_client(&gw.url("/mcp")).await;
    let info = client.peer_info().unwrap();
    assert_eq!(info.instructions.as_deref(), Some("Helpdesk tools."));
    client.cancel().await.unwrap();
    // A servicenow session is not helpdesk's: its POSTs to /messages find nothing.
    let servicenow = SseClient::connect(&gw.url("/agents/servicenow/sse")).await;
    let stray = http()
        .post(gw.url(&format!("/messages?session_id={}", servicenow.session_id)))
        .header("content-type", "application/json")
        .body(json!({"jsonrpc":"2.0","id":1,"method":"ping"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(stray.status(), 404);
    gw.stop().await;
}

/// `GET path`: asserts a 404 whose message lists both agents' URLs; returns the message.
async fn not_found_listing_the_agents(gw: &TestGateway, path: &str) -> String {
    let (status, body) = gw.get_json(path).await;
    assert_eq!(status, 404, "{path}: {body}");
    assert_eq!(body["code"], "not_found", "{path}: {body}");
    let message = body["message"].as_str().unwrap().to_owned();
    for url in [
        "/agents/servicenow/sse",
        "/agents/servicenow/mcp",
        "/agents/helpdesk/sse",
        "/agents/helpdesk/mcp",
    ] {
        assert!(message.contains(url), "{path}: {url} not in {message:?}");
    }
    message
}

#[tokio::test]
async fn an_unknown_path_or_a_switched_off_default_answers_404_listing_the_agents() {
    let gw = TestGateway::spawn_with(with_default(DefaultAgent::Off)).await;
    for path in ["/sse", "/mcp", "/messages"] {
        let message = not_found_listing_the_agents(&gw, path).await;
        assert!(message.contains("default_agent = \"\""), "{message}");
    }
    for path in ["/nope", "/agents/servicenow/nope", "/agents", "/sse/extra"] {
        not_found_listing_the_agents(&gw, path).await;
    }
    gw.stop().await;
}

#[tokio::test]
async fn a_reload_takes_the_default_agent_away_and_brings_it_back() {
    // Arrange
    let dir = tempfile::tempdir().unwrap();
    let agents = dir.path().join("agents");
    copy_valid_agents(&agents);
    let gw = TestGateway::spawn_with(Options {
        agents_dir: agents.clone(),
        ..Options::default()
    })
    .await;
    let h = http();
    assert_eq!(streamable_open(&h, &gw.url("/mcp")).await.status(), 200);

    // Act: servicenow goes (and helpdesk, which would otherwise delegate to nothing).
    for file in ["servicenow.toml", "helpdesk.toml"] {
        std::fs::rename(agents.join(file), dir.path().join(file)).unwrap();
    }
    let (status, report) = gw.post_json("/admin/reload").await;
    assert_eq!(status, 200, "{report}");

    // Assert: 404 saying why.
    let (status, body) = gw.get_json("/mcp").await;
    assert_eq!(status, 404, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("the default agent \"servicenow\" is not loaded"),
        "{message}"
    );

    // Act: it comes back.
    for file in ["servicenow.toml", "helpdesk.toml"] {
        std::fs::rename(dir.path().join(file), agents.join(file)).unwrap();
    }
    let (status, report) = gw.post_json("/admin/reload").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(streamable_open(&h, &gw.url("/mcp")).await.status(), 200);
    gw.stop().await;
}

#[test]
fn check_names_the_file_and_key_of_an_unknown_or_invalid_default_agent() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("switchboard.toml");
    for (value, expected) in [
        (
            "nope",
            "switchboard.toml: server.default_agent: unknown agent \"nope\": the agents are helpdesk, servicenow",
        ),
        (
            "Bad Name",
            "switchboard.toml: server.default_agent: invalid agent name \"Bad Name\"",
        ),
    ] {
        std::fs::write(&cfg, format!("[server]\ndefault_agent = \"{value}\"\n")).unwrap();
        let out = crate::support::binary::switchboard()
            .args(["check", "--config"])
            .arg(&cfg)
            .arg("--agents")
            .arg(fixture("agents/valid"))
            .output()
            .unwrap();
        assert!(!out.status.success(), "{value}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{expected:?} not in {stderr}");
    }
    // Named and existing, or "": fine.
    for value in ["helpdesk", ""] {
        std::fs::write(&cfg, format!("[server]\ndefault_agent = \"{value}\"\n")).unwrap();
        let out = crate::support::binary::switchboard()
            .args(["check", "--config"])
            .arg(&cfg)
            .arg("--agents")
            .arg(fixture("agents/valid"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{value:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
